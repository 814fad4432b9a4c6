"""Every ``ssl.SSLContext`` xdr-edge builds, sending and receiving: TLS >= 1.2, explicit trust, no switch off.

Rules (Direct Edge Protocols IG §1.1; ETT XDR tests 6-9 and 16-19):

- Edge and HISP authenticate each other with mutual TLS before any data is sent.
- Server certificates are verified against one explicit CA bundle, never the system or certifi store, and
  there is no switch to turn verification off; hostnames are checked against the SAN only (RFC 6125).
- An untrusted, expired or (with CRLs loaded) revoked client certificate is refused by the handshake itself.

Which practice a certificate belongs to is the registry's question; HTTP sessions are the sender's
(:mod:`xdr_edge.sender.sessions`). Key material never appears in errors or logs.
"""

from __future__ import annotations

__all__ = ["client_ssl_context", "server_ssl_context", "verifying_client_context"]

import os
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path

from xdr_edge.certs import ClientIdentity, identity_pem
from xdr_edge.protocol.errors import CertificateError


def _load_identity_into(context: ssl.SSLContext, identity: ClientIdentity) -> None:
    """``context.load_cert_chain`` from a private temporary file, removed before returning.

    Why a file: Python's ``ssl`` loads a certificate and key only from files (trustme's ``Blob.tempfile`` has the same reason). The file lives in a fresh directory of mode
    0700 and is itself created with mode 0600, so no other user can read the key while it exists.
    """
    directory = tempfile.mkdtemp(prefix="xdr-edge-identity-")
    path = os.path.join(directory, "identity.pem")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(identity_pem(identity))
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
    client_ca: Path | None,
    *,
    crls: Sequence[Path] = (),
    require_client_cert: bool = True,
) -> ssl.SSLContext:
    """The receiver's TLS >= 1.2 context: its certificate, and client certificates verified in the handshake.

    An untrusted or expired client certificate is refused by the handshake itself, not by a SOAP fault later
    (Direct Edge Protocols IG §1.1, ETT tests 9/19). With ``crls`` every issuing CA of a client needs a current CRL in
    them: OpenSSL then also refuses revoked clients (``VERIFY_CRL_CHECK_LEAF``).
    ``require_client_cert=False`` (``CERT_OPTIONAL``) is for a receiver behind a TLS-terminating proxy, and for
    the JSON API, where a client certificate is an optional extra; with no ``client_ca`` as well, no client
    certificate is asked for at all (the API's callers authenticate with passwords).
    """
    if client_ca is None and require_client_cert:
        raise CertificateError("a client CA is needed to require client certificates", location="client_ca")
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
    if client_ca is None:
        context.verify_mode = ssl.CERT_NONE
        return context
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    _load_trust(context, client_ca, "client CA")
    for crl in crls:
        _load_trust(context, crl, "CRL")
    if crls:
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context
