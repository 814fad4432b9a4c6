"""The inbox index in the registry database (xdr_edge.registry.submissions), one suite for SQLite and PostgreSQL.

Several ``SubmissionIndex`` objects over their own connections to one database stand for several receivers (or
processes): what one records, every other sees; two recording the same uniqueId at the same moment never both
succeed, because the database's primary key decides.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.concurrency import run_together
from xdr_edge.protocol.errors import StoreError
from xdr_edge.registry import (
    Access,
    ConflictKind,
    IndexConflict,
    IndexedDocument,
    IndexedSubmission,
    SubmissionIndex,
    open_database,
    open_registry,
)
from xdr_edge.registry.database import UNAVAILABLE, Connection

SHA_A = "a" * 40
SHA_B = "b" * 40

MakeIndex = Callable[[], SubmissionIndex]


@pytest.fixture
def make_index(registry_url: str) -> Iterator[MakeIndex]:
    """Opens an index over its own connection(s) to the test's database (a receiver of its own)."""
    with open_registry(registry_url) as registry:
        registry.init(actor="test")
    opened: list[SubmissionIndex] = []

    def make() -> SubmissionIndex:
        index = SubmissionIndex(open_database(registry_url, max_connections=8))
        opened.append(index)
        return index

    yield make
    for index in opened:
        index.database.close()


def _submission(
    uid: str, practice: str | None = "p-1", receiver: str = "rx-1", path: str = ""
) -> IndexedSubmission:
    return IndexedSubmission(
        uid, practice, receiver, f"stage-{uid}-{receiver}", path or f"2026-01-01/{uid}", datetime.now(UTC)
    )


def test_a_recorded_submission_is_found_by_every_receiver(make_index: MakeIndex) -> None:
    first, second = make_index(), make_index()
    assert first.record(_submission("2.25.1"), [IndexedDocument("2.25.1.1", SHA_A, 10)]) is None
    assert second.contains("2.25.1")
    recorded = second.submission("2.25.1")
    assert recorded is not None
    assert (recorded.practice_id, recorded.receiver, recorded.path) == ("p-1", "rx-1", "2026-01-01/2.25.1")
    assert second.document("2.25.1.1") == IndexedDocument("2.25.1.1", SHA_A, 10)
    assert second.staged("rx-1", "stage-2.25.1-rx-1") == recorded
    assert second.staged("rx-2", "stage-2.25.1-rx-1") is None  # a receiver finds only its own staging


def test_conflicts_name_the_kind_and_record_nothing(make_index: MakeIndex) -> None:
    index = make_index()
    assert index.record(_submission("2.25.1"), [IndexedDocument("2.25.1.1", SHA_A, 10)]) is None
    again = index.record(_submission("2.25.1", receiver="rx-2"), [])
    assert again == IndexConflict(ConflictKind.DUPLICATE, "2.25.1", "p-1")
    foreign = index.record(_submission("2.25.1", practice="p-2", receiver="rx-3"), [])
    assert foreign == IndexConflict(ConflictKind.SUBMISSION_ELSEWHERE, "2.25.1", "p-1")

    cases = [
        ("p-1", IndexedDocument("2.25.1.1", SHA_B, 10), ConflictKind.DOCUMENT_HASH),
        ("p-1", IndexedDocument("2.25.1.1", SHA_A, 11), ConflictKind.DOCUMENT_SIZE),
        ("p-2", IndexedDocument("2.25.1.1", SHA_B, 10), ConflictKind.DOCUMENT_ELSEWHERE),
    ]
    for n, (practice, document, kind) in enumerate(cases, start=2):
        fresh = IndexedDocument(f"2.25.{n}.9", SHA_A, 1)  # sorts after the conflicting one: inserted first
        conflict = index.record(_submission(f"2.25.{n}", practice=practice), [fresh, document])
        assert conflict == IndexConflict(kind, "2.25.1.1", "p-1")
        assert not index.contains(f"2.25.{n}")  # the SubmissionSet row was rolled back with the conflict
        assert index.document(fresh.unique_id) is None

    # the same bytes again, from any practice: a re-registration, recorded with the new submission
    same = IndexedDocument("2.25.1.1", SHA_A, 10)
    assert index.record(_submission("2.25.9", practice="p-2"), [same]) is None
    assert index.contains("2.25.9")


