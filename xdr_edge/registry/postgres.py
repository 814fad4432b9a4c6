"""The registry on PostgreSQL (psycopg 3): what differs from SQLite, and nothing else (:mod:`.database`).

Selected by a ``postgresql://`` (or ``postgres://``) registry URL, a libpq connection URI: ``postgresql://
xdr@db.example/xdr_edge?sslmode=verify-full``. A password belongs in ``PGPASSWORD`` or ``~/.pgpass`` rather
than in the URL (a URL shows in ``ps`` and shell history); it is never shown in messages either way. The
tables live in the connection's current schema, so ``options=-csearch_path=xdr`` in the URL keeps them in a
schema of their own in a shared database.

Connections come from a small pool of our own (a bounded set of idle connections, checked before reuse when
they have been idle a while, discarded when broken), because every request of a receiver reads the registry
and a new connection per read would cost a TLS handshake and an authentication each time.
"""

from __future__ import annotations

__all__ = ["PostgresDatabase"]

import threading
import time
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
from xdr_edge.registry.database import RETRY, UNAVAILABLE, Access, Connection, Database, Result

#: The key of the transaction-scoped advisory lock every registry change takes first (``Access.CHANGE``).
CHANGE_LOCK_KEY = 0x78_64_72_2D_72_65_67  # "xdr-reg"
#: A pooled connection idle longer than this is checked with a round trip before it is used again (a server
#: restart or an idle timeout in between would otherwise fail the first request that gets it).
_IDLE_CHECK_SECONDS = 30.0
_DEFAULT_SETTINGS = {"connect_timeout": "10", "application_name": "xdr-edge"}

PgConnection = psycopg.Connection[DictRow]


def _placeholders(sql: str) -> str:
    """Our shared SQL's ``?`` placeholders in psycopg's ``%s`` style (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _PgConnection(Connection):
    dialect = "postgresql"

    def __init__(self, raw: PgConnection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        return self.raw.execute(_placeholders(sql), tuple(params))

    def insert(self, sql: str, params: Sequence[Any], id_column: str) -> int:
        row = self.raw.execute(_placeholders(f"{sql} RETURNING {id_column}"), tuple(params)).fetchone()
        assert row is not None  # an INSERT ... RETURNING of one row returns it
        return int(row[id_column])


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, host = netloc.rpartition("@")
        netloc = f"{credentials.partition(':')[0]}@{host}"
    query = urllib.parse.urlencode(
        [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k.lower() != "password"]
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class _Pool:
    """At most ``size`` connections, idle ones kept for reuse (last returned, first reused)."""

    def __init__(self, conninfo: str, size: int, *, wait_seconds: float, location: str) -> None:
        self._conninfo = conninfo
        self._size = size
        self._wait = wait_seconds
        self._location = location
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[tuple[PgConnection, float]] = []
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[PgConnection]:
        if not self._slots.acquire(timeout=self._wait):
            raise StoreError(
                f"all {self._size} connections to {self._location} stayed busy for {self._wait:g} s",
                location=self._location,
                code=UNAVAILABLE,
            )
        raw: PgConnection | None = None
        try:
            raw = self._take()
            yield raw
        finally:
            if raw is not None:
                self._give(raw)
            self._slots.release()

    def _take(self) -> PgConnection:
        while True:
            with self._lock:
                if self._closed:
                    raise StoreError(f"the connections to {self._location} are closed", code=UNAVAILABLE)
                item = self._idle.pop() if self._idle else None
            if item is None:
                return psycopg.connect(self._conninfo, autocommit=True, row_factory=dict_row)
            raw, since = item
            if raw.broken or raw.closed:
                raw.close()
                continue
            if time.monotonic() - since > _IDLE_CHECK_SECONDS:
                try:
                    raw.execute("SELECT 1")
                except psycopg.Error:
                    raw.close()
                    continue
            return raw

    def _give(self, raw: PgConnection) -> None:
        healthy = not raw.broken and not raw.closed and raw.info.transaction_status == TransactionStatus.IDLE
        with self._lock:
            if healthy and not self._closed:
                self._idle.append((raw, time.monotonic()))
                return
        raw.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for raw, _ in idle:
            raw.close()


class PostgresDatabase(Database):
    """A PostgreSQL database shared by every receiver of a cluster and the administration commands."""

    dialect = "postgresql"
    shared = True

    def __init__(self, url: str, *, max_connections: int = 4, wait_seconds: float = 30.0) -> None:
        super().__init__()
        self._location = _without_password(url.strip())
        try:
            settings = conninfo_to_dict(url.strip().replace("postgresql+psycopg://", "postgresql://", 1))
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(
                f"not a PostgreSQL connection URL: {self._location} ({exc})", location="--registry"
            ) from exc
        full = {**_DEFAULT_SETTINGS, **{k: str(v) for k, v in settings.items() if v is not None}}
        self._pool = _Pool(
            make_conninfo("", **full),
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
        try:
            with self._pool.connection() as raw:
                yield _PgConnection(raw)
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
        except psycopg.OperationalError as exc:
            raise StoreError(
                f"registry database {self._location} unavailable: {_first_line(exc)}",
                location=self._location,
                code=UNAVAILABLE,
            ) from exc
        except psycopg.Error as exc:
            raise StoreError(
                f"registry database {self._location}: {_first_line(exc)}", location=self._location
            ) from exc

    def _begin(self, conn: Connection, access: Access) -> None:
        if access is Access.READ:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return
        conn.execute("BEGIN")
        if access is Access.CHANGE:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (CHANGE_LOCK_KEY,))

    def table_names(self, conn: Connection) -> set[str]:
        rows = conn.all("SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()")
        return {str(row["tablename"]) for row in rows}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
