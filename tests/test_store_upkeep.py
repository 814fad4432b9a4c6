"""The inbox's upkeep (xdr_edge.receiver.store): a submission whose outcome is unknown because the registry database
failed while recording it and could not be asked afterwards is answered as such, kept, and settled once the
database answers, without a restart; a receiver that stopped for good has its leftovers adopted by another one
sharing the inbox once its holder is known to be gone; and the working area's lock names its holder. Every test
runs on SQLite and on PostgreSQL.

The database failing at a chosen moment is produced by replacing the index's method on the one inbox (the
database itself stays up for the rest of the test); a receiver that died is a working area left with leftovers
and a lock file naming a process that no longer exists.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OpenInbox
from tests.test_store import (
    _crash_storing,
    _final_dirs,
    _staged,
    _store,
    _submission,
)
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.devtools.lab import start_lab
from xdr_edge.durable import LockOwner
from xdr_edge.protocol.classify import Outcome
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import ConfigurationError, StoreError
from xdr_edge.protocol.model import Document
from xdr_edge.receiver.store import HOLDER_SILENT_SECONDS, OUTCOME_UNKNOWN, Inbox
from xdr_edge.registry import SubmissionIndex, open_database, open_registry
from xdr_edge.registry.database import UNAVAILABLE
from xdr_edge.sender.client import RetryPolicy, XdrClient

LATER = 3600.0  # far enough in the future that every leftover is old and every heartbeat silent


def _database_down(*args: Any, **kwargs: Any) -> Any:
    raise StoreError("connection refused", code=UNAVAILABLE)


def _disk_fails(*args: Any) -> None:
    raise OSError(5, "Input/output error")


def _commit_lost(inbox: Inbox) -> None:
    """The next recordings commit, but the answer never comes back (a connection lost while committing)."""
    original = inbox.index.record_many

    def committed_but_lost(items: Any) -> Any:
        original(items)
        raise StoreError("connection lost while committing", code=UNAVAILABLE)

    inbox.index.record_many = committed_but_lost  # type: ignore[method-assign]


def _restore(inbox: Inbox, *names: str) -> None:
    for name in names:
        inbox.index.__dict__.pop(name, None)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _left_by_a_dead_process(
    inbox: Inbox, *, host: str | None = None, heartbeat_at: float | None = None
) -> None:
    """Make ``inbox``'s lock file say what a holder killed with -9 leaves: its host, pid and last heartbeat."""
    owner = LockOwner(
        host or socket.gethostname(), _dead_pid(), time.time() if heartbeat_at is None else heartbeat_at
    )
    (inbox.work_dir / "lock").write_bytes(owner.to_bytes())


# -- outcome unknown ------------------------------------------------------------------------------------------


def test_a_commit_lost_while_the_database_stays_down_is_unknown_then_settled_by_the_upkeep(
    open_inbox: OpenInbox,
) -> None:
    inbox = open_inbox()
    inbox.recover()
    submission = _submission()
    _commit_lost(inbox)
    inbox.index.staged = _database_down  # type: ignore[method-assign]
    with pytest.raises(StoreError) as raised:
        _store(inbox, submission)
    assert raised.value.code == OUTCOME_UNKNOWN
    assert "may or may not have been stored" in raised.value.message and "send it again unchanged" in str(
        raised.value
    )
    assert len(_staged(inbox)) == 1 and _final_dirs(inbox) == []  # kept, not deleted: the index holds it

    still_down = inbox.upkeep()
    assert (still_down.settled, still_down.unsettled) == (0, 1) and len(_staged(inbox)) == 1

    _restore(inbox, "staged", "record_many")
    settled = inbox.upkeep()
    assert (settled.settled, settled.unsettled) == (1, 0)
    (directory,) = _final_dirs(inbox)
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["submission_set_unique_id"] == submission.submission_set.unique_id
    assert _staged(inbox) == []
    assert _store(inbox, submission) is None  # the sender's resend: a duplicate, meaning delivered


