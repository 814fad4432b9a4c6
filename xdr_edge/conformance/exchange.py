"""Raw HTTPS exchanges for the receiver catalogue: send exactly the bytes a case built, read what came back.

Why not :class:`xdr_edge.sender.client.XdrClient`: the client refuses to send what it would not send in production
(pre-flight validation, binding checks), and the suite must send deliberately wrong messages so that a peer's
failure to reject them is observable. Why not requests: a client-certificate refusal in TLS 1.3 arrives as an
alert on the first read, after the request went out; ``http.client`` lets us tell "refused at the TLS layer or
dropped before any HTTP response" from "answered with HTTP" precisely.

The server certificate is always verified against the given CA bundle (Direct Edge Protocols IG §1.1, ETT tests 6-9); a failure to verify it is
reported as such and never taken for the peer refusing us.
"""

from __future__ import annotations

__all__ = ["Exchange", "ExchangeKind", "post", "tls_context"]

import http.client
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from xdr_edge.certs import load_identity
from xdr_edge.practice import ClientCredential
from xdr_edge.protocol.classify import Reply, ReplyKind, classify_response
from xdr_edge.protocol.errors import ConfigurationError, RemoteProtocolError
from xdr_edge.protocol.wire import ParsedResponse
from xdr_edge.tls import client_ssl_context, verifying_client_context

MAX_REPLY_BYTES = 4 * 1024 * 1024


class ExchangeKind(str, Enum):
    """How an exchange ended, from the sender's point of view."""

    SUCCESS = "Success"
    PARTIAL = "PartialSuccess"
    FAILURE = "Failure"
    FAULT = "Fault"
    NOT_SOAP = "not SOAP"  # an HTTP answer that is neither a RegistryResponse nor a SOAP fault
    REFUSED = "refused"  # TLS alert, reset or close before any HTTP response
    SERVER_UNTRUSTED = "server certificate not verified"
    ERROR = "error"  # could not connect at all, timed out


@dataclass(frozen=True)
class Exchange:
    """One request and what came back."""

    message_id: str | None
    kind: ExchangeKind
    http_status: int | None = None
    content_type: str = ""
    reply: Reply | None = None
    problem: str = ""
    elapsed: float = 0.0

    @property
    def response(self) -> ParsedResponse | None:
        """The SOAP answer as read, when the peer's body was one."""
        return self.reply.parsed if self.reply is not None else None

    @property
    def error_codes(self) -> tuple[str, ...]:
        rr = self.response.registry_response if self.response is not None else None
        return tuple(e.error_code for e in rr.errors if e.is_error) if rr is not None else ()

    @property
    def relates_to(self) -> str | None:
        return self.response.envelope.relates_to if self.response is not None else None

    def describe(self) -> str:
        """A one-line summary for the report: ``HTTP 200 Failure [XDSRegistryMetadataError]``."""
        if self.kind in (ExchangeKind.REFUSED, ExchangeKind.SERVER_UNTRUSTED, ExchangeKind.ERROR):
            return f"{self.kind.value}: {self.problem}"
        head = f"HTTP {self.http_status} {self.kind.value}"
        if self.kind is ExchangeKind.FAULT and self.response is not None and self.response.fault is not None:
            fault = self.response.fault
            return head + f" {fault.code}" + (f" / {fault.subcode}" if fault.subcode else "")
        if self.error_codes:
            return head + " [" + ", ".join(dict.fromkeys(self.error_codes)) + "]"
        if self.kind is ExchangeKind.NOT_SOAP:
            return head + f" ({self.problem})"
        return head


def tls_context(ca_bundle: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """The client context of :mod:`xdr_edge.tls` trusting only ``ca_bundle``, presenting ``cert``/``key`` when
    given (PEM files, possibly an untrusted or expired certificate: the TLS cases want the server to see them).
    """
    if cert is None:
        return verifying_client_context(ca_bundle)
    return client_ssl_context(load_identity(ClientCredential(cert=cert, key=key)), ca_bundle)


def _split(endpoint: str) -> tuple[str, int, str]:
    url = urllib.parse.urlsplit(endpoint)
    if url.scheme != "https" or not url.hostname:
        raise ConfigurationError(f"endpoint must be an https:// URL, got {endpoint!r}", location="endpoint")
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    return url.hostname, url.port or 443, path


_KINDS = {
    ReplyKind.SUCCESS: ExchangeKind.SUCCESS,
    ReplyKind.PARTIAL_SUCCESS: ExchangeKind.PARTIAL,
    ReplyKind.FAILURE: ExchangeKind.FAILURE,
    ReplyKind.FAULT: ExchangeKind.FAULT,
    ReplyKind.NOT_SOAP: ExchangeKind.NOT_SOAP,
}


def _read_reply(response: http.client.HTTPResponse) -> bytes:
    data = response.read(MAX_REPLY_BYTES + 1)
    if len(data) > MAX_REPLY_BYTES:
        raise RemoteProtocolError(f"the reply is larger than {MAX_REPLY_BYTES} bytes", location="HTTP body")
    return data


def post(
    endpoint: str,
    context: ssl.SSLContext,
    content_type: str,
    body: bytes,
    *,
    message_id: str | None,
    timeout: float = 30.0,
) -> Exchange:
    """POST ``body`` to ``endpoint`` over ``context`` and classify the answer (never raises for what the peer
    does; only for a malformed endpoint URL)."""
    host, port, path = _split(endpoint)
    started = time.monotonic()

    def done(
        kind: ExchangeKind, problem: str, http_status: int | None = None, content_type: str = ""
    ) -> Exchange:
        return Exchange(
            message_id,
            kind,
            http_status=http_status,
            content_type=content_type,
            problem=problem,
            elapsed=time.monotonic() - started,
        )

    connection = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
    headers = {"Content-Type": content_type, "Content-Length": str(len(body)), "Connection": "close"}
    try:
        try:
            connection.connect()
        except ssl.SSLCertVerificationError as exc:
            return done(ExchangeKind.SERVER_UNTRUSTED, f"{exc.verify_message} (check --ca)")
        except ssl.SSLError as exc:
            return done(ExchangeKind.REFUSED, f"TLS handshake failed: {exc.reason or exc}")
        except (TimeoutError, ConnectionError, OSError) as exc:
            return done(ExchangeKind.ERROR, f"could not connect to {host}:{port}: {exc}")
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
        except ssl.SSLError as exc:
            return done(ExchangeKind.REFUSED, f"TLS error before any HTTP response: {exc.reason or exc}")
        except (ConnectionError, http.client.RemoteDisconnected) as exc:
            return done(
                ExchangeKind.REFUSED, f"connection closed before any HTTP response ({type(exc).__name__})"
            )
        except TimeoutError:
            return done(ExchangeKind.ERROR, f"no HTTP response within {timeout:g} s")
        except (http.client.HTTPException, OSError) as exc:
            return done(ExchangeKind.ERROR, f"HTTP exchange failed: {exc}")
        status = response.status
        reply_type = response.getheader("Content-Type", "") or ""
        try:
            data = _read_reply(response)
        except (RemoteProtocolError, OSError, http.client.HTTPException) as exc:
            return done(ExchangeKind.NOT_SOAP, f"reply unreadable: {exc}", http_status=status)
    finally:
        connection.close()
    reply = classify_response(status, reply_type, data, message_id=message_id or "", peer=endpoint)
    return Exchange(
        message_id,
        _KINDS[reply.kind],
        http_status=status,
        content_type=reply_type,
        reply=reply,
        problem=reply.problem,
        elapsed=time.monotonic() - started,
    )
