"""MTOM/XOP packaging for ITI-41: a streaming writer with an exact length, and a streaming reader with limits.

This module owns the ``multipart/related`` framing of ITI TF-2b 3.41.5, W3C MTOM/XOP: the HTTP Content-Type header, the root part
holding the SOAP envelope, one binary MIME part per ``xop:Include``, and the ``cid:`` references between them.
It is pure: byte streams in, bytes out. It opens files only as document sources (writer) and as spool files
(reader); it never opens a socket, never parses the envelope (that is ``soap.py``) and never logs part bytes
(documents are PHI).

Writer: :class:`MtomBody` is an iterable with ``__len__``, which requests sends with a ``Content-Length``
header and without reading it whole (STACK-NOTES "requests"); iterating again re-opens every document, so a
retry resends from the start. Reader: :func:`read_mtom` drives the ``multipart`` package's push parser over a
stream, keeps the root part in memory and spools every other part to a file while computing SHA-1 and size as
bytes pass (ARCHITECTURE "the two data paths"), with limits on part count, header size, total and root size.
"""

from __future__ import annotations

__all__ = [
    "MtomBody",
    "MtomLimits",
    "MtomPackage",
    "MtomPart",
    "ReceivedPart",
    "cid_href",
    "content_id_of",
    "new_content_id",
    "parse_content_type",
    "read_mtom",
]

import errno
import hashlib
import os
import re
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO, Final
from urllib.parse import quote, unquote

import multipart

from xdr_edge.protocol import ns
from xdr_edge.protocol.errors import (
    LimitExceeded,
    LocalProtocolError,
    RemoteProtocolError,
)
from xdr_edge.protocol.model import Document

CRLF: Final = b"\r\n"
READ_SIZE: Final = 256 * 1024  # fewer parser buffer joins than 64 KiB; measured ~2x faster
XOP_MEDIA_TYPE: Final = "application/xop+xml"
SOAP12_MEDIA_TYPE: Final = "application/soap+xml"
ROOT_PART_CONTENT_TYPE: Final = 'application/xop+xml; charset=UTF-8; type="application/soap+xml"'

# RFC 2046 §5.1.1: 1-70 characters from bchars, not ending in a space.
_BOUNDARY_RE: Final = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
# RFC 2392 / RFC 5322 msg-id without the angle brackets; we refuse only what would break the framing.
_CONTENT_ID_RE: Final = re.compile(r"[!#-;=?-~]+")  # printable ASCII except space, '"', '<' and '>'
_CID_SAFE: Final = "@:!$&'()*+,;=-._~"
# Transfer encodings whose octets are the document itself; base64/quoted-printable would need decoding and
# would break "hash and size are computed over the exact octets of each MIME part as sent" (ARCHITECTURE).
_IDENTITY_ENCODINGS: Final = frozenset({"binary", "8bit", "7bit"})


def _sha1() -> hashlib._Hash:
    # SHA-1 is what the XDS `hash` attribute is defined as (ITI TF-3 4.2.3), not a security use.
    return hashlib.sha1(usedforsecurity=False)


# ----------------------------------------------------------------------------------------------------
# Content-Type parsing (shared by both directions)
# ----------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------
# Writer
# ----------------------------------------------------------------------------------------------------


def new_content_id(domain: str = "xdr-edge") -> str:
    """A fresh, globally unique Content-ID (``<uuid4>@domain``), without angle brackets.

    The part is referenced from the envelope as ``cid:`` + this value (see :func:`cid_href`).
    """
    content_id = f"{uuid.uuid4()}@{domain}"
    _check_content_id(content_id, what="new_content_id domain")
    return content_id


def cid_href(content_id: str) -> str:
    """The ``xop:Include/@href`` for a Content-ID: ``cid:`` + the id, %-encoded where needed.

    RFC 2392 and RFC 2392, XOP 1.0 §3; :meth:`MtomPackage.resolve` is its inverse.
    """
    return "cid:" + quote(content_id, safe=_CID_SAFE)


def content_id_of(href: str) -> str | None:
    """The Content-ID an ``xop:Include/@href`` names (the inverse of :func:`cid_href`), or None when ``href`` is
    not a ``cid:`` URL with an id. The scheme is case-insensitive (RFC 3986 §3.1)."""
    scheme, colon, rest = href.strip().partition(":")
    if not colon or scheme.lower() != "cid" or not rest:
        return None
    return unquote(rest)


