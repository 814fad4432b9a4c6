"""Reading failures of the HTTPS stack (urllib3, ssl) in our own terms: the one place the sender looks
inside their exceptions.

What the client needs to know about a failure is whether the peer refused our client certificate (and why, from
the TLS alert), whether the connection was dropped without an answer, and the innermost message worth showing.
urllib3 wraps exceptions in its own, by ``__cause__``, by argument or by a ``reason`` attribute;
:func:`root_cause` and :func:`is_connection_drop` walk all three.
"""

from __future__ import annotations

__all__ = ["alert_meaning", "is_connection_drop", "probe_client_auth", "root_cause"]

import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

_REJECTION_ALERTS = (
    "alert unknown ca",
    "alert bad certificate",
    "certificate required",
    "alert certificate unknown",
    "alert access denied",
    "alert handshake failure",
)


def alert_meaning(text: str) -> str | None:
    """What a TLS alert in an OpenSSL error text says about our client certificate, if anything."""
    text = text.lower()
    if "alert certificate expired" in text:
        return "our client certificate was rejected: certificate expired"
    if "alert certificate revoked" in text:
        return "our client certificate was rejected: certificate revoked"
    for marker in _REJECTION_ALERTS:
        if marker in text:
            return f"our client certificate was rejected ({marker.replace('alert ', 'TLS alert: ')})"
    return None


_DROP_ERRORS = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, BrokenPipeError)


def _exception_chain(exc: BaseException, *, wrapped_arg: int) -> Iterator[BaseException]:
    """``exc`` and what it wraps, outermost first: ``__cause__``/``__context__``, else an exception passed as
    argument ``wrapped_arg`` (urllib3 wraps that way), else a ``reason`` attribute."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        nxt = current.__cause__ or current.__context__
        args = current.args
        if nxt is None and args and isinstance(args[wrapped_arg], BaseException):
            nxt = args[wrapped_arg]
        reason = getattr(current, "reason", None)
        if nxt is None and isinstance(reason, BaseException):
            nxt = reason
        current = nxt


def is_connection_drop(exc: BaseException) -> bool:
    """The peer closed or reset the connection without a response (what a TLS 1.3 rejection looks like)."""
    return any(
        isinstance(e, _DROP_ERRORS) or type(e).__name__ == "RemoteDisconnected"
        for e in _exception_chain(exc, wrapped_arg=-1)
    )


_PROBE_WAIT = 1.0  # a refusing server alerts within milliseconds; an accepting one waits for us


def probe_client_auth(endpoint: str, context: ssl.SSLContext, connect_timeout: float) -> str | None:
    """Handshake with the practice's own context, send nothing, and read: a server that refuses our certificate
    answers with an alert (returned as text), one that accepts it waits for a request (``None``)."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    try:
        with socket.create_connection((host, parts.port or 443), timeout=connect_timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.settimeout(_PROBE_WAIT)
                tls.recv(1)
    except ssl.SSLError as exc:
        # str(exc), not root_cause(exc): we are called while handling the original error, which Python
        # chains into this one as __context__, and its EOF must not hide the alert read here.
        return alert_meaning(str(exc))
    except OSError:
        return None
    return None


def root_cause(exc: BaseException) -> str:
    """The innermost meaningful message of a urllib3/ssl exception chain."""
    seen = list(_exception_chain(exc, wrapped_arg=0))
    for candidate in reversed(seen):
        if isinstance(candidate, ssl.SSLError | ConnectionError | OSError) and str(candidate):
            return str(candidate)
    return str(seen[-1]) if seen else str(exc)
