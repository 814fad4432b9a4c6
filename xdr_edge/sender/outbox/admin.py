"""Looking at an outbox and sending failed drops again: what ``xdr-edge outbox status`` and ``outbox retry`` do.

Both work while a run is going: the journal is SQLite in WAL mode (readers never wait for the writer), and a retry
changes one drop in one transaction with its move back into the working area, which the running run then picks up
at its next poll.
"""

from __future__ import annotations

__all__ = ["OutboxStatus", "Retried", "outbox_status", "retry_failed"]

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xdr_edge.protocol.errors import ConfigurationError, LocalProtocolError, StoreError
from xdr_edge.sender.outbox.arrivals import find_arrivals
from xdr_edge.sender.outbox.events import iso
from xdr_edge.sender.outbox.journal import DropRow, Journal, State
from xdr_edge.sender.outbox.layout import OUTPUT_NAMES, OutboxLayout, RunnerLock, rename_durably

#: The states ``outbox status`` counts, in the order a drop goes through them.
STATUS_STATES = ("incoming", "claimed", "sending", "waiting", "sent", "failed")


@dataclass(frozen=True)
class OutboxStatus:
    """Counts per state, the oldest waiting drop and the last error; ``runner_pid`` is None when no run holds
    the outbox (0 when one does but its pid cannot be read)."""

    directory: Path
    runner_pid: int | None
    counts: dict[str, int]
    oldest_waiting: dict[str, Any] | None
    last_error: dict[str, Any] | None

    @property
    def running(self) -> bool:
        return self.runner_pid is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "running": self.running,
            "runner_pid": self.runner_pid or None,
            "counts": self.counts,
            "oldest_waiting": self.oldest_waiting,
            "last_error": self.last_error,
        }


def _layout(directory: Path | str) -> OutboxLayout:
    layout = OutboxLayout(Path(directory))
    if not layout.incoming.is_dir():
        raise ConfigurationError(
            f"{layout.root} is not an outbox (no incoming/ folder); `xdr-edge outbox run` makes one",
            location=str(layout.root),
        )
    return layout


def outbox_status(directory: Path | str, *, clock: Callable[[], float] = time.time) -> OutboxStatus:
    layout = _layout(directory)
    now = clock()
    counts = dict.fromkeys(STATUS_STATES, 0)
    oldest: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    folders: frozenset[str] = frozenset()
    if layout.journal_path.is_file():
        with Journal(layout.journal_path, create=False) as journal:
            folders = frozenset(journal.meta("practice_folders") or ())
            found = journal.counts()
            counts["claimed"] = found.get(State.CLAIMED.value, 0) + found.get(State.CLAIMING.value, 0)
            counts["sending"] = found.get(State.SENDING.value, 0) + found.get(State.FINISHING.value, 0)
            for state in (State.WAITING, State.SENT, State.FAILED):
                counts[state.value] = found.get(state.value, 0)
            waiting = journal.oldest(State.WAITING)
            if waiting is not None:
                oldest = {
                    "drop": waiting.name,
                    "drop_id": waiting.id,
                    "waiting_since": iso(waiting.since),
                    "age_seconds": round(now - waiting.since),
                    "attempts": waiting.attempts + waiting.interrupted,
                    "next_attempt_at": iso(waiting.next_at),
                    "last_error": waiting.last_error,
                }
            errored = journal.last_error()
            if errored is not None:
                last = {
                    "drop": errored.name,
                    "drop_id": errored.id,
                    "at": iso(errored.last_error_at),
                    "state": errored.state.value,
                    "outcome": errored.last_outcome,
                    "message": errored.last_error,
                    "where": errored.final,
                }
    counts["incoming"] = len(find_arrivals(layout.incoming, folders))
    return OutboxStatus(layout.root, RunnerLock(layout).holder(), counts, oldest, last)


@dataclass(frozen=True)
class Retried:
    name: str
    drop_id: str
    new_ids: bool


def retry_failed(
    directory: Path | str,
    names: Sequence[str] = (),
    *,
    all_failed: bool = False,
    new_ids: bool = False,
    clock: Callable[[], float] = time.time,
) -> list[Retried]:
    """Move failed drops back into the working area to be sent again (the next poll of a run, or the next run).

    They keep their uniqueIds, and whether an earlier attempt may have been stored, so a HISP that already has a
    copy answers with a duplicate and the drop counts as delivered. ``new_ids`` forgets them: the drop is sent
    as a new submission (for a drop whose documents were changed after it was sent; a copy already delivered
    would then be delivered twice). Names are checked first: an unknown name changes nothing."""
    if bool(names) == all_failed:
        raise LocalProtocolError("name the failed drops to retry, or ask for all of them", code="bad-option")
    layout = _layout(directory)
    if not layout.journal_path.is_file():
        raise ConfigurationError(
            f"{layout.root} has no journal: nothing was ever sent from it", location=str(layout.root)
        )
    done: list[Retried] = []
    with Journal(layout.journal_path, create=False) as journal:
        rows = _failed_rows(layout, journal, names, all_failed)
        for row in rows:
            done.append(_retry_one(layout, journal, row, new_ids, clock()))
    return done


def _failed_rows(
    layout: OutboxLayout, journal: Journal, names: Sequence[str], all_failed: bool
) -> list[DropRow]:
    if all_failed:
        return [
            r
            for r in journal.rows((State.FAILED,))
            if r.final is not None and (layout.root / r.final).is_dir()
        ]
    rows: list[DropRow] = []
    unknown: list[str] = []
    for name in names:
        clean = name.strip().rstrip("/").removeprefix("failed/")
        row = journal.by_final(f"failed/{clean}")
        if row is None or row.state is not State.FAILED or not (layout.failed / clean).is_dir():
            unknown.append(name)
        else:
            rows.append(row)
    if unknown:
        raise LocalProtocolError(
            f"not a failed drop of this outbox: {', '.join(unknown)} (names as in {layout.failed}/)",
            code="not-failed",
        )
    return rows


def _retry_one(layout: OutboxLayout, journal: Journal, row: DropRow, new_ids: bool, now: float) -> Retried:
    assert row.final is not None
    source = layout.root / row.final
    target = layout.claimed_dir(row.id)
    keep = row.submission is not None and not new_ids
    columns: dict[str, Any] = {
        "state": State.WAITING if keep else State.CLAIMED,
        "since": now,
        "next_at": now,
        "final": None,
        "result": None,
        "retries": 0,
    }
    if new_ids:
        columns.update(submission=None, maybe_stored=False)
    moved = False
    try:
        with journal.transaction() as conn:
            journal.update(
                conn,
                row.id,
                expect=(State.FAILED,),
                detail="retry-new-ids" if new_ids else "retry",
                now=now,
                **columns,
            )
            rename_durably(source, target)
            moved = True
    except StoreError:
        if moved:  # the commit failed after the move: put it back, as the journal still says failed
            rename_durably(target, source)
        raise
    for name in OUTPUT_NAMES:
        (target / name).unlink(missing_ok=True)
    return Retried(name=source.name, drop_id=row.id, new_ids=new_ids)
