"""Minting certificates: CAs, server and client certificates, CRLs, written to disk with safe modes.

Shared by the demo PKI (:mod:`xdr_edge.devtools.pki`), the tests, and the conformance suite, which mints a
deliberately untrusted server certificate to check that a sender refuses it (ETT XDR test 7). It decides no trust
(:mod:`xdr_edge.tls` and the receiver's registry do). Built on cryptography's ``x509`` builders only. Why not
``trustme``: it marks SAN and EKU critical, which cryptography's default client verifier rejects.
Certificates here follow what a real HISP's PKI issues and what the verifier's web-PKI policy expects:
non-critical SAN (always at least one entry), EKU serverAuth or clientAuth, SKI/AKI, critical
BasicConstraints and KeyUsage.

To make the certificate-to-practice mapping testable, a client certificate can carry the practice id in its
subject as the ``UID`` attribute (userId, OID 0.9.2342.19200300.100.1.1), and its Direct addresses as SAN
rfc822Name entries.

Private keys are generated at run time and never committed; files holding keys are created with mode 0600.
"""

from __future__ import annotations

__all__ = [
    "CLIENT_URI_PREFIX",
    "CertificateAuthority",
    "IssuedCert",
    "KeyType",
    "PrivateKey",
]

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xdr_edge.certs import fingerprint_sha256
from xdr_edge.durable import write_atomic

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

#: Backdating of ``notBefore``: a peer whose clock is slightly behind still accepts a fresh certificate.
_CLOCK_SKEW = timedelta(hours=1)

#: Where a client certificate derived from a common name alone gets its SAN (see :meth:`issue_client`).
CLIENT_URI_PREFIX = "urn:xdr-edge:client:"


def _now() -> datetime:
    return datetime.now(UTC)


def _new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {key_type!r}: expected 'ec' or 'rsa'")


def _key_usage(*, digital_signature: bool, key_encipherment: bool = False, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class IssuedCert:
    """A leaf certificate, its private key, and the intermediates between it and the root.

    ``chain`` holds the issuing intermediate CA certificates, nearest first, without the self-signed root (the
    peer has the root as its trust anchor; a TLS endpoint sends the leaf plus this chain).
    """

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def cert_pem(self) -> bytes:
        return _pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        """The key as unencrypted PKCS#8 PEM (file protection is by mode 0600, see :meth:`write_pem`)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def chain_pem(self) -> bytes:
        return b"".join(_pem(c) for c in self.chain)

    @property
    def fingerprint_sha256(self) -> str:
        return fingerprint_sha256(self.cert)

    def write_pem(self, cert_path: Path, key_path: Path, *, include_chain: bool = True) -> None:
        """Write the certificate (followed by the chain when ``include_chain``) and the key (mode 0600)."""
        data = self.cert_pem + (self.chain_pem if include_chain else b"")
        write_atomic(cert_path, data, mode=0o644)
        write_atomic(key_path, self.key_pem, mode=0o600)

    def write_p12(self, path: Path, password: bytes | None) -> None:
        """Write a PKCS#12 bundle (key, certificate, chain) with mode 0600; ``None`` means no encryption."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        data = pkcs12.serialize_key_and_certificates(
            name=self.cert.subject.rfc4514_string().encode(),
            key=self.key,
            cert=self.cert,
            cas=list(self.chain) or None,
            encryption_algorithm=encryption,
        )
        write_atomic(path, data, mode=0o600)


