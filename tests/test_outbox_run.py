"""The folder-drop sender against the real receiver of a lab over mutual TLS, in this process.

`xdr-edge outbox run --once` on 200 mixed drops for two practices; the receiver stopped mid-run and started again;
a slow practice next to a quick one; `outbox retry` after a refusal; `outbox status`; single files settling."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.outbox_helpers import (
    A_FROM,
    B_FROM,
    TO,
    Running,
    drop,
    pdf_files,
    results,
    run,
    single_file,
    stored_unique_ids,
    valid_manifest,
    wait_until,
    write_config,
)
from xdr_edge.certs import fingerprint_sha256
from xdr_edge.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE
from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.protocol.compose import compose
from xdr_edge.receiver.app import ReceiverConfig, XdrEdgeApp
from xdr_edge.receiver.server import ServerConfig, XdrServer
from xdr_edge.sender.client import XdrClient
from xdr_edge.sender.config import load_sender_config
from xdr_edge.sender.outbox import Outbox, outbox_status
from xdr_edge.sender.outbox.journal import Journal, State
from xdr_edge.sender.outbox.layout import OutboxLayout

EXTRA_A = (
    "dr.extra@direct.practice-a.org"  # in practice-a's certificate and sender config; unbound at the HISP
)
PRACTICES = (("practice-a", ("dr.smith@direct.practice-a.org", EXTRA_A)), ("practice-b", (B_FROM,)))
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with start_lab(tmp_path / "lab", practices=PRACTICES) as running:
        running.registry.unbind("practice-a", EXTRA_A, actor="test")
        yield running


def _mixed_drops(incoming: Path) -> tuple[set[str], dict[str, str]]:
    """200 drops for two practices: valid ones of every form, and bad ones of every kind. Returns the names that
    must be sent, and for the others the result.json ``code`` expected."""
    good: set[str] = set()
    bad: dict[str, str] = {}
    for n in range(200):
        practice = "practice-a" if n % 2 else "practice-b"
        kind = n % 20
        name = f"drop-{n:03d}"
        if kind == 0:
            drop(incoming, name, manifest="practice = ")
            bad[name] = "bad-manifest"
        elif kind == 1:
            drop(incoming, name, manifest={**valid_manifest(practice), "practice": "practice-z"})
            bad[name] = "unknown-practice"
        elif kind == 2:
            drop(
                incoming,
                name,
                manifest={**valid_manifest("practice-b"), "from": B_FROM, "practice": "practice-a"},
            )
            bad[name] = "sender-not-bound"
        elif kind == 3:
            drop(
                incoming, name, manifest=valid_manifest(practice), files=pdf_files(f"scan {n}")
            )  # XDS, no author
            bad[name] = "validation-failed"
        elif kind == 4:
            folder = drop(incoming, name, manifest=valid_manifest(practice))
            os.symlink("/etc/hostname", folder / "extra.txt")
            bad[name] = "symlink-in-drop"
        elif kind == 5:
            drop(incoming, name, manifest=valid_manifest(practice, documents=["../../sent/x"]))
            bad[name] = "path-outside-drop"
        elif kind == 6:
            drop(
                incoming, name, manifest={**valid_manifest("practice-a"), "from": EXTRA_A}
            )  # the HISP refuses
            bad[name] = "XDSRepositoryError"
        elif kind == 7:
            single_file(incoming, "practice-a", f"note-{n:03d}.xml", sample_ccda(patient_id=f"P{n}"))
            good.add(f"note-{n:03d}.xml")
        elif kind == 8:
            files = {"ccd.xml": sample_ccda(patient_id=f"P{n}"), "letter.pdf": sample_pdf(f"letter {n}")}
            drop(
                incoming,
                name,
                manifest=valid_manifest(practice, title=f"Referral {n}"),
                files=files,
                fmt="json",
            )
            good.add(name)
        else:
            drop(
                incoming,
                name,
                manifest=valid_manifest(practice),
                files={"ccd.xml": sample_ccda(patient_id=f"P{n}")},
            )
            good.add(name)
    return good, bad


def test_200_mixed_drops_for_two_practices_are_drained_with_once(lab: Lab, tmp_path: Path) -> None:
    config = write_config(
        lab, tmp_path / "sender.toml", defaults={"practice-a": {"from": A_FROM, "to": [TO]}}
    )
    outbox = tmp_path / "outbox"
    (outbox / "incoming").mkdir(parents=True)
    good, bad = _mixed_drops(outbox / "incoming")
    assert len(good) + len(bad) == 200 and len(bad) == 70
    result = run("outbox", "run", outbox, "--config", config, "--once", "--workers", "4")
    assert result.exit_code == EXIT_FAILURE, result.output  # some drops failed
    sent, failed = results(outbox / "sent"), results(outbox / "failed")
    assert set(sent) == good
    assert {name: doc["code"] for name, doc in failed.items()} == bad
    assert list((outbox / "incoming" / "practice-a").iterdir()) == []
    assert [p.name for p in (outbox / "incoming").iterdir()] == ["practice-a"]
    assert list((outbox / ".state" / "claimed").iterdir()) == []
    # the receiver stored each valid drop exactly once, and nothing else
    stored = stored_unique_ids(lab)
    assert sorted(stored) == sorted(doc["submission_set_unique_id"] for doc in sent.values())
    assert len(set(stored)) == len(stored) == len(good)
    for name, doc in sent.items():
        assert doc["outcome"] == "Success" and doc["attempts"] == 1 and doc["http_status"] == 200
        assert (outbox / "sent" / name / "response.mime").read_bytes().startswith(b"Content-Type: ")
        assert not (outbox / "sent" / name / "error.txt").exists()
    for name, doc in failed.items():
        assert (outbox / "failed" / name / "error.txt").read_text().startswith(doc["message"])
        if doc["code"] == "XDSRepositoryError":
            assert doc["outcome"] == "Failure" and doc["errors"][0]["error_code"] == "XDSRepositoryError"
        else:
            assert doc["outcome"] == "BadDrop" and doc["attempts"] == 0
    assert (outbox / "sent" / "drop-008" / "letter.pdf").read_bytes() == sample_pdf(
        "letter 8"
    )  # originals kept
    # one structured line per drop on stdout, without names (they can carry PHI)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    drops = [line for line in lines if line["event"] == "drop"]
    assert len(drops) == 200 and {d["state"] for d in drops} == {"sent", "failed"}
    assert lines[-1]["event"] == "summary" and (lines[-1]["sent"], lines[-1]["failed"]) == (130, 70)
    assert "drop-0" not in result.stdout and "note-" not in result.stdout
    status = json.loads(run("outbox", "status", outbox, "--json").stdout)
    assert status["counts"] == {
        "incoming": 0,
        "claimed": 0,
        "sending": 0,
        "waiting": 0,
        "sent": 130,
        "failed": 70,
    }
    assert status["running"] is False and status["last_error"]["code"]
    # by default free of PHI: no drop names (practice systems put patient names in them), no messages
    plain = run("outbox", "status", outbox)
    assert "drop-" not in plain.stdout + json.dumps(status) and "message" not in status["last_error"]
    full = json.loads(run("outbox", "status", outbox, "--json", "--full").stdout)
    assert full["last_error"]["where"].startswith("failed/") and full["last_error"]["drop"].startswith(
        "drop-"
    )
    assert "drop-" in run("outbox", "status", outbox, "--full").stdout


def _server(lab: Lab, port: int) -> XdrServer:
    return XdrServer(
        lab.app,
        ServerConfig(
            host="127.0.0.1",
            port=port,
            cert=lab.pki.server_cert,
            key=lab.pki.server_key,
            client_ca=lab.pki.ca_cert,
            threads=8,
            socket_timeout=30,
        ),
    ).start()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_drops_wait_while_the_receiver_is_down_and_go_through_when_it_is_back(
    lab: Lab, tmp_path: Path
) -> None:
    # the lab's own server listens on a port chosen by the kernel, which cannot be bound again at once; this
    # receiver (same app, same registry and inbox) gets a fixed port so that it can come back on it
    lab.server.stop()
    port = _free_port()
    first = _server(lab, port)
    endpoint = f"https://127.0.0.1:{port}/xdr"
    config = load_sender_config(write_config(lab, tmp_path / "sender.toml", timeout=10, endpoint=endpoint))
    outbox = tmp_path / "outbox"
    incoming = outbox / "incoming"
    incoming.mkdir(parents=True)
    names = [f"d{n:02d}" for n in range(40)]
    for n, name in enumerate(names[:10]):
        drop(incoming, name, manifest=valid_manifest("practice-a" if n % 2 else "practice-b"))
    with Running(Outbox(outbox, config=config, settings=config.outbox)) as running:
        wait_until(lambda: len(running.states("sent")) == 10, what="the first 10 drops sent")
        first.stop()
        for n, name in enumerate(names[10:]):
            drop(incoming, name, manifest=valid_manifest("practice-a" if n % 2 else "practice-b"))
        wait_until(lambda: len(running.states("waiting")) >= 4, what="drops waiting for the receiver")
        time.sleep(1.0)  # several retry periods: nothing is delivered and nothing fails meanwhile
        assert len(running.states("sent")) == 10 and not running.states("failed")
        waiting = outbox_status(outbox)
        assert waiting.counts["waiting"] >= 1 and waiting.oldest_waiting is not None
        assert "could not connect" in (waiting.oldest_waiting["last_error"] or "")
        server = _server(lab, port)
        try:
            wait_until(
                lambda: len(running.states("sent")) == 40, what="every drop sent once the receiver is back"
            )
        finally:
            running.outbox.stop()
            running.thread.join(timeout=60)
            server.stop()
    sent = results(outbox / "sent")
    assert set(sent) == set(names) and not results(outbox / "failed")
    assert sorted(stored_unique_ids(lab)) == sorted(d["submission_set_unique_id"] for d in sent.values())
    assert any(d["attempts"] > 1 for d in sent.values())


def test_a_slow_practice_does_not_hold_up_a_quick_one(tmp_path: Path) -> None:
    """practice-a's HISP answers only once the test has seen every practice-b drop sent (or after 60 s), and
    practice-a's drops are there first. With two workers and two practices, practice-a may hold only one worker,
    so the other is free for practice-b's drops when they come; a scheduler that let practice-a take both would
    leave practice-b waiting out the 60 s, and practice-b's drops would come last. (practice-a is released by
    the test, after the sender recorded practice-b's eighth drop as sent: released by the receiver when it stored
    that drop, practice-a's answer could overtake practice-b's last one on a busy machine.)"""
    slow = {"a": ""}
    a_seen = threading.Event()
    b_done = threading.Event()

    def factory(config: ReceiverConfig) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
        real = XdrEdgeApp(config)

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            pem = environ.get("SSL_CLIENT_CERT") or ""
            if pem and fingerprint_sha256(x509.load_pem_x509_certificate(pem.encode())) == slow["a"]:
                a_seen.set()
                b_done.wait(60)
            return list(real(environ, start_response))

        return app

    with start_lab(tmp_path / "lab", app_factory=factory) as lab:
        slow["a"] = lab.pki.practices["practice-a"].fingerprint_sha256
        config = load_sender_config(write_config(lab, tmp_path / "sender.toml", outbox={"workers": 2}))
        incoming = tmp_path / "outbox" / "incoming"
        incoming.mkdir(parents=True)
        for n in range(4):
            drop(incoming, f"a{n}", manifest=valid_manifest("practice-a"))
        started = time.monotonic()
        try:
            with Running(Outbox(tmp_path / "outbox", config=config)) as running:
                assert a_seen.wait(30)
                time.sleep(
                    0.5
                )  # time for a second worker to take another practice-a drop, were it allowed to
                for n in range(8):
                    drop(incoming, f"b{n}", manifest=valid_manifest("practice-b"))
                wait_until(lambda: len(running.states("sent")) >= 8, timeout=120, what="eight drops sent")
                b_done.set()
                wait_until(lambda: len(running.states("sent")) == 12, timeout=120, what="every drop sent")
        finally:
            b_done.set()
    order = [e.name[0] for e in running.states("sent")]
    assert order == ["b"] * 8 + ["a"] * 4, order
    assert time.monotonic() - started < 50  # practice-b never waited for practice-a's 60 s


def test_many_workers_for_one_practice_reuse_their_connections(
    lab: Lab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_sender_config(write_config(lab, tmp_path / "sender.toml", outbox={"workers": 7}))
    incoming = tmp_path / "outbox" / "incoming"
    incoming.mkdir(parents=True)
    for n in range(36):
        drop(incoming, f"d{n:02d}", manifest=valid_manifest("practice-a"))
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        summary = Outbox(tmp_path / "outbox", config=config).run(once=True)
    assert summary.sent == 36
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_retry_sends_a_refused_drop_again_with_the_same_unique_ids(lab: Lab, tmp_path: Path) -> None:
    config = write_config(lab, tmp_path / "sender.toml")
    outbox = tmp_path / "outbox"
    (outbox / "incoming").mkdir(parents=True)
    drop(outbox / "incoming", "refused", manifest={**valid_manifest("practice-a"), "from": EXTRA_A})
    drop(outbox / "incoming", "fine", manifest=valid_manifest("practice-b"))
    assert run("outbox", "run", outbox, "--config", config, "--once").exit_code == EXIT_FAILURE
    first = results(outbox / "failed")["refused"]
    assert first["outcome"] == "Failure" and first["attempts"] == 1
    assert "retry" in (outbox / "failed" / "refused" / "error.txt").read_text()

    unknown = run("outbox", "retry", outbox, "nothing-like-it")
    assert (
        unknown.exit_code == EXIT_BAD_INPUT
        and "not a failed drop of this outbox: nothing-like-it" in unknown.output
    )
    lab.registry.bind("practice-a", EXTRA_A, actor="test")  # the HISP's side is fixed
    retried = run("outbox", "retry", outbox, "refused")
    assert retried.exit_code == 0 and "refused: back in the queue (uniqueIds kept)" in retried.output
    assert not (outbox / "failed" / "refused").exists()
    assert outbox_status(outbox).counts["waiting"] == 1
    assert run("outbox", "run", outbox, "--config", config, "--once").exit_code == 0
    again = results(outbox / "sent")["refused"]
    assert again["submission_set_unique_id"] == first["submission_set_unique_id"]
    assert again["document_unique_ids"] == first["document_unique_ids"]
    assert again["attempts"] == 2 and len(again["message_ids"]) == 2
    assert first["submission_set_unique_id"] in stored_unique_ids(lab)
    assert run("outbox", "retry", outbox, "--all-failed").output.strip() == "no failed drops"


def test_retry_with_new_ids_after_a_document_was_fixed(lab: Lab, tmp_path: Path) -> None:
    config = write_config(lab, tmp_path / "sender.toml", outbox={"workers": 1})
    outbox = tmp_path / "outbox"
    (outbox / "incoming").mkdir(parents=True)
    drop(outbox / "incoming", "scan", manifest=valid_manifest("practice-b"), files=pdf_files("page 1"))
    assert run("outbox", "run", outbox, "--config", config, "--once").exit_code == EXIT_FAILURE
    assert results(outbox / "failed")["scan"]["code"] == "validation-failed"
    folder = outbox / "failed" / "scan"
    (folder / "message.toml").write_text(
        (folder / "message.toml").read_text()
        + '\n[author]\nperson = "^Jones^Pat"\ninstitution = "Practice B"\n'
        'role = "Attending"\nspecialty = "Family medicine"\n'
    )
    (folder / "message.toml").write_text(
        (folder / "message.toml")
        .read_text()
        .replace("[author]", 'patient_id = "9^^^&2.16.840.1.113883.19.5&ISO"\n[author]')
    )
    assert (
        run("outbox", "retry", outbox, "scan").exit_code == 0
    )  # nothing was sent: new uniqueIds are harmless
    assert run("outbox", "run", outbox, "--config", config, "--once").exit_code == 0
    assert results(outbox / "sent")["scan"]["outcome"] == "Success"


def test_a_single_file_is_claimed_only_once_it_has_settled(lab: Lab, tmp_path: Path) -> None:
    config = load_sender_config(
        write_config(
            lab,
            tmp_path / "sender.toml",
            outbox={"settle_seconds": 1.5},
            defaults={"practice-a": {"from": A_FROM, "to": [TO], "metadata": "minimal"}},
        )
    )
    outbox = tmp_path / "outbox"
    with Running(Outbox(outbox, config=config)) as running:
        wait_until(lambda: (outbox / "incoming" / "practice-a").is_dir(), what="the practice folder")
        path = outbox / "incoming" / "practice-a" / "scan.pdf"
        with path.open("wb") as out:  # a writer that does not rename, still writing
            for n in range(4):
                out.write(sample_pdf(f"page {n}"))
                out.flush()
                os.utime(path)
                time.sleep(0.5)
                assert path.exists(), "claimed while still being written"
        wait_until(lambda: len(running.states("sent")) == 1, what="the settled file sent")
    sent = results(outbox / "sent")
    assert list(sent) == ["scan.pdf"] and sent["scan.pdf"]["practice"] == "practice-a"
    assert (outbox / "sent" / "scan.pdf" / "scan.pdf").stat().st_size == 4 * len(sample_pdf("page 0"))


def test_the_folder_of_a_practice_without_defaults_is_a_practice_folder_not_a_drop(
    lab: Lab, tmp_path: Path
) -> None:
    config = write_config(
        lab, tmp_path / "sender.toml", defaults={"practice-a": {"from": A_FROM, "to": [TO]}}
    )
    outbox = tmp_path / "outbox"
    folder_b = outbox / "incoming" / "practice-b"
    single_file(outbox / "incoming", "practice-b", "alone.xml")
    drop(folder_b, "with-manifest", manifest={"from": B_FROM, "to": [TO]})
    assert run("outbox", "run", outbox, "--config", config, "--once").exit_code == EXIT_FAILURE
    assert set(results(outbox / "sent")) == {"with-manifest"}
    assert results(outbox / "sent")["with-manifest"]["practice"] == "practice-b"
    assert results(outbox / "failed")["alone.xml"]["code"] == "no-outbox-defaults"
    assert folder_b.is_dir() and list(folder_b.iterdir()) == []
    assert sorted(p.name for p in (outbox / "incoming").iterdir()) == ["practice-a", "practice-b"]


def test_status_while_a_run_is_creating_the_journal_reports_an_empty_outbox(tmp_path: Path) -> None:
    """``outbox status`` can look in the moment a starting run has made the journal file but not yet its tables
    (the file exists, its schema version is 0): before, it failed with SQLite's "no such table: meta"."""
    layout = OutboxLayout(tmp_path / "outbox")
    layout.incoming.mkdir(parents=True)
    layout.journal_path.parent.mkdir(parents=True, exist_ok=True)
    sqlite3.connect(layout.journal_path).execute("PRAGMA auto_vacuum = INCREMENTAL").connection.close()
    (layout.incoming / "drop-1").mkdir()
    assert layout.journal_path.is_file()
    status = outbox_status(layout.root)
    assert status.counts["incoming"] == 1
    assert all(count == 0 for state, count in status.counts.items() if state != "incoming")
    assert status.oldest_waiting is None and not status.running


