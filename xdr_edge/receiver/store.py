"""The inbox: each accepted submission becomes one directory, all of it or none of it, recorded once in the
index that every receiver sharing the registry database sees (:class:`xdr_edge.registry.SubmissionIndex`).

Layout::

    <inbox>/
      <YYYY-MM-DD>/<ss-uniqueId>/
        summary.json          practice, sender, recipients, message id, uniqueIds, received time, fingerprint
        metadata.xml          the lcm:SubmitObjectsRequest as received
        documents/<n>-<entry-id>.<ext>   byte-exact documents
      .work/<receiver>/       one receiver's working area (same filesystem, so keeping a file is a rename)
        lock                  held while that receiver runs
        spool/                MTOM parts being received
        staging/<token>/      a submission being written

Storing a submission, in this order:

1. write it whole into ``staging/<token>/`` (every file, and the directories, fsynced), then fsync ``staging/``
   itself, so that the folder's name survives a power cut as well as its content;
2. record it in the index: one transaction, and the commit point. A copy already stored, by this receiver or
   any other, or a uniqueId of another practice is found here, and the staging directory is deleted;
3. rename the staging directory into place (one step) and fsync both folders the rename changed (the date
   folder it went to, ``staging/`` it left); a new date folder is fsynced into the inbox before anything is
   renamed into it, by whichever thread or receiver meets it first;
4. only then answer Success.

Steps 2 and 3 are taken for several requests at once (:mod:`xdr_edge.receiver.groupcommit`): the submissions
staged while the previous batch was committing are recorded in one transaction (each in a savepoint of its
own, so one conflict refuses only its submission), renamed into place, and each folder they went to is fsynced
once. Every guarantee above holds for each of them (nothing is answered before its batch's folder sync
returned); what they share is the cost of the index commit and of the folder sync, which one request at a time
had to wait for in turn. Per submission that leaves five syncs of its own (its three files and two staging
folders, written by the request's own thread while others do the same) and a share of two.

Start-up recovery (:meth:`Inbox.recover`) touches only this receiver's working area. It empties ``spool/``
and asks the index about each staging directory: a recorded one is moved into place (the crash came between
steps 2 and 3; the sender had no answer, and a copy sent meanwhile was answered "duplicate", truthfully: it
was committed), an unrecorded one is deleted (the crash came before step 2; the sender had no answer and its
retry is accepted). So Success always means the submission is in an inbox, and no crash leaves half a
submission in place or a uniqueId held by nothing.

When the index fails *while committing* (the connection lost with the commit sent), the receiver cannot know
whether step 2 happened, and asks the index again at once. If the database cannot answer that either, the
request is answered that its outcome is unknown (:data:`OUTCOME_UNKNOWN`: a Receiver fault, which a sender takes
as "send it again unchanged; a duplicate answer then means it was stored"), never "not stored", and the staging
directory is kept. The receiver's upkeep (:meth:`Inbox.upkeep`, run every :data:`UPKEEP_SECONDS` by
:meth:`Inbox.start_upkeep`) asks again until the database answers, and moves it into place or removes it, without
waiting for a restart.

A receiver that stops for good with leftovers (scaled down, or renamed: the default name is the host name, which
a container gets anew at each start) would strand them; so the upkeep also *adopts* another receiver's working
area on the same inbox when its lock is free and its holder is gone (its process no longer exists on this host,
or, from another host, its heartbeat is older than :data:`HOLDER_SILENT_SECONDS`), and settles the leftovers there
that are older than ``adopt_after`` exactly as that receiver's own recovery would. Its lock is held meanwhile (a
fraction of a second), so a receiver of that name starting then waits for it rather than meeting half of it.

Several receivers may share one inbox directory (on a shared filesystem), each with its own working area named
by its receiver name, or each keep an inbox of its own; the index records each submission's path relative to
the inbox of the receiver that stored it. Two running receivers may not share a name on one inbox: the
working area's lock refuses the second.

The directory name is a readable form of the SubmissionSet uniqueId (``_safe``); two uniqueIds with the same
readable form, or a name taken meanwhile by another receiver, get a random suffix. The name is for people; the
index is what identifies a submission.

Ownership. uniqueIds are OIDs, unique worldwide (ITI TF-3 4.2.3), so one practice's uniqueId is refused to
another; but the answer must differ from a duplicate: XDSDuplicateUniqueIdInRegistry tells a sender its
submission was already delivered, and another practice sending a uniqueId first would otherwise make the
owner's real submission silently lost. A uniqueId held by another practice raises
:class:`UniqueIdOwnedElsewhere` (XDSRepositoryError, without naming the holder). A DocumentEntry with identical
bytes from another practice is accepted (a forwarded document: nothing differs, so nothing can be lost); with
other bytes it is refused the same way.

Inboxes written by earlier versions keep their ``.ids``, ``.docs``, ``.tmp`` and ``.spool`` folders: nothing
reads or removes them, and the submissions they list are not in the index (one sent again is stored again).
Delete them when convenient.
"""

