"""Certificates and client identities, for both sides: loading, description, fingerprints.

Owns reading X.509 material from bytes and files (PEM or DER certificates, PEM key files, PKCS#12 bundles) and
describing it for people and logs. It builds no TLS context (:mod:`xdr_edge.tls`) and decides no trust (the
receiver's :mod:`xdr_edge.registry`). Key material and passwords never appear in errors or logs: an error names
the file and a plain reason.
"""

from __future__ import annotations

__all__ = [
    "CertificateInfo",
    "ClientIdentity",
    "FileSignature",
    "describe_certificate",
    "fingerprint_sha256",
    "identity_pem",
    "load_certificates",
    "load_identity",
    "parse_certificates",
    "san_values",
]

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from xdr_edge.practice import ClientCredential
from xdr_edge.protocol.errors import CertificateError

#: (path, inode, mtime_ns, size) of every file a credential was loaded from: the cheap "did it change?" check.
#: The inode catches a file replaced by rename within one coarse filesystem timestamp tick.
FileSignature = tuple[tuple[str, int, int, int], ...]


# ----------------------------------------------------------------------------------------------------------
# Certificate inspection (both sides)


@dataclass(frozen=True)
class CertificateInfo:
    """What people and logs need to know about a certificate (never the key)."""

    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    san_emails: tuple[str, ...]
    san_dns: tuple[str, ...]
    san_uris: tuple[str, ...]
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    is_ca: bool

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form for ``--json`` output (datetimes as ISO 8601 strings)."""
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "fingerprint_sha256": self.fingerprint_sha256,
            "san_emails": list(self.san_emails),
            "san_dns": list(self.san_dns),
            "san_uris": list(self.san_uris),
            "key_usage": list(self.key_usage),
            "extended_key_usage": list(self.extended_key_usage),
            "is_ca": self.is_ca,
        }


_KEY_USAGE_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the DER certificate (nginx's ``$ssl_client_fingerprint`` is SHA-1)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def san_values(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The SAN's (e-mail addresses, DNS names, URIs) as written in the certificate; empty without a SAN."""
    san: x509.SubjectAlternativeName | None = _extension(cert, x509.SubjectAlternativeName)
    if san is None:
        return (), (), ()
    return (
        tuple(san.get_values_for_type(x509.RFC822Name)),
        tuple(san.get_values_for_type(x509.DNSName)),
        tuple(san.get_values_for_type(x509.UniformResourceIdentifier)),
    )


def _key_usage_names(cert: x509.Certificate) -> tuple[str, ...]:
    ku: x509.KeyUsage | None = _extension(cert, x509.KeyUsage)
    if ku is None:
        return ()
    names = [name for name in _KEY_USAGE_FLAGS if getattr(ku, name)]
    if ku.key_agreement:
        names += [name for name in ("encipher_only", "decipher_only") if getattr(ku, name)]
    return tuple(names)


def _eku_names(cert: x509.Certificate) -> tuple[str, ...]:
    eku: x509.ExtendedKeyUsage | None = _extension(cert, x509.ExtendedKeyUsage)
    if eku is None:
        return ()
    names = []
    for oid in eku:
        name = oid._name
        names.append(oid.dotted_string if name == "Unknown OID" else name)
    return tuple(names)


def describe_certificate(cert: x509.Certificate) -> CertificateInfo:
    """Subject, issuer, validity, fingerprint, SANs and usages of ``cert``, as plain values."""
    emails, dns, uris = san_values(cert)
    bc: x509.BasicConstraints | None = _extension(cert, x509.BasicConstraints)
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint_sha256=fingerprint_sha256(cert),
        san_emails=emails,
        san_dns=dns,
        san_uris=uris,
        key_usage=_key_usage_names(cert),
        extended_key_usage=_eku_names(cert),
        is_ca=bool(bc is not None and bc.ca),
    )


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise CertificateError("file not found", location=str(path)) from exc
    except OSError as exc:
        raise CertificateError(f"cannot read file: {exc.strerror}", location=str(path)) from exc


