"""The MTOM/XOP reader: a streaming ``multipart/related`` parser with limits (XOP 1.0 §4.1, RFC 2387).

Drives the ``multipart`` package's push parser over a stream, keeps the root part (the SOAP envelope) in memory
and spools every other part to a file while computing SHA-1 and size as bytes pass, so hash and size are those
of the exact octets received. Limits on part count, header size, total and root size. The root part is the one
``start`` names, else the first. Never parses the envelope (:mod:`xdr_edge.protocol.soap`) and never logs part
bytes (PHI).
"""

from __future__ import annotations

__all__ = ["MtomLimits", "MtomPackage", "ReceivedPart", "read_mtom", "root_part_prefix"]

import errno
import io
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO, Final

import multipart

from xdr_edge.protocol.codes import MISSING_DOCUMENT
from xdr_edge.protocol.errors import LimitExceeded, RemoteProtocolError
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.model import Document
from xdr_edge.protocol.mtom.framing import (
    READ_SIZE,
    SOAP12_MEDIA_TYPE,
    XOP_MEDIA_TYPE,
    content_id_of,
    new_sha1,
)
from xdr_edge.protocol.mtom.parser_errors import parser_problem

# Transfer encodings whose octets are the document itself; base64/quoted-printable would need decoding and
# would break "hash and size are computed over the exact octets of each MIME part as sent" (docs/design.md).
_IDENTITY_ENCODINGS: Final = frozenset({"binary", "8bit", "7bit"})


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

    ``parts`` is keyed by Content-ID without angle brackets. ``media_type`` is the package's (the HTTP
    Content-Type) and ``root_media_type`` the root part's. Use as a context manager (or call :meth:`close`) so
    that spool files not detached are deleted.
    """

    def __init__(
        self,
        root: bytes,
        root_content_type: str,
        parts: dict[str, ReceivedPart],
        *,
        root_content_id: str | None = None,
        media_type: MediaType | None = None,
    ) -> None:
        self.root = root
        self.root_content_type = root_content_type
        self.root_content_id = root_content_id
        self.parts = parts
        self.media_type = media_type
        self.root_media_type = MediaType.parse_or_none(root_content_type)

    @property
    def declared_actions(self) -> tuple[tuple[str, str], ...]:
        """Every SOAP 1.2 ``action`` the framing states, as ``(where, action)``: the ``action`` parameter of
        ``start-info`` (the root part's media type with its parameters, W3C SOAP 1.2 MTOM §3.2) and of the root
        part's ``type`` (XOP 1.0 §4.1), and a package-level ``action`` parameter (Axis2 and CXF write one; RFC
        2387 does not define it, but it can only mean the same). RFC 3902 defines ``action`` for
        application/soap+xml. An empty value states nothing. The caller compares them with ``wsa:Action``."""
        found: list[tuple[str, str]] = []
        outer, root = self.media_type, self.root_media_type
        if outer is not None:
            found.append(("Content-Type action parameter", outer.param("action") or ""))
            start_info = MediaType.parse_or_none(outer.param("start-info"))
            if start_info is not None:
                found.append(("Content-Type start-info action parameter", start_info.param("action") or ""))
        if root is not None:
            soap_type = MediaType.parse_or_none(root.param("type"))
            if soap_type is not None:
                found.append(
                    ("root part Content-Type type action parameter", soap_type.param("action") or "")
                )
        return tuple((where, action) for where, action in found if action.strip())

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
                xds_error_code=MISSING_DOCUMENT,
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
    media_type: MediaType


def _boundary_and_start(media: MediaType) -> tuple[str | None, str | None]:
    """The boundary (None when unusable) and the ``start`` Content-ID (None when absent or not in < >)."""
    boundary = media.param("boundary") or ""
    usable = bool(boundary) and len(boundary) <= 200 and "\r" not in boundary and "\n" not in boundary
    start = media.param("start")
    return (boundary if usable else None), (_strip_brackets(start.strip()) if start is not None else None)


def _read_envelope_type(content_type: str) -> _Envelope:
    """Check the HTTP Content-Type per XOP 1.0 §4.1, RFC 2387, W3C SOAP 1.2 MTOM §3.2 and ITI TF-2b 3.41.5 (what
    NIST's MtomMessageValidator checks), reading each parameter that holds a media type as a media type: Metro
    sends ``start-info="application/soap+xml;action=\\"...\\""``, the root part's media type with its
    parameters, as the MTOM Recommendation's own example does."""
    media = MediaType.parse(content_type)
    if not media.matches("multipart/related"):
        raise _sender_error(
            f"Content-Type is {media.essence!r}; an MTOM request must be multipart/related (ITI TF-2b 3.41.5, W3C MTOM/XOP)",
            "mtom-content-type",
            "Content-Type",
        )
    package_type = media.param_media_type("type")
    if package_type is None or not package_type.matches(XOP_MEDIA_TYPE):
        raise _sender_error(
            f"multipart/related type parameter is {media.param('type')!r}; MTOM requires "
            f'type="{XOP_MEDIA_TYPE}" (W3C SOAP 1.2 MTOM §3.2)',
            "mtom-content-type",
            "Content-Type",
        )
    boundary, start = _boundary_and_start(media)
    if boundary is None:
        raise _sender_error(
            "multipart/related has no usable boundary parameter", "mtom-content-type", "Content-Type"
        )
    start_info = media.param_media_type("start-info")
    if start_info is not None and not start_info.matches(SOAP12_MEDIA_TYPE):
        raise _sender_error(
            f"start-info is {media.param('start-info')!r}; a SOAP 1.2 MTOM request's root part is "
            f"{SOAP12_MEDIA_TYPE} (W3C SOAP 1.2 MTOM §3.2)",
            "mtom-content-type",
            "Content-Type",
        )
    if media.param("start") is not None and start is None:
        raise _sender_error(
            "the start parameter must be a Content-ID wrapped in < > (XOP 1.0 §4.1, RFC 2387, ITI TF-2b 3.41.5)",
            "mtom-start",
            "Content-Type",
        )
    return _Envelope(boundary=boundary, start=start, media_type=media)


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


def _check_root_type(root_type: str | None, where: str) -> None:
    """The root part is ``application/xop+xml`` (XOP 1.0 §4.1) whose ``type`` parameter, when given, is the SOAP
    1.2 media type, with or without its ``action`` parameter (W3C SOAP 1.2 MTOM §3.2; Metro writes
    ``type="application/soap+xml;action=\\"...\\""``). Without ``type`` the envelope's own namespace says which
    SOAP version it is (SOAP 1.2 Part 1 §5.4.7), so its absence is not refused."""
    media = MediaType.parse(root_type, where=f"{where} Content-Type") if root_type is not None else None
    if media is None or not media.matches(XOP_MEDIA_TYPE):
        raise _sender_error(
            f"the root part's Content-Type is {root_type!r}; MTOM requires {XOP_MEDIA_TYPE} (XOP 1.0 §4.1)",
            "mtom-root-type",
            where,
        )
    soap_type = media.param_media_type("type", where=f"{where} Content-Type")
    if soap_type is not None and not soap_type.matches(SOAP12_MEDIA_TYPE):
        raise _sender_error(
            f"the root part's type parameter is {media.param('type')!r}; a SOAP 1.2 MTOM envelope is "
            f"{SOAP12_MEDIA_TYPE} (W3C SOAP 1.2 MTOM §3.2)",
            "mtom-root-type",
            where,
        )


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
        # BytesIO, not bytearray: getvalue() hands over its own buffer as the bytes object (no copy when nothing
        # else holds a view of it), so the envelope is held once; bytes(bytearray) would hold it twice.
        self._buffer: io.BytesIO | None = io.BytesIO()
        self.max_bytes = max_bytes

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise _limit(
                f"the root part (SOAP envelope) exceeds max_root_bytes={self.max_bytes}",
                f"MIME part {self.index}",
            )
        assert self._buffer is not None, "the root part was already taken"
        self._buffer.write(chunk)

    def take(self) -> bytes:
        """The root part's bytes, handed over once: the sink keeps nothing of them."""
        assert self._buffer is not None, "the root part was already taken"
        data = self._buffer.getvalue()
        self._buffer = None
        return data

    def discard(self) -> None:
        self._buffer = None


class _SpoolSink(_Sink):
    def __init__(
        self, index: int, content_id: str, headers: tuple[tuple[str, str], ...], spool_dir: Path | None
    ) -> None:
        super().__init__(index, content_id, headers)
        # Readable by the owner only (documents are PHI), created exclusively, closed in finish() or discard().
        # os.open rather than tempfile.NamedTemporaryFile, whose wrapper costs a lookup on every write.
        self.path = Path(spool_dir or tempfile.gettempdir()) / f"xdr-mtom-{secrets.token_hex(12)}.part"
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.file: IO[bytes] = os.fdopen(descriptor, "wb")
        self.sha1 = new_sha1()

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
        _check_root_type(root.header("Content-Type"), where)
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
            self.root.take(),
            root_type,
            self.parts,
            root_content_id=self.root.content_id,
            media_type=self.envelope.media_type,
        )

    def discard(self) -> None:
        if self.sink is not None:
            self.sink.discard()
        for part in self.parts.values():
            part._discard()
        self.parser.close(check_complete=False)

    def _translate(self, exc: multipart.MultipartError) -> RemoteProtocolError:
        message = str(exc.args[0]) if exc.args else type(exc).__name__
        # in a part's body: that part; between parts: the part whose boundary line and headers were being read
        where = f"MIME part {self.index if self.sink is not None else self.index + 1}"
        if isinstance(exc, multipart.ParserLimitReached):
            if "count" in message:
                return _limit(
                    f"a part has more than max_header_count={self.limits.max_header_count} headers", where
                )
            return _limit(f"a header line exceeds max_header_bytes={self.limits.max_header_bytes}", where)
        # our words for what the parser refused (never its own text)
        problem = parser_problem(exc, in_body=self.sink is not None, framing="RFC 2046 §5.1.1")
        return _sender_error(f"malformed MIME multipart body: {problem}", "mtom-malformed", where)


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


