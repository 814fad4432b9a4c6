"""Shared fixtures. PKI fixtures (xdr_edge.devtools.pki): a fresh CA and a demo PKI written to a temp directory.
Database fixtures: the registry URL of either engine (``registry_url``, parametrized over SQLite and
PostgreSQL) and a throwaway PostgreSQL server for the session (``postgres_dsn``, tests/servers.py).

A test that needs PostgreSQL, nginx or the Java peers (tests/metro.py) skips with the reason when the binary (or
psycopg) is missing; with ``XDR_EDGE_REQUIRE_SERVERS=1`` (set by ``.ci/run``) it fails instead, so CI can never
pass by skipping them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import MissingBinaryError, find_nginx, find_postgres_bindir, postgres_server
from xdr_edge.devtools.pki import DemoPki, write_demo_pki
from xdr_edge.minting import CertificateAuthority
from xdr_edge.receiver.store import Inbox
from xdr_edge.registry import SubmissionIndex, open_database, open_registry


@pytest.fixture(scope="session")
def pki_ca() -> CertificateAuthority:
    """A root CA shared by a test session (EC keys are cheap; certificates issued from it are per test)."""
    return CertificateAuthority.create("xdr-edge test CA")


@pytest.fixture
def demo_pki(tmp_path: Path) -> DemoPki:
    """The demo PKI of ``xdr-edge certs demo-pki`` in ``tmp_path/pki`` (CA, server, 2 practices)."""
    return write_demo_pki(tmp_path / "pki")


def unavailable(reason: str) -> None:
    """Skip the test (fail it when CI requires the servers)."""
    if os.environ.get("XDR_EDGE_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (XDR_EDGE_REQUIRE_SERVERS=1: CI must run this test)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server for the whole session (about a second to start); tests use a schema each."""
    try:
        find_postgres_bindir()
    except MissingBinaryError as exc:
        unavailable(str(exc))
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed: pip install -e '.[dev,postgresql]'")
    with postgres_server(tmp_path_factory.mktemp("postgres")) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def nginx_binary() -> Path:
    try:
        return find_nginx()
    except MissingBinaryError as exc:
        unavailable(str(exc))
        raise  # unreachable: unavailable() skips or fails


@contextlib.contextmanager
def postgres_schema(dsn: str) -> Iterator[str]:
    """A registry URL naming an empty schema of its own (dropped afterwards) in the server at ``dsn``."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")  # generated, not user input
    try:
        yield f"{dsn}&options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def postgres_url(postgres_dsn: str) -> Iterator[str]:
    """A registry URL naming an empty schema of its own in the session's server."""
    with postgres_schema(postgres_dsn) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A registry database URL on each engine: one test suite keeps both stores honest."""
    if request.param == "sqlite":
        return str(tmp_path / "registry.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


OpenInbox = Callable[..., Inbox]


@pytest.fixture
def open_inbox(registry_url: str, tmp_path: Path) -> Iterator[OpenInbox]:
    """Opens an inbox (``tmp_path/inbox`` unless told) over its own connection to the test's database: each call
    stands for one receiver (or one start of a receiver)."""
    with open_registry(registry_url) as registry:
        registry.init(actor="test")
    opened: list[Inbox] = []

    def make(root: Path | None = None, receiver: str = "rx-1", **options: Any) -> Inbox:
        index = SubmissionIndex(open_database(registry_url, max_connections=8))
        inbox = Inbox(root or tmp_path / "inbox", index, receiver=receiver, **options)
        opened.append(inbox)
        return inbox

    yield make
    for inbox in opened:
        inbox.close()
        inbox.index.database.close()
