"""Where the time of a ``send`` or ``receive`` message goes: py-spy samples of the process under the benchmark's
own load, attributed to stages, in ms of CPU per message.

Usage::

    .venv/bin/pip install py-spy                  # not a dependency of the project: a sampling profiler
    .venv/bin/python benchmarks/where_time_goes.py send       # XdrClient.send, sequential, vs the floor
    .venv/bin/python benchmarks/where_time_goes.py threads    # 8 threads sharing one XdrClient
    .venv/bin/python benchmarks/where_time_goes.py receive    # the xdr-edge serve process under 8 clients
    .venv/bin/python benchmarks/where_time_goes.py receive --messages 60 --rate 250 --raw out.txt

Each run makes a site, starts the receiver the case uses (the no-check receiver, or ``xdr-edge serve`` with an
SQLite registry and an inbox) and runs the case's own measurement function (``benchmarks.case_send`` or
``benchmarks.case_receive``) in a child process, with ``py-spy record`` sampling the process that matters: the
sending child (``send``, ``threads``; and the floor, for comparison) or the receiver (``receive``). Only samples
of the measured work are kept: stacks through the function that sends, or, in the receiver, every thread not
waiting for a connection.

``--mode`` says which samples py-spy takes: ``gil`` (the default for ``send`` and ``threads``) only the thread
holding the interpreter lock, so the table is the Python work that one process can do one thread at a time (what
bounds a client shared by threads); ``active`` (the default for ``receive``) every thread that is not idle,
which includes threads blocked in ``fsync`` and in TLS writes (py-spy sees them as running); ``idle`` every
thread always: where threads spend their wall time, waiting included (``threads --mode idle``).

Each sample goes to the innermost stage its stack passes through (``STAGES``, tried from the leaf frame up), so
the shares add up to 100 %; ms per message is samples / rate / messages. py-spy may fall behind its rate on a
busy machine (it says so), which lowers every row alike: read the shares, and the process's CPU per message
printed above each table (measured the case's own way). Sampling costs the sampled process a little
(``--nonblocking``), so rates here are a few per cent below the benchmark's own.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from benchmarks.case_send import WARM_UP  # noqa: E402
from benchmarks.harness import run_child  # noqa: E402
from benchmarks.site import (  # noqa: E402
    KIB,
    Site,
    nocheck_receiver,
    process_cpu_seconds,
    user_system_seconds,
    xdr_edge_serve,
)

# (stage, substrings of a py-spy frame "function (file:line)"), tried from the leaf frame up: the first stage any
# frame matches, innermost first, takes the sample. Library frames come before ours so that, say, TLS writes
# made from the MTOM writer count as TLS, not as MTOM.
STAGES: Sequence[tuple[str, Sequence[str]]] = (
    (
        "waiting: lock (threading, queue, pool)",
        ("acquire (", "wait (threading.py", "(queue.py", "_get_conn ("),
    ),
    (
        "TLS/socket write (ssl, http.client send)",
        ("sendall (", "send (ssl.py", "write (ssl.py", "send (http/client.py"),
    ),
    (
        "TLS/socket read",
        ("recv_into (", "read (ssl.py", "readinto (socket.py", "readline (", "_read_status ("),
    ),
    ("sqlite", ("sqlite3", "execute (", "commit (", "executemany (")),
    ("fsync / durable files", ("fsync", "durable.py", "flush_dir", "_fsync", "Inbox._place (")),
    ("certificate decision (registry.identify)", ("identify (", "registry/verify.py", "x509", "crl")),
    ("lxml / XML parse", ("fromstring (", "XML (", "parse (xdr_edge/protocol/xml.py", "protocol/xml.py")),
    ("pre-flight validation", ("protocol/validate/",)),
    ("metadata writing (ebRIM)", ("protocol/metadata/writer.py",)),
    ("metadata reading (ebRIM)", ("protocol/metadata/reader.py",)),
    ("SOAP envelope writing", ("soap/request_writer.py", "soap/envelope.py")),
    ("SOAP envelope reading", ("soap/request_reader.py",)),
    ("MTOM writing + SHA-1 re-check", ("mtom/writer.py",)),
    ("MTOM reading (request; the answer on the sender)", ("mtom/reader.py", "multipart")),
    ("answer: reply parse + classify", ("protocol/classify.py", "soap/reply.py", "protocol/response.py")),
    ("wire: request/reply framing (protocol/wire.py)", ("build_reply", "protocol/wire.py")),
    ("inbox store (files, index)", ("receiver/store.py", "groupcommit.py", "registry/submissions.py")),
    ("logging", ("logging/",)),
    ("receiver app (checks, routing)", ("receiver/app.py", "receiver/deadlines.py")),
    ("urllib3 / requests (pool, headers)", ("urllib3/", "requests/")),
    ("sender session / client", ("sender/sessions.py", "sender/client.py", "sender/failures.py")),
    ("http.client / cheroot (HTTP framing)", ("http/client.py", "cheroot/")),
    ("other xdr_edge", ("xdr_edge/",)),  # shown with the file: "other xdr_edge: protocol/model.py"
)


def stage_of(frames: Sequence[str]) -> str:
    for frame in reversed(frames):
        for stage, patterns in STAGES:
            if any(pattern in frame for pattern in patterns):
                if stage == "other xdr_edge":
                    return f"{stage}: {frame.split('xdr_edge/', 1)[1].rsplit(':', 1)[0]}"
                return stage
    leaf = frames[-1] if frames else "?"
    return f"other: {leaf.split(' (', 1)[-1].rsplit(':', 1)[0]}"


def read_raw(path: Path, within: str) -> list[tuple[list[str], int]]:
    """py-spy's ``raw`` output (collapsed stacks ``frame;frame;... count``), keeping stacks through ``within``."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or within not in stack:
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def breakdown(stacks: list[tuple[list[str], int]], rate: int, messages: float) -> str:
    """Samples per stage as ms per message (samples / rate / messages) and share."""
    by_stage: collections.Counter[str] = collections.Counter()
    by_leaf: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        by_stage[stage_of(frames)] += count
        by_leaf[frames[-1]] += count
    total = sum(by_stage.values()) or 1
    ms = 1000 / rate / messages
    lines = [f"{'stage':<52} {'ms/msg':>7} {'share':>6}"]
    for stage, count in by_stage.most_common():
        lines.append(f"{stage:<52} {ms * count:7.3f} {100 * count / total:5.1f}%")
    lines.append(f"{'total (' + str(total) + ' samples)':<52} {ms * total:7.3f} 100.0%")
    lines.append("")
    lines.append("innermost Python frames (self time):")
    for leaf, count in by_leaf.most_common(15):
        lines.append(f"  {100 * count / total:5.1f}%  {leaf}")
    return "\n".join(lines)


