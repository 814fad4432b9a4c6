"""The outbox journal: one SQLite database (WAL) holding every drop, its state, and every change of it.

Why a journal and not only folders: a folder says where a drop is, not what happened to it. Whether a submission
may already be stored by the HISP (a send cut off by a crash), which uniqueIds it was sent with, how many
attempts it took and when to try again are facts that must outlive the process, and each must be on disk
*before* the act it describes (write-ahead): the intent to claim before the rename out of ``incoming/``, the
uniqueIds before the first byte is sent, the outcome before the move to ``sent/`` or ``failed/``. After a crash,
:mod:`.recovery` reads the journal and the folders together and finishes each drop from where it stood.

Durability: WAL with ``synchronous=FULL``, so a committed change survives a power cut, not only a killed
process (SQLite, "Write-Ahead Logging"; "PRAGMA synchronous"). WAL lets ``xdr-edge outbox status`` read while a
run writes (it opens the journal read-only and never migrates it, so it never waits for a writer); like any WAL
database it needs every process that opens it on the same host.

The states of a drop::

    claiming -> claimed -> sending -> finishing -> sent | failed
                              |  ^
                              v  |
                            waiting          (failed -> retrying -> waiting | claimed: `xdr-edge outbox retry`)

Size: a finished drop keeps one row of a few hundred bytes (its result.json is on disk, not in the journal) and its
events; :meth:`Journal.prune` forgets sent drops, and failed drops no longer in ``failed/``, after the configured
days, and gives the pages back to the filesystem (``auto_vacuum = INCREMENTAL``).

Table ``events`` keeps one row per change (time, state, a short machine-readable detail: an outcome or an
error code, never document content).
"""

from __future__ import annotations

__all__ = ["DropRow", "Journal", "JournalConflict", "State"]

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from xdr_edge.protocol.errors import StoreError