def _check_content_id(content_id: str, *, what: str) -> None:
    if not _CONTENT_ID_RE.fullmatch(content_id):
        raise LocalProtocolError(
            f"{what}: Content-ID {content_id!r} must be non-empty printable ASCII without spaces, quotes or "
            "angle brackets (they are added on the wire)",
            code="bad-content-id",
        )


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
        _check_content_id(self.content_id, what="MtomPart")
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
        _check_content_id(self.root_content_id, what="root part")
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


def _checked_chunks(part: MtomPart, size: int) -> Iterator[bytes]:
    """The document's chunks; never yields a byte beyond ``size``; checks size and SHA-1 at the end.

    SHA-1 is computed only when the part declares one: hashing costs about 0.4 s per GiB, and without a
    declared hash there is nothing to compare it with.
    """
    sha1 = _sha1() if part.expected_sha1 is not None else None
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


# ----------------------------------------------------------------------------------------------------
# Reader
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MtomLimits:
    """Bounds on what a peer may make the reader hold or write (defaults suit one practice's PnR).

    ``max_header_bytes`` bounds the header block of each part (and each header line); ``max_total_bytes`` the
    whole body as read from the stream; ``max_root_bytes`` the SOAP envelope, which is the only part kept in
    memory.
    """

    max_parts: int = 100
    max_header_bytes: int = 16384
    max_total_bytes: int = 2 * 1024**3
    max_root_bytes: int = 50 * 1024**2
    max_header_count: int = 32

    def __post_init__(self) -> None:
        for name in (
            "max_parts",
            "max_header_bytes",
            "max_total_bytes",
            "max_root_bytes",
            "max_header_count",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"MtomLimits.{name} must be positive")


