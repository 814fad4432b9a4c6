"""Throughput of the receiving cluster: nginx in front of one, then two ``xdr-edge serve --behind-proxy``
receivers sharing a PostgreSQL registry, against one receiver reached directly, in the same run.

Usage: ``.venv/bin/python benchmarks/bench_cluster.py [--clients 8] [--size-kib 100] [--per-client 40]
[--rounds 3] [--json results.json]``

Needs PostgreSQL and nginx (the same binaries the tests use, tests/servers.py). One PostgreSQL server with
durability ON (fsync, synchronous_commit, full_page_writes: a Success answer means the record survived a power
loss, as in production), the registry set up with the ``xdr-edge registry`` commands, two receiver processes
(8 worker threads each, an inbox each) and two nginx processes running the shipped configuration: one with
only the first receiver upstream, one with both. The configurations measured, in turn, every round (the order
rotates so that drift in the machine's load does not favour one):

- ``direct, 1 receiver``: plain HTTP straight to the first receiver with the forwarded-certificate headers
  nginx would set (what nginx itself costs);
- ``nginx, 1 receiver`` (the baseline of the ratios) and ``nginx, 2 receivers``: mutual TLS to nginx.

Each measurement: ``--clients`` threads released together, each sending ``--per-client`` valid submissions of
one ``--size-kib`` KiB C-CDA (fresh uniqueIds, composed and serialized before the clock starts) on its own
keep-alive connection; msg/s = Success answers / wall time from release to the last answer. Every answer must
be Success. Printed: per configuration the median msg/s over the rounds, the median p50 and p99 latency, and
msg/s as a ratio of ``nginx, 1 receiver``. On a machine of 2 cores, receivers, nginx, PostgreSQL and the
clients share the same cores: a second receiver can only add what the first one leaves idle.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests/ helpers

from benchmarks.site import post_concurrently
from tests.cluster import Cluster, Receiver, set_up_registry, submission
from tests.servers import nginx_proxy, postgres_server
from xdr_edge.devtools.pki import write_demo_pki
from xdr_edge.protocol.wire import build_request

DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}

Prepared = list[list[tuple[dict[str, str], bytes]]]  # per client: (headers, body) of each request


@dataclass(frozen=True)
class Measurement:
    config: str
    messages: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float]  # CPU seconds (user + system) spent during the measurement, by kind of process

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def cpu_ms_per_message(self, kind: str) -> float:
        return self.cpu.get(kind, 0.0) * 1000 / self.messages


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> dict[str, float]:
    """CPU time so far of this process and of every process it started (receivers, nginx, PostgreSQL and their
    children), by kind; other processes on the machine are not counted."""
    parents: dict[int, int] = {}
    usage: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        usage[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / _TICK)
    me = os.getpid()
    totals: dict[str, float] = {}
    for pid, (name, seconds) in usage.items():
        ancestor = pid
        while ancestor not in (me, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor != me:
            continue
        if pid == me:
            kind = "clients"
        elif name.startswith("postgres"):
            kind = "postgres"
        elif name.startswith("nginx"):
            kind = "nginx"
        else:
            kind = "receivers"
        totals[kind] = totals.get(kind, 0.0) + seconds
    return totals


def prepare(clients: int, per_client: int, size: int, extra: dict[str, str]) -> Prepared:
    """Fresh submissions, serialized: the clock measures the edge, not our composing."""
    prepared: Prepared = []
    for _ in range(clients):
        mine = []
        for _ in range(per_client):
            request = build_request(submission(size=size), endpoint="https://localhost/xdr")
            mine.append(({**request.headers(), **extra}, b"".join(request.body)))
        prepared.append(mine)
    return prepared


def measure(
    config: str, connect: Callable[[], http.client.HTTPConnection], prepared: Prepared
) -> Measurement:
    posts = post_concurrently(connect, prepared, cpu_seconds)
    if posts.failures:
        raise SystemExit(f"{config}: {len(posts.failures)} requests failed, e.g. {posts.failures[0]}")
    ordered = posts.latencies
    cpu_before, cpu_after = posts.cpu_before, posts.cpu_after
    return Measurement(
        config,
        len(ordered),
        posts.finished - posts.started,
        ordered[len(ordered) // 2] * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        {kind: cpu_after.get(kind, 0.0) - cpu_before.get(kind, 0.0) for kind in cpu_after},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--size-kib", type=int, default=100)
    parser.add_argument("--per-client", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8, help="worker threads of each receiver")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="xdr-bench-cluster-"))
    results: list[Measurement] = []
    try:
        with postgres_server(work / "pg", settings=DURABLE) as dsn:
            pki = write_demo_pki(work / "pki")
            set_up_registry(dsn, pki)
            receivers = [
                Receiver(
                    f"rx-{n}", dsn, work / f"inbox-{n}", work / f"rx-{n}.log", threads=args.threads
                ).start()
                for n in (1, 2)
            ]
            try:
                upstream = [("127.0.0.1", r.port) for r in receivers]
                ca, cert, key = pki.ca_cert, pki.server_cert, pki.server_key
                with (
                    nginx_proxy(work / "n1", upstream[:1], ca_file=ca, cert_file=cert, key_file=key) as one,
                    nginx_proxy(work / "n2", upstream, ca_file=ca, cert_file=cert, key_file=key) as two,
                ):
                    cluster = Cluster(pki, dsn, receivers, one)
                    context = cluster.context()
                    forwarded = {
                        "X-SSL-Client-Cert": urllib.parse.quote(
                            pki.practices["practice-a"].cert.read_text(), safe=""
                        ),
                        "X-SSL-Client-Verify": "SUCCESS",
                    }
                    configs: list[tuple[str, Callable[[], http.client.HTTPConnection], dict[str, str]]] = [
                        (
                            "direct, 1 receiver",
                            lambda: http.client.HTTPConnection("127.0.0.1", receivers[0].port, timeout=120),
                            forwarded,
                        ),
                        (
                            "nginx, 1 receiver",
                            lambda: http.client.HTTPSConnection(
                                "127.0.0.1", one, context=context, timeout=120
                            ),
                            {},
                        ),
                        (
                            "nginx, 2 receivers",
                            lambda: http.client.HTTPSConnection(
                                "127.0.0.1", two, context=context, timeout=120
                            ),
                            {},
                        ),
                    ]
                    size = args.size_kib * 1024
                    warm = prepare(args.clients, 3, size, {})
                    measure("warm-up", configs[2][1], warm)
                    for round_ in range(args.rounds):
                        order = configs[round_ % 3 :] + configs[: round_ % 3]
                        for name, connect, extra in order:
                            prepared = prepare(args.clients, args.per_client, size, extra)
                            result = measure(name, connect, prepared)
                            results.append(result)
                            print(
                                f"round {round_ + 1}: {name:<20} {result.rate:7.1f} msg/s  "
                                f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms",
                                flush=True,
                            )
            finally:
                for receiver in receivers:
                    receiver.stop()
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    names = ["direct, 1 receiver", "nginx, 1 receiver", "nginx, 2 receivers"]
    rates = {n: statistics.median(r.rate for r in results if r.config == n) for n in names}
    print()
    print(
        f"{args.clients} clients, {args.size_kib} KiB C-CDA, {args.per_client} messages per client, "
        f"{args.rounds} rounds; medians"
    )
    print(f"{'configuration':<22}{'msg/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}")
    for name in names:
        mine = [r for r in results if r.config == name]
        print(
            f"{name:<22}{rates[name]:9.1f}{statistics.median(r.p50_ms for r in mine):9.1f}"
            f"{statistics.median(r.p99_ms for r in mine):9.1f}{rates[name] / rates['nginx, 1 receiver']:8.2f}"
        )
    kinds = ["receivers", "nginx", "postgres", "clients"]
    print()
    print("CPU ms per message (user + system), medians:")
    print(f"{'configuration':<22}" + "".join(f"{k:>11}" for k in kinds) + f"{'total':>9}")
    for name in names:
        mine = [r for r in results if r.config == name]
        per = {k: statistics.median(r.cpu_ms_per_message(k) for r in mine) for k in kinds}
        print(f"{name:<22}" + "".join(f"{per[k]:11.1f}" for k in kinds) + f"{sum(per.values()):9.1f}")
    print(f"({os.cpu_count()} CPUs; at 100% of them, total CPU ms per message bounds msg/s)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "clients": args.clients,
                    "size_kib": args.size_kib,
                    "per_client": args.per_client,
                    "rounds": args.rounds,
                    "median_msg_per_s": rates,
                    "measurements": [r.__dict__ | {"msg_per_s": r.rate} for r in results],
                    "cpu_count": os.cpu_count(),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
