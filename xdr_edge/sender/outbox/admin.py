"""Looking at an outbox and sending failed drops again: what ``xdr-edge outbox status`` and ``outbox retry`` do.

Both work while a run is going. ``status`` opens the journal read-only (SQLite WAL: a reader never waits for the
writer, and never migrates or locks anything) and learns who runs the outbox from what the runner wrote in its lock
file, without touching the lock. ``retry`` records its intent in one transaction (state ``retrying``), moves the
folder back into the working area, then commits the new state; if it is killed in between, the running run
completes it at its next poll (or the next run at its start).

``status`` is free of PHI by default: drop names (practice systems put patient names in them) and messages (which
can quote metadata) are shown only when asked for (``full``).
"""

from __future__ import annotations

__all__ = ["OutboxStatus", "Retried", "find_layout", "outbox_status", "retry_failed"]

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xdr_edge.protocol.errors import ConfigurationError, LocalProtocolError
from xdr_edge.sender.outbox.arrivals import find_arrivals
from xdr_edge.sender.outbox.events import iso
from xdr_edge.sender.outbox.journal import DropRow, Journal, State
from xdr_edge.sender.outbox.layout import OutboxLayout, RunnerLock
from xdr_edge.sender.outbox.recovery import finish_retry

#: The states ``outbox status`` counts, in the order a drop goes through them.
STATUS_STATES = ("incoming", "claimed", "sending", "waiting", "sent", "failed")


@dataclass(frozen=True)
class OutboxStatus:
    """Counts per state, the oldest waiting drop and the last error; ``runner_pid`` and ``runner_host`` say
    which run holds the outbox (None when none does)."""

    directory: Path
    runner_pid: int | None
    counts: dict[str, int]
    oldest_waiting: dict[str, Any] | None
    last_error: dict[str, Any] | None
    runner_host: str | None = None
    journal: Path | None = None

    @property
    def running(self) -> bool:
        return self.runner_pid is not None

    def as_dict(self, *, full: bool = False) -> dict[str, Any]:
        """JSON-ready; without ``full`` no drop name and no message (the PHI-free form)."""
        return {
            "directory": str(self.directory),
            "journal": str(self.journal) if self.journal is not None else None,
            "running": self.running,
            "runner_pid": self.runner_pid,
            "runner_host": self.runner_host,
            "counts": self.counts,
            "oldest_waiting": _shown(self.oldest_waiting, full),
            "last_error": _shown(self.last_error, full),
        }


#: What only the full form of ``outbox status`` shows.
_PERSONAL = ("drop", "message", "last_error", "where")


def _shown(item: dict[str, Any] | None, full: bool) -> dict[str, Any] | None:
    if item is None or full:
        return item
    return {k: v for k, v in item.items() if k not in _PERSONAL}


def find_layout(directory: Path | str, *, state_dir: Path | None = None) -> OutboxLayout:
    """The outbox at ``directory`` and where its journal is: ``state_dir`` when given, else what the run wrote in
    ``.state/journal-location.json`` (a journal kept on this host's local disk), else ``.state/``."""
    layout = OutboxLayout(Path(directory), state_dir)
    if not layout.incoming.is_dir():
        raise ConfigurationError(
            f"{layout.root} is not an outbox (no incoming/ folder); `xdr-edge outbox run` makes one",
            location=str(layout.root),
        )
    if state_dir is None:
        where = layout.journal_location()
        if where is not None:
            if where["host"] != socket.gethostname():
                raise ConfigurationError(
                    f"the journal of {layout.root} is on host {where['host']} ({where['journal']}): run this "
                    "there, where the outbox runs",
                    code="outbox-journal-elsewhere",
                    location=str(layout.location_path),
                )
            layout = OutboxLayout(layout.root, Path(where["journal"]).parent)
    return layout