def test_forget_removes_a_submission_with_its_own_documents_only(make_index: MakeIndex) -> None:
    index = make_index()
    shared = IndexedDocument("2.25.1.1", SHA_A, 10)
    assert index.record(_submission("2.25.1"), [shared, IndexedDocument("2.25.1.2", SHA_B, 5)]) is None
    assert index.record(_submission("2.25.2"), [shared]) is None  # re-registers the shared document
    assert not index.forget("2.25.1", "another-staging-name")  # only the recording that made it may undo it
    assert index.forget("2.25.1", "stage-2.25.1-rx-1")
    assert not index.contains("2.25.1")
    assert index.document("2.25.1.2") is None
    assert index.document("2.25.1.1") == shared  # 2.25.2, still stored, carries it
    assert index.record(_submission("2.25.1"), [IndexedDocument("2.25.1.2", SHA_A, 1)]) is None  # free again


def test_a_document_another_stored_submission_carries_stays_indexed_when_the_first_is_undone(
    make_index: MakeIndex,
) -> None:
    """Practice p-1 stores a document twice (the same bytes in two submissions; a forward), then the first
    submission is undone (moving it into place failed): the second is still stored, so the document stays
    indexed, now held through the second, and another practice cannot claim its uniqueId with other bytes."""
    index = make_index()
    document = IndexedDocument("2.25.5.1", SHA_A, 10)
    assert index.record(_submission("2.25.5", practice="p-1"), [document]) is None
    assert index.record(_submission("2.25.6", practice="p-2"), [document]) is None  # same bytes, p-2 too
    assert index.record(_submission("2.25.7", practice="p-1"), [document]) is None
    assert index.forget("2.25.5", "stage-2.25.5-rx-1")
    assert index.document("2.25.5.1") == document
    other = index.record(_submission("2.25.8", practice="p-3"), [IndexedDocument("2.25.5.1", SHA_B, 99)])
    # held now by the earliest submission still stored that carries it: 2.25.6, of practice p-2
    assert other == IndexConflict(ConflictKind.DOCUMENT_ELSEWHERE, "2.25.5.1", "p-2")
    assert index.forget("2.25.6", "stage-2.25.6-rx-1")
    mine = index.record(_submission("2.25.9", practice="p-1"), [IndexedDocument("2.25.5.1", SHA_B, 10)])
    assert mine == IndexConflict(ConflictKind.DOCUMENT_HASH, "2.25.5.1", "p-1")  # 2.25.7 of p-1 holds it
    assert index.forget("2.25.7", "stage-2.25.7-rx-1")
    assert index.document("2.25.5.1") is None  # no stored submission carries it any more


def test_relocate_records_the_directory_actually_used(make_index: MakeIndex) -> None:
    index = make_index()
    assert index.record(_submission("2.25.1"), []) is None
    index.relocate("2.25.1", "stage-2.25.1-rx-1", "2026-01-01/2.25.1-0badcafe")
    recorded = index.submission("2.25.1")
    assert recorded is not None and recorded.path == "2026-01-01/2.25.1-0badcafe"


def test_simultaneous_copies_at_several_receivers_are_recorded_once(make_index: MakeIndex) -> None:
    """20 copies of one submission at 4 receivers, released together, 5 rounds: exactly one is recorded
    each time and every other copy is told "duplicate"."""
    receivers = [make_index() for _ in range(4)]
    for round_ in range(5):
        uid = f"2.25.7{round_}"

        def copy(n: int, uid: str = uid) -> IndexConflict | None:
            submission = _submission(uid, receiver=f"rx-{n}")
            return receivers[n % len(receivers)].record(submission, [IndexedDocument(f"{uid}.1", SHA_A, 3)])

        outcomes = run_together(20, copy)
        assert outcomes.count(None) == 1
        assert all(o is None or o.kind is ConflictKind.DUPLICATE for o in outcomes)


