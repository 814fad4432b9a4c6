"""The inbox: each accepted submission becomes one directory, all of it or none of it.

Layout::

    <inbox>/
      .spool/                 MTOM parts being received (same filesystem, so keeping one is a rename)
      .tmp/<random>/          a submission being written
      .ids/<sha256>           SubmissionSet uniqueId index: JSON {unique_id, practice, path}
      .docs/<sha256>          DocumentEntry uniqueId index: JSON {unique_id, sha1, size, practice, submission}
      <YYYY-MM-DD>/<ss-uniqueId>/
        summary.json          practice, sender, recipients, message id, uniqueIds, received time, fingerprint
        metadata.xml          the lcm:SubmitObjectsRequest as received
        documents/<n>-<entry-id>.<ext>   byte-exact documents

A submission directory is assembled under ``.tmp`` (files fsynced), then renamed into place in one step; a crash
leaves either the complete directory or a ``.tmp`` leftover that :meth:`Inbox.recover` removes at start-up. The
directory name is a readable form of the SubmissionSet uniqueId (``_safe``); two uniqueIds with the same readable
form get a random suffix, so the name is for people and the indexes are what identify a submission.

Index records. A record is named by the SHA-256 (hex) of the uniqueId, not by a cleaned-up form of it: cleaning
maps ``a^ref:7`` and ``a^ref/7`` to one name, and the second, different document would be refused. Each record
is written whole to a ``~<random>`` file in the same directory, fsynced, and published with ``os.link``, which
fails when the name exists: claiming a uniqueId is atomic across threads and hosts sharing the directory, and a
reader never sees a half-written record (with ``O_EXCL``-then-write it could read an empty one and answer a
false XDSNonIdenticalHash). The filesystem must support hard links (any local POSIX one does).

Ownership. Both records name the practice that sent the uniqueId first (``summary["practice"]``). uniqueIds are
OIDs, unique worldwide (ITI TF-3 4.2.3), so one practice's uniqueId is refused to another; but the answer must differ
from a duplicate: XDSDuplicateUniqueIdInRegistry tells a sender its submission was already delivered, and another
practice sending a uniqueId first would otherwise make the owner's real submission silently lost. A uniqueId held
by another practice raises :class:`UniqueIdOwnedElsewhere` (XDSRepositoryError, without naming the holder). A
DocumentEntry with identical bytes from another practice is accepted (a forwarded document: nothing differs, so
nothing can be lost); with other bytes it is refused the same way.

Recovery. A crash after claiming the uniqueIds but before the rename leaves records whose submission does not
exist. :meth:`Inbox.recover` removes a ``.ids`` record whose ``path`` is unset or names no directory, then every ``.docs``
record whose claiming ``.ids`` record (``submission``) is gone, and ``~`` temporaries, so the sender's retry is
accepted rather than refused for a uniqueId nobody holds.

Inboxes made by the previous layout (``.ids/<cleaned uniqueId>/`` directories, ``.docs/<cleaned uniqueId>`` files
holding ``"<sha1> <size>"``) are left as they are: their names are never looked up, ``recover`` neither reads nor
removes them, and nothing crashes on them. The consequence, acceptable before the first release, is that a
submission stored before the upgrade is not recognised as a duplicate if it is sent again; delete the old entries
by hand when convenient.
"""

from __future__ import annotations

__all__ = ["DocumentConflict", "Inbox", "StoredSubmission", "SubmissionInProgress", "UniqueIdOwnedElsewhere"]

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from xdr_edge.protocol.codes import NON_IDENTICAL_HASH, NON_IDENTICAL_SIZE, REPOSITORY_ERROR
from xdr_edge.protocol.errors import StoreError
from xdr_edge.protocol.model import Submission
from xdr_edge.protocol.mtom import MtomPackage

log = logging.getLogger("xdr_edge.receiver.store")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_RECORD_NAME = re.compile(r"[0-9a-f]{64}")
_TEMP_PREFIX = "~"  # outside _safe's alphabet and hex: a temporary never looks like an old or a new record
_CLAIM_ATTEMPTS = 5
_SS_LOCATION = "RegistryPackage/ExternalIdentifier[uniqueId]"
_DOC_LOCATION = "ExtrinsicObject/ExternalIdentifier[uniqueId]"
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
    """A readable file name for people; not injective, so never used to identify anything."""
    cleaned = _UNSAFE.sub("_", name)[:100]
    return cleaned if cleaned.strip("._") else "x"


