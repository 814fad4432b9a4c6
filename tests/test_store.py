"""The inbox (xdr_edge.receiver.store): whole-or-nothing storage, the index in the registry database, recovery of
interrupted writes, duplicates, several receivers. Every test runs on SQLite and on PostgreSQL.

Real files in a temporary directory, a real database. A failure while writing is produced with a document source
that breaks midway, the way a disk error or a vanished spool file would; a crash is produced by interrupting a
store at a chosen step (an exception that is not an error: what the process leaves behind is the same).
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.concurrency import run_together
from tests.conftest import OpenInbox
from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import ConfigurationError, StoreError
from xdr_edge.protocol.metadata import write_submit_objects
from xdr_edge.protocol.model import Document, Submission
from xdr_edge.protocol.wire import build_request, parse_request
from xdr_edge.receiver.store import DocumentConflict, Inbox, StoredSubmission, UniqueIdOwnedElsewhere
from xdr_edge.registry import SubmissionIndex

SENDER = "dr.smith@direct.practice-a.org"
RECIPIENT = "inbox@direct.hisp.example"


class BreakingFile(io.BytesIO):
    """A seekable document source that fails after ``good`` bytes have been read."""

    def __init__(self, data: bytes, good: int, error: BaseException) -> None:
        super().__init__(data)
        self._good = good
        self._error = error

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= self._good:
            raise self._error
        limit = self._good - self.tell()
        return super().read(limit if size is None or size < 0 else min(size, limit))


class Crash(BaseException):
    """Stands for the process dying at that point: nothing below it runs, nothing is cleaned up."""


@pytest.fixture
def inbox(open_inbox: OpenInbox) -> Inbox:
    return open_inbox()


def _submission(*documents: Document) -> Submission:
    return compose(
        list(documents) or [Document.from_bytes(sample_ccda(), name="ccd.xml")],
        sender=SENDER,
        recipients=[RECIPIENT],
    )


def _store(
    inbox: Inbox, submission: Submission, practice: str | None = "practice-a"
) -> StoredSubmission | None:
    return inbox.store(
        submission,
        metadata=write_submit_objects(submission),
        package=None,
        summary={"practice": practice, "submission_set_unique_id": submission.submission_set.unique_id},
    )


def _final_dirs(inbox: Inbox) -> list[Path]:
    return [p for p in inbox.root.glob("*/*") if not p.parent.name.startswith(".")]


def _staged(inbox: Inbox) -> list[Path]:
    return list(inbox.staging_dir.iterdir())


def _with_document_uid(submission: Submission, unique_id: str) -> Submission:
    entry = dataclasses.replace(submission.document_entries[0], unique_id=unique_id)
    return dataclasses.replace(submission, document_entries=(entry,))


def _with_submission_uid(submission: Submission, unique_id: str) -> Submission:
    return dataclasses.replace(
        submission, submission_set=dataclasses.replace(submission.submission_set, unique_id=unique_id)
    )


# -- one receiver ----------------------------------------------------------------------------------------


def test_store_writes_one_complete_directory(inbox: Inbox) -> None:
    pdf = sample_pdf()
    submission = _submission(
        Document.from_bytes(sample_ccda(), name="ccd.xml"), Document.from_bytes(pdf, "r.pdf")
    )
    stored = _store(inbox, submission)
    assert stored is not None
    assert _final_dirs(inbox) == [stored.directory]
    assert stored.directory.name == submission.submission_set.unique_id
    assert [p.read_bytes() for p in stored.document_paths] == [sample_ccda(), pdf]
    assert [p.suffix for p in stored.document_paths] == [".xml", ".pdf"]
    summary = json.loads((stored.directory / "summary.json").read_text())
    assert summary["practice"] == "practice-a"
    assert [d["sha1"] for d in summary["documents"]] == [e.hash for e in submission.document_entries]
    assert [d["size"] for d in summary["documents"]] == [len(sample_ccda()), len(pdf)]
    assert (stored.directory / "metadata.xml").read_bytes().startswith(b"<?xml")
    assert _staged(inbox) == []
    recorded = inbox.index.submission(submission.submission_set.unique_id)
    assert recorded is not None and recorded.receiver == "rx-1" and recorded.practice_id == "practice-a"
    assert inbox.root / recorded.path == stored.directory  # the index holds the path relative to the inbox
    entry = submission.document_entries[1]
    assert inbox.index.document(entry.unique_id) is not None


@pytest.mark.parametrize(
    ("error", "raised"),
    [(OSError(5, "Input/output error"), StoreError), (RuntimeError("source vanished"), RuntimeError)],
    ids=["os-error", "other-error"],
)
def test_failure_midway_leaves_nothing_and_a_retry_is_accepted(
    inbox: Inbox, error: BaseException, raised: type[BaseException]
) -> None:
    pdf = sample_pdf()
    good = Document.from_bytes(sample_ccda(), name="ccd.xml")
    # compose reads the documents to hash them: give it the intact bytes, then swap in the breaking source.
    submission = _submission(good, Document.from_bytes(pdf, name="r.pdf"))
    entries = list(submission.document_entries)
    breaking = Document.from_file(BreakingFile(pdf, len(pdf) // 2, error), name="r.pdf")
    broken = dataclasses.replace(
        submission, document_entries=(entries[0], dataclasses.replace(entries[1], document=breaking))
    )
    with pytest.raises(raised):
        _store(inbox, broken)
    assert _final_dirs(inbox) == [] and _staged(inbox) == []
    assert not inbox.contains(submission.submission_set.unique_id)
    assert inbox.index.document(entries[0].unique_id) is None  # nothing recorded before the files were whole

    stored = _store(inbox, submission)  # the sender's retry: same uniqueIds, now intact
    assert stored is not None
    assert [p.read_bytes() for p in stored.document_paths] == [sample_ccda(), pdf]


def test_same_unique_id_is_stored_once(inbox: Inbox) -> None:
    submission = _submission()
    assert _store(inbox, submission) is not None
    assert _store(inbox, submission) is None
    assert len(_final_dirs(inbox)) == 1
    assert _staged(inbox) == []  # the duplicate's staging copy was removed


def test_concurrent_copies_are_stored_once_and_the_others_are_duplicates(inbox: Inbox) -> None:
    submission = _submission(Document.from_bytes(b"%PDF-1.4\n" + b"z" * 2_000_000, name="big.pdf"))
    barrier = threading.Barrier(4)
    results: list[StoredSubmission | None] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        outcome = _store(inbox, submission)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 4
    assert sum(isinstance(r, StoredSubmission) for r in results) == 1
    assert results.count(None) == 3  # answered at once: the database decided, nobody waits for "busy"
    assert len(_final_dirs(inbox)) == 1 and _staged(inbox) == []


def test_a_copy_arriving_while_the_first_fails_is_stored(inbox: Inbox) -> None:
    """The first copy is still being written when the second arrives, then fails (disk full): the second was
    never told "duplicate" (which would have lost the submission); it is stored itself."""
    submission = _submission()
    first_is_writing = threading.Event()
    release = threading.Event()
    outcome: list[object] = []
    original = Inbox._write

    def slow_failing_write(self: Inbox, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "first":
            first_is_writing.set()
            release.wait(30)
            raise OSError(28, "No space left on device")
        return original(self, *args, **kwargs)

    def first() -> None:
        try:
            _store(inbox, submission)
        except StoreError as exc:
            outcome.append(exc)

    Inbox._write = slow_failing_write  # type: ignore[method-assign]
    try:
        thread = threading.Thread(target=first, name="first")
        thread.start()
        assert first_is_writing.wait(30)
        second = _store(inbox, submission)
        release.set()
        thread.join(30)
    finally:
        Inbox._write = original  # type: ignore[method-assign]
    assert second is not None and second.directory.is_dir()
    assert len(outcome) == 1 and isinstance(outcome[0], StoreError)
    assert _store(inbox, submission) is None  # from now on a duplicate
    assert _staged(inbox) == []


def test_unsafe_unique_id_stays_inside_the_inbox(inbox: Inbox) -> None:
    evil = _with_submission_uid(_submission(), "../../etc/x")
    stored = _store(inbox, evil)
    assert stored is not None
    assert stored.directory.resolve().is_relative_to(inbox.root.resolve())
    assert stored.directory.parent.parent == inbox.root
    assert inbox.contains("../../etc/x")


def test_documents_from_the_mtom_spool_are_moved_not_copied(inbox: Inbox) -> None:
    submission = _submission(Document.from_bytes(sample_pdf(), name="r.pdf"))
    request = build_request(submission, endpoint="https://hisp.invalid/xdr")
    body = b"".join(request.body)
    with parse_request(request.content_type, io.BytesIO(body), spool_dir=inbox.spool_dir) as incoming:
        assert incoming.submission is not None and incoming.package is not None
        (part,) = incoming.package.parts.values()
        spooled = part.path
        assert spooled.parent == inbox.spool_dir
        assert incoming.envelope.submit_objects is not None
        stored = inbox.store(
            incoming.submission,
            metadata=incoming.envelope.submit_objects,
            package=incoming.package,
            summary={},
        )
    assert stored is not None
    assert not spooled.exists()
    assert list(inbox.spool_dir.iterdir()) == []
    assert [p.read_bytes() for p in stored.document_paths] == [sample_pdf()]


def test_document_unique_id_reused_with_other_bytes_is_refused_and_same_bytes_accepted(inbox: Inbox) -> None:
    first = _submission(Document.from_bytes(sample_ccda(), name="ccd.xml"))
    assert _store(inbox, first) is not None
    uid = first.document_entries[0].unique_id

    other = _with_document_uid(_submission(Document.from_bytes(sample_pdf(), name="r.pdf")), uid)
    with pytest.raises(DocumentConflict) as info:
        _store(inbox, other)
    assert info.value.error_code == "XDSNonIdenticalHash"
    assert info.value.unique_id == uid
    assert not inbox.contains(other.submission_set.unique_id)
    assert len(_final_dirs(inbox)) == 1 and _staged(inbox) == []

    again = _with_document_uid(_submission(Document.from_bytes(sample_ccda(), name="ccd.xml")), uid)
    assert _store(inbox, again) is not None
    assert len(_final_dirs(inbox)) == 2


def test_concurrent_identical_re_registrations_never_conflict(inbox: Inbox) -> None:
    """Two submissions re-registering one DocumentEntry uniqueId with the same bytes at the same moment."""
    ccda = Document.from_bytes(sample_ccda(), name="ccd.xml")
    outcomes: list[object] = []
    lock = threading.Lock()

    def run(barrier: threading.Barrier, submission: Submission) -> None:
        barrier.wait()
        try:
            outcome: object = _store(inbox, submission)
        except DocumentConflict as exc:
            outcome = exc.error_code
        with lock:
            outcomes.append(outcome)

    for _ in range(40):
        first = _submission(ccda)
        second = _with_document_uid(_submission(ccda), first.document_entries[0].unique_id)
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=run, args=(barrier, s)) for s in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert len(outcomes) == 80
    assert [o for o in outcomes if not isinstance(o, StoredSubmission)] == []


def test_unique_ids_with_the_same_readable_name_are_kept_apart(inbox: Inbox) -> None:
    colon = _with_document_uid(_submission(), "1.2.840.99999.1^ref:7")
    other = Document.from_bytes(sample_ccda() + b"\n<!-- different -->", name="ccd.xml")
    slash = _with_document_uid(_submission(other), "1.2.840.99999.1^ref/7")
    assert _store(inbox, colon) is not None
    assert _store(inbox, slash) is not None  # a different uniqueId, so a different document: no conflict

    ss_colon = _store(inbox, _with_submission_uid(_submission(), "2.25.1^a:b"))
    ss_slash = _store(inbox, _with_submission_uid(_submission(), "2.25.1^a/b"))
    assert ss_colon is not None and ss_slash is not None
    assert ss_colon.directory != ss_slash.directory
    assert ss_colon.directory.name == "2.25.1_a_b"
    assert ss_slash.directory.name.startswith("2.25.1_a_b-")
    assert inbox.contains("2.25.1^a:b") and inbox.contains("2.25.1^a/b")
    assert not inbox.contains("2.25.1_a_b")


def test_a_name_taken_between_recording_and_moving_is_replaced_and_recorded(inbox: Inbox) -> None:
    """Another receiver of a shared inbox moved a submission with the same readable name into place in the
    moment between our recording and our rename: ours gets another name, and the index says which."""
    submission = _with_submission_uid(_submission(), "2.25.4^x")
    original = inbox.index.record_many

    def record_then_lose_the_name(items: Any) -> Any:
        outcome = original(items)
        for record, _ in items:
            taken = inbox.root / record.path
            taken.mkdir(parents=True)
            (taken / "summary.json").write_text("{}")  # someone else's submission
        return outcome

    inbox.index.record_many = record_then_lose_the_name  # type: ignore[method-assign]
    stored = _store(inbox, submission)
    assert stored is not None and stored.directory.name.startswith("2.25.4_x-")
    recorded = inbox.index.submission("2.25.4^x")
    assert recorded is not None and inbox.root / recorded.path == stored.directory


def test_a_failed_rename_after_recording_is_undone_so_the_retry_is_accepted(
    inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    submission = _submission()
    real_rename = os.rename

    def failing_rename(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(StoreError, match="could not store"):
        _store(inbox, submission)
    monkeypatch.setattr(os, "rename", real_rename)
    assert not inbox.contains(submission.submission_set.unique_id) and _staged(inbox) == []
    assert _store(inbox, submission) is not None


def test_a_commit_whose_answer_was_lost_is_settled_by_asking_the_database(inbox: Inbox) -> None:
    """The database committed the record but the answer never came back (a connection lost while committing):
    the inbox asks the database, finds its record and finishes the store, instead of deleting a submission
    the index says is stored."""
    submission = _submission()
    original = inbox.index.record_many

    def committed_but_lost(items: Any) -> Any:
        original(items)
        raise StoreError("connection lost while committing", code="store-unavailable")

    inbox.index.record_many = committed_but_lost  # type: ignore[method-assign]
    stored = _store(inbox, submission)
    assert stored is not None and stored.directory.is_dir() and _staged(inbox) == []
    inbox.index.record_many = original  # type: ignore[method-assign]
    assert _store(inbox, submission) is None


# -- ownership -----------------------------------------------------------------------------------------


def test_submission_set_unique_id_of_another_practice_is_refused_not_a_duplicate(inbox: Inbox) -> None:
    """Practice B sending A's SubmissionSet uniqueId first must not make A's submission look delivered."""
    own = _submission()
    uid = own.submission_set.unique_id
    squat = _with_submission_uid(_submission(Document.from_bytes(sample_pdf(), name="r.pdf")), uid)
    assert _store(inbox, squat, "practice-b") is not None

    with pytest.raises(UniqueIdOwnedElsewhere) as info:
        _store(inbox, own, "practice-a")
    assert info.value.error_code == "XDSRepositoryError"
    assert info.value.unique_id == uid
    assert info.value.submission_set
    assert info.value.location == "RegistryPackage/ExternalIdentifier[uniqueId]"
    assert "another sender" in info.value.code_context and uid in info.value.code_context
    assert "practice-b" not in str(info.value)
    assert len(_final_dirs(inbox)) == 1
    # A's documents were not recorded: they are free for A's next submission
    assert _store(inbox, _with_submission_uid(own, uid + ".1"), "practice-a") is not None
    # the holder's own resend is still an ordinary duplicate
    assert _store(inbox, squat, "practice-b") is None


def test_document_unique_id_of_another_practice(inbox: Inbox) -> None:
    own = _submission()
    doc_uid = own.document_entries[0].unique_id
    other = Document.from_bytes(sample_ccda() + b"\n<!-- different -->", name="ccd.xml")
    assert _store(inbox, _with_document_uid(_submission(other), doc_uid), "practice-b") is not None

    with pytest.raises(UniqueIdOwnedElsewhere) as info:
        _store(inbox, own, "practice-a")
    assert info.value.error_code == "XDSRepositoryError"
    assert info.value.unique_id == doc_uid
    assert not info.value.submission_set
    assert info.value.location == "ExtrinsicObject/ExternalIdentifier[uniqueId]"
    assert "practice-b" not in str(info.value)
    assert not inbox.contains(own.submission_set.unique_id)  # nothing of A's submission was kept

    # identical bytes from another practice: a forwarded document, accepted
    forwarded = _with_document_uid(_submission(other), doc_uid)
    assert _store(inbox, forwarded, "practice-c") is not None
    assert len(_final_dirs(inbox)) == 2


def test_same_practice_keeps_duplicate_and_conflict_answers(inbox: Inbox) -> None:
    first = _submission()
    assert _store(inbox, first) is not None
    assert _store(inbox, first) is None
    changed = _with_document_uid(
        _submission(Document.from_bytes(sample_pdf(), name="r.pdf")), first.document_entries[0].unique_id
    )
    with pytest.raises(DocumentConflict) as info:
        _store(inbox, changed)
    assert not isinstance(info.value, UniqueIdOwnedElsewhere)
    assert info.value.error_code == "XDSNonIdenticalHash"
    assert info.value.code_context == first.document_entries[0].unique_id  # ITI TF-3 4.2.4, ebRS 3.0
    assert info.value.location == "ExtrinsicObject/ExternalIdentifier[uniqueId]"


# -- recovery ------------------------------------------------------------------------------------------


def _crash_before(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Make the next store die just before ``step`` ("record": after writing; "move": after recording)."""

    def die(*args: Any, **kwargs: Any) -> Any:
        raise Crash(step)

    if step == "record":
        monkeypatch.setattr(SubmissionIndex, "record_many", die)
    else:
        monkeypatch.setattr(Inbox, "_rename_into_place", die)


