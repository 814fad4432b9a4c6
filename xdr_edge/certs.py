"""Certificates and client identities, for both sides: loading, description, fingerprints.

Owns reading X.509 material from bytes and files (PEM or DER certificates, PEM key files, PKCS#12 bundles) and
describing it for people and logs; and the one rule of which sender addresses a certificate covers. It builds
no TLS context (:mod:`xdr_edge.tls`) and decides no trust (the receiver's :mod:`xdr_edge.registry`). Key material
and passwords never appear in errors or logs: an error names the file (or what the bytes were) and a plain
reason, with a machine-readable code.
"""

from __future__ import annotations

__all__ = [
    "MAX_PKCS12_ITERATIONS",
    "CertificateInfo",
    "ClientIdentity",
    "FileSignature",
    "ParsedCredential",
    "certificate_names",
    "covered_by_certificate",
    "describe_certificate",
    "fingerprint_sha256",
    "identity_pem",
    "load_certificates",
    "load_identity",
    "parse_certificates",
    "parse_credential",
    "read_secret_file",
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

from xdr_edge.pfx import Pkcs12Unreadable, key_derivation_iterations
from xdr_edge.practice import Binding, ClientCredential
from xdr_edge.protocol.errors import CertificateError
from xdr_edge.protocol.model import DirectAddress

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


def certificate_names(cert: x509.Certificate, binding: Binding) -> bool:
    """Whether the certificate itself names this address or domain: the address, or its domain (an
    organization certificate), as SAN rfc822Name, or the domain as dNSName (Direct Applicability Statement
    §4, "XDR and XDM for Direct Messaging" §3). A domain binding is named only by the bare domain.

    Unlike :func:`covered_by_certificate` a certificate that names nothing names nothing: this is the rule for
    letting someone claim an address."""
    emails, dns, _ = san_values(cert)
    return _names(emails, dns, binding)


def _names(emails: tuple[str, ...], dns: tuple[str, ...], binding: Binding) -> bool:
    email_names = {e.lower() for e in emails}
    dns_names = {d.lower().rstrip(".") for d in dns}
    if binding.address is not None:
        if binding.address.address.lower() in email_names:
            return True
        domain = binding.address.domain
    else:
        assert binding.domain is not None
        domain = binding.domain
    return domain in email_names or domain in dns_names


def covered_by_certificate(identity: ClientIdentity, address: DirectAddress) -> bool:
    """The sending side's rule: True when the certificate names no addresses or domains, or names this address
    or its domain (:func:`certificate_names`).

    Direct certificates carry the address (or, for organization certificates, the bare domain) as SAN
    rfc822Name, and sometimes the domain as dNSName (Direct Applicability Statement §4); a certificate naming
    none is the operator's own configuration, trusted as it stands."""
    if not identity.san_emails and not identity.san_dns:
        return True
    return _names(identity.san_emails, identity.san_dns, Binding(address=address))


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
        _check_readable(data, 1, location)
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
    for number, cert in enumerate(certs, 1):
        _check_readable(cert, number, location)
    return certs


#: The parts of a certificate we read, and where RFC 5280 defines them. cryptography parses each only when it is
#: first asked for, so a certificate that loads may still hold a field that does not parse.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("serial number", "§4.1.2.2"),
    ("issuer name", "§4.1.2.4"),
    ("validity", "§4.1.2.5"),
    ("subject name", "§4.1.2.6"),
    ("public key", "§4.1.2.7"),
    ("extensions", "§4.1.2.9"),
)


def _read_field(cert: x509.Certificate, name: str) -> object:
    if name == "serial number":
        return cert.serial_number
    if name == "issuer name":
        return cert.issuer.rfc4514_string()
    if name == "validity":
        return (cert.not_valid_before_utc, cert.not_valid_after_utc)
    if name == "subject name":
        return cert.subject.rfc4514_string()
    if name == "public key":
        return cert.public_key()
    return list(cert.extensions)


def _check_readable(cert: x509.Certificate, number: int, location: str | None) -> None:
    """Parse every part of ``cert`` we read, once, here: a field that does not parse is a
    :class:`CertificateError` (``certificate-field-unreadable``) naming the certificate and the field, not a
    ValueError from deep inside whatever reads it first (a registry message, a key-pair check)."""
    for name, section in _FIELDS:
        try:
            _read_field(cert, name)
        except (ValueError, UnsupportedAlgorithm):
            raise CertificateError(
                f"certificate {number}: its {name} cannot be read (RFC 5280 {section})",
                code="certificate-field-unreadable",
                location=location,
            ) from None


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


def _check_pair(cert: x509.Certificate, key: PrivateKeyTypes, location: str | None) -> None:
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise CertificateError("key does not match certificate", code="key-mismatch", location=location)


def read_secret_file(path: Path) -> bytes:
    """A password or passphrase kept in a file: its bytes without one trailing newline (``\\n`` or ``\\r\\n``).

    The one reader of such files, so that the passphrase a file is checked with, the one a PKCS#12 is written
    with and the one it is read back with are always the same bytes (an editor's second blank line is part of
    the passphrase, consistently)."""
    data = _read(path)
    return data.removesuffix(b"\n").removesuffix(b"\r")


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
        return read_secret_file(credential.p12_password_file)
    return None


#: The most PKCS#12 key-derivation iterations (MAC, encrypted contents and shrouded keys added up) that
#: :func:`parse_credential` runs for bytes from elsewhere: about half a second of CPU. Common tools write a few
#: thousand to a few hundred thousand (OpenSSL 3: 2,048 each; cryptography's best available: 20,000).
MAX_PKCS12_ITERATIONS = 2_000_000