def test_overlapping_documents_in_opposite_orders_do_not_deadlock(
    make_index: MakeIndex, caplog: pytest.LogCaptureFixture
) -> None:
    """Two submissions re-registering the same two documents, listed in opposite orders, at the same moment:
    rows are inserted in one order, so neither waits for the other forever. PostgreSQL would detect the
    deadlock and abort one, which the retry would then hide: so no recording may have been run again."""
    first, second = make_index(), make_index()
    caplog.set_level(logging.WARNING, logger="xdr_edge.registry.submissions")
    for n in range(10):
        docs = [IndexedDocument(f"2.25.{n}.1", SHA_A, 1), IndexedDocument(f"2.25.{n}.2", SHA_B, 2)]
        runs = [(first, f"2.25.{n}.a", docs), (second, f"2.25.{n}.b", list(reversed(docs)))]

        def run(i: int, runs: list[tuple[SubmissionIndex, str, list[IndexedDocument]]] = runs) -> object:
            index, uid, documents = runs[i]
            return index.record(_submission(uid), documents)

        assert run_together(2, run) == [None, None]
    assert [r.getMessage() for r in caplog.records if "run again" in r.getMessage()] == []


class _Vanish(Exception):
    """Ends a transaction the way a receiver's vanishing ends it: rolled back."""


def test_a_recording_waits_at_most_the_lock_timeout_for_another_transaction(
    registry_url: str, make_index: MakeIndex
) -> None:
    """A receiver holds an uncommitted row of a SubmissionSet uniqueId (PostgreSQL; on SQLite, the write lock)
    and then hangs (a partitioned host): another receiver recording the same uniqueId is told "busy" after the
    lock timeout (UNAVAILABLE: its sender gets a 503 and retries), rather than waiting until TCP gives up.
    Once the holder is gone, the copy is recorded."""
    waiting = SubmissionIndex(open_database(registry_url, lock_timeout=0.5))
    holder = open_database(registry_url)
    outcome: list[object] = []

    def record() -> None:
        try:
            outcome.append(waiting.record(_submission("2.25.1", receiver="rx-2"), []))
        except StoreError as exc:
            outcome.append(exc)

    try:
        with pytest.raises(_Vanish), holder.transaction(Access.RECORD) as conn:
            held = _submission("2.25.1", receiver="rx-9")
            conn.execute(
                "INSERT INTO inbox_submissions (unique_id, practice_id, receiver, staged_as, path, stored_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (held.unique_id, held.practice_id, held.receiver, held.staged_as, held.path, "2026-01-01"),
            )
            thread = threading.Thread(target=record, daemon=True)
            thread.start()
            thread.join(60)
            assert not thread.is_alive(), "the recording still waits for the other transaction"
            raise _Vanish
        (error,) = outcome
        assert isinstance(error, StoreError) and error.code == UNAVAILABLE, error
        assert "busy" in str(error)
        assert waiting.record(_submission("2.25.1", receiver="rx-2"), []) is None
    finally:
        waiting.database.close()
        holder.close()


# -- a row undone between two statements of a recording (PostgreSQL's READ COMMITTED) ---------------------


@pytest.fixture
def rx_1_and_rx_2(postgres_url: str) -> Iterator[tuple[SubmissionIndex, SubmissionIndex]]:
    """Two receivers' indexes over one PostgreSQL database, their connections named test-rx-1 and test-rx-2."""
    with open_registry(postgres_url) as registry:
        registry.init(actor="test")
    first = SubmissionIndex(open_database(f"{postgres_url}&application_name=test-rx-1"))
    second = SubmissionIndex(open_database(f"{postgres_url}&application_name=test-rx-2"))
    yield first, second
    first.database.close()
    second.database.close()


def _assert_indexed_for_p_1(index: SubmissionIndex, document: IndexedDocument) -> None:
    """The document is in the index, held by practice p-1: another practice's other bytes are refused."""
    assert index.document(document.unique_id) == document
    foreign = index.record(
        _submission("2.25.99", practice="p-2"), [IndexedDocument(document.unique_id, SHA_B, 1)]
    )
    assert foreign == IndexConflict(ConflictKind.DOCUMENT_ELSEWHERE, document.unique_id, "p-1")


