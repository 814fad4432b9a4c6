"""The receiving edge as a cluster: nginx (the shipped configuration) terminating mutual TLS in front of two
``xdr-edge serve --behind-proxy`` processes sharing a PostgreSQL registry, each with an inbox of its own.

Real nginx, real PostgreSQL, real receiver processes (tests/cluster.py); skipped with the reason when nginx or
PostgreSQL is not installed (CI installs both and requires them).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import Answer, Cluster, Receiver, post, registry_command, send, start_cluster, submission
from tests.concurrency import run_together
from tests.conftest import postgres_schema
from xdr_edge.protocol.model import Submission
from xdr_edge.registry import open_database, open_registry

DUPLICATE = "XDSDuplicateUniqueIdInRegistry"

pytestmark = pytest.mark.usefixtures("nginx_binary")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_dsn: str) -> Iterator[Cluster]:
    with postgres_schema(postgres_dsn) as registry:
        with start_cluster(tmp_path_factory.mktemp("cluster"), registry) as running:
            yield running


def _stored(cluster: Cluster) -> dict[str, list[Path]]:
    """SubmissionSet uniqueId -> the directories holding it, over every receiver's inbox."""
    found: dict[str, list[Path]] = {}
    for receiver in cluster.receivers:
        for summary in receiver.inbox.glob("20*/*/summary.json"):
            uid = json.loads(summary.read_text())["submission_set_unique_id"]
            found.setdefault(uid, []).append(summary.parent)
    return found


def _handlers(cluster: Cluster, answers: list[Answer]) -> set[str]:
    return {cluster.receiver_of(a.message_id).name for a in answers}


def test_a_submission_accepted_through_one_receiver_is_a_duplicate_through_the_other(
    cluster: Cluster,
) -> None:
    item = submission()
    first = send(cluster, item)
    assert first.success, first.body[:500]
    stored_by = cluster.receiver_of(first.message_id)
    assert stored_by.handled(first.message_id, "stored")
    for _ in range(6):  # nginx takes turns; a copy reaches the other receiver within a try or two
        copy = send(cluster, item)
        assert copy.error_codes == [DUPLICATE]
        if cluster.receiver_of(copy.message_id) is not stored_by:
            break
    else:
        pytest.fail("no copy reached the other receiver")
    assert len(_stored(cluster)[item.submission_set.unique_id]) == 1


def test_twenty_simultaneous_copies_spread_over_both_receivers_are_stored_once(cluster: Cluster) -> None:
    for _ in range(2):
        item = submission(size=100 * 1024)

        def copy(_n: int, item: Submission = item) -> Answer:
            return send(cluster, item)

        answers = run_together(20, copy)
        assert sum(a.success for a in answers) == 1, [a.status for a in answers]
        assert all(a.success or a.error_codes == [DUPLICATE] for a in answers)
        assert _handlers(cluster, answers) == {"rx-1", "rx-2"}  # the copies really were spread over both
        assert len(_stored(cluster)[item.submission_set.unique_id]) == 1


def _rejections(receiver: Receiver, fingerprint: str) -> int:
    return receiver.log_text().count(f"outcome=certificate-rejected status=403 cert={fingerprint[:16]}")


