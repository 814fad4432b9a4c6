"""Media types as media types: a Content-Type header value split into type/subtype and parameters.

RFC 2045 §5.1 and RFC 9110 §8.3.1: the type and subtype are case-insensitive tokens; parameters are
``name=value`` pairs whose names are case-insensitive and whose values are tokens or quoted strings (with
backslash escapes). Shared by the MTOM reader and writer, the response reader, the capture reader and the
conformance suite. Pure.
"""

from __future__ import annotations

__all__ = ["parse_content_type"]

import re
from typing import Final

from xdr_edge.protocol.errors import RemoteProtocolError

_TOKEN_RE: Final = re.compile(r"\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*")


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type value into the lower-cased media type and its parameters.

    Parameter names are lower-cased; quoted values are unquoted (backslash escapes resolved) so that
    ``start="<a;b>"`` keeps its semicolon. Whitespace around every token is ignored, including the trailing
    space the NIST toolkit's capture shows after each header line. The first of a repeated parameter wins.
    Raises :class:`RemoteProtocolError` (fault ``Sender``) when the value has no ``type/subtype``.
    """
    media, rest = _split_media_type(value)
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        if rest[pos] in "; \t":
            pos += 1
            continue
        name_match = _TOKEN_RE.match(rest, pos)
        if name_match is None or name_match.end() >= len(rest) or rest[name_match.end()] != "=":
            raise _malformed_content_type(value, "a parameter is not name=value")
        pos = name_match.end() + 1
        while pos < len(rest) and rest[pos] in " \t":
            pos += 1
        param_value, pos = _read_param_value(rest, pos, value)
        params.setdefault(name_match.group(1).lower(), param_value)
    return media, params


def _split_media_type(value: str) -> tuple[str, str]:
    media, _, rest = value.partition(";")
    media = media.strip().lower()
    major, slash, minor = media.partition("/")
    if not slash or not _TOKEN_RE.fullmatch(major) or not _TOKEN_RE.fullmatch(minor):
        raise _malformed_content_type(value, "no type/subtype")
    return media, rest


def _read_param_value(rest: str, pos: int, whole: str) -> tuple[str, int]:
    if pos < len(rest) and rest[pos] == '"':
        out: list[str] = []
        pos += 1
        while pos < len(rest):
            char = rest[pos]
            if char == "\\" and pos + 1 < len(rest):
                out.append(rest[pos + 1])
                pos += 2
            elif char == '"':
                return "".join(out), pos + 1
            else:
                out.append(char)
                pos += 1
        raise _malformed_content_type(whole, "unterminated quoted parameter value")
    end = rest.find(";", pos)
    end = len(rest) if end == -1 else end
    return rest[pos:end].strip(), end


def _malformed_content_type(value: str, why: str) -> RemoteProtocolError:
    shown = value if len(value) <= 200 else value[:200] + "..."
    return RemoteProtocolError(
        f"malformed Content-Type {shown!r}: {why}",
        code="mtom-content-type",
        location="Content-Type",
        fault_code="Sender",
    )
