"""The inbox (xdr_edge.receiver.store): whole-or-nothing storage, recovery of interrupted writes, duplicates.

Real files in a temporary directory. A failure while writing is produced with a document source that breaks
midway, the way a disk error or a vanished spool file would.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import StoreError
from xdr_edge.protocol.metadata import write_submit_objects
from xdr_edge.protocol.model import Document, Submission
from xdr_edge.protocol.wire import build_request, parse_request
from xdr_edge.receiver.store import (
    DocumentConflict,
    Inbox,
    StoredSubmission,
    SubmissionInProgress,
    UniqueIdOwnedElsewhere,
)

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


def _submission(*documents: Document) -> Submission:
    return compose(
        list(documents) or [Document.from_bytes(sample_ccda(), name="ccd.xml")],
        sender=SENDER,
        recipients=[RECIPIENT],
    )


def _store(inbox: Inbox, submission: Submission) -> StoredSubmission | None:
    return inbox.store(
        submission,
        metadata=write_submit_objects(submission),
        package=None,
        summary={"practice": "practice-a", "submission_set_unique_id": submission.submission_set.unique_id},
    )


def _final_dirs(inbox: Inbox) -> list[Path]:
    return [p for p in inbox.root.glob("*/*") if not p.parent.name.startswith(".")]


def _assert_empty(inbox: Inbox, submission: Submission) -> None:
    assert _final_dirs(inbox) == []
    assert list((inbox.root / ".tmp").iterdir()) == []
    assert not inbox.contains(submission.submission_set.unique_id)


def test_store_writes_one_complete_directory(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
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
    assert list((inbox.root / ".tmp").iterdir()) == []
    assert inbox.contains(submission.submission_set.unique_id)


@pytest.mark.parametrize(
    ("error", "raised"),
    [(OSError(5, "Input/output error"), StoreError), (RuntimeError("source vanished"), RuntimeError)],
    ids=["os-error", "other-error"],
)
def test_failure_midway_leaves_nothing_and_a_retry_is_accepted(
    tmp_path: Path, error: BaseException, raised: type[BaseException]
) -> None:
    inbox = Inbox(tmp_path / "inbox")
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
    _assert_empty(inbox, submission)
    assert list((inbox.root / ".ids").iterdir()) == []

    stored = _store(inbox, submission)  # the sender's retry: same uniqueIds, now intact
    assert stored is not None
    assert [p.read_bytes() for p in stored.document_paths] == [sample_ccda(), pdf]


def test_same_unique_id_is_stored_once(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
    submission = _submission()
    assert _store(inbox, submission) is not None
    assert _store(inbox, submission) is None
    assert len(_final_dirs(inbox)) == 1


def test_concurrent_duplicates_are_stored_once(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
    submission = _submission(Document.from_bytes(b"%PDF-1.4\n" + b"z" * 2_000_000, name="big.pdf"))
    barrier = threading.Barrier(4)
    results: list[StoredSubmission | str | None] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        outcome: StoredSubmission | str | None
        try:
            outcome = _store(inbox, submission)
        except SubmissionInProgress:
            outcome = "in progress"  # the first copy was not committed yet: "retry", never "duplicate"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 4
    assert sum(isinstance(r, StoredSubmission) for r in results) == 1
    assert all(isinstance(r, StoredSubmission) or r in (None, "in progress") for r in results)
    assert len(_final_dirs(inbox)) == 1
    assert _store(inbox, submission) is None  # once committed, a copy is a duplicate


def test_a_stored_submission_whose_record_was_left_unmarked_is_a_duplicate_not_busy_forever(
    tmp_path: Path,
) -> None:
    """The rename (the commit) succeeded but marking the index record failed (disk full at that moment): the
    directory's own summary proves it is stored, so copies are duplicates at once, not 503 until a restart."""
    inbox = Inbox(tmp_path / "inbox")
    submission = _submission()
    assert _store(inbox, submission) is not None
    uid = submission.submission_set.unique_id
    (record,) = [r for r in (inbox.root / ".ids").iterdir() if uid in r.read_text()]
    content = json.loads(record.read_text())
    record.write_text(json.dumps({**content, "stored": False}))  # the state a failed mark leaves on disk
    assert _store(inbox, submission) is None  # a duplicate
    assert json.loads(record.read_text())["stored"] is True  # and marked now
    assert len(_final_dirs(inbox)) == 1


