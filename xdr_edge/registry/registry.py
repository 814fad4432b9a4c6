"""The certificate registry: which practice a client certificate belongs to, and which senders it may use.

Owns the decisions of our practice-binding rule for the receiving side:

- :meth:`Registry.identify`: a client certificate must chain to a trust anchor, be within its validity and
  not be revoked (our own revoked flag, or a loaded CRL), and then map to exactly one active practice: first
  by an enrolled SHA-256 fingerprint pin, else by the configured mapping rules in order;
- :meth:`Registry.authorize_sender`: the sender address must be bound to that practice (an exact address or
  its whole domain; an address belongs to one practice).

Administrative changes go through the same object so that each is checked and audited. Storage is behind
:class:`~xdr_edge.registry.store.RegistryStore`; this module does no I/O of its own, and keeps no mutable
state besides the store reference, so one ``Registry`` serves all receiver threads.
"""

from __future__ import annotations

__all__ = ["NOT_ENROLLED", "Registry", "open_registry"]

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from xdr_edge.certs import fingerprint_sha256, parse_certificates, san_values
from xdr_edge.practice import Binding, Practice
from xdr_edge.protocol.errors import CertificateError, ConfigurationError
from xdr_edge.protocol.model import DirectAddress
from xdr_edge.registry.database import Database, open_database
from xdr_edge.registry.records import (
    AuditEntry,
    AuditEvent,
    CertificateRecord,
    CrlRecord,
    Decision,
    Identification,
    JsonValue,
    MappingKind,
    MappingRule,
    TrustAnchor,
    normalize_fingerprint,
)
from xdr_edge.registry.store import RegistryStore, SqlStore
from xdr_edge.registry.verify import (
    ChainVerdict,
    LoadedCrl,
    anchor_of,
    ca_problem,
    crl_signer_key_id,
    utc_text,
    verify_client_certificate,
)

NOT_ENROLLED = "trusted but not enrolled / maps to no practice"

_PRACTICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}$")

_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "UID": NameOID.USER_ID,
    "USERID": NameOID.USER_ID,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "E": NameOID.EMAIL_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "TITLE": NameOID.TITLE,
}
_CANONICAL = {"USERID": "UID", "E": "EMAILADDRESS"}
_DOTTED = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


def open_registry(url: str | Database, *, max_connections: int = 4) -> Registry:
    """The registry a URL names: ``sqlite:///abs/path.db``, ``sqlite:relative.db``, a plain path, or
    ``postgresql://user@host/dbname`` (the ``postgresql`` extra); or an already opened database.

    ``max_connections`` bounds the PostgreSQL connection pool (:func:`.database.open_database`).
    """
    database = url if isinstance(url, Database) else open_database(url, max_connections=max_connections)
    return Registry(SqlStore(database))


def _certificate_record(cert: x509.Certificate, practice_id: str | None, at: datetime) -> CertificateRecord:
    """What the registry keeps of a certificate: enrolled to ``practice_id``, or (None) only to be blocked."""
    return CertificateRecord(
        fingerprint_sha256=fingerprint_sha256(cert),
        practice_id=practice_id,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        pem=_pem(cert),
        enrolled_at=at,
    )


def _load_crl(data: bytes | str | x509.CertificateRevocationList) -> x509.CertificateRevocationList:
    if isinstance(data, x509.CertificateRevocationList):
        return data
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    try:
        if b"-----BEGIN" in raw:
            return x509.load_pem_x509_crl(raw)
        return x509.load_der_x509_crl(raw)
    except ValueError as exc:
        raise CertificateError(f"not a PEM or DER X.509 CRL: {exc}") from exc


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode("ascii")


def _attribute_oid(name: str) -> x509.ObjectIdentifier:
    if _DOTTED.match(name):
        return x509.ObjectIdentifier(name)
    return _ATTRIBUTES[name]


def _canonical_attribute(name: str | None) -> str:
    """``uid``/``userId``/``UID`` -> ``UID``; a dotted OID as is; anything else is a configuration error."""
    if name is None or not name.strip():
        raise ConfigurationError(
            "a subject-attribute rule needs an attribute (UID, CN, OU, O or a dotted OID)"
        )
    text = name.strip()
    if _DOTTED.match(text):
        return text
    key = text.upper()
    if key not in _ATTRIBUTES:
        known = ", ".join(sorted(k for k in _ATTRIBUTES if k not in _CANONICAL))
        raise ConfigurationError(
            f"unknown subject attribute {name!r}; use one of {known} or a dotted OID", location="attribute"
        )
    return _CANONICAL.get(key, key)


