"""Findings: validation results as data.

A :class:`Finding` names one problem: the XDS ``errorCode`` a receiver answers with (for a tolerated envelope
deviation, the header family it concerns, such as ``WS-Addressing``; the inspector reports a would-be SOAP fault
as ``env:Sender``), its severity, where it is (an element path such as
``ExtrinsicObject[@id='Document01']/Slot[@name='creationTime']``), a message a person can act on, and a stable
``rule`` identifier for machines and tests. Both the sender (pre-flight) and the receiver (after parsing) produce
them; the receiver turns error findings into a RegistryResponse Failure.
"""

from __future__ import annotations

__all__ = ["Finding", "Severity", "errors_only"]

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from xdr_edge.protocol import ns


class Severity(str, Enum):
    ERROR = "Error"
    WARNING = "Warning"

    @property
    def urn(self) -> str:
        return ns.SEVERITY_ERROR if self is Severity.ERROR else ns.SEVERITY_WARNING


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    location: str
    message: str
    rule: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def as_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "location": self.location,
            "message": self.message,
            "rule": self.rule,
        }

    def __str__(self) -> str:
        return f"{self.severity.value}: {self.code} at {self.location}: {self.message}"


def errors_only(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.is_error]
