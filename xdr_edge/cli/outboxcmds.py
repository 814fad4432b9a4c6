"""``xdr-edge outbox run|status|retry``: the folder-drop sender (:mod:`xdr_edge.sender.outbox`) as a command.

Thin: options in, :class:`~xdr_edge.sender.outbox.Outbox` run, its events out. On a terminal a live line shows
counts, rate and (with ``--once``) the time left, with a line per failed drop; otherwise each drop that is sent,
fails or is set to wait is one JSON line on stdout, without names or messages (they can carry PHI), so that a log
collector gets structured records.

SIGTERM or Ctrl-C stops claiming and lets the drops in flight finish (exit 0); a second one stops at once, which is
as safe as a crash (the next run finishes the work).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import click

from xdr_edge.cli.common import EXIT_FAILURE, echo_json, handle_errors
from xdr_edge.sender.config import load_sender_config
from xdr_edge.sender.outbox import DropEvent, Outbox, Progress, RunSummary, outbox_status, retry_failed
from xdr_edge.sender.outbox.admin import STATUS_STATES, OutboxStatus
from xdr_edge.sender.outbox.events import iso

_DIR = click.Path(file_okay=False, path_type=Path)
#: A second Ctrl-C: 128 + SIGINT, as a shell reports a process ended by it.
EXIT_INTERRUPTED = 130


class _JsonLines:
    """One JSON object per line on stdout, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def event(self, event: DropEvent) -> None:
        self.write({"event": "drop", "time": iso(time.time()), **event.fields()})

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            click.echo(line)


class _LiveLine:
    """The terminal display: one status line redrawn in place on stderr, failed drops printed above it."""

    def __init__(self) -> None:
        self._progress: Callable[[], Progress] | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="xdr-edge-outbox-display", daemon=True)

    def start(self, progress: Callable[[], Progress]) -> None:
        self._progress = progress
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self._draw(final=True)

    def event(self, event: DropEvent) -> None:
        if event.state != "failed":
            return
        with self._lock:
            click.echo(f"\r\x1b[Kfailed: {event.name}: {event.message}", err=True)

    def _loop(self) -> None:
        while not self._done.wait(0.5):
            self._draw()

    def _draw(self, *, final: bool = False) -> None:
        if self._progress is None:
            return
        text = _progress_text(self._progress())
        with self._lock:
            click.echo(f"\r\x1b[K{text}", err=True, nl=final)


def _progress_text(p: Progress) -> str:
    parts = [
        f"sent {p.sent}",
        f"failed {p.failed}",
        f"waiting {p.waiting}",
        f"in flight {p.in_flight}",
        f"queued {max(0, p.claimed - p.in_flight)}",
        f"{p.rate:.1f} drops/s",
    ]
    if p.total is not None:
        eta = p.eta_seconds
        parts.append(f"{p.done}/{p.total}" + (f" ETA {_clock_text(eta)}" if eta is not None else ""))
    return "  ".join(parts)


