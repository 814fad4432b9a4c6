"""Claiming drops out of ``incoming/``: intent in the journal, rename, flush, ``claimed``.

Done in batches (:data:`BATCH` drops): one transaction records every intent (state ``claiming``, with the drop's
name), then each drop is renamed into ``.state/claimed/<id>/``, then the directories involved are flushed once,
then one transaction marks the drops that moved ``claimed`` and forgets those that did not (taken back by their
writer). Two commits and a few directory flushes per batch instead of per drop, with the same guarantee: the
intent is on disk before the rename, and after a crash anywhere in between :mod:`.recovery` completes or undoes
each claim by looking where the drop is.

A rename that fails for another reason than the drop being gone (EXDEV across filesystems, EACCES, EBUSY on a
share) is returned to the caller, which says so (once, not at every poll) and, with ``--once``, counts the drop as
left in ``incoming/``.
"""

from __future__ import annotations

__all__ = ["BATCH", "Claimed", "Claims", "claim"]

import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from xdr_edge.durable import fsync_dir
from xdr_edge.sender.outbox.arrivals import Arrival
from xdr_edge.sender.outbox.drop import peek_practice
from xdr_edge.sender.outbox.journal import Journal, State
from xdr_edge.sender.outbox.layout import OutboxLayout

log = logging.getLogger("xdr_edge.sender.outbox")

#: Drops claimed per journal transaction: large enough to make the commits cheap per drop, small enough that
#: the workers get the first drops of a large backlog at once.
BATCH = 64


@dataclass(frozen=True)
class Claimed:
    drop_id: str
    practice: str | None
    since: float


@dataclass(frozen=True)
class Claims:
    """What a batch did: the drops now claimed, and those whose rename failed (with the error)."""

    claimed: list[Claimed]
    failed: list[tuple[Arrival, OSError]]


def claim(
    layout: OutboxLayout, journal: Journal, arrivals: Sequence[Arrival], clock: Callable[[], float]
) -> Claims:
    """Claim ``arrivals`` (at most :data:`BATCH` at a time is the caller's choice)."""
    now = clock()
    planned = [
        (uuid.uuid4().hex[:20], arrival, peek_practice(arrival.path, arrival.practice_folder))
        for arrival in arrivals
    ]
    with journal.transaction() as conn:
        for drop_id, arrival, practice in planned:
            journal.insert(
                conn,
                drop_id=drop_id,
                name=arrival.name,
                kind=arrival.kind,
                practice=practice,
                state=State.CLAIMING,
                now=now,
            )
    moved: list[Claimed] = []
    missed: list[str] = []
    failed: list[tuple[Arrival, OSError]] = []
    flush: set[Path] = {layout.claimed}
    for drop_id, arrival, practice in planned:
        root = layout.claimed_dir(drop_id)
        target = root if arrival.kind == "folder" else root / arrival.path.name
        try:
            if arrival.kind != "folder":
                root.mkdir()
                flush.add(root)
            if target.exists():
                raise FileExistsError(str(target))
            os.rename(arrival.path, target)
        except OSError as exc:
            if root.is_dir() and not root.is_symlink() and not any(root.iterdir()):
                root.rmdir()
                flush.discard(root)
            missed.append(drop_id)
            if not isinstance(exc, FileNotFoundError):  # taken back by its writer: not an error
                failed.append((arrival, exc))
            continue
        flush.add(arrival.path.parent)
        moved.append(Claimed(drop_id, practice, now))
    for directory in sorted(flush):
        try:
            fsync_dir(directory)
        except OSError as exc:
            log.warning("could not flush %s after claiming: %s", directory, exc.strerror or exc)
    with journal.transaction() as conn:
        for item in moved:
            journal.update(conn, item.drop_id, expect=(State.CLAIMING,), now=now, state=State.CLAIMED)
        for drop_id in missed:
            journal.delete(conn, drop_id)
    return Claims(moved, failed)
