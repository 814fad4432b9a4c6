"""``receive``: msg/s of ``xdr-edge serve`` under 8 concurrent senders, against the no-check receiver and the
disk's own durable-write floor.

Every client thread has its own kept-alive mutual-TLS connection (handshake before the clock) and posts
``--per-client`` fresh 100 KiB submissions (``--size-kib``; new uniqueIds, composed and serialized before the
clock starts), one after the other; the threads are released together. msg/s is answers over the wall time
from release to the last answer; every answer must be Success. ``server CPU ms/msg`` is the receiver process's
CPU time (all its threads, from ``/proc``) per message over the same interval.

- **no-check receiver** (the baseline): the same server stack answering Success without reading the request
  beyond its MessageID (``benchmarks.site.NoCheckApp``).
- **xdr-edge serve**: the real receiver on an SQLite registry with an inbox on this disk (8 worker threads,
  one practice allowed all of them): identification, MTOM parsing, checks, and a durable store before each
  Success.
- **durable-write floor**: no network, no parsing: 8 threads each writing the same bytes per submission the
  simplest durable way (the document, ``metadata.xml`` and ``summary.json`` written and fsynced in a new
  directory, the directory fsynced, renamed into the day's folder, that folder fsynced): what this disk costs
  for the files of a submission made durable one at a time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import Case, Target, Variant, run_child
from benchmarks.site import (
    KIB,
    Site,
    client_context,
    nocheck_receiver,
    post_concurrently,
    prepared_requests,
    process_cpu_seconds,
    site_of,
    xdr_edge_serve,
)


def load(
    *, site: str, port: int, pid: int, size: int, clients: int, per_client: int, **_: Any
) -> dict[str, float]:
    """``clients`` threads, each on its own connection, posting ``per_client`` prepared requests."""
    where = site_of({"site": site})
    endpoint = f"https://127.0.0.1:{port}/xdr"
    prepared = [prepared_requests(where.document(size), per_client, endpoint) for _ in range(clients)]
    context = client_context(where)
    posts = post_concurrently(
        lambda: http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=120),
        prepared,
        lambda: process_cpu_seconds(pid),
    )
    if posts.failures:
        raise RuntimeError(
            f"{len(posts.failures)} requests were not answered Success, e.g. {posts.failures[0]}"
        )
    latencies = posts.latencies
    cpu = posts.cpu_after - posts.cpu_before
    count = len(latencies)
    return {
        "msg_per_s": count / (posts.finished - posts.started),
        "p50_ms": latencies[count // 2] * 1000,
        "p99_ms": latencies[min(count - 1, int(count * 0.99))] * 1000,
        "server_cpu_ms": cpu * 1000 / count,
    }


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def durable_floor(
    *, site: str, work: str, size: int, clients: int, per_client: int, **_: Any
) -> dict[str, float]:
    """The files of each submission written and made durable one submission at a time, from ``clients``
    threads at once."""
    where = site_of({"site": site})
    document = where.document(size).read_bytes()
    metadata = b"<lcm:SubmitObjectsRequest>" + b"m" * 6000 + b"</lcm:SubmitObjectsRequest>"
    summary = json.dumps({"practice": "practice-a", "documents": [{"size": size}]}, indent=2).encode()
    root = Path(work) / f"floor-{uuid.uuid4().hex}"
    staging, day = root / "staging", root / "2026-01-01"
    staging.mkdir(parents=True)
    day.mkdir()
    _fsync_dir(root)
    barrier = threading.Barrier(clients + 1)
    latencies: list[float] = []
    lock = threading.Lock()

    def writer() -> None:
        barrier.wait()
        mine = []
        for _ in range(per_client):
            started = time.perf_counter()
            token = uuid.uuid4().hex
            work_dir = staging / token
            (work_dir / "documents").mkdir(parents=True)
            _write_synced(work_dir / "documents" / "01-Document01.xml", document)
            _fsync_dir(work_dir / "documents")
            _write_synced(work_dir / "metadata.xml", metadata)
            _write_synced(work_dir / "summary.json", summary)
            _fsync_dir(work_dir)
            os.rename(work_dir, day / token)
            _fsync_dir(day)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=writer) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    latencies.sort()
    count = len(latencies)
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    return {
        "msg_per_s": count / seconds,
        "p50_ms": latencies[count // 2] * 1000,
        "p99_ms": latencies[min(count - 1, int(count * 0.99))] * 1000,
    }


def _setup(work: Path, options: Mapping[str, Any]) -> contextlib.AbstractContextManager[Mapping[str, Any]]:
    @contextlib.contextmanager
    def fixture() -> Iterator[Mapping[str, Any]]:
        size = int(options["size_kib"]) * KIB
        made = run_child("benchmarks.site:make_site", {"work": str(work), "sizes": [size]})
        site = Site(Path(str(made["site"])))
        with (
            nocheck_receiver(site, threads=8) as nocheck,
            xdr_edge_serve(site, work / "inbox", threads=8) as serve,
        ):
            yield {
                "site": str(site.directory),
                "size": size,
                "nocheck_port": nocheck["port"],
                "nocheck_pid": nocheck["pid"],
                "serve_port": serve["port"],
                "serve_pid": serve["pid"],
            }

    return fixture()


def _variants(args: Mapping[str, Any]) -> Sequence[Variant]:
    common = {"clients": int(args["clients"]), "per_client": int(args["per_client"])}
    return [
        Variant(
            "no-check receiver",
            "benchmarks.case_receive:load",
            {**common, "port": args["nocheck_port"], "pid": args["nocheck_pid"]},
        ),
        Variant(
            "xdr-edge serve (SQLite registry, inbox)",
            "benchmarks.case_receive:load",
            {**common, "port": args["serve_port"], "pid": args["serve_pid"]},
        ),
        Variant(
            "durable-write floor (one submission at a time)", "benchmarks.case_receive:durable_floor", common
        ),
    ]


def _targets(_: Mapping[str, Any]) -> Sequence[Target]:
    serve = "xdr-edge serve (SQLite registry, inbox)"
    return [
        Target(serve, None, at_least=150, text="xdr-edge serve >= 150 msg/s"),
        Target(
            serve, "no-check receiver", at_least=0.30, text="xdr-edge serve >= 0.30x the no-check receiver"
        ),
    ]


CASES = [
    Case(
        name="receive",
        title="8 senders against xdr-edge serve, the no-check receiver and the durable-write floor",
        main="msg_per_s",
        baseline="no-check receiver",
        setup=_setup,
        variants=_variants,
        targets=_targets,
        columns=[
            ("msg_per_s", "msg/s", ".0f"),
            ("p50_ms", "p50 ms", ".1f"),
            ("p99_ms", "p99 ms", ".1f"),
            ("server_cpu_ms", "server CPU ms/msg", ".2f"),
        ],
        description=__doc__ or "",
    )
]
