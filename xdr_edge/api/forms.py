"""``MessageSend`` as a streamed ``multipart/form-data`` upload (RFC 7578), for documents too large for base64
in JSON.

The form's first part, ``request``, is the JSON body without ``documents``; each following ``document`` part is
one document (its filename and Content-Type help guess the media type). The request part is handed to the caller
*before* any document is read, so that an unauthenticated caller or an unbound sender is refused without the API
receiving, let alone storing, a single document byte. Documents are written to files in a private directory as
they arrive (the ``multipart`` package's push parser; memory stays flat whatever their size) and removed after
the send.
"""

from __future__ import annotations

__all__ = ["FormUpload", "UploadedDocument"]

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import multipart

from xdr_edge.api.refusals import Refusal
from xdr_edge.protocol.mediatype import MediaType

_PIECE = 64 * 1024


@dataclass(frozen=True)
class UploadedDocument:
    path: Path
    name: str | None
    size: int


def _bad(message: str, field: str = "multipart") -> Refusal:
    return Refusal(400, "bad-form", message, field=field)


class FormUpload:
    """One multipart MessageSend: :meth:`read` returns the request part's JSON and the spooled documents.

    Use as a context manager: leaving it removes the spooled files.
    """

    def __init__(
        self,
        stream: Any,
        content_type: str,
        *,
        spool_root: Path,
        max_json_bytes: int,
        max_documents: int,
        on_request: Callable[[dict[str, Any]], None],
    ) -> None:
        media = MediaType.parse_or_none(content_type)
        boundary = media.param("boundary") if media is not None else None
        if media is None or not media.matches("multipart/form-data") or not boundary:
            raise _bad("expected multipart/form-data with a boundary", "Content-Type")
        self._stream = stream
        self._parser = multipart.PushMultipartParser(boundary, max_header_count=16)
        self._max_json = max_json_bytes
        self._max_documents = max_documents
        self._on_request = on_request
        spool_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._directory = Path(tempfile.mkdtemp(prefix="upload-", dir=spool_root))
        self._request: dict[str, Any] | None = None
        self._json = bytearray()
        self._documents: list[UploadedDocument] = []
        self._sink: BinaryIO | None = None
        self._part: str | None = None
        self._name: str | None = None
        self._size = 0

    def __enter__(self) -> FormUpload:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sink is not None:
            self._sink.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    @property
    def request_read(self) -> bool:
        return self._request is not None

    def read(self) -> tuple[dict[str, Any], list[UploadedDocument]]:
        try:
            while True:
                chunk = self._stream.read(_PIECE)
                if not chunk:
                    break
                for event in self._parser.parse(chunk):
                    self._on_event(event)
            self._parser.close(check_complete=True)
        except multipart.MultipartError as exc:
            raise _bad(f"malformed multipart/form-data body: {exc}") from None
        if self._request is None:
            raise _bad("the form has no 'request' part", "request")
        if not self._documents:
            raise _bad("the form has no 'document' part", "document")
        return self._request, list(self._documents)

    def _on_event(self, event: object) -> None:
        if isinstance(event, multipart.MultipartSegment):
            self._start(event)
        elif isinstance(event, bytes | bytearray):
            self._write(bytes(event))
        elif event is None:
            self._finish()

    def _start(self, segment: multipart.MultipartSegment) -> None:
        name = segment.name
        if self._request is None:
            if name != "request":
                raise _bad("the first part of the form must be 'request' (the JSON body)", "request")
            self._part = "request"
            return
        if name != "document":
            raise _bad(f"unexpected form part {name!r}: after 'request' only 'document' parts", "document")
        if len(self._documents) >= self._max_documents:
            raise _bad(f"at most {self._max_documents} documents per message", "document")
        self._part = "document"
        self._name = segment.filename or None
        self._size = 0
        fd, path = tempfile.mkstemp(prefix="document-", dir=self._directory)
        self._sink = os.fdopen(fd, "wb")
        self._sink_path = Path(path)

    def _write(self, data: bytes) -> None:
        if self._part == "request":
            self._json += data
            if len(self._json) > self._max_json:
                raise Refusal(
                    413, "too-large", f"the request part exceeds {self._max_json} bytes", field="request"
                )
            return
        assert self._sink is not None
        self._sink.write(data)
        self._size += len(data)

    def _finish(self) -> None:
        if self._part == "request":
            try:
                value = json.loads(bytes(self._json))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise _bad("the 'request' part is not valid JSON", "request") from None
            if not isinstance(value, dict):
                raise _bad("the 'request' part must be a JSON object", "request")
            self._request = value
            self._on_request(value)  # may refuse: then no document byte is read
        elif self._part == "document":
            assert self._sink is not None
            self._sink.close()
            self._sink = None
            index = len(self._documents)
            if self._size == 0:
                raise _bad(f"document {index} is empty", f"document[{index}]")
            self._documents.append(UploadedDocument(self._sink_path, self._name, self._size))
        self._part = None
