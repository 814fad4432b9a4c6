"""The exception hierarchy of xdr-edge.

Every error carries a machine-readable ``code`` (stable, kebab-case), a human ``message`` and, where it applies,
a ``location`` (an element path, a file name, a certificate subject). Errors raised while reading what a peer sent
also carry what the receiver must answer with: an XDS ``errorCode`` for a RegistryResponse Failure, or a SOAP 1.2
fault code (``Sender``, ``VersionMismatch``, ``MustUnderstand``) plus an optional WS-Addressing subcode
(ITI TF-3 4.2.4, ebRS 3.0-13). This mirrors h11's LocalProtocolError / RemoteProtocolError split: *we* built something invalid
versus *the peer* sent something invalid.

Library exceptions (``ssl.SSLError``, requests, zeep, lxml) are translated into these at one boundary per module,
``raise Ours(...) from exc``, so callers never have to catch third-party types.
"""

from __future__ import annotations

__all__ = [
    "STOP_REQUESTS",
    "CertificateError",
    "ConfigurationError",
    "LimitExceeded",
    "LocalProtocolError",
    "NotBound",
    "RemoteProtocolError",
    "SoapFaultError",
    "StoreError",
    "TransportError",
    "ValidationFailed",
    "XdrError",
]

from collections.abc import Sequence
from typing import TYPE_CHECKING

from xdr_edge.protocol.codes import METADATA_ERROR

if TYPE_CHECKING:
    from xdr_edge.protocol.findings import Finding


#: What a last line of defence (each WSGI app's, the CLI's) lets through: a request to stop the process.
#: Everything else is an internal error, including what is not an ``Exception``: a panic inside a Rust extension
#: (pyo3's ``PanicException``, raised by ``cryptography`` on inputs it did not expect, derives from
#: ``BaseException``) must cost one request its answer, not the connection without one or a traceback.
STOP_REQUESTS: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, GeneratorExit)


class XdrError(Exception):
    """Base of every error xdr-edge raises on purpose."""

    code: str = "xdr-error"

    def __init__(self, message: str, *, code: str | None = None, location: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.location = location

    def __str__(self) -> str:
        if self.location:
            return f"{self.message} (at {self.location})"
        return self.message

    def as_dict(self) -> dict[str, str | None]:
        """A JSON-ready form, for ``--json`` output and structured logs."""
        return {"code": self.code, "message": self.message, "location": self.location}


class ConfigurationError(XdrError):
    """A configuration file, option or practice definition is wrong; nothing was sent or received."""

    code = "configuration"


class LocalProtocolError(XdrError):
    """We were asked to build something that would be invalid on the wire (a caller's mistake)."""

    code = "local-protocol"


class RemoteProtocolError(XdrError):
    """The peer sent something invalid.

    ``xds_error_code`` says which RegistryError a receiver answers with; when ``fault_code`` is set the answer is
    a SOAP fault instead (SOAP-level and WS-Addressing errors, SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3).
    """

    code = "remote-protocol"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        location: str | None = None,
        xds_error_code: str = METADATA_ERROR,
        fault_code: str | None = None,
        fault_subcode: str | None = None,
        fault_detail: str | None = None,
        fault_subsubcode: str | None = None,
    ) -> None:
        super().__init__(message, code=code, location=location)
        self.xds_error_code = xds_error_code
        self.fault_code = fault_code
        self.fault_subcode = fault_subcode
        # A second-level subcode under fault_subcode (WS-Addressing 1.0 SOAP Binding §6.4.1 names the kind of
        # invalid header this way, e.g. wsa:ActionMismatch under wsa:InvalidAddressingHeader).
        self.fault_subsubcode = fault_subsubcode
        # What the fault's machine-readable detail names: the unsupported action (wsa:ProblemAction), or the
        # Clark name of a header block not understood (env:NotUnderstood).
        self.fault_detail = fault_detail
        # The request's MessageID when it could be read, so that even a fault answer correlates (wsa:RelatesTo).
        self.relates_to: str | None = None

    @property
    def is_fault(self) -> bool:
        return self.fault_code is not None


class LimitExceeded(RemoteProtocolError):
    """A configured limit (size, part count, header size) was exceeded by the peer's message."""

    code = "limit-exceeded"


class ValidationFailed(XdrError):
    """Metadata failed validation; ``findings`` lists every problem (errors and warnings)."""

    code = "validation-failed"

    def __init__(self, findings: Sequence[Finding], *, message: str | None = None) -> None:
        errors = [f for f in findings if f.is_error]
        if message is None:
            first = errors[0] if errors else None
            message = (
                f"{len(errors)} metadata error(s); first: {first.message} at {first.location}"
                if first
                else "metadata validation failed"
            )
        super().__init__(message)
        self.findings = list(findings)


class NotBound(XdrError):
    """A Direct address is not bound to the practice whose certificate is used (pre-flight or receiver)."""

    code = "sender-not-bound"


class CertificateError(XdrError):
    """A certificate or key could not be loaded, or is not acceptable (expired, untrusted, revoked, unknown)."""

    code = "certificate"


class TransportError(XdrError):
    """The exchange failed at the network or TLS level."""

    code = "transport"


class SoapFaultError(XdrError):
    """A SOAP fault read from a peer, raised where a fault cannot be returned as a value."""

    code = "soap-fault"


class StoreError(XdrError):
    """The receiver could not store a submission (disk full, permissions); nothing was kept."""

    code = "store"