def outbox_status(
    directory: Path | str, *, state_dir: Path | None = None, clock: Callable[[], float] = time.time
) -> OutboxStatus:
    layout = find_layout(directory, state_dir=state_dir)
    now = clock()
    counts = dict.fromkeys(STATUS_STATES, 0)
    oldest: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    folders: frozenset[str] = frozenset()
    if layout.journal_path.is_file():
        with Journal(layout.journal_path, read_only=True) as journal:
            if journal.created:
                found, folders, oldest, last = _journal_status(journal, now)
                counts.update(found)
    counts["incoming"] = len(find_arrivals(layout.incoming, folders))
    holder = RunnerLock.holder(layout, clock=clock)
    return OutboxStatus(
        layout.root,
        holder.pid if holder is not None else None,
        counts,
        oldest,
        last,
        runner_host=holder.host if holder is not None else None,
        journal=layout.journal_path,
    )


def _journal_status(
    journal: Journal, now: float
) -> tuple[dict[str, int], frozenset[str], dict[str, Any] | None, dict[str, Any] | None]:
    """From the journal: the counts by status state, the practice folders it knows, its oldest waiting drop, its
    last error."""
    oldest: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    folders = frozenset(journal.meta("practice_folders") or ())
    found = journal.counts()
    counts: dict[str, int] = {}
    counts["claimed"] = sum(found.get(s.value, 0) for s in (State.CLAIMED, State.CLAIMING, State.RETRYING))
    counts["sending"] = found.get(State.SENDING.value, 0) + found.get(State.FINISHING.value, 0)
    for state in (State.WAITING, State.SENT, State.FAILED):
        counts[state.value] = found.get(state.value, 0)
    waiting = journal.oldest(State.WAITING)
    if waiting is not None:
        oldest = {
            "drop": waiting.name,
            "drop_id": waiting.id,
            "practice": waiting.practice,
            "waiting_since": iso(waiting.since),
            "age_seconds": round(now - waiting.since),
            "attempts": waiting.attempts + waiting.interrupted,
            "next_attempt_at": iso(waiting.next_at),
            "last_code": waiting.last_code,
            "last_error": waiting.last_error,
        }
    errored = journal.last_error()
    if errored is not None:
        last = {
            "drop": errored.name,
            "drop_id": errored.id,
            "practice": errored.practice,
            "at": iso(errored.last_error_at),
            "state": errored.state.value,
            "outcome": errored.last_outcome,
            "code": errored.last_code,
            "message": errored.last_error,
            "where": errored.final,
        }
    return counts, folders, oldest, last


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
    state_dir: Path | None = None,
    clock: Callable[[], float] = time.time,
) -> list[Retried]:
    """Move failed drops back into the working area to be sent again (the next poll of a run, or the next run).

    They keep their uniqueIds, and whether an earlier attempt may have been stored, so a HISP that already has a
    copy answers with a duplicate and the drop counts as delivered. ``new_ids`` forgets them: the drop is sent
    as a new submission (for a drop whose documents were changed after it was sent; a copy already delivered
    would then be delivered twice). Names are checked first: an unknown name changes nothing."""
    if bool(names) == all_failed:
        raise LocalProtocolError("name the failed drops to retry, or ask for all of them", code="bad-option")
    layout = find_layout(directory, state_dir=state_dir)
    if not layout.journal_path.is_file():
        raise ConfigurationError(
            f"{layout.root} has no journal: nothing was ever sent from it", location=str(layout.root)
        )
    done: list[Retried] = []
    with Journal(layout.journal_path, create=False, clock=clock) as journal:
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
    """Intent (``retrying``, and with ``new_ids`` the uniqueIds forgotten), then the move and the new state
    (:func:`~.recovery.finish_retry`, which a run also calls for an intent left behind)."""
    assert row.final is not None
    columns: dict[str, Any] = {"state": State.RETRYING, "next_at": None}
    if new_ids:
        columns.update(submission=None, maybe_stored=False)
    journal.change(
        row.id, expect=(State.FAILED,), detail="retry-new-ids" if new_ids else "retry", now=now, **columns
    )
    retrying = journal.get(row.id)
    assert retrying is not None
    finish_retry(layout, journal, retrying, now)
    return Retried(name=Path(row.final).name, drop_id=row.id, new_ids=new_ids)
