"""The inbox: each accepted submission becomes one directory, all of it or none of it (issue #4 item 4).

Layout::

    <inbox>/
      .spool/                 MTOM parts being received (same filesystem, so keeping one is a rename)
      .tmp/<random>/          a submission being written
      <YYYY-MM-DD>/<ss-uniqueId>/
        summary.json          practice, sender, recipients, message id, uniqueIds, received time, fingerprint
        metadata.xml          the lcm:SubmitObjectsRequest as received
        documents/<n>-<entry-id>.<ext>   byte-exact documents

A submission directory is assembled under ``.tmp`` (files fsynced), then renamed into place in one step; a crash
leaves either the complete directory or a ``.tmp`` leftover that :meth:`Inbox.recover` removes at start-up. The
final name is the SubmissionSet uniqueId, and a per-inbox index directory ``.ids/<uniqueId>`` is created with
``mkdir`` (atomic, fails if present) before storing, so the same submission sent twice is stored once even when
both copies arrive at the same moment on different threads or hosts sharing the directory.
"""

from __future__ import annotations

__all__ = ["DocumentConflict", "Inbox", "StoredSubmission"]

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from xdr_edge.errors import StoreError
from xdr_edge.model import Submission
from xdr_edge.mtom import MtomPackage

log = logging.getLogger("xdr_edge.receiver.store")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_EXT = {
    "text/xml": "xml",
    "application/xml": "xml",
    "application/pdf": "pdf",
    "text/plain": "txt",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/tiff": "tif",
    "application/dicom": "dcm",
}


def _safe(name: str) -> str:
    cleaned = _UNSAFE.sub("_", name)[:100]
    return cleaned if cleaned.strip("._") else "x"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DocumentConflict(Exception):
    """A DocumentEntry uniqueId already stored with other bytes (ITI TF-3 4.2.4: XDSNonIdenticalHash /
    XDSNonIdenticalSize). The same uniqueId with the same bytes is a legitimate re-registration."""

    def __init__(self, unique_id: str, error_code: str) -> None:
        super().__init__(f"DocumentEntry uniqueId {unique_id} was already received with different content")
        self.unique_id = unique_id
        self.error_code = error_code


@dataclass(frozen=True)
class StoredSubmission:
    """Where an accepted submission was stored, and its summary (what the hook receives)."""

    directory: Path
    summary: Mapping[str, Any]
    document_paths: tuple[Path, ...]


