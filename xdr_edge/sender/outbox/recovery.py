"""Start-up after a crash: read the journal and the folders together and put every drop back on its way.

Runs under the runner lock, before any worker starts, so nothing else moves a drop meanwhile. Its cost follows
what is in progress, never the history: the states a crash can leave are read through the journal's state index,
and the working area is listed once with each entry looked up by id. For each state a crash can leave:

- ``claiming`` (the intent was written, the rename out of ``incoming/`` may or may not have happened): if the drop
  is in the working area it is ``claimed``; otherwise it is still in ``incoming/`` and the intent is dropped, to be
  claimed again by the next scan.
- ``sending``: a request may have left, and may have been stored. The drop waits for an immediate re-send with the
  same uniqueIds, marked "maybe stored", so that a duplicate answer counts as delivered.
- ``finishing``: the decision is in the journal; the workers redo the writes and the move.
- ``retrying``: an ``xdr-edge outbox retry`` recorded its intent and may or may not have moved the folder back:
  :func:`finish_retry` completes it (a running run also does, at every poll).
- ``sent``/``failed`` whose folder is back in the working area and no longer at its final place: a retry made by
  an earlier version (which moved first) stopped between its move and its commit; it is completed.
- a folder in the working area that the journal does not know (the journal was removed or replaced): moved to
  ``failed/`` with an error.txt saying so, never sent again blindly (it may have been delivered).
"""

from __future__ import annotations

__all__ = ["Recovered", "finish_retry", "recover"]

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from xdr_edge.durable import fsync_dir, rename_durably, write_atomic
from xdr_edge.sender.outbox.journal import ACTIVE, FINISHED, DropRow, Journal, JournalConflict, State
from xdr_edge.sender.outbox.layout import OUTPUT_NAMES, OutboxLayout
from xdr_edge.sender.outbox.verdict import Step, error_text, result_document

log = logging.getLogger("xdr_edge.sender.outbox")


@dataclass(frozen=True)
class Recovered:
    """What recovery found: counts per kind of repair."""

    claims_completed: int = 0
    claims_undone: int = 0
    sends_interrupted: int = 0
    retries_completed: int = 0
    orphans: int = 0

    @property
    def total(self) -> int:
        return (
            self.claims_completed
            + self.claims_undone
            + self.sends_interrupted
            + self.retries_completed
            + self.orphans
        )


def _claim_landed(layout: OutboxLayout, drop_id: str, kind: str, name: str) -> bool:
    root = layout.claimed_dir(drop_id)
    if kind == "folder":
        return root.exists() or root.is_symlink()
    inner = root / PurePosixPath(name).name
    return inner.exists() or inner.is_symlink()


def recover(layout: OutboxLayout, journal: Journal, *, clock: Callable[[], float] = time.time) -> Recovered:
    """Repair what a crash left (see the module docstring); returns what was done."""
    now = clock()
    completed = undone = interrupted = 0
    for row in journal.rows((State.CLAIMING,)):
        if _claim_landed(layout, row.id, row.kind, row.name):
            journal.change(row.id, expect=(State.CLAIMING,), detail="recovered", state=State.CLAIMED)
            completed += 1
        else:
            root = layout.claimed_dir(row.id)
            if root.is_dir() and not root.is_symlink() and not any(root.iterdir()):
                root.rmdir()
            with journal.transaction() as conn:
                journal.delete(conn, row.id)
            undone += 1
    for row in journal.rows((State.SENDING,)):
        journal.change(
            row.id,
            expect=(State.SENDING,),
            detail="interrupted",
            state=State.WAITING,
            next_at=now,
            maybe_stored=True,
            interrupted=row.interrupted + 1,
        )
        interrupted += 1
    retried = sum(finish_retry(layout, journal, row, now) for row in journal.rows((State.RETRYING,)))
    older, orphans = _scan_working_area(layout, journal, now)
    found = Recovered(completed, undone, interrupted, retried + older, orphans)
    if found.total:
        log.warning(
            "outbox recovery: %d claims completed, %d undone, %d sends interrupted (re-sent with the same "
            "uniqueIds), %d retries completed, %d unknown drops moved to failed/",
            completed,
            undone,
            interrupted,
            found.retries_completed,
            orphans,
        )
    return found