def test_a_second_runner_on_the_same_outbox_is_refused(lab: Lab, tmp_path: Path) -> None:
    path = write_config(lab, tmp_path / "sender.toml")
    config = load_sender_config(path)
    outbox = tmp_path / "outbox"
    with Running(Outbox(outbox, config=config)):
        wait_until(
            lambda: (outbox / "incoming").is_dir() and outbox_status(outbox).running, what="the first runner"
        )
        second = run("outbox", "run", outbox, "--config", path, "--once")
        assert second.exit_code == EXIT_BAD_INPUT
        assert "is being run by another `xdr-edge outbox run` (pid " in second.output
        status = run("outbox", "status", outbox)
        assert status.exit_code == 0 and f"running (pid {os.getpid()})" in status.output


def test_an_engine_runs_in_process_with_its_callers_client_and_journals_every_change(
    lab: Lab, tmp_path: Path
) -> None:
    config = load_sender_config(write_config(lab, tmp_path / "sender.toml"))
    outbox = tmp_path / "outbox"
    (outbox / "incoming").mkdir(parents=True)
    drop(outbox / "incoming", "one", manifest=valid_manifest("practice-a"))
    with XdrClient.from_config(config) as client:
        summary = Outbox(outbox, config=config, client=client).run(once=True)
        assert (summary.sent, summary.failed, summary.waiting, summary.stopped) == (1, 0, 0, False)
        # the caller's client is the caller's: still open after the run
        again = compose([outbox / "sent" / "one" / "ccd.xml"], sender=A_FROM, recipients=[TO])
        assert client.send(again, practice="practice-a").ok
    with Journal(outbox / ".state" / "journal.db", create=False) as journal:
        (row,) = journal.rows((State.SENT,))
        states = [state for _, state, _ in journal.events(row.id)]
        assert states == ["claiming", "claimed", "sending", "finishing", "sent"]
        assert row.submission is not None and row.final == "sent/one"
        assert (
            row.submission["submission_set_unique_id"]
            == results(outbox / "sent")["one"]["submission_set_unique_id"]
        )