def _clock_text(seconds: float) -> str:
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@contextmanager
def _stopped_by_signals(outbox: Outbox) -> Iterator[None]:
    """First SIGTERM/SIGINT: stop gracefully. Then the default action, so a second one ends the process. The
    handlers in place before are put back afterwards (the command may run inside a longer-lived process)."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}

    def stop(signum: int, frame: FrameType | None) -> None:
        outbox.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    for signum in before:
        signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@click.group("outbox")
def outbox() -> None:
    """The batch folder-drop sender: drops written into DIR/incoming/ are sent and end in sent/ or failed/."""


@outbox.command("run")
@click.argument("directory", metavar="DIR", type=_DIR)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Sender configuration (TOML): endpoint, CA bundle, practices, [outbox] settings.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), help="Drops sent at once (default: the config's, else 4)."
)
@click.option(
    "--once", is_flag=True, help="Send what is there and exit: 0 if every drop was sent, 1 if any failed."
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds between scans of incoming/ (default: the config's, else 2).",
)
@handle_errors
def run(directory: Path, config_path: Path, workers: int | None, once: bool, poll: float | None) -> None:
    """Send the drops of outbox DIR until stopped (SIGTERM, Ctrl-C), or with --once until they are all done.

    DIR is made when missing: incoming/ (drops arrive here), sent/, failed/, .state/ (journal, working area).
    """
    config = load_sender_config(config_path)
    settings = config.outbox
    if workers is not None:
        settings = replace(settings, workers=workers)
    if poll is not None:
        settings = replace(settings, poll_seconds=poll)
    lines = _JsonLines()
    display = _LiveLine() if sys.stderr.isatty() else None
    engine = Outbox(
        directory,
        config=config,
        settings=settings,
        on_event=display.event if display is not None else lines.event,
    )
    if display is not None:
        display.start(engine.progress)
    try:
        with _stopped_by_signals(engine):
            summary = engine.run(once=once)
    except KeyboardInterrupt:
        # the second Ctrl-C: stop now, as a crash would; the next run finishes what was in flight
        click.echo(
            "\ninterrupted: stopped at once; the next run finishes the drops that were in flight", err=True
        )
        sys.exit(EXIT_INTERRUPTED)
    finally:
        if display is not None:
            display.stop()
    _report(summary, lines if display is None else None)
    if once and summary.failed:
        sys.exit(EXIT_FAILURE)


def _report(summary: RunSummary, lines: _JsonLines | None) -> None:
    text = (
        f"sent {summary.sent}, failed {summary.failed}; left in the outbox: {summary.waiting} waiting, "
        f"{summary.claimed} claimed" + (" (stopped)" if summary.stopped else "")
    )
    if lines is not None:
        lines.write(
            {
                "event": "summary",
                "time": iso(time.time()),
                "sent": summary.sent,
                "failed": summary.failed,
                "waiting": summary.waiting,
                "claimed": summary.claimed,
                "stopped": summary.stopped,
                "recovered": summary.recovered.total,
            }
        )
    click.echo(text, err=True)


@outbox.command("status")
@click.argument("directory", metavar="DIR", type=_DIR)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@handle_errors
def status(directory: Path, as_json: bool) -> None:
    """Counts per state, the oldest waiting drop and the last error of outbox DIR."""
    found = outbox_status(directory)
    if as_json:
        echo_json(found.as_dict())
        return
    _print_status(found)


def _print_status(found: OutboxStatus) -> None:
    running = (
        f"running (pid {found.runner_pid})"
        if found.runner_pid
        else "running"
        if found.running
        else "not running"
    )
    click.echo(f"outbox {found.directory}: {running}")
    for state in STATUS_STATES:
        click.echo(f"  {state + ':':<10}{found.counts[state]:>8}")
    oldest = found.oldest_waiting
    if oldest is not None:
        click.echo(
            f"oldest waiting: {oldest['drop']} since {oldest['waiting_since']} ({oldest['attempts']} attempts, "
            f"next {oldest['next_attempt_at']}): {oldest['last_error']}"
        )
    last = found.last_error
    if last is not None:
        where = f" ({last['where']})" if last["where"] else ""
        click.echo(f"last error: {last['at']} {last['drop']}{where}: {last['message']}")


@outbox.command("retry")
@click.argument("directory", metavar="DIR", type=_DIR)
@click.argument("names", metavar="NAME...", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Every drop in DIR/failed/.")
@click.option(
    "--new-ids",
    is_flag=True,
    help="Send as new submissions (new uniqueIds): for drops whose documents you changed. A copy the HISP already "
    "has would then be delivered twice.",
)
@handle_errors
def retry(directory: Path, names: tuple[str, ...], all_failed: bool, new_ids: bool) -> None:
    """Move failed drops (NAME as in DIR/failed/) back to be sent again, keeping their uniqueIds."""
    if bool(names) == all_failed:
        raise click.UsageError("give the NAMEs of failed drops, or --all-failed")
    done = retry_failed(directory, names, all_failed=all_failed, new_ids=new_ids)
    for item in done:
        kept = "new uniqueIds" if item.new_ids else "uniqueIds kept"
        click.echo(f"{item.name}: back in the queue ({kept})")
    if not done:
        click.echo("no failed drops")


COMMANDS = [outbox]
