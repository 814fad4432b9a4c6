"""The plain values the certificate registry stores and answers with (no I/O, no cryptography calls).

Practices and bindings are :class:`xdr_edge.practice.Practice` and :class:`xdr_edge.practice.Binding`,
shared with the sending side; this module adds what only the receiving registry needs: enrolled certificates,
trust anchors, CRLs, mapping rules, audit entries, and the two decisions the receiver acts on
(:class:`Identification`, :class:`Decision`). Every value is a frozen dataclass with ``as_dict()`` so the
CLI can print it or emit JSON.
"""

from __future__ import annotations

__all__ = [
    "AuditEntry",
    "AuditEvent",
    "CertificateRecord",
    "CrlRecord",
    "Decision",
    "Identification",
    "JsonValue",
    "MappingKind",
    "MappingRule",
    "TrustAnchor",
    "normalize_fingerprint",
]

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TypeAlias

from cryptography import x509

from xdr_edge.practice import Practice
from xdr_edge.protocol.errors import ConfigurationError

JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def normalize_fingerprint(text: str) -> str:
    """Lower-case hex without separators: the one spelling of a SHA-256 fingerprint we store and compare.

    People paste fingerprints from ``openssl x509 -fingerprint`` (``AB:CD:...``) or from our own output; all
    spellings of the same digest must find the same row.
    """
    value = text.strip().lower().replace(":", "").replace(" ", "")
    if value.startswith("sha256/"):
        value = value[len("sha256/") :]
    if not _HEX64.match(value):
        raise ConfigurationError(
            f"not a SHA-256 fingerprint: {text!r} (expected 64 hex digits, colons allowed)",
            location="fingerprint",
        )
    return value


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class MappingKind(StrEnum):
    """How a trusted certificate that is not pinned names its practice (our practice-binding rule)."""

    #: The enrolled-certificate pin. Pins are always consulted first; a rule of this kind only makes that
    #: explicit in the rule list and adds nothing.
    FINGERPRINT = "fingerprint"
    #: A subject attribute (``UID``, ``CN``, ``OU``... or a dotted OID) whose value equals a practice id.
    SUBJECT_ATTRIBUTE = "subject-attribute"
    #: A SAN rfc822Name that is an address bound (exactly) to a practice.
    SAN_EMAIL = "san-email"
    #: A SAN dNSName that is a domain bound to a practice.
    SAN_DNS = "san-dns"
    #: The domain of a SAN rfc822Name is a domain bound to a practice.
    SAN_EMAIL_DOMAIN = "san-email-domain"


@dataclass(frozen=True)
class MappingRule:
    """One configured mapping rule; rules are tried in ``position`` order after the fingerprint pin.

    ``issuer_fingerprint`` limits the rule to certificates whose verified chain ends at that trust anchor: a
    practice id in a subject is only meaningful from a CA that vouches for it.
    """

    position: int
    kind: MappingKind
    attribute: str | None = None
    issuer_fingerprint: str | None = None

    def describe(self) -> str:
        text = self.kind.value if self.attribute is None else f"{self.kind.value}:{self.attribute}"
        if self.issuer_fingerprint is not None:
            text += f" (issuer {self.issuer_fingerprint[:16]}...)"
        return text

    def as_dict(self) -> dict[str, JsonValue]:
        return {
            "position": self.position,
            "kind": self.kind.value,
            "attribute": self.attribute,
            "issuer_fingerprint": self.issuer_fingerprint,
        }


@dataclass(frozen=True)
class CertificateRecord:
    """A certificate known by fingerprint: enrolled to a practice, or only blocked (``practice_id`` None)."""

    fingerprint_sha256: str
    practice_id: str | None
    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    pem: str
    enrolled_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def as_dict(self) -> dict[str, JsonValue]:
        return {
            "fingerprint_sha256": self.fingerprint_sha256,
            "practice_id": self.practice_id,
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "enrolled_at": _iso(self.enrolled_at),
            "revoked_at": _iso(self.revoked_at),
            "revoked_reason": self.revoked_reason,
        }


