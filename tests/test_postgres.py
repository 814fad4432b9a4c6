"""What only the PostgreSQL engine has (xdr_edge.registry.postgres): a pool of connections that the server may
close under it, and the settings every connection gets. Real PostgreSQL servers, started by the tests; each
test names its connections (``application_name``) so that it touches only its own.

A pooled connection the server closed (a restart, a fail-over to a standby at the same address, an
idle-session timeout, ``pg_terminate_backend``) must never fail a request that a new connection would have
served: registry reads, index writes, registry changes and the health check all succeed at the first try.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import postgres_schema, unavailable
from tests.servers import MissingBinaryError, PostgresServer, find_postgres_bindir, running_postgres
from xdr_edge.registry import (
    Access,
    Database,
    IndexedDocument,
    IndexedSubmission,
    Registry,
    SubmissionIndex,
    open_database,
    open_registry,
)

psycopg = pytest.importorskip("psycopg")

POOL = 6


def _named(url: str, name: str) -> str:
    return f"{url}&application_name={name}"


def _fill_pool(database: Database, size: int = POOL) -> None:
    """Leave ``size`` idle connections in the pool: as many transactions open at once, then all ended."""
    barrier = threading.Barrier(size)

    def hold() -> None:
        with database.transaction(Access.READ) as conn:
            conn.execute("SELECT 1")
            barrier.wait(30)

    threads = [threading.Thread(target=hold) for _ in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)


def _backends(dsn: str, name: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as admin:
        row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,))
        return int(row.fetchone()[0])


def _wait_for_a_lock(dsn: str, name: str) -> None:
    """Poll until the connection named ``name`` waits for a lock another transaction holds."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with psycopg.connect(dsn, autocommit=True) as admin:
            row = admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                (name,),
            ).fetchone()
        if row is not None:
            return
        time.sleep(0.02)
    pytest.fail(f"{name} never waited for a lock")


def _terminate(dsn: str, name: str) -> int:
    """Close every connection named ``name`` from the server side, and wait until they are gone."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        ).fetchone()
    deadline = time.monotonic() + 30
    while _backends(dsn, name) and time.monotonic() < deadline:
        time.sleep(0.02)
    return int(row[0])


def _every_kind_of_use(registry: Registry, index: SubmissionIndex, n: int) -> None:
    """A health check, a registry read, a registry change and an index write: each must succeed."""
    registry.ping()
    assert [p.id for p in registry.practices()][:1] == ["p-1"]
    registry.add_practice(f"p-{n + 2}", f"Practice {n + 2}", actor="test")
    uid = f"2.25.{n}"
    submission = IndexedSubmission(uid, "p-1", "rx-1", f"stage-{uid}", f"2026-01-01/{uid}", datetime.now(UTC))
    assert index.record(submission, [IndexedDocument(f"{uid}.1", "a" * 40, 1)]) is None


@pytest.fixture
def opened(postgres_dsn: str, postgres_url: str) -> Iterator[tuple[Registry, SubmissionIndex, Database]]:
    with open_registry(postgres_url) as registry:
        registry.init(actor="test")
        registry.add_practice("p-1", "Practice 1", actor="test")
    database = open_database(_named(postgres_url, "pool-test"), max_connections=POOL)
    registry = open_registry(database)
    try:
        yield registry, SubmissionIndex(database), database
    finally:
        database.close()


def test_connections_the_server_closed_are_replaced_before_any_use_fails(
    postgres_dsn: str, opened: tuple[Registry, SubmissionIndex, Database]
) -> None:
    registry, index, database = opened
    for round_ in range(3):
        _fill_pool(database)
        assert _terminate(postgres_dsn, "pool-test") == POOL
        for n in range(4):
            _every_kind_of_use(registry, index, 10 * round_ + n)


def test_a_connection_that_dies_after_the_check_is_replaced_at_its_first_statement(
    postgres_dsn: str, opened: tuple[Registry, SubmissionIndex, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server closes a pooled connection just after the pool looked at it (its socket was quiet): the
    first statement (a BEGIN, or a single read) finds it broken and is sent again on a new connection, which
    neither can tell from the first try."""
    registry, index, database = opened
    monkeypatch.setattr("xdr_edge.registry.postgres._has_input", lambda raw: False)  # the check saw nothing
    kinds: list[Callable[[int], object]] = [
        lambda n: registry.ping(),  # a single read
        lambda n: None if registry.practices() else pytest.fail("no practices"),  # a READ transaction
        lambda n: registry.add_practice(f"p-{n + 2}", "Another", actor="test"),  # a CHANGE
        lambda n: _every_kind_of_use(registry, index, n),  # ... and a RECORD
    ]
    for n, use in enumerate(kinds):
        _fill_pool(database, 2)
        assert _terminate(postgres_dsn, "pool-test") == 2
        use(n)


