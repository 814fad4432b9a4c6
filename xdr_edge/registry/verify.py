"""Is a client certificate trustworthy right now? The one wrapper around cryptography's client verifier.

Pure: certificates, CRLs and the time come in as arguments; nothing is read from disk or the network here.

Three checks, in order (Direct Edge Protocols IG §1.1, ETT tests 6-9; our practice-binding rule):

1. validity of the leaf at the given time, checked by us first so that the most common rejection reads
   "certificate expired on 2026-01-01" rather than a verifier message;
2. chain and policy by ``cryptography.x509.verification`` (``PolicyBuilder().store(...).time(at)
   .build_client_verifier()``). Its policy is the web PKI's: a SAN is required and the EKU, when present, must
   include clientAuth. The validation time is fixed when the verifier is built, so one is built per call
   (cryptography's verifier fixes it at build time); building is cheap next to a TLS handshake;
3. revocation, which the verifier does not check: for each certificate of the verified chain below the anchor,
   the loaded CRL of its issuer (signature verified with the issuer's key) must not list its serial. A CRL
   past its ``nextUpdate`` means the revocation status is unknown, and unknown is treated as revoked: a
   receiver that keeps accepting certificates after its CRL feed stopped would never notice a revocation.
   An issuer with no CRL loaded is not checked (CRLs are optional in the registry). CRLs are matched to the
   issuer by name *and* key: of the CRLs naming the issuer, only those its own key signed count, so two CAs
   of the same name (a re-keyed CA during a rollover, both trusted) each have their certificates checked
   against their own CRL. When CRLs of the name are loaded but none is signed by this CA's key, the status is
   unknown (refused): the registry keeps an intermediate's CRL per name only (it does not hold intermediate
   keys), so a CRL of the wrong key may have displaced the right one, and "not checked" would fail open.

cryptography's ``VerificationError`` text is mapped to plain reasons an operator can act on.
"""

from __future__ import annotations

__all__ = [
    "ChainVerdict",
    "LoadedCrl",
    "anchor_of",
    "ca_problem",
    "crl_signed_by",
    "crl_signer_key_id",
    "public_key_id",
    "verify_client_certificate",
]

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

# cryptography appends where a chain check failed, quoting the certificate's subject (which the peer chose).
# Found with str.find, not a regular expression: the former ``\s*\(encountered...(?P<subject>.*?)\)>.*$``
# searched in quadratic time (16 s for a subject holding 80,000 spaces).
_ENCOUNTERED = "(encountered processing <Certificate(subject=<Name("


@dataclass(frozen=True)
class ChainVerdict:
    """The outcome of :func:`verify_client_certificate`; ``chain`` runs leaf first, trust anchor last."""

    ok: bool
    reason: str
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def anchor(self) -> x509.Certificate | None:
        return self.chain[-1] if self.ok and self.chain else None


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def utc_text(moment: datetime) -> str:
    """``2026-01-01 00:00:00 UTC``: how refusals name a moment (shared with :mod:`.registry`)."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _check_validity(cert: x509.Certificate, at: datetime) -> str | None:
    if at < cert.not_valid_before_utc:
        return f"certificate not valid before {utc_text(cert.not_valid_before_utc)}"
    if at > cert.not_valid_after_utc:
        return f"certificate expired on {utc_text(cert.not_valid_after_utc)}"
    return None


def _explain(error: VerificationError, leaf: x509.Certificate) -> str:
    """cryptography's verifier message -> a reason naming what is wrong in operator terms."""
    text = str(error).removeprefix("validation failed: ")
    where = ""
    start = text.find(_ENCOUNTERED)
    end = text.find(")>", start + len(_ENCOUNTERED)) if start >= 0 else -1
    if end >= 0:
        where = f" (at {text[start + len(_ENCOUNTERED) : end]})"
        text = text[:start].rstrip()
    if "all candidates exhausted with no interior errors" in text:
        return f"not issued by a trusted CA (issuer {leaf.issuer.rfc4514_string()} is not a trust anchor)"
    if "required EKU not found" in text:
        return "not a TLS client certificate: its extended key usage lacks clientAuth" + where
    if "not valid at validation time" in text:
        return "a certificate in the chain is outside its validity period" + where
    return f"certificate chain rejected: {text}{where}"


@dataclass(frozen=True)
class LoadedCrl:
    """A CRL with the key id of the trust anchor whose key was verified to sign it when it was loaded
    (:meth:`~xdr_edge.registry.Registry.load_crl`); None when its issuer is not an anchor (an intermediate's).

    Why: checking a CRL's signature costs milliseconds for a large CRL, and the receiver verifies on every
    request; a signature verified at load time need not be verified again against the same key."""

    crl: x509.CertificateRevocationList
    signer_key_id: str | None = None