def test_a_certificate_revoked_through_the_cli_is_refused_by_every_receiver_on_the_next_request(
    cluster: Cluster,
) -> None:
    before = [send(cluster, submission("practice-b"), "practice-b") for _ in range(4)]
    assert all(a.success for a in before) and _handlers(cluster, before) == {"rx-1", "rx-2"}
    fingerprint = cluster.pki.practices["practice-b"].fingerprint_sha256
    revoke = subprocess.run(
        [
            *(sys.executable, "-m", "xdr_edge", "registry", "revoke", fingerprint),
            *("--reason", "key compromise", "--registry", cluster.registry),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert revoke.returncode == 0, revoke.stderr
    after = [send(cluster, submission("practice-b"), "practice-b") for _ in range(4)]
    assert [a.status for a in after] == [403] * 4
    assert all(b"revoked" in a.body for a in after)
    assert all(_rejections(r, fingerprint) >= 1 for r in cluster.receivers)  # both refused it


def test_an_enrolment_and_a_deactivation_count_on_every_receiver_at_the_next_request(
    cluster: Cluster, tmp_path: Path
) -> None:
    second = cluster.pki.ca.issue_client("practice-a second edge")
    identity = (tmp_path / "second.pem", tmp_path / "second.key")
    second.write_pem(*identity)

    def four() -> list[Answer]:  # nginx takes turns: each receiver gets some
        return [send(cluster, submission(), identity=identity) for _ in range(4)]

    def refused_by_both(since: list[int]) -> bool:
        return all(
            _rejections(r, second.fingerprint_sha256) > n
            for r, n in zip(cluster.receivers, since, strict=True)
        )

    before = four()
    assert [a.status for a in before] == [403] * 4 and all(b"not enrolled" in a.body for a in before)
    assert refused_by_both([0, 0])
    registry_command(cluster.registry, "enroll", "practice-a", str(identity[0]))
    enrolled = four()
    assert all(a.success for a in enrolled) and _handlers(cluster, enrolled) == {"rx-1", "rx-2"}
    counts = [_rejections(r, second.fingerprint_sha256) for r in cluster.receivers]
    with open_registry(cluster.registry) as registry:  # another process than the receivers, as the CLI is
        registry.set_active("practice-a", False, actor="test")
        try:
            inactive = four()
        finally:
            registry.set_active("practice-a", True, actor="test")
    assert [a.status for a in inactive] == [403] * 4 and all(b"inactive" in a.body for a in inactive)
    assert refused_by_both(counts)
    assert send(cluster, submission(), identity=identity).success


def test_an_address_unbound_through_the_cli_is_refused_by_every_receiver(cluster: Cluster) -> None:
    extra = "dr.locum@direct.practice-a.org"
    registry_command(cluster.registry, "bind", "practice-a", extra)
    allowed = [send(cluster, submission(sender=extra)) for _ in range(4)]
    assert all(a.success for a in allowed) and _handlers(cluster, allowed) == {"rx-1", "rx-2"}
    registry_command(cluster.registry, "unbind", "practice-a", extra)
    refused = [send(cluster, submission(sender=extra)) for _ in range(4)]
    assert all(a.error_codes == ["XDSRepositoryError"] for a in refused)
    assert all(b"is not bound" in a.body for a in refused)
    assert _handlers(cluster, refused) == {"rx-1", "rx-2"}


def test_nginx_replaces_a_forged_certificate_header(cluster: Cluster) -> None:
    """practice-a's client claims practice-b's certificate in the headers nginx sets: nginx replaces them, so
    the receiver sees practice-a's verified certificate (and practice-a's address is accepted)."""
    forged = urllib.parse.quote(cluster.pki.practices["practice-b"].cert.read_text(), safe="")
    connection = cluster.connect("practice-a")
    try:
        answer = post(
            connection,
            submission("practice-a"),
            {"X-SSL-Client-Cert": forged, "X-SSL-Client-Verify": "SUCCESS"},
        )
    finally:
        connection.close()
    assert answer.success, answer.body[:500]
    receiver = cluster.receiver_of(answer.message_id)
    (line,) = [x for x in receiver.log_text().splitlines() if f"message_id={answer.message_id} " in x]
    fingerprint = cluster.pki.practices["practice-a"].fingerprint_sha256
    assert "practice=practice-a " in line and f"cert={fingerprint[:16]}" in line, line


def test_health_for_the_load_balancer_on_each_receiver_not_through_nginx(cluster: Cluster) -> None:
    for receiver in cluster.receivers:
        with urllib.request.urlopen(f"http://127.0.0.1:{receiver.port}/healthz", timeout=10) as reply:
            assert reply.status == 200
            health = json.loads(reply.read())
        assert health == {
            "checks": {"inbox": "ok", "registry": "ok"},
            "receiver": receiver.name,
            "status": "ok",
        }
    connection = cluster.connect()
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 404
    finally:
        connection.close()


# -- a receiver killed under load ------------------------------------------------------------------------


def _client(cluster: Cluster, count: int, log: list[tuple[Submission, Answer | str, float]]) -> None:
    """Send ``count`` fresh submissions on a keep-alive connection, reconnecting after a failure."""
    connection = cluster.connect()
    for _ in range(count):
        item = submission(size=20 * 1024)
        started = time.monotonic()
        outcome: Answer | str
        try:
            outcome = post(connection, item)
        # the request's fate is unknown to this client: the connection broke, or broke mid-answer (the receiver
        # died after its answer's head went out, and nginx cut the body short: IncompleteRead)
        except (OSError, http.client.HTTPException) as exc:
            outcome = type(exc).__name__
            connection.close()
            connection = cluster.connect()
        log.append((item, outcome, started))
    connection.close()


def test_a_receiver_killed_under_load_loses_no_acknowledged_submission_and_the_other_keeps_serving(
    tmp_path: Path, postgres_url: str
) -> None:
    with start_cluster(tmp_path, postgres_url) as cluster:
        victim, survivor = cluster.receivers
        log: list[tuple[Submission, Answer | str, float]] = []
        clients = [threading.Thread(target=_client, args=(cluster, 15, log)) for _ in range(8)]
        for client in clients:
            client.start()
        deadline = time.monotonic() + 120
        while len(log) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        killed_at = _kill_in_flight(victim, deadline)  # SIGKILL, with a request in flight
        for client in clients:
            client.join(timeout=300)
        assert len(log) == 120
        # the kill interrupted requests: nginx answered them 502 (or the connection broke)
        interrupted = [a for _, a, _ in log if isinstance(a, str) or a.status == 502]
        assert interrupted, "the kill interrupted no request"

        # every Success is in an inbox at once, whole (before anyone restarted anything)
        stored = _stored(cluster)
        successes = [(item, a) for item, a, _ in log if isinstance(a, Answer) and a.success]
        for item, _answer in successes:
            (directory,) = stored[item.submission_set.unique_id]
            (document,) = (directory / "documents").iterdir()
            assert hashlib.sha1(document.read_bytes()).hexdigest() == item.document_entries[0].hash
        # the survivor kept serving: requests started after the kill succeeded, on it
        later = [
            a for item, a, started in log if started > killed_at + 0.5 and isinstance(a, Answer) and a.success
        ]
        # a fast cluster may have answered the clients' last requests within half a second of the kill (before
        # nginx can be expected to have noticed it): the requests still needed to see the survivor serve are
        # sent now, one after the other, and every one of them must succeed
        while len(later) < 20:
            time.sleep(max(0.0, killed_at + 0.5 - time.monotonic()))
            extra = submission(size=20 * 1024)
            reply = send(cluster, extra)
            log.append((extra, reply, time.monotonic()))
            assert reply.success, reply.body[:300]
            later.append(reply)
        assert _handlers(cluster, later) == {survivor.name}
        assert victim.process is not None and victim.process.returncode == -signal.SIGKILL

        # the killed receiver starts again on its port: recovery settles what it left, then every sender retry
        # is either stored now or told "duplicate" (it had been stored)
        victim.start(same_port=True)
        for item, answer, _ in log:
            if isinstance(answer, Answer) and answer.success:
                continue
            retry = send(cluster, item)
            assert retry.success or retry.error_codes == [DUPLICATE], (answer, retry.body[:300])
        stored = _stored(cluster)
        assert all(len(stored[item.submission_set.unique_id]) == 1 for item, _, _ in log)
        assert list((victim.inbox / ".work" / victim.name / "staging").iterdir()) == []
        _assert_index_matches_inboxes(cluster)


def _kill_in_flight(victim: Receiver, deadline: float) -> float:
    """SIGKILL ``victim`` while a request is in flight on it (a document being received or written); returns when.

    The receiver is frozen (SIGSTOP) before it is looked at a second time: a request seen in flight and killed
    at once could still finish in between on a busy machine, and then the kill interrupted nothing."""
    process = victim.process
    assert process is not None
    while time.monotonic() < deadline:
        if _in_flight(victim):
            process.send_signal(signal.SIGSTOP)
            _wait_stopped(process.pid)
            if _in_flight(victim):  # frozen: what is in flight now can no longer finish
                killed_at = time.monotonic()
                victim.kill()
                return killed_at
            process.send_signal(signal.SIGCONT)
        time.sleep(0.001)
    raise AssertionError("no request was ever in flight on the receiver to kill")


def _wait_stopped(pid: int) -> None:
    """Until every thread of ``pid`` is stopped: SIGSTOP takes effect a moment after it is sent (proc(5): state
    ``T``)."""
    tasks = Path(f"/proc/{pid}/task")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = []
        for task in tasks.iterdir():
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop")


def _in_flight(receiver: Receiver) -> bool:
    """Whether the receiver is in the middle of a request: a document part arriving in its spool, or a
    submission being written in its staging area (it has not answered it yet)."""
    work = receiver.inbox / ".work" / receiver.name
    return any(any((work / area).iterdir()) for area in ("spool", "staging") if (work / area).is_dir())


def _assert_index_matches_inboxes(cluster: Cluster) -> None:
    """Every recorded submission is in the inbox of the receiver that recorded it, and nothing else is."""
    database = open_database(cluster.registry)
    try:
        with database.connection() as conn:
            rows = conn.all("SELECT unique_id, receiver, path FROM inbox_submissions")
    finally:
        database.close()
    inboxes = {r.name: r.inbox for r in cluster.receivers}
    recorded = {(inboxes[row["receiver"]] / row["path"]).resolve() for row in rows}
    on_disk = {d.resolve() for dirs in _stored(cluster).values() for d in dirs}
    assert recorded == on_disk
