"""The MTOM/XOP writer: a streaming ``multipart/related`` body with an exact length (XOP 1.0 §4.1, RFC 2387).

:class:`MtomBody` is an iterable with ``__len__``, which requests sends with a ``Content-Length`` header and
without reading it whole; iterating again re-opens every document, so a retry resends from the start. A part
whose bytes disagree with the metadata (the file changed after the metadata was made) aborts the body before its
closing boundary, so no complete request with wrong bytes is ever delivered. Never logs part bytes (PHI).
"""

from __future__ import annotations

__all__ = ["MtomBody", "MtomPart"]

import os
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, BinaryIO, Final

from xdr_edge.protocol import ns
from xdr_edge.protocol.errors import LocalProtocolError
from xdr_edge.protocol.model import Document
from xdr_edge.protocol.mtom.framing import (
    CRLF,
    ROOT_PART_CONTENT_TYPE,
    SOAP12_MEDIA_TYPE,
    XOP_MEDIA_TYPE,
    check_content_id,
    new_content_id,
    new_sha1,
)

# RFC 2046 §5.1.1: 1-70 characters from bchars, not ending in a space.
_BOUNDARY_RE: Final = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


def _check_header_value(value: str, *, what: str) -> None:
    if not value or not value.isascii() or any(c in value for c in "\r\n\x00"):
        raise LocalProtocolError(
            f"{what} must be a non-empty single-line ASCII header value", code="bad-header"
        )


@dataclass(frozen=True)
class MtomPart:
    """One optimized document: its Content-ID (without ``<>``), its MIME type and its bytes.

    ``expected_sha1``/``expected_size`` are what the metadata declares; when given, the writer refuses to
    finish a body whose bytes disagree (the file changed after the metadata was made).
    """

    content_id: str
    content_type: str
    document: Document
    expected_sha1: str | None = None
    expected_size: int | None = None

    def __post_init__(self) -> None:
        check_content_id(self.content_id, what="MtomPart")
        _check_header_value(self.content_type, what=f"Content-Type of part {self.content_id!r}")
        if self.expected_sha1 is not None:
            if not re.fullmatch(r"[0-9a-fA-F]{40}", self.expected_sha1):
                raise LocalProtocolError(
                    f"expected_sha1 of part {self.content_id!r} is not 40 hex digits", code="bad-hash"
                )
            object.__setattr__(self, "expected_sha1", self.expected_sha1.lower())
        if self.expected_size is not None and self.expected_size < 0:
            raise LocalProtocolError(
                f"expected_size of part {self.content_id!r} is negative", code="bad-size"
            )


def _document_changed(part: MtomPart, why: str) -> LocalProtocolError:
    return LocalProtocolError(
        f"document of MIME part {part.content_id!r} changed after its metadata was made: {why}; "
        "the request was aborted so that no bytes disagreeing with the metadata are delivered",
        code="document-changed",
        location=part.document.name,
    )


def _declared_size(part: MtomPart) -> int:
    """The size the Content-Length is computed from, read without reading the document where possible."""
    path = part.document.path
    if path is not None:
        try:
            actual = os.stat(path).st_size
        except OSError as exc:
            raise LocalProtocolError(
                f"document of MIME part {part.content_id!r} cannot be read: {exc.strerror}",
                code="document-unreadable",
                location=str(path),
            ) from exc
        if part.expected_size is not None and actual != part.expected_size:
            raise _document_changed(part, f"its size is {actual}, the metadata says {part.expected_size}")
        return actual
    if part.expected_size is not None:
        return part.expected_size
    return part.document.digest()[1]


def _random_boundary(root: bytes) -> str:
    while True:
        boundary = "MIMEBoundary_" + secrets.token_hex(16)
        if boundary.encode("ascii") not in root:
            return boundary


def _part_head(boundary: bytes, content_type: str, content_id: str, *, first: bool) -> bytes:
    lead = b"" if first else CRLF
    return (
        lead
        + b"--"
        + boundary
        + CRLF
        + b"Content-Type: "
        + content_type.encode("ascii")
        + CRLF
        + b"Content-Transfer-Encoding: binary"
        + CRLF
        + b"Content-ID: <"
        + content_id.encode("ascii")
        + b">"
        + CRLF
        + CRLF
    )


