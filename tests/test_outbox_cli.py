"""The command: its refusals (bad configuration, not an outbox, wrong options) with their exit statuses, and its
two outputs (JSON lines on a stdout that is not a terminal, the live line on a stderr that is one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from xdr_edge.cli import main
from xdr_edge.cli.common import EXIT_BAD_INPUT
from xdr_edge.cli.outboxcmds import _clock_text, _progress_text
from xdr_edge.sender.outbox.events import Progress


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


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
