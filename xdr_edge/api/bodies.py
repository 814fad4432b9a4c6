"""Reading a JSON request before its caller is known: within a size, a time and a structure budget.

Why: a JSON body has to be read whole, and parsed, before its ``auth`` object can be checked, so whatever it
costs is paid for strangers. Three budgets keep that cost small and bounded:

- *size*: each call has its own body limit (:attr:`.schema.CallSpec.max_body_bytes`: 64 KiB for all but the
  calls that carry certificates or documents), refused with 413 from ``Content-Length`` before reading, or as
  soon as a body without one goes past it;
- *time*: the server offers a total deadline for what is read before the caller is known
  (:meth:`~xdr_edge.receiver.deadlines.PacedStream.limit_total`); a body that does not arrive in time is
  refused with 408 and the worker is free again;
- *structure*: Python's parser builds an object per value, about 25 times the bytes for a body of empty
  objects (32 MiB of ``{},`` took 771 MiB), and recurses per nesting level. Before parsing, one pass over the
  bytes (strings skipped as wholes, so a large base64 document costs a regular-expression scan) counts
  containers, separators and depth, and refuses a body past any bound. Legitimate bodies are a few levels
  deep with a few hundred values.

Then :func:`json.loads` with: duplicate keys refused (which of two ``auth`` objects counts must never be a
guess), numbers of more than :data:`MAX_NUMBER_CHARACTERS` characters refused (Python refuses to convert
integers of more than 4,300 digits with a ``ValueError``, after the work), and ``NaN``/``Infinity`` refused
(not JSON, RFC 8259 §6). Every way a body can be malformed is a 400 naming the body or the form part.
"""

from __future__ import annotations

__all__ = [
    "MAX_CONTAINERS",
    "MAX_DEPTH",
    "MAX_NUMBER_CHARACTERS",
    "MAX_SEPARATORS",
    "parse_json_object",
    "read_limited",
    "read_piece",
]

import json
import re
from typing import Any

from xdr_edge.api.refusals import Refusal, shown_name
from xdr_edge.protocol.errors import LimitExceeded, RemoteProtocolError
from xdr_edge.receiver.deadlines import UploadTooSlow

MAX_DEPTH = 16
MAX_CONTAINERS = 2_048
MAX_SEPARATORS = 16_384
MAX_NUMBER_CHARACTERS = 24

_PIECE = 64 * 1024
#: A JSON string (as one token, however long: the unrolled loop runs in the regex engine) or a structural byte.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_QUOTE = ord('"')


def read_piece(stream: Any, size: int, *, field: str | None = None) -> bytes:
    """Up to ``size`` bytes of the body, its server-side failures answered as refusals (408 too slow, 413 past
    the server's request limit, 400 broken chunked framing)."""
    try:
        data: bytes = stream.read(size)
    except UploadTooSlow as exc:
        raise Refusal(408, "body-too-slow", f"{exc}; nothing was done", field=field) from None
    except LimitExceeded:
        raise Refusal(413, "too-large", "the request body exceeds the server's limit", field=field) from None
    except RemoteProtocolError:
        raise Refusal(400, "bad-framing", "the chunked request body is malformed", field=field) from None
    return data


def read_limited(stream: Any, length: int | None, limit: int, *, what: str = "the JSON body") -> bytes:
    """The whole body (``length`` bytes when declared), refused with 413 as soon as it is known to exceed
    ``limit``."""
    if length is not None and length > limit:
        raise Refusal(413, "too-large", f"{what} exceeds {limit} bytes for this call")
    pieces: list[bytes] = []
    size = 0
    while True:
        want = _PIECE if length is None else min(_PIECE, length - size)
        if want <= 0:
            break
        chunk = read_piece(stream, want)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise Refusal(413, "too-large", f"{what} exceeds {limit} bytes for this call")
        pieces.append(chunk)
    return b"".join(pieces)


def _check_structure(raw: bytes, what: str, field: str | None) -> None:
    depth = containers = separators = 0
    for token in _TOKEN.finditer(raw):
        first = raw[token.start()]
        if first == _QUOTE:
            continue
        if first in _OPEN:
            containers += 1
            depth += 1
            if depth > MAX_DEPTH:
                raise Refusal(400, "invalid-json", f"{what} is nested too deeply", field=field)
            if containers > MAX_CONTAINERS:
                raise Refusal(400, "invalid-json", f"{what} has too many objects and arrays", field=field)
        elif first in _CLOSE:
            depth -= 1
        else:
            separators += 1
            if separators > MAX_SEPARATORS:
                raise Refusal(400, "invalid-json", f"{what} has too many values", field=field)


def _duplicate_keys_refused(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            shown = shown_name(key)
            raise Refusal(
                400, "invalid-json", f"the field '{shown}' appears twice in one object", field=shown
            )
        result[key] = value
    return result


class _NumberTooLong(ValueError):
    pass


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARACTERS:
        raise _NumberTooLong
    return int(text)


def _real(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARACTERS:
        raise _NumberTooLong
    return float(text)


def _not_json(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def parse_json_object(raw: bytes, *, what: str = "the body", field: str | None = None) -> dict[str, Any]:
    """``raw`` as a JSON object, within the structure budget, or a 400 :class:`Refusal` (``invalid-json``)
    naming ``field``; never a value of the body in the message."""
    _check_structure(raw, what, field)
    try:
        value = json.loads(
            raw,
            object_pairs_hook=_duplicate_keys_refused,
            parse_int=_integer,
            parse_float=_real,
            parse_constant=_not_json,
        )
    except _NumberTooLong:
        raise Refusal(
            400,
            "invalid-json",
            f"{what} has a number longer than {MAX_NUMBER_CHARACTERS} characters",
            field=field,
        ) from None
    except RecursionError:
        raise Refusal(400, "invalid-json", f"{what} is nested too deeply", field=field) from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        raise Refusal(400, "invalid-json", f"{what} is not valid JSON", field=field) from None
    if not isinstance(value, dict):
        raise Refusal(400, "invalid-json", f"{what} must be a JSON object", field=field)
    return value