@contextlib.contextmanager
def sampling(
    pid: int | None, command: Sequence[str] | None, raw: Path, rate: int, mode: str
) -> Iterator[Any]:
    """``py-spy record`` of ``pid`` (until the block ends) or of ``command`` (until it exits)."""
    options = [
        str(_py_spy()),
        "record",
        "--format",
        "raw",
        "--output",
        str(raw),
        "--rate",
        str(rate),
        "--nonblocking",
    ]
    if mode != "active":
        options.append(f"--{mode}")
    if pid is not None:
        process = subprocess.Popen(
            [*options, "--pid", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(1.0)  # py-spy attaches
        try:
            yield process
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(60)
    else:
        assert command is not None
        process = subprocess.Popen(
            [*options, "--", *command], cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        yield process
        process.wait()


def _py_spy() -> Path:
    """py-spy beside this interpreter (a venv's), else on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return beside if beside.exists() else Path(shutil.which("py-spy") or beside)


def child_command(function: str, args: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "benchmarks", "--child", function, json.dumps(args)]


def sampled_child(function: str, args: dict[str, Any], raw: Path, rate: int, mode: str) -> dict[str, Any]:
    with sampling(None, child_command(function, args), raw, rate, mode) as process:
        out = process.stdout.read()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]  # py-spy prints too
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{function} failed (exit {process.returncode}): {out.decode()[-2000:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("case", choices=["send", "threads", "receive"])
    parser.add_argument("--messages", type=int, default=None, help="send: messages; receive: per client")
    parser.add_argument("--clients", type=int, default=8, help="receive: client threads")
    parser.add_argument("--size-kib", type=int, default=100)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument(
        "--mode",
        choices=["active", "gil", "idle"],
        default=None,
        help="py-spy's samples: of threads not idle (default for receive), of the thread holding the "
        "interpreter lock (gil, default for send and threads), or every thread always (idle: wall time)",
    )
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if not _py_spy().exists():
        parser.error("py-spy is not installed: .venv/bin/pip install py-spy")
    size = args.size_kib * KIB
    mode = args.mode or ("active" if args.case == "receive" else "gil")
    work = Path(tempfile.mkdtemp(prefix="xdr-where-"))
    try:
        made = run_child("benchmarks.site:make_site", {"work": str(work), "sizes": [size]})
        site = Site(Path(str(made["site"])))
        raw = args.raw or work / "stacks.txt"
        if args.case in ("send", "threads"):
            messages = args.messages or 1000
            threads = 8 if args.case == "threads" else 1
            with nocheck_receiver(site, threads=8) as receiver:
                common = {
                    "site": str(site.directory),
                    "port": receiver["port"],
                    "size": size,
                    "messages": messages,
                }
                if args.case == "send":
                    floor_raw = raw.with_suffix(".floor.txt")
                    figures = sampled_child("benchmarks.case_send:floor", common, floor_raw, args.rate, mode)
                    print(f"floor: {figures['msg_per_s']:.0f} msg/s, {figures['cpu_ms']:.3f} ms CPU/msg")
                    print(
                        breakdown(read_raw(floor_raw, "post (benchmarks/case_send.py"), args.rate, messages)
                    )
                    print()
                receiver_cpu = process_cpu_seconds(receiver["pid"])
                figures = sampled_child(
                    "benchmarks.case_send:xdr_client", {**common, "threads": threads}, raw, args.rate, mode
                )
                receiver_cpu = process_cpu_seconds(receiver["pid"]) - receiver_cpu
            print(
                f"XdrClient.send, {threads} thread(s): {figures['msg_per_s']:.0f} msg/s, "
                f"{figures['cpu_ms']:.3f} ms CPU/msg, {figures.get('connections', 0):.0f} connections; "
                f"the no-check receiver {receiver_cpu * 1000 / (messages + WARM_UP * threads):.3f} ms CPU/msg"
            )
            print(breakdown(read_raw(raw, "sender (benchmarks/case_send.py"), args.rate, messages))
        else:
            per_client = args.messages or 60
            inbox = work / "inbox"
            with xdr_edge_serve(site, inbox, threads=8) as server:
                load = {
                    "site": str(site.directory),
                    "port": server["port"],
                    "pid": server["pid"],
                    "size": size,
                    "clients": args.clients,
                    "per_client": per_client,
                }
                run_child("benchmarks.case_receive:load", {**load, "per_client": 5})  # warm-up
                count = args.clients * per_client
                before = user_system_seconds(server["pid"])
                with sampling(server["pid"], None, raw, args.rate, mode):
                    figures = run_child("benchmarks.case_receive:load", load)
                user, system = (
                    b - a for a, b in zip(before, user_system_seconds(server["pid"]), strict=True)
                )
            print(
                f"xdr-edge serve, {args.clients} clients: {figures['msg_per_s']:.0f} msg/s, "
                f"{figures['server_cpu_ms']:.3f} ms server CPU/msg "
                f"(user {user * 1000 / count:.3f}, system {system * 1000 / count:.3f}), p50 {figures['p50_ms']:.1f} ms"
            )
            stacks = [(frames, count) for frames, count in read_raw(raw, "") if not _idle_server(frames)]
            print(breakdown(stacks, args.rate, count))
        print(
            f"\nload average now: {os.getloadavg()[0]:.1f}; stacks: {raw if args.raw or args.keep else '(deleted)'}"
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _idle_server(frames: Sequence[str]) -> bool:
    """Samples of the receiver's threads that wait for a connection or a request (not per-message work)."""
    leaf = frames[-1] if frames else ""
    waiting_for_work = any("_process_connections_until_interrupted" in frame for frame in frames[-4:])
    return waiting_for_work or "select (selectors.py" in leaf or "poll (" in leaf or "accept (" in leaf


if __name__ == "__main__":
    raise SystemExit(main())