class ReceivedPart:
    """One non-root MIME part as received: headers, and its bytes in a spool file with their SHA-1 and size.

    The spool file belongs to the :class:`MtomPackage` until :meth:`detach` moves it out.
    """

    __slots__ = ("_detached", "_path", "content_id", "content_type", "headers", "sha1", "size")

    def __init__(
        self,
        content_id: str,
        content_type: str,
        headers: tuple[tuple[str, str], ...],
        path: Path,
        sha1: str,
        size: int,
    ) -> None:
        self.content_id = content_id
        self.content_type = content_type
        self.headers = headers
        self._path = path
        self.sha1 = sha1
        self.size = size
        self._detached = False

    @property
    def path(self) -> Path:
        return self._path

    @property
    def detached(self) -> bool:
        return self._detached

    def document(self) -> Document:
        """The part's bytes as a :class:`Document` whose SHA-1 and size are already known."""
        return Document(path=self._path, sha1=self.sha1, size=self.size)

    def detach(self, dest: str | os.PathLike[str]) -> Path:
        """Move the spool file to ``dest`` (a rename on the same filesystem) and give up ownership of it.

        Why: the receiver's store keeps a submission whole-or-nothing by renaming finished files into place;
        moving the spool file avoids a second copy of every document. Refuses to overwrite ``dest``.
        """
        target = Path(dest)
        if target.exists():
            raise FileExistsError(errno.EEXIST, "refusing to overwrite", str(target))
        try:
            os.rename(self._path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.move(str(self._path), str(target))
        self._path = target
        self._detached = True
        return target

    def _discard(self) -> None:
        if not self._detached:
            self._path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"ReceivedPart({self.content_id!r}, {self.content_type!r}, size={self.size})"


class MtomPackage:
    """A received MTOM package: the root part (the SOAP envelope) in memory and the other parts spooled.

    ``parts`` is keyed by Content-ID without angle brackets. Use as a context manager (or call :meth:`close`)
    so that spool files not detached are deleted.
    """

    def __init__(
        self,
        root: bytes,
        root_content_type: str,
        parts: dict[str, ReceivedPart],
        *,
        root_content_id: str | None = None,
    ) -> None:
        self.root = root
        self.root_content_type = root_content_type
        self.root_content_id = root_content_id
        self.parts = parts

    def resolve(self, href: str) -> ReceivedPart:
        """The part an ``xop:Include/@href`` points at (RFC 2392, XOP 1.0 §3: ``cid:`` + %-encoded Content-ID).

        A non-``cid:`` href is an XOP violation (SOAP fault ``Sender``); a ``cid:`` naming no part means the
        document is missing (``XDSMissingDocument``, ITI TF-3 4.2.4).
        """
        content_id = content_id_of(href)
        if content_id is None:
            raise RemoteProtocolError(
                f"xop:Include href {href!r} is not a cid: URL (XOP 1.0 §3.1)",
                code="mtom-bad-href",
                location="xop:Include/@href",
                fault_code="Sender",
            )
        part = self.parts.get(content_id)
        if part is None:
            raise RemoteProtocolError(
                f"xop:Include href {href!r} names no MIME part of the request",
                code="mtom-unknown-cid",
                location="xop:Include/@href",
                xds_error_code="XDSMissingDocument",
            )
        return part

    def close(self) -> None:
        """Delete every spool file that was not detached. Safe to call twice."""
        for part in self.parts.values():
            part._discard()

    def __enter__(self) -> MtomPackage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _sender_error(message: str, code: str, location: str | None = None) -> RemoteProtocolError:
    return RemoteProtocolError(message, code=code, location=location, fault_code="Sender")


def _limit(message: str, location: str | None = None) -> LimitExceeded:
    return LimitExceeded(message, location=location, fault_code="Sender")


@dataclass(frozen=True)
class _Envelope:
    boundary: str
    start: str | None


def _read_envelope_type(content_type: str) -> _Envelope:
    """Check the HTTP Content-Type per XOP 1.0 §4.1, RFC 2387, ITI TF-2b 3.41.5 and NIST XDS toolkit validators (what NIST's MtomMessageValidator checks)."""
    media, params = parse_content_type(content_type)
    if media != "multipart/related":
        raise _sender_error(
            f"Content-Type is {media!r}; an MTOM request must be multipart/related (ITI TF-2b 3.41.5, W3C MTOM/XOP)",
            "mtom-content-type",
            "Content-Type",
        )
    if params.get("type", "").strip().lower() != XOP_MEDIA_TYPE:
        raise _sender_error(
            f"multipart/related type parameter is {params.get('type')!r}; MTOM requires "
            f'type="{XOP_MEDIA_TYPE}" (W3C SOAP 1.2 MTOM §3.2)',
            "mtom-content-type",
            "Content-Type",
        )
    boundary = params.get("boundary", "")
    if not boundary or "\n" in boundary or "\r" in boundary or len(boundary) > 200:
        raise _sender_error(
            "multipart/related has no usable boundary parameter", "mtom-content-type", "Content-Type"
        )
    start_info = params.get("start-info")
    if start_info is not None and start_info.strip().lower() != SOAP12_MEDIA_TYPE:
        raise _sender_error(
            f"start-info is {start_info!r}; a SOAP 1.2 MTOM request has start-info={SOAP12_MEDIA_TYPE!r}",
            "mtom-content-type",
            "Content-Type",
        )
    start = params.get("start")
    if start is not None:
        start = _strip_brackets(start.strip())
        if start is None:
            raise _sender_error(
                "the start parameter must be a Content-ID wrapped in < > (XOP 1.0 §4.1, RFC 2387, ITI TF-2b 3.41.5)",
                "mtom-start",
                "Content-Type",
            )
    return _Envelope(boundary=boundary, start=start)


def _strip_brackets(value: str) -> str | None:
    if (
        len(value) > 2
        and value[0] == "<"
        and value[-1] == ">"
        and "<" not in value[1:-1]
        and ">" not in value[1:-1]
    ):
        return value[1:-1]
    return None


class _Sink:
    """Where one part's payload goes while it streams past: memory (root) or a spool file (documents)."""

    def __init__(self, index: int, content_id: str, headers: tuple[tuple[str, str], ...]) -> None:
        self.index = index
        self.content_id = content_id
        self.headers = headers
        self.size = 0

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def write(self, chunk: bytes) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        """Release whatever the sink holds after a failure."""


class _RootSink(_Sink):
    def __init__(
        self, index: int, content_id: str, headers: tuple[tuple[str, str], ...], max_bytes: int
    ) -> None:
        super().__init__(index, content_id, headers)
        self.buffer = bytearray()
        self.max_bytes = max_bytes

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise _limit(
                f"the root part (SOAP envelope) exceeds max_root_bytes={self.max_bytes}",
                f"MIME part {self.index}",
            )
        self.buffer += chunk


class _SpoolSink(_Sink):
    def __init__(
        self, index: int, content_id: str, headers: tuple[tuple[str, str], ...], spool_dir: Path | None
    ) -> None:
        super().__init__(index, content_id, headers)
        self.file = tempfile.NamedTemporaryFile(  # closed in finish() or discard()
            mode="wb", dir=spool_dir, prefix="xdr-mtom-", suffix=".part", delete=False
        )
        self.path = Path(self.file.name)
        self.sha1 = _sha1()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.sha1.update(chunk)
        self.file.write(chunk)

    def finish(self) -> ReceivedPart:
        self.file.close()
        content_type = self.header("Content-Type") or "text/plain; charset=us-ascii"  # RFC 2045 §5.2 default
        return ReceivedPart(
            self.content_id, content_type, self.headers, self.path, self.sha1.hexdigest(), self.size
        )

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


class _MtomPushParser(multipart.PushMultipartParser):  # type: ignore[misc]  # multipart ships no type hints
    """The ``multipart`` push parser without its form-data rule: MTOM parts carry no Content-Disposition."""

    def _create_segment(self, headerlist: list[tuple[str, str]]) -> multipart.MultipartSegment:
        return multipart.MultipartSegment(headerlist)


class _PackageReader:
    """Turns parser events into a :class:`MtomPackage`, enforcing limits and MTOM's part rules."""

    def __init__(self, envelope: _Envelope, limits: MtomLimits, spool_dir: Path | None) -> None:
        self.envelope = envelope
        self.limits = limits
        self.spool_dir = spool_dir
        self.parser = _MtomPushParser(
            envelope.boundary,
            max_header_size=limits.max_header_bytes,
            max_header_count=limits.max_header_count,
        )
        self.index = 0
        self.sink: _Sink | None = None
        self.root: _RootSink | None = None
        self.parts: dict[str, ReceivedPart] = {}
        self.seen_ids: set[str] = set()

    # events ------------------------------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        try:
            for event in self.parser.parse(chunk):
                self._on_event(event)
        except multipart.MultipartError as exc:
            raise self._translate(exc) from exc

    def _on_event(self, event: object) -> None:
        if isinstance(event, multipart.MultipartSegment):
            self.sink = self._start_part(event)
        elif isinstance(event, bytes | bytearray):
            assert self.sink is not None
            self.sink.write(bytes(event))
        elif event is None:
            self._finish_part()

    def _start_part(self, segment: multipart.MultipartSegment) -> _Sink:
        self.index += 1
        where = f"MIME part {self.index}"
        if self.index > self.limits.max_parts:
            raise _limit(f"the request has more than max_parts={self.limits.max_parts} MIME parts", where)
        headers = tuple((str(name), str(value).strip()) for name, value in segment.headerlist)
        header_bytes = sum(len(name) + len(value) + 4 for name, value in headers)
        if header_bytes > self.limits.max_header_bytes:
            raise _limit(f"the part's headers exceed max_header_bytes={self.limits.max_header_bytes}", where)
        content_id = self._content_id(headers, where)
        self._check_transfer_encoding(headers, where)
        is_root = content_id == self.envelope.start if self.envelope.start is not None else self.index == 1
        if not is_root:
            return _SpoolSink(self.index, content_id, headers, self.spool_dir)
        root = _RootSink(self.index, content_id, headers, self.limits.max_root_bytes)
        root_type = root.header("Content-Type")
        if root_type is None or parse_content_type(root_type)[0] != XOP_MEDIA_TYPE:
            raise _sender_error(
                f"the root part's Content-Type is {root_type!r}; MTOM requires {XOP_MEDIA_TYPE} "
                "(XOP 1.0 §4.1)",
                "mtom-root-type",
                where,
            )
        self.root = root
        return root

    def _content_id(self, headers: tuple[tuple[str, str], ...], where: str) -> str:
        raw = next((value for name, value in headers if name.lower() == "content-id"), None)
        if raw is None:
            raise _sender_error(
                f"{where} has no Content-ID header (ITI TF-2b 3.41.5, W3C MTOM/XOP rules 2-3)",
                "mtom-content-id",
                where,
            )
        content_id = _strip_brackets(raw)
        if content_id is None:
            raise _sender_error(
                f"{where}: Content-ID header value must be wrapped in < > (XOP 1.0 Example 2, XOP 1.0 §4.1)",
                "mtom-content-id",
                where,
            )
        if content_id in self.seen_ids:
            raise _sender_error(
                f"{where}: Content-ID <{content_id}> is used by an earlier part",
                "mtom-duplicate-content-id",
                where,
            )
        self.seen_ids.add(content_id)
        return content_id

    @staticmethod
    def _check_transfer_encoding(headers: tuple[tuple[str, str], ...], where: str) -> None:
        encoding = next((v for n, v in headers if n.lower() == "content-transfer-encoding"), None)
        if encoding is not None and encoding.strip().lower() not in _IDENTITY_ENCODINGS:
            raise _sender_error(
                f"{where}: Content-Transfer-Encoding {encoding!r} is not supported; MTOM parts are binary",
                "mtom-transfer-encoding",
                where,
            )

    def _finish_part(self) -> None:
        sink, self.sink = self.sink, None
        if isinstance(sink, _SpoolSink):
            part = sink.finish()
            self.parts[part.content_id] = part

    # end of input ------------------------------------------------------------------------------------------
    def close(self) -> MtomPackage:
        try:
            self.parser.close(check_complete=True)
        except multipart.MultipartError as exc:
            raise _sender_error(
                f"the MTOM body ends before its closing boundary (after {self.index} part(s)): truncated",
                "mtom-truncated",
            ) from exc
        if self.root is None:
            if self.envelope.start is not None:
                raise _sender_error(
                    f"the start parameter <{self.envelope.start}> names no MIME part",
                    "mtom-start",
                    "Content-Type",
                )
            raise _sender_error("the MTOM body has no MIME parts", "mtom-empty")
        root_type = self.root.header("Content-Type") or XOP_MEDIA_TYPE
        return MtomPackage(
            bytes(self.root.buffer), root_type, self.parts, root_content_id=self.root.content_id
        )

    def discard(self) -> None:
        if self.sink is not None:
            self.sink.discard()
        for part in self.parts.values():
            part._discard()
        self.parser.close(check_complete=False)

    def _translate(self, exc: multipart.MultipartError) -> RemoteProtocolError:
        message = str(exc.args[0]) if exc.args else type(exc).__name__
        where = f"MIME part {self.index}" if self.index else "MIME preamble"
        if isinstance(exc, multipart.ParserLimitReached):
            if "count" in message:
                return _limit(
                    f"a part has more than max_header_count={self.limits.max_header_count} headers", where
                )
            return _limit(f"a header line exceeds max_header_bytes={self.limits.max_header_bytes}", where)
        return _sender_error(f"malformed MIME multipart body: {message}", "mtom-malformed", where)


def read_mtom(
    content_type: str,
    stream: BinaryIO | IO[bytes],
    *,
    limits: MtomLimits,
    spool_dir: Path | None = None,
    content_length: int | None = None,
) -> MtomPackage:
    """Read an MTOM/XOP request body from ``stream`` into a :class:`MtomPackage`.

    ``content_type`` is the HTTP Content-Type header. When ``content_length`` is given, exactly that many
    bytes are read (a WSGI input must not be read further); otherwise the stream is read to its end. Short
    reads are fine. The root part is the one ``start`` names, else the first (XOP 1.0 §4.1, RFC 2387, ITI TF-2b 3.41.5). On any error
    every spool file made so far is deleted before the error propagates. Errors are
    :class:`RemoteProtocolError` with fault code ``Sender``; exceeded limits are :class:`LimitExceeded`.
    """
    envelope = _read_envelope_type(content_type)
    if content_length is not None and content_length > limits.max_total_bytes:
        raise _limit(f"Content-Length {content_length} exceeds max_total_bytes={limits.max_total_bytes}")
    reader = _PackageReader(envelope, limits, spool_dir)
    try:
        _pump(stream, reader, limits, content_length)
        return reader.close()
    except BaseException:
        reader.discard()
        raise


def _pump(
    stream: BinaryIO | IO[bytes], reader: _PackageReader, limits: MtomLimits, content_length: int | None
) -> None:
    total = 0
    while content_length is None or total < content_length:
        want = READ_SIZE if content_length is None else min(READ_SIZE, content_length - total)
        chunk = stream.read(want)
        if not chunk:
            if content_length is not None:
                raise _sender_error(
                    f"the request body ended after {total} of {content_length} bytes: truncated",
                    "mtom-truncated",
                )
            return
        total += len(chunk)
        if total > limits.max_total_bytes:
            raise _limit(f"the request body exceeds max_total_bytes={limits.max_total_bytes}")
        reader.feed(chunk)
