"""Run the XDR edge app on cheroot: mutual TLS on our own socket, or plain HTTP on loopback behind a
TLS-terminating proxy that forwards the verified client certificate.

Why cheroot: it is the one pure-Python WSGI server that hands the verified peer certificate to the application
(``SSL_CLIENT_CERT``); gunicorn hides it, uvicorn/hypercorn do not expose it, waitress has no TLS.
Its TLS context is :func:`xdr_edge.tls.server_ssl_context`, which requires a client certificate from the
configured CA (and checks CRLs), so an untrusted or expired client certificate fails the handshake itself.

Four things cheroot does not do safely on its own, and this module changes:

* **The TLS handshake.** cheroot's builtin adapter shakes hands in its single accept thread, for up to the
  socket timeout: one TCP connection that sends nothing stalled every new client. Here the accept thread only
  wraps the socket; the connection then waits in cheroot's selector until the client speaks, and a worker thread
  completes the handshake within ``handshake_timeout`` (a client that never speaks is dropped after that long).
* **Chunked request bodies.** cheroot's decoder holds each chunk whole in memory and counts chunk-size lines
  against the size limit. Senders do use chunked uploads (Axis2, CONNECT), so they are accepted, through our own
  decoder that streams, enforces ``max_request_bytes`` on the decoded body (413) and refuses malformed framing.
* **Header size.** cheroot reads request headers without limit unless told; ``max_header_bytes`` tells it.
* **Header time.** cheroot gives each read of the request line and headers the full socket timeout, so a client
  sending one byte a second held a worker for as long as it liked (ten of them, every worker). Here the request
  line and headers must all arrive within ``header_timeout`` seconds, or the client gets a 408 and the
  connection is closed (:mod:`xdr_edge.receiver.deadlines`); the body has its own rate deadline.

What is left for any client with a trusted certificate: it can hold a worker for ``handshake_timeout`` plus
``header_timeout`` per connection before anyone knows which practice it is. Once its practice is known, the
app limits how many requests one practice has in progress (``max_requests_per_practice``). Bound how many
connections one address may open in the firewall or a proxy in front.
"""

from __future__ import annotations

__all__ = ["ServerConfig", "UploadTooSlow", "XdrServer"]

import contextlib
import logging
import re
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cheroot import errors as cheroot_errors
from cheroot import server as cheroot_server
from cheroot import wsgi
from cheroot.ssl import Adapter
from cheroot.ssl.builtin import BuiltinSSLAdapter

from xdr_edge.protocol.errors import CertificateError, ConfigurationError, LimitExceeded, RemoteProtocolError
from xdr_edge.receiver.deadlines import (
    BODY_DEADLINE_KEY,
    HeadersTooSlow,
    HeaderStream,
    PacedStream,
    UploadTooSlow,
)
from xdr_edge.tls import server_ssl_context

log = logging.getLogger("xdr_edge.receiver.server")

_PIECE = 64 * 1024  # the most our chunked decoder reads from the socket at once, whatever the chunk size
_MAX_CHUNK_LINE = 4096  # a chunk-size line with its extensions (RFC 9112 §7.1.1); real ones are a few bytes
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


