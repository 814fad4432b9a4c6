"""``large`` and ``memory``: a large document against its floor, and memory flat in document size.

``large`` (``--large-mb``, default 256 MiB): seconds to send one document, every variant in a fresh process,
to the no-check receiver.

- **floor: read + SHA-1, then a raw mutual-TLS upload** (the baseline): what any sender must do, reading the
  file once to hash it for the metadata, then streaming it over one mutual-TLS connection with
  ``http.client`` (no MTOM framing, no checks).
- **compose + XdrClient.send**: composing (which reads and hashes the document) and sending it (MTOM,
  streamed, the SHA-1 checked again while it goes out).

``memory``: peak RSS of each operation at 1 MiB and at ``--large-mb``, each in its own process; the ratio is
the large document's peak over the small one's, for the same operation (flat memory: about 1.0).

- **pack**: ``MtomBody.write_to`` a file (the writer path of a send, without the network);
- **send**: compose and ``XdrClient.send`` to the no-check receiver (the client process's peak);
- **receive**: a fresh ``xdr-edge serve`` takes one upload and stores it (the receiver process's peak, read
  from ``/proc`` before it stops; its start-up included).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import resource
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import Case, Target, Variant, run_child
from benchmarks.site import (
    MIB,
    PRACTICE,
    SUCCESS,
    Site,
    client_context,
    compose_from,
    nocheck_receiver,
    process_peak_rss_mb,
    sending_practice,
    site_of,
    xdr_edge_serve,
)

PIECE = 256 * 1024


def _own_peak_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def floor(*, site: str, port: int, size: int, **_: Any) -> dict[str, float]:
    where = site_of({"site": site})
    document = where.document(size)
    started = time.perf_counter()
    digest = hashlib.sha1(usedforsecurity=False)
    with document.open("rb") as source:
        while piece := source.read(PIECE):
            digest.update(piece)
    hashed = time.perf_counter() - started

    def pieces() -> Iterator[bytes]:
        with document.open("rb") as source:
            while piece := source.read(PIECE):
                yield piece

    connection = http.client.HTTPSConnection("127.0.0.1", port, context=client_context(where), timeout=600)
    connection.request(
        "POST",
        "/xdr",
        body=pieces(),
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(document.stat().st_size)},
    )
    answer = connection.getresponse().read()
    connection.close()
    if not answer:
        raise RuntimeError("no answer to the raw upload")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "hash_s": hashed, "mib_per_s": size / MIB / seconds}


def send(*, site: str, port: int, size: int, **_: Any) -> dict[str, float]:
    from xdr_edge.sender.client import XdrClient

    where = site_of({"site": site})
    endpoint = f"https://127.0.0.1:{port}/xdr"
    with XdrClient(endpoint=endpoint, ca_bundle=where.ca, practices=[sending_practice(where)]) as client:
        started = time.perf_counter()
        result = client.send(compose_from(where.document(size)), practice=PRACTICE)
        seconds = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"{result.outcome.value}: {result.message}")
    return {"seconds": seconds, "mib_per_s": size / MIB / seconds, "memory_mb": _own_peak_mb()}


def pack(*, site: str, work: str, size: int, **_: Any) -> dict[str, float]:
    from xdr_edge.protocol.wire import build_request

    where = site_of({"site": site})
    out = Path(work) / f"packed-{uuid.uuid4().hex}.mime"
    started = time.perf_counter()
    request = build_request(compose_from(where.document(size)), endpoint="https://127.0.0.1/xdr")
    with out.open("wb") as sink:
        written = request.body.write_to(sink)
    seconds = time.perf_counter() - started
    out.unlink()
    if written != len(request.body):
        raise RuntimeError("the packed body is not as long as declared")
    return {"seconds": seconds, "memory_mb": _own_peak_mb()}


def receive(*, site: str, work: str, size: int, **_: Any) -> dict[str, float]:
    """A fresh ``xdr-edge serve``, one upload of ``size`` bytes, the server's peak RSS."""
    from xdr_edge.protocol.wire import build_request

    where = site_of({"site": site})
    inbox = Path(work) / f"inbox-{uuid.uuid4().hex}"
    with xdr_edge_serve(where, inbox, threads=4) as serve:
        request = build_request(
            compose_from(where.document(size)), endpoint=f"https://127.0.0.1:{serve['port']}/xdr"
        )
        connection = http.client.HTTPSConnection(
            "127.0.0.1", serve["port"], context=client_context(where), timeout=600
        )
        started = time.perf_counter()
        connection.request("POST", "/xdr", body=iter(request.body), headers=request.headers())
        reply = connection.getresponse()
        answer = reply.read()
        seconds = time.perf_counter() - started
        connection.close()
        peak = process_peak_rss_mb(int(serve["pid"]))
    if reply.status != 200 or SUCCESS not in answer:
        raise RuntimeError(f"HTTP {reply.status}: {answer[:300]!r}")
    stored = [json.loads(p.read_text()) for p in inbox.glob("20*/*/summary.json")]
    if len(stored) != 1 or stored[0]["documents"][0]["size"] != where.document(size).stat().st_size:
        raise RuntimeError("the upload was not stored whole")
    return {"seconds": seconds, "memory_mb": peak}


