"""``xdr-edge outbox run|status|retry``: the folder-drop sender (:mod:`xdr_edge.sender.outbox`) as a command.

Thin: options in, :class:`~xdr_edge.sender.outbox.Outbox` run, its events out. Two outputs, each decided by its
own stream: when stdout is not a terminal (a file, a pipe, a service's journal), each drop that is sent, fails or
is set to wait is one JSON line there, without names or messages (they can carry PHI), so that a log collector gets
structured records; when stderr is a terminal, a live line there shows counts, rate and (with ``--once``) the time
left, with a line per failed drop and the log's own lines printed above it. ``outbox run ... > drops.jsonl`` in a
terminal gets both.

SIGTERM or Ctrl-C stops claiming and lets the drops in flight finish (exit 0); a second one stops at once, which is
as safe as a crash (the next run finishes the work).
"""

from __future__ import annotations

import json
import logging
import signal
import socket
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
    """The terminal display: one status line redrawn in place on stderr; failed drops, and whatever the log
    writes to stderr meanwhile, are printed above it (never into it)."""

    def __init__(self) -> None:
        self._progress: Callable[[], Progress] | None = None
        self.lock = threading.Lock()
        self._text = ""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="xdr-edge-outbox-display", daemon=True)
        self._wrapped: list[tuple[logging.Handler, _AboveTheLine]] = []

    def start(self, progress: Callable[[], Progress]) -> None:
        self._progress = progress
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.__stderr__):
                wrapper = _AboveTheLine(handler, self)
                root.removeHandler(handler)
                root.addHandler(wrapper)
                self._wrapped.append((handler, wrapper))
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
        self._draw(final=True)
        root = logging.getLogger()
        for handler, wrapper in self._wrapped:
            root.removeHandler(wrapper)
            root.addHandler(handler)
        self._wrapped.clear()

    def event(self, event: DropEvent) -> None:
        if event.state != "failed":
            return
        self.above(f"failed: {event.name}: {event.message}")

    def above(self, text: str) -> None:
        """A line of its own above the status line, which is drawn again under it."""
        with self.lock:
            click.echo(f"\r\x1b[K{text}", err=True)
            if self._text:
                click.echo(self._text, err=True, nl=False)

    def _loop(self) -> None:
        while not self._done.wait(0.5):
            self._draw()

    def _draw(self, *, final: bool = False) -> None:
        if self._progress is None:
            return
        text = _progress_text(self._progress())
        with self.lock:
            self._text = text
            click.echo(f"\r\x1b[K{text}", err=True, nl=final)


class _AboveTheLine(logging.Handler):
    """A stderr log handler, while the live line runs: each record is written above the line, not into it."""

    def __init__(self, inner: logging.Handler, line: _LiveLine) -> None:
        super().__init__(inner.level)
        self.inner = inner
        self.line = line

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.line.above(self.inner.format(record))
        except Exception:
            self.handleError(record)


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
    lines = _JsonLines() if not sys.stdout.isatty() else None
    display = _LiveLine() if sys.stderr.isatty() else None
    outputs = [output.event for output in (lines, display) if output is not None]

    def on_event(event: DropEvent) -> None:
        for output in outputs:
            output(event)

    engine = Outbox(directory, config=config, settings=settings, on_event=on_event)
    if display is not None:
        display.start(engine.progress)
    try:
        with _stopped_by_signals(engine):
            try:
                summary = engine.run(once=once)
            finally:
                if display is not None:
                    display.stop()
            _report(summary, lines)  # a second Ctrl-C while the summary is written is still this one
    except KeyboardInterrupt:
        # the second Ctrl-C: stop now, as a crash would; the next run finishes what was in flight
        click.echo(
            "\ninterrupted: stopped at once; the next run finishes the drops that were in flight", err=True
        )
        sys.exit(EXIT_INTERRUPTED)
    if once and not summary.all_sent:
        sys.exit(EXIT_FAILURE)