def parse_certificates(
    data: bytes | str | x509.Certificate, *, location: str | None = None
) -> list[x509.Certificate]:
    """Every certificate of PEM data (in order; a chain runs leaf first), or the one certificate of DER data.

    Also takes PEM text or a parsed certificate, so that library callers can pass what they have. ``location``
    names the file the bytes came from, for the error.
    """
    if isinstance(data, x509.Certificate):
        return [data]
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    what = "not a PEM or DER X.509 certificate" + (" file" if location is not None else "")
    try:
        if b"-----BEGIN" in raw:
            certs = x509.load_pem_x509_certificates(raw)
        else:
            certs = [x509.load_der_x509_certificate(raw)]
    except ValueError as exc:
        raise CertificateError(what, location=location) from exc
    if not certs:
        raise CertificateError(f"{what}: no certificate in the PEM data", location=location)
    return certs


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file (in file order), or the one certificate of a DER file."""
    return parse_certificates(_read(path), location=str(path))


# ----------------------------------------------------------------------------------------------------------
# Client identities (sending side)


@dataclass(frozen=True)
class ClientIdentity:
    """A practice's loaded client certificate, key and chain, plus where they came from.

    ``signature`` records size and mtime of the source files at load time so that a replaced certificate is
    noticed (:meth:`is_current`) and picked up without a restart.
    """

    cert: x509.Certificate
    key: PrivateKeyTypes = field(repr=False)
    chain: tuple[x509.Certificate, ...]
    fingerprint_sha256: str
    subject: str
    not_before: datetime
    not_after: datetime
    san_emails: tuple[str, ...]
    san_dns: tuple[str, ...]
    credential: ClientCredential
    signature: FileSignature

    def is_current(self) -> bool:
        """False when a source file was replaced, resized, touched or removed since loading."""
        return _file_signature(self.credential) == self.signature


def _credential_files(credential: ClientCredential) -> tuple[Path, ...]:
    if credential.p12 is not None:
        extra = (credential.p12_password_file,) if credential.p12_password_file is not None else ()
        return (credential.p12, *extra)
    assert credential.cert is not None and credential.key is not None  # guaranteed by ClientCredential
    return (credential.cert, credential.key)


def _file_signature(credential: ClientCredential) -> FileSignature:
    entries = []
    for path in _credential_files(credential):
        try:
            st = Path(path).stat()
        except OSError:
            entries.append((str(path), -1, -1, -1))
        else:
            entries.append((str(path), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(entries)


def _public_der(key: Any) -> bytes:
    der: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def _check_pair(cert: x509.Certificate, key: PrivateKeyTypes, location: str) -> None:
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise CertificateError("key does not match certificate", location=location)


def _p12_password(credential: ClientCredential) -> bytes | None:
    """The PKCS#12 password from the named environment variable or file; ``None`` for an unencrypted file."""
    if credential.p12_password_env is not None:
        value = os.environ.get(credential.p12_password_env)
        if value is None:
            raise CertificateError(
                f"environment variable {credential.p12_password_env} (PKCS#12 password) is not set",
                location=str(credential.p12),
            )
        return value.encode()
    if credential.p12_password_file is not None:
        data = _read(credential.p12_password_file)
        return data.removesuffix(b"\n").removesuffix(b"\r")
    return None


def _load_p12(
    credential: ClientCredential,
) -> tuple[x509.Certificate, PrivateKeyTypes, list[x509.Certificate]]:
    assert credential.p12 is not None
    location = str(credential.p12)
    data = _read(credential.p12)
    password = _p12_password(credential)
    try:
        bundle = pkcs12.load_pkcs12(data, password)
    except (ValueError, TypeError):
        raise CertificateError("wrong PKCS#12 password or corrupt file", location=location) from None
    if bundle.cert is None or bundle.key is None:
        raise CertificateError("PKCS#12 file holds no certificate with its key", location=location)
    chain = [c.certificate for c in bundle.additional_certs]
    return bundle.cert.certificate, bundle.key, chain


def _load_pem(
    credential: ClientCredential,
) -> tuple[x509.Certificate, PrivateKeyTypes, list[x509.Certificate]]:
    assert credential.cert is not None and credential.key is not None
    certs = load_certificates(credential.cert)
    key_location = str(credential.key)
    try:
        key = serialization.load_pem_private_key(_read(credential.key), password=None)
    except TypeError:
        raise CertificateError(
            "key file is encrypted; use an unencrypted key file readable only by this user, or PKCS#12",
            location=key_location,
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError("not a PEM private key file", location=key_location) from None
    return certs[0], key, certs[1:]


def load_identity(credential: ClientCredential) -> ClientIdentity:
    """Load a practice's client certificate, key and chain from PEM files or one PKCS#12 file.

    The PKCS#12 password comes only from ``credential.p12_password_env`` (an environment variable) or
    ``credential.p12_password_file`` (one trailing newline stripped), never from an argument: arguments
    show in ``ps`` and shell history. Errors name the file and a plain reason, never the password or key
    material.
    """
    signature = _file_signature(credential)
    loader = _load_p12 if credential.p12 is not None else _load_pem
    cert, key, chain = loader(credential)
    location = str(credential.p12 if credential.p12 is not None else credential.key)
    _check_pair(cert, key, location)
    emails, dns, _ = san_values(cert)
    return ClientIdentity(
        cert=cert,
        key=key,
        chain=tuple(chain),
        fingerprint_sha256=fingerprint_sha256(cert),
        subject=cert.subject.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        san_emails=emails,
        san_dns=dns,
        credential=credential,
        signature=signature,
    )


def identity_pem(identity: ClientIdentity) -> bytes:
    """Key (PKCS#8) then certificate and chain, as PEM: the one form ``ssl`` loads a client identity from."""
    key = identity.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    certs = (identity.cert, *identity.chain)
    return key + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
