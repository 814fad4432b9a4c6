"""``MessageSend`` as a streamed ``multipart/form-data`` upload (RFC 7578), for documents too large for base64
in JSON, and the directory uploads are spooled to.

The form's first part, ``request``, is the JSON body without ``documents`` (at most
:data:`~xdr_edge.api.schema.DEFAULT_MAX_BODY_BYTES`, parsed as strictly as a JSON body, :mod:`.bodies`); each
following ``document`` part is one document: its Content-Type, when it names one other than
``application/octet-stream``, is the document's media type (else it is guessed), its filename names it. The
request part is handed to the caller *before* any document is read, so that an unauthenticated caller or an
unbound sender is refused without the API receiving, let alone storing, a single document byte. Documents are
written to files in a private directory as they arrive (the ``multipart`` package's push parser; memory stays
flat whatever their size) and removed after the send.

:class:`UploadSpool` is one API process's directory under the configured spool, held with a lock for as long
as the process runs. At start it removes what processes that are gone left behind (a crash mid-upload leaves
documents on disk, which may hold PHI), and never the directory of a process still running on the same spool.
"""

from __future__ import annotations

__all__ = ["FormUpload", "UploadSpool", "UploadedDocument"]

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import multipart

from xdr_edge.api.bodies import parse_json_object, read_piece
from xdr_edge.api.refusals import Refusal, shown_name
from xdr_edge.api.schema import DOCUMENT
from xdr_edge.api.validation import check
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.mtom.parser_errors import library_text, parser_problem

log = logging.getLogger("xdr_edge.api")

_PIECE = 64 * 1024
_UNDECLARED = "application/octet-stream"  # what form encoders send when they do not know the type
_MAX_HEADER_LINES = 16
_MAX_HEADER_LINE_BYTES = 4096 + 128  # the multipart package's default, named here so that we can say it


@dataclass(frozen=True)
class UploadedDocument:
    """One ``document`` part, spooled: where its bytes are, its filename and declared media type, its size."""

    path: Path
    name: str | None
    size: int
    mime_type: str | None = None


def _bad(message: str, field: str = "multipart") -> Refusal:
    return Refusal(400, "bad-form", message, field=field)