@dataclass(frozen=True)
class CertificateAuthority:
    """A root or intermediate CA that issues server and client certificates and CRLs."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    parent: CertificateAuthority | None = None

    @classmethod
    def create(
        cls,
        common_name: str,
        *,
        valid_days: int = 3650,
        key_type: KeyType = "ec",
        parent: CertificateAuthority | None = None,
    ) -> CertificateAuthority:
        """A self-signed root, or an intermediate signed by ``parent``.

        BasicConstraints (CA) and KeyUsage (keyCertSign, cRLSign) are critical, as RFC 5280 §4.2.1.9
        requires for a CA that signs certificates; intermediates carry an AKI so that path building finds
        their issuer.
        """
        key = _new_key(key_type)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        issuer_name = parent.cert.subject if parent else subject
        signing_key: PrivateKey = parent.key if parent else key
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True, ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        if parent is not None:
            builder = builder.add_extension(parent._authority_key_identifier(), critical=False)
        cert = builder.sign(signing_key, hashes.SHA256())
        return cls(cert=cert, key=key, parent=parent)

    @property
    def cert_pem(self) -> bytes:
        return _pem(self.cert)

    @property
    def is_root(self) -> bool:
        return self.parent is None

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """This CA and its ancestors up to (not including) the root: what its certificates send along."""
        if self.parent is None:
            return ()
        return (self.cert, *self.parent.chain)

    @property
    def root(self) -> CertificateAuthority:
        return self if self.parent is None else self.parent.root

    def _authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    def _leaf_builder(
        self,
        subject: x509.Name,
        key: PrivateKey,
        not_before: datetime | None,
        not_after: datetime | None,
        valid_days: int,
    ) -> x509.CertificateBuilder:
        start = not_before if not_before is not None else _now() - _CLOCK_SKEW
        end = not_after if not_after is not None else start + _CLOCK_SKEW + timedelta(days=valid_days)
        if end <= start:
            raise ValueError("not_after must be later than not_before")
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(self._authority_key_identifier(), critical=False)
            .add_extension(
                _key_usage(digital_signature=True, key_encipherment=isinstance(key, rsa.RSAPrivateKey)),
                critical=True,
            )
        )

    def issue_server(
        self,
        hostnames: Sequence[str],
        *,
        valid_days: int = 825,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        key_type: KeyType = "ec",
    ) -> IssuedCert:
        """A TLS server certificate for DNS names and IP addresses (``"127.0.0.1"`` becomes an iPAddress SAN).

        The subject CN is the first hostname; clients match on the SAN only (RFC 6125), which is non-critical
        because the subject is not empty.
        """
        if not hostnames:
            raise ValueError("a server certificate needs at least one hostname")
        key = _new_key(key_type)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
        cert = (
            self._leaf_builder(subject, key, not_before, not_after, valid_days)
            .add_extension(x509.SubjectAlternativeName([_general_name(h) for h in hostnames]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCert(cert=cert, key=key, chain=self.chain)

    def issue_client(
        self,
        common_name: str,
        *,
        practice_id: str | None = None,
        organization: str | None = None,
        emails: Sequence[str] = (),
        dns: Sequence[str] = (),
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        valid_days: int = 825,
        key_type: KeyType = "ec",
    ) -> IssuedCert:
        """A TLS client certificate for a practice's edge system (Direct Edge Protocols IG §1.1, ETT tests 6-9; our practice-binding rule).

        Where things go:

        - ``common_name`` -> subject CN; ``organization`` -> subject O;
        - ``practice_id`` -> subject ``UID`` (userId, OID 0.9.2342.19200300.100.1.1), so a registry can map
          the certificate to a practice by a subject attribute;
        - ``emails`` -> SAN rfc822Name (a practice's Direct addresses), ``dns`` -> SAN dNSName.

        The SAN is never empty because cryptography's default client verifier refuses a certificate without
        one. With neither ``emails`` nor ``dns`` the SAN holds one URI, ``urn:xdr-edge:client:`` followed by
        the percent-encoded common name.
        """
        key = _new_key(key_type)
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        if practice_id:
            attributes.append(x509.NameAttribute(NameOID.USER_ID, practice_id))
        names: list[x509.GeneralName] = [x509.RFC822Name(e) for e in emails]
        names += [x509.DNSName(d) for d in dns]
        if not names:
            names.append(x509.UniformResourceIdentifier(CLIENT_URI_PREFIX + quote(common_name, safe="")))
        cert = (
            self._leaf_builder(x509.Name(attributes), key, not_before, not_after, valid_days)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCert(cert=cert, key=key, chain=self.chain)

    def crl(
        self, revoked: Sequence[x509.Certificate] = (), *, next_update_days: int = 7
    ) -> x509.CertificateRevocationList:
        """A CRL from this CA listing ``revoked`` (which must be certificates this CA issued).

        An empty CRL is still useful: with CRL checking on, OpenSSL refuses every certificate whose issuer has
        no current CRL loaded (OpenSSL's ``VERIFY_CRL_CHECK_LEAF`` needs one per issuer).
        """
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - timedelta(minutes=1))
            .next_update(now + timedelta(days=next_update_days))
            .add_extension(self._authority_key_identifier(), critical=False)
            .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
        )
        for cert in revoked:
            if cert.issuer != self.cert.subject:
                raise ValueError(f"certificate {cert.subject.rfc4514_string()} was not issued by this CA")
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(cert.serial_number)
                .revocation_date(now - timedelta(minutes=1))
                .build()
            )
        return builder.sign(self.key, hashes.SHA256())


def _general_name(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)
