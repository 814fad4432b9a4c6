"""Shared by the outbox tests: a sender configuration for a lab, drops written the way a practice system should
(built under a hidden name, then renamed into incoming/), what the lab's receiver stored, and a HISP that answers
from a script (down, faults, pages, a stored request whose answer never comes) in front of the real receiver."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from xdr_edge.cli import main
from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.devtools.lab import Lab
from xdr_edge.protocol.soap import Fault
from xdr_edge.protocol.soap.reply import build_fault_envelope
from xdr_edge.receiver.app import ReceiverConfig, XdrEdgeApp
from xdr_edge.sender.outbox import DropEvent, Outbox

A_FROM = "dr.smith@direct.practice-a.org"
B_FROM = "dr.jones@direct.practice-b.org"
TO = "records@direct.hospital.example"
FROM = {"practice-a": A_FROM, "practice-b": B_FROM}

#: Fast settings for tests: no settling, short polls, short backoff.
FAST_OUTBOX: dict[str, Any] = {
    "settle_seconds": 0,
    "poll_seconds": 0.1,
    "retry_base_seconds": 0.2,
    "retry_max_seconds": 0.5,
}


def run(*args: str | Path) -> Result:
    """The ``xdr-edge`` command with these arguments, in this process."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def write_config(
    lab: Lab,
    path: Path,
    *,
    outbox: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
    extra_addresses: Mapping[str, Sequence[str]] | None = None,
    endpoint: str | None = None,
    timeout: float = 30,
    credentials: Mapping[str, tuple[Path, Path]] | None = None,
) -> Path:
    """A sender.toml for ``lab``'s practices. ``defaults`` gives ``[practice.outbox]`` per practice id;
    ``extra_addresses`` binds more addresses on the sending side only (the lab's registry does not know them);
    ``credentials`` gives a practice another (certificate, key) pair than the lab's (an expired or untrusted one)."""
    lines = [
        f'endpoint = "{endpoint or lab.endpoint}"',
        f'ca_bundle = "{lab.ca_bundle}"',
        'metadata_level = "XDS"',
        f"timeout_seconds = {timeout}",
        "",
        "[outbox]",
        *(f"{k} = {json.dumps(v)}" for k, v in {**FAST_OUTBOX, **(outbox or {})}.items()),
    ]
    for pid, demo in lab.pki.practices.items():
        addresses = [*demo.addresses, *((extra_addresses or {}).get(pid, ()))]
        cert, key = (credentials or {}).get(pid, (demo.cert, demo.key))
        lines += [
            "",
            "[[practice]]",
            f'id = "{pid}"',
            f'cert = "{cert}"',
            f'key = "{key}"',
            f"addresses = {json.dumps(addresses)}",
        ]
        practice_defaults = (defaults or {}).get(pid)
        if practice_defaults is not None:
            lines += ["[practice.outbox]", *(f"{k} = {json.dumps(v)}" for k, v in practice_defaults.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def drop(
    incoming: Path,
    name: str,
    *,
    manifest: Mapping[str, Any] | str | None,
    files: Mapping[str, bytes] | None = None,
    fmt: str = "toml",
) -> Path:
    """Build ``incoming/.<name>`` and rename it to ``incoming/<name>``, as a writer should."""
    hidden = incoming / f".{name}.partial"
    hidden.mkdir(parents=True)
    for file_name, data in (files if files is not None else {"ccd.xml": sample_ccda()}).items():
        target = hidden / file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if isinstance(manifest, str):
        (hidden / f"message.{fmt}").write_text(manifest)
    elif manifest is not None:
        text = json.dumps(manifest) if fmt == "json" else _toml(manifest)
        (hidden / f"message.{fmt}").write_text(text)
    final = incoming / name
    os.rename(hidden, final)
    return final


def _toml(table: Mapping[str, Any]) -> str:
    lines = []
    nested = []
    for key, value in table.items():
        if isinstance(value, dict):
            nested.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    for key, value in nested:
        lines += ["", f"[{key}]", *(f"{k} = {json.dumps(v)}" for k, v in value.items())]
    return "\n".join(lines) + "\n"


def valid_manifest(practice: str = "practice-a", **more: Any) -> dict[str, Any]:
    return {"practice": practice, "from": FROM[practice], "to": [TO], **more}


def single_file(incoming: Path, practice: str, name: str, data: bytes | None = None) -> Path:
    """A single-file drop: written as ``.name`` in the practice folder, then renamed."""
    folder = incoming / practice
    folder.mkdir(parents=True, exist_ok=True)
    hidden = folder / f".{name}"
    hidden.write_bytes(data if data is not None else sample_ccda())
    os.rename(hidden, folder / name)
    return folder / name


def pdf_files(text: str) -> dict[str, bytes]:
    return {"letter.pdf": sample_pdf(text)}


def stored_unique_ids(lab: Lab) -> list[str]:
    """The SubmissionSet uniqueId of every submission in the lab's inbox (one entry per stored submission)."""
    found = []
    for summary in sorted(lab.inbox.root.glob("[0-9]*/*/summary.json")):
        found.append(json.loads(summary.read_text())["submission_set_unique_id"])
    return found


def results(folder: Path) -> dict[str, dict[str, Any]]:
    """result.json of every drop in ``sent/`` or ``failed/``, by folder name."""
    return {path.parent.name: json.loads(path.read_text()) for path in sorted(folder.glob("*/result.json"))}


def wait_until(condition: Callable[[], bool], *, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``condition`` (generous bound: the machine is shared)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
#: One scripted answer: (environ, start_response, the real receiver) -> body.
Answer = Callable[[dict[str, Any], StartResponse, WsgiApp], Iterable[bytes]]


class ScriptedHisp:
    """The lab's real receiver behind a script, for ``start_lab(app_factory=hisp.app)``: while ``down`` every
    request gets ``503`` (with ``Retry-After`` when ``retry_after`` is set); otherwise each request takes the next
    scripted answer, and the real receiver answers once the script is used up. The arrival time (monotonic) of
    every request is kept in ``arrivals``."""

    def __init__(self, *answers: Answer) -> None:
        self.script: deque[Answer] = deque(answers)
        self.down = False
        self.retry_after: str | None = None
        self.arrivals: list[float] = []
        self._lock = threading.Lock()

    def app(self, config: ReceiverConfig) -> WsgiApp:
        real = XdrEdgeApp(config)

        def scripted(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            with self._lock:
                self.arrivals.append(time.monotonic())
                answer = None if self.down or not self.script else self.script.popleft()
                down, retry_after = self.down, self.retry_after
            if down:
                environ["wsgi.input"].read()
                headers = [("Content-Type", "text/plain")]
                if retry_after is not None:
                    headers.append(("Retry-After", retry_after))
                start_response("503 Service Unavailable", headers)
                return [b"down for maintenance"]
            if answer is not None:
                return answer(environ, start_response, real)
            return real(environ, start_response)

        return scripted

    def requests(self) -> int:
        with self._lock:
            return len(self.arrivals)


def fault_answer(code: str, reason: str = "internal error; the submission was not stored") -> Answer:
    """A SOAP 1.2 fault with HTTP 500 (SOAP 1.2 Part 2 7.5.1), the request read and not stored."""

    def answer(environ: dict[str, Any], start_response: StartResponse, real: WsgiApp) -> Iterable[bytes]:
        environ["wsgi.input"].read()
        body = build_fault_envelope(Fault(code, reason), relates_to=None, message_id="urn:uuid:scripted")
        start_response("500 Internal Server Error", [("Content-Type", "application/soap+xml; charset=utf-8")])
        return [body]

    return answer


def page_answer(status: str, body: bytes = b"<html>scripted</html>") -> Answer:
    """A non-SOAP page with ``status`` ("408 Request Timeout"), the request read and not stored."""

    def answer(environ: dict[str, Any], start_response: StartResponse, real: WsgiApp) -> Iterable[bytes]:
        environ["wsgi.input"].read()
        start_response(status, [("Content-Type", "text/html")])
        return [body]

    return answer


def stored_but_silent(seconds: float) -> Answer:
    """The real receiver stores the submission, then the answer is held back ``seconds`` (past the client's
    read timeout): the sender cannot know it was stored."""

    def ignore(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        return None

    def answer(environ: dict[str, Any], start_response: StartResponse, real: WsgiApp) -> Iterable[bytes]:
        list(real(environ, ignore))
        time.sleep(seconds)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"too late"]

    return answer


class Running:
    """An Outbox run on a thread, collecting its events."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.events: list[DropEvent] = []
        self._lock = threading.Lock()
        self.summary: Any = None
        outbox._on_event = self._event
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _event(self, event: DropEvent) -> None:
        with self._lock:
            self.events.append(event)

    def _run(self) -> None:
        self.summary = self.outbox.run()

    def states(self, state: str) -> list[DropEvent]:
        with self._lock:
            return [e for e in self.events if e.state == state]

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.outbox.stop()
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()