def test_a_recording_that_failed_before_committing_is_unknown_then_removed_by_the_upkeep(
    open_inbox: OpenInbox,
) -> None:
    inbox = open_inbox()
    inbox.recover()
    submission = _submission()
    inbox.index.record_many = _database_down  # type: ignore[method-assign]
    inbox.index.staged = _database_down  # type: ignore[method-assign]
    with pytest.raises(StoreError) as raised:
        _store(inbox, submission)
    assert raised.value.code == OUTCOME_UNKNOWN
    _restore(inbox, "staged", "record_many")
    assert inbox.upkeep().settled == 1
    assert (
        _staged(inbox) == []
        and _final_dirs(inbox) == []
        and not inbox.contains(submission.submission_set.unique_id)
    )
    assert _store(inbox, submission) is not None  # the resend is stored: not a duplicate of anything


def test_the_database_answering_not_recorded_at_once_is_a_plain_failure_with_nothing_kept(
    open_inbox: OpenInbox,
) -> None:
    """The recording failed before its COMMIT was sent (here: no connection at all), and the database, asked
    right away, has no record: certainly not stored, so "retry later" (a 503 at the endpoint) is the truth and
    nothing waits for the upkeep. (A COMMIT sent and unanswered is another matter: see the PostgreSQL tests at
    the end.)"""
    inbox = open_inbox()
    inbox.recover()
    inbox.index.record_many = _database_down  # type: ignore[method-assign]
    with pytest.raises(StoreError) as raised:
        _store(inbox, _submission())
    assert raised.value.code == UNAVAILABLE
    assert _staged(inbox) == [] and inbox.upkeep().unsettled == 0


def test_recorded_but_neither_moved_into_place_nor_undone_is_unknown_then_moved_by_the_upkeep(
    open_inbox: OpenInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = open_inbox()
    inbox.recover()
    submission = _submission()

    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", _disk_fails)
        inbox.index.forget = _database_down  # type: ignore[method-assign]
        with pytest.raises(StoreError) as raised:
            _store(inbox, submission)
    assert raised.value.code == OUTCOME_UNKNOWN
    assert inbox.contains(submission.submission_set.unique_id) and len(_staged(inbox)) == 1
    _restore(inbox, "forget")
    assert inbox.upkeep().settled == 1
    assert len(_final_dirs(inbox)) == 1 and _staged(inbox) == []


def test_the_upkeep_thread_settles_without_being_asked_and_stops_with_the_inbox(
    open_inbox: OpenInbox,
) -> None:
    inbox = open_inbox()
    inbox.recover()
    _commit_lost(inbox)
    inbox.index.staged = _database_down  # type: ignore[method-assign]
    with pytest.raises(StoreError):
        _store(inbox, _submission())
    _restore(inbox, "staged", "record_many")
    inbox.start_upkeep(interval=0.05)
    threads = (inbox._upkeep_thread, inbox._heartbeat_thread)
    assert all(t is not None and t.is_alive() for t in threads)
    deadline = time.monotonic() + 30
    while _final_dirs(inbox) == [] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_final_dirs(inbox)) == 1 and _staged(inbox) == []
    inbox.close()
    assert not any(t is not None and t.is_alive() for t in threads)


# -- adopting a dead receiver's working area --------------------------------------------------------------


def _crashed_receiver(open_inbox: OpenInbox, monkeypatch: pytest.MonkeyPatch) -> tuple[Inbox, str, str]:
    """rx-2 dies with a recorded submission not yet moved into place, an unrecorded one, and a spooled part;
    returns it and the two SubmissionSet uniqueIds (recorded, unrecorded)."""
    dead = open_inbox(receiver="rx-2")
    dead.recover()
    recorded, unrecorded = _submission(), _submission()
    _crash_storing(monkeypatch, dead, recorded, "move")
    _crash_storing(monkeypatch, dead, unrecorded, "record")
    (dead.spool_dir / "xdr-mtom-3.part").write_bytes(b"half a part")
    dead.close()
    _left_by_a_dead_process(dead)
    return dead, recorded.submission_set.unique_id, unrecorded.submission_set.unique_id