def _crash_storing(monkeypatch: pytest.MonkeyPatch, inbox: Inbox, submission: Submission, step: str) -> None:
    """Store ``submission`` in ``inbox``, dying just before ``step`` as a killed process would."""
    with monkeypatch.context() as patch:
        _crash_before(patch, step)
        with pytest.raises(Crash):
            _store(inbox, submission)


def test_recovery_moves_a_recorded_submission_into_place_and_removes_an_unrecorded_one(
    open_inbox: OpenInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = open_inbox()
    recorded, unrecorded = _submission(), _submission(Document.from_bytes(sample_pdf(), name="r.pdf"))
    _crash_storing(monkeypatch, inbox, recorded, "move")
    _crash_storing(monkeypatch, inbox, unrecorded, "record")
    (inbox.spool_dir / "xdr-mtom-1.part").write_bytes(b"half a part")
    assert len(_staged(inbox)) == 2 and _final_dirs(inbox) == []
    # meanwhile a copy of the recorded one is a duplicate: it was committed, the sender may rely on that
    assert _store(inbox, recorded) is None

    restarted = open_inbox()  # the same receiver, started again
    recovery = restarted.recover()
    assert (recovery.removed, recovery.completed) == (2, 1)  # the spooled part and the unrecorded staging
    (directory,) = _final_dirs(restarted)
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["submission_set_unique_id"] == recorded.submission_set.unique_id
    assert _staged(restarted) == [] and list(restarted.spool_dir.iterdir()) == []
    assert _store(restarted, unrecorded) is not None  # the sender's retry: neither a duplicate nor a conflict
    assert restarted.recover() == type(recovery)(0, 0)


def test_recovery_touches_only_its_own_working_area(
    open_inbox: OpenInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two receivers sharing one inbox directory: one restarting must not take the other's work in progress
    (its staging directory, its spooled parts) for leftovers."""
    first, second = open_inbox(receiver="rx-1"), open_inbox(receiver="rx-2")
    _crash_storing(monkeypatch, second, _submission(), "record")
    (second.spool_dir / "xdr-mtom-7.part").write_bytes(b"arriving")
    assert first.recover().removed == 0
    assert len(_staged(second)) == 1 and len(list(second.spool_dir.iterdir())) == 1


def test_two_running_receivers_may_not_share_a_name_on_one_inbox(open_inbox: OpenInbox) -> None:
    running = open_inbox(receiver="rx-1")
    running.recover()
    with pytest.raises(ConfigurationError, match="another receiver named 'rx-1' is running"):
        open_inbox(receiver="rx-1").recover()
    running.close()
    open_inbox(receiver="rx-1").recover()  # once it stopped, the name is free


def test_a_bad_receiver_name_is_refused(open_inbox: OpenInbox) -> None:
    with pytest.raises(ConfigurationError, match=r"receiver name '\.\./x' is not usable"):
        open_inbox(receiver="../x")


def test_entries_of_earlier_layouts_are_left_alone(inbox: Inbox) -> None:
    old = [inbox.root / ".ids" / "2.25.111", inbox.root / ".tmp" / "abc", inbox.root / ".spool"]
    for path in old:
        path.mkdir(parents=True)
    (inbox.root / ".docs").mkdir()
    (inbox.root / ".docs" / ("ab" * 32)).write_text('{"unique_id": "x"}')
    assert inbox.recover().removed == 0
    assert all(p.is_dir() for p in old) and (inbox.root / ".docs" / ("ab" * 32)).is_file()
    assert _store(inbox, _submission()) is not None


def test_probe_writes_in_the_working_area(inbox: Inbox) -> None:
    inbox.probe()
    assert [p.name for p in inbox.work_dir.iterdir() if p.name.startswith("probe-")] == []
    for child in inbox.work_dir.iterdir():
        if child.is_dir():
            child.rmdir()
    inbox.work_dir.rmdir()
    inbox.work_dir.write_text("not a folder any more")  # the working area unusable (root ignores modes)
    with pytest.raises(OSError):
        inbox.probe()


# -- several receivers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["shared inbox", "inbox per receiver"])
def test_receivers_sharing_the_database_store_a_submission_once(
    open_inbox: OpenInbox, tmp_path: Path, layout: str
) -> None:
    """Two receivers (their own connections, names and working areas; one inbox directory or one each):
    a submission stored through one is a duplicate through the other, and 20 simultaneous copies spread over
    both are stored once."""
    shared = layout == "shared inbox"
    first = open_inbox(tmp_path / "inbox", receiver="rx-1")
    second = open_inbox(tmp_path / ("inbox" if shared else "inbox-2"), receiver="rx-2")
    for receiver in (first, second):
        receiver.recover()

    submission = _submission()
    assert _store(first, submission) is not None
    assert _store(second, submission) is None
    other_practice = _with_document_uid(
        _submission(Document.from_bytes(sample_pdf(), name="r.pdf")), submission.document_entries[0].unique_id
    )
    with pytest.raises(UniqueIdOwnedElsewhere):
        _store(second, other_practice, "practice-b")

    for round_ in range(3):
        copy = _submission(Document.from_bytes(sample_pdf() + bytes([round_]), name="r.pdf"))

        def send(n: int, copy: Submission = copy) -> StoredSubmission | None:
            return _store(first if n % 2 else second, copy)

        results = run_together(20, send)
        assert sum(isinstance(r, StoredSubmission) for r in results) == 1, results
        assert results.count(None) == 19
    stored = {d.resolve() for r in (first, second) for d in _final_dirs(r)}
    assert len(stored) == 4
    assert _staged(first) == [] and _staged(second) == []


def test_concurrent_stores_share_index_commits(inbox: Inbox) -> None:
    """Requests that finish storing while another's commit runs are recorded together: every one is stored
    and indexed, with fewer index transactions than submissions; a copy sent twice at once is stored once."""
    original = inbox.index.record_many
    batches: list[int] = []

    def slow_record_many(items: Any) -> Any:
        batches.append(len(items))
        threading.Event().wait(0.05)  # a slow disk: others arrive meanwhile
        return original(items)

    inbox.index.record_many = slow_record_many  # type: ignore[method-assign]
    submissions = [
        _submission(Document.from_bytes(sample_pdf() + bytes([n]), name="d.pdf")) for n in range(12)
    ]
    twice = submissions[0]
    results = run_together(14, lambda n: _store(inbox, submissions[n] if n < 12 else twice))
    stored = [r for r in results if r is not None]
    assert len(stored) == 12
    assert results.count(None) == 2  # the two extra copies of the first submission: duplicates
    assert all(s.directory.is_dir() for s in stored)
    assert all(inbox.contains(s.submission_set.unique_id) for s in submissions)
    assert sum(batches) == 14 and len(batches) < 14
    assert _staged(inbox) == []
