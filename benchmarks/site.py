"""What the benchmark cases run against: a lab site (demo PKI, SQLite registry with the demo practices bound),
test documents, and receivers in processes of their own.

- the **no-check receiver** (``python -m benchmarks --serve nocheck SITE``): our own mutual-TLS server
  (:class:`xdr_edge.receiver.server.XdrServer`, the same cheroot set-up ``xdr-edge serve`` runs) with an
  application that reads the body and answers a Success RegistryResponse relating to the request's MessageID
  (found by a byte search in the first 64 KiB), without any check: the floor of what a receiver costs, and a
  peer that costs a sender as little as possible. ``GET /stats`` answers how many requests and how many
  distinct client connections (remote ports) it has seen, so a case can count the connections a sender opened.
- **xdr-edge serve**: the real receiver, started with the ``xdr-edge`` command on the site's registry and an
  inbox of its own.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SENDER = "dr.smith@direct.practice-a.org"
RECIPIENT = "inbox@direct.hisp.example"
PRACTICE = "practice-a"
KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class Site:
    """Paths of a site made by :func:`make_site` (passed to children as plain JSON)."""

    directory: Path

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    @property
    def ca(self) -> Path:
        return self.pki / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.pki / f"{PRACTICE}.pem"

    @property
    def key(self) -> Path:
        return self.pki / f"{PRACTICE}.key"

    @property
    def registry(self) -> Path:
        return self.directory / "registry.db"

    def document(self, size: int) -> Path:
        return self.directory / f"ccd-{size}.xml"


def make_site(work: str, sizes: list[int]) -> dict[str, Any]:
    """``--child``: a lab site under ``work/site`` and one C-CDA per size in ``sizes`` (bytes)."""
    from xdr_edge.devtools.lab import prepare_lab

    site = Site(Path(work) / "site")
    prepare_lab(site.directory)
    for size in sizes:
        write_ccda(site.document(size), size)
    return {"site": str(site.directory)}


def write_ccda(path: Path, size: int) -> None:
    """A synthetic C-CDA padded with an XML comment to ``size`` bytes, written 1 MiB at a time."""
    from xdr_edge.conformance.samples import sample_ccda

    head = sample_ccda() + b"\n<!--"
    tail = b"-->\n"
    padding = max(0, size - len(head) - len(tail))
    block = (b"0123456789abcdef" * (MIB // 16))[:MIB]
    with path.open("wb") as out:
        out.write(head)
        while padding:
            piece = block[: min(MIB, padding)]
            out.write(piece)
            padding -= len(piece)
        out.write(tail)


def client_context(site: Site) -> ssl.SSLContext:
    from xdr_edge.certs import load_identity
    from xdr_edge.practice import ClientCredential
    from xdr_edge.tls import client_ssl_context

    return client_ssl_context(load_identity(ClientCredential(cert=site.cert, key=site.key)), site.ca)


def sending_practice(site: Site) -> Any:
    from xdr_edge.practice import Binding, ClientCredential, Practice

    return Practice(
        id=PRACTICE,
        name="Demo practice-a",
        bindings=(Binding.parse(SENDER),),
        credential=ClientCredential(cert=site.cert, key=site.key),
    )


def compose_from(path: Path) -> Any:
    """A fresh submission (new uniqueIds) of the document at ``path``, as an integrator composes one."""
    from xdr_edge.protocol.compose import compose
    from xdr_edge.protocol.model import Document, MetadataLevel

    return compose(
        [Document.from_path(path)], sender=SENDER, recipients=[RECIPIENT], level=MetadataLevel.MINIMAL
    )


def prepared_requests(path: Path, count: int, endpoint: str) -> list[tuple[dict[str, str], bytes]]:
    """``count`` fresh requests of the document at ``path``, each as (headers, whole body): what a floor posts."""
    from xdr_edge.protocol.soap import RequestEnvelopeWriter
    from xdr_edge.protocol.wire import build_request

    writer = RequestEnvelopeWriter()
    prepared = []
    for _ in range(count):
        request = build_request(compose_from(path), endpoint=endpoint, writer=writer)
        prepared.append((request.headers(), b"".join(request.body)))
    return prepared


SUCCESS = b"ResponseStatusType:Success"


@dataclass(frozen=True)
class ConcurrentPosts:
    """What :func:`post_concurrently` saw: each answer's latency (sorted), the answers that were not Success,
    the moment the clients were released, the moment the last one finished, and the CPU readings taken just
    before the release and after the last client finished."""

    latencies: list[float]
    failures: list[str]
    started: float
    finished: float
    cpu_before: Any
    cpu_after: Any


def post_concurrently(
    connect: Callable[[], http.client.HTTPConnection],
    prepared: Sequence[Sequence[tuple[dict[str, str], bytes]]],
    cpu: Callable[[], Any],
) -> ConcurrentPosts:
    """One thread per list in ``prepared``, each on its own kept-alive connection from ``connect`` (connected
    before the clock: a sender keeps its connection), posting its requests one after the other to ``/xdr``; the
    threads are released together. An answer is a failure unless it is HTTP 200 with a Success status."""
    barrier = threading.Barrier(len(prepared) + 1)
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []
    finished: list[float] = []

    def client(requests: Sequence[tuple[dict[str, str], bytes]]) -> None:
        connection = connect()
        connection.connect()
        barrier.wait()
        mine: list[float] = []
        for headers, body in requests:
            started = time.perf_counter()
            connection.request("POST", "/xdr", body=body, headers=headers)
            reply = connection.getresponse()
            answer = reply.read()
            mine.append(time.perf_counter() - started)
            if reply.status != 200 or SUCCESS not in answer:
                with lock:
                    failures.append(f"HTTP {reply.status}: {answer[:300]!r}")
        connection.close()
        with lock:
            latencies.extend(mine)
            finished.append(time.perf_counter())

    threads = [threading.Thread(target=client, args=(requests,)) for requests in prepared]
    for thread in threads:
        thread.start()
    cpu_before = cpu()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    cpu_after = cpu()
    return ConcurrentPosts(sorted(latencies), failures, started, max(finished), cpu_before, cpu_after)


# -- the no-check receiver -----------------------------------------------------------------------------------

_MESSAGE_ID = re.compile(rb"<(?:[A-Za-z0-9_]+:)?MessageID[^>]*>\s*([^<\s]+)\s*<")
_PLACEHOLDER = b"urn:uuid:00000000-0000-0000-0000-000000000000"


class NoCheckApp:
    """Reads the request and answers Success (MTOM or plain, as asked) relating to its MessageID; no checks."""

    def __init__(self) -> None:
        from xdr_edge.protocol.response import RegistryResponse
        from xdr_edge.protocol.wire import build_reply

        self._mtom = build_reply(RegistryResponse.success(), relates_to=_PLACEHOLDER.decode(), mtom=True)
        self._plain = build_reply(RegistryResponse.success(), relates_to=_PLACEHOLDER.decode(), mtom=False)
        self._lock = threading.Lock()
        self._requests = 0
        self._peers: set[str] = set()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO") == "/stats":
            with self._lock:
                stats = {"requests": self._requests, "connections": len(self._peers)}
            body = json.dumps(stats).encode()
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        stream = environ["wsgi.input"]
        first = stream.read(65536)
        while stream.read(1048576):
            pass
        found = _MESSAGE_ID.search(first)
        reply = self._mtom if "multipart" in environ.get("CONTENT_TYPE", "") else self._plain
        body = reply.body.replace(_PLACEHOLDER, found.group(1) if found else b"")
        with self._lock:
            self._requests += 1
            self._peers.add(f"{environ.get('REMOTE_ADDR')}:{environ.get('REMOTE_PORT')}")
        start_response("200 OK", [("Content-Type", reply.content_type), ("Content-Length", str(len(body)))])
        return [body]


def serve_nocheck(site_dir: str, threads: int) -> None:
    """``--serve nocheck``: run the no-check receiver; print its port as JSON; stop when stdin closes."""
    from xdr_edge.receiver.server import ServerConfig, XdrServer

    site = Site(Path(site_dir))
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        cert=site.pki / "server.pem",
        key=site.pki / "server.key",
        client_ca=site.ca,
        threads=threads,
        socket_timeout=120,
    )
    server = XdrServer(NoCheckApp(), config).start()
    print(json.dumps({"port": server.port, "pid": os.getpid()}), flush=True)
    sys.stdin.read()
    server.stop()


@contextlib.contextmanager
def nocheck_receiver(site: Site, threads: int = 8) -> Iterator[dict[str, Any]]:
    """The no-check receiver in a process of its own, for the duration of the block."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "--serve", "nocheck", str(site.directory), str(threads)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the no-check receiver did not start")
        yield json.loads(line)
    finally:
        process.stdin.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def server_stats(site: Site, port: int) -> dict[str, int]:
    """The no-check receiver's counters (``GET /stats``)."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=client_context(site), timeout=30)
    try:
        connection.request("GET", "/stats")
        stats: dict[str, int] = json.loads(connection.getresponse().read())
        return stats
    finally:
        connection.close()


# -- xdr-edge serve ----------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(site: Site, port: int) -> bool:
    try:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=client_context(site), timeout=2)
        try:
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        finally:
            connection.close()
    except OSError:
        return False


@contextlib.contextmanager
def xdr_edge_serve(
    site: Site, inbox: Path, *, threads: int = 8, extra: tuple[str, ...] = ()
) -> Iterator[dict[str, Any]]:
    """``xdr-edge serve`` on the site's registry with mutual TLS, ``threads`` workers, and one practice allowed
    every worker (a benchmark loads one practice; its share of the workers is tested elsewhere). Its log
    (one line per request, as operators run it) goes to a file beside the inbox."""
    port = _free_port()
    log = inbox.parent / f"{inbox.name}.log"
    inbox.mkdir(parents=True, exist_ok=True)
    command = [
        *(sys.executable, "-m", "xdr_edge", "serve", "--host", "127.0.0.1", "--port", str(port)),
        *("--cert", str(site.pki / "server.pem"), "--key", str(site.pki / "server.key")),
        *("--client-ca", str(site.ca), "--registry", f"sqlite:///{site.registry}"),
        *("--inbox", str(inbox), "--receiver-name", "bench", "--threads", str(threads)),
        *("--max-requests-per-practice", str(threads), *extra),
    ]
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while not _healthy(site, port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"xdr-edge serve did not start:\n{log.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.1)
        yield {"port": port, "pid": process.pid}
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def user_system_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process (all its threads) so far, from ``/proc``."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its threads) so far, from ``/proc``."""
    return sum(user_system_seconds(pid))


def process_peak_rss_mb(pid: int) -> float:
    """A running process's peak resident set so far (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def site_of(args: Mapping[str, Any]) -> Site:
    return Site(Path(args["site"]))