def _san_addresses(cert: x509.Certificate) -> list[DirectAddress]:
    addresses: list[DirectAddress] = []
    for value in san_values(cert)[0]:
        try:
            addresses.append(DirectAddress.parse(value))
        except ValueError:
            continue
    return addresses


def _san_dns(cert: x509.Certificate) -> list[str]:
    return [name.lower().rstrip(".") for name in san_values(cert)[1]]


def _address(address: DirectAddress | str) -> DirectAddress:
    if isinstance(address, DirectAddress):
        return address
    try:
        return DirectAddress.parse(address)
    except ValueError as exc:
        raise ConfigurationError(str(exc), location=address) from exc


@dataclass(frozen=True)
class _Match:
    practice_id: str | None
    matched_by: str
    reason: str


class Registry:
    """Practices, their certificates and bindings, trust anchors, CRLs and mapping rules, over one store.

    Thread-safe: it holds only the store, and the store opens a connection per operation (per decision).
    """

    def __init__(self, store: RegistryStore) -> None:
        self._store = store

    @property
    def location(self) -> str:
        return self._store.location

    def ping(self) -> None:
        """Raise :class:`~xdr_edge.protocol.errors.StoreError` unless the database answers (``/healthz``)."""
        self._store.ping()

    def close(self) -> None:
        """Release the store's connections (a PostgreSQL pool); the registry may not be used afterwards."""
        self._store.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- administration ------------------------------------------------------------------------------

    def _event(self, actor: str, action: str, subject: str, detail: dict[str, JsonValue]) -> AuditEvent:
        if not actor or not actor.strip():
            raise ConfigurationError("every registry change records who made it: actor must not be empty")
        return AuditEvent(datetime.now(UTC), actor.strip(), action, subject, detail)

    def init(self, *, actor: str = "xdr-edge") -> bool:
        """Create the database (or bring its schema up to date); True when it was created."""
        return self._store.initialize(self._event(actor, "registry.init", self.location, {}))

    def add_practice(self, practice_id: str, name: str, *, actor: str, active: bool = True) -> Practice:
        if not _PRACTICE_ID.match(practice_id):
            raise ConfigurationError(
                f"practice id {practice_id!r} is not usable: 1-128 characters, letters, digits and ._:@+- "
                "only, starting with a letter or digit",
                location="practice id",
            )
        practice = Practice(id=practice_id, name=name.strip(), active=active)
        event = self._event(actor, "practice.add", practice_id, {"name": practice.name, "active": active})
        self._store.add_practice(practice, event.at, event)
        return practice

    def set_active(self, practice_id: str, active: bool, *, actor: str) -> bool:
        """Activate or deactivate a practice; True when that changed anything."""
        action = "practice.activate" if active else "practice.deactivate"
        return self._store.set_active(
            practice_id, active, self._event(actor, action, practice_id, {"active": active})
        )

    def enroll(
        self,
        practice_id: str,
        cert: bytes | str | x509.Certificate,
        *,
        actor: str,
        chain: Sequence[x509.Certificate] = (),
        ahead_of_anchor: bool = False,
    ) -> CertificateRecord:
        """Pin a certificate (by SHA-256 fingerprint) to a practice; enrolling it again there is a no-op.

        The certificate must chain to one of the registry's trust anchors (by name and signature, through
        ``chain``, the intermediates; PEM bytes may carry them after the leaf): a pin for a certificate no
        anchor vouches for would never let it in, and usually means the wrong file or a forgotten anchor.
        ``ahead_of_anchor`` pins it all the same, for a certificate whose CA will be added later (recorded in
        the audit entry). Validity is not checked here: a renewal may be enrolled before it starts.
        """
        certificates = parse_certificates(cert)
        leaf = certificates[0]
        anchor = anchor_of(
            leaf, [*certificates[1:], *chain], anchors=[a.certificate() for a in self.trust_anchors()]
        )
        if anchor is None and not ahead_of_anchor:
            subject = leaf.subject.rfc4514_string()
            raise CertificateError(
                f"certificate {subject} does not chain to a trust anchor of the registry (issuer "
                f"{leaf.issuer.rfc4514_string()}; give its intermediate CAs if it has any): not enrolled. "
                "Add the CA that issued it first (registry add-anchor), or pin it ahead of its anchor "
                "explicitly (registry enroll --ahead-of-anchor)",
                code="certificate-not-anchored",
                location=subject,
            )
        now = datetime.now(UTC)
        record = _certificate_record(leaf, practice_id, now)
        detail: dict[str, JsonValue] = {
            "practice_id": practice_id,
            "subject": record.subject,
            "issuer": record.issuer,
            "serial": record.serial,
            "not_after": record.not_after.isoformat(),
            "anchor": anchor.subject.rfc4514_string() if anchor is not None else None,
        }
        if anchor is None:
            detail["ahead_of_anchor"] = True
        self._store.enroll(
            record, self._event(actor, "certificate.enroll", record.fingerprint_sha256, detail)
        )
        stored = self._store.certificate(record.fingerprint_sha256)
        return stored if stored is not None else record

    def unenroll(self, certificate: str | x509.Certificate, *, actor: str) -> CertificateRecord:
        """Remove a certificate's pin (by fingerprint, or the certificate itself); it is then refused unless a
        mapping rule maps it. A revoked certificate's record is kept, so that it stays refused."""
        fingerprint = (
            fingerprint_sha256(certificate)
            if isinstance(certificate, x509.Certificate)
            else normalize_fingerprint(certificate)
        )
        existing = self._store.certificate(fingerprint)
        detail: dict[str, JsonValue] = {
            "practice_id": existing.practice_id if existing is not None else None,
            "subject": existing.subject if existing is not None else None,
        }
        event = self._event(actor, "certificate.unenroll", fingerprint, detail)
        removed = self._store.remove_certificate(fingerprint, event)
        if removed is None:
            raise ConfigurationError(
                f"no certificate with fingerprint {fingerprint} is enrolled", location=fingerprint
            )
        return removed

    def _binding(self, address_or_domain: str | Binding) -> Binding:
        if isinstance(address_or_domain, Binding):
            binding = address_or_domain
        else:
            try:
                binding = Binding.parse(address_or_domain)
            except ValueError as exc:
                raise ConfigurationError(str(exc), location=address_or_domain) from exc
        if binding.domain is not None:
            try:
                DirectAddress(f"postmaster@{binding.domain}")
            except ValueError as exc:
                raise ConfigurationError(
                    f"not a Direct domain: {binding.domain!r}", location=str(address_or_domain)
                ) from exc
        return binding

    def bind(self, practice_id: str, address_or_domain: str | Binding, *, actor: str) -> Binding:
        """Bind ``user@domain`` (one address) or ``domain`` / ``@domain`` (all its addresses) to a practice.

        Refused, naming the owner, when an address it covers is already covered by another practice's binding.
        """
        binding = self._binding(address_or_domain)
        event = self._event(actor, "binding.add", practice_id, {"binding": str(binding)})
        self._store.add_binding(practice_id, binding, event.at, event)
        return binding

    def unbind(self, practice_id: str, address_or_domain: str | Binding, *, actor: str) -> Binding:
        """Remove a binding; an address is found whatever the case of its local part (as :meth:`bind` treats
        ``Alice@x`` and ``alice@x`` as one address). Returns the binding removed, as it was stored."""
        binding = self._binding(address_or_domain)
        event = self._event(actor, "binding.remove", practice_id, {"binding": str(binding)})
        removed = self._store.remove_binding(practice_id, binding, event)
        if removed is None:
            raise ConfigurationError(
                f"{binding} is not bound to practice {practice_id!r}",
                code="binding-not-found",
                location=str(binding),
            )
        return removed

    def revoke(self, certificate: str | x509.Certificate, reason: str, *, actor: str) -> CertificateRecord:
        """Mark a certificate revoked (by fingerprint, or the certificate itself to block one never enrolled).

        Takes effect on the next :meth:`identify`, without waiting for the CA's CRL.
        """
        block: CertificateRecord | None = None
        now = datetime.now(UTC)
        text = reason.strip() or "unspecified"
        if isinstance(certificate, x509.Certificate):
            block = dataclasses.replace(
                _certificate_record(certificate, None, now), revoked_at=now, revoked_reason=text
            )
            fingerprint = block.fingerprint_sha256
        else:
            fingerprint = normalize_fingerprint(certificate)
        existing = self._store.certificate(fingerprint)
        detail: dict[str, JsonValue] = {
            "reason": text,
            "practice_id": existing.practice_id if existing is not None else None,
            "subject": existing.subject if existing is not None else (block.subject if block else None),
        }
        self._store.revoke(
            fingerprint, now, text, self._event(actor, "certificate.revoke", fingerprint, detail), block=block
        )
        stored = self._store.certificate(fingerprint)
        if stored is None:  # pragma: no cover - the store just wrote it
            raise ConfigurationError(f"certificate {fingerprint} vanished while being revoked")
        return stored

    def add_trust_anchor(self, cert: bytes | str | x509.Certificate, *, actor: str) -> TrustAnchor:
        """Trust a CA for client certificates (Direct Edge Protocols IG §1.1, ETT tests 6-9: imported out of band, e.g. from the ETT).

        Refused, with the reason, for a certificate that is not a CA certificate (:func:`.verify.ca_problem`).
        """
        ca = parse_certificates(cert)[0]
        problem = ca_problem(ca)
        if problem is not None:
            subject = ca.subject.rfc4514_string()
            raise CertificateError(
                f"{subject} cannot be a trust anchor: {problem}. Add the CA that issued it; to let this "
                "certificate in, enrol it (registry enroll)",
                code="not-a-ca",
                location=subject,
            )
        anchor = TrustAnchor(fingerprint_sha256(ca), ca.subject.rfc4514_string(), _pem(ca))
        event = self._event(actor, "trust-anchor.add", anchor.fingerprint_sha256, {"subject": anchor.subject})
        self._store.add_trust_anchor(anchor, event.at, event)
        return anchor

    def remove_trust_anchor(self, fingerprint: str, *, actor: str) -> TrustAnchor:
        """Stop trusting a CA: its certificates (enrolled or not) are refused from the next request on.

        Refused while a mapping rule is limited to this anchor (remove the rule first), since the rule would
        then name an anchor that is not there. Its CRLs stay loaded (harmless, and kept if it comes back).
        """
        wanted = normalize_fingerprint(fingerprint)
        anchor = next((a for a in self.trust_anchors() if a.fingerprint_sha256 == wanted), None)
        detail: dict[str, JsonValue] = {"subject": anchor.subject if anchor is not None else None}
        event = self._event(actor, "trust-anchor.remove", wanted, detail)
        removed = self._store.remove_trust_anchor(wanted, event)
        if removed is None:
            raise ConfigurationError(f"no trust anchor with fingerprint {wanted}", location=wanted)
        return removed

    def load_crl(self, crl: bytes | str | x509.CertificateRevocationList, *, actor: str) -> CrlRecord:
        """Load (or replace with a newer) CRL of one issuing CA key; an anchor's CRL must verify against it.

        CRLs are kept one per (issuer name, issuer key id): the key id is the SHA-256 of the
        SubjectPublicKeyInfo of the trust anchor whose key verifies the CRL, so two trusted CAs of the same
        name (a CA re-keyed under its old name, both anchors kept during a rollover) each keep their own CRL,
        and each one's certificates are checked against it. "Newer replaces older, an older one is refused"
        (a replay) holds per key. A CRL naming trust anchors none of whose keys verifies it is refused.

        A CRL whose issuer is no trust anchor (an intermediate CA) is loaded as before without a key id: the
        registry does not hold intermediate keys, so such CRLs are kept one per name, and the verifier checks
        the signature against the intermediate in the chain a client presents (an unverifiable one makes
        that CA's revocation status unknown, i.e. refused).
        """
        parsed = _load_crl(crl)
        issuer = parsed.issuer.rfc4514_string()
        namesakes = [
            ca for ca in (a.certificate() for a in self.trust_anchors()) if ca.subject == parsed.issuer
        ]
        key_id = crl_signer_key_id(parsed, namesakes)
        if namesakes and key_id is None:
            raise CertificateError(
                f"the CRL of {issuer} is not signed by the trust anchor of that name; not loaded",
                location=issuer,
            )
        record = CrlRecord(
            issuer=issuer,
            this_update=parsed.last_update_utc,
            next_update=parsed.next_update_utc,
            der=parsed.public_bytes(Encoding.DER),
            issuer_key_id=key_id,
        )
        detail: dict[str, JsonValue] = {
            "this_update": record.this_update.isoformat(),
            "next_update": record.next_update.isoformat() if record.next_update is not None else None,
            "revoked_count": len(parsed),
            "issuer_key_id": key_id,
        }
        event = self._event(actor, "crl.load", issuer, detail)
        self._store.put_crl(record, event.at, event)
        return record

    def add_mapping_rule(
        self,
        kind: MappingKind | str,
        *,
        attribute: str | None = None,
        issuer_fingerprint: str | None = None,
        actor: str,
    ) -> MappingRule:
        """Append a rule mapping trusted, unpinned certificates to practices (tried in the order added)."""
        try:
            rule_kind = MappingKind(kind)
        except ValueError as exc:
            known = ", ".join(k.value for k in MappingKind)
            raise ConfigurationError(f"unknown mapping rule kind {kind!r}; use one of {known}") from exc
        if rule_kind is MappingKind.SUBJECT_ATTRIBUTE:
            attribute = _canonical_attribute(attribute)
        elif attribute is not None:
            raise ConfigurationError(f"a {rule_kind.value} rule takes no attribute (got {attribute!r})")
        issuer = normalize_fingerprint(issuer_fingerprint) if issuer_fingerprint is not None else None
        detail: dict[str, JsonValue] = {
            "kind": rule_kind.value,
            "attribute": attribute,
            "issuer_fingerprint": issuer,
        }
        event = self._event(actor, "mapping-rule.add", rule_kind.value, detail)
        return self._store.add_mapping_rule(rule_kind, attribute, issuer, event.at, event)

    def remove_mapping_rule(self, position: int, *, actor: str) -> MappingRule:
        """Remove the mapping rule at ``position`` (as ``list`` shows it); the others keep their positions."""
        rule = next((r for r in self.mapping_rules() if r.position == position), None)
        detail: dict[str, JsonValue] = {"rule": rule.describe() if rule is not None else None}
        event = self._event(actor, "mapping-rule.remove", str(position), detail)
        removed = self._store.remove_mapping_rule(position, event)
        if removed is None:
            known = ", ".join(str(r.position) for r in self.mapping_rules()) or "none"
            raise ConfigurationError(
                f"no mapping rule at position {position} (rules: {known})", location=str(position)
            )
        return removed

    # -- reading -------------------------------------------------------------------------------------

    def practices(self) -> list[Practice]:
        return self._store.practices()

    def practice(self, practice_id: str) -> Practice | None:
        return self._store.practice(practice_id)

    def certificates(self, practice_id: str | None = None) -> list[CertificateRecord]:
        return self._store.certificates(practice_id)

    def certificate(self, fingerprint: str) -> CertificateRecord | None:
        return self._store.certificate(normalize_fingerprint(fingerprint))

    def trust_anchors(self) -> list[TrustAnchor]:
        return self._store.trust_anchors()

    def crls(self) -> list[CrlRecord]:
        return self._store.crls()

    def mapping_rules(self) -> list[MappingRule]:
        return self._store.mapping_rules()

    def audit_log(self, limit: int = 50) -> list[AuditEntry]:
        """The ``limit`` most recent changes, newest first."""
        return self._store.audit_log(max(0, limit))

    # -- decisions -----------------------------------------------------------------------------------

    def identify(
        self, cert: x509.Certificate, chain: Sequence[x509.Certificate] = (), *, at: datetime | None = None
    ) -> Identification:
        """The practice a client certificate belongs to, or why none (our practice-binding rule).

        ``chain`` holds the intermediates the peer sent. Rejections are values, not exceptions: the receiver
        turns them into a refused request and a log line.
        """
        with self._store.reading():  # one connection and one registry state for the whole decision
            return self._identify(cert, chain, datetime.now(UTC) if at is None else at)

    def _identify(
        self, cert: x509.Certificate, chain: Sequence[x509.Certificate], moment: datetime
    ) -> Identification:
        fingerprint = fingerprint_sha256(cert)
        subject = cert.subject.rfc4514_string()

        def reject(reason: str, matched_by: str = "", practice_id: str | None = None) -> Identification:
            return Identification(None, reason, fingerprint, subject, matched_by, practice_id)

        record = self._store.certificate(fingerprint)
        if record is not None and record.revoked_at is not None:
            return reject(f"certificate revoked on {utc_text(record.revoked_at)} ({record.revoked_reason})")
        verdict = self._verify(cert, chain, moment)
        if not verdict.ok:
            return reject(verdict.reason)
        if record is not None and record.practice_id is not None:
            match = _Match(
                record.practice_id, "fingerprint", f"enrolled certificate of practice {record.practice_id!r}"
            )
        else:
            match = self._map_by_rules(cert, verdict)
        if match.practice_id is None:
            return reject(match.reason, match.matched_by)
        practice = self._store.practice(match.practice_id)
        if practice is None:
            return reject(f"practice {match.practice_id!r} is no longer in the registry", match.matched_by)
        if not practice.active:
            return reject(f"practice {practice.id!r} is inactive", match.matched_by, practice.id)
        return Identification(practice, match.reason, fingerprint, subject, match.matched_by, practice.id)

    def _verify(
        self, cert: x509.Certificate, chain: Sequence[x509.Certificate], at: datetime
    ) -> ChainVerdict:
        anchors = [a.certificate() for a in self._store.trust_anchors()]
        crls = [LoadedCrl(x509.load_der_x509_crl(c.der), c.issuer_key_id) for c in self._store.crls()]
        return verify_client_certificate(cert, chain, anchors=anchors, crls=crls, at=at)

    def _map_by_rules(self, cert: x509.Certificate, verdict: ChainVerdict) -> _Match:
        anchor = verdict.anchor
        anchor_fingerprint = fingerprint_sha256(anchor) if anchor is not None else None
        for rule in self._store.mapping_rules():
            if rule.issuer_fingerprint is not None and rule.issuer_fingerprint != anchor_fingerprint:
                continue
            owners = self._owners(cert, rule)
            if len(owners) > 1:
                names = ", ".join(f"{pid!r}" for pid in sorted(owners))
                return _Match(
                    None,
                    rule.describe(),
                    f"certificate maps to several practices by {rule.describe()}: {names}",
                )
            if owners:
                practice_id, evidence = next(iter(owners.items()))
                return _Match(practice_id, rule.describe(), evidence)
        return _Match(None, "", NOT_ENROLLED)

    def _owners(self, cert: x509.Certificate, rule: MappingRule) -> dict[str, str]:
        """Practice id -> the evidence, for every practice this rule maps the certificate to."""
        owners: dict[str, str] = {}
        if rule.kind is MappingKind.SUBJECT_ATTRIBUTE and rule.attribute is not None:
            for attr in cert.subject.get_attributes_for_oid(_attribute_oid(rule.attribute)):
                value = attr.value
                if isinstance(value, str) and self._store.practice(value) is not None:
                    owners[value] = f"subject {rule.attribute}={value} names practice {value!r}"
        elif rule.kind is MappingKind.SAN_EMAIL:
            for address in _san_addresses(cert):
                owner = self._store.address_owner(address)
                if owner is not None:
                    owners[owner] = f"SAN e-mail {address} is bound to practice {owner!r}"
        elif rule.kind is MappingKind.SAN_EMAIL_DOMAIN:
            for address in _san_addresses(cert):
                owner = self._store.domain_owner(address.domain)
                if owner is not None:
                    owners[owner] = f"SAN e-mail domain {address.domain} is bound to practice {owner!r}"
        elif rule.kind is MappingKind.SAN_DNS:
            for name in _san_dns(cert):
                owner = self._store.domain_owner(name)
                if owner is not None:
                    owners[owner] = f"SAN DNS name {name} is a domain bound to practice {owner!r}"
        return owners

    def authorize_sender(self, practice: Practice, address: DirectAddress | str) -> Decision:
        """May ``address`` send for ``practice``? Read fresh from the store: an unbind counts at once."""
        sender = _address(address)
        current = self._store.practice(practice.id)
        if current is None:
            return Decision(False, f"practice {practice.id!r} is not in the registry", practice.id)
        if not current.active:
            return Decision(False, f"practice {current.id!r} is inactive", current.id)
        for binding in current.bindings:
            if binding.covers(sender):
                return Decision(
                    True, f"{sender} is bound to practice {current.id!r} by {binding}", current.id
                )
        return Decision(False, f"sender {sender} is not bound to practice {current.id!r}", current.id)

    def check(
        self,
        cert: x509.Certificate,
        address: DirectAddress | str,
        chain: Sequence[x509.Certificate] = (),
        *,
        at: datetime | None = None,
    ) -> Decision:
        """Both receiver decisions at once: what ``xdr-edge registry check CERT ADDRESS`` prints."""
        with self._store.reading():
            identification = self.identify(cert, chain, at=at)
            if identification.practice is None:
                return Decision(
                    False, identification.reason, identification.practice_id, identification.fingerprint
                )
            decision = self.authorize_sender(identification.practice, address)
        return Decision(
            decision.allowed,
            f"{identification.reason}; {decision.reason}",
            decision.practice_id,
            identification.fingerprint,
        )