def _setup(work: Path, options: Mapping[str, Any]) -> contextlib.AbstractContextManager[Mapping[str, Any]]:
    @contextlib.contextmanager
    def fixture() -> Iterator[Mapping[str, Any]]:
        small, large = MIB, int(options["large_mb"]) * MIB
        made = run_child("benchmarks.site:make_site", {"work": str(work), "sizes": [small, large]})
        site = Site(Path(str(made["site"])))
        with nocheck_receiver(site, threads=4) as receiver:
            yield {"site": str(site.directory), "port": receiver["port"], "small": small, "large": large}

    return fixture()


def _large_variants(args: Mapping[str, Any]) -> Sequence[Variant]:
    size = {"size": args["large"]}
    return [
        Variant("floor: read + SHA-1, raw mutual-TLS upload", "benchmarks.case_large:floor", size),
        Variant("compose + XdrClient.send", "benchmarks.case_large:send", size),
    ]


def _memory_variants(args: Mapping[str, Any]) -> Sequence[Variant]:
    mb = int(args["large_mb"])
    small, large = {"size": args["small"]}, {"size": args["large"]}
    variants = []
    for operation, function in (("pack", "pack"), ("send", "send"), ("receive", "receive")):
        variants.append(
            Variant(
                f"{operation}, 1 MiB",
                f"benchmarks.case_large:{function}",
                small,
                baseline=f"{operation}, 1 MiB",
            )
        )
        variants.append(
            Variant(
                f"{operation}, {mb} MiB",
                f"benchmarks.case_large:{function}",
                large,
                baseline=f"{operation}, 1 MiB",
            )
        )
    return variants


def _large_targets(_: Mapping[str, Any]) -> Sequence[Target]:
    return [
        Target(
            "compose + XdrClient.send",
            "floor: read + SHA-1, raw mutual-TLS upload",
            at_most=1.3,
            text="a large send within 1.3x of its floor",
        )
    ]


def _memory_targets(args: Mapping[str, Any]) -> Sequence[Target]:
    mb = int(args["large_mb"])
    return [
        Target(f"{op}, {mb} MiB", f"{op}, 1 MiB", at_most=1.25, figure="memory_mb", text=f"{op}: memory flat")
        for op in ("pack", "send", "receive")
    ]


CASES = [
    Case(
        name="large",
        title="one large document against its floor (read + SHA-1, raw mutual-TLS upload)",
        main="seconds",
        baseline="floor: read + SHA-1, raw mutual-TLS upload",
        setup=_setup,
        variants=_large_variants,
        targets=_large_targets,
        higher_is_better=False,
        columns=[
            ("seconds", "s", ".2f"),
            ("mib_per_s", "MiB/s", ".0f"),
            ("peak_rss_mb", "peak RSS MB", ".1f"),
        ],
        description=__doc__ or "",
    ),
    Case(
        name="memory",
        title="peak memory of pack, send and receive at 1 MiB and at the large size",
        main="memory_mb",
        baseline="pack, 1 MiB",
        setup=_setup,
        variants=_memory_variants,
        targets=_memory_targets,
        higher_is_better=False,
        columns=[("memory_mb", "peak RSS MB", ".1f"), ("seconds", "s", ".2f")],
        description=__doc__ or "",
    ),
]
