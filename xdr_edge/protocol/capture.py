"""Stored messages as ``xdr-edge inspect`` reads them: what ``xdr-edge pack`` writes (a Content-Type line, a blank
line, the body), a raw HTTP capture (request or status line, headers, blank line, body), or a bare XML document.

A raw capture's body is read as HTTP framed it: a ``Transfer-Encoding: chunked`` body is decoded (RFC 9112 §7.1)
and a ``Content-Length`` is checked against the body (RFC 9112 §6.2, §6.3). MIME over HTTP is CRLF-framed
(RFC 2046 §5.1.1): a capture whose header lines end in bare LF was saved as text, so CRLF line ends are restored
in its body while streaming. Every step streams in time linear in the input and memory bounded by a constant
(a run of blanks held back, a chunk-size line). Pure: streams in, streams out.
"""

from __future__ import annotations

__all__ = ["Entity", "length_findings", "read_entity"]

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final, cast

from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.findings import Finding, Severity
from xdr_edge.protocol.mediatype import MediaType

#: ``Finding.code`` (and rule) of a raw capture whose HTTP framing disagrees with its body.
LENGTH_FINDING: Final = "capture-content-length"


@dataclass(frozen=True)
class Entity:
    """A stored message split into its Content-Type and a stream positioned at the body.

    ``line_ends_restored`` says the body was stored as text with its CRLF line ends turned into LF (and, in NIST
    toolkit logs, a space added before each line end); the reader restored CRLF framing, so the MIME structure
    reads, but document bytes may differ from what was sent (hash findings on such a capture are expected).
    ``content_length`` is the raw capture's Content-Length header as written (None without one) and
    ``chunked`` says the body was sent with ``Transfer-Encoding: chunked`` and is decoded while read;
    ``saved_as_text`` that the capture's header lines end in bare LF (so its body may have lost CRs too).
    """

    content_type: str
    body: BinaryIO
    line_ends_restored: bool = False
    content_length: str | None = None
    chunked: bool = False
    saved_as_text: bool = False
    _transferred: _Counted | None = None  # the body as transferred (before chunk decoding), counted

    def transferred_length(self) -> int:
        """How many bytes the body had on the wire (after line-end restoration, before chunk decoding).

        Reads whatever the readers left (an epilogue, bytes past a parse error), so call it last."""
        if self._transferred is None:
            return 0
        return self._transferred.drain()