from __future__ import annotations

__all__ = [
    "ADOPT_AFTER_SECONDS",
    "HOLDER_SILENT_SECONDS",
    "OUTCOME_UNKNOWN",
    "UPKEEP_SECONDS",
    "DocumentConflict",
    "Inbox",
    "Recovery",
    "StoredSubmission",
    "UniqueIdOwnedElsewhere",
    "Upkeep",
]

import errno
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

from lxml import etree

from xdr_edge.durable import LockFile, LockOwner, fsync_dir, write_synced
from xdr_edge.protocol.codes import NON_IDENTICAL_HASH, NON_IDENTICAL_SIZE, REPOSITORY_ERROR
from xdr_edge.protocol.errors import ConfigurationError, StoreError, XdrError
from xdr_edge.protocol.model import Submission
from xdr_edge.protocol.mtom import MtomPackage
from xdr_edge.receiver.groupcommit import GroupCommit
from xdr_edge.registry import (
    ConflictKind,
    IndexConflict,
    IndexedDocument,
    IndexedSubmission,
    SubmissionIndex,
)
from xdr_edge.registry.database import UNAVAILABLE, CommitUnknown

log = logging.getLogger("xdr_edge.receiver.store")

DEFAULT_RECEIVER = "default"
#: StoreError code: the index failed while committing and could not be asked afterwards, so the submission may or
#: may not be stored; the sender is told to send it again unchanged (a duplicate answer then means stored).
OUTCOME_UNKNOWN = "store-outcome-unknown"
#: How often the upkeep renews the working area's heartbeat, settles unknown outcomes and looks for dead areas.
UPKEEP_SECONDS = 30.0
#: A holder on another host whose heartbeat is this old is gone (three upkeep rounds missed).
HOLDER_SILENT_SECONDS = 3 * UPKEEP_SECONDS
#: Leftovers in a dead receiver's working area are adopted once this old (never a write still in progress).
ADOPT_AFTER_SECONDS = 300.0
#: How long one round of upkeep may hold a dead receiver's working area: an adoption stops after this and goes on
#: at the next round, so a receiver of that name starting meanwhile never waits longer than this for its lock.
_ADOPT_SLICE_SECONDS = 0.5
#: How long taking a working area waits for another receiver's upkeep that is adopting it at that moment (well
#: above the slice: an adoption is cut into slices that short).
_LOCK_WAIT_SECONDS = 10.0
RECEIVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_NAME_ATTEMPTS = 5
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