def test_a_copy_arriving_while_the_first_is_not_committed_is_in_progress_not_a_duplicate(
    tmp_path: Path,
) -> None:
    """If the first copy then fails, a sender told "duplicate" would have lost its submission."""
    inbox = Inbox(tmp_path / "inbox")
    submission = _submission()
    first_is_writing = threading.Event()
    release = threading.Event()
    outcome: list[object] = []
    original = Inbox._write

    def slow_write(self: Inbox, *args: Any, **kwargs: Any) -> Any:
        first_is_writing.set()
        release.wait(30)
        raise OSError(28, "No space left on device")  # the first copy fails after the second arrived

    def first() -> None:
        try:
            _store(inbox, submission)
        except StoreError as exc:
            outcome.append(exc)

    Inbox._write = slow_write  # type: ignore[method-assign]
    try:
        thread = threading.Thread(target=first)
        thread.start()
        assert first_is_writing.wait(30)
        with pytest.raises(SubmissionInProgress, match="retry"):
            _store(inbox, submission)
        release.set()
        thread.join(30)
    finally:
        Inbox._write = original  # type: ignore[method-assign]
    assert len(outcome) == 1 and isinstance(outcome[0], StoreError)
    retried = _store(inbox, submission)  # the sender's retry after the "busy" answer: stored now
    assert retried is not None and retried.directory.is_dir()