def read_entity(data_stream: BinaryIO) -> Entity:
    """Split a stored message into its Content-Type and a stream positioned at the body.

    Accepts what ``xdr-edge pack`` writes (``Content-Type:`` line, blank line, body), a raw HTTP capture (request
    or status line, headers, blank line, body; without a Content-Type an XML body is taken as
    ``application/soap+xml``) and a bare XML document (treated as ``application/soap+xml``). A chunked body is
    decoded as it is read; a bare-LF capture gets CRLF line ends back (multipart bodies, and chunked ones, whose
    chunk sizes count the CRLFs). Raises :class:`RemoteProtocolError` (code ``bad-entity``) when there are no
    headers to split, or they name a transfer coding other than chunked.
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
    headers: dict[str, str] = {}
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
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    else:
        raise RemoteProtocolError(
            "no blank line after the headers within the first 64 KiB", code="bad-entity", location="headers"
        )
    content_type = headers.get("content-type", "")
    if not content_type:
        if not head[offset:].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
            raise RemoteProtocolError(
                "the entity has no Content-Type header", code="bad-entity", location="headers"
            )
        content_type = "application/soap+xml"
    chunked = _is_chunked(headers.get("transfer-encoding"))
    stream: BinaryIO = cast(BinaryIO, _Chain(head[offset:], data_stream))
    media = MediaType.parse_or_none(content_type)  # a malformed one is reported by the reader of the body
    restore = bare_lf and (chunked or (media is not None and media.matches("multipart/related")))
    if restore:
        stream = cast(BinaryIO, _CrlfRestorer(stream))
    transferred = _Counted(stream)
    body = cast(BinaryIO, _Dechunked(transferred, restored=restore) if chunked else transferred)
    return Entity(content_type, body, restore, headers.get("content-length"), chunked, bare_lf, transferred)


def length_findings(entity: Entity) -> list[Finding]:
    """What a raw capture's framing headers say against its body (RFC 9112 §6.2, §6.3), as findings.

    A Content-Length that is not a number, that disagrees with the body, or that comes with
    ``Transfer-Encoding`` (which a sender must not combine, RFC 9112 §6.1) is an error: a receiver would have
    read a different message, or refused it. Extra blank line ends after the body are only a warning (an editor
    adds one when a capture is saved), and so is any disagreement in a capture saved as text. The body is
    counted as it went over the wire: after line ends are restored, before chunks are decoded. Drains the body,
    so call it after the message was read.
    """
    declared = entity.content_length
    if declared is None:
        return []
    if entity.chunked:
        return [
            _length_finding(
                Severity.ERROR,
                "the capture has both Content-Length and Transfer-Encoding: chunked; a sender must not send "
                "both (RFC 9112 §6.1), and the chunked framing decides the length",
            )
        ]
    values = {v.strip() for v in declared.split(",")}  # "42, 42" is one length (RFC 9110 §8.6)
    value = values.pop() if len(values) == 1 else ""
    if not value.isascii() or not value.isdigit() or len(value) > 19:  # int() refuses over 4300 digits
        return [_length_finding(Severity.ERROR, f"Content-Length {declared[:40]!r} is not a length")]
    expected, actual = int(value), entity.transferred_length()
    if actual == expected:
        return []
    if actual > expected and entity._transferred is not None and entity._transferred.tail_is_blank(expected):
        return [
            _length_finding(
                Severity.WARNING,
                f"the body has {actual - expected} blank line-end byte(s) after its Content-Length of "
                f"{expected} bytes (added when the capture was saved?)",
            )
        ]
    why = "truncated?" if actual < expected else "more than one message, or a wrong header?"
    message = f"Content-Length says {expected} bytes but the body has {actual} ({why})"
    if (
        entity.saved_as_text
    ):  # its line ends changed when it was saved: the count cannot be trusted either way
        note = " the capture was saved as text (bare LF line ends), so its body may not be what was sent"
        return [_length_finding(Severity.WARNING, f"{message};{note}")]
    return [_length_finding(Severity.ERROR, message)]


def _length_finding(severity: Severity, message: str) -> Finding:
    return Finding(LENGTH_FINDING, severity, "Content-Length", message, LENGTH_FINDING)


def _is_chunked(transfer_encoding: str | None) -> bool:
    """RFC 9112 §6.1: chunked must be the final (here: the only) transfer coding; anything else we cannot undo."""
    if transfer_encoding is None:
        return False
    codings = [c.strip().lower() for c in transfer_encoding.split(",") if c.strip()]
    if codings == ["chunked"]:
        return True
    if not codings or codings == ["identity"]:
        return False
    raise RemoteProtocolError(
        f"Transfer-Encoding {transfer_encoding[:80]!r}: only chunked can be decoded (RFC 9112 §7)",
        code="bad-entity",
        location="Transfer-Encoding",
    )


_ENTITY_HEAD = 65536
_READ = 65536


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


class _Counted:
    """Passes reads through and counts the bytes; remembers the last few, so that what follows a declared
    length can be judged (blank line ends, or a different message)."""

    _KEEP = 64

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0
        self._last = b""

    def read(self, n: int | None = -1) -> bytes:
        data = self._raw.read(-1 if n is None else n)
        self.count += len(data)
        self._last = (self._last + data[-self._KEEP :])[-self._KEEP :]
        return data

    def drain(self) -> int:
        while self.read(_READ):
            pass
        return self.count

    def tail_is_blank(self, length: int) -> bool:
        """True when every byte after the first ``length`` is a CR or LF (and few enough to have been kept)."""
        extra = self.count - length
        return 0 < extra <= self._KEEP and not self._last[-extra:].strip(b"\r\n")

    def readable(self) -> bool:
        return True


class _Dechunked:
    """A ``Transfer-Encoding: chunked`` body (RFC 9112 §7.1) decoded as it is read.

    Memory is bounded by one read of the underlying stream plus what the caller asks for, never by a chunk size
    the capture declares; bytes are consumed by moving an offset (a body of one-byte chunks costs no copying
    per chunk). Chunk extensions and trailer fields are read past. Broken framing (a size that is not hex, data
    not followed by CRLF, the body ending before the last chunk) raises :class:`RemoteProtocolError`.
    """

    _MAX_LINE = 4096

    def __init__(self, raw: _Counted, *, restored: bool = False) -> None:
        self._raw = raw
        self._restored = restored
        self._left = 0  # bytes of the current chunk not yet read
        self._buffer = b""  # read from raw; consumed up to _pos
        self._pos = 0
        self._finished = False

    def read(self, n: int | None = -1) -> bytes:
        want = -1 if n is None or n < 0 else n
        pieces: list[bytes] = []
        got = 0
        while (want < 0 or got < want) and self._advance():
            if self._pos == len(self._buffer) and not self._fill(1):
                raise _chunk_error(f"the body ends inside a chunk ({self._left} byte(s) missing)")
            take = self._left if want < 0 else min(self._left, want - got)
            data = self._buffer[self._pos : self._pos + take]
            self._pos += len(data)
            self._left -= len(data)
            if self._left == 0:
                self._expect_line_end()
            pieces.append(data)
            got += len(data)
        return b"".join(pieces)

    def readable(self) -> bool:
        return True

    def _fill(self, at_least: int) -> bool:
        """Make ``at_least`` unconsumed bytes available; False when the body ends first."""
        while len(self._buffer) - self._pos < at_least:
            more = self._raw.read(_READ)
            if not more:
                return False
            self._buffer = self._buffer[self._pos :] + more  # one copy per read of the stream, not per chunk
            self._pos = 0
        return True

    def _line(self, what: str) -> bytes:
        searched = self._pos
        while True:
            end = self._buffer.find(b"\n", searched)
            if end >= 0:
                line = self._buffer[self._pos : end]
                self._pos = end + 1
                return line.removesuffix(b"\r")
            if len(self._buffer) - self._pos > self._MAX_LINE:
                raise _chunk_error(f"a {what} is longer than {self._MAX_LINE} bytes")
            searched = len(self._buffer) - self._pos
            if not self._fill(searched + 1):
                raise _chunk_error(f"the body ends before the last chunk (in a {what})")
            searched += self._pos

    def _expect_line_end(self) -> None:
        """CRLF after a chunk's data; a bare LF is accepted from a capture saved as text."""
        self._fill(2)
        rest = self._buffer[self._pos : self._pos + 2]
        if rest == b"\r\n":
            self._pos += 2
        elif rest[:1] == b"\n":
            self._pos += 1
        elif not rest:
            raise _chunk_error("the body ends after a chunk's data, before the last chunk")
        else:
            hint = (
                "; the capture was saved as text, and line ends inside the chunks may have changed"
                if self._restored
                else ""
            )
            raise _chunk_error(
                f"a chunk's data is not followed by CRLF (its size does not match its data){hint}"
            )

    def _advance(self) -> bool:
        """Make chunk data available; False at the end of the body."""
        while self._left == 0 and not self._finished:
            line = self._line("chunk-size line")
            size_field = line.split(b";", 1)[0].strip(b" \t")
            if not _CHUNK_SIZE.fullmatch(size_field):
                raise _chunk_error(f"malformed chunk-size line {line[:40]!r}")
            self._left = int(size_field, 16)
            if self._left == 0:
                while self._line("trailer field"):  # trailer fields until the blank line
                    pass
                self._finished = True
        return not self._finished