@dataclass(frozen=True)
class ServerConfig:
    """Listening socket, TLS material and resource limits."""

    host: str = "127.0.0.1"
    port: int = 8443
    cert: Path | None = None  # server certificate (PEM, chain allowed); None only in proxy (plain HTTP) mode
    key: Path | None = None
    client_ca: Path | None = None  # CA bundle for client certificates
    # False: a client certificate is optional (verified against client_ca when one is given and sent), or not
    # asked for at all without client_ca. The JSON API's setting; the receiver always requires one.
    require_client_cert: bool = True
    crls: tuple[Path, ...] = ()
    threads: int = 10
    socket_timeout: float = 60.0  # a client that sends nothing for this long is dropped
    # The decoded size of a chunked body (our decoder refuses more, and the app answers 413). A declared
    # Content-Length is the app's to check, so that the refusal comes in the app's form (a SOAP fault).
    max_request_bytes: int = 2 * 1024**3
    plain_http: bool = False  # behind a TLS-terminating proxy
    # After refusing a request before its body was read, keep reading (and discarding) what the client still
    # sends for at most this long, so that it can finish writing and read our answer (a "lingering close").
    linger_seconds: float = 5.0
    # A new TLS connection must complete its handshake within this long (a client that connects and says
    # nothing is dropped); after it, socket_timeout applies.
    handshake_timeout: float = 10.0
    # The request line and all header fields must arrive within this long of the server starting to read them
    # (after the handshake, or when a kept-alive connection speaks again); a slower client gets 408.
    header_timeout: float = 5.0
    # Request line plus headers; more gets cheroot's 413 (414 for the request line) without reading the rest.
    max_header_bytes: int = 64 * 1024
    # The request body must keep up an average rate: it has upload_grace_seconds plus one second per
    # min_upload_bytes_per_second bytes received (Apache mod_reqtimeout's body=20,MinRate=500). Without it, the
    # socket timeout is per read: a client sending a byte a minute holds a worker thread indefinitely.
    upload_grace_seconds: float = 20.0
    min_upload_bytes_per_second: int = 500
    # Idle kept-alive connections held open at most (never fewer than threads); over it, an answer ends its
    # connection. A proxy in front keeps a pool of connections to each receiver (nginx: keepalive, per worker
    # process), which must fit in this: otherwise every answer past it makes nginx connect again (cheroot's
    # own default, 10, is below the pool of one nginx worker). An idle connection costs a descriptor, not a
    # thread.
    keep_alive_connections: int = 128

    def __post_init__(self) -> None:
        if self.plain_http:
            if self.host not in ("127.0.0.1", "::1", "localhost"):
                log.warning("plain HTTP on %s: only safe on loopback behind the TLS proxy", self.host)
            return
        needed = ("cert", "key", "client_ca") if self.require_client_cert else ("cert", "key")
        missing = [n for n in needed if getattr(self, n) is None]
        if missing:
            raise ConfigurationError(
                "mutual TLS needs "
                + ", ".join(missing)
                + " (--cert, --key, --client-ca; or --behind-proxy / proxy.enabled behind a TLS-terminating proxy)",
                location="server",
            )


