"""Crash safety of the folder-drop sender, against the real receiver of a lab over mutual TLS.

`xdr-edge outbox run` runs in a subprocess and is killed with SIGKILL at several points (while claiming; right after
the receiver stored a submission and before its answer left; while drops are being finished; at an arbitrary
moment), then restarted; or stopped with SIGTERM mid-run. Afterwards every drop must be accounted for: in sent/ or
failed/, nothing left claimed, and the receiver holding each delivered drop exactly once. Every window between two
steps of the claim and finish protocols is also rebuilt deterministically, in this process, and recovered."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.outbox_helpers import drop, results, stored_unique_ids, valid_manifest, wait_until, write_config
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.receiver.app import ReceiverConfig, XdrEdgeApp
from xdr_edge.receiver.store import StoredSubmission
from xdr_edge.sender.client import XdrClient
from xdr_edge.sender.config import load_sender_config
from xdr_edge.sender.outbox import Outbox
from xdr_edge.sender.outbox.drop import compose_drop, read_drop
from xdr_edge.sender.outbox.engine import PARK_LIMIT
from xdr_edge.sender.outbox.journal import ACTIVE, Journal, State
from xdr_edge.sender.outbox.layout import OutboxLayout
from xdr_edge.sender.outbox.recovery import recover
from xdr_edge.sender.outbox.verdict import Step, result_document

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class Runner:
    """``xdr-edge outbox run`` in a subprocess; stdout and stderr kept in files."""

    def __init__(self, outbox: Path, config: Path, logs: Path) -> None:
        self.outbox, self.config, self.logs = outbox, config, logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.rounds = 0
        self.lock = threading.Lock()

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        self.rounds += 1
        out = (self.logs / f"run{self.rounds}.out").open("wb")
        err = (self.logs / f"run{self.rounds}.err").open("wb")
        with self.lock:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "xdr_edge",
                    "outbox",
                    "run",
                    str(self.outbox),
                    "--config",
                    str(self.config),
                    *extra,
                ],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        out.close()
        err.close()
        return self.proc

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        with self.lock:
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)

    def stderr(self, round_: int | None = None) -> str:
        return (self.logs / f"run{round_ or self.rounds}.err").read_text()

    def stdout(self) -> str:
        return (self.logs / f"run{self.rounds}.out").read_text()


def _entries(folder: Path) -> int:
    return len(list(folder.iterdir())) if folder.is_dir() else 0


def _assert_accounted_for(lab: Lab, outbox: Path, good: set[str], bad: set[str]) -> dict[str, dict[str, Any]]:
    sent, failed = results(outbox / "sent"), results(outbox / "failed")
    assert set(sent) == good, sorted(set(sent) ^ good)
    assert set(failed) == bad, sorted(set(failed) ^ bad)
    assert list((outbox / "incoming").iterdir()) == []
    assert list((outbox / ".state" / "claimed").iterdir()) == []
    with Journal(outbox / ".state" / "journal.db", create=False) as journal:
        counts = journal.counts()
        assert not any(counts.get(s.value) for s in ACTIVE), counts
        assert (counts.get("sent", 0), counts.get("failed", 0)) == (len(good), len(bad)) and len(counts) <= 2
    # each delivered drop is stored once, and nothing was stored that no drop accounts for
    stored = stored_unique_ids(lab)
    assert len(stored) == len(set(stored)) == len(good)
    assert sorted(stored) == sorted(doc["submission_set_unique_id"] for doc in sent.values())
    return sent


def test_sigkill_at_several_points_then_a_restart_finishes_the_work(tmp_path: Path) -> None:
    stores = {"count": 0, "kill_at": -1}
    runner: Runner | None = None

    def hook(stored: StoredSubmission) -> None:
        # runs after the receiver stored a submission, before its answer is written: the sender never learns
        stores["count"] += 1
        if stores["count"] == stores["kill_at"] and runner is not None:
            runner.kill()

    with start_lab(tmp_path / "lab", hook=hook) as lab:
        config = write_config(lab, tmp_path / "sender.toml", outbox={"workers": 3})
        outbox = tmp_path / "outbox"
        incoming = outbox / "incoming"
        incoming.mkdir(parents=True)
        good = {f"d{n:03d}" for n in range(80)}
        for n, name in enumerate(sorted(good)):
            drop(incoming, name, manifest=valid_manifest("practice-a" if n % 2 else "practice-b"))
        bad = {f"bad{n}" for n in range(6)}
        for name in bad:
            drop(incoming, name, manifest={"practice": "practice-a"})
        logs = tmp_path / "logs"
        logs.mkdir()
        runner = Runner(outbox, config, logs)

        # 1. while claiming: as soon as the working area holds a drop
        runner.start()
        wait_until(lambda: _entries(outbox / ".state" / "claimed") > 0, what="the first claim")
        runner.kill()
        # 2. right after the receiver stored a submission, before the sender got the answer
        stores["kill_at"] = stores["count"] + 5
        proc = runner.start()
        wait_until(lambda: proc.poll() is not None, what="the kill in the receiver's hook")
        assert proc.returncode == -signal.SIGKILL
        # 3. while drops are being finished
        runner.start()
        before = _entries(outbox / "sent")
        wait_until(lambda: _entries(outbox / "sent") >= before + 10, what="ten more drops sent")
        runner.kill()
        # the run after the kill in the hook found the send it had cut off, and sends it again
        assert re.search(r"outbox recovery: .* [1-9]\d* sends interrupted", runner.stderr(3)), runner.stderr(
            3
        )
        # 4. at an arbitrary moment of a run at work
        runner.start()
        before = _entries(outbox / "sent")
        wait_until(lambda: _entries(outbox / "sent") > before, what="one more drop sent")
        time.sleep(random.uniform(0, 0.2))
        runner.kill()
        # the last run drains what is left
        last = runner.start("--once")
        assert last.wait(timeout=300) == 1, runner.stderr()  # 1: the bad drops failed

        sent = _assert_accounted_for(lab, outbox, good, bad)
        duplicates = [name for name, doc in sent.items() if doc["outcome"] == "AlreadyDelivered"]
        assert duplicates, "the drop whose answer was lost must be recognised as already delivered"
        for name in duplicates:
            doc = sent[name]
            assert (
                doc["already_delivered"]
                and doc["attempts"] >= 2
                and doc["errors"][0]["error_code"] == ("XDSDuplicateUniqueIdInRegistry")
            )
        assert stores["count"] == len(
            good
        )  # the receiver stored each once; the re-send was answered duplicate


def _slow(config: ReceiverConfig) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The real receiver, 0.3 s slower per request: drops are in flight long enough to be caught there."""
    real = XdrEdgeApp(config)

    def slow(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        time.sleep(0.3)
        return real(environ, start_response)

    return slow


def test_sigterm_mid_run_exits_0_after_the_drops_in_flight_and_a_restart_finishes(tmp_path: Path) -> None:
    with start_lab(tmp_path / "lab", app_factory=_slow) as lab:
        config = write_config(lab, tmp_path / "sender.toml", outbox={"workers": 2})
        outbox = tmp_path / "outbox"
        incoming = outbox / "incoming"
        incoming.mkdir(parents=True)
        good = {f"d{n:02d}" for n in range(30)}
        for n, name in enumerate(sorted(good)):
            drop(incoming, name, manifest=valid_manifest("practice-a" if n % 2 else "practice-b"))
        logs = tmp_path / "logs"
        logs.mkdir()
        runner = Runner(outbox, config, logs)
        proc = runner.start()
        wait_until(lambda: _entries(outbox / "sent") >= 3, what="three drops sent")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, runner.stderr()
        summary = json.loads(runner.stdout().splitlines()[-1])
        assert summary["event"] == "summary" and summary["stopped"] is True
        with Journal(outbox / ".state" / "journal.db", create=False) as journal:
            counts = journal.counts()
        assert not counts.get("sending") and not counts.get("finishing")  # what was in flight was finished
        left = counts.get("claimed", 0) + counts.get("waiting", 0)
        assert left > 0 and counts["sent"] + left == 30
        assert runner.start("--once").wait(timeout=120) == 0, runner.stderr()
        sent = _assert_accounted_for(lab, outbox, good, set())
        assert all(doc["outcome"] == "Success" for doc in sent.values())


class _Gate:
    """Lets the receiver's first ``let_through`` answers go, then holds every later one until opened (each
    submission is stored first): the drops after those stay in flight for as long as a test needs, however slow
    the machine. The gate closes itself: a test that closed it after seeing a drop sent could, on a loaded
    machine, look too late and find every drop already answered."""

    def __init__(self, let_through: int) -> None:
        self.let_through = let_through
        self.opened = threading.Event()
        self.answered = 0
        self.held = 0
        self._lock = threading.Lock()

    def app(self, config: ReceiverConfig) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
        slow = _slow(config)

        def gated(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            answer = list(slow(environ, start_response))
            with self._lock:
                self.answered += 1
                hold = self.answered > self.let_through
                if hold:
                    self.held += 1
            if hold:
                self.opened.wait(120)
            return answer

        return gated


def test_a_second_ctrl_c_stops_at_once_and_a_restart_finishes(tmp_path: Path) -> None:
    """Both signals reach a run with drops in flight (their answers held back): the first is heard (the run says
    it is stopping) before the second is sent, so the two are never taken for one, and the graceful stop cannot
    have finished before the second arrives."""
    gate = _Gate(let_through=1)
    with start_lab(tmp_path / "lab", app_factory=gate.app) as lab:
        config = write_config(lab, tmp_path / "sender.toml", outbox={"workers": 2})
        outbox = tmp_path / "outbox"
        good = {f"d{n:02d}" for n in range(12)}
        for n, name in enumerate(sorted(good)):
            drop(outbox / "incoming", name, manifest=valid_manifest("practice-a" if n % 2 else "practice-b"))
        logs = tmp_path / "logs"
        logs.mkdir()
        runner = Runner(outbox, config, logs)
        proc = runner.start()
        try:
            wait_until(lambda: _entries(outbox / "sent") >= 1, what="a drop sent")
            wait_until(lambda: gate.held >= 1, what="a drop in flight, its answer held back")
            proc.send_signal(signal.SIGINT)
            wait_until(lambda: "outbox stopping" in runner.stderr(), what="the first Ctrl-C heard")
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 130
        finally:
            gate.opened.set()
        assert "interrupted: stopped at once" in runner.stderr() and "Traceback" not in runner.stderr()
        assert runner.start("--once").wait(timeout=120) == 0, runner.stderr()
        _assert_accounted_for(lab, outbox, good, set())


# -- every window of the protocols, rebuilt in this process -------------------------------------------------------


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with start_lab(tmp_path / "lab") as running:
        yield running


def _claimed(layout: OutboxLayout, journal: Journal, name: str, state: State, *, rename: bool = True) -> str:
    """A drop in ``incoming/`` with a journal row in ``state``; moved to the working area when ``rename``."""
    source = drop(layout.incoming, name, manifest=valid_manifest("practice-a"))
    drop_id = f"{name}-id"
    with journal.transaction() as conn:
        journal.insert(
            conn,
            drop_id=drop_id,
            name=name,
            kind="folder",
            practice="practice-a",
            state=state,
            now=time.time(),
        )
    if rename:
        os.rename(source, layout.claimed_dir(drop_id))
    return drop_id


def test_recovery_finishes_every_window_of_claim_send_finish_and_retry(lab: Lab, tmp_path: Path) -> None:
    config = load_sender_config(write_config(lab, tmp_path / "sender.toml"))
    layout = OutboxLayout(tmp_path / "outbox")
    layout.create()
    journal = Journal(layout.journal_path)
    # claim intent written, rename not done / done
    _claimed(layout, journal, "intent-only", State.CLAIMING, rename=False)
    _claimed(layout, journal, "renamed", State.CLAIMING)
    # a send cut off after the HISP stored it: the answer never arrived
    cut = _claimed(layout, journal, "cut-off", State.CLAIMED)
    request = read_drop(layout.claimed_dir(cut), kind="folder", practice_folder=None, config=config)
    submission, record = compose_drop(request, None, renew=True)
    with XdrClient.from_config(config) as client:
        assert client.send(submission, practice="practice-a").ok
    journal.change(cut, expect=(State.CLAIMED,), state=State.SENDING, submission=record.as_json())
    # the decision recorded, the folder not yet moved
    decided = _claimed(layout, journal, "decided", State.CLAIMED)
    document = result_document(
        drop="decided",
        drop_id=decided,
        state=Step.FAILED,
        outcome="BadDrop",
        code="bad-manifest",
        message="decided before the crash",
        practice="practice-a",
        sender=None,
        recipients=[],
        documents=[],
        submission_set_unique_id=None,
        document_unique_ids=[],
        message_ids=[],
        attempts=0,
        result=None,
        problems=[],
        gave_up=False,
        response=None,
        received_at=time.time(),
        first_attempt_at=None,
        finished_at=time.time(),
        maybe_delivered=False,
    )
    journal.change(
        decided, expect=(State.CLAIMED,), state=State.FINISHING, final="failed/decided", result=document
    )
    # a retry moved the folder back but did not commit
    retried = _claimed(layout, journal, "retried", State.CLAIMED)
    journal.change(retried, expect=(State.CLAIMED,), state=State.FAILED, final="failed/retried")
    # a folder in the working area the journal does not know
    orphan = layout.claimed_dir("no-such-drop")
    orphan.mkdir()
    (orphan / "ccd.xml").write_text("<x/>")
    journal.close()

    summary = Outbox(layout.root, config=config).run(once=True)
    assert summary.recovered.claims_undone == 1 and summary.recovered.claims_completed == 1
    assert summary.recovered.sends_interrupted == 1 and summary.recovered.retries_completed == 1
    assert summary.recovered.orphans == 1
    sent, failed = results(layout.sent), results(layout.failed)
    assert set(sent) == {"intent-only", "renamed", "cut-off", "retried"}
    assert sent["cut-off"]["outcome"] == "AlreadyDelivered"
    assert sent["cut-off"]["submission_set_unique_id"] == record.submission_set_unique_id
    assert set(failed) == {"decided", "no-such-drop~orphan"}
    assert (layout.failed / "decided" / "error.txt").read_text().startswith("decided before the crash")
    assert "without a journal entry" in (layout.failed / "no-such-drop~orphan" / "error.txt").read_text()
    stored = stored_unique_ids(lab)
    assert len(stored) == len(set(stored)) == 4
    assert list(layout.claimed.iterdir()) == [] and list(layout.incoming.iterdir()) == []


def test_a_retry_completed_by_the_working_area_scan_counts_parks_from_zero(tmp_path: Path) -> None:
    """An earlier version's retry moved a failed drop back to the working area and stopped before its journal
    change; recovery completes it as ``outbox retry`` does, park count included: a drop that failed at the park
    limit kept it, and failed again at its first park."""
    layout = OutboxLayout(tmp_path / "outbox")
    layout.create()
    with Journal(layout.journal_path) as journal:
        drop_id = _claimed(layout, journal, "parked-out", State.CLAIMED)
        journal.change(
            drop_id, expect=(State.CLAIMED,), state=State.FAILED, final="failed/parked-out", parks=PARK_LIMIT
        )
        assert recover(layout, journal).retries_completed == 1
        row = journal.get(drop_id)
        assert row is not None and row.state == State.CLAIMED and (row.parks, row.retries) == (0, 0)