_CHUNK_SIZE: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")  # bounded: no backtracking to speak of


def _chunk_error(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"chunked body: {message} (RFC 9112 §7.1)", code="capture-chunked", location="chunked body"
    )


class _CrlfRestorer:
    """Streams a body saved as text back into CRLF framing: each line end, with the spaces or tabs before it
    (up to ``MAX_PADDING`` of them: NIST toolkit logs add one), becomes CRLF.

    Linear time, bounded memory, and the same bytes however the input is split into reads: a line end is matched
    only where a run of blanks starts (the lookbehind), so a long run without a newline is scanned once, not once
    per blank; at most ``MAX_PADDING`` blanks (and a CR) are held back between reads, and a longer run keeps all
    but its last ``MAX_PADDING`` blanks wherever the reads fall.
    """

    MAX_PADDING = 4096
    _LINE_END = re.compile(rb"(?<![ \t])([ \t]*)\r?\n")

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._pending = b""
        self._out = bytearray()
        self._eof = False

    @classmethod
    def _crlf(cls, match: re.Match[bytes]) -> bytes:
        blanks = len(match.group(1))
        return match.group(1)[: blanks - cls.MAX_PADDING] + b"\r\n" if blanks > cls.MAX_PADDING else b"\r\n"

    def _fill(self, want: int) -> None:
        while len(self._out) < want and not self._eof:
            chunk = self._raw.read(_READ)
            if not chunk:
                self._eof = True
                data, self._pending = self._pending, b""
            else:
                data = self._pending + chunk
                cut = max(len(data.rstrip(b" \t\r")), len(data) - self.MAX_PADDING - 1)
                data, self._pending = data[:cut], data[cut:]
            self._out += self._LINE_END.sub(self._crlf, data)

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            chunks = []
            while not self._eof:
                self._fill(len(self._out) + _READ)
                chunks.append(bytes(self._out))
                self._out.clear()
            chunks.append(bytes(self._out))
            self._out.clear()
            return b"".join(chunks)
        self._fill(n)
        data = bytes(self._out[:n])
        del self._out[:n]
        return data

    def readable(self) -> bool:
        return True
