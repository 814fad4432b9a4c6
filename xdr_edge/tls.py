"""Per-practice TLS: client identities, SSL contexts, one requests session per practice, certificate info.

Owns every ``ssl.SSLContext`` xdr-edge builds (sending and receiving) and the sender's HTTP sessions. It does
not decide which practice a received certificate belongs to (the registry does) and builds no messages.

Rules (Direct Edge Protocols IG §1.1, ETT tests 6-9, ARCHITECTURE "Rules that keep it correct", STACK-NOTES "requests / urllib3"):

- Edge and HISP authenticate each other with mutual TLS before any data is sent (Direct Edge Protocols IG §1.1, ETT tests 6-9).
- One TLS identity per session: a practice's connection is never reused for another practice (CVE-2024-35195
  was exactly that in requests < 2.32). Each practice gets its own ``requests.Session``, its own adapter and
  its own ``SSLContext``; the pool is keyed by practice id and certificate fingerprint.
- Server certificates are verified against one explicit CA bundle, never the system or certifi store, and
  there is no switch to turn verification off.
- Key material and passwords never appear in errors or logs.
"""

from __future__ import annotations

__all__ = [
    "CertificateInfo",
    "ClientIdentity",
    "PracticeSession",
    "SessionPool",
    "client_ssl_context",
    "describe_certificate",
    "fingerprint_sha256",
    "load_certificates",
    "load_identity",
    "parse_certificates",
    "san_values",
    "server_ssl_context",
    "verifying_client_context",
]

import os
import ssl
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from requests.adapters import HTTPAdapter

from xdr_edge._version import __version__
from xdr_edge.practice import ClientCredential, Practice
from xdr_edge.protocol.errors import (
    CertificateError,
    ConfigurationError,
)

#: (path, inode, mtime_ns, size) of every file a credential was loaded from: the cheap "did it change?" check.
#: The inode catches a file replaced by rename within one coarse filesystem timestamp tick.
FileSignature = tuple[tuple[str, int, int, int], ...]

_USER_AGENT = f"xdr-edge/{__version__}"


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


def parse_certificates(data: bytes, *, location: str | None = None) -> list[x509.Certificate]:
    """Every certificate of PEM data (in order; a chain runs leaf first), or the one certificate of DER data.

    ``location`` names the file the bytes came from, for the error.
    """
    what = "not a PEM or DER X.509 certificate" + (" file" if location is not None else "")
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
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


def _identity_pem(identity: ClientIdentity) -> bytes:
    key = identity.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    certs = (identity.cert, *identity.chain)
    return key + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _load_identity_into(context: ssl.SSLContext, identity: ClientIdentity) -> None:
    """``context.load_cert_chain`` from a private temporary file, removed before returning.

    Why a file: Python's ``ssl`` loads a certificate and key only from files (STACK-NOTES "requests /
    urllib3"; trustme's ``Blob.tempfile`` has the same reason). The file lives in a fresh directory of mode
    0700 and is itself created with mode 0600, so no other user can read the key while it exists.
    """
    directory = tempfile.mkdtemp(prefix="xdr-edge-identity-")
    path = os.path.join(directory, "identity.pem")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(_identity_pem(identity))
        context.load_cert_chain(path)
    except ssl.SSLError as exc:
        raise CertificateError(
            f"TLS library refused the client certificate or key ({exc.reason})", location=identity.subject
        ) from None
    finally:
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(directory)


def _load_trust(context: ssl.SSLContext, ca_file: Path, what: str) -> None:
    if not Path(ca_file).is_file():
        raise CertificateError(f"{what} file not found", location=str(ca_file))
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except ssl.SSLError as exc:
        raise CertificateError(
            f"{what} is not a PEM certificate file ({exc.reason})", location=str(ca_file)
        ) from None


def verifying_client_context(ca_bundle: Path) -> ssl.SSLContext:
    """A TLS >= 1.2 client context trusting only the CAs in ``ca_bundle``, presenting no certificate yet.

    Hostname checking is on and uses the SAN only (RFC 6125); no system or certifi certificates are loaded, so
    a server certificate from any CA outside the bundle fails the handshake (Direct Edge Protocols IG §1.1, ETT tests 6-9, ETT tests 7/17). On its
    own only for probing how a server treats a client without a certificate (conformance); sending uses
    :func:`client_ssl_context`.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.hostname_checks_common_name = False
    context.verify_mode = ssl.CERT_REQUIRED
    _load_trust(context, ca_bundle, "CA bundle")
    return context


def client_ssl_context(identity: ClientIdentity, ca_bundle: Path) -> ssl.SSLContext:
    """:func:`verifying_client_context` presenting ``identity``."""
    context = verifying_client_context(ca_bundle)
    _load_identity_into(context, identity)
    return context


def server_ssl_context(
    cert: Path,
    key: Path,
    client_ca: Path,
    *,
    crls: Sequence[Path] = (),
    require_client_cert: bool = True,
) -> ssl.SSLContext:
    """The receiver's TLS >= 1.2 context: its certificate, and client certificates verified in the handshake.

    An untrusted or expired client certificate is refused by the handshake itself, not by a SOAP fault later
    (Direct Edge Protocols IG §1.1, ETT tests 9/19). With ``crls`` every issuing CA of a client needs a current CRL in
    them: OpenSSL then also refuses revoked clients (``VERIFY_CRL_CHECK_LEAF``, STACK-NOTES "cryptography").
    ``require_client_cert=False`` (``CERT_OPTIONAL``) is only for a receiver behind a TLS-terminating proxy.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for path, what in ((cert, "server certificate"), (key, "server key")):
        if not Path(path).is_file():
            raise CertificateError(f"{what} file not found", location=str(path))
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        raise CertificateError(
            f"server certificate or key refused ({exc.reason}); does the key match the certificate?",
            location=str(cert),
        ) from None
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    _load_trust(context, client_ca, "client CA")
    for crl in crls:
        _load_trust(context, crl, "CRL")
    if crls:
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


