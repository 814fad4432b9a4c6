"""Throughput of the folder-drop sender against the library's own sequential send rate, in the same run.

Usage: ``.venv/bin/python benchmarks/bench_outbox.py [--drops 10000] [--workers 4] [--baseline 1000] [--dir DIR]``

A lab receiver (PKI, registry, inbox, cheroot with mutual TLS on loopback) runs in a child process, so that the
sender side measured here does not share an interpreter with it. Two practices send, alternately.

1. **baseline, sequential library sends**: ``compose`` + ``XdrClient.send`` of a small C-CDA, one after the other,
   ``--baseline`` times; the rate a caller of the library gets without any concurrency. Measured before and after
   the outbox run; the table shows both and their mean is the baseline.
2. **outbox**: ``--drops`` folder drops (the same C-CDA and a message.toml) are written into ``incoming/`` first
   (not timed), then ``Outbox.run(once=True)`` with ``--workers`` workers drains them: claim, journal (SQLite WAL,
   synchronous=FULL, every state change), compose, send, result.json and the move to sent/, every file and directory
   flushed. Timed from the start of the run to its end.

Prints drops per second for both and their ratio, and checks every drop reached sent/ and the receiver stored
exactly as many submissions as were sent. Exit status 1 when a drop was not sent.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SENDERS = {"practice-a": "dr.smith@direct.practice-a.org", "practice-b": "dr.jones@direct.practice-b.org"}
RECIPIENT = "records@direct.hospital.example"


def child_server(directory: Path) -> None:
    """Start a lab, print its coordinates as one JSON line, serve until stdin closes."""
    from xdr_edge.devtools.lab import start_lab

    lab = start_lab(directory, threads=8)
    info = {
        "endpoint": lab.endpoint,
        "ca": str(lab.ca_bundle),
        "inbox": str(lab.inbox.root),
        "practices": {pid: {"cert": str(p.cert), "key": str(p.key)} for pid, p in lab.pki.practices.items()},
    }
    print(json.dumps(info), flush=True)
    sys.stdin.read()
    lab.stop()


def _config(info: dict[str, Any], path: Path, workers: int) -> Path:
    lines = [
        f'endpoint = "{info["endpoint"]}"',
        f'ca_bundle = "{info["ca"]}"',
        'metadata_level = "XDS"',
        "",
        "[outbox]",
        f"workers = {workers}",
        "settle_seconds = 0",
        "poll_seconds = 0.5",
    ]
    for pid, files in info["practices"].items():
        lines += [
            "",
            "[[practice]]",
            f'id = "{pid}"',
            f'cert = "{files["cert"]}"',
            f'key = "{files["key"]}"',
            f'addresses = ["{SENDERS[pid]}"]',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


class Cpu:
    """CPU seconds (user + system) of this process, all threads, and of the receiver's process (Linux /proc)."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.ticks = os.sysconf("SC_CLK_TCK")

    def sample(self) -> tuple[float, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        fields = Path(f"/proc/{self.server_pid}/stat").read_text().rsplit(")", 1)[1].split()
        server = (int(fields[11]) + int(fields[12])) / self.ticks  # utime, stime
        return own.ru_utime + own.ru_stime, server


def sequential(config_path: Path, document: Path, count: int) -> float:
    """Seconds for ``count`` sequential compose + send calls through one client."""
    from xdr_edge.protocol.compose import compose
    from xdr_edge.sender.client import XdrClient
    from xdr_edge.sender.config import load_sender_config

    config = load_sender_config(config_path)
    with XdrClient.from_config(config) as client:
        practices = list(SENDERS)
        for practice in practices:  # warm-up: one TLS session per practice, as the outbox run has too
            warm = compose(
                [document], sender=SENDERS[practice], recipients=[RECIPIENT], level=config.metadata_level
            )
            client.send(warm, practice=practice)
        start = time.perf_counter()
        for n in range(count):
            practice = practices[n % 2]
            submission = compose(
                [document], sender=SENDERS[practice], recipients=[RECIPIENT], level=config.metadata_level
            )
            result = client.send(submission, practice=practice)
            if not result.ok:
                raise RuntimeError(f"baseline send failed: {result.message}")
        return time.perf_counter() - start


def write_drops(incoming: Path, ccda: bytes, count: int) -> None:
    incoming.mkdir(parents=True, exist_ok=True)
    practices = list(SENDERS)
    for n in range(count):
        practice = practices[n % 2]
        hidden = incoming / f".d{n:06d}"
        hidden.mkdir()
        (hidden / "ccd.xml").write_bytes(ccda)
        (hidden / "message.toml").write_text(
            f'practice = "{practice}"\nfrom = "{SENDERS[practice]}"\nto = ["{RECIPIENT}"]\n'
        )
        os.rename(hidden, incoming / f"d{n:06d}")


def run_outbox(config_path: Path, outbox: Path) -> tuple[float, Any]:
    from xdr_edge.sender.config import load_sender_config
    from xdr_edge.sender.outbox import Outbox

    config = load_sender_config(config_path)
    start = time.perf_counter()
    summary = Outbox(outbox, config=config).run(once=True)
    return time.perf_counter() - start, summary


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_server":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        child_server(Path(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--drops", type=int, default=10_000, help="drops for the outbox run")
    parser.add_argument("--workers", type=int, default=4, help="outbox workers")
    parser.add_argument(
        "--baseline", type=int, default=1000, help="sequential library sends, before and after"
    )
    parser.add_argument("--dir", type=Path, help="working directory (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()

    from xdr_edge.conformance.samples import sample_ccda

    workdir = Path(tempfile.mkdtemp(prefix="bench-outbox-", dir=args.dir))
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "_server", str(workdir / "lab")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        info = json.loads(server.stdout.readline())
        config = _config(info, workdir / "sender.toml", args.workers)
        document = workdir / "ccd.xml"
        ccda = sample_ccda()
        document.write_bytes(ccda)
        cpu = Cpu(server.pid)
        marks = [cpu.sample()]
        before = sequential(config, document, args.baseline)
        marks.append(cpu.sample())
        outbox = workdir / "outbox"
        written = time.perf_counter()
        write_drops(outbox / "incoming", ccda, args.drops)
        written = time.perf_counter() - written
        marks.append(cpu.sample())
        seconds, summary = run_outbox(config, outbox)
        marks.append(cpu.sample())
        after = sequential(config, document, args.baseline)
        marks.append(cpu.sample())
        sent = sum(1 for _ in (outbox / "sent").iterdir())
        stored = sum(1 for _ in Path(info["inbox"]).glob("[0-9]*/*/summary.json"))
    finally:
        server.stdin.close()
        server.wait(timeout=60)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    base_rate = args.baseline / ((before + after) / 2)
    rate = args.drops / seconds

    def cpu_ms(start: int, count: int) -> str:
        sender = (marks[start + 1][0] - marks[start][0]) / count * 1000
        receiver = (marks[start + 1][1] - marks[start][1]) / count * 1000
        return f"{sender:>12.1f}{receiver:>12.1f}"

    print(f"{'':<44}{'count':>8}{'seconds':>10}{'per second':>13}{'sender CPU':>12}{'recv. CPU':>12}")
    print(f"{'':<44}{'':>8}{'':>10}{'':>13}{'ms/drop':>12}{'ms/drop':>12}")
    rows = (
        ("library, sequential (before the outbox run)", args.baseline, before, 0),
        (f"outbox --once, {args.workers} workers", args.drops, seconds, 2),
        ("library, sequential (after the outbox run)", args.baseline, after, 3),
    )
    for label, count, took, mark in rows:
        print(f"{label:<44}{count:>8}{took:>10.2f}{count / took:>13.1f}{cpu_ms(mark, count)}")
    print(
        f"outbox / sequential library: {rate / base_rate:.2f}x  (writing the drops took {written:.1f} s, not counted)"
    )
    expected_stored = args.drops + 2 * (args.baseline + 2)
    if summary.sent != args.drops or sent != args.drops or stored != expected_stored:
        print(
            f"FAIL: sent {summary.sent} (folders {sent}), failed {summary.failed}; stored {stored} of {expected_stored}"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