def test_every_connection_has_bounded_waits_and_tcp_keepalives(postgres_dsn: str, postgres_url: str) -> None:
    database = open_database(postgres_url, lock_timeout=2.5)
    try:
        with database.connection() as conn:
            assert conn.one("SHOW lock_timeout") == {"lock_timeout": "2500ms"}
            assert conn.one("SHOW statement_timeout") == {"statement_timeout": "1min"}
            assert conn.one("SELECT current_schema() AS s") is not None  # the URL's own options still apply
            parameters = conn.raw.info.get_parameters()  # type: ignore[attr-defined]
        assert parameters["keepalives"] == "1" and parameters["tcp_user_timeout"] == "30000"
        assert parameters["keepalives_idle"] == "30" and parameters["application_name"] == "xdr-edge"
    finally:
        database.close()
    own = open_database(f"{postgres_dsn}&options=-c%20statement_timeout%3D5s&keepalives_idle=7")
    try:  # settings given in the URL win over ours
        with own.connection() as conn:
            assert conn.one("SHOW statement_timeout") == {"statement_timeout": "5s"}
            assert conn.raw.info.get_parameters()["keepalives_idle"] == "7"  # type: ignore[attr-defined]
    finally:
        own.close()


def test_a_migration_may_wait_for_another_longer_than_the_lock_timeout(
    postgres_dsn: str, postgres_url: str
) -> None:
    """Receivers of a cluster starting during an upgrade wait for the one migrating (a long copy, say)
    instead of failing at the ordinary lock timeout: migrations have their own, longer, bound."""
    with open_registry(postgres_url) as registry:
        registry.init(actor="test")
    holder = open_database(postgres_url)
    opened: list[object] = []

    def start_receiver() -> None:
        try:
            opened.append(open_registry(open_database(_named(postgres_url, "starting"), lock_timeout=0.2)))
        except Exception as exc:  # checked below
            opened.append(exc)

    try:
        with holder.transaction(Access.CHANGE):  # the one migrating holds the change lock
            thread = threading.Thread(target=start_receiver, daemon=True)
            thread.start()
            _wait_for_a_lock(postgres_dsn, "starting")
            thread.join(1.0)  # five of its lock timeouts: it would have failed by now
            assert thread.is_alive() and opened == []
        thread.join(60)
        (started,) = opened
        assert isinstance(started, Registry), started
        started.close()
    finally:
        holder.close()


# -- a server restart ----------------------------------------------------------------------------------


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, to restart."""
    try:
        find_postgres_bindir()
    except MissingBinaryError as exc:
        unavailable(str(exc))
    with running_postgres(tmp_path / "pg") as server:
        yield server


def test_a_store_keeps_working_across_a_postgresql_restart(restartable: PostgresServer) -> None:
    with postgres_schema(restartable.dsn) as url:
        with open_registry(url) as registry:
            registry.init(actor="test")
            registry.add_practice("p-1", "Practice 1", actor="test")
        database = open_database(_named(url, "restart-test"), max_connections=POOL)
        registry, index = open_registry(database), SubmissionIndex(database)
        try:
            for round_ in range(2):
                _fill_pool(database)
                restartable.restart()
                for n in range(4):
                    _every_kind_of_use(registry, index, 10 * round_ + n)
        finally:
            database.close()