def _report(summary: RunSummary, lines: _JsonLines | None) -> None:
    text = (
        f"sent {summary.sent}, failed {summary.failed}; left in the outbox: {summary.waiting} waiting, "
        f"{summary.claimed} claimed"
    )
    if summary.recovered.orphans:
        text += f"; {summary.recovered.orphans} unknown drops found in the working area moved to failed/"
    if summary.left_in_incoming:
        text += f"; left in incoming: {summary.left_in_incoming} (could not be claimed, see the warnings)"
    if summary.stuck:
        text += f"; {summary.stuck} could not be handled and stay claimed for the next run"
    if summary.stopped:
        text += " (stopped)"
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
                "orphans": summary.recovered.orphans,
                "left_in_incoming": summary.left_in_incoming,
                "stuck": summary.stuck,
            }
        )
    click.echo(text, err=True)


_STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the run keeps the journal, when not in DIR/.state (its [outbox] state_dir); found by itself when "
    "the run is on this host.",
)


@outbox.command("status")
@click.argument("directory", metavar="DIR", type=_DIR)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--full",
    is_flag=True,
    help="Show drop names and messages too (they can hold patient names and metadata values).",
)
@_STATE_DIR
@handle_errors
def status(directory: Path, as_json: bool, full: bool, state_dir: Path | None) -> None:
    """Counts per state, the oldest waiting drop and the last error of outbox DIR (drop ids and codes; names and
    messages with --full)."""
    found = outbox_status(directory, state_dir=state_dir)
    if as_json:
        echo_json(found.as_dict(full=full))
        return
    _print_status(found, full)


def _print_status(found: OutboxStatus, full: bool) -> None:
    """The text form of :meth:`OutboxStatus.as_dict`: what it leaves out without ``full`` (drop names and
    messages, which may carry PHI) is printed only where it is present."""
    shown = found.as_dict(full=full)
    if found.runner_pid is None:
        running = "not running"
    elif found.runner_host is not None and found.runner_host != socket.gethostname():
        running = f"running on {found.runner_host} (pid {found.runner_pid})"
    else:
        running = f"running (pid {found.runner_pid})"
    click.echo(f"outbox {found.directory}: {running}")
    for state in STATUS_STATES:
        click.echo(f"  {state + ':':<10}{found.counts[state]:>8}")
    oldest = shown["oldest_waiting"]
    if oldest is not None:
        who = f"{oldest['drop']} ({oldest['drop_id']})" if "drop" in oldest else oldest["drop_id"]
        click.echo(
            f"oldest waiting: {who} since {oldest['waiting_since']} ({oldest['attempts']} attempts, "
            f"next {oldest['next_attempt_at']}): {oldest['last_code']}"
            + (f": {oldest['last_error']}" if "last_error" in oldest else "")
        )
    last = shown["last_error"]
    if last is not None:
        who = f"{last['drop']} ({last['drop_id']})" if "drop" in last else last["drop_id"]
        where = f" ({last['where']})" if last.get("where") else ""
        click.echo(
            f"last error: {last['at']} {who}{where}: {last['code'] or last['outcome']}"
            + (f": {last['message']}" if "message" in last else "")
        )


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
@_STATE_DIR
@handle_errors
def retry(
    directory: Path, names: tuple[str, ...], all_failed: bool, new_ids: bool, state_dir: Path | None
) -> None:
    """Move failed drops (NAME as in DIR/failed/) back to be sent again, keeping their uniqueIds."""
    if bool(names) == all_failed:
        raise click.UsageError("give the NAMEs of failed drops, or --all-failed")
    done = retry_failed(directory, names, all_failed=all_failed, new_ids=new_ids, state_dir=state_dir)
    for item in done:
        kept = "new uniqueIds" if item.new_ids else "uniqueIds kept"
        click.echo(f"{item.name}: back in the queue ({kept})")
    if not done:
        click.echo("no failed drops")


COMMANDS = [outbox]