def test_recover_removes_leftovers_and_keeps_stored_submissions(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
    kept = _submission()
    stored = _store(inbox, kept)
    assert stored is not None
    # What a crash leaves behind: a half-written submission, a spooled part, and the index records of a
    # submission whose rename never happened (stored, then its directory removed: the same state on disk).
    half = inbox.root / ".tmp" / "abc123"
    (half / "documents").mkdir(parents=True)
    (half / "documents" / "01-Document01.xml").write_bytes(b"<partial")
    (inbox.root / ".spool" / "part-1.bin").write_bytes(b"spooled")
    crashed = _submission(Document.from_bytes(sample_pdf(), name="r.pdf"))
    lost = _store(inbox, crashed)
    assert lost is not None
    shutil.rmtree(lost.directory)

    assert inbox.recover() == 4  # .tmp, .spool, the crashed .ids record, its .docs record
    assert list((inbox.root / ".tmp").iterdir()) == []
    assert list((inbox.root / ".spool").iterdir()) == []
    assert not inbox.contains(crashed.submission_set.unique_id)
    assert inbox.contains(kept.submission_set.unique_id)
    assert stored.directory.is_dir()
    assert len(list((inbox.root / ".docs").iterdir())) == 1  # the kept submission's document
    assert inbox.recover() == 0
    assert _store(inbox, crashed) is not None  # the sender's retry: neither a duplicate nor a conflict


def test_recover_drops_document_records_of_a_submission_that_never_arrived(tmp_path: Path) -> None:
    """A crash after claiming the DocumentEntry uniqueIds and before the rename: without recover() the
    uniqueId would be refused forever to any other bytes, and to the retry if it changed them."""
    inbox = Inbox(tmp_path / "inbox")
    first = _submission()
    stored = _store(inbox, first)
    assert stored is not None
    shutil.rmtree(stored.directory)
    uid = first.document_entries[0].unique_id
    corrected = _with_document_uid(_submission(Document.from_bytes(sample_pdf(), name="r.pdf")), uid)
    with pytest.raises(DocumentConflict):
        _store(inbox, corrected)  # before recovery the orphan record still holds the uniqueId

    assert inbox.recover() == 2
    assert _store(inbox, corrected) is not None


def test_recover_keeps_document_records_of_stored_submissions_and_removes_temporaries(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
    stored = _store(inbox, _submission())
    assert stored is not None
    (inbox.root / ".docs" / "~0123abcd").write_text('{"half')
    (inbox.root / ".ids" / "~4567ef").write_text("")
    assert inbox.recover() == 2
    assert [p.name[0] for p in (inbox.root / ".docs").iterdir()] != ["~"]
    assert len(list((inbox.root / ".docs").iterdir())) == 1
    assert len(list((inbox.root / ".ids").iterdir())) == 1


def test_entries_of_the_previous_layout_are_left_alone(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
    old_ids = [inbox.root / ".ids" / "2.25.111", inbox.root / ".ids" / "2.25.222"]
    old_ids[0].mkdir()
    (old_ids[0] / "path").write_text(str(inbox.root / "2026-01-01" / "2.25.111"))  # target missing
    old_ids[1].mkdir()
    old_docs = [inbox.root / ".docs" / "1.2.3_ref_7", inbox.root / ".docs" / ("ab" * 32)]
    for path in old_docs:  # the second is an old name that happens to look like a new one
        path.write_text("da39a3ee5e6b4b0d3255bfef95601890afd80709 0")

    assert inbox.recover() == 0
    assert all(p.is_dir() for p in old_ids) and all(p.is_file() for p in old_docs)
    assert _store(inbox, _submission()) is not None


def _with_document_uid(submission: Submission, unique_id: str) -> Submission:
    entry = dataclasses.replace(submission.document_entries[0], unique_id=unique_id)
    return dataclasses.replace(submission, document_entries=(entry,))


def _with_submission_uid(submission: Submission, unique_id: str) -> Submission:
    return dataclasses.replace(
        submission, submission_set=dataclasses.replace(submission.submission_set, unique_id=unique_id)
    )


def _store_as(inbox: Inbox, practice: str, submission: Submission) -> StoredSubmission | None:
    return inbox.store(
        submission,
        metadata=write_submit_objects(submission),
        package=None,
        summary={"practice": practice},
    )


def test_unsafe_unique_id_stays_inside_the_inbox(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
    submission = _submission()
    evil = dataclasses.replace(
        submission, submission_set=dataclasses.replace(submission.submission_set, unique_id="../../etc/x")
    )
    stored = _store(inbox, evil)
    assert stored is not None
    assert stored.directory.resolve().is_relative_to(inbox.root.resolve())
    assert stored.directory.parent.parent == inbox.root
    assert inbox.contains("../../etc/x")


def test_documents_from_the_mtom_spool_are_moved_not_copied(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
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


def test_document_unique_id_reused_with_other_bytes_is_refused_and_same_bytes_accepted(
    tmp_path: Path,
) -> None:
    inbox = Inbox(tmp_path / "inbox")
    first = _submission(Document.from_bytes(sample_ccda(), name="ccd.xml"))
    assert _store(inbox, first) is not None
    uid = first.document_entries[0].unique_id

    other = _submission(Document.from_bytes(sample_pdf(), name="r.pdf"))
    other = dataclasses.replace(
        other, document_entries=(dataclasses.replace(other.document_entries[0], unique_id=uid),)
    )
    with pytest.raises(DocumentConflict) as info:
        _store(inbox, other)
    assert info.value.error_code == "XDSNonIdenticalHash"
    assert info.value.unique_id == uid
    assert not inbox.contains(other.submission_set.unique_id)
    assert len(_final_dirs(inbox)) == 1

    again = _submission(Document.from_bytes(sample_ccda(), name="ccd.xml"))
    again = dataclasses.replace(
        again, document_entries=(dataclasses.replace(again.document_entries[0], unique_id=uid),)
    )
    assert _store(inbox, again) is not None
    assert len(_final_dirs(inbox)) == 2


def test_concurrent_identical_re_registrations_never_conflict(tmp_path: Path) -> None:
    """Two submissions re-registering one DocumentEntry uniqueId with the same bytes at the same moment: the
    index record is published whole, so the second never reads a half-written one as other content."""
    inbox = Inbox(tmp_path / "inbox")
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

    for _ in range(200):
        first = _submission(ccda)
        second = _with_document_uid(_submission(ccda), first.document_entries[0].unique_id)
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=run, args=(barrier, s)) for s in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert len(outcomes) == 400
    assert [o for o in outcomes if not isinstance(o, StoredSubmission)] == []
    assert [p.name for p in (inbox.root / ".docs").iterdir() if p.name.startswith("~")] == []


def test_unique_ids_with_the_same_readable_name_are_kept_apart(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
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


def test_submission_set_unique_id_of_another_practice_is_refused_not_a_duplicate(tmp_path: Path) -> None:
    """Practice B sending A's SubmissionSet uniqueId first must not make A's submission look delivered."""
    inbox = Inbox(tmp_path / "inbox")
    own = _submission()
    uid = own.submission_set.unique_id
    squat = _with_submission_uid(_submission(Document.from_bytes(sample_pdf(), name="r.pdf")), uid)
    assert _store_as(inbox, "practice-b", squat) is not None

    with pytest.raises(UniqueIdOwnedElsewhere) as info:
        _store_as(inbox, "practice-a", own)
    assert info.value.error_code == "XDSRepositoryError"
    assert info.value.unique_id == uid
    assert info.value.submission_set
    assert info.value.location == "RegistryPackage/ExternalIdentifier[uniqueId]"
    assert "another sender" in info.value.code_context and uid in info.value.code_context
    assert "practice-b" not in str(info.value)
    assert len(_final_dirs(inbox)) == 1
    # A's documents were not claimed: they are free for A's next submission
    assert _store_as(inbox, "practice-a", _with_submission_uid(own, uid + ".1")) is not None
    # the holder's own resend is still an ordinary duplicate
    assert _store_as(inbox, "practice-b", squat) is None


def test_document_unique_id_of_another_practice(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
    own = _submission()
    doc_uid = own.document_entries[0].unique_id
    other = Document.from_bytes(sample_ccda() + b"\n<!-- different -->", name="ccd.xml")
    assert _store_as(inbox, "practice-b", _with_document_uid(_submission(other), doc_uid)) is not None

    with pytest.raises(UniqueIdOwnedElsewhere) as info:
        _store_as(inbox, "practice-a", own)
    assert info.value.error_code == "XDSRepositoryError"
    assert info.value.unique_id == doc_uid
    assert not info.value.submission_set
    assert info.value.location == "ExtrinsicObject/ExternalIdentifier[uniqueId]"
    assert "practice-b" not in str(info.value)
    assert not inbox.contains(own.submission_set.unique_id)  # nothing of A's submission was kept

    # identical bytes from another practice: a forwarded document, accepted
    forwarded = _with_document_uid(_submission(other), doc_uid)
    assert _store_as(inbox, "practice-c", forwarded) is not None
    assert len(_final_dirs(inbox)) == 2


def test_same_practice_keeps_duplicate_and_conflict_answers(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
    first = _submission()
    assert _store_as(inbox, "practice-a", first) is not None
    assert _store_as(inbox, "practice-a", first) is None
    changed = _with_document_uid(
        _submission(Document.from_bytes(sample_pdf(), name="r.pdf")), first.document_entries[0].unique_id
    )
    with pytest.raises(DocumentConflict) as info:
        _store_as(inbox, "practice-a", changed)
    assert not isinstance(info.value, UniqueIdOwnedElsewhere)
    assert info.value.error_code == "XDSNonIdenticalHash"
    assert info.value.code_context == first.document_entries[0].unique_id  # ITI TF-3 4.2.4, ebRS 3.0
    assert info.value.location == "ExtrinsicObject/ExternalIdentifier[uniqueId]"