def finish_retry(layout: OutboxLayout, journal: Journal, row: DropRow, now: float) -> bool:
    """Complete the retry of ``row`` (state ``retrying``): move its folder from its place in ``failed/`` back to
    the working area unless that happened already, and make it workable again (``waiting`` with its uniqueIds
    kept, ``claimed`` when they were given up). Safe to call from several processes at once: the rename happens
    once (:func:`rename_durably` never replaces) and the state changes once. True when this call completed it."""
    target = layout.claimed_dir(row.id)
    source = layout.root / row.final if row.final else None
    if not target.exists():
        if source is None or not source.is_dir():
            try:  # the folder is gone from failed/ (removed meanwhile): nothing to send; it stays failed
                journal.change(row.id, expect=(State.RETRYING,), detail="retry-gone", state=State.FAILED)
            except JournalConflict:
                return False
            log.error("drop %s: its folder left %s before it could be sent again", row.id, row.final)
            return False
        try:
            rename_durably(source, target)
        except (FileExistsError, FileNotFoundError):
            if not target.exists():  # moved by someone else: only the state change is left
                raise
    for name in OUTPUT_NAMES:
        (target / name).unlink(missing_ok=True)
    try:
        _requeue(journal, row, now, expect=State.RETRYING, detail="retried")
    except JournalConflict:
        return False  # completed by another process meanwhile
    return True


def _requeue(journal: Journal, row: DropRow, now: float, *, expect: State, detail: str) -> None:
    """Make a drop being sent again due now: waiting when its submission is made, else claimed (to be read
    again); no longer finished, its retry and park counts from zero (a drop that failed at the park limit would
    otherwise fail again at its first park)."""
    journal.change(
        row.id,
        expect=(expect,),
        detail=detail,
        state=State.WAITING if row.submission is not None else State.CLAIMED,
        since=now,
        next_at=now,
        final=None,
        result=None,
        retries=0,
        parks=0,
    )


def _scan_working_area(layout: OutboxLayout, journal: Journal, now: float) -> tuple[int, int]:
    """Look up each folder of the working area by id: complete an interrupted retry of an earlier version, and
    move a folder the journal does not know to failed/. Returns (retries completed, orphans)."""
    try:
        entries = list(os.scandir(layout.claimed))
    except FileNotFoundError:
        return 0, 0
    retried = adopted = 0
    for entry in entries:
        if entry.name.startswith("."):
            continue
        row = journal.get(entry.name)
        if row is not None and row.state in ACTIVE:
            continue
        if (
            row is not None
            and row.state in FINISHED
            and row.final
            and entry.is_dir(follow_symlinks=False)
            and not (layout.root / row.final).exists()
        ):
            _requeue(journal, row, now, expect=row.state, detail="retry")
            retried += 1
            continue
        _adopt_orphan(layout, entry, now)
        adopted += 1
    return retried, adopted


_ORPHAN_MESSAGE = (
    "This drop was found in the outbox's working area (.state/claimed) without a journal entry: the journal was "
    "removed or replaced while the drop was being worked on. It may or may not have been delivered. Check with "
    "the recipient, then move it into incoming/ to send it as a new drop."
)


def _adopt_orphan(layout: OutboxLayout, entry: os.DirEntry[str], now: float) -> None:
    """A folder in the working area without a live journal entry goes to failed/, with the reason."""
    root = Path(entry.path)
    final = f"failed/{entry.name}~orphan"
    if (layout.root / final).exists():
        final = f"failed/{entry.name}~orphan-{uuid.uuid4().hex[:8]}"
    document: dict[str, Any] = result_document(
        drop=entry.name,
        drop_id=entry.name,
        state=Step.FAILED,
        outcome="Unknown",
        code="orphan",
        message=_ORPHAN_MESSAGE,
        practice=None,
        sender=None,
        recipients=(),
        documents=(),
        submission_set_unique_id=None,
        document_unique_ids=(),
        message_ids=(),
        attempts=0,
        result=None,
        problems=(),
        gave_up=False,
        response=None,
        received_at=None,
        first_attempt_at=None,
        finished_at=now,
        maybe_delivered=True,
    )
    if root.is_dir() and not root.is_symlink():
        name = PurePosixPath(final).name
        write_atomic(root / "error.txt", error_text(document, name).encode("utf-8"))
        write_atomic(root / "result.json", (json.dumps(document, indent=2) + "\n").encode("utf-8"))
        rename_durably(root, layout.root / final)
    else:
        holder = layout.root / final
        holder.mkdir()
        rename_durably(root, holder / entry.name)
        fsync_dir(holder)
    log.error("outbox recovery: unknown drop %s in the working area moved to %s", entry.name, final)
