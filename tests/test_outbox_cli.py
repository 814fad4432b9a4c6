"""The outbox's edges: giving up after the configured age, a practice that cannot send, finding and settling drops,
and the command's refusals (bad configuration, not an outbox, wrong options) with their exit statuses."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.outbox_helpers import drop, results, valid_manifest, write_config
from xdr_edge.cli import main
from xdr_edge.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE
from xdr_edge.cli.outboxcmds import _clock_text, _progress_text
from xdr_edge.devtools.lab import start_lab
from xdr_edge.sender.outbox.events import Progress


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
    assert all(doc["gave_up"] for doc in failed.values())
    assert all(doc["submission_set_unique_id"] or doc["code"] == "gave-up" for doc in failed.values())
    attempted = [doc for doc in failed.values() if doc["attempts"]]
    assert attempted and all(doc["outcome"] == "TransportError" for doc in attempted)
    assert "could not connect" in attempted[0]["message"] and "gave up after" in attempted[0]["message"]
    assert "could not be reached" in (outbox / "failed" / "d0" / "error.txt").read_text()
    waiting = [line for line in map(json.loads, result.stdout.splitlines()) if line.get("state") == "waiting"]
    assert waiting and all(w["next_attempt_at"].endswith("Z") for w in waiting)


def test_a_practice_whose_certificate_cannot_be_used_waits_instead_of_failing_its_drops(
    tmp_path: Path,
) -> None:
    with start_lab(tmp_path / "lab") as lab:
        path = write_config(lab, tmp_path / "sender.toml", outbox={"give_up_after_hours": 1.0 / 3600})
        text = path.read_text().replace(
            str(lab.pki.practices["practice-a"].cert), str(lab.pki.expired_client_cert)
        )
        path.write_text(
            text.replace(str(lab.pki.practices["practice-a"].key), str(lab.pki.expired_client_key))
        )
        outbox = tmp_path / "outbox"
        drop(outbox / "incoming", "a", manifest=valid_manifest("practice-a"))
        drop(outbox / "incoming", "b", manifest=valid_manifest("practice-b"))
        result = run("outbox", "run", outbox, "--config", path, "--once")
    assert result.exit_code == EXIT_FAILURE
    assert set(results(outbox / "sent")) == {"b"}
    stuck = results(outbox / "failed")["a"]
    assert stuck["gave_up"] and stuck["outcome"] == "NotSent" and stuck["attempts"] == 0
    assert "expired" in stuck["message"]
    states = [json.loads(line)["state"] for line in result.stdout.splitlines() if '"drop_id"' in line]
    assert "waiting" in states  # it waited (a renewed certificate would have been used) before giving up


def test_the_command_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    bad = tmp_path / "sender.toml"
    bad.write_text('endpoint = "http://x"\n')
    result = run("outbox", "run", tmp_path / "outbox", "--config", bad)
    assert result.exit_code == EXIT_BAD_INPUT and "sender.toml: ca_bundle: missing" in result.output
    assert not (tmp_path / "outbox").exists()  # nothing made for a configuration that cannot run
    result = run("outbox", "status", tmp_path / "nothing-here")
    assert result.exit_code == EXIT_BAD_INPUT and "is not an outbox (no incoming/ folder)" in result.output
    (tmp_path / "box" / "incoming").mkdir(parents=True)
    result = run("outbox", "retry", tmp_path / "box")
    assert (
        result.exit_code == EXIT_BAD_INPUT
        and "give the NAMEs of failed drops, or --all-failed" in result.output
    )
    result = run("outbox", "retry", tmp_path / "box", "x", "--all-failed")
    assert result.exit_code == EXIT_BAD_INPUT
    result = run("outbox", "retry", tmp_path / "box", "x")
    assert (
        result.exit_code == EXIT_BAD_INPUT
        and "has no journal: nothing was ever sent from it" in result.output
    )
    status = run("outbox", "status", tmp_path / "box")
    assert status.exit_code == 0 and "not running" in status.output and "incoming:" in status.output


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0:00"), (59.6, "1:00"), (3725, "1:02:05")])
def test_the_time_left_reads_as_a_clock(seconds: float, text: str) -> None:
    assert _clock_text(seconds) == text


def test_the_live_line_shows_counts_rate_and_time_left() -> None:
    line = _progress_text(
        Progress(started_at=0.0, now=10.0, sent=40, failed=10, waiting=2, in_flight=4, claimed=14, total=150)
    )
    assert line == "sent 40  failed 10  waiting 2  in flight 4  queued 10  5.0 drops/s  50/150 ETA 0:20"