class Inbox:
    """Atomic, whole-or-nothing storage of accepted submissions in a directory tree."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        for sub in (".spool", ".tmp", ".ids", ".docs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def spool_dir(self) -> Path:
        return self.root / ".spool"

    def recover(self) -> int:
        """Remove leftovers of interrupted writes (``.tmp`` and ``.spool``); returns how many were removed.

        An ``.ids`` marker whose submission never reached its final place is removed too, so that the sender's
        retry is accepted rather than reported as a duplicate of nothing. Run it at start-up, before serving:
        a store in progress has exactly such a marker, and this would remove it."""
        removed = 0
        for sub in (".tmp", ".spool"):
            for child in (self.root / sub).iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
                removed += 1
        for marker in (self.root / ".ids").iterdir():
            target = marker / "path"
            if not target.exists() or not Path(target.read_text()).exists():
                shutil.rmtree(marker, ignore_errors=True)
                removed += 1
        return removed

    def _marker(self, unique_id: str) -> Path:
        return self.root / ".ids" / _safe(unique_id)

    def contains(self, unique_id: str) -> bool:
        return self._marker(unique_id).exists()

    def store(
        self,
        submission: Submission,
        *,
        metadata: etree._Element,
        package: MtomPackage | None,
        summary: Mapping[str, Any],
    ) -> StoredSubmission | None:
        """Store ``submission`` whole. Returns None when its SubmissionSet uniqueId is already stored.

        Documents are moved out of the MTOM spool when possible (a rename on the same filesystem), otherwise
        copied; either way the bytes are the ones whose SHA-1 was checked while they arrived."""
        unique_id = submission.submission_set.unique_id
        marker = self._marker(unique_id)
        try:
            marker.mkdir()
        except FileExistsError:
            return None
        except OSError as exc:
            raise StoreError(
                f"cannot record submission {unique_id}: {exc.strerror}", location=str(marker)
            ) from exc
        claimed: list[Path] = []
        tmp = self.root / ".tmp" / uuid.uuid4().hex
        try:
            claimed = self._claim_documents(submission)
            stored = self._write(submission, tmp, metadata, package, summary)
            final_parent = self.root / datetime.now(UTC).strftime("%Y-%m-%d")
            final_parent.mkdir(exist_ok=True)
            final = final_parent / _safe(unique_id)
            if final.exists():
                final = final_parent / f"{_safe(unique_id)}-{uuid.uuid4().hex[:8]}"
            # The marker names its target before the rename: after a crash in between, recover() sees a marker
            # whose target does not exist and removes it, so the sender's retry is accepted.
            (marker / "path").write_text(str(final))
            os.rename(tmp, final)  # the commit point: from here on the submission is stored
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(marker, ignore_errors=True)
            for path in claimed:
                path.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StoreError(f"could not store submission {unique_id}: {exc.strerror or exc}") from exc
            raise
        try:
            _fsync_dir(final_parent)
        except OSError as exc:
            # Renamed, so stored: a failure answer now would only turn the sender's retry into a duplicate.
            log.warning("stored %s but could not fsync %s: %s", final.name, final_parent, exc.strerror or exc)
        return StoredSubmission(
            directory=final,
            summary=stored.summary,
            document_paths=tuple(final / p.relative_to(tmp) for p in stored.document_paths),
        )

    def _claim_documents(self, submission: Submission) -> list[Path]:
        """Record each DocumentEntry uniqueId with its SHA-1 and size (``O_EXCL``, so concurrent submissions
        cannot both claim one uniqueId with different bytes). Returns the records this call created; raises
        :class:`DocumentConflict` (after undoing them) when a uniqueId is already held by other bytes."""
        created: list[Path] = []
        try:
            for entry in submission.document_entries:
                if entry.document is None:
                    continue
                sha1, size = entry.document.digest()
                record = self.root / ".docs" / _safe(entry.unique_id)
                try:
                    fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    held_sha1, _, held_size = record.read_text().partition(" ")
                    if held_sha1 != sha1:
                        raise DocumentConflict(entry.unique_id, "XDSNonIdenticalHash") from None
                    if held_size.strip() != str(size):
                        raise DocumentConflict(entry.unique_id, "XDSNonIdenticalSize") from None
                    continue
                with os.fdopen(fd, "w") as fh:
                    fh.write(f"{sha1} {size}")
                created.append(record)
        except BaseException:
            for path in created:
                path.unlink(missing_ok=True)
            raise
        return created

    def _write(
        self,
        submission: Submission,
        tmp: Path,
        metadata: etree._Element,
        package: MtomPackage | None,
        summary: Mapping[str, Any],
    ) -> StoredSubmission:
        docs_dir = tmp / "documents"
        docs_dir.mkdir(parents=True)
        paths: list[Path] = []
        documents: list[dict[str, Any]] = []
        for index, entry in enumerate(submission.document_entries, start=1):
            if entry.document is None:
                continue
            ext = _EXT.get(entry.mime_type, "bin")
            dest = docs_dir / f"{index:02d}-{_safe(entry.entry_id)}.{ext}"
            self._place(entry.document, dest, package)
            sha1, size = entry.document.digest()
            paths.append(dest)
            documents.append(
                {
                    "entry_id": entry.entry_id,
                    "unique_id": entry.unique_id,
                    "mime_type": entry.mime_type,
                    "file": str(dest.relative_to(tmp)),
                    "sha1": sha1,
                    "size": size,
                }
            )
        _fsync_dir(docs_dir)
        full_summary = {**summary, "documents": documents}
        self._write_file(
            tmp / "metadata.xml", etree.tostring(metadata, encoding="UTF-8", xml_declaration=True)
        )
        self._write_file(tmp / "summary.json", json.dumps(full_summary, indent=2).encode("utf-8"))
        _fsync_dir(tmp)
        return StoredSubmission(tmp, full_summary, tuple(paths))

    @staticmethod
    def _write_file(path: Path, data: bytes) -> None:
        with path.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _place(document: Any, dest: Path, package: MtomPackage | None) -> None:
        source = document.path
        if package is not None and source is not None:
            for part in package.parts.values():
                if part.path == source:
                    part.detach(dest)
                    with dest.open("rb") as fh:
                        os.fsync(fh.fileno())
                    return
        with dest.open("wb") as out:
            for chunk in document.chunks():
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
