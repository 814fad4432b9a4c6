"""The registry on PostgreSQL (psycopg 3): what differs from SQLite, and nothing else (:mod:`.database`).

Selected by a ``postgresql://`` (or ``postgres://``) registry URL, a libpq connection URI: ``postgresql://
xdr@db.example/xdr_edge?sslmode=verify-full``. A password belongs in ``PGPASSWORD`` or ``~/.pgpass`` rather
than in the URL (a URL shows in ``ps`` and shell history); it is never shown in messages either way. The
tables live in the connection's current schema, so ``options=-csearch_path=xdr`` in the URL keeps them in a
schema of their own in a shared database.

Connections come from a small pool of our own, because every request of a receiver reads the registry and a
new connection per read would cost a TLS handshake and an authentication each time. A pooled connection can
die while it sits idle (the server restarted, a fail-over, an idle-session timeout, an administrator's
``pg_terminate_backend``), and a dead one must never fail a request that a live one would have served:

- before an idle connection is reused, its socket is polled without waiting: an idle connection has nothing
  to read, so a readable one (the server's farewell, or the end of the stream) is discarded, and with it
  every other idle connection, which the same event most likely killed;
- the first statement sent on a reused connection (a ``BEGIN``, or a read) is sent again once on a new
  connection when it finds the connection broken: neither can have changed anything;
- TCP keepalives and a TCP user timeout notice a server that vanished without closing (a partition, a host
  lost), which polling cannot see, and every wait for a lock (``lock_timeout``) and every statement
  (``statement_timeout``) is bounded, so a receiver never waits without limit on another one's transaction.

Settings given in the URL win over these defaults (libpq keywords; ``options`` are appended after ours).
"""

from __future__ import annotations

__all__ = ["PostgresDatabase"]

import select
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row

from xdr_edge.protocol.errors import ConfigurationError, StoreError
from xdr_edge.registry.database import (
    DEFAULT_LOCK_TIMEOUT,
    RETRY,
    UNAVAILABLE,
    Access,
    Connection,
    Database,
    Result,
)

#: The key of the transaction-scoped advisory lock every registry change takes first (``Access.CHANGE``).
CHANGE_LOCK_KEY = 0x78_64_72_2D_72_65_67  # "xdr-reg"
#: libpq settings unless the URL says otherwise: a bounded connect, keepalive probes after 30 s of silence
#: (three, 10 s apart) and at most 30 s for sent data to be acknowledged (Linux ``TCP_USER_TIMEOUT``), so a
#: connection to a vanished server fails in about a minute instead of the kernel's two hours.
_DEFAULT_SETTINGS = {
    "connect_timeout": "10",
    "application_name": "xdr-edge",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}
#: Every statement of ours is a few rows' work; one running longer than this is stuck behind something.
DEFAULT_STATEMENT_TIMEOUT = 60.0
#: A migration may wait longer for the change lock (another receiver migrating) and run longer (copying a
#: table): it runs once per upgrade, before the receiver serves.
_MIGRATION_LOCK_TIMEOUT = 300.0

PgConnection = psycopg.Connection[DictRow]