@dataclass(frozen=True)
class ParsedCredential:
    """A client certificate with its private key (checked to match) and the chain that came with it."""

    cert: x509.Certificate
    key: PrivateKeyTypes = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()


def _parse_pkcs12(
    data: bytes, password: bytes | None, location: str | None, max_iterations: int | None
) -> ParsedCredential:
    if max_iterations is not None:
        try:
            iterations = key_derivation_iterations(data)
        except Pkcs12Unreadable as exc:
            raise CertificateError(
                f"not a PKCS#12 file this server reads: {exc}", code="pkcs12-unreadable", location=location
            ) from None
        if iterations > max_iterations:
            raise CertificateError(
                f"the PKCS#12 file asks for {iterations} key-derivation iterations; at most {max_iterations} "
                "are run for a file from elsewhere (export it again with the tool's default settings)",
                code="pkcs12-too-costly",
                location=location,
            )
    if password is not None and b"\0" in password:
        # OpenSSL takes the password as a C string: no file's password holds a NUL, and cryptography panics
        # on one (a pyo3 PanicException, not a ValueError) instead of refusing it.
        raise CertificateError(
            "wrong PKCS#12 password (it contains a NUL character, which no PKCS#12 password can)",
            code="pkcs12-unreadable",
            location=location,
        )
    try:
        bundle = pkcs12.load_pkcs12(data, password)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CertificateError(
            "wrong PKCS#12 password or corrupt file", code="pkcs12-unreadable", location=location
        ) from None
    if bundle.cert is None or bundle.key is None:
        raise CertificateError(
            "PKCS#12 file holds no certificate with its key", code="pkcs12-incomplete", location=location
        )
    chain = tuple(c.certificate for c in bundle.additional_certs)
    return ParsedCredential(bundle.cert.certificate, bundle.key, chain)


def _parse_pem_key(data: bytes, location: str | None) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertificateError(
            "key file is encrypted; use an unencrypted key file readable only by this user, or PKCS#12",
            code="key-encrypted",
            location=location,
        ) from None
    except UnsupportedAlgorithm:
        raise CertificateError(
            "the private key uses an algorithm or curve this server does not support",
            code="key-unsupported",
            location=location,
        ) from None
    except ValueError:
        raise CertificateError(
            "not a PEM private key file", code="key-unreadable", location=location
        ) from None


def parse_credential(
    *,
    certificate: bytes | None = None,
    key: bytes | None = None,
    pkcs12_data: bytes | None = None,
    password: bytes | None = None,
    location: str | None = None,
    max_pkcs12_iterations: int | None = MAX_PKCS12_ITERATIONS,
) -> ParsedCredential:
    """A client credential from bytes: PEM ``certificate`` (leaf first, chain may follow) with its PEM ``key``,
    or one PKCS#12 bundle (``pkcs12_data``, with ``password``).

    The key must belong to the certificate. A PKCS#12 is opened only when the key derivations it asks for add up
    to at most ``max_pkcs12_iterations`` (None: no limit, for the operator's own files). Errors are
    :class:`CertificateError` with a code naming what is wrong (``certificate-unreadable``, ``key-encrypted``,
    ``certificate-field-unreadable``, ``key-unreadable``, ``key-unsupported``, ``key-mismatch``, ``pkcs12-unreadable``, ``pkcs12-incomplete``,
    ``pkcs12-too-costly``) and ``location`` as given; never key material or the password.
    """
    if (pkcs12_data is None) == (certificate is None or key is None) or (
        pkcs12_data is not None and (certificate is not None or key is not None)
    ):
        raise ValueError("give either certificate and key, or pkcs12_data")
    if pkcs12_data is not None:
        parsed = _parse_pkcs12(pkcs12_data, password, location, max_pkcs12_iterations)
        for number, cert in enumerate((parsed.cert, *parsed.chain), 1):
            _check_readable(cert, number, location)
    else:
        assert certificate is not None and key is not None
        try:
            certs = parse_certificates(certificate, location=location)
        except CertificateError as exc:
            code = exc.code if exc.code == "certificate-field-unreadable" else "certificate-unreadable"
            raise CertificateError(exc.message, code=code, location=location) from None
        parsed = ParsedCredential(certs[0], _parse_pem_key(key, location), tuple(certs[1:]))
    _check_pair(parsed.cert, parsed.key, location)
    return parsed


def _load_p12(credential: ClientCredential) -> ParsedCredential:
    assert credential.p12 is not None
    return _parse_pkcs12(_read(credential.p12), _p12_password(credential), str(credential.p12), None)


def _load_pem(credential: ClientCredential) -> ParsedCredential:
    assert credential.cert is not None and credential.key is not None
    certs = load_certificates(credential.cert)
    key = _parse_pem_key(_read(credential.key), str(credential.key))
    return ParsedCredential(certs[0], key, tuple(certs[1:]))


def load_identity(credential: ClientCredential) -> ClientIdentity:
    """Load a practice's client certificate, key and chain from PEM files or one PKCS#12 file.

    The PKCS#12 password comes only from ``credential.p12_password_env`` (an environment variable) or
    ``credential.p12_password_file`` (one trailing newline stripped), never from an argument: arguments
    show in ``ps`` and shell history. Errors name the file and a plain reason, never the password or key
    material.
    """
    signature = _file_signature(credential)
    loader = _load_p12 if credential.p12 is not None else _load_pem
    parsed = loader(credential)
    cert = parsed.cert
    location = str(credential.p12 if credential.p12 is not None else credential.key)
    _check_pair(cert, parsed.key, location)
    emails, dns, _ = san_values(cert)
    return ClientIdentity(
        cert=cert,
        key=parsed.key,
        chain=parsed.chain,
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
