"""Waiting, against the real receiver of a lab over mutual TLS: what is retried and what fails (SOAP 1.2 fault
codes, 408, a certificate refused in the handshake), an outage that pauses every practice with one probe per pause
(Retry-After honoured, no retries hidden in the client), a send that may have been stored before its last answer,
a practice that cannot send, and giving up at the configured age."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from tests.outbox_helpers import (
    ScriptedHisp,
    drop,
    fault_answer,
    page_answer,
    results,
    run,
    stored_but_silent,
    stored_unique_ids,
    valid_manifest,
    wait_until,
    write_config,
)
from xdr_edge.cli.common import EXIT_FAILURE
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.devtools.lab import start_lab
from xdr_edge.protocol.classify import Outcome
from xdr_edge.protocol.compose import compose
from xdr_edge.sender.client import RetryPolicy, XdrClient
from xdr_edge.sender.config import load_sender_config
from xdr_edge.sender.outbox import DropEvent, Outbox
from xdr_edge.sender.outbox.journal import Journal


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_a_send_that_may_have_been_stored_before_a_503_counts_a_duplicate_as_delivered(
    tmp_path: Path,
) -> None:
    """The client's first attempt is stored but its answer never comes (read timeout: unknown), its retry gets a
    503: the send reports the 503, and that an earlier attempt may have been stored. The outbox's next send then
    takes the duplicate answer for what it is: delivered (a caller's client with retries of its own)."""
    hisp = ScriptedHisp(stored_but_silent(4), page_answer("503 Service Unavailable"))
    with start_lab(tmp_path / "lab", app_factory=hisp.app) as lab:
        config = load_sender_config(write_config(lab, tmp_path / "sender.toml", timeout=2))
        outbox = tmp_path / "outbox"
        drop(outbox / "incoming", "order-1", manifest=valid_manifest("practice-a"))
        with XdrClient.from_config(config, retry=RetryPolicy(max_attempts=2, base_delay=0.0)) as client:
            summary = Outbox(outbox, config=config, client=client).run(once=True)
            # the client on its own: the last answer is the 503, and it says an attempt may have been stored
            hisp.script.extend([stored_but_silent(4), page_answer("503 Service Unavailable")])
            document = tmp_path / "ccd.xml"
            document.write_bytes(sample_ccda())
            submission = compose([document], sender=valid_manifest()["from"], recipients=["a@b.example"])
            result = client.send(submission, practice="practice-a")
        stored = stored_unique_ids(lab)
    assert summary.sent == 1 and summary.failed == 0, results(outbox / "failed")
    sent = results(outbox / "sent")["order-1"]
    assert sent["outcome"] == "AlreadyDelivered" and sent["already_delivered"] and sent["attempts"] == 3
    assert stored.count(sent["submission_set_unique_id"]) == 1  # the HISP holds it once
    assert result.outcome is Outcome.TRANSPORT_ERROR and result.http_status == 503 and result.maybe_stored


def test_a_receiver_fault_and_a_408_are_sent_again_and_a_sender_fault_fails(tmp_path: Path) -> None:
    """SOAP 1.2 Part 1 5.4.6: a Receiver fault is a failure of the processing that "may succeed if resent" (our
    own receiver answers one when it could not store a submission); a 408 says the server gave up reading the
    request. A Sender fault blames the message: sending it again cannot help."""
    hisp = ScriptedHisp()
    with start_lab(tmp_path / "lab", app_factory=hisp.app) as lab:
        config = load_sender_config(write_config(lab, tmp_path / "sender.toml"))
        ends = {}
        for name, answer in (
            ("receiver-fault", fault_answer("Receiver")),
            ("timeout-408", page_answer("408 Request Timeout")),
            ("sender-fault", fault_answer("Sender", "the metadata is wrong")),
        ):
            hisp.script.append(answer)
            outbox = tmp_path / name
            drop(outbox / "incoming", name, manifest=valid_manifest("practice-a"))
            Outbox(outbox, config=config).run(once=True)
            ends[name] = {
                where: results(outbox / where).get(name)
                for where in ("sent", "failed")
                if results(outbox / where)
            }
        stored = stored_unique_ids(lab)
    for name in ("receiver-fault", "timeout-408"):
        assert set(ends[name]) == {"sent"}, ends[name]
        doc = ends[name]["sent"]
        assert doc is not None and doc["outcome"] == "Success" and doc["attempts"] == 2
    failed = ends["sender-fault"]["failed"]
    assert set(ends["sender-fault"]) == {"failed"} and failed is not None
    assert failed["outcome"] == "Fault" and failed["code"] == "Sender" and failed["attempts"] == 1
    assert failed["maybe_delivered"] is False
    assert len(stored) == len(set(stored)) == 2


def test_an_outage_pauses_every_practice_with_one_probe_per_pause(tmp_path: Path) -> None:
    """A HISP answering 503 with Retry-After: 1 to everything: after the requests already under way, the outbox
    sends one probe per pause (never sooner than Retry-After), not one request per waiting drop, and the client
    retries nothing on its own (the HISP counts exactly the attempts the journal counts). When the HISP is back,
    every drop goes through once."""
    hisp = ScriptedHisp()
    hisp.down, hisp.retry_after = True, "1"
    events: list[DropEvent] = []
    with start_lab(tmp_path / "lab", app_factory=hisp.app) as lab:
        config = load_sender_config(write_config(lab, tmp_path / "sender.toml", outbox={"workers": 4}))
        outbox = tmp_path / "outbox"
        for n in range(20):
            drop(
                outbox / "incoming",
                f"d{n:02d}",
                manifest=valid_manifest("practice-a" if n % 2 else "practice-b"),
            )
        engine = Outbox(outbox, config=config, on_event=events.append)
        runner = threading.Thread(target=lambda: engine.run(once=True))
        runner.start()
        try:
            wait_until(lambda: hisp.requests() >= 7, what="the requests of three pauses")
            with hisp._lock:
                hisp.down = False
                down = list(hisp.arrivals)
        finally:
            runner.join(timeout=120)
        assert not runner.is_alive()
        stored = stored_unique_ids(lab)
        total = hisp.requests()
    sent = results(outbox / "sent")
    assert len(sent) == 20 and len(stored) == len(set(stored)) == 20
    outage = down[-1] - down[0]
    assert len(down) <= 4 + outage / 1.0 + 2, (len(down), outage)  # 4 workers under way, then a probe a pause
    assert total == sum(doc["attempts"] for doc in sent.values())  # every attempt is the outbox's own
    waiting = [e for e in events if e.state == "waiting"]
    assert waiting and {e.code for e in waiting} == {"HTTP 503"}


def test_a_certificate_refused_in_the_handshake_holds_its_practice_until_the_give_up_age(
    tmp_path: Path,
) -> None:
    """The HISP refuses practice-a's client certificate (revoked there, not enrolled yet): its drops wait as for
    an expired certificate (people fix that, not the drop), with a code of their own, and fail at the give-up
    age; practice-b's drops go through meanwhile."""
    with start_lab(tmp_path / "lab") as lab:
        path = write_config(
            lab,
            tmp_path / "sender.toml",
            outbox={"give_up_after_hours": 3.0 / 3600},
            credentials={"practice-a": (lab.pki.untrusted_client_cert, lab.pki.untrusted_client_key)},
        )
        outbox = tmp_path / "outbox"
        for n in range(3):
            drop(outbox / "incoming", f"a{n}", manifest=valid_manifest("practice-a"))
            drop(outbox / "incoming", f"b{n}", manifest=valid_manifest("practice-b"))
        result = run("outbox", "run", outbox, "--config", path, "--once")
        stored = stored_unique_ids(lab)
    assert result.exit_code == EXIT_FAILURE
    assert set(results(outbox / "sent")) == {"b0", "b1", "b2"} and len(stored) == 3
    failed = results(outbox / "failed")
    assert set(failed) == {"a0", "a1", "a2"}
    for doc in failed.values():
        assert doc["gave_up"] and doc["code"] == "client-certificate-refused", doc
        assert doc["outcome"] == "TransportError"
    attempted = [doc for doc in failed.values() if doc["attempts"]]
    assert attempted and "client certificate was rejected" in attempted[0]["message"]
    assert "refused the practice's client certificate" in (outbox / "failed" / "a0" / "error.txt").read_text()
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(
        line.get("code") == "client-certificate-refused" and line["state"] == "waiting" for line in lines
    )


def test_a_drop_that_cannot_be_delivered_fails_at_the_give_up_age(tmp_path: Path) -> None:
    with start_lab(tmp_path / "lab") as lab:
        config = write_config(
            lab,
            tmp_path / "sender.toml",
            endpoint=f"https://127.0.0.1:{_closed_port()}/xdr",  # nobody listens: connection refused
            outbox={"give_up_after_hours": 1.5 / 3600, "retry_base_seconds": 0.1, "retry_max_seconds": 0.3},
        )
        outbox = tmp_path / "outbox"
        for n in range(3):
            drop(outbox / "incoming", f"d{n}", manifest=valid_manifest("practice-a"))
        result = run("outbox", "run", outbox, "--config", config, "--once")
    assert result.exit_code == EXIT_FAILURE
    failed = results(outbox / "failed")
    assert set(failed) == {"d0", "d1", "d2"}
    attempted = [doc for doc in failed.values() if doc["attempts"]]
    assert attempted
    for doc in failed.values():
        assert doc["gave_up"] and "gave up after" in doc["message"]
        if doc["attempts"]:  # it met the outage itself: the last attempt's outcome and code
            assert (doc["outcome"], doc["code"]) == ("TransportError", "TransportError")
            assert doc["submission_set_unique_id"] and "could not connect" in doc["message"]
            assert doc["first_attempt_at"] is not None
        else:  # it waited behind the outage and was never sent: nothing composed, nothing attempted
            assert (doc["outcome"], doc["code"]) == ("NotSent", "gave-up")
            assert doc["submission_set_unique_id"] is None and doc["first_attempt_at"] is None
        assert doc["from"] and doc["to"] and doc["documents"] == ["ccd.xml"]  # one shape, whatever happened
    assert "could not be reached" in (outbox / "failed" / attempted[0]["drop"] / "error.txt").read_text()
    waiting = [line for line in map(json.loads, result.stdout.splitlines()) if line.get("state") == "waiting"]
    assert waiting and all(w["next_attempt_at"].endswith("Z") for w in waiting)


def test_a_practice_whose_certificate_cannot_be_used_waits_instead_of_failing_its_drops(
    tmp_path: Path,
) -> None:
    with start_lab(tmp_path / "lab") as lab:
        path = write_config(
            lab,
            tmp_path / "sender.toml",
            outbox={"give_up_after_hours": 1.0 / 3600},
            credentials={"practice-a": (lab.pki.expired_client_cert, lab.pki.expired_client_key)},
        )
        outbox = tmp_path / "outbox"
        drop(outbox / "incoming", "a", manifest=valid_manifest("practice-a"))
        drop(outbox / "incoming", "b", manifest=valid_manifest("practice-b"))
        result = run("outbox", "run", outbox, "--config", path, "--once")
    assert result.exit_code == EXIT_FAILURE
    assert set(results(outbox / "sent")) == {"b"}
    stuck = results(outbox / "failed")["a"]
    assert stuck["gave_up"] and stuck["outcome"] == "NotSent" and stuck["attempts"] == 0
    assert stuck["first_attempt_at"] is None  # nothing left the machine
    assert "expired" in stuck["message"] and stuck["code"] == "client-certificate-expired"
    assert "could not send" in (outbox / "failed" / "a" / "error.txt").read_text()
    states = [json.loads(line)["state"] for line in result.stdout.splitlines() if '"drop_id"' in line]
    assert "waiting" in states  # it waited (a renewed certificate would have been used) before giving up
    with Journal(outbox / ".state" / "journal.db", read_only=True) as journal:
        assert journal.counts() == {"sent": 1, "failed": 1}