def _sync_folder(folder: Path) -> None:
    """fsync a folder a rename changed. Renamed means stored: a failure answer now would only turn the sender's
    retry into a duplicate, so a failed sync is logged, not raised."""
    try:
        fsync_dir(folder)
    except OSError as exc:
        log.warning("stored submissions in %s but could not fsync it: %s", folder, exc.strerror or exc)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _entries(folder: Path, older_than: float | None) -> list[Path]:
    """The entries of ``folder`` (none if it is absent), only those last changed before ``older_than`` if
    given."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        if older_than is not None:
            try:
                if entry.stat(follow_symlinks=False).st_mtime >= older_than:
                    continue
            except FileNotFoundError:
                continue
        found.append(Path(entry.path))
    return found


class _Unknown(Enum):
    UNKNOWN = "unknown"


#: What settling returns when the index could not say whether a submission was recorded.
_UNKNOWN = _Unknown.UNKNOWN


def _outcome_unknown(unique_id: str) -> StoreError:
    return StoreError(
        f"submission {unique_id} may or may not have been stored: the registry database failed while recording "
        "it and could not be asked afterwards; send it again unchanged (a duplicate answer then means it was "
        "stored)",
        code=OUTCOME_UNKNOWN,
    )


def check_receiver_name(name: str) -> str:
    """A receiver name names a folder: 1-64 letters, digits, ``.``, ``_`` and ``-``, starting with a letter or
    digit."""
    if not RECEIVER_NAME.match(name):
        raise ConfigurationError(
            f"receiver name {name!r} is not usable: 1-64 letters, digits and ._- only, starting with a letter "
            "or digit",
            location="receiver name",
        )
    return name


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


@dataclass(frozen=True)
class StoredSubmission:
    """Where an accepted submission was stored, and its summary (what the hook receives)."""

    directory: Path
    summary: Mapping[str, Any]
    document_paths: tuple[Path, ...]


def _in_place(written: StoredSubmission, staging: Path, final: Path) -> StoredSubmission:
    """What was written in ``staging``, as it is now that it was moved to ``final``."""
    return StoredSubmission(
        directory=final,
        summary=written.summary,
        document_paths=tuple(final / p.relative_to(staging) for p in written.document_paths),
    )


@dataclass(frozen=True)
class _Staged:
    """A submission written whole in the working area, ready to be recorded and moved into place."""

    record: IndexedSubmission
    documents: tuple[IndexedDocument, ...]
    staging: Path
    final: Path  # where it is meant to go (another free name if that one is taken meanwhile)


@dataclass(frozen=True)
class _Committed:
    """What the batch did with one staged submission: refused by the index (``conflict``), in place at
    ``final``, or recorded but not moved into place (``error``: the request undoes the record)."""

    conflict: IndexConflict | None = None
    final: Path | None = None
    error: Exception | None = None


@dataclass(frozen=True)
class Recovery:
    """What start-up recovery did with the leftovers of interrupted writes in this receiver's working area."""

    removed: int  # spooled parts and unrecorded staging directories deleted
    completed: int  # recorded submissions moved into place


@dataclass(frozen=True)
class Upkeep:
    """What one round of :meth:`Inbox.upkeep` did."""

    settled: int  # submissions of unknown outcome settled (moved into place or removed)
    unsettled: int  # still unknown: the index could not be asked yet
    adopted: tuple[str, ...]  # other receivers' working areas whose leftovers were settled
    recovered: Recovery  # what was done in those areas