def _revocation_problem(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[LoadedCrl],
    at: datetime,
    *,
    leaf: bool,
) -> str | None:
    """Why ``cert`` must be rejected on revocation grounds, or None (not listed, or no CRL of its issuer)."""
    candidates = [loaded for loaded in crls if loaded.crl.issuer == issuer.subject]
    if not candidates:
        return None
    key_id = public_key_id(issuer)
    valid = [
        loaded.crl
        for loaded in candidates
        if loaded.signer_key_id == key_id or crl_signed_by(loaded.crl, issuer)
    ]
    who = "certificate" if leaf else "issuing CA"
    if not valid:
        return (
            f"revocation status unknown: a CRL of {_subject(issuer)} is loaded but none is signed by this "
            f"CA's key (key id {key_id[:16]}); load the CRL this CA issued"
        )
    crl = max(valid, key=lambda c: c.last_update_utc)
    if crl.next_update_utc is not None and crl.next_update_utc < at:
        return (
            f"revocation status unknown: the CRL of {_subject(issuer)} expired on "
            f"{utc_text(crl.next_update_utc)}; load a current one"
        )
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is None:
        return None
    return f"{who} {_subject(cert)} revoked on {utc_text(entry.revocation_date_utc)} ({_crl_reason(entry)})"


def crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key verifies the CRL's signature (False for keys that cannot sign)."""
    try:
        return crl.is_signature_valid(cast(CertificateIssuerPublicKeyTypes, issuer.public_key()))
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return False


def public_key_id(cert: x509.Certificate) -> str:
    """SHA-256 (lower-case hex) of the certificate's SubjectPublicKeyInfo DER: the id of a CA *key*.

    Why the key and not the certificate fingerprint: a CA certificate re-issued with the same key (new
    validity) signs the same CRLs, so it must find the same CRL slot; a CA re-keyed under the same name must
    not.
    """
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize().hex()


def crl_signer_key_id(
    crl: x509.CertificateRevocationList, candidates: Sequence[x509.Certificate]
) -> str | None:
    """The :func:`public_key_id` of the first of ``candidates`` named as the CRL's issuer whose key verifies
    its signature, or None when none does."""
    for ca in candidates:
        if ca.subject == crl.issuer and crl_signed_by(crl, ca):
            return public_key_id(ca)
    return None


def _crl_reason(entry: x509.RevokedCertificate) -> str:
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return "no reason given"
    return reason.value


def verify_client_certificate(
    cert: x509.Certificate,
    intermediates: Sequence[x509.Certificate] = (),
    *,
    anchors: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList | LoadedCrl] = (),
    at: datetime | None = None,
) -> ChainVerdict:
    """Check validity, chain to one of ``anchors`` under the client-certificate policy, and revocation."""
    loaded = [c if isinstance(c, LoadedCrl) else LoadedCrl(c) for c in crls]
    moment = at if at is not None else datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("the verification time must be timezone-aware")
    if not anchors:
        return ChainVerdict(False, "not issued by a trusted CA (the registry has no trust anchors)")
    problem = _check_validity(cert, moment)
    if problem is not None:
        return ChainVerdict(False, problem)
    verifier = PolicyBuilder().store(Store(list(anchors))).time(moment).build_client_verifier()
    try:
        verified = verifier.verify(cert, list(intermediates))
    except VerificationError as exc:
        return ChainVerdict(False, _explain(exc, cert))
    chain = tuple(verified.chain)
    for index, link in enumerate(chain[:-1]):
        problem = _revocation_problem(link, chain[index + 1], loaded, moment, leaf=index == 0)
        if problem is not None:
            return ChainVerdict(False, problem, chain)
    return ChainVerdict(True, f"chains to trust anchor {_subject(chain[-1])}", chain)


def ca_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` cannot be a trust anchor, or None when it is a CA certificate.

    A trust anchor vouches for the certificates it issued, so it must be a CA: basicConstraints ``cA`` true,
    and, when a keyUsage extension is present, ``keyCertSign`` (RFC 5280 §4.2.1.9, §4.2.1.3). A leaf added as
    an anchor would make the registry "trust" a certificate that issues nothing, and hide the mistake of
    meaning to enrol it.
    """
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "it has no basicConstraints extension, so it is not a CA certificate"
    if not constraints.ca:
        return "its basicConstraints say it is not a CA (cA is false): it is an end-entity certificate"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if not usage.key_cert_sign:
        return "its keyUsage does not allow signing certificates (keyCertSign)"
    return None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def anchor_of(
    cert: x509.Certificate,
    intermediates: Sequence[x509.Certificate] = (),
    *,
    anchors: Sequence[x509.Certificate],
    max_depth: int = 8,
) -> x509.Certificate | None:
    """The trust anchor ``cert`` chains to by issuer name and signature, through ``intermediates``; or None.

    Only the chain: validity, the client-certificate policy and revocation are :func:`verify_client_certificate`'s,
    checked on every request. This is what enrolling a certificate asks ("would any anchor of ours vouch for
    it?"), and a certificate enrolled for later (not valid yet) or a renewal must pass it too.
    """
    current = cert
    used: set[bytes] = set()
    for _ in range(max_depth):
        for anchor in anchors:
            if _issued_by(current, anchor):
                return anchor
        step = next(
            (
                c
                for c in intermediates
                if c.fingerprint(hashes.SHA256()) not in used and _issued_by(current, c)
            ),
            None,
        )
        if step is None:
            return None
        used.add(step.fingerprint(hashes.SHA256()))
        current = step
    return None