@dataclass(frozen=True)
class TrustAnchor:
    """A CA certificate client certificates must chain to (Direct Edge Protocols IG §1.1, ETT tests 6-9; our practice-binding rule)."""

    fingerprint_sha256: str
    subject: str
    pem: str

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.pem.encode("ascii"))

    def as_dict(self) -> dict[str, JsonValue]:
        return {"fingerprint_sha256": self.fingerprint_sha256, "subject": self.subject}


@dataclass(frozen=True)
class CrlRecord:
    """The newest loaded CRL of one issuing CA key (DER), with the dates that decide whether it is usable.

    Kept one per (``issuer`` name, ``issuer_key_id``), so two trusted CAs of the same name (a CA re-keyed
    under its old name, both anchors trusted during the rollover) each keep their own CRL. ``issuer_key_id``
    is the SHA-256 (hex) of the SubjectPublicKeyInfo DER of the trust anchor whose key signed the CRL
    (:func:`~xdr_edge.registry.verify.public_key_id`), or None for a CRL whose issuer is not a trust anchor
    (an intermediate CA: the registry does not hold its key, so such CRLs are kept one per name and their
    signature is checked against the chain a client presents).
    """

    issuer: str
    this_update: datetime
    next_update: datetime | None
    der: bytes = field(repr=False)
    issuer_key_id: str | None = None

    def __post_init__(self) -> None:
        if self.issuer_key_id is not None and not _HEX64.match(self.issuer_key_id):
            raise ConfigurationError(
                f"CRL issuer key id of {self.issuer} is not a lower-case SHA-256 hex digest: "
                f"{self.issuer_key_id!r}",
                location=self.issuer,
            )

    @property
    def key_label(self) -> str:
        """A short key id for listings (16 hex digits, as ``MappingRule.describe`` shortens fingerprints)."""
        if self.issuer_key_id is None:
            return "key n/a (issuer not a trust anchor)"
        return f"key {self.issuer_key_id[:16]}"

    def as_dict(self) -> dict[str, JsonValue]:
        return {
            "issuer": self.issuer,
            "issuer_key_id": self.issuer_key_id,
            "this_update": _iso(self.this_update),
            "next_update": _iso(self.next_update),
        }


@dataclass(frozen=True)
class AuditEvent:
    """A change about to be written; the store records it in the same transaction as the change itself."""

    at: datetime
    actor: str
    action: str
    subject: str
    detail: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    """A recorded change: when, who, what (``action``), to what (``subject``), and the details."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, JsonValue]

    def as_dict(self) -> dict[str, JsonValue]:
        return {
            "id": self.id,
            "at": _iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "detail": self.detail,
        }


def _practice_dict(practice: Practice | None) -> dict[str, JsonValue] | None:
    if practice is None:
        return None
    return {
        "id": practice.id,
        "name": practice.name,
        "active": practice.active,
        "bindings": [str(b) for b in practice.bindings],
    }


@dataclass(frozen=True)
class Identification:
    """Which practice a client certificate belongs to, or why it belongs to none (our practice-binding rule).

    ``practice`` is set only when the certificate is accepted. ``practice_id`` names the practice the
    certificate mapped to even when it is rejected (an inactive practice), for logs and the CLI.
    """

    practice: Practice | None
    reason: str
    fingerprint: str
    subject: str
    matched_by: str = ""
    practice_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.practice is not None

    def as_dict(self) -> dict[str, JsonValue]:
        return {
            "accepted": self.accepted,
            "practice": _practice_dict(self.practice),
            "practice_id": self.practice_id,
            "reason": self.reason,
            "fingerprint_sha256": self.fingerprint,
            "subject": self.subject,
            "matched_by": self.matched_by,
        }


@dataclass(frozen=True)
class Decision:
    """Whether a sender may submit, and why (our practice-binding rule)."""

    allowed: bool
    reason: str
    practice_id: str | None = None
    fingerprint: str | None = None

    def as_dict(self) -> dict[str, JsonValue]:
        return {
            "allowed": self.allowed,
            "reason": self.reason,
            "practice_id": self.practice_id,
            "fingerprint_sha256": self.fingerprint,
        }