def _placeholders(sql: str) -> str:
    """Our shared SQL's ``?`` placeholders in psycopg's ``%s`` style (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _milliseconds(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


class _PgConnection(Connection):
    """One connection lent by the pool. ``untried``: it sat idle in the pool and nothing has been sent on it
    since, so its first statement may find it dead (module docstring) and is then sent again on a new one."""

    dialect = "postgresql"
    for_update = " FOR UPDATE"
    for_share = " FOR SHARE"

    def __init__(self, raw: PgConnection, pool: _Pool, *, untried: bool) -> None:
        self.raw = raw
        self._pool = pool
        self._untried = untried

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        query, values = _placeholders(sql), tuple(params)
        if not self._untried:
            return self.raw.execute(query, values)
        self._untried = False
        try:
            return self.raw.execute(query, values)
        except psycopg.OperationalError:
            if not self.raw.broken:
                raise
            self.raw = self._pool.replace(self.raw)
        return self.raw.execute(query, values)

    def insert(self, sql: str, params: Sequence[Any], id_column: str) -> int:
        row = self.execute(f"{sql} RETURNING {id_column}", params).fetchone()
        assert row is not None  # an INSERT ... RETURNING of one row returns it
        return int(row[id_column])


class _UrlError(ValueError):
    """A registry URL that cannot be read; the message never holds the URL (it may hold a password)."""


def _without_password(url: str) -> str:
    """``url`` without its password and without any query key naming one (``password``, ``sslpassword``)."""
    try:
        parts = urllib.parse.urlsplit(url)  # (ports are libpq's to check: a URL may name several hosts)
    except ValueError as exc:
        raise _UrlError(str(exc)) from None
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, host = netloc.rpartition("@")
        netloc = f"{credentials.partition(':')[0]}@{host}"
    query = urllib.parse.urlencode(
        [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if "password" not in k.lower()]
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _has_input(raw: PgConnection) -> bool:
    """Whether an idle connection's socket has something to read (or an error, or a hang-up): the server
    sends nothing unasked to an idle session of ours, so anything there means it is gone or going."""
    try:
        fileno = raw.fileno()
    except psycopg.Error:
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fileno, select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    readable, _, errored = select.select([fileno], [], [fileno], 0)  # pragma: no cover - no poll()
    return bool(readable or errored)


class _Pool:
    """At most ``size`` connections, idle ones kept for reuse (last returned, first reused)."""

    def __init__(self, conninfo: str, size: int, *, wait_seconds: float, location: str) -> None:
        self._conninfo = conninfo
        self._size = size
        self._wait = wait_seconds
        self._location = location
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[PgConnection] = []
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[_PgConnection]:
        if not self._slots.acquire(timeout=self._wait):
            raise StoreError(
                f"all {self._size} connections to {self._location} stayed busy for {self._wait:g} s",
                location=self._location,
                code=UNAVAILABLE,
            )
        lent: _PgConnection | None = None
        try:
            raw, reused = self._take()
            lent = _PgConnection(raw, self, untried=reused)
            yield lent
        finally:
            if lent is not None:
                self._give(lent.raw)
            self._slots.release()

    def _connect(self) -> PgConnection:
        return psycopg.connect(self._conninfo, autocommit=True, row_factory=dict_row)

    def _take(self) -> tuple[PgConnection, bool]:
        """A live idle connection (True), or a new one (False)."""
        while True:
            with self._lock:
                if self._closed:
                    raise StoreError(f"the connections to {self._location} are closed", code=UNAVAILABLE)
                raw = self._idle.pop() if self._idle else None
            if raw is None:
                return self._connect(), False
            if raw.broken or raw.closed or _has_input(raw):
                raw.close()
                self._drop_idle()
                continue
            return raw, True

    def replace(self, broken: PgConnection) -> PgConnection:
        """A new connection for one found broken (closed here); the idle ones go too (module docstring)."""
        broken.close()
        self._drop_idle()
        return self._connect()

    def _give(self, raw: PgConnection) -> None:
        if raw.broken or raw.closed:
            raw.close()
            self._drop_idle()
            return
        healthy = raw.info.transaction_status == TransactionStatus.IDLE
        with self._lock:
            if healthy and not self._closed:
                self._idle.append(raw)
                return
        raw.close()

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for raw in idle:
            raw.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._drop_idle()


class PostgresDatabase(Database):
    """A PostgreSQL database shared by every receiver of a cluster and the administration commands."""

    dialect = "postgresql"
    shared = True

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 4,
        wait_seconds: float = 30.0,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
    ) -> None:
        super().__init__()
        text = url.strip()
        try:
            self._location = _without_password(text)
        except _UrlError as exc:
            raise ConfigurationError(
                f"not a PostgreSQL connection URL ({exc}); expected postgresql://user@host:port/dbname",
                location="--registry",
            ) from None
        try:
            settings = conninfo_to_dict(text)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(
                f"not a PostgreSQL connection URL: {self._location} ({_first_line(exc)})",
                location="--registry",
            ) from None
        given = {k: str(v) for k, v in settings.items() if v is not None}
        timeouts = (
            f"-c lock_timeout={_milliseconds(lock_timeout)} "
            f"-c statement_timeout={_milliseconds(statement_timeout)}"
        )
        options = f"{timeouts} {given['options']}" if given.get("options") else timeouts
        self._lock_timeout = lock_timeout
        self._statement_timeout = statement_timeout
        self._pool = _Pool(
            make_conninfo("", **{**_DEFAULT_SETTINGS, **given, "options": options}),
            max(1, max_connections),
            wait_seconds=wait_seconds,
            location=self._location,
        )

    @property
    def location(self) -> str:
        return self._location

    def exists(self) -> bool:
        return True  # a server database; whether it holds a registry yet is what its tables say

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _open(self, *, create: bool) -> Iterator[Connection]:
        lent: _PgConnection | None = None
        try:
            with self._pool.connection() as lent:
                yield lent
        except pg_errors.UndefinedTable as exc:
            raise ConfigurationError(
                f"registry database {self._location} holds no xdr-edge registry; create it with "
                "`xdr-edge registry init`",
                location=self._location,
            ) from exc
        except pg_errors.IntegrityError as exc:
            raise ConfigurationError(
                f"registry change refused by the database: {_first_line(exc)}", location=self._location
            ) from exc
        except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
            raise StoreError(
                f"registry database {self._location}: {_first_line(exc)}", location=self._location, code=RETRY
            ) from exc
        except pg_errors.LockNotAvailable as exc:
            raise self._busy(
                f"another transaction held a lock for more than {self._lock_timeout:g} s"
            ) from exc
        except pg_errors.QueryCanceled as exc:
            raise self._busy(f"a statement was cancelled ({_first_line(exc)})") from exc
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) or (lent is not None and lent.raw.broken):
                raise StoreError(
                    f"registry database {self._location} unavailable: {_first_line(exc)}",
                    location=self._location,
                    code=UNAVAILABLE,
                ) from exc
            raise StoreError(
                f"registry database {self._location}: {_first_line(exc)}", location=self._location
            ) from exc

    def _transaction_id(self, conn: Connection) -> str | None:
        row = conn.one("SELECT pg_current_xact_id()::text AS xid")
        return None if row is None else str(row["xid"])

    def _connection_lost(self, conn: Connection, exc: Exception) -> bool:
        return isinstance(exc, psycopg.OperationalError) or (
            isinstance(conn, _PgConnection) and bool(conn.raw.broken)
        )

    def transaction_committed(self, transaction_id: str) -> bool | None:
        """``pg_xact_status`` (PostgreSQL 13+): ``committed``, ``aborted`` (also for a transaction whose backend
        died before committing), ``in progress``, or NULL when the id is too old for the server to know."""
        with self.connection() as conn:
            row = conn.one("SELECT pg_xact_status(?::xid8) AS status", (transaction_id,))
        status = None if row is None else row["status"]
        if status == "committed":
            return True
        if status == "aborted":
            return False
        return None

    def _busy(self, why: str) -> StoreError:
        """A wait or a statement over its limit: "busy, retry later", as for a database that did not answer."""
        return StoreError(
            f"registry database {self._location} busy: {why}", location=self._location, code=UNAVAILABLE
        )

    def _begin(self, conn: Connection, access: Access) -> None:
        if access is Access.READ:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return
        conn.execute("BEGIN")
        if access is Access.CHANGE:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (CHANGE_LOCK_KEY,))

    def _begin_migration(self, conn: Connection) -> None:
        conn.execute("BEGIN")
        conn.execute("SELECT set_config('lock_timeout', ?, true)", (_milliseconds(_MIGRATION_LOCK_TIMEOUT),))
        conn.execute("SELECT set_config('statement_timeout', '0', true)")
        conn.execute("SELECT pg_advisory_xact_lock(?)", (CHANGE_LOCK_KEY,))

    def table_names(self, conn: Connection) -> set[str]:
        rows = conn.all("SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()")
        return {str(row["tablename"]) for row in rows}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
