"""The inbox (xdr_edge.receiver.store): whole-or-nothing storage, recovery of interrupted writes, duplicates.

Real files in a temporary directory. A failure while writing is produced with a document source that breaks
midway, the way a disk error or a vanished spool file would.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
from pathlib import Path

import pytest

from xdr_edge.compose import compose
from xdr_edge.errors import StoreError
from xdr_edge.metadata import write_submit_objects
from xdr_edge.model import Document, Submission
from xdr_edge.receiver.store import DocumentConflict, Inbox, StoredSubmission
from xdr_edge.samples import sample_ccda, sample_pdf
from xdr_edge.wire import build_request, parse_request

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
    assert sum(r is not None for r in results) == 1
    assert len(_final_dirs(inbox)) == 1


def test_recover_removes_leftovers_and_keeps_stored_submissions(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
    kept = _submission()
    stored = _store(inbox, kept)
    assert stored is not None
    # What a crash leaves behind: a half-written submission, a spooled part, a marker written before the
    # rename (target missing), and a marker from before its path was recorded.
    half = inbox.root / ".tmp" / "abc123"
    (half / "documents").mkdir(parents=True)
    (half / "documents" / "01-Document01.xml").write_bytes(b"<partial")
    (inbox.root / ".spool" / "part-1.bin").write_bytes(b"spooled")
    crashed = inbox.root / ".ids" / "2.25.111"
    crashed.mkdir()
    (crashed / "path").write_text(str(inbox.root / "2026-01-01" / "2.25.111"))
    (inbox.root / ".ids" / "2.25.222").mkdir()

    assert inbox.recover() == 4
    assert list((inbox.root / ".tmp").iterdir()) == []
    assert list((inbox.root / ".spool").iterdir()) == []
    assert not inbox.contains("2.25.111")
    assert not inbox.contains("2.25.222")
    assert inbox.contains(kept.submission_set.unique_id)
    assert stored.directory.is_dir()
    assert inbox.recover() == 0


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
