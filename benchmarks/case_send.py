"""``send``: small messages from one ``XdrClient``, sequential and from 8 threads, against the floors.

Every variant sends the same 100 KiB C-CDA (``--size-kib``), as fresh submissions composed before the clock
starts (composing reads the document's header and hashes it: the integrator's step, measured by nobody here),
to the no-check receiver in a process of its own. msg/s counts answered requests over the wall time after a
warm-up of a few messages; every answer must be Success. ``client CPU ms/msg`` is the sending process's CPU
time (all its threads) per message over the same interval: what the sender itself costs, a figure that
moves less than msg/s when other work competes for the cores.

- **floor: pre-built body, one connection** (the baseline): ``http.client`` posting bodies built before the
  clock on one kept-alive mutual-TLS connection: the least a sender can do per message.
- **requests.Session, pre-built body**: the same through requests (the HTTP library ``XdrClient`` uses), so the
  table shows what the library costs and what is ours.
- **naive: zeep + inline base64, requests.post per message**: the way an integrator new to XDR does it: a zeep
  Client built for the message, the document inline as base64 (no MTOM), and a new ``requests.post`` (a new
  TLS connection) per message.
- **XdrClient.send, sequential** and **XdrClient.send, 8 threads** (one client shared by the threads): the
  send path with everything it does per message (pre-flight, validation, metadata, envelope, MTOM streaming
  with the SHA-1 re-check, the answer classified). ``connections`` is how many client connections the receiver
  saw during the client's life, warm-up included.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import Case, Target, Variant
from benchmarks.site import (
    KIB,
    PRACTICE,
    SUCCESS,
    client_context,
    compose_from,
    nocheck_receiver,
    prepared_requests,
    sending_practice,
    server_stats,
    site_of,
)

WARM_UP = 5


def _endpoint(port: int) -> str:
    return f"https://127.0.0.1:{port}/xdr"


def _timed_posts(
    post: Callable[[dict[str, str], bytes], None], prepared: list[tuple[dict[str, str], bytes]]
) -> dict[str, float]:
    """Post the first ``WARM_UP`` requests, then time the rest: msg/s and this process's CPU per message."""
    for headers, body in prepared[:WARM_UP]:
        post(headers, body)
    measured = prepared[WARM_UP:]
    started, cpu = time.perf_counter(), time.process_time()
    for headers, body in measured:
        post(headers, body)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"msg_per_s": len(measured) / seconds, "cpu_ms": cpu * 1000 / len(measured)}


def floor(*, site: str, port: int, size: int, messages: int, **_: Any) -> dict[str, float]:
    import http.client

    where = site_of({"site": site})
    prepared = prepared_requests(where.document(size), messages + WARM_UP, _endpoint(port))
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=client_context(where), timeout=60)
    connection.connect()

    def post(headers: dict[str, str], body: bytes) -> None:
        connection.request("POST", "/xdr", body=body, headers=headers)
        answer = connection.getresponse().read()
        if SUCCESS not in answer:
            raise RuntimeError(f"not Success: {answer[:300]!r}")

    figures = _timed_posts(post, prepared)
    connection.close()
    return figures


def requests_session(*, site: str, port: int, size: int, messages: int, **_: Any) -> dict[str, float]:
    import requests

    where = site_of({"site": site})
    prepared = prepared_requests(where.document(size), messages + WARM_UP, _endpoint(port))
    session = requests.Session()
    session.trust_env = False
    session.cert = (str(where.cert), str(where.key))
    session.verify = str(where.ca)

    def post(headers: dict[str, str], body: bytes) -> None:
        answer = session.post(_endpoint(port), data=body, headers=headers, timeout=60)
        if SUCCESS not in answer.content:
            raise RuntimeError(f"not Success: {answer.content[:300]!r}")

    figures = _timed_posts(post, prepared)
    session.close()
    return figures


def naive(*, site: str, port: int, size: int, messages: int, **_: Any) -> dict[str, float]:
    import requests

    from xdr_edge.protocol.wire import build_plain_request

    where = site_of({"site": site})
    count = max(10, messages // 5)  # slow: a new zeep Client and a new TLS connection per message
    submissions = [compose_from(where.document(size)) for _ in range(count + 1)]

    def send(submission: Any) -> None:
        _, content_type, body = build_plain_request(submission, endpoint=_endpoint(port))
        answer = requests.post(
            _endpoint(port),
            data=body,
            headers={"Content-Type": content_type},
            cert=(str(where.cert), str(where.key)),
            verify=str(where.ca),
            timeout=60,
        )
        if SUCCESS not in answer.content:
            raise RuntimeError(f"not Success: {answer.content[:300]!r}")

    send(submissions[0])
    started, cpu = time.perf_counter(), time.process_time()
    for submission in submissions[1:]:
        send(submission)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"msg_per_s": count / seconds, "cpu_ms": cpu * 1000 / count}