SCHEMA_VERSION = 2

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS drops (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        practice TEXT,
        state TEXT NOT NULL,
        claimed_at REAL NOT NULL,
        since REAL NOT NULL,
        next_at REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        interrupted INTEGER NOT NULL DEFAULT 0,
        maybe_stored INTEGER NOT NULL DEFAULT 0,
        submission TEXT,
        message_ids TEXT NOT NULL DEFAULT '[]',
        first_attempt_at REAL,
        last_outcome TEXT,
        last_error TEXT,
        last_error_at REAL,
        final TEXT,
        result TEXT,
        response BLOB,
        response_type TEXT,
        finished_at REAL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS drops_by_state ON drops (state, next_at)",
    "CREATE UNIQUE INDEX IF NOT EXISTS drops_by_final ON drops (final) WHERE final IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS events (
        drop_id TEXT NOT NULL,
        at REAL NOT NULL,
        state TEXT NOT NULL,
        detail TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_drop ON events (drop_id, at)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
#: Schema 2: how often a drop was parked after an unexpected error, the code of its last error, and the indexes
#: that keep status and pruning cheap however long the history.
_SCHEMA_2 = (
    ("drops", "parks", "ALTER TABLE drops ADD COLUMN parks INTEGER NOT NULL DEFAULT 0"),
    ("drops", "last_code", "ALTER TABLE drops ADD COLUMN last_code TEXT"),
    (None, None, "CREATE INDEX IF NOT EXISTS drops_by_error ON drops (last_error_at)"),
    (None, None, "CREATE INDEX IF NOT EXISTS drops_by_finish ON drops (state, finished_at)"),
)


class State(str, Enum):
    CLAIMING = "claiming"
    CLAIMED = "claimed"
    SENDING = "sending"
    WAITING = "waiting"
    FINISHING = "finishing"
    SENT = "sent"
    FAILED = "failed"
    RETRYING = "retrying"  # `outbox retry` is moving it back from failed/ (completed by whoever comes first)


#: States a worker picks up (``sending`` only after recovery has turned it into ``waiting``).
WORKABLE = (State.CLAIMED, State.WAITING, State.FINISHING)
#: Not finished: what ``--once`` waits for.
ACTIVE = (State.CLAIMING, State.CLAIMED, State.SENDING, State.WAITING, State.FINISHING, State.RETRYING)
#: Finished: a drop in ``sent/`` or ``failed/``.
FINISHED = (State.SENT, State.FAILED)


class JournalConflict(StoreError):
    """A change expected a drop in one state and found it in another (another process moved it first)."""

    code = "journal-conflict"


@dataclass(frozen=True)
class DropRow:
    """One drop as the journal knows it."""

    id: str
    name: str
    kind: str
    practice: str | None
    state: State
    claimed_at: float
    since: float
    next_at: float | None
    attempts: int
    retries: int
    interrupted: int
    maybe_stored: bool
    submission: dict[str, Any] | None
    message_ids: tuple[str, ...]
    first_attempt_at: float | None
    last_outcome: str | None
    last_error: str | None
    last_error_at: float | None
    final: str | None
    result: dict[str, Any] | None
    response: bytes | None
    response_type: str | None
    finished_at: float | None
    parks: int = 0
    last_code: str | None = None

    @property
    def ever_sent(self) -> bool:
        """Whether any attempt may have put a request on the wire (then its uniqueIds must be kept)."""
        return self.attempts > 0 or self.interrupted > 0 or self.maybe_stored

    @classmethod
    def _from(cls, row: sqlite3.Row) -> DropRow:
        return cls(
            id=row["id"],
            name=row["name"],
            kind=row["kind"],
            practice=row["practice"],
            state=State(row["state"]),
            claimed_at=row["claimed_at"],
            since=row["since"],
            next_at=row["next_at"],
            attempts=row["attempts"],
            retries=row["retries"],
            interrupted=row["interrupted"],
            maybe_stored=bool(row["maybe_stored"]),
            submission=json.loads(row["submission"]) if row["submission"] else None,
            message_ids=tuple(json.loads(row["message_ids"] or "[]")),
            first_attempt_at=row["first_attempt_at"],
            last_outcome=row["last_outcome"],
            last_error=row["last_error"],
            last_error_at=row["last_error_at"],
            final=row["final"],
            result=json.loads(row["result"]) if row["result"] else None,
            response=row["response"],
            response_type=row["response_type"],
            finished_at=row["finished_at"],
            # a journal of schema 1, read without migrating it (outbox status), has neither
            parks=row["parks"] if "parks" in row.keys() else 0,
            last_code=row["last_code"] if "last_code" in row.keys() else None,
        )


_JSON_COLUMNS = frozenset({"submission", "message_ids", "result"})
_COLUMNS = frozenset(
    {
        "practice",
        "state",
        "since",
        "next_at",
        "attempts",
        "retries",
        "interrupted",
        "maybe_stored",
        "submission",
        "message_ids",
        "first_attempt_at",
        "last_outcome",
        "last_error",
        "last_error_at",
        "final",
        "result",
        "response",
        "response_type",
        "finished_at",
        "parks",
        "last_code",
    }
)


class Journal:
    """The journal of one outbox. One connection, serialised by a lock: shared by a run's threads.

    Every method is one transaction. :meth:`transaction` exposes one for a change that must happen together
    with a file move (the move inside it, undone when the commit fails).

    ``read_only`` opens it for looking only (``outbox status``): no migration, no write lock, so a run holding
    the journal in a transaction never makes a reader wait. ``clock`` stamps changes and events (the run's own
    clock, so that a test's clock and the journal agree)."""

    def __init__(
        self,
        path: Path,
        *,
        create: bool = True,
        busy_timeout: float = 30.0,
        read_only: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self.read_only = read_only
        if (read_only or not create) and not self.path.is_file():
            raise StoreError(f"no outbox journal at {self.path}", location=str(self.path))
        try:
            # read-only: a URI with mode=ro, so that looking never takes a write lock or creates a file
            target = f"{self.path.resolve().as_uri()}?mode=ro" if read_only else str(self.path)
            self._conn = sqlite3.connect(
                target, uri=read_only, isolation_level=None, timeout=busy_timeout, check_same_thread=False
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if not read_only:
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the outbox journal {self.path}: {exc}", location=str(self.path)
            ) from exc
        self._lock = threading.RLock()
        if read_only:
            version = self._version()
            self._check_version(version)
            # schema 0: a run is creating this journal at this moment (it has no tables yet), nothing to read
            self.created = version > 0
        else:
            self._migrate()
            self.created = True

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _version(self) -> int:
        try:
            with self._lock:
                return int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreError(f"outbox journal {self.path}: {exc}", location=str(self.path)) from exc

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the outbox journal {self.path} was written by a newer xdr-edge (schema {version}); "
                f"this one knows schema {SCHEMA_VERSION}",
                location=str(self.path),
            )

    def _migrate(self) -> None:
        """Bring the journal to :data:`SCHEMA_VERSION`; nothing to do (and no write lock taken) when it is."""
        version = self._version()
        self._check_version(version)
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            # a new journal: pages freed by pruning go back to the filesystem (set before any table exists)
            with self._lock:
                self._conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        with self.transaction() as conn:  # every statement is idempotent: another process may have done it
            for statement in _SCHEMA:
                conn.execute(statement)
            for table, column, statement in _SCHEMA_2:
                present = table is not None and any(
                    r[1] == column for r in conn.execute(f"PRAGMA table_info({table})")
                )
                if not present:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        with self._lock:
            if self._conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                # a journal made before: switching needs one VACUUM (outside a transaction), once
                self._conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                self._conn.execute("VACUUM")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back (and re-raised) on any exception."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"outbox journal {self.path}: {exc}", location=str(self.path)) from exc
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"outbox journal {self.path}: {exc}", location=str(self.path)) from exc

    # -- reading ----------------------------------------------------------------------------------------------

    def get(self, drop_id: str) -> DropRow | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM drops WHERE id = ?", (drop_id,)).fetchone()
        return DropRow._from(row) if row is not None else None

    def rows(self, states: Iterable[State], *, due_before: float | None = None) -> list[DropRow]:
        """Drops in ``states``, oldest claim first; with ``due_before``, only those with no ``next_at`` or one
        before it."""
        names = [s.value for s in states]
        sql = f"SELECT * FROM drops WHERE state IN ({','.join('?' * len(names))})"  # noqa: S608 - placeholders
        params: list[Any] = list(names)
        if due_before is not None:
            sql += " AND (next_at IS NULL OR next_at <= ?)"
            params.append(due_before)
        with self._lock:
            found = self._conn.execute(sql + " ORDER BY claimed_at, id", params).fetchall()
        return [DropRow._from(r) for r in found]

    def due(
        self, states: Iterable[State], before: float, *, timed_only: bool = False
    ) -> list[tuple[str, str | None, float]]:
        """``(id, practice, since)`` of the drops in ``states`` with no ``next_at`` (unless ``timed_only``) or one
        before ``before``, oldest claim first: the light query a run makes at every poll."""
        names = [s.value for s in states]
        timed = "next_at <= ?" if timed_only else "(next_at IS NULL OR next_at <= ?)"
        sql = (
            f"SELECT id, practice, since FROM drops WHERE state IN ({','.join('?' * len(names))}) "  # noqa: S608
            f"AND {timed} ORDER BY claimed_at, id"
        )
        with self._lock:
            found = self._conn.execute(sql, [*names, before]).fetchall()
        return [(r[0], r[1], r[2]) for r in found]

    def by_final(self, final: str) -> DropRow | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM drops WHERE final = ?", (final,)).fetchone()
        return DropRow._from(row) if row is not None else None

    def counts(self) -> dict[str, int]:
        with self._lock:
            found = self._conn.execute("SELECT state, count(*) FROM drops GROUP BY state").fetchall()
        return {state: count for state, count in found}

    def count(self, states: Iterable[State]) -> int:
        """How many drops are in ``states`` (an index range per state: cheap however long the history)."""
        names = [s.value for s in states]
        with self._lock:
            row = self._conn.execute(
                f"SELECT count(*) FROM drops WHERE state IN ({','.join('?' * len(names))})",  # noqa: S608
                names,
            ).fetchone()
        return int(row[0])

    def next_due(self, *, after: float) -> float | None:
        """The earliest ``next_at`` after ``after`` of a drop a worker would pick up."""
        names = [s.value for s in WORKABLE]
        with self._lock:
            row = self._conn.execute(
                f"SELECT min(next_at) FROM drops WHERE state IN ({','.join('?' * len(names))}) "  # noqa: S608
                "AND next_at > ?",
                [*names, after],
            ).fetchone()
        return row[0] if row is not None else None

    def oldest(self, state: State) -> DropRow | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM drops WHERE state = ? ORDER BY since, id LIMIT 1", (state.value,)
            ).fetchone()
        return DropRow._from(row) if row is not None else None

    def last_error(self) -> DropRow | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM drops WHERE last_error_at IS NOT NULL ORDER BY last_error_at DESC LIMIT 1"
            ).fetchone()
        return DropRow._from(row) if row is not None else None

    def events(self, drop_id: str) -> list[tuple[float, str, str | None]]:
        with self._lock:
            found = self._conn.execute(
                "SELECT at, state, detail FROM events WHERE drop_id = ? ORDER BY at, rowid", (drop_id,)
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in found]

    # -- changing ---------------------------------------------------------------------------------------------

    def insert(
        self,
        conn: sqlite3.Connection,
        *,
        drop_id: str,
        name: str,
        kind: str,
        practice: str | None,
        state: State,
        now: float,
        detail: str | None = None,
    ) -> None:
        """A new drop, inside a :meth:`transaction`."""
        conn.execute(
            "INSERT INTO drops (id, name, kind, practice, state, claimed_at, since, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (drop_id, name, kind, practice, state.value, now, now, now),
        )
        conn.execute(
            "INSERT INTO events (drop_id, at, state, detail) VALUES (?, ?, ?, ?)",
            (drop_id, now, state.value, detail),
        )

    def update(
        self,
        conn: sqlite3.Connection,
        drop_id: str,
        *,
        expect: Iterable[State],
        detail: str | None = None,
        now: float | None = None,
        **columns: Any,
    ) -> None:
        """Change a drop inside a :meth:`transaction`, only if it is in one of the ``expect`` states; logs an
        event when the state changes (or ``detail`` is given). Raises :class:`JournalConflict` otherwise."""
        unknown = set(columns) - _COLUMNS
        if unknown:
            raise ValueError(f"not journal columns: {sorted(unknown)}")
        moment = self._clock() if now is None else now
        values = {
            k: (json.dumps(v) if k in _JSON_COLUMNS and v is not None else v) for k, v in columns.items()
        }
        for key, value in list(values.items()):
            if isinstance(value, State):
                values[key] = value.value
            elif isinstance(value, bool):
                values[key] = int(value)
        values["updated_at"] = moment
        expected = [s.value for s in expect]
        assignments = ", ".join(f"{k} = ?" for k in values)
        cursor = conn.execute(
            f"UPDATE drops SET {assignments} WHERE id = ? AND state IN ({','.join('?' * len(expected))})",  # noqa: S608
            [*values.values(), drop_id, *expected],
        )
        if cursor.rowcount != 1:
            row = conn.execute("SELECT state FROM drops WHERE id = ?", (drop_id,)).fetchone()
            found = row[0] if row is not None else "absent"
            raise JournalConflict(
                f"drop {drop_id} is {found}, not {' or '.join(expected)}", location=str(self.path)
            )
        state = columns.get("state")
        if state is not None or detail is not None:
            shown = state.value if isinstance(state, State) else state
            if shown is None:
                shown = conn.execute("SELECT state FROM drops WHERE id = ?", (drop_id,)).fetchone()[0]
            conn.execute(
                "INSERT INTO events (drop_id, at, state, detail) VALUES (?, ?, ?, ?)",
                (drop_id, moment, shown, detail),
            )

    def change(
        self, drop_id: str, *, expect: Iterable[State], detail: str | None = None, **columns: Any
    ) -> None:
        """:meth:`update` in a transaction of its own."""
        with self.transaction() as conn:
            self.update(conn, drop_id, expect=expect, detail=detail, **columns)

    def delete(self, conn: sqlite3.Connection, drop_id: str) -> None:
        conn.execute("DELETE FROM drops WHERE id = ?", (drop_id,))
        conn.execute("DELETE FROM events WHERE drop_id = ?", (drop_id,))

    def set_meta(self, key: str, value: Any) -> None:
        """Facts about the outbox that readers without the configuration need (the practice folders)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def meta(self, key: str) -> Any:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row is not None else None

    def final_taken(self, conn: sqlite3.Connection, final: str) -> bool:
        return conn.execute("SELECT 1 FROM drops WHERE final = ?", (final,)).fetchone() is not None

    # -- keeping it small -------------------------------------------------------------------------------------

    def prune(
        self,
        *,
        finished_before: float,
        still_there: Callable[[str], bool],
        batch: int = 1000,
        stop: Callable[[], bool] = lambda: False,
    ) -> int:
        """Forget the drops finished before ``finished_before``: every sent one, and each failed one whose folder
        is no longer at its place in ``failed/`` (``still_there(final)`` says; one still there may be retried
        with `outbox retry`, which needs its row). Their events go with them, and the freed pages go back to the
        filesystem. Pages of ``batch`` drops, oldest first, one transaction each (a long backlog never holds the
        journal at length), until none is left or ``stop()``; a page of drops it keeps does not end it (a
        thousand failed drops still in ``failed/`` would otherwise keep every later one forever). Returns how
        many were forgotten."""
        forgotten = 0
        after: tuple[float, str] = (float("-inf"), "")
        while not stop():
            with self._lock:
                found = self._conn.execute(
                    "SELECT id, state, final, finished_at FROM drops WHERE state IN (?, ?) AND finished_at < ? "
                    "AND (finished_at, id) > (?, ?) ORDER BY finished_at, id LIMIT ?",
                    (State.SENT.value, State.FAILED.value, finished_before, *after, batch),
                ).fetchall()
            if not found:
                break
            after = (found[-1][3], found[-1][0])
            doomed = [r[0] for r in found if r[1] == State.SENT.value or not (r[2] and still_there(r[2]))]
            if doomed:
                with self.transaction() as conn:
                    for start in range(0, len(doomed), 500):
                        chunk = doomed[start : start + 500]
                        marks = ",".join("?" * len(chunk))
                        conn.execute(f"DELETE FROM events WHERE drop_id IN ({marks})", chunk)  # noqa: S608
                        conn.execute(
                            f"DELETE FROM drops WHERE id IN ({marks}) AND state IN (?, ?)",  # noqa: S608
                            [*chunk, State.SENT.value, State.FAILED.value],
                        )
                forgotten += len(doomed)
            if len(found) < batch:
                break
        if forgotten:
            with self._lock:
                self._conn.execute("PRAGMA incremental_vacuum")
        return forgotten
