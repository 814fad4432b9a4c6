"""Practices and their bindings: the one model of "practice, certificates, bound addresses" for both sides.

The sender uses it for pre-flight (is this ``From`` address bound to the practice whose certificate we will
present?) and to find the practice's client credential; the receiver's certificate registry stores the same
objects. Pure values; loading from TOML lives in :mod:`xdr_edge.sender.config`, storage in :mod:`xdr_edge.registry`.
"""

from __future__ import annotations

__all__ = ["Binding", "ClientCredential", "Practice"]

from dataclasses import dataclass, field
from pathlib import Path

from xdr_edge.protocol.model import DirectAddress


@dataclass(frozen=True)
class Binding:
    """A Direct address, or a whole Direct domain, bound to one practice."""

    address: DirectAddress | None = None
    domain: str | None = None

    def __post_init__(self) -> None:
        if (self.address is None) == (self.domain is None):
            raise ValueError("a Binding is either one address or one domain")
        if self.domain is not None:
            object.__setattr__(self, "domain", self.domain.strip().lower().lstrip("@"))

    @classmethod
    def parse(cls, text: str) -> Binding:
        """``user@domain`` (or ``mailto:``) binds one address; ``domain`` or ``@domain`` binds the domain."""
        value = text.strip()
        if "@" in value.lstrip("@"):
            return cls(address=DirectAddress.parse(value))
        return cls(domain=value)

    def covers(self, address: DirectAddress) -> bool:
        if self.address is not None:
            return self.address == address
        return address.domain == self.domain

    def __str__(self) -> str:
        return str(self.address) if self.address is not None else f"@{self.domain}"


@dataclass(frozen=True)
class ClientCredential:
    """Where a practice's client certificate and key live (sending side).

    Either PEM ``cert``+``key`` files or one PKCS#12 file. A PKCS#12 password comes from an environment variable
    or a file, never from a command-line argument (it would show in ``ps`` and shell history).
    """

    cert: Path | None = None
    key: Path | None = None
    p12: Path | None = None
    p12_password_env: str | None = None
    p12_password_file: Path | None = None

    def __post_init__(self) -> None:
        pem = self.cert is not None or self.key is not None
        if pem == (self.p12 is not None):
            raise ValueError("a client credential is either cert+key PEM files or one PKCS#12 file")
        if pem and (self.cert is None or self.key is None):
            raise ValueError("a PEM client credential needs both cert and key")


@dataclass(frozen=True)
class Practice:
    """A practice (an integrator's account): id, display name, bound addresses/domains, optional credential."""

    id: str
    name: str = ""
    active: bool = True
    bindings: tuple[Binding, ...] = ()
    credential: ClientCredential | None = field(default=None, compare=False)

    def binds(self, address: DirectAddress) -> bool:
        return any(b.covers(address) for b in self.bindings)