class Inbox:
    """Atomic, whole-or-nothing storage of accepted submissions in a directory tree, indexed in the database.

    Thread-safe: every request works in a staging directory of its own, and the index decides which copy of a
    submission is the first.
    """

    def __init__(
        self,
        root: Path | str,
        index: SubmissionIndex,
        *,
        receiver: str = DEFAULT_RECEIVER,
        adopt_after: float = ADOPT_AFTER_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.index = index
        self.receiver = check_receiver_name(receiver)
        self.work_dir = self.root / ".work" / receiver
        for sub in ("spool", "staging"):
            (self.work_dir / sub).mkdir(parents=True, exist_ok=True)
        self.adopt_after = adopt_after
        self._clock = clock
        self._lock = LockFile(self.work_dir / "lock", clock=clock)
        self._commits: GroupCommit[_Staged, _Committed] = GroupCommit(self._commit_batch)
        # staging directories whose outcome is unknown (token -> its record), settled by the upkeep
        self._unsettled: dict[str, tuple[IndexedSubmission, str | None]] = {}
        self._unsettled_lock = threading.Lock()
        # date folders known to be durable in the inbox (created and fsynced into it by this process)
        self._durable_folders: set[Path] = set()
        self._folders_lock = threading.Lock()
        self._upkeep_stop = threading.Event()
        self._upkeep_thread: threading.Thread | None = None
        self._heartbeat_thread: threading.Thread | None = None
        self._beat_lock = threading.Lock()

    @property
    def spool_dir(self) -> Path:
        return self.work_dir / "spool"

    @property
    def staging_dir(self) -> Path:
        return self.work_dir / "staging"

    # -- the working area -----------------------------------------------------------------------------

    def lock(self) -> None:
        """Hold this receiver's working area until :meth:`close`: a second receiver of the same name on this
        inbox is refused (its recovery would take our work in progress for leftovers). The lock file names this
        host and process with a heartbeat (renewed by the upkeep), so that another receiver can tell a dead
        holder from a live one, also from another host of a shared filesystem."""
        if self._lock.held:
            return
        deadline = time.monotonic() + _LOCK_WAIT_SECONDS  # another receiver's upkeep may be adopting it now
        while not self._lock.try_acquire():
            if time.monotonic() >= deadline:
                raise ConfigurationError(
                    f"another receiver named {self.receiver!r} is running on inbox {self.root}; give each "
                    "receiver its own name (--receiver-name, or receiver.name)",
                    location=str(self.work_dir),
                )
            time.sleep(0.05)
        owner = self._lock.owner()
        if owner is not None and self._alive_elsewhere(owner):
            self._lock.release(clear=False)
            raise ConfigurationError(
                f"receiver {self.receiver!r} on inbox {self.root} is held by process {owner.pid} on host "
                f"{owner.host} (heartbeat {self._clock() - owner.heartbeat_at:.0f} s ago); give each receiver "
                "its own name (--receiver-name, or receiver.name)",
                location=str(self.work_dir),
            )
        self._lock.beat()

    def _alive_elsewhere(self, owner: LockOwner) -> bool:
        """Whether the holder named in a lock file we could ``flock`` may still be running: only on another host
        (whose ``flock`` a network filesystem may not show us), with a heartbeat younger than
        :data:`HOLDER_SILENT_SECONDS`."""
        return not owner.this_host and self._clock() - owner.heartbeat_at < HOLDER_SILENT_SECONDS

    def close(self) -> None:
        """Stop the upkeep and release the working area (the lock file then names nobody)."""
        self._upkeep_stop.set()
        for thread in (self._upkeep_thread, self._heartbeat_thread):
            if thread is not None:
                thread.join()
        self._upkeep_thread = self._heartbeat_thread = None
        self._lock.release()

    def recover(self) -> Recovery:
        """Take this receiver's working area (:meth:`lock`) and finish or undo what a crash left in it.

        Run it at start-up, before serving. Spooled parts are removed; each staging directory the index has a
        record of is moved into place, every other one is removed (module docstring). Another receiver's
        working area is never touched, so receivers sharing an inbox start and stop independently.
        """
        self.lock()
        return self._recover_area(self.receiver, self.work_dir, older_than=None)

    def _recover_area(
        self, receiver: str, work_dir: Path, *, older_than: float | None, until: float | None = None
    ) -> Recovery:
        """Settle the leftovers in one working area (ours, or one adopted, whose lock we hold): spooled parts
        removed; each staging directory moved into place if the index has it recorded for ``receiver``, else
        removed. ``older_than``: only entries last changed before that time (adoption); ``until``: stop at that
        ``time.monotonic()`` (adoption, which holds another receiver's lock), leaving the rest for later."""
        removed = completed = 0
        spool, staging_dir = work_dir / "spool", work_dir / "staging"
        for child in _entries(spool, older_than):
            if until is not None and time.monotonic() > until:
                break
            _remove(child)
            removed += 1
        for staging in _entries(staging_dir, older_than):
            if until is not None and time.monotonic() > until:
                break  # the rest at the next round: the area's own receiver may be waiting for its lock
            recorded = self.index.staged(receiver, staging.name) if staging.is_dir() else None
            if recorded is None:
                _remove(staging)
                removed += 1
                continue
            final = self._move_into_place(
                staging, recorded.unique_id, staging.name, self.root / recorded.path
            )
            log.warning(
                "recovery: submission %s, recorded before an interruption, moved into place at %s",
                recorded.unique_id,
                final,
            )
            completed += 1
        if removed or completed:
            _sync_folder(staging_dir)
        return Recovery(removed, completed)

    # -- upkeep ---------------------------------------------------------------------------------------

    def start_upkeep(self, interval: float = UPKEEP_SECONDS) -> None:
        """Run :meth:`upkeep` every ``interval`` seconds on a thread of its own until :meth:`close` (after
        :meth:`recover`: the working area must be held)."""
        if self._upkeep_thread is not None:
            return
        self._upkeep_stop.clear()
        thread = threading.Thread(
            target=self._upkeep_loop, args=(interval,), name=f"inbox-upkeep-{self.receiver}", daemon=True
        )
        self._upkeep_thread = thread
        thread.start()
        # The heartbeat on a thread of its own: a round of upkeep waiting on a slow database must not let it go
        # silent, or a receiver on another host that cannot see our flock would take us for dead.
        beating = threading.Thread(
            target=self._heartbeat_loop,
            args=(interval / 3,),
            name=f"inbox-heartbeat-{self.receiver}",
            daemon=True,
        )
        self._heartbeat_thread = beating
        beating.start()

    def _beat(self) -> None:
        """Renew the heartbeat in the lock file (one writer at a time: two interleaved writes could leave a
        file that names nobody, which others read as "released")."""
        with self._beat_lock:
            if self._lock.held:
                self._lock.beat()

    def _heartbeat_loop(self, interval: float) -> None:
        while not self._upkeep_stop.wait(interval):
            try:
                self._beat()
            except OSError as exc:
                log.warning("inbox heartbeat not written: %s", exc.strerror or exc)

    def _upkeep_loop(self, interval: float) -> None:
        while not self._upkeep_stop.wait(interval):
            try:
                self.upkeep()
            except Exception:  # the next round tries again; an upkeep failure never stops the receiver
                log.exception("inbox upkeep failed; tried again in %.0f s", interval)

    def upkeep(self) -> Upkeep:
        """One round of upkeep: renew this working area's heartbeat, settle the submissions whose outcome was
        unknown (module docstring) when the index can be asked again, and adopt dead working areas."""
        self._beat()
        settled = 0
        with self._unsettled_lock:
            pending = list(self._unsettled.items())
        for token, (record, transaction) in pending:
            staging = self.staging_dir / token
            if self._settle(staging, record, transaction=transaction, quiet=True) is not _UNKNOWN:
                settled += 1
        with self._unsettled_lock:
            unsettled = len(self._unsettled)
        adopted: list[str] = []
        removed = completed = 0
        for name, work_dir in self._dead_areas():
            area = LockFile(work_dir / "lock", clock=self._clock)
            if not area.try_acquire():
                continue
            try:
                owner = area.owner()
                if owner is not None and (
                    owner.process_alive() if owner.this_host else self._alive_elsewhere(owner)
                ):
                    area.release(clear=False)
                    continue
                recovery = self._recover_area(
                    name,
                    work_dir,
                    older_than=self._clock() - self.adopt_after,
                    until=time.monotonic() + _ADOPT_SLICE_SECONDS,
                )
            except (OSError, XdrError) as exc:  # the database or the disk: the next round tries again
                log.warning("working area of receiver %s not adopted yet: %s", name, exc)
                area.release(clear=False)
                continue
            except BaseException:
                area.release(clear=False)  # never keep another receiver's lock: it could not start again
                raise
            area.release()
            if recovery.removed or recovery.completed:
                log.warning(
                    "adopted the working area of receiver %s (not running): %d submission(s) moved into place, "
                    "%d leftover(s) removed",
                    name,
                    recovery.completed,
                    recovery.removed,
                )
                adopted.append(name)
                removed += recovery.removed
                completed += recovery.completed
        return Upkeep(settled, unsettled, tuple(adopted), Recovery(removed, completed))

    def _dead_areas(self) -> list[tuple[str, Path]]:
        """Other receivers' working areas on this inbox holding leftovers older than ``adopt_after`` (whether
        their holder is gone is decided under their lock)."""
        cutoff = self._clock() - self.adopt_after
        found = []
        for entry in _entries(self.root / ".work", None):
            if entry.name == self.receiver or not RECEIVER_NAME.match(entry.name) or not entry.is_dir():
                continue
            if any(True for _ in _entries(entry / "staging", cutoff)) or any(
                True for _ in _entries(entry / "spool", cutoff)
            ):
                found.append((entry.name, entry))
        return found

    def probe(self) -> None:
        """Raise :class:`OSError` unless a file can be written and synced in the working area (``/healthz``)."""
        path = self.work_dir / f"probe-{uuid.uuid4().hex}"
        try:
            write_synced(path, b"xdr-edge health probe\n")
        finally:
            path.unlink(missing_ok=True)

    # -- storing --------------------------------------------------------------------------------------

    def contains(self, unique_id: str) -> bool:
        """Whether a SubmissionSet with this uniqueId is stored, from any practice, through any receiver."""
        return self.index.contains(unique_id)

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
        DocumentEntry uniqueId with other bytes, :class:`StoreError` when the disk or the database fails;
        nothing is kept then.

        Documents are moved out of the MTOM spool when possible (a rename on the same filesystem), otherwise
        copied; either way the bytes are the ones whose SHA-1 was checked while they arrived."""
        unique_id = submission.submission_set.unique_id
        practice = summary.get("practice")
        token = uuid.uuid4().hex
        staging = self.staging_dir / token
        try:
            written = self._write(submission, staging, metadata, package, summary)
            now = datetime.now(UTC)
            final = self._free_name(self.root / now.strftime("%Y-%m-%d"), _safe(unique_id))
            record = IndexedSubmission(
                unique_id, practice, self.receiver, token, self._relative(final), now.replace(microsecond=0)
            )
            documents = tuple(
                IndexedDocument(document["unique_id"], document["sha1"], document["size"])
                for document in written.summary["documents"]
            )
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, OSError):
                raise StoreError(f"could not store submission {unique_id}: {exc.strerror or exc}") from exc
            raise
        try:
            committed = self._commits.commit(_Staged(record, documents, staging, final))
        except Exception as exc:  # (an interrupt leaves the staging directory to recovery: it asks the index)
            transaction = exc.transaction_id if isinstance(exc, CommitUnknown) else None
            settled = self._settle(staging, record, transaction=transaction)
            if settled is _UNKNOWN:
                raise _outcome_unknown(unique_id) from exc
            if settled is None:
                if transaction is not None:  # rolled back, certainly: "not stored, retry" is the truth
                    raise StoreError(
                        f"submission {unique_id} was not recorded: the connection to the registry database was "
                        "lost while committing, and the database rolled the transaction back; retry later",
                        code=UNAVAILABLE,
                    ) from exc
                raise
            return _in_place(written, staging, settled)
        if committed.conflict is not None:
            shutil.rmtree(staging, ignore_errors=True)
            if committed.conflict.kind is ConflictKind.DUPLICATE:
                return None
            self._refuse(committed.conflict, practice)
        if committed.error is not None or committed.final is None:
            if not self._undo(staging, record):
                raise _outcome_unknown(unique_id) from committed.error
            raise StoreError(
                f"could not store submission {unique_id}: {committed.error}"
            ) from committed.error
        return _in_place(written, staging, committed.final)

    def _commit_batch(self, batch: Sequence[_Staged]) -> list[_Committed]:
        """Steps 2 and 3 for a batch (module docstring): one index transaction, the renames, one fsync per
        folder. Raises only when the index did not answer, or ``staging/`` could not be flushed (each request
        then settles its own submission)."""
        try:
            fsync_dir(self.staging_dir)  # the staging directories' names, before the index points at them
        except OSError as exc:
            raise StoreError(f"could not flush {self.staging_dir}: {exc.strerror or exc}") from exc
        conflicts = self.index.record_many([(staged.record, staged.documents) for staged in batch])
        results: list[_Committed] = []
        folders: set[Path] = set()
        for staged, conflict in zip(batch, conflicts, strict=True):
            if conflict is not None:
                results.append(_Committed(conflict=conflict))
                continue
            try:
                final = self._rename_into_place(
                    staged.staging, staged.record.unique_id, staged.record.staged_as, staged.final
                )
            except (OSError, StoreError) as exc:
                results.append(_Committed(error=exc))
                continue
            folders.add(final.parent)
            results.append(_Committed(final=final))
        if folders:
            folders.add(self.staging_dir)  # the folder the renames left: both ends of a rename are flushed
        for folder in sorted(folders):
            _sync_folder(folder)
        return results

    def _settle(
        self,
        staging: Path,
        record: IndexedSubmission,
        *,
        transaction: str | None = None,
        quiet: bool = False,
    ) -> Path | _Unknown | None:
        """Recording failed, perhaps after the database committed (a connection lost while committing): ask it.
        Recorded after all: move it into place and return where (the submission is stored). Certainly not:
        remove the staging directory and return None. No answer, or recorded but not moved into place:
        :data:`_UNKNOWN`; the staging directory is kept and the upkeep (or the next start) settles it.

        ``transaction``: the recording's ``COMMIT`` was sent and its answer lost (:class:`CommitUnknown`). Its rows
        may still be on their way (a server still committing), so "no row" proves nothing: only the transaction's
        own status decides, and until it is known the outcome stays unknown."""
        try:
            if transaction is not None:
                committed = self.index.committed(transaction)
                if committed is None:
                    return self._keep_unsettled(record, transaction)
                if not committed:
                    shutil.rmtree(staging, ignore_errors=True)
                    self._forget_unsettled(record)
                    return None
            recorded = self.index.staged(self.receiver, record.staged_as)
        except XdrError:
            if not quiet:
                log.error(
                    "submission %s: whether it was recorded is unknown; it is settled once the index answers",
                    record.unique_id,
                )
            return self._keep_unsettled(record, transaction)
        if recorded is None:
            shutil.rmtree(staging, ignore_errors=True)
            self._forget_unsettled(record)
            return None
        try:
            final = self._move_into_place(
                staging, record.unique_id, record.staged_as, self.root / recorded.path
            )
        except (OSError, XdrError):
            log.exception(
                "submission %s recorded but not moved into place; tried again later", record.unique_id
            )
            return self._keep_unsettled(record)
        if quiet:
            log.warning(
                "submission %s of unknown outcome was recorded: moved into place at %s",
                record.unique_id,
                final,
            )
        self._forget_unsettled(record)
        return final

    def _keep_unsettled(self, record: IndexedSubmission, transaction: str | None = None) -> _Unknown:
        """Keep ``record``'s staging directory for the upkeep, with the transaction whose status decides it."""
        with self._unsettled_lock:
            self._unsettled[record.staged_as] = (record, transaction)
        return _UNKNOWN

    def _forget_unsettled(self, record: IndexedSubmission) -> None:
        with self._unsettled_lock:
            self._unsettled.pop(record.staged_as, None)

    def _undo(self, staging: Path, record: IndexedSubmission) -> bool:
        """Moving into place failed after recording: undo the record so the sender's retry is accepted; False
        when the database cannot be reached either: the staging directory stays, and the upkeep (or the next
        start) moves it into place."""
        try:
            self.index.forget(record.unique_id, record.staged_as)
        except StoreError:
            log.exception(
                "submission %s recorded but not in place; it is moved there later", record.unique_id
            )
            self._keep_unsettled(record)
            return False
        shutil.rmtree(staging, ignore_errors=True)
        return True

    @staticmethod
    def _refuse(conflict: IndexConflict, practice: str | None) -> NoReturn:
        unique_id = conflict.unique_id
        if conflict.kind in (ConflictKind.SUBMISSION_ELSEWHERE, ConflictKind.DOCUMENT_ELSEWHERE):
            submission_set = conflict.kind is ConflictKind.SUBMISSION_ELSEWHERE
            log.warning(
                "%s uniqueId %s from practice %s refused: already held by practice %s",
                "SubmissionSet" if submission_set else "DocumentEntry",
                unique_id,
                practice,
                conflict.holder,
            )
            raise UniqueIdOwnedElsewhere(unique_id, submission_set=submission_set)
        code = NON_IDENTICAL_HASH if conflict.kind is ConflictKind.DOCUMENT_HASH else NON_IDENTICAL_SIZE
        raise DocumentConflict(unique_id, code)

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    @staticmethod
    def _free_name(parent: Path, name: str) -> Path:
        final = parent / name
        while final.exists():
            final = parent / f"{name}-{uuid.uuid4().hex[:8]}"
        return final

    def _move_into_place(self, staging: Path, unique_id: str, token: str, final: Path) -> Path:
        """Rename the staging directory to ``final`` (another free name, recorded in the index, when another
        receiver took that one meanwhile) and make the rename durable."""
        final = self._rename_into_place(staging, unique_id, token, final)
        _sync_folder(final.parent)
        return final

    def _rename_into_place(self, staging: Path, unique_id: str, token: str, final: Path) -> Path:
        """:meth:`_move_into_place` but the fsync of the folder it went to, which the caller owes."""
        parent = final.parent
        self._ensure_folder(parent)
        for _ in range(_NAME_ATTEMPTS):
            try:
                os.rename(staging, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                final = self._free_name(parent, _safe(unique_id))
                self.index.relocate(unique_id, token, self._relative(final))
                continue
            return final
        raise StoreError(f"no free directory name for submission {unique_id}", location=str(parent))

    def _ensure_folder(self, folder: Path) -> None:
        """Make ``folder`` (a date folder) exist durably before anything is renamed into it: created if needed,
        and its entry in the inbox flushed, once per process and folder. Whoever meets the folder first does it
        under a lock, so a thread (or another receiver) that finds it already made by someone still about to
        flush it does not store into a folder a power cut could lose."""
        with self._folders_lock:
            if folder in self._durable_folders:
                return
            folder.mkdir(parents=True, exist_ok=True)
            fsync_dir(folder.parent)
            if len(self._durable_folders) >= 1024:  # one per day: only a very long run gets here
                self._durable_folders.clear()
            self._durable_folders.add(folder)

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
        fsync_dir(docs_dir)
        full_summary = {**summary, "documents": documents}
        write_synced(tmp / "metadata.xml", etree.tostring(metadata, encoding="UTF-8", xml_declaration=True))
        # One line, written by json's C encoder (indenting switches to its pure-Python encoder, a tenth of
        # the store's CPU per submission); ``python -m json.tool`` shows it indented.
        write_synced(tmp / "summary.json", json.dumps(full_summary).encode("utf-8") + b"\n")
        fsync_dir(tmp)
        return StoredSubmission(tmp, full_summary, tuple(paths))

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