def test_a_dead_receivers_leftovers_are_adopted_and_settled_as_its_own_recovery_would(
    open_inbox: OpenInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead, recorded, unrecorded = _crashed_receiver(open_inbox, monkeypatch)
    alive = open_inbox(receiver="rx-1", clock=lambda: time.time() + LATER)
    alive.recover()
    upkeep = alive.upkeep()
    assert upkeep.adopted == ("rx-2",)
    assert (upkeep.recovered.completed, upkeep.recovered.removed) == (
        1,
        2,
    )  # the recorded one; the rest removed
    (directory,) = _final_dirs(alive)
    assert json.loads((directory / "summary.json").read_text())["submission_set_unique_id"] == recorded
    assert alive.contains(recorded) and not alive.contains(unrecorded)
    assert _staged(dead) == [] and list(dead.spool_dir.iterdir()) == []
    assert (dead.work_dir / "lock").read_bytes() == b""  # released, naming nobody
    assert alive.upkeep().adopted == ()  # nothing left to adopt
    open_inbox(receiver="rx-2").recover()  # the name is free for a receiver starting again


def test_a_running_receivers_working_area_is_never_adopted(
    open_inbox: OpenInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead, _, _ = _crashed_receiver(open_inbox, monkeypatch)
    restarted = open_inbox(receiver="rx-2")
    restarted.lock()  # rx-2 running again, before its recovery got to its leftovers
    alive = open_inbox(receiver="rx-1", clock=lambda: time.time() + LATER)
    alive.recover()
    assert alive.upkeep().adopted == ()
    assert len(_staged(dead)) == 2


def test_fresh_leftovers_and_a_live_holder_on_another_host_are_left_alone(
    open_inbox: OpenInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead, _, _ = _crashed_receiver(open_inbox, monkeypatch)
    now = open_inbox(receiver="rx-1")  # the real clock: the leftovers are seconds old, not adopt_after
    now.recover()
    assert now.upkeep().adopted == () and len(_staged(dead)) == 2
    now.close()

    # a holder on another host whose flock a network filesystem may not show: its heartbeat says it is alive
    _left_by_a_dead_process(dead, host="rx-2.other-host.example", heartbeat_at=time.time() + LATER - 5)
    later = open_inbox(receiver="rx-1", clock=lambda: time.time() + LATER)
    later.recover()
    assert later.upkeep().adopted == () and len(_staged(dead)) == 2
    _left_by_a_dead_process(dead, host="rx-2.other-host.example", heartbeat_at=time.time())  # silent an hour
    assert later.upkeep().adopted == ("rx-2",) and _staged(dead) == []


def test_a_receiver_name_held_by_a_live_process_on_another_host_is_refused_until_it_falls_silent(
    open_inbox: OpenInbox,
) -> None:
    held = open_inbox(receiver="rx-2")
    _left_by_a_dead_process(held, host="rx-2.other-host.example", heartbeat_at=time.time())
    with pytest.raises(ConfigurationError, match=r"held by process \d+ on host rx-2\.other-host\.example"):
        held.recover()
    assert (held.work_dir / "lock").read_bytes() != b""  # still theirs
    _left_by_a_dead_process(
        held, host="rx-2.other-host.example", heartbeat_at=time.time() - HOLDER_SILENT_SECONDS - 1
    )
    held.recover()  # silent for three upkeep rounds: gone
    owner = LockOwner.from_bytes((held.work_dir / "lock").read_bytes())
    assert owner is not None and owner.this_host and owner.pid == os.getpid()


def test_the_lock_file_names_its_holder_and_the_upkeep_renews_its_heartbeat(open_inbox: OpenInbox) -> None:
    ticks = [1000.0]
    inbox = open_inbox(clock=lambda: ticks[0])
    inbox.recover()
    first = LockOwner.from_bytes((inbox.work_dir / "lock").read_bytes())
    assert first is not None and (first.host, first.pid, first.heartbeat_at) == (
        socket.gethostname(),
        os.getpid(),
        1000.0,
    )
    ticks[0] = 1030.0
    inbox.upkeep()
    renewed = LockOwner.from_bytes((inbox.work_dir / "lock").read_bytes())
    assert renewed is not None and renewed.heartbeat_at == 1030.0
    inbox.close()
    assert (inbox.work_dir / "lock").read_bytes() == b""


# -- durability of names ------------------------------------------------------------------------------------


def test_every_folder_a_stored_submission_depends_on_is_flushed_before_the_answer(
    open_inbox: OpenInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The names as well as the bytes: ``staging/`` before the index records (recovery must find the folder the
    index points at), both ends of the rename, and a new date folder in the inbox before anything goes in it."""
    inbox = open_inbox()
    inbox.recover()
    flushed: list[tuple[str, Path]] = []
    original_record = inbox.index.record_many

    def record_many(items: Any) -> Any:
        flushed.append(("record", Path()))
        return original_record(items)

    inbox.index.record_many = record_many  # type: ignore[method-assign]
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if path.is_dir():
            flushed.append(("dir", path))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    stored = _store(inbox, _submission())
    assert stored is not None
    record_at = flushed.index(("record", Path()))
    before, after = flushed[:record_at], flushed[record_at + 1 :]
    assert ("dir", inbox.staging_dir) in before
    date_folder = stored.directory.parent
    assert (
        ("dir", inbox.root) in after and ("dir", date_folder) in after and ("dir", inbox.staging_dir) in after
    )
    assert after.index(("dir", inbox.root)) < after.index(("dir", date_folder))


# -- through the endpoint -----------------------------------------------------------------------------------


def test_the_endpoint_answers_an_unknown_outcome_with_a_receiver_fault_and_the_resend_is_delivered(
    tmp_path: Path,
) -> None:
    """Over mutual TLS with the real client: the answer is HTTP 500 with a ``Receiver`` fault relating to the
    request (never the 503 that says "not stored"), the client reports that the HISP may hold it, and once the
    upkeep has settled it the resend, declared as possibly stored, is delivered without a second copy."""
    submission = compose(
        [Document.from_bytes(sample_ccda(), name="ccd.xml")],
        sender="dr.smith@direct.practice-a.org",
        recipients=["inbox@direct.hisp.example"],
    )
    with start_lab(tmp_path / "lab") as lab:
        _commit_lost(lab.inbox)
        lab.inbox.index.staged = _database_down  # type: ignore[method-assign]
        with XdrClient(
            endpoint=lab.endpoint,
            ca_bundle=lab.ca_bundle,
            practices=lab.practices,
            retry=RetryPolicy(max_attempts=1),
        ) as client:
            first = client.send(submission, practice="practice-a")
            assert first.outcome is Outcome.FAULT and first.http_status == 500
            assert first.fault is not None and first.fault.code == "Receiver"
            assert (
                "could not be confirmed" in first.fault.reason
                and "send it again unchanged" in first.fault.reason
            )
            assert first.maybe_stored
            _restore(lab.inbox, "staged", "record_many")
            assert lab.inbox.upkeep().settled == 1
            again = client.send(submission, practice="practice-a", maybe_stored=True)
        assert again.ok and again.already_delivered
        stored = list(lab.inbox.root.glob(f"*/{submission.submission_set.unique_id}*/summary.json"))
        assert len(stored) == 1


def test_an_adoption_that_fails_half_way_releases_the_area_and_is_tried_again(
    open_inbox: OpenInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk failing while a dead receiver's submission is moved into place: the area's lock is given back
    (that receiver can start again at once), and the next round finishes the adoption."""
    dead, recorded, _ = _crashed_receiver(open_inbox, monkeypatch)
    alive = open_inbox(receiver="rx-1", clock=lambda: time.time() + LATER)
    alive.recover()
    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", _disk_fails)
        assert alive.upkeep().adopted == ()
    restarted = open_inbox(receiver="rx-2")
    restarted.lock()  # not held by the failed adoption
    restarted.close()
    assert alive.upkeep().adopted == ("rx-2",) and alive.contains(recorded) and _staged(dead) == []


# -- a COMMIT whose answer is lost (PostgreSQL) ------------------------------------------------------------


_PROXIED = "xdr-edge-commit-cut-test"


class _CommitCuttingProxy:
    """TCP on loopback to the PostgreSQL server's socket. Armed, it cuts the client's connection at the first
    ``COMMIT``, after forwarding it (``forward=True``: the server commits what it received, as a real server
    does until it tries to answer) or instead of forwarding it (the server sees the client gone and rolls
    back)."""

    def __init__(self, unix_path: str) -> None:
        self.unix_path = unix_path
        self.armed: bool | None = None  # None: pass through; True/False: cut at COMMIT, forwarding it or not
        self.cut = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX)
            server.connect(self.unix_path)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while data := src.recv(65536):
                forward = self.armed
                if upstream and forward is not None and b"COMMIT" in data:
                    self.armed = None
                    if forward:
                        dst.sendall(data)
                    src.close()  # the client's side only: the server keeps the rest of its session
                    if not forward:
                        dst.shutdown(socket.SHUT_RDWR)  # (close alone waits for the other pump's recv)
                    self.cut.set()
                    return
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def cutting(postgres_dsn: str) -> Iterator[tuple[_CommitCuttingProxy, str, str]]:
    """A proxy to the session's PostgreSQL, a registry URL through it, and the direct URL, on a schema of its
    own; recording is slowed by a deferred trigger (2 s at COMMIT: a slow disk or a synchronous standby)."""
    import psycopg

    from tests.conftest import postgres_schema

    info = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    proxy = _CommitCuttingProxy(f"{info['host']}/.s.PGSQL.{info.get('port', 5432)}")
    with postgres_schema(postgres_dsn) as direct:
        schema = direct.rpartition("%3D")[2]
        through = f"postgresql://{info.get('user', 'postgres')}@127.0.0.1:{proxy.port}/{info.get('dbname', 'postgres')}"
        through += f"?options=-csearch_path%3D{schema}&application_name={_PROXIED}"
        with open_registry(through) as registry:
            registry.init(actor="test")
        with psycopg.connect(direct, autocommit=True) as admin:
            admin.execute(
                "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$"
            )
            admin.execute(
                "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON inbox_submissions "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"
            )
        try:
            yield proxy, through, direct
        finally:
            proxy.close()
            with psycopg.connect(postgres_dsn, autocommit=True) as admin:  # what the proxy still holds open
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    (_PROXIED,),
                )


def _pg_inbox(url: str, root: Path) -> Inbox:
    inbox = Inbox(root, SubmissionIndex(open_database(url, max_connections=4)), receiver="rx-1")
    inbox.recover()
    return inbox


def _settled_within(inbox: Inbox, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while inbox.upkeep().unsettled and time.monotonic() < deadline:
        time.sleep(0.2)


def test_a_commit_the_server_completes_after_the_connection_was_lost_is_never_deleted(
    cutting: tuple[_CommitCuttingProxy, str, str], tmp_path: Path
) -> None:
    """Asked at once, the database says "no such row" (it is still committing): the submission must not be
    deleted on that answer, or the index would hold a uniqueId with nothing on disk and the sender's retry would
    be told "duplicate". The transaction's own status decides: in progress, so the outcome is unknown; once it
    committed, the upkeep moves the submission into place."""
    proxy, through, _ = cutting
    inbox = _pg_inbox(through, tmp_path / "inbox")
    submission = _submission()
    proxy.armed = True
    try:
        with pytest.raises(StoreError) as raised:
            _store(inbox, submission)
        assert proxy.cut.is_set() and raised.value.code == OUTCOME_UNKNOWN
        assert len(_staged(inbox)) == 1
        _settled_within(inbox, 30)
        (directory,) = _final_dirs(inbox)
        assert json.loads((directory / "summary.json").read_text())["submission_set_unique_id"] == (
            submission.submission_set.unique_id
        )
        assert _store(inbox, submission) is None  # the resend: a duplicate, truthfully
    finally:
        inbox.close()
        inbox.index.database.close()


def test_a_commit_that_never_reached_the_server_is_rolled_back_and_the_retry_is_stored(
    cutting: tuple[_CommitCuttingProxy, str, str], tmp_path: Path
) -> None:
    proxy, through, _ = cutting
    inbox = _pg_inbox(through, tmp_path / "inbox")
    submission = _submission()
    proxy.armed = False
    try:
        with pytest.raises(StoreError) as raised:
            _store(inbox, submission)
        # the server may not have noticed the client gone yet: "unknown" then, "not stored" once it rolled back
        assert proxy.cut.is_set() and raised.value.code in (OUTCOME_UNKNOWN, UNAVAILABLE)
        _settled_within(inbox, 30)
        assert _staged(inbox) == [] and _final_dirs(inbox) == []
        assert not inbox.contains(submission.submission_set.unique_id)
        assert _store(inbox, submission) is not None
    finally:
        inbox.close()
        inbox.index.database.close()


def test_a_receiver_starting_while_its_area_is_being_adopted_starts_once_the_adoption_is_over(
    open_inbox: OpenInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An adoption holds the dead area's lock for one index query per leftover (and the renames and removals);
    with a slow database or many leftovers that is longer than the start-up's wait for the lock, and the
    receiver of that name, restarted at that moment, must still start: nobody else is running under its name."""
    _crashed_receiver(open_inbox, monkeypatch)
    alive = open_inbox(receiver="rx-1", clock=lambda: time.time() + LATER)
    alive.recover()
    asked = threading.Event()
    original = alive.index.staged

    def slow_staged(*args: Any) -> Any:
        asked.set()
        time.sleep(3.0)  # a database answering slowly (or the hundredth of many leftovers)
        return original(*args)

    alive.index.staged = slow_staged  # type: ignore[method-assign,assignment]
    adoption = threading.Thread(target=alive.upkeep)
    adoption.start()
    assert asked.wait(30)
    try:
        open_inbox(receiver="rx-2").recover()  # refused today: "another receiver named 'rx-2' is running"
    finally:
        adoption.join()


def test_the_heartbeat_goes_on_while_a_round_of_upkeep_waits_on_a_slow_database(
    open_inbox: OpenInbox,
) -> None:
    """A receiver on another host that cannot see our flock judges us by the heartbeat alone: a round of upkeep
    stuck on the database must not silence it."""
    inbox = open_inbox()
    inbox.recover()
    stuck = threading.Event()
    release = threading.Event()

    def slow_round() -> Any:
        stuck.set()
        release.wait(30)

    inbox.upkeep = slow_round  # type: ignore[method-assign]
    inbox.start_upkeep(interval=0.3)
    try:
        assert stuck.wait(30)
        first = LockOwner.from_bytes((inbox.work_dir / "lock").read_bytes())
        time.sleep(1.0)
        later = LockOwner.from_bytes((inbox.work_dir / "lock").read_bytes())
        assert first is not None and later is not None and later.heartbeat_at > first.heartbeat_at
    finally:
        release.set()
        inbox.close()
    assert (inbox.work_dir / "lock").read_bytes() == b""
