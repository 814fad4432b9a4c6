"""What both of our WSGI applications (the XDR endpoint and the JSON API) read from a request's environ and
write in its status line, in one place.

Why here: the two applications run on the same cheroot server (:mod:`.server`) and must read the same request
the same way: a ``Content-Length`` that is not a number is no length at all (RFC 9110 §8.6: the server refuses
to frame such a request; by the time an app sees it, it is "unknown"), and ``Transfer-Encoding`` is a list of
case-insensitive codings (RFC 9112 §6.1).
"""

from __future__ import annotations

__all__ = ["content_length", "is_chunked", "status_line"]

from http import HTTPStatus
from typing import Any


def content_length(environ: dict[str, Any]) -> int | None:
    """The declared body length, or None when the request declares none (or one that is not a number)."""
    value = environ.get("CONTENT_LENGTH")
    try:
        return int(value) if value else None
    except ValueError:
        return None


def is_chunked(environ: dict[str, Any]) -> bool:
    """Whether the body is sent with the chunked transfer coding (RFC 9112 §6.1: a comma-separated list of
    case-insensitive codings)."""
    codings = str(environ.get("HTTP_TRANSFER_ENCODING", "")).split(",")
    return any(coding.strip().lower() == "chunked" for coding in codings)


def status_line(status: int) -> str:
    """``"404 Not Found"``: the status code with its reason phrase from the HTTP registry (RFC 9110 §15)."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"