# ----------------------------------------------------------------------------------------------------------
# Sessions (sending side)


class _PracticeAdapter(HTTPAdapter):
    """An adapter whose every connection (direct or through a proxy) uses one practice's ``SSLContext``.

    ``send`` forces ``verify`` to the CA bundle path whatever the caller passed: with a custom context and
    ``verify=True`` requests would load certifi's ~145 public CAs into it (``HTTPAdapter.cert_verify`` sets
    ``conn.ca_certs`` to certifi, urllib3 then calls ``load_verify_locations`` on our context), and with
    ``verify=False`` urllib3 would set ``CERT_NONE`` on it. With the bundle path, urllib3 loads only that
    bundle, which the context already trusts. ``cert`` is forced to ``None``: the identity is in the context.
    """

    def __init__(self, ssl_context: ssl.SSLContext, ca_bundle: str) -> None:
        self._ssl_context = ssl_context
        self._ca_bundle = ca_bundle
        super().__init__(pool_connections=1, pool_maxsize=4, max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self._ssl_context
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request, stream=stream, timeout=timeout, verify=self._ca_bundle, cert=None, proxies=proxies
        )


class PracticeSession:
    """One practice's HTTPS session: its own ``requests.Session``, adapter and ``SSLContext``.

    Only ``https://`` is mounted (a plain ``http://`` URL fails); ``trust_env`` is off so that
    ``REQUESTS_CA_BUNDLE``, proxy variables and ``.netrc`` from the environment cannot change trust or
    routing; redirects are never followed (a redirected PnR would resend PHI to another host).
    """

    def __init__(self, practice_id: str, identity: ClientIdentity, ca_bundle: Path) -> None:
        self.practice_id = practice_id
        self.identity = identity
        self.ca_bundle = Path(ca_bundle)
        self._verify = str(self.ca_bundle)
        context = client_ssl_context(identity, self.ca_bundle)
        session = requests.Session()
        session.trust_env = False
        session.verify = self._verify
        # Redirects are refused by allow_redirects=False in post(). max_redirects stays 1, not 0: with
        # allow_redirects=False requests still prepares the next request lazily (Session.send sets
        # ``r._next``), and 0 would make that raise TooManyRedirects, hiding the 3xx the caller must report.
        session.max_redirects = 1
        session.headers["User-Agent"] = _USER_AGENT
        session.adapters.clear()
        session.mount("https://", _PracticeAdapter(context, self._verify))
        self._session = session
        self._context = context

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The context every connection of this session uses (for inspection; do not modify it)."""
        return self._context

    @property
    def key(self) -> tuple[str, str]:
        """``(practice id, certificate fingerprint)``: the identity this session's connections carry."""
        return (self.practice_id, self.identity.fingerprint_sha256)

    def post(
        self,
        url: str,
        data: Any,
        headers: Mapping[str, str],
        timeout: float | tuple[float, float],
    ) -> requests.Response:
        """POST ``data`` (bytes or a re-iterable body with ``__len__``) without following redirects.

        requests exceptions propagate unchanged: the caller (``client.py``) classifies them, because whether a
        failure may be retried depends on whether any byte was sent (ARCHITECTURE "Rules").
        """
        if not url.lower().startswith("https://"):
            raise ConfigurationError(f"endpoint must be an https:// URL, got {url!r}")
        return self._session.post(
            url,
            data=data,
            headers=dict(headers),
            timeout=timeout,
            allow_redirects=False,
            verify=self._verify,
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PracticeSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SessionPool:
    """Thread-safe ``PracticeSession`` per practice, rebuilt when the practice's credential files change.

    Each call to :meth:`session_for` re-checks the size and mtime of the credential files (two ``stat``
    calls); when they changed, the identity is reloaded and a new session replaces the old one, which is
    closed. So a renewed certificate is used from the next send on, without a restart, and pooled connections
    made with the old certificate are never reused (requests keys its pools by certificate *path*,
    STACK-NOTES). A session belongs to exactly one practice id; the lock makes sure two threads never build
    two sessions for one.
    """

    def __init__(self, ca_bundle: Path) -> None:
        self.ca_bundle = Path(ca_bundle)
        self._lock = threading.Lock()
        self._sessions: dict[str, PracticeSession] = {}

    def session_for(self, practice: Practice) -> PracticeSession:
        credential = practice.credential
        if credential is None:
            raise ConfigurationError(f"practice {practice.id!r} has no client certificate configured")
        with self._lock:
            current = self._sessions.get(practice.id)
            if (
                current is not None
                and current.identity.credential == credential
                and current.identity.is_current()
            ):
                return current
            session = PracticeSession(practice.id, load_identity(credential), self.ca_bundle)
            self._sessions[practice.id] = session
        if current is not None:
            current.close()
        return session

    def close(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()

    def __enter__(self) -> SessionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
