"""``GET /healthz`` for load balancers, and the answer when the registry database cannot be reached.

Real receivers built by ``build_server`` (behind-proxy mode, plain HTTP on loopback), real SQLite files and a
PostgreSQL server of the test's own, stopped in the middle of the test.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import json
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import set_up_registry, submission
from tests.conftest import unavailable
from tests.servers import MissingBinaryError, find_postgres_bindir, postgres_server, running_postgres
from xdr_edge.devtools.pki import DemoPki, write_demo_pki
from xdr_edge.protocol.wire import build_request, parse_response
from xdr_edge.receiver.settings import BuiltServer, build_server, load_receiver_settings


@contextlib.contextmanager
def _receiver(registry: str, inbox: Path, **settings: object) -> Iterator[BuiltServer]:
    server, options = load_receiver_settings(
        None,
        overrides={
            "registry": registry,
            "inbox": inbox,
            "receiver_name": "rx-h",
            "behind_proxy": True,
            "trusted_proxies": ("127.0.0.1",),
            "port": 0,
            "threads": 2,
            **settings,
        },
    )
    built = build_server(server, options)
    try:
        with built.server:
            yield built
    finally:
        built.close()


def _health(built: BuiltServer) -> tuple[int, dict[str, object]]:
    connection = http.client.HTTPConnection("127.0.0.1", built.server.port, timeout=30)
    try:
        connection.request("GET", "/healthz")
        reply = connection.getresponse()
        assert reply.getheader("Content-Type") == "application/json"
        assert reply.getheader("Cache-Control") == "no-store"
        return reply.status, json.loads(reply.read())
    finally:
        connection.close()


def _post(built: BuiltServer, pki: DemoPki) -> tuple[int, dict[str, str], bytes]:
    request = build_request(submission(), endpoint="http://127.0.0.1/xdr")
    headers = {
        **request.headers(),
        "X-SSL-Client-Cert": urllib.parse.quote(pki.practices["practice-a"].cert.read_text(), safe=""),
        "X-SSL-Client-Verify": "SUCCESS",
    }
    connection = http.client.HTTPConnection("127.0.0.1", built.server.port, timeout=60)
    try:
        connection.request("POST", "/xdr", body=b"".join(request.body), headers=headers)
        reply = connection.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        connection.close()


def test_health_names_the_failing_check_and_the_log_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki = write_demo_pki(tmp_path / "pki")
    database = tmp_path / "registry.db"
    set_up_registry(str(database), pki)
    with _receiver(str(database), tmp_path / "inbox") as built:
        assert _health(built) == (
            200,
            {"checks": {"inbox": "ok", "registry": "ok"}, "receiver": "rx-h", "status": "ok"},
        )

        work = built.inbox.work_dir
        shutil.rmtree(work)
        work.write_text("the working area is gone")  # e.g. the inbox's filesystem was remounted read-only
        status, health = _health(built)
        assert status == 503 and health["checks"] == {"inbox": "failing", "registry": "ok"}
        work.unlink()
        for sub in ("spool", "staging"):
            (work / sub).mkdir(parents=True)

        moved = database.with_name("elsewhere.db")
        database.rename(moved)
        status, health = _health(built)
        assert status == 503 and health == {
            "checks": {"inbox": "ok", "registry": "failing"},
            "receiver": "rx-h",
            "status": "failing",
        }
        assert "health check registry failing" in caplog.text and "does not exist" in caplog.text
        moved.rename(database)
        assert _health(built)[0] == 200


def test_an_unreachable_registry_database_is_busy_retry_later_not_a_refusal(tmp_path: Path) -> None:
    """PostgreSQL stops while a receiver runs: requests are answered 503 with Retry-After (a sender retries
    later; a refusal would be final), nothing is stored, and /healthz tells the load balancer."""
    try:
        find_postgres_bindir()
        import psycopg  # noqa: F401
    except (MissingBinaryError, ImportError) as exc:
        unavailable(str(exc))
    pki = write_demo_pki(tmp_path / "pki")
    with contextlib.ExitStack() as database_server:
        dsn = database_server.enter_context(postgres_server(tmp_path / "pg"))
        set_up_registry(dsn, pki)
        with _receiver(dsn, tmp_path / "inbox") as built:
            status, _, _ = _post(built, pki)
            assert status == 200
            database_server.close()  # PostgreSQL stops

            status, headers, body = _post(built, pki)
            assert status == 503 and headers["retry-after"] == "5"
            fault = parse_response(headers["content-type"], body).fault
            assert fault is not None and fault.code == "Receiver"
            assert "registry is unavailable; retry later" in fault.reason
            assert _health(built)[0] == 503
            assert len(list((tmp_path / "inbox").glob("20*/*"))) == 1  # only the first, acknowledged one


def test_a_postgresql_restart_under_a_running_receiver_fails_no_request(tmp_path: Path) -> None:
    """PostgreSQL restarts (or fails over to a standby at the same address) while a receiver runs with
    connections in its pool: the server closed them all, and the next request and the next health check
    still succeed (before, each dead pooled connection failed one request with a 503)."""
    try:
        find_postgres_bindir()
        import psycopg  # noqa: F401
    except (MissingBinaryError, ImportError) as exc:
        unavailable(str(exc))
    pki = write_demo_pki(tmp_path / "pki")
    with running_postgres(tmp_path / "pg") as database_server:
        set_up_registry(database_server.dsn, pki)
        with _receiver(database_server.dsn, tmp_path / "inbox", max_requests_per_practice=2) as built:
            for _ in range(2):
                with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both workers: pooled connections
                    assert [s for s, _, _ in pool.map(lambda _: _post(built, pki), range(4))] == [200] * 4
                assert _health(built)[0] == 200
                database_server.restart()
                status, _, body = _post(built, pki)
                assert status == 200, body[:500]
                assert _health(built)[0] == 200
            assert len(list((tmp_path / "inbox").glob("20*/*"))) == 10