def _error_log(msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
    exc = sys.exc_info()[1]
    if isinstance(exc, (ConnectionError, ssl.SSLEOFError)):
        # The peer left before our answer was written (cheroot logs that as a WARNING with a traceback): a
        # routine event on the Internet, one info line.
        log.info("%s: the peer closed the connection (%s)", msg, type(exc).__name__)
        return
    log.log(level, "%s", msg, exc_info=traceback)


# ----------------------------------------------------------------------------------------------------------
# TLS: wrap in the accept thread, shake hands in a worker


class _DeferredHandshakeAdapter(BuiltinSSLAdapter):  # type: ignore[misc,unused-ignore]  # cheroot: no hints
    """cheroot's builtin adapter around our own context, wrapping sockets *without* a handshake.

    Why: cheroot calls ``wrap`` in its only accept thread; the builtin ``wrap`` shakes hands there, for up to
    the socket timeout, so one silent TCP connection (no certificate needed) stalled every new client. The
    handshake is done by :class:`_TlsConnection` in a worker thread instead, and the TLS environ entries are
    made there once it succeeded.

    The context is built by the caller (:func:`~xdr_edge.tls.server_ssl_context`): the builtin constructor
    would load the key pair itself first and fail with OpenSSL's bare message, naming no file.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        Adapter.__init__(self, None, None)  # certificate paths: unused, the context is complete
        self.context = context
        self._server_env: dict[str, str] = {}  # SSL_SERVER_* entries: nothing in xdr-edge reads them

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, str]]:
        try:
            wrapped = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        except OSError as exc:  # the peer left already
            raise cheroot_errors.FatalSSLAlert(*exc.args) from exc
        return wrapped, {}


class _TlsConnection(cheroot_server.HTTPConnection):  # type: ignore[misc,unused-ignore]
    """A connection whose TLS handshake is completed by the worker thread that first serves it.

    A failed handshake (untrusted, expired or missing client certificate, plain HTTP, a peer that stalls
    mid-handshake past ``handshake_timeout``) is one log line and a closed connection, never an exception in
    the worker.
    """

    handshake_timeout: float = 10.0
    handshaken = False
    parked = False  # waited in the selector for its first bytes (see _Server.process_conn)

    def communicate(self) -> bool:
        if not self.handshaken and not self._handshake():
            return False
        return bool(super().communicate())  # type: ignore[no-untyped-call]

    def _handshake(self) -> bool:
        sock: ssl.SSLSocket = self.socket
        try:
            sock.settimeout(self.handshake_timeout)
            sock.do_handshake()
            sock.settimeout(self.server.timeout)
            self.ssl_env = self.server.ssl_adapter.get_environ(sock)
        except (OSError, ValueError) as exc:  # ssl.SSLError and socket timeouts are OSErrors
            log.info(
                "TLS handshake with %s:%s failed: %s",
                self.remote_addr,
                self.remote_port,
                _handshake_reason(exc),
            )
            if isinstance(exc, ssl.SSLError) and "http request" in str(exc).lower():
                _answer_plain_http(sock)
            return False
        self.handshaken = True
        return True


def _handshake_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no handshake within the handshake timeout"
    if isinstance(exc, ssl.SSLError):
        # e.g. CERTIFICATE_VERIFY_FAILED, HTTP_REQUEST, PEER_DID_NOT_RETURN_A_CERTIFICATE
        return str(exc.reason or exc)
    return f"{type(exc).__name__}: {exc}"


def _answer_plain_http(sock: ssl.SSLSocket) -> None:
    """A client that spoke plain HTTP to the TLS port gets a readable plain 400, as cheroot itself answers."""
    msg = b"The client sent a plain HTTP request, but this server only speaks HTTPS on this port.\n"
    head = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    try:
        # socket.socket's own sendall writes to the TCP socket underneath, bypassing the TLS layer
        socket.socket.sendall(sock, head + b"Content-Length: %d\r\n\r\n" % len(msg) + msg)
    except OSError:
        pass


class _Server(wsgi.Server):  # type: ignore[misc,unused-ignore]
    """cheroot's WSGI server, letting a new TLS connection wait in the selector until the client speaks.

    Why: cheroot hands every accepted connection straight to a worker. With the handshake moved there, N
    silent connections would hold all N workers for ``handshake_timeout``. Parked in cheroot's selector (the
    one that holds idle keep-alive connections) they cost no thread; a worker takes one only once bytes (or
    an EOF) arrived. A parked connection is expired after ``handshake_timeout`` instead of the socket timeout.
    Residual risk: a client that sends part of a ClientHello and stalls holds a worker for up to
    ``handshake_timeout`` (as a partial request line holds one for the socket timeout in any cheroot).
    """

    handshake_timeout: float = 10.0

    def process_conn(self, conn: Any) -> None:
        if isinstance(conn, _TlsConnection) and not conn.parked and not conn.handshaken:
            conn.parked = True
            self.put_conn(conn)
            # put_conn stamps last_used = now; the selector expires what is older than `timeout`
            conn.last_used = time.time() - self.timeout + self.handshake_timeout
            return
        super().process_conn(conn)


# ----------------------------------------------------------------------------------------------------------
# The request line and headers, against a deadline


_DIGITS = re.compile(rb"[0-9]+")


# Fields a request may carry once: two Content-Lengths let a proxy in front and us frame the stream differently
# (request smuggling; RFC 9112 §6.3 makes differing values unrecoverable), and two Hosts are a 400 by RFC 9112
# §3.2. cheroot keeps the last of either without a word.
_SINGLE_FIELDS = frozenset({b"Content-Length", b"Host"})


class _SingleValuedFields(dict[bytes, bytes]):
    """The header dict cheroot's reader fills, refusing a second value of a field in :data:`_SINGLE_FIELDS` and
    a Content-Length that is not all digits (cheroot answers the ValueError with 400 and the message, and
    closes the connection)."""

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if key in _SINGLE_FIELDS and key in self:
            name = key.decode("ascii", "replace")
            raise ValueError(f"the request has more than one {name} header field (RFC 9112)")
        if key == b"Content-Length" and not _DIGITS.fullmatch(value):
            # Python's int() takes "+5", "1_000" and " 5 "; RFC 9110 §8.6 allows digits only, and a proxy in
            # front that frames such a request differently from us would let one request smuggle another.
            raise ValueError("Content-Length must be a number of digits (RFC 9110 8.6)")
        super().__setitem__(key, value)


class _DeadlineRequest(cheroot_server.HTTPRequest):  # type: ignore[misc,unused-ignore]  # cheroot: no hints
    """cheroot's request, reading its request line and headers within ``header_timeout`` seconds in all.

    cheroot reads them through ``conn.rfile`` (wrapped in its size check); for the duration of
    ``parse_request`` that is a :class:`~xdr_edge.receiver.deadlines.HeaderStream` over the same buffer, so
    nothing read is lost and the body is read as before. A client that is too slow gets a 408 with
    ``Connection: close`` and one log line; the connection is closed.
    """

    header_timeout: float = 5.0

    def parse_request(self) -> None:
        # cheroot's header reader fills this dict in place: ours refuses a repeated Content-Length or Host
        self.inheaders = _SingleValuedFields()
        conn = self.conn
        raw = conn.rfile
        idle = float(self.server.timeout)
        conn.rfile = HeaderStream(raw, conn.socket, timeout=self.header_timeout, idle=idle)
        try:
            super().parse_request()
        except HeadersTooSlow as exc:
            self.ready = False
            self.close_connection = True
            log.info("request from %s:%s refused with 408: %s", conn.remote_addr, conn.remote_port, exc)
            _answer_408(conn, str(exc))
        finally:
            conn.rfile = raw
            with contextlib.suppress(OSError):
                conn.socket.settimeout(idle)


def _answer_408(conn: Any, reason: str) -> None:
    body = f"{reason}\n".encode("ascii", "replace")
    head = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    try:
        conn.wfile.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        conn.wfile.flush()
    except (OSError, ValueError):
        pass  # the client is gone, or the socket is closed: nothing more to do


# ----------------------------------------------------------------------------------------------------------
# Chunked request bodies


class _ChunkedBody:
    """``wsgi.input`` for a ``Transfer-Encoding: chunked`` request, decoded from the connection as it is read.

    Why not cheroot's ``ChunkedRFile``: it reads each chunk whole into memory (one 200 MB chunk = 500 MB) and
    counts chunk-size lines against the size limit, so an oversized body surfaced as 400 or 500 instead of 413.
    Here at most ``_PIECE`` bytes are read from the socket at a time, so memory is bounded by what the caller
    asks for, never by a chunk size the peer declares. The decoded body may not exceed ``limit``: a chunk that
    would go past it raises :class:`LimitExceeded` (the app answers 413) before any of its bytes are read.
    Malformed framing raises :class:`RemoteProtocolError` with fault code Sender (a 400 fault); a connection
    that ends mid-body raises :class:`ConnectionError`, which the app reports as a client disconnect.

    ``finished`` is true once the last chunk and the trailer section were read: the connection is then
    positioned at the next request, so keep-alive works.
    """

    def __init__(self, rfile: Any, limit: int, max_trailer_bytes: int) -> None:
        self._rfile = rfile
        self._limit = limit
        self._max_trailer_bytes = max_trailer_bytes
        self._left = 0  # bytes of the current chunk not yet read
        self._error: Exception | None = None
        self.bytes_read = 0  # decoded body bytes handed out
        self.finished = False

    @property
    def failed(self) -> bool:
        """The framing was refused (or the limit hit): the connection cannot be reused."""
        return self._error is not None

    @property
    def closed(self) -> bool:  # the attribute the lingering close (and cheroot's ChunkedRFile) look at
        return self.finished

    def read(self, size: int | None = -1) -> bytes:
        want = sys.maxsize if size is None or size < 0 else size
        pieces: list[bytes] = []
        got = 0
        while got < want and self._advance():
            data = self._rfile.read(min(self._left, want - got, _PIECE))
            if not data:
                raise self._fail(ConnectionError("the connection closed in the middle of a chunk"))
            self._consumed(len(data))
            pieces.append(data)
            got += len(data)
        return b"".join(pieces)

    def readline(self, size: int | None = -1) -> bytes:
        want = sys.maxsize if size is None or size < 0 else size
        pieces: list[bytes] = []
        got = 0
        while got < want and self._advance():
            data = self._rfile.readline(min(self._left, want - got, _PIECE))
            if not data:
                raise self._fail(ConnectionError("the connection closed in the middle of a chunk"))
            self._consumed(len(data))
            pieces.append(data)
            got += len(data)
            if data.endswith(b"\n"):
                break
        return b"".join(pieces)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> _ChunkedBody:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    # -- framing (RFC 9112 §7.1) ------------------------------------------------------------------------------

    def _advance(self) -> bool:
        """Make chunk data available; False at the end of the body."""
        if self._error is not None:
            raise self._error
        while self._left == 0 and not self.finished:
            self._next_chunk()
        return not self.finished

    def _consumed(self, count: int) -> None:
        self._left -= count
        self.bytes_read += count
        if self._left == 0:
            crlf = self._rfile.read(2)
            if crlf != b"\r\n":
                if len(crlf) < 2:
                    raise self._fail(ConnectionError("the connection closed in the middle of a chunk"))
                raise self._fail(_framing_error("a chunk's data is not followed by CRLF"))

    def _next_chunk(self) -> None:
        line = self._line("chunk-size line")
        size_field = line.split(b";", 1)[0].strip(b" \t")
        if not _CHUNK_SIZE.fullmatch(size_field):
            raise self._fail(_framing_error(f"malformed chunk-size line {line[:40]!r}"))
        size = int(size_field, 16)
        if size == 0:
            self._read_trailers()
            self.finished = True
            return
        if self.bytes_read + size > self._limit:
            raise self._fail(
                LimitExceeded(
                    f"the chunked request body exceeds the limit of {self._limit} bytes",
                    code="request-too-large",
                    location="HTTP body",
                    fault_code="Sender",
                )
            )
        self._left = size

    def _read_trailers(self) -> None:
        """Read (and ignore) the trailer section up to its empty line; the app wants no trailer field."""
        total = 0
        while line := self._line("trailer section"):
            total += len(line) + 2
            if total > self._max_trailer_bytes:
                raise self._fail(
                    LimitExceeded(
                        f"the chunked body's trailer section exceeds {self._max_trailer_bytes} bytes",
                        code="request-too-large",
                        location="HTTP trailer section",
                        fault_code="Sender",
                    )
                )

    def _line(self, what: str) -> bytes:
        """One CRLF-terminated framing line, without its CRLF."""
        raw: bytes = self._rfile.readline(_MAX_CHUNK_LINE + 1)
        if not raw.endswith(b"\n"):
            if len(raw) > _MAX_CHUNK_LINE:
                raise self._fail(_framing_error(f"{what} longer than {_MAX_CHUNK_LINE} bytes"))
            raise self._fail(ConnectionError(f"the connection closed in the {what} of a chunked body"))
        if not raw.endswith(b"\r\n"):
            raise self._fail(_framing_error(f"{what} not terminated by CRLF"))
        return raw[:-2]

    def _fail(self, exc: Exception) -> Exception:
        self._error = exc
        return exc


def _framing_error(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"bad chunked transfer coding: {message}",
        code="bad-chunked-encoding",
        location="HTTP body",
        fault_code="Sender",
    )


# ----------------------------------------------------------------------------------------------------------
# WSGI gateway


class _ClosingGateway(wsgi.Gateway_10):  # type: ignore[misc,unused-ignore]  # cheroot: no type hints
    """cheroot's WSGI 1.0 gateway, honouring an application's ``Connection: close``, with our chunked decoder.

    Why: cheroot decides on its own whether to keep a connection, and when it keeps one it first *reads the
    rest of the request body* so that the next request starts at the right byte. A rejected client certificate
    or an oversized request must be refused before the body is read: when the app answers
    with ``Connection: close``, the connection is closed instead and the body is never processed.

    Closing a socket with unread bytes in its receive buffer makes the kernel send a TCP reset, and a client
    still busy writing its body (any client without ``Expect: 100-continue``: requests, http.client, curl
    for small bodies) then fails with a broken pipe and never reads the 413 or 403 we wrote. So, like nginx's
    ``lingering_close``, after the answer is flushed we read and discard what the client still sends, for at
    most ``linger_seconds`` (and one second of silence), then close. The bytes are never parsed or stored.
    """

    linger_seconds: float = 5.0
    linger_idle_seconds: float = 1.0
    max_request_bytes: int = 2 * 1024**3
    max_trailer_bytes: int = 64 * 1024
    upload_grace_seconds: float = 20.0
    min_upload_bytes_per_second: int = 500

    def get_environ(self) -> dict[str, Any]:  # type: ignore[override]  # cheroot's stub says None
        req = self.req
        paced = PacedStream(
            req.conn.rfile,
            req.conn.socket,
            grace=self.upload_grace_seconds,
            min_rate=self.min_upload_bytes_per_second,
            idle=float(req.server.timeout),
        )
        if req.chunked_read:
            req.rfile = _ChunkedBody(paced, self.max_request_bytes, self.max_trailer_bytes)
        elif isinstance(req.rfile, cheroot_server.KnownLengthRFile):
            req.rfile.rfile = paced  # cheroot's length accounting, our paced reads underneath
        env: dict[str, Any] = super().get_environ()  # type: ignore[no-untyped-call]
        env[BODY_DEADLINE_KEY] = paced.limit_total  # for an app's reads before it knows the caller
        if req.chunked_read and env.pop("CONTENT_LENGTH", None) is not None:
            # Both framings: Transfer-Encoding wins, and the connection must not be reused (RFC 9112 §6.1)
            req.close_connection = True
        return env

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        write = super().start_response(status, headers, exc_info)
        if any(k.lower() == "connection" and v.strip().lower() == "close" for k, v in headers):
            self.req.close_connection = True
        elif getattr(self.req.rfile, "remaining", 0) > _PIECE:
            # To keep the connection, cheroot would read the unread rest of a Content-Length body in one read,
            # into memory (it has no size limit of its own here: the app checks the declared length). Close
            # instead; the lingering close discards what the client still sends, piece by piece.
            self.req.close_connection = True
        elif isinstance(self.req.rfile, _ChunkedBody) and not self.req.rfile.finished:
            # A chunked body the app answered without reading (a refusal, /healthz): keeping the connection
            # would mean reading the rest first, at whatever pace the client sends it, up to the size limit,
            # with a worker held meanwhile. Close instead: the lingering close discards it for a bounded time.
            self.req.close_connection = True
        return write

    def respond(self) -> None:
        super().respond()
        req = self.req
        if req.close_connection:
            if not req.chunked_write and self.linger_seconds > 0:
                self._discard_unread_body()
            return
        try:
            # the body's pacing (which shortens the socket timeout) is over: keep-alive waits as usual
            req.conn.socket.settimeout(req.server.timeout)
        except OSError:
            pass

    def _discard_unread_body(self) -> None:
        req = self.req
        rfile = req.rfile
        if isinstance(rfile, _ChunkedBody):
            if rfile.finished:
                return  # the body was read up to its last chunk and trailers
            remaining: int | None = None
        else:
            remaining = getattr(rfile, "remaining", None)  # KnownLengthRFile
            if remaining == 0:
                return
        conn = req.conn
        deadline = time.monotonic() + self.linger_seconds
        discarded = 0
        try:
            conn.wfile.flush()
            conn.socket.settimeout(self.linger_idle_seconds)
            while time.monotonic() < deadline:
                size = 65536 if remaining is None else min(65536, remaining - discarded)
                if size <= 0:
                    break
                # From the socket itself: after a read timed out (a 408), Python's socket file refuses
                # every further read, and the client still writing would get a reset instead of our answer.
                data = conn.socket.recv(size)
                if not data:
                    break
                discarded += len(data)
        except (OSError, ValueError):
            pass  # the client hung up, went quiet, or the socket is already gone: nothing more to do
        log.debug("lingering close: discarded %d unread request bytes", discarded)


# ----------------------------------------------------------------------------------------------------------
# The server


class XdrServer:
    """A running cheroot server; ``start()`` serves on a background thread, ``stop()`` shuts it down."""

    def __init__(self, app: Any, config: ServerConfig) -> None:
        self.config = config
        # our context first: a bad certificate or key is reported naming its files (cheroot's own adapter
        # would load the pair first and fail with a bare OpenSSL message)
        context = None if config.plain_http else _tls_context(config)
        self._server = _Server(
            (config.host, config.port),
            app,
            numthreads=config.threads,
            timeout=int(config.socket_timeout),
            shutdown_timeout=5,
            server_name="xdr-edge",
        )
        # cheroot's own size check answers a Content-Length over its limit with a plain-text 413 before the app
        # is called, so a SOAP sender got no fault, no RelatesTo, and a rejected certificate was reported as a
        # size problem. The app checks the declared length itself and bounds what it reads (the receiver: its
        # MtomLimits budget; the JSON API: its body budgets), answering in its own form; a chunked body is
        # limited by our decoder (max_request_bytes), whose LimitExceeded the app answers too.
        self._server.max_request_body_size = 0
        self._server.max_request_header_size = config.max_header_bytes
        self._server.keep_alive_conn_limit = max(config.keep_alive_connections, config.threads)
        self._server.handshake_timeout = config.handshake_timeout
        self._server.gateway = type(
            "_Gateway",
            (_ClosingGateway,),
            {
                "linger_seconds": config.linger_seconds,
                "max_request_bytes": config.max_request_bytes,
                "max_trailer_bytes": config.max_header_bytes,
                "upload_grace_seconds": config.upload_grace_seconds,
                "min_upload_bytes_per_second": config.min_upload_bytes_per_second,
            },
        )
        # cheroot writes connection-level events (a refused TLS handshake, a dropped client) to stderr; route
        # them into our logging, where they belong with the per-request lines.
        self._server.error_log = _error_log  # type: ignore[method-assign]
        request_class = type("_Request", (_DeadlineRequest,), {"header_timeout": config.header_timeout})
        if context is not None:
            self._server.ssl_adapter = _DeferredHandshakeAdapter(context)
            self._server.ConnectionClass = type(
                "_Connection",
                (_TlsConnection,),
                {"handshake_timeout": config.handshake_timeout, "RequestHandlerClass": request_class},
            )
        else:
            self._server.ConnectionClass = type(
                "_PlainConnection", (cheroot_server.HTTPConnection,), {"RequestHandlerClass": request_class}
            )
        self._thread: threading.Thread | None = None

    @property
    def app(self) -> Any:
        """The WSGI application this server runs."""
        return self._server.wsgi_app

    @property
    def port(self) -> int:
        return int(self._server.bind_addr[1])

    @property
    def origin(self) -> str:
        """``https://host:port`` (``http`` behind a proxy): where this server listens, without a path."""
        scheme = "http" if self.config.plain_http else "https"
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"{scheme}://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The XDR endpoint's conventional URL (``<origin>/xdr``)."""
        return f"{self.origin}/xdr"

    def start(self) -> XdrServer:
        self._server.prepare()
        self._thread = threading.Thread(target=self._server.serve, name="xdr-edge-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.safe_start()

    def stop(self) -> None:
        # cheroot's stop() waits for its selector loop to notice, which sleeps in select() for up to
        # expiration_interval (0.5 s) first; ask the loop to stop and wake it with a connection of our own.
        if self._server.ready:
            self._server._connections._stop_requested = True  # type: ignore[attr-defined]
            self._wake_selector()
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _wake_selector(self) -> None:
        host = self.config.host if self.config.host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
        with contextlib.suppress(OSError), socket.create_connection((host, self.port), timeout=1.0):
            pass

    def __enter__(self) -> XdrServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tls_context(config: ServerConfig) -> ssl.SSLContext:
    """The server's context; an error names the key file as well as the certificate (a mismatched pair is
    reported at the certificate, and the operator needs to know which key was tried with it)."""
    assert config.cert is not None and config.key is not None
    try:
        return server_ssl_context(
            config.cert,
            config.key,
            config.client_ca,
            crls=config.crls,
            require_client_cert=config.require_client_cert,
        )
    except CertificateError as exc:
        if str(config.key) in str(exc):
            raise
        raise CertificateError(
            f"{exc.message} (key {config.key})", code=exc.code, location=exc.location
        ) from exc
