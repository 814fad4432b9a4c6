"""Start-up after a crash: read the journal and the folders together and put every drop back on its way.

Runs under the runner lock, before any worker starts, so nothing else moves a drop meanwhile. For each state a
crash can leave:

- ``claiming`` (the intent was written, the rename out of ``incoming/`` may or may not have happened): if the drop
  is in the working area it is ``claimed``; otherwise it is still in ``incoming/`` and the intent is dropped, to be
  claimed again by the next scan.
- ``sending``: a request may have left, and may have been stored. The drop waits for an immediate re-send with the
  same uniqueIds, marked "maybe stored", so that a duplicate answer counts as delivered.
- ``finishing``: the decision is in the journal; the workers redo the writes and the move.
- ``sent``/``failed`` whose folder is back in the working area and no longer at its final place: an
  ``xdr-edge outbox retry`` stopped between its move and its commit; it is completed (the drop waits).
- a folder in the working area that the journal does not know (the journal was removed or replaced): moved to
  ``failed/`` with an error.txt saying so, never sent again blindly (it may have been delivered).
"""

from __future__ import annotations

__all__ = ["Recovered", "recover"]

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from xdr_edge.sender.outbox.journal import Journal, State
from xdr_edge.sender.outbox.layout import OutboxLayout, fsync_dir, rename_durably, write_durably

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
    completed = undone = interrupted = retried = 0
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
    for row in journal.rows((State.SENT, State.FAILED)):
        root = layout.claimed_dir(row.id)
        if row.final and root.is_dir() and not (layout.root / row.final).exists():
            journal.change(
                row.id,
                expect=(row.state,),
                detail="retry",
                state=State.WAITING if row.submission else State.CLAIMED,
                since=now,
                next_at=now,
                final=None,
                result=None,
                retries=0,
            )
            retried += 1
    orphans = _adopt_orphans(layout, journal, now)
    found = Recovered(completed, undone, interrupted, retried, orphans)
    if found.total:
        log.warning(
            "outbox recovery: %d claims completed, %d undone, %d sends interrupted (re-sent with the same "
            "uniqueIds), %d retries completed, %d unknown drops moved to failed/",
            completed,
            undone,
            interrupted,
            retried,
            orphans,
        )
    return found


def _adopt_orphans(layout: OutboxLayout, journal: Journal, now: float) -> int:
    """Folders in the working area without a live journal entry go to failed/ with the reason."""
    live = {r.id for r in journal.rows((State.CLAIMED, State.SENDING, State.WAITING, State.FINISHING))}
    adopted = 0
    try:
        entries = list(os.scandir(layout.claimed))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name in live or entry.name.startswith("."):
            continue
        root = Path(entry.path)
        final = f"failed/{entry.name}~orphan"
        if (layout.root / final).exists():
            final = f"failed/{entry.name}~orphan-{uuid.uuid4().hex[:8]}"
        message = (
            "This drop was found in the outbox's working area (.state/claimed) without a journal entry: the "
            "journal was removed or replaced while the drop was being worked on. It may or may not have been "
            "delivered. Check with the recipient, then move it into incoming/ to send it as a new drop."
        )
        if root.is_dir() and not root.is_symlink():
            write_durably(root / "error.txt", (message + "\n").encode("utf-8"))
            document = {
                "drop": entry.name,
                "state": "failed",
                "outcome": "Unknown",
                "code": "orphan",
                "message": message,
            }
            write_durably(root / "result.json", (json.dumps(document, indent=2) + "\n").encode("utf-8"))
            rename_durably(root, layout.root / final)
        else:
            holder = layout.root / final
            holder.mkdir()
            rename_durably(root, holder / entry.name)
            fsync_dir(holder)
        log.error("outbox recovery: unknown drop %s in the working area moved to %s", entry.name, final)
        adopted += 1
    return adopted