class UploadSpool:
    """This process's spool directory: ``<root>/api-<token>``, locked by ``<root>/api-<token>.lock``.

    The lock file is created and locked before the directory exists, so a directory without a locked lock file
    belongs to no running process. Start-up removes those (and the bare ``upload-*`` directories of versions
    before this layout); :meth:`close` removes this process's own.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = f"api-{secrets.token_hex(8)}"
        self._lock_path = self.root / f"{token}.lock"
        self._lock_fd: int | None = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.directory = self.root / token
        self.directory.mkdir(mode=0o700)
        self.swept = self._sweep()

    def _sweep(self) -> int:
        """Remove the spool directories of processes that are gone; the number removed."""
        removed = 0
        for entry in sorted(self.root.iterdir()):
            if entry == self.directory or entry == self._lock_path:
                continue
            if entry.name.startswith("upload-") and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
            elif entry.name.startswith("api-") and entry.suffix == ".lock":
                removed += self._sweep_owner(entry)
            elif entry.name.startswith("api-") and entry.is_dir() and not entry.with_suffix(".lock").exists():
                shutil.rmtree(entry, ignore_errors=True)  # its owner died before locking, or after unlocking
                removed += 1
        return removed

    @staticmethod
    def _sweep_owner(lock_path: Path) -> int:
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            return 0  # another process swept it
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # its process is running
            directory = lock_path.with_suffix("")
            existed = directory.exists()
            shutil.rmtree(directory, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
            return int(existed)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Remove this process's directory and give up its lock."""
        if self._lock_fd is None:
            return
        shutil.rmtree(self.directory, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self._lock_path.unlink()
        os.close(self._lock_fd)
        self._lock_fd = None


class FormUpload:
    """One multipart MessageSend: :meth:`read` returns the request part's JSON and the spooled documents.

    Use as a context manager: leaving it removes the spooled files.
    """

    def __init__(
        self,
        stream: Any,
        content_type: str,
        *,
        spool: Path,
        max_request_bytes: int,
        max_documents: int,
        on_request: Callable[[dict[str, Any]], None],
    ) -> None:
        media = MediaType.parse_or_none(content_type)
        boundary = media.param("boundary") if media is not None else None
        if media is None or not media.matches("multipart/form-data") or not boundary:
            raise _bad("expected multipart/form-data with a boundary", "Content-Type")
        self._stream = stream
        try:
            self._parser = multipart.PushMultipartParser(
                boundary, max_header_size=_MAX_HEADER_LINE_BYTES, max_header_count=_MAX_HEADER_LINES
            )
        except multipart.MultipartError as exc:
            log.debug("multipart parser refused the boundary: %s", library_text(exc))
            raise _bad(
                "the boundary parameter cannot delimit parts (RFC 2046 §5.1.1: 1-70 characters, no line break)",
                "Content-Type",
            ) from None
        self._max_request = max_request_bytes
        self._max_documents = max_documents
        self._on_request = on_request
        self._spool = spool
        self._directory: Path | None = None  # made for the first document: a refused form never touches disk
        self._request: dict[str, Any] | None = None
        self._json = bytearray()
        self._documents: list[UploadedDocument] = []
        self._parts = 0  # parts whose headers were read
        self._sink: BinaryIO | None = None
        self._sink_path: Path | None = None
        self._part: str | None = None
        self._name: str | None = None
        self._mime_type: str | None = None
        self._size = 0

    def __enter__(self) -> FormUpload:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sink is not None:
            self._sink.close()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def read(self) -> tuple[dict[str, Any], list[UploadedDocument]]:
        """Read the whole form: the request part (handed to ``on_request`` as soon as it is complete), then the
        documents, each to its own file."""
        try:
            while True:
                chunk = read_piece(self._stream, _PIECE, field="multipart")
                if not chunk:
                    break
                for event in self._parser.parse(chunk):
                    self._on_event(event)
        except multipart.MultipartError as exc:
            raise self._malformed(exc) from None
        try:
            self._parser.close(check_complete=True)
        except multipart.MultipartError as exc:
            log.debug("multipart parser at the end of the body: %s", library_text(exc))
            raise _bad(
                f"the body ends in part {max(self._parts, 1)}, before the closing boundary line "
                "(--boundary--)",
                self._field(max(self._parts, 1)),
            ) from None
        if self._request is None:
            raise _bad("the form has no 'request' part", "request")
        if not self._documents:
            raise _bad("the form has no 'document' part", "document")
        return self._request, list(self._documents)

    @staticmethod
    def _field(number: int) -> str:
        """The request field part ``number`` (1-based) of a well-formed form is: the request, then documents."""
        return "request" if number == 1 else f"document[{number - 2}]"

    def _malformed(self, exc: multipart.MultipartError) -> Refusal:
        """The parser's refusal in our words: which part, what is wrong with it. The parser's own text goes to
        the debug log only (it may quote the caller's bytes)."""
        log.debug("multipart parser: %s", library_text(exc))
        in_body = self._part is not None
        number = self._parts if in_body else self._parts + 1
        if isinstance(exc, multipart.ParserLimitReached):
            problem = (
                f"its headers exceed the limits (at most {_MAX_HEADER_LINES} header lines of at most "
                f"{_MAX_HEADER_LINE_BYTES} bytes each)"
            )
        else:
            problem = parser_problem(exc, in_body=in_body, framing="RFC 7578")
        return _bad(f"part {number} of the form: {problem}", self._field(number))

    def _on_event(self, event: object) -> None:
        if isinstance(event, multipart.MultipartSegment):
            self._start(event)
        elif isinstance(event, bytes | bytearray):
            self._write(bytes(event))
        elif event is None:
            self._finish()

    def _start(self, segment: multipart.MultipartSegment) -> None:
        self._parts += 1
        name = segment.name
        if self._request is None:
            if name != "request":
                raise _bad("the first part of the form must be 'request' (the JSON body)", "request")
            self._part = "request"
            return
        if name != "document":
            raise _bad(
                f"unexpected form part '{shown_name(name)}': after 'request' only 'document' parts",
                self._field(self._parts),
            )
        index = len(self._documents)
        if index >= self._max_documents:
            raise _bad(f"at most {self._max_documents} documents per message", "document")
        self._part = "document"
        self._name = segment.filename or None
        if self._name is not None:
            # the filename is the document's name, as a JSON document's ``name`` is: the same rule (it becomes
            # the DocumentEntry's title, so XML must be able to carry it)
            check(self._name, DOCUMENT["properties"]["name"], f"document[{index}].filename")
        self._mime_type = _declared_type(segment.header("Content-Type"), f"document[{index}]")
        self._size = 0
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="upload-", dir=self._spool))
        fd, path = tempfile.mkstemp(prefix="document-", dir=self._directory)
        self._sink = os.fdopen(fd, "wb")
        self._sink_path = Path(path)

    def _write(self, data: bytes) -> None:
        if self._part == "request":
            self._json += data
            if len(self._json) > self._max_request:
                raise Refusal(
                    413, "too-large", f"the request part exceeds {self._max_request} bytes", field="request"
                )
            return
        assert self._sink is not None
        self._sink.write(data)
        self._size += len(data)

    def _finish(self) -> None:
        if self._part == "request":
            value = parse_json_object(bytes(self._json), what="the 'request' part", field="request")
            self._json = bytearray()
            self._request = value
            self._on_request(value)  # may refuse: then no document byte is read
        elif self._part == "document":
            assert self._sink is not None and self._sink_path is not None
            self._sink.close()
            self._sink = None
            index = len(self._documents)
            if self._size == 0:
                raise _bad(f"document {index} is empty", f"document[{index}]")
            self._documents.append(UploadedDocument(self._sink_path, self._name, self._size, self._mime_type))
        self._part = None


def _declared_type(value: str | None, field: str) -> str | None:
    """A part's Content-Type as the document's media type (essence only), or None when it declares none."""
    if value is None:
        return None
    try:
        media = MediaType.parse(value, where=field)
    except RemoteProtocolError:
        raise _bad(f"{field}: the part's Content-Type is not a media type", field) from None
    return None if media.essence == _UNDECLARED else media.essence
