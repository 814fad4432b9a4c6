"""Drops and runs at the edges, against the real receiver of a lab over mutual TLS: manifests no file can satisfy,
an unexpected error in the middle of a drop, drops that cannot be claimed, a display asking for progress while a
run ends, a stop before a run, unknown drops in the working area, a retry interrupted half-way while a run is
going, a drop changed after it was sent, and hard links."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.outbox_helpers import (
    A_FROM,
    TO,
    Running,
    ScriptedHisp,
    drop,
    fault_answer,
    results,
    run,
    stored_unique_ids,
    valid_manifest,
    wait_until,
    write_config,
)
from xdr_edge.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.sender.client import SendResult, XdrClient
from xdr_edge.sender.config import load_sender_config
from xdr_edge.sender.outbox import Outbox, retry_failed
from xdr_edge.sender.outbox.engine import PARK_LIMIT
from xdr_edge.sender.outbox.journal import Journal, State


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with start_lab(tmp_path / "lab") as running:
        yield running


def test_a_manifest_naming_a_file_no_filesystem_can_hold_fails_at_once(lab: Lab, tmp_path: Path) -> None:
    """Valid JSON, but a NUL in a document name: a bad drop at once, never a drop parked again and again (which
    kept `--once` running forever)."""
    config = load_sender_config(write_config(lab, tmp_path / "sender.toml"))
    outbox = tmp_path / "outbox"
    manifest = json.dumps({**valid_manifest("practice-a"), "documents": ["ccd\u0000.xml"]})
    drop(outbox / "incoming", "nul-name", manifest=manifest, fmt="json")
    drop(outbox / "incoming", "fine", manifest=valid_manifest("practice-a"))
    engine = Outbox(outbox, config=config)
    summaries: list[Any] = []
    worker = threading.Thread(target=lambda: summaries.append(engine.run(once=True)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    ended = not worker.is_alive()
    if not ended:
        engine.stop()
        worker.join(timeout=120)
    assert ended, "--once did not end"
    assert (summaries[0].sent, summaries[0].failed) == (1, 1)
    failed = results(outbox / "failed")["nul-name"]
    assert failed["outcome"] == "BadDrop" and failed["code"] == "bad-manifest" and failed["attempts"] == 0
    assert "documents[0]" in failed["message"] and "control character" in failed["message"]


def test_a_manifest_title_xml_cannot_carry_fails_at_once_naming_the_field(lab: Lab, tmp_path: Path) -> None:
    """A control character in the title (valid JSON, but XML 1.0 cannot carry it): a bad drop with nothing sent,
    its reason naming the field and never quoting the text; the other drop goes."""
    config = load_sender_config(write_config(lab, tmp_path / "sender.toml"))
    outbox = tmp_path / "outbox"
    manifest = json.dumps({**valid_manifest("practice-a"), "title": "Discharge\u0001summary"})
    drop(outbox / "incoming", "bad-title", manifest=manifest, fmt="json")
    drop(outbox / "incoming", "fine", manifest=valid_manifest("practice-a"))
    summary = Outbox(outbox, config=config).run(once=True)
    assert (summary.sent, summary.failed) == (1, 1)
    failed = results(outbox / "failed")["bad-title"]
    assert failed["outcome"] == "BadDrop" and failed["attempts"] == 0, failed
    assert "U+0001" in failed["message"] and "Discharge" not in failed["message"]
    assert len(stored_unique_ids(lab)) == 1


class _BrokenClient(XdrClient):
    """A client with a bug in it: ``send`` raises what no caller expects (fault injection; the outbox has no other
    way to meet an unexpected error on purpose)."""

    def send(self, *args: Any, **kwargs: Any) -> SendResult:
        raise RuntimeError("a bug")


def test_a_drop_that_fails_unexpectedly_is_parked_then_failed_and_once_ends(lab: Lab, tmp_path: Path) -> None:
    config = load_sender_config(write_config(lab, tmp_path / "sender.toml"))
    outbox = tmp_path / "outbox"
    drop(outbox / "incoming", "unlucky", manifest=valid_manifest("practice-a"))
    with _BrokenClient.from_config(config) as client:
        summary = Outbox(outbox, config=config, client=client).run(once=True)
    assert (summary.sent, summary.failed) == (0, 1) and not summary.all_sent
    failed = results(outbox / "failed")["unlucky"]
    assert (failed["outcome"], failed["code"]) == ("InternalError", "internal-error")
    assert "RuntimeError" in failed["message"] and f"{PARK_LIMIT} times" in failed["message"]
    assert failed["maybe_delivered"] is True  # it broke while sending: the outbox cannot tell what left
    text = (outbox / "failed" / "unlucky" / "error.txt").read_text()
    assert "could not handle this drop" in text and "xdr-edge outbox retry DIR unlucky" in text
    with Journal(outbox / ".state" / "journal.db", read_only=True) as journal:
        (row,) = journal.rows((State.FAILED,))
        changes = [(state, detail) for _, state, detail in journal.events(row.id)]
    assert changes.count(("waiting", "internal-error")) == PARK_LIMIT - 1  # parked, then failed at the last
    assert changes[-1] == ("failed", "internal-error") and row.parks == PARK_LIMIT - 1


def test_incoming_on_another_filesystem_is_refused_at_start(lab: Lab, tmp_path: Path) -> None:
    elsewhere = Path("/dev/shm")
    if not elsewhere.is_dir() or elsewhere.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem (/dev/shm) to put incoming/ on")
    config = write_config(lab, tmp_path / "sender.toml")
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    other = Path(os.path.realpath(elsewhere)) / f"xdr-edge-test-{os.getpid()}-{tmp_path.name}"
    other.mkdir()
    try:
        (outbox / "incoming").symlink_to(other)
        drop(outbox / "incoming", "d0", manifest=valid_manifest("practice-a"))
        result = run("outbox", "run", outbox, "--config", config, "--once")
        assert result.exit_code == EXIT_BAD_INPUT
        assert "is on another filesystem than the outbox's working area" in result.output
        assert sorted(os.listdir(other)) == ["d0"]
    finally:
        shutil.rmtree(other)


def _immutable(path: Path, on: bool) -> bool:
    """chattr +i: not even root may rename it (EPERM); False where that cannot be set."""
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True).returncode == 0


def test_a_drop_that_cannot_be_claimed_is_reported_once_and_once_exits_1(
    lab: Lab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(lab, tmp_path / "sender.toml")
    outbox = tmp_path / "outbox"
    stuck = drop(outbox / "incoming", "locked", manifest=valid_manifest("practice-a"))
    drop(outbox / "incoming", "fine", manifest=valid_manifest("practice-a"))
    if not _immutable(stuck, True):
        pytest.skip("cannot make a folder immutable here (chattr)")
    try:
        result = run("outbox", "run", outbox, "--config", config, "--once")
        assert result.exit_code == EXIT_FAILURE, result.output
        assert "left in incoming: 1" in result.stderr
        summary = json.loads(result.stdout.splitlines()[-1])
        assert summary["left_in_incoming"] == 1 and summary["sent"] == 1
        assert stuck.is_dir() and set(results(outbox / "sent")) == {"fine"}
        # a run that goes on tries again at every poll, and says so once
        engine = Outbox(outbox, config=load_sender_config(config))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="xdr_edge.sender.outbox"), Running(engine):
            wait_until(lambda: len(caplog.records) >= 1, what="the warning")
            later = drop(outbox / "incoming", "later", manifest=valid_manifest("practice-a"))
            wait_until(lambda: not later.exists() and "later" in results(outbox / "sent"), what="later sent")
        warnings = [r for r in caplog.records if "cannot be claimed" in r.getMessage()]
        assert len(warnings) == 1 and "locked" not in warnings[0].getMessage()  # no drop names in logs
    finally:
        _immutable(stuck, False)


def test_progress_asked_while_a_run_ends_never_meets_a_closed_journal(lab: Lab, tmp_path: Path) -> None:
    config = load_sender_config(write_config(lab, tmp_path / "sender.toml"))
    errors: list[str] = []
    for round_ in range(10):
        outbox = tmp_path / f"outbox{round_}"
        drop(outbox / "incoming", "d", manifest=valid_manifest("practice-a"))
        engine = Outbox(outbox, config=config)
        done = threading.Event()

        def poll(engine: Outbox = engine, done: threading.Event = done) -> None:
            while not done.is_set():
                try:
                    engine.progress()
                except Exception as exc:  # what the live display would have died of
                    errors.append(repr(exc))
                    return

        poller = threading.Thread(target=poll)
        poller.start()
        engine.run(once=True)
        done.set()
        poller.join()
    assert errors == []


def test_a_stop_ends_one_run_and_the_next_run_works(lab: Lab, tmp_path: Path) -> None:
    config = load_sender_config(write_config(lab, tmp_path / "sender.toml"))
    outbox = tmp_path / "outbox"
    drop(outbox / "incoming", "d", manifest=valid_manifest("practice-a"))
    engine = Outbox(outbox, config=config)
    engine.stop()  # asked before the run started (a signal during start-up): that run ends at once
    first = engine.run(once=True)
    assert first.stopped and first.sent == 0
    second = engine.run(once=True)
    assert not second.stopped and second.sent == 1


def test_unknown_drops_in_the_working_area_fail_once_and_have_the_usual_result(
    lab: Lab, tmp_path: Path
) -> None:
    config = write_config(lab, tmp_path / "sender.toml")
    outbox = tmp_path / "outbox"
    drop(outbox / "incoming", "fine", manifest=valid_manifest("practice-a"))
    assert run("outbox", "run", outbox, "--config", config, "--once").exit_code == 0
    orphan = outbox / ".state" / "claimed" / "journal-lost"
    orphan.mkdir()
    (orphan / "ccd.xml").write_bytes(sample_ccda())
    result = run("outbox", "run", outbox, "--config", config, "--once")
    assert result.exit_code == EXIT_FAILURE  # an orphan is a drop that did not get sent
    assert "1 unknown drops found in the working area" in result.stderr
    doc = results(outbox / "failed")["journal-lost~orphan"]
    assert set(doc) == set(results(outbox / "sent")["fine"])  # one shape for every result.json
    assert (doc["outcome"], doc["code"], doc["maybe_delivered"]) == ("Unknown", "orphan", True)
    assert "check with the recipient" in (outbox / "failed" / "journal-lost~orphan" / "error.txt").read_text()


def test_a_retry_interrupted_after_its_intent_is_completed_by_the_running_run(tmp_path: Path) -> None:
    """`outbox retry` records its intent, then moves the folder: killed in between, the running run completes the
    move at its next poll, and the drop is sent with its uniqueIds (not left failed until the next start)."""
    hisp = ScriptedHisp(fault_answer("Sender", "refused once"))
    with start_lab(tmp_path / "lab", app_factory=hisp.app) as lab:
        config = load_sender_config(write_config(lab, tmp_path / "sender.toml"))
        outbox = tmp_path / "outbox"
        drop(outbox / "incoming", "order-5", manifest=valid_manifest("practice-a"))
        journal_path = outbox / ".state" / "journal.db"

        def failed_in_journal() -> int:
            with Journal(journal_path, create=False) as journal:
                return len(journal.rows((State.FAILED,)))

        with Running(Outbox(outbox, config=config)):
            # the folder is moved into failed/ first, then the journal says failed: wait for both
            wait_until(
                lambda: "order-5" in results(outbox / "failed") and failed_in_journal() == 1,
                what="the refusal, in failed/ and in the journal",
            )
            first = results(outbox / "failed")["order-5"]
            with Journal(journal_path, create=False) as journal:
                (row,) = journal.rows((State.FAILED,))
                journal.change(
                    row.id, expect=(State.FAILED,), detail="retry", state=State.RETRYING, next_at=None
                )
            wait_until(lambda: "order-5" in results(outbox / "sent"), what="the retry completed and sent")
        stored = stored_unique_ids(lab)
    again = results(outbox / "sent")["order-5"]
    assert again["submission_set_unique_id"] == first["submission_set_unique_id"] and again["attempts"] == 2
    assert stored == [first["submission_set_unique_id"]] and not (outbox / "failed" / "order-5").exists()


def test_a_drop_changed_after_it_was_sent_says_how_to_send_it_as_new(tmp_path: Path) -> None:
    hisp = ScriptedHisp(fault_answer("Sender", "the document is wrong"))
    with start_lab(tmp_path / "lab", app_factory=hisp.app) as lab:
        config = load_sender_config(write_config(lab, tmp_path / "sender.toml"))
        outbox = tmp_path / "outbox"
        drop(outbox / "incoming", "order-9", manifest=valid_manifest("practice-a"))
        Outbox(outbox, config=config).run(once=True)
        assert results(outbox / "failed")["order-9"]["code"] == "Sender"
        fixed = sample_ccda().replace(b"</ClinicalDocument>", b"<!-- fixed --></ClinicalDocument>")
        (outbox / "failed" / "order-9" / "ccd.xml").write_bytes(fixed)
        retry_failed(outbox, ["order-9"])  # without --new-ids: the uniqueIds are kept, the bytes are not
        Outbox(outbox, config=config).run(once=True)
        doc = results(outbox / "failed")["order-9"]
        text = (outbox / "failed" / "order-9" / "error.txt").read_text()
        assert (doc["code"], doc["attempts"], doc["maybe_delivered"]) == ("drop-changed", 1, False)
        last = text.rstrip("\n").rsplit("\n", 1)[-1]
        assert "Nothing was sent" not in text and "--new-ids" in last
        assert "xdr-edge outbox retry DIR order-9 --new-ids" in last
        retry_failed(outbox, ["order-9"], new_ids=True)
        Outbox(outbox, config=config).run(once=True)
        assert (
            results(outbox / "sent")["order-9"]["submission_set_unique_id"] != doc["submission_set_unique_id"]
        )
        assert len(stored_unique_ids(lab)) == 1


def test_a_hard_linked_document_is_sent_like_any_other(lab: Lab, tmp_path: Path) -> None:
    """Writers may hard-link a document into a drop (an archive and the outbox sharing the bytes): a hard link
    can only be made to a file its writer may read (fs.protected_hardlinks), unlike a symbolic link, which is
    refused; so it is sent (docs/outbox.md)."""
    config = load_sender_config(write_config(lab, tmp_path / "sender.toml"))
    archive = tmp_path / "archive.xml"
    archive.write_bytes(sample_ccda())
    outbox = tmp_path / "outbox"
    hidden = outbox / "incoming" / ".linked"
    hidden.mkdir(parents=True)
    os.link(archive, hidden / "ccd.xml")
    (hidden / "message.toml").write_text(f'practice = "practice-a"\nfrom = "{A_FROM}"\nto = ["{TO}"]\n')
    os.rename(hidden, outbox / "incoming" / "linked")
    assert Outbox(outbox, config=config).run(once=True).sent == 1
    assert (outbox / "sent" / "linked" / "ccd.xml").stat().st_nlink == 2


def test_pruning_goes_past_failed_drops_it_keeps(tmp_path: Path) -> None:
    """Pruning pages through the finished drops oldest first. A page made only of failed drops whose folders are
    still in failed/ (kept for `outbox retry`) used to end it: with a thousand of those, no later drop was ever
    forgotten. Here pages of two: three kept failed drops, then two sent ones and a failed one whose folder is
    gone; the last three are forgotten, in pages each a transaction of its own."""
    kept = {"failed-1", "failed-2", "failed-3"}
    with Journal(tmp_path / "journal.db") as journal:
        for at, (name, state) in enumerate(
            [
                *((k, State.FAILED) for k in sorted(kept)),
                ("sent-1", State.SENT),
                ("gone", State.FAILED),
                ("sent-2", State.SENT),
            ],
            start=1,
        ):
            with journal.transaction() as conn:
                journal.insert(
                    conn, drop_id=name, name=name, kind="folder", practice=None, state=State.CLAIMED, now=0
                )
            journal.change(
                name, expect=(State.CLAIMED,), state=state, final=f"failed/{name}", finished_at=float(at)
            )
        forgotten = journal.prune(finished_before=100.0, still_there=lambda final: final[7:] in kept, batch=2)
        assert forgotten == 3
        assert {r.id for r in journal.rows((State.SENT, State.FAILED))} == kept
        assert (
            journal.prune(finished_before=100.0, still_there=lambda final: True, batch=2, stop=lambda: True)
            == 0
        )