def xdr_client(
    *, site: str, port: int, size: int, messages: int, threads: int = 1, **_: Any
) -> dict[str, float]:
    """``messages`` sends through one XdrClient: from this thread, or from ``threads`` threads sharing it,
    each sending its share one after the other (released together after a warm-up of their own)."""
    from xdr_edge.sender.client import XdrClient

    where = site_of({"site": site})
    shares = [
        [compose_from(where.document(size)) for _ in range(WARM_UP + messages // threads)]
        for _ in range(threads)
    ]
    before = server_stats(where, port)
    barrier = threading.Barrier(threads + 1)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    with XdrClient(
        endpoint=_endpoint(port), ca_bundle=where.ca, practices=[sending_practice(where)]
    ) as client:

        def sender(share: list[Any]) -> None:
            mine = []
            for number, submission in enumerate(share):
                if number == WARM_UP:
                    barrier.wait()
                started = time.perf_counter()
                result = client.send(submission, practice=PRACTICE)
                if not result.ok:
                    with lock:
                        failures.append(f"{result.outcome.value}: {result.message}")
                if number >= WARM_UP:
                    mine.append(time.perf_counter() - started)
            with lock:
                latencies.extend(mine)

        workers = [threading.Thread(target=sender, args=(share,)) for share in shares]
        for worker in workers:
            worker.start()
        barrier.wait()
        started, cpu = time.perf_counter(), time.process_time()
        for worker in workers:
            worker.join()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if failures:
        raise RuntimeError(f"{len(failures)} sends failed, e.g. {failures[0]}")
    after = server_stats(where, port)
    latencies.sort()
    count = len(latencies)
    return {
        "msg_per_s": count / seconds,
        "cpu_ms": cpu * 1000 / count,
        "connections": after["connections"] - before["connections"],
        "p50_ms": latencies[count // 2] * 1000,
    }


def _setup(work: Path, options: Mapping[str, Any]) -> Any:
    import contextlib

    from benchmarks.harness import run_child
    from benchmarks.site import Site

    @contextlib.contextmanager
    def fixture() -> Any:
        size = int(options["size_kib"]) * KIB
        made = run_child("benchmarks.site:make_site", {"work": str(work), "sizes": [size]})
        site = Site(Path(str(made["site"])))
        with nocheck_receiver(site, threads=8) as receiver:
            yield {"site": str(site.directory), "port": receiver["port"], "size": size}

    return fixture()


def _variants(args: Mapping[str, Any]) -> Sequence[Variant]:
    messages = int(args["messages"])
    common = {"messages": messages}
    return [
        Variant("floor: pre-built body, one connection", "benchmarks.case_send:floor", common),
        Variant("requests.Session, pre-built body", "benchmarks.case_send:requests_session", common),
        Variant(
            "naive: zeep + inline base64, requests.post per message",
            "benchmarks.case_send:naive",
            common,
            note=f"{max(10, messages // 5)} messages per round (a TLS handshake each)",
        ),
        Variant("XdrClient.send, sequential", "benchmarks.case_send:xdr_client", {**common, "threads": 1}),
        Variant("XdrClient.send, 8 threads", "benchmarks.case_send:xdr_client", {**common, "threads": 8}),
    ]


def _targets(_: Mapping[str, Any]) -> Sequence[Target]:
    floor_name = "floor: pre-built body, one connection"
    return [
        Target("XdrClient.send, sequential", floor_name, at_least=0.40, text="sequential >= 0.40x the floor"),
        Target(
            "XdrClient.send, 8 threads",
            "XdrClient.send, sequential",
            at_least=1.0,
            text="8 threads >= the sequential rate",
        ),
        Target(
            "XdrClient.send, 8 threads",
            None,
            at_most=8,
            figure="connections",
            text="8 threads: connections <= 8",
        ),
    ]


CASES = [
    Case(
        name="send",
        title="small messages from one XdrClient against the floors",
        main="msg_per_s",
        baseline="floor: pre-built body, one connection",
        setup=_setup,
        variants=_variants,
        targets=_targets,
        columns=[
            ("msg_per_s", "msg/s", ".0f"),
            ("p50_ms", "p50 ms", ".2f"),
            ("connections", "connections", ".0f"),
            ("cpu_ms", "client CPU ms/msg", ".2f"),
        ],
        description=__doc__ or "",
    )
]