def _record_name(unique_id: str) -> str:
    return hashlib.sha256(unique_id.encode("utf-8")).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(directory: Path, content: Mapping[str, Any]) -> Path:
    """Write ``content`` whole to a new temporary file in ``directory`` (so a link or rename stays on it)."""
    tmp = directory / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
    try:
        with tmp.open("x", encoding="utf-8") as fh:
            json.dump(content, fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _publish(record: Path, content: Mapping[str, Any]) -> bool:
    """Create ``record`` holding ``content``, complete from its first moment; False when it already exists."""
    tmp = _write_temp(record.parent, content)
    try:
        os.link(tmp, record)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _replace(record: Path, content: Mapping[str, Any]) -> None:
    """Rewrite a record this store owns; readers see the old or the new content, never a mix."""
    tmp = _write_temp(record.parent, content)
    try:
        os.replace(tmp, record)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _is_stored(record: Mapping[str, Any]) -> bool:
    """Committed: marked so after the rename, or (a record without the mark) its directory exists."""
    if "stored" in record:
        return record["stored"] is True
    path = record.get("path")
    return isinstance(path, str) and Path(path).exists()


def _read_record(record: Path) -> dict[str, Any] | None:
    """The record's content; None when it vanished (a concurrent store undid its claim)."""
    try:
        content = json.loads(record.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read inbox index record: {exc}", location=str(record)) from exc
    if not isinstance(content, dict):
        raise StoreError("inbox index record is not a JSON object", location=str(record))
    return content


class DocumentConflict(Exception):
    """A uniqueId of the submission conflicts with what the inbox holds; nothing was stored.

    Raised as such for a DocumentEntry uniqueId already stored with other bytes (ITI TF-3 4.2.4:
    XDSNonIdenticalHash / XDSNonIdenticalSize); the same uniqueId with the same bytes is a legitimate
    re-registration. ``error_code``, ``code_context`` and ``location`` are the RegistryError entry to answer
    with (ITI TF-3 4.2.4, ebRS 3.0: for XDSNonIdenticalHash the codeContext is the uniqueId itself)."""

    def __init__(
        self,
        unique_id: str,
        error_code: str,
        *,
        message: str | None = None,
        code_context: str | None = None,
        location: str = _DOC_LOCATION,
    ) -> None:
        super().__init__(
            message or f"DocumentEntry uniqueId {unique_id} was already received with different content"
        )
        self.unique_id = unique_id
        self.error_code = error_code
        self.code_context = unique_id if code_context is None else code_context
        self.location = location


class UniqueIdOwnedElsewhere(DocumentConflict):
    """A SubmissionSet or DocumentEntry uniqueId that another practice sent first.

    Not a duplicate (XDSDuplicateUniqueIdInRegistry tells the sender it already delivered, so its submission
    would be silently lost), so XDSRepositoryError; the message does not name the practice holding it."""

    def __init__(self, unique_id: str, *, submission_set: bool) -> None:
        kind = "SubmissionSet" if submission_set else "DocumentEntry"
        message = f"{kind} uniqueId {unique_id} is already used by a submission from another sender"
        super().__init__(
            unique_id,
            REPOSITORY_ERROR,
            message=message,
            code_context=message,
            location=_SS_LOCATION if submission_set else _DOC_LOCATION,
        )
        self.submission_set = submission_set


class SubmissionInProgress(Exception):
    """The same practice's submission with this SubmissionSet uniqueId is being stored by another request.

    Not a duplicate yet: that store may still fail, and a sender told "duplicate" would believe it delivered
    (typically a retry after a timeout arriving while the first copy is still being written). The answer is
    "busy, retry" (HTTP 503); the retry then learns the first copy's fate."""

    def __init__(self, unique_id: str) -> None:
        super().__init__(
            f"SubmissionSet {unique_id} is being stored from an earlier request of the same sender; retry shortly"
        )
        self.unique_id = unique_id


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
        """Remove leftovers of interrupted writes; returns how many were removed.

        ``.tmp`` and ``.spool`` are emptied; a ``.ids`` record whose submission never reached its final place is
        removed, then every ``.docs`` record claimed by a submission that has no ``.ids`` record any more, so
        that the sender's retry is accepted rather than reported as a duplicate or a conflict with nothing. Run
        it at start-up, before serving: a store in progress has exactly such records, and this would remove
        them. Entries of the previous layout are left alone (module docstring)."""
        removed = 0
        for sub in (".tmp", ".spool"):
            for child in (self.root / sub).iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
                removed += 1
        removed += self._sweep(self.root / ".ids", self._submission_missing)
        removed += self._sweep(self.root / ".docs", self._claimer_missing)
        self._mark_stored(self.root / ".ids")
        return removed

    @staticmethod
    def _sweep(directory: Path, orphaned: Callable[[Mapping[str, Any]], bool]) -> int:
        """Remove ``~`` temporaries and the records ``orphaned`` judges so; anything else is left alone."""
        removed = 0
        for child in directory.iterdir():
            if not child.is_file():
                continue  # previous layout: .ids/<cleaned uniqueId>/ directories
            if child.name.startswith(_TEMP_PREFIX):
                stale = True
            elif _RECORD_NAME.fullmatch(child.name):
                try:
                    content = _read_record(child)
                except StoreError as exc:
                    log.warning("left an unreadable inbox index record alone: %s", exc)
                    continue
                stale = content is not None and orphaned(content)
            else:
                stale = False  # previous layout: .docs/<cleaned uniqueId>
            if stale:
                child.unlink(missing_ok=True)
                removed += 1
        return removed

    @staticmethod
    def _submission_missing(content: Mapping[str, Any]) -> bool:
        path = content.get("path")
        return not isinstance(path, str) or not Path(path).exists()

    @staticmethod
    def _mark_stored(directory: Path) -> int:
        """Mark records whose directory exists but which a crash left unmarked (renamed, not yet marked)."""
        marked = 0
        for child in directory.iterdir():
            if not child.is_file() or not _RECORD_NAME.fullmatch(child.name):
                continue
            try:
                content = _read_record(child)
            except StoreError:
                continue
            if (
                content is not None
                and content.get("stored") is False
                and isinstance(content.get("path"), str)
            ):
                if Path(content["path"]).exists():
                    _replace(child, {**content, "stored": True})
                    marked += 1
        return marked

    def _claimer_missing(self, content: Mapping[str, Any]) -> bool:
        claimer = content.get("submission")
        return not isinstance(claimer, str) or not (self.root / ".ids" / claimer).exists()

    def _ss_record(self, unique_id: str) -> Path:
        return self.root / ".ids" / _record_name(unique_id)

    def contains(self, unique_id: str) -> bool:
        """Whether a SubmissionSet with this uniqueId is stored (or being stored), from any practice."""
        return self._ss_record(unique_id).exists()

    def store(
        self,
        submission: Submission,
        *,
        metadata: etree._Element,
        package: MtomPackage | None,
        summary: Mapping[str, Any],
    ) -> StoredSubmission | None:
        """Store ``submission`` whole, owned by ``summary["practice"]`` (None when absent).

        Returns None when the same practice already stored its SubmissionSet uniqueId (a duplicate). Raises
        :class:`UniqueIdOwnedElsewhere` when another practice holds the SubmissionSet uniqueId or holds a
        DocumentEntry uniqueId with other bytes, :class:`DocumentConflict` when the practice itself stored a
        DocumentEntry uniqueId with other bytes, :class:`StoreError` when the disk fails; nothing is kept then.

        Documents are moved out of the MTOM spool when possible (a rename on the same filesystem), otherwise
        copied; either way the bytes are the ones whose SHA-1 was checked while they arrived."""
        unique_id = submission.submission_set.unique_id
        practice = summary.get("practice")
        record = self._ss_record(unique_id)
        content: dict[str, Any] = {
            "unique_id": unique_id,
            "practice": practice,
            "path": None,
            "stored": False,
        }
        if not self._claim_submission(record, content):
            return None
        claimed: list[Path] = []
        tmp = self.root / ".tmp" / uuid.uuid4().hex
        try:
            claimed = self._claim_documents(submission, practice, record.name)
            stored = self._write(submission, tmp, metadata, package, summary)
            final_parent = self.root / datetime.now(UTC).strftime("%Y-%m-%d")
            final_parent.mkdir(exist_ok=True)
            final = self._commit(tmp, final_parent, _safe(unique_id), record, content)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            record.unlink(missing_ok=True)
            for path in claimed:
                path.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StoreError(f"could not store submission {unique_id}: {exc.strerror or exc}") from exc
            raise
        for directory in (final_parent, self.root / ".ids", self.root / ".docs"):
            try:
                _fsync_dir(directory)
            except OSError as exc:
                # Renamed, so stored: a failure answer now would only turn the sender's retry into a duplicate.
                log.warning(
                    "stored %s but could not fsync %s: %s", final.name, directory, exc.strerror or exc
                )
        return StoredSubmission(
            directory=final,
            summary=stored.summary,
            document_paths=tuple(final / p.relative_to(tmp) for p in stored.document_paths),
        )

    def _claim_submission(self, record: Path, content: Mapping[str, Any]) -> bool:
        """Publish the SubmissionSet record; False for a duplicate from the same practice.

        Raises :class:`UniqueIdOwnedElsewhere` when another practice holds the uniqueId."""
        unique_id = content["unique_id"]
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                if _publish(record, content):
                    return True
            except OSError as exc:
                raise StoreError(
                    f"cannot record submission {unique_id}: {exc.strerror or exc}", location=str(record)
                ) from exc
            held = _read_record(record)
            if held is None:
                continue  # the holder's store failed and undid its claim: try again
            if held.get("practice") == content["practice"]:
                if _is_stored(held) or self._stored_unmarked(record, held):
                    return False
                raise SubmissionInProgress(unique_id)
            log.warning(
                "SubmissionSet uniqueId %s from practice %s refused: already held by practice %s",
                unique_id,
                content["practice"],
                held.get("practice"),
            )
            raise UniqueIdOwnedElsewhere(unique_id, submission_set=True)
        raise StoreError(f"cannot record submission {unique_id}: its index record keeps changing")

    @staticmethod
    def _stored_unmarked(record: Path, held: Mapping[str, Any]) -> bool:
        """A record left unmarked although its submission is in place (the rename succeeded, marking it
        failed): the directory's own summary says which SubmissionSet it holds. Marks it when so; otherwise
        every later copy would be answered "busy" until the next start-up."""
        path = held.get("path")
        if not isinstance(path, str):
            return False
        try:
            summary = json.loads((Path(path) / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False  # not there yet (a store in progress), or not ours to judge
        if not isinstance(summary, dict) or summary.get("submission_set_unique_id") != held.get("unique_id"):
            return False
        try:
            _replace(record, {**held, "stored": True})
        except OSError as exc:
            log.warning("could not mark the index record of %s: %s", held.get("unique_id"), exc)
        return True

    def _commit(self, tmp: Path, parent: Path, name: str, record: Path, content: dict[str, Any]) -> Path:
        """Rename the assembled submission into place; the rename is the commit point.

        The record names its target before the rename: after a crash in between, recover() sees a record whose
        target does not exist and removes it, so the sender's retry is accepted. Another uniqueId with the same
        readable name (or arriving at the same moment) gets a suffixed name instead."""
        final = parent / name
        for _ in range(_CLAIM_ATTEMPTS):
            if final.exists():
                final = parent / f"{name}-{uuid.uuid4().hex[:8]}"
            _replace(record, {**content, "path": str(final)})
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                continue
            try:
                _replace(record, {**content, "path": str(final), "stored": True})
            except OSError as exc:
                # Stored all the same (the rename was the commit); recover() marks it at the next start.
                log.warning("stored %s but could not mark its index record: %s", final.name, exc)
            return final
        raise StoreError(
            f"no free directory name for submission {content['unique_id']}", location=str(parent)
        )

    def _claim_documents(self, submission: Submission, practice: str | None, claimer: str) -> list[Path]:
        """Record each DocumentEntry uniqueId with its SHA-1, size, practice and claiming SubmissionSet record.
        Returns the records this call created; raises :class:`DocumentConflict` (after undoing them) when a
        uniqueId is already held by other bytes."""
        created: list[Path] = []
        try:
            for entry in submission.document_entries:
                if entry.document is None:
                    continue
                sha1, size = entry.document.digest()
                content = {
                    "unique_id": entry.unique_id,
                    "sha1": sha1,
                    "size": size,
                    "practice": practice,
                    "submission": claimer,
                }
                record = self.root / ".docs" / _record_name(entry.unique_id)
                if self._claim_document(record, content):
                    created.append(record)
        except BaseException:
            for path in created:
                path.unlink(missing_ok=True)
            raise
        return created

    @staticmethod
    def _claim_document(record: Path, content: Mapping[str, Any]) -> bool:
        """True when this call published the record; False when it is already held with the same bytes."""
        unique_id = content["unique_id"]
        for _ in range(_CLAIM_ATTEMPTS):
            if _publish(record, content):
                return True
            held = _read_record(record)
            if held is None:
                continue  # the holder's store failed and undid its claim: try again
            same_bytes = held.get("sha1") == content["sha1"] and held.get("size") == content["size"]
            if same_bytes:
                return False  # a re-registration (or a forwarded document): nothing differs
            if held.get("practice") != content["practice"]:
                log.warning(
                    "DocumentEntry uniqueId %s from practice %s refused: held with other bytes by practice %s",
                    unique_id,
                    content["practice"],
                    held.get("practice"),
                )
                raise UniqueIdOwnedElsewhere(unique_id, submission_set=False)
            if held.get("sha1") != content["sha1"]:
                raise DocumentConflict(unique_id, NON_IDENTICAL_HASH)
            raise DocumentConflict(unique_id, NON_IDENTICAL_SIZE)
        raise StoreError(f"cannot record DocumentEntry uniqueId {unique_id}: its index record keeps changing")

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
