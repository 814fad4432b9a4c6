"""Run the XDR edge app on cheroot: mutual TLS on our own socket, or plain HTTP on loopback behind a
TLS-terminating proxy that forwards the verified client certificate (issue #4 item 2).

Why cheroot: it is the one pure-Python WSGI server that hands the verified peer certificate to the application
(``SSL_CLIENT_CERT``); gunicorn hides it, uvicorn/hypercorn do not expose it, waitress has no TLS (STACK-NOTES).
Its builtin adapter builds its own SSLContext; we replace it with :func:`xdr_edge.tls.server_ssl_context`,
which requires a client certificate from the configured CA (and checks CRLs), so an untrusted or expired client
certificate fails the handshake itself.
"""

from __future__ import annotations

__all__ = ["ServerConfig", "XdrServer"]

import logging
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from xdr_edge.errors import ConfigurationError
from xdr_edge.tls import server_ssl_context

log = logging.getLogger("xdr_edge.receiver.server")


@dataclass(frozen=True)
class ServerConfig:
    """Listening socket, TLS material and resource limits."""

    host: str = "127.0.0.1"
    port: int = 8443
    cert: Path | None = None  # server certificate (PEM, chain allowed); None only in proxy (plain HTTP) mode
    key: Path | None = None
    client_ca: Path | None = None  # CA bundle for client certificates
    crls: tuple[Path, ...] = ()
    threads: int = 10
    socket_timeout: float = 60.0  # a client that sends nothing for this long is dropped
    max_request_bytes: int = 2 * 1024**3
    plain_http: bool = False  # behind a TLS-terminating proxy
    # After refusing a request before its body was read, keep reading (and discarding) what the client still
    # sends for at most this long, so that it can finish writing and read our answer (a "lingering close").
    linger_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.plain_http:
            if self.host not in ("127.0.0.1", "::1", "localhost"):
                log.warning("plain HTTP on %s: only safe on loopback behind the TLS proxy", self.host)
            return
        missing = [n for n in ("cert", "key", "client_ca") if getattr(self, n) is None]
        if missing:
            raise ConfigurationError(
                "mutual TLS needs " + ", ".join(missing) + " (or plain_http behind a TLS-terminating proxy)",
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


class _ClosingGateway(wsgi.Gateway_10):  # type: ignore[misc,unused-ignore]  # cheroot: no type hints
    """cheroot's WSGI 1.0 gateway, honouring an application's ``Connection: close``.

    Why: cheroot decides on its own whether to keep a connection, and when it keeps one it first *reads the
    rest of the request body* so that the next request starts at the right byte. A rejected client certificate
    or an oversized request must be refused before the body is read (issue #4 item 3): when the app answers
    with ``Connection: close``, the connection is closed instead and the body is never processed.

    Closing a socket with unread bytes in its receive buffer makes the kernel send a TCP reset, and a client
    still busy writing its body (any client without ``Expect: 100-continue``: requests, http.client, curl
    for small bodies) then fails with a broken pipe and never reads the 413 or 403 we wrote. So, like nginx's
    ``lingering_close``, after the answer is flushed we read and discard what the client still sends, for at
    most ``linger_seconds`` (and one second of silence), then close. The bytes are never parsed or stored.
    """

    linger_seconds: float = 5.0
    linger_idle_seconds: float = 1.0

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        write = super().start_response(status, headers, exc_info)
        if any(k.lower() == "connection" and v.strip().lower() == "close" for k, v in headers):
            self.req.close_connection = True
        return write

    def respond(self) -> None:
        super().respond()
        req = self.req
        if req.close_connection and not req.chunked_write and self.linger_seconds > 0:
            self._discard_unread_body()

    def _discard_unread_body(self) -> None:
        req = self.req
        remaining = getattr(req.rfile, "remaining", None)  # KnownLengthRFile; a chunked body has none
        if remaining == 0 or (remaining is None and getattr(req.rfile, "closed", False)):
            return  # the body was read to its end (a chunked one up to its last chunk)
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
                data = conn.rfile.read(size) if remaining is not None else conn.rfile.read1(size)
                if not data:
                    break
                discarded += len(data)
        except (OSError, ValueError):
            pass  # the client hung up, went quiet, or the socket is already gone: nothing more to do
        log.debug("lingering close: discarded %d unread request bytes", discarded)


class XdrServer:
    """A running cheroot server; ``start()`` serves on a background thread, ``stop()`` shuts it down."""

    def __init__(self, app: Any, config: ServerConfig) -> None:
        self.config = config
        self._server = wsgi.Server(
            (config.host, config.port),
            app,
            numthreads=config.threads,
            timeout=int(config.socket_timeout),
            shutdown_timeout=5,
            server_name="xdr-edge",
        )
        self._server.max_request_body_size = config.max_request_bytes
        self._server.gateway = type("_Gateway", (_ClosingGateway,), {"linger_seconds": config.linger_seconds})
        # cheroot writes connection-level events (a refused TLS handshake, a dropped client) to stderr; route
        # them into our logging, where they belong with the per-request lines.
        self._server.error_log = _error_log  # type: ignore[method-assign]
        if not config.plain_http:
            assert config.cert is not None and config.key is not None and config.client_ca is not None
            adapter = BuiltinSSLAdapter(str(config.cert), str(config.key))
            adapter.context = server_ssl_context(config.cert, config.key, config.client_ca, crls=config.crls)
            self._server.ssl_adapter = adapter
        self._thread: threading.Thread | None = None

    @property
    def app(self) -> Any:
        """The WSGI application this server runs."""
        return self._server.wsgi_app

    @property
    def port(self) -> int:
        return int(self._server.bind_addr[1])

    @property
    def url(self) -> str:
        scheme = "http" if self.config.plain_http else "https"
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"{scheme}://{host}:{self.port}/xdr"

    def start(self) -> XdrServer:
        self._server.prepare()
        self._thread = threading.Thread(target=self._server.serve, name="xdr-edge-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.safe_start()

    def stop(self) -> None:
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> XdrServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