def root_part_prefix(content_type: str, body: bytes, *, limits: MtomLimits | None = None) -> bytes | None:
    """What ``body`` (the first bytes of an MTOM body, perhaps one :func:`read_mtom` refused) holds of the root
    part, or None when that cannot be found.

    Why: a fault answers a refused package too, and it should carry ``wsa:RelatesTo`` (WS-Addressing 1.0 Core
    §3.4) when the request's MessageID can be read: senders match an answer to their request by it. Only the
    boundary and ``start`` are needed: the other rules (``type``,
    ``start-info``, the root part's media type) are what may have been refused. Never raises for what ``body``
    holds; the bytes returned may be cut short.
    """
    limits = limits or MtomLimits()
    media = MediaType.parse_or_none(content_type)
    if media is None or not media.matches("multipart/related"):
        return None
    boundary, start = _boundary_and_start(media)
    if boundary is None:
        return None
    parser = _MtomPushParser(
        boundary, max_header_size=limits.max_header_bytes, max_header_count=limits.max_header_count
    )
    collected = bytearray()
    index = 0
    in_root = False
    try:
        for event in parser.parse(body):
            if isinstance(event, multipart.MultipartSegment):
                index += 1
                raw_id = next((str(v) for k, v in event.headerlist if str(k).lower() == "content-id"), "")
                in_root = _strip_brackets(raw_id.strip()) == start if start is not None else index == 1
            elif isinstance(event, bytes | bytearray):
                if in_root:
                    collected += event
            elif in_root:  # None: the end of the root part
                break
    except multipart.MultipartError:
        pass  # what was read of the root part before the MIME framing broke is still the envelope's beginning
    finally:
        parser.close(check_complete=False)
    return bytes(collected) or None