class MtomBody:
    """A complete ITI-41 MTOM request body (ITI TF-2b 3.41.5, W3C MTOM/XOP), streamed, with an exact length.

    Iterating yields the framing and the documents in chunks; no document is ever held whole. Each iteration
    re-opens the documents, so the same object can be sent again on retry. ``len()`` is exact and is computed
    without reading path-backed documents (``os.stat``), which lets requests send ``Content-Length`` rather
    than chunked encoding (some XDR receivers refuse chunked requests).

    While a document streams, its size (and SHA-1, if one is expected) is checked; if either differs from the
    expected value (or the size from the one ``len()`` was computed from), :class:`LocalProtocolError`
    ``document-changed`` is raised *before* the closing boundary, so the peer never receives a complete body
    that disagrees with the metadata: the transfer is aborted instead.

    Boundary: unless given, it is ``MIMEBoundary_`` + 128 random bits, checked not to occur in the root XML.
    Documents are not scanned (they can be gigabytes); the chance that a 128-bit random string occurs in them
    is negligible, which is the standard answer (RFC 2046 §5.1.1 asks only that the boundary not occur in the
    encapsulated parts, and random boundaries are how MIME writers meet that for binary data).
    """

    def __init__(
        self,
        root: bytes,
        parts: Sequence[MtomPart],
        *,
        action: str = ns.ACTION_PNR,
        boundary: str | None = None,
        root_content_id: str | None = None,
    ) -> None:
        self.root = bytes(root)
        self.parts: tuple[MtomPart, ...] = tuple(parts)
        self.action = action
        self.root_content_id = root_content_id if root_content_id is not None else new_content_id()
        check_content_id(self.root_content_id, what="root part")
        if not action or not action.isascii() or any(c in action for c in '"\\\r\n'):
            raise LocalProtocolError(
                f"action {action!r} cannot be sent as a quoted parameter", code="bad-header"
            )
        self._check_unique_ids()
        self.boundary = self._choose_boundary(boundary)
        self._sizes = tuple(_declared_size(part) for part in self.parts)
        b = self.boundary.encode("ascii")
        self._root_head = _part_head(b, ROOT_PART_CONTENT_TYPE, self.root_content_id, first=True)
        self._heads = tuple(_part_head(b, p.content_type, p.content_id, first=False) for p in self.parts)
        self._tail = CRLF + b"--" + b + b"--" + CRLF
        self._length = (
            len(self._root_head)
            + len(self.root)
            + sum(len(h) for h in self._heads)
            + sum(self._sizes)
            + len(self._tail)
        )

    def _check_unique_ids(self) -> None:
        seen = {self.root_content_id}
        for part in self.parts:
            if part.content_id in seen:
                raise LocalProtocolError(
                    f"Content-ID {part.content_id!r} is used by more than one MIME part",
                    code="duplicate-content-id",
                )
            seen.add(part.content_id)

    def _choose_boundary(self, boundary: str | None) -> str:
        if boundary is None:
            return _random_boundary(self.root)
        if not _BOUNDARY_RE.fullmatch(boundary):
            raise LocalProtocolError(
                f"boundary {boundary!r} is not a valid MIME boundary (RFC 2046 §5.1.1)", code="bad-boundary"
            )
        if boundary.encode("ascii") in self.root:
            raise LocalProtocolError("the given boundary occurs in the root XML", code="bad-boundary")
        return boundary

    @property
    def content_type(self) -> str:
        """The HTTP Content-Type header value, exactly as XOP 1.0 §4.1, RFC 2387, ITI TF-2b 3.41.5 gives it."""
        return (
            f'multipart/related; boundary="{self.boundary}"; type="{XOP_MEDIA_TYPE}"; '
            f'start="<{self.root_content_id}>"; start-info="{SOAP12_MEDIA_TYPE}"; action="{self.action}"'
        )

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        return _coalesced(self._pieces())

    def _pieces(self) -> Iterator[bytes]:
        yield self._root_head
        if self.root:
            yield self.root
        for part, head, size in zip(self.parts, self._heads, self._sizes, strict=True):
            yield head
            yield from _checked_chunks(part, size)
        yield self._tail

    def write_to(self, fileobj: IO[bytes] | BinaryIO) -> int:
        """Stream the whole body into ``fileobj``; returns the number of bytes written (``len(self)``)."""
        written = 0
        for chunk in self:
            fileobj.write(chunk)
            written += len(chunk)
        return written


#: Pieces shorter than this are joined to their neighbours before they are handed out ...
_SMALL_PIECE: Final = 64 * 1024
#: ... as long as what is joined stays under this.
_MOST_JOINED: Final = 1024 * 1024


def _coalesced(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """``pieces`` joined so that no small piece (a MIME head, the root part, the closing boundary) is handed
    out alone: each write on a TLS connection is a record and a system call, and a small message was six
    writes where one does. Pieces are gathered until they reach ``_SMALL_PIECE`` bytes; then the next large
    piece (a document chunk), or a piece that would take them past ``_MOST_JOINED``, first sends them on.
    So memory stays bounded (``_MOST_JOINED`` plus a document chunk) and at most the first and the last chunk
    of each document are copied.

    Nothing is handed out ahead of the pieces: when a document turns out to have changed (``document-changed``
    raised by :func:`_checked_chunks`), what was pending is never written, so the peer gets no complete body.
    """
    pending: list[bytes] = []
    pending_size = 0
    for piece in pieces:
        if pending_size >= _SMALL_PIECE and (
            len(piece) >= _SMALL_PIECE or pending_size + len(piece) > _MOST_JOINED
        ):
            yield pending[0] if len(pending) == 1 else b"".join(pending)
            pending, pending_size = [], 0
        pending.append(piece)
        pending_size += len(piece)
    if pending:
        yield pending[0] if len(pending) == 1 else b"".join(pending)


def _checked_chunks(part: MtomPart, size: int) -> Iterator[bytes]:
    """The document's chunks; never yields a byte beyond ``size``; checks size and SHA-1 at the end.

    SHA-1 is computed only when the part declares one: hashing costs about 0.4 s per GiB, and without a
    declared hash there is nothing to compare it with.
    """
    sha1 = new_sha1() if part.expected_sha1 is not None else None
    seen = 0
    for chunk in part.document.chunks():
        seen += len(chunk)
        if seen > size:
            raise _document_changed(part, f"it is longer than the {size} bytes declared")
        if sha1 is not None:
            sha1.update(chunk)
        yield chunk
    if seen != size:
        raise _document_changed(part, f"it has {seen} bytes, {size} were declared")
    if sha1 is not None and sha1.hexdigest() != part.expected_sha1:
        raise _document_changed(part, "its SHA-1 differs from the metadata's hash")