def _undo_before(
    monkeypatch: pytest.MonkeyPatch, index: SubmissionIndex, statement: str, undo: Callable[[], object]
) -> list[str]:
    """Run ``undo`` (another receiver's transaction) once, just before ``index``'s connection runs the first
    statement starting with ``statement``: the moment between a recording's colliding insert and its read of
    the row it collided with. Returns the statements seen, for the test to check the moment came."""
    with index.database.connection() as conn:
        engine = type(conn)
    original = engine.execute
    seen: list[str] = []

    def execute(self: Connection, sql: str, params: Any = ()) -> Any:
        seen.append(sql)
        if sql.startswith(statement) and seen.count(sql) == 1:
            undo()
        return original(self, sql, params)

    monkeypatch.setattr(engine, "execute", execute)
    return seen


def test_a_submission_set_undone_between_collision_and_read_is_recorded_not_refused(
    rx_1_and_rx_2: tuple[SubmissionIndex, SubmissionIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    """rx-1 recorded 2.25.1 and undoes it (its rename failed) just after rx-2's insert of the same uniqueId
    found the row: rx-2 must record it (the uniqueId is free), not refuse it as another practice's. PostgreSQL
    only: on SQLite the recording holds the write lock, so nothing can happen between its statements."""
    first, second = rx_1_and_rx_2
    assert first.record(_submission("2.25.1", receiver="rx-1"), []) is None
    seen = _undo_before(
        monkeypatch,
        second,
        "SELECT practice_id FROM inbox_submissions",
        lambda: first.forget("2.25.1", "stage-2.25.1-rx-1") or pytest.fail("nothing undone"),
    )
    assert second.record(_submission("2.25.1", receiver="rx-2"), []) is None
    assert any(sql.startswith("SELECT practice_id FROM inbox_submissions") for sql in seen)
    recorded = second.submission("2.25.1")
    assert recorded is not None and recorded.receiver == "rx-2"


def test_a_document_undone_between_collision_and_read_is_indexed_with_the_new_submission(
    rx_1_and_rx_2: tuple[SubmissionIndex, SubmissionIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same moment for a DocumentEntry: rx-2 re-registers a document whose only submission rx-1 undoes
    between rx-2's colliding insert and its read of the row. The document must be indexed with rx-2's
    submission (before, it was silently left out of the index, its uniqueId free for other bytes)."""
    first, second = rx_1_and_rx_2
    document = IndexedDocument("2.25.1.1", SHA_A, 10)
    assert first.record(_submission("2.25.1", receiver="rx-1"), [document]) is None
    seen = _undo_before(
        monkeypatch,
        second,
        "SELECT sha1, size, practice_id FROM inbox_documents",
        lambda: first.forget("2.25.1", "stage-2.25.1-rx-1") or pytest.fail("nothing undone"),
    )
    assert second.record(_submission("2.25.2", receiver="rx-2"), [document]) is None
    assert any(sql.startswith("SELECT sha1, size, practice_id FROM inbox_documents") for sql in seen)
    _assert_indexed_for_p_1(second, document)


# -- undoing a submission while another re-registers its document (PostgreSQL: rows locked) ---------------


class _Pause:
    """Holds the thread named ``who`` just after its connection ran the first statement starting with
    ``statement``, inside its transaction, until :meth:`release`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, database_url: str, who: str, statement: str) -> None:
        self.reached = threading.Event()
        self._go = threading.Event()
        database = open_database(database_url)
        with database.connection() as conn:
            engine = type(conn)
        database.close()
        original = engine.execute

        def execute(conn: Connection, sql: str, params: Any = ()) -> Any:
            result = original(conn, sql, params)
            if (
                threading.current_thread().name == who
                and sql.startswith(statement)
                and not self.reached.is_set()
            ):
                self.reached.set()
                self._go.wait(60)
            return result

        monkeypatch.setattr(engine, "execute", execute)

    def release(self) -> None:
        self._go.set()


def _wait_for_a_lock(admin_dsn: str, application: str) -> None:
    """Poll until the backend of ``application`` waits for a lock (it blocks on the paused transaction)."""
    import psycopg

    deadline = time.monotonic() + 60
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        while time.monotonic() < deadline:
            row = admin.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE application_name = %s AND state = 'active'",
                (application,),
            ).fetchone()
            if row is not None and row[0] == "Lock":
                return
            time.sleep(0.02)
    pytest.fail(f"{application} never waited for a lock")


def _in_thread(name: str, work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def run() -> None:
        try:
            result.append(work())
        except Exception as exc:  # checked by the test
            result.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread, result


@pytest.mark.parametrize("first_to_lock", ["recording", "undoing"])
def test_undoing_a_submission_while_another_re_registers_its_document_keeps_the_document_indexed(
    postgres_dsn: str,
    postgres_url: str,
    rx_1_and_rx_2: tuple[SubmissionIndex, SubmissionIndex],
    monkeypatch: pytest.MonkeyPatch,
    first_to_lock: str,
) -> None:
    """rx-2 records a submission re-registering the only document of rx-1's submission while rx-1 undoes its
    own. Whichever transaction reaches the document row first, the other waits for it, and the document
    stays indexed with rx-2's stored submission: the undo hands the row over (rx-2 first), or rx-2 finds the
    row gone and records it anew (rx-1 first). Held halfway by a pause inside the first transaction."""
    first, second = rx_1_and_rx_2
    document = IndexedDocument("2.25.1.1", SHA_A, 10)
    assert first.record(_submission("2.25.1", receiver="rx-1"), [document]) is None

    def record() -> object:
        return second.record(_submission("2.25.2", receiver="rx-2"), [document])

    def undo() -> object:
        return first.forget("2.25.1", "stage-2.25.1-rx-1")

    # The first transaction is held at its pause before the other one starts, so which one locks the document
    # row first never depends on how the threads happen to be scheduled.
    if first_to_lock == "recording":
        pause = _Pause(monkeypatch, postgres_url, "rx-2", "INSERT INTO inbox_submission_documents")
        recording, recorded = _in_thread("rx-2", record)
        assert pause.reached.wait(60)
        undoing, undone = _in_thread("rx-1", undo)
        _wait_for_a_lock(postgres_dsn, "test-rx-1")
    else:
        pause = _Pause(monkeypatch, postgres_url, "rx-1", "SELECT unique_id FROM inbox_documents")
        undoing, undone = _in_thread("rx-1", undo)
        assert pause.reached.wait(60)
        recording, recorded = _in_thread("rx-2", record)
        _wait_for_a_lock(postgres_dsn, "test-rx-2")
    pause.release()
    for thread in (recording, undoing):
        thread.join(60)
        assert not thread.is_alive()
    assert recorded == [None] and undone == [True]
    assert not second.contains("2.25.1") and second.contains("2.25.2")
    _assert_indexed_for_p_1(second, document)


def test_a_batch_records_each_submission_in_its_own_savepoint(make_index: MakeIndex) -> None:
    """Several submissions in one transaction (the inbox's group commit): one that conflicts is rolled back
    alone, including the rows it inserted before its conflict was found; the others are recorded; a second copy
    in the same batch is a duplicate of the first."""
    index = make_index()
    assert (
        index.record(_submission("2.25.50", practice="p-2"), [IndexedDocument("2.25.50.1", SHA_A, 1)]) is None
    )
    outcomes = index.record_many(
        [
            (_submission("2.25.51"), [IndexedDocument("2.25.51.1", SHA_A, 1)]),
            # its SubmissionSet row goes in first; its document is p-2's with other bytes: all of it rolled back
            (
                _submission("2.25.52"),
                [IndexedDocument("2.25.52.1", SHA_B, 2), IndexedDocument("2.25.50.1", SHA_B, 9)],
            ),
            (_submission("2.25.53"), []),
            (_submission("2.25.51", receiver="rx-2"), []),
        ]
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert outcomes[1] == IndexConflict(ConflictKind.DOCUMENT_ELSEWHERE, "2.25.50.1", "p-2")
    assert outcomes[3] == IndexConflict(ConflictKind.DUPLICATE, "2.25.51", "p-1")
    assert index.contains("2.25.51") and index.contains("2.25.53")
    assert not index.contains("2.25.52") and index.document("2.25.52.1") is None
    assert make_index().record_many([]) == []
