"""The inbox index in the registry database (xdr_edge.registry.submissions), one suite for SQLite and PostgreSQL.

Several ``SubmissionIndex`` objects over their own connections to one database stand for several receivers (or
processes): what one records, every other sees; two recording the same uniqueId at the same moment never both
succeed, because the database's primary key decides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from tests.concurrency import run_together
from xdr_edge.registry import (
    ConflictKind,
    IndexConflict,
    IndexedDocument,
    IndexedSubmission,
    SubmissionIndex,
    open_database,
    open_registry,
)

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
    assert index.record(_submission("2.25.1"), [IndexedDocument("2.25.1.2", SHA_A, 1)]) is None  # free again


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


def test_overlapping_documents_in_opposite_orders_do_not_deadlock(make_index: MakeIndex) -> None:
    """Two submissions re-registering the same two documents, listed in opposite orders, at the same moment:
    rows are inserted in one order, so neither waits for the other forever (PostgreSQL would abort one)."""
    first, second = make_index(), make_index()
    for n in range(10):
        docs = [IndexedDocument(f"2.25.{n}.1", SHA_A, 1), IndexedDocument(f"2.25.{n}.2", SHA_B, 2)]
        runs = [(first, f"2.25.{n}.a", docs), (second, f"2.25.{n}.b", list(reversed(docs)))]

        def run(i: int, runs: list[tuple[SubmissionIndex, str, list[IndexedDocument]]] = runs) -> object:
            index, uid, documents = runs[i]
            return index.record(_submission(uid), documents)

        assert run_together(2, run) == [None, None]


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
