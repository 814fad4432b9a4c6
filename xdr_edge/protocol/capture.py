"""Stored messages as ``xdr-edge inspect`` reads them: what ``xdr-edge pack`` writes (a Content-Type line, a blank
line, the body), a raw HTTP capture (request or status line, headers, blank line, body), or a bare XML document.

MIME over HTTP is CRLF-framed (RFC 2046 §5.1.1): a capture whose header lines end in bare LF was saved as text,
so CRLF line ends are restored in its body while streaming. Pure: streams in, streams out.
"""

from __future__ import annotations

__all__ = ["Entity", "read_entity"]

import re
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple, cast

from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.mediatype import MediaType


class Entity(NamedTuple):
    """A stored message split into its Content-Type and a stream positioned at the body.

    ``line_ends_restored`` says the body was stored as text with its CRLF line ends turned into LF (and, in NIST
    toolkit logs, a space added before each line end); the reader restored CRLF framing, so the MIME structure
    reads, but document bytes may differ from what was sent (hash findings on such a capture are expected).
    """

    content_type: str
    body: BinaryIO
    line_ends_restored: bool = False


def read_entity(data_stream: BinaryIO) -> Entity:
    """Split a stored message into its Content-Type and a stream positioned at the body.

    Accepts what ``xdr-edge pack`` writes (``Content-Type:`` line, blank line, body), a raw HTTP capture (request
    or status line, headers, blank line, body; without a Content-Type an XML body is taken as
    ``application/soap+xml``) and a bare XML document (treated as ``application/soap+xml``). MIME over HTTP is
    CRLF-framed (RFC 2046 §5.1.1): a capture whose header lines end in bare LF was saved as text, so CRLF line
    ends are restored in its body while streaming.
    """
    head = data_stream.read(_ENTITY_HEAD)
    while len(head) < _ENTITY_HEAD:
        more = data_stream.read(_ENTITY_HEAD - len(head))
        if not more:
            break
        head += more
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"<"):
        return Entity("application/soap+xml", cast(BinaryIO, _Chain(head, data_stream)))
    content_type = ""
    offset = 0
    bare_lf = False
    for raw, line in _split_header_lines(head):
        offset += len(raw)
        if offset == len(raw):
            bare_lf = not raw.endswith(b"\r\n")
        text = line.decode("latin-1").strip()
        if not text:
            break
        name, sep, value = text.partition(":")
        if sep and name.strip().lower() == "content-type":
            content_type = value.strip()
    else:
        raise RemoteProtocolError(
            "no blank line after the headers within the first 64 KiB", code="bad-entity", location="headers"
        )
    body: BinaryIO = cast(BinaryIO, _Chain(head[offset:], data_stream))
    if not content_type:
        if not head[offset:].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
            raise RemoteProtocolError(
                "the entity has no Content-Type header", code="bad-entity", location="headers"
            )
        content_type = "application/soap+xml"
    media = MediaType.parse_or_none(content_type)
    if bare_lf and media is not None and media.matches("multipart/related"):
        return Entity(content_type, cast(BinaryIO, _CrlfRestorer(body)), line_ends_restored=True)
    return Entity(content_type, body)


_ENTITY_HEAD = 65536


def _split_header_lines(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            return
        raw = data[start : end + 1]
        yield raw, raw.rstrip(b"\r\n")
        start = end + 1


class _Chain:
    """A minimal read-only binary stream: some already-read bytes followed by the rest of a stream.

    ``read(n)`` returns ``n`` bytes unless the stream ends first: callers bound what they hold by asking for
    ``limit + 1`` bytes once, so a short read would silently truncate the message.
    """

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        self._prefix = prefix
        self._rest = rest

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            data = self._prefix + self._rest.read()
            self._prefix = b""
            return data
        data, self._prefix = self._prefix[:n], self._prefix[n:]
        while len(data) < n:
            more = self._rest.read(n - len(data))
            if not more:
                break
            data += more
        return data

    def readable(self) -> bool:
        return True


class _CrlfRestorer:
    """Streams a body saved as text back into CRLF framing: each line end (with any spaces or tabs before it)
    becomes CRLF. Holds back only a trailing run of blanks between reads, so memory stays bounded."""

    _LINE_END = re.compile(rb"[ \t]*\r?\n")

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._pending = b""
        self._out = b""
        self._eof = False

    def _fill(self, want: int) -> None:
        while len(self._out) < want and not self._eof:
            chunk = self._raw.read(max(want, 65536))
            if not chunk:
                self._eof = True
                data, self._pending = self._pending, b""
            else:
                data = self._pending + chunk
                cut = len(data.rstrip(b" \t\r"))
                data, self._pending = data[:cut], data[cut:]
            self._out += self._LINE_END.sub(b"\r\n", data)

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            chunks = []
            while not self._eof:
                self._fill(len(self._out) + 65536)
                chunks.append(self._out)
                self._out = b""
            return b"".join(chunks) + self._out
        self._fill(n)
        data, self._out = self._out[:n], self._out[n:]
        return data

    def readable(self) -> bool:
        return True
