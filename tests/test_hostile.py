"""Hostile input and hostile peers against the real ``xdr-edge serve`` in a child process (mutual TLS, default
settings unless a test says otherwise), with the server's memory read from ``/proc/PID/status``.

* structural floods (xdr_edge.devtools.floods: 400,000 elements of 20 attributes in 49 MiB of plain SOAP; one
  element with millions of attributes; one with millions of namespace declarations) are answered with a 400
  fault while the server's peak RSS grows by at most 1.5 times the body per flood in progress (the envelope
  is held once while it is read; no tree is built), one at a time and four at once;
* ten connections trickling their request headers, from an enrolled and from a trusted but not enrolled
  certificate, do not keep an enrolled practice's send from succeeding;
* one practice cannot have more than its share of requests in progress: the next gets 503 + Retry-After while
  another practice is served;
* a send to a server whose workers are all held reports "nothing was sent", not "outcome unknown";
* a 2 GiB answer (made as it is sent, never stored) is read up to the client's cap, in bounded memory.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.concurrency import run_together
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.devtools.floods import FLOOD_KINDS, HugeAnswer, write_flood
from xdr_edge.devtools.pki import DemoPki, write_demo_pki
from xdr_edge.practice import Binding, ClientCredential, Practice
from xdr_edge.protocol.classify import Outcome
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.model import Document
from xdr_edge.protocol.wire import build_request
from xdr_edge.registry import open_registry
from xdr_edge.sender.client import RetryPolicy, SendResult, XdrClient

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")

A_FROM = "dr.smith@direct.practice-a.org"
B_FROM = "dr.jones@direct.practice-b.org"
C_FROM = "dr.who@direct.practice-c.org"
TO = "records@direct.hospital.example"
MIB = 1024 * 1024
SOAP_TYPE = 'application/soap+xml; charset=UTF-8; action="urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"'


# ----------------------------------------------------------------------------------------------------------
# The site and the server


@dataclass(frozen=True)
class Site:
    """A demo PKI (practice-a and practice-b enrolled and bound; practice-c trusted, never enrolled)."""

    directory: Path
    pki: DemoPki

    def practice(self, practice_id: str) -> Practice:
        demo = self.pki.practices[practice_id]
        return Practice(
            id=practice_id,
            bindings=tuple(Binding.parse(a) for a in demo.addresses),
            credential=ClientCredential(cert=demo.cert, key=demo.key),
        )

    def context(self, practice_id: str) -> ssl.SSLContext:
        demo = self.pki.practices[practice_id]
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(demo.cert), str(demo.key))
        return context


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    directory = tmp_path_factory.mktemp("site")
    practices = (("practice-a", (A_FROM,)), ("practice-b", (B_FROM,)), ("practice-c", (C_FROM,)))
    pki = write_demo_pki(directory / "pki", practices=practices)
    registry = open_registry(str(directory / "registry.db"))
    registry.init(actor="test")
    registry.add_trust_anchor(pki.ca_cert.read_bytes(), actor="test")
    for practice_id, address in (("practice-a", A_FROM), ("practice-b", B_FROM)):
        registry.add_practice(practice_id, practice_id, actor="test")
        registry.enroll(practice_id, pki.practices[practice_id].cert.read_bytes(), actor="test")
        registry.bind(practice_id, address, actor="test")
    (directory / "serve.toml").write_text(
        "[server]\n"
        f'host = "127.0.0.1"\nport = 0\ncert = "{pki.server_cert}"\nkey = "{pki.server_key}"\n'
        f'client_ca = "{pki.ca_cert}"\n'
        f'[receiver]\nregistry = "{directory / "registry.db"}"\ninbox = "{directory / "inbox"}"\n'
    )
    return Site(directory, pki)


@dataclass
class Served:
    """A running ``xdr-edge serve`` child: its pid, port and what it logged."""

    process: subprocess.Popen[str]
    port: int
    lines: list[str]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/xdr"

    def memory_mb(self) -> dict[str, float]:
        """VmHWM (peak RSS) and VmRSS of the server process, in MB."""
        found: dict[str, float] = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0]) / 1024
        return found


@pytest.fixture
def serve(site: Site) -> Iterator[Callable[..., Served]]:
    """Start ``xdr-edge serve --config`` (plus ``flags``) in a child process; stopped with SIGTERM at the end."""
    started: list[Served] = []

    def start(*flags: str) -> Served:
        launcher = "from xdr_edge.cli import main; main()"
        command = [sys.executable, "-c", launcher, "serve", "--config", str(site.directory / "serve.toml")]
        process = subprocess.Popen(
            [*command, *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=site.directory,
        )
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "listening on https://127.0.0.1:" in first, first + process.stdout.read()
        served = Served(process, int(first.split("127.0.0.1:")[1].split("/")[0]), [])
        threading.Thread(target=_collect, args=(process, served.lines), daemon=True).start()
        started.append(served)
        return served

    yield start
    for served in started:
        served.process.send_signal(signal.SIGTERM)
        try:
            served.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            served.process.kill()
            served.process.wait()


def _collect(process: subprocess.Popen[str], lines: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    waited: float  # from the last request byte handed to the kernel to the answer's status line


def _post(
    site: Site, served: Served, body: Path | bytes, content_type: str, practice: str = "practice-a"
) -> Answer:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", served.port, context=site.context(practice), timeout=120
    )
    try:
        if isinstance(body, Path):
            with body.open("rb") as stream:
                headers = {"Content-Type": content_type, "Content-Length": str(body.stat().st_size)}
                connection.request("POST", "/xdr", body=stream, headers=headers)
        else:
            connection.request("POST", "/xdr", body=body, headers={"Content-Type": content_type})
        sent = time.monotonic()
        response = connection.getresponse()
        waited = time.monotonic() - sent
        return Answer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read(), waited
        )
    finally:
        connection.close()


def _normal_request(site: Site, sender: str = A_FROM) -> tuple[str, bytes]:
    document = Document.from_bytes(sample_ccda(), name="ccd.xml")
    request = build_request(compose([document], sender=sender, recipients=[TO]), endpoint="https://x/xdr")
    return request.content_type, b"".join(request.body)


def _send(site: Site, served: Served, practice: str, sender: str, **kwargs: object) -> SendResult:
    document = Document.from_bytes(sample_ccda(), name="ccd.xml")
    kwargs.setdefault("retry", RetryPolicy(max_attempts=1))
    with XdrClient(
        endpoint=served.url,
        ca_bundle=site.pki.ca_cert,
        practices=[site.practice(practice)],
        **kwargs,  # type: ignore[arg-type]
    ) as client:
        return client.send(compose([document], sender=sender, recipients=[TO]), practice=practice)


# ----------------------------------------------------------------------------------------------------------
# Structural floods


@pytest.fixture(scope="module")
def floods(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("floods")
    paths: dict[str, Path] = {}
    for kind in FLOOD_KINDS:
        paths[kind] = directory / f"{kind}.xml"
        with paths[kind].open("wb") as out:
            write_flood(kind, out)
    return paths


def _baseline(site: Site, served: Served) -> float:
    """The server's peak RSS after one normal exchange (imports, TLS, registry, inbox all warmed up)."""
    content_type, body = _normal_request(site)
    assert _post(site, served, body, content_type).status == 200
    return served.memory_mb()["VmHWM"]


def _assert_refused_as_too_structured(answer: Answer) -> None:
    assert answer.status == 400, answer.body[:500]
    assert b"too much structure" in answer.body and b"Sender" in answer.body
    # the fault comes once the body is in: counting 49 MiB takes milliseconds, not a tree of gigabytes
    assert answer.waited < 3.0, f"the fault took {answer.waited:.2f} s after the upload"


@pytest.mark.parametrize("kind", FLOOD_KINDS)
def test_a_structural_flood_is_refused_without_building_a_tree(
    site: Site, serve: Callable[..., Served], floods: dict[str, Path], kind: str
) -> None:
    served = serve()
    baseline = _baseline(site, served)
    body = floods[kind]
    size_mb = body.stat().st_size / MIB
    assert 48 < size_mb < 50
    answer = _post(site, served, body, SOAP_TYPE)
    _assert_refused_as_too_structured(answer)
    memory = served.memory_mb()
    # before the budget: 2.1 GB (attributes), 1.9 GB (one element), 0.8 GB (namespaces) for these bodies
    assert memory["VmHWM"] - baseline < 1.5 * size_mb, (memory, baseline)
    assert memory["VmRSS"] - baseline < 64, (memory, baseline)  # and nothing is held afterwards
    content_type, normal = _normal_request(site)
    assert _post(site, served, normal, content_type).status == 200  # still serving


def test_four_floods_at_once(site: Site, serve: Callable[..., Served], floods: dict[str, Path]) -> None:
    served = serve()
    baseline = _baseline(site, served)
    answers = run_together(4, lambda _: _post(site, served, floods["attributes"], SOAP_TYPE), timeout=300)
    assert len(answers) == 4
    for answer in answers:
        _assert_refused_as_too_structured(answer)
    memory = served.memory_mb()
    size_mb = floods["attributes"].stat().st_size / MIB
    assert memory["VmHWM"] - baseline < 4 * 1.5 * size_mb, (memory, baseline)  # before: 8.2 GB
    assert memory["VmRSS"] - baseline < 128, (memory, baseline)  # before: 6.1 GB held afterwards


# ----------------------------------------------------------------------------------------------------------
# Slow headers, busy workers, one practice's share


class _Trickler:
    """``count`` connections that each complete the TLS handshake, then send their request headers one byte a
    second, reconnecting whenever the server gives up on them, until stopped."""

    def __init__(self, site: Site, served: Served, practice: str, count: int) -> None:
        self.context = site.context(practice)
        self.port = served.port
        self.stop = threading.Event()
        self.answers: list[bytes] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def __enter__(self) -> _Trickler:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def _run(self) -> None:
        head = b"POST /xdr HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/soap+xml\r\n" * 50
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=30) as raw:
                    with self.context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                        with self.lock:
                            self.connections += 1
                        self._trickle(tls, head)
            except OSError:
                self.stop.wait(0.2)

    def _trickle(self, tls: ssl.SSLSocket, head: bytes) -> None:
        tls.settimeout(1.0)
        for byte in head:
            if self.stop.is_set():
                return
            tls.sendall(bytes([byte]))
            try:
                answer = tls.recv(4096)
            except TimeoutError:
                continue  # the server is still waiting for us: one more byte
            with self.lock:
                self.answers.append(answer)
            return  # answered (408) or closed: connect again


@pytest.mark.slow
@pytest.mark.parametrize("attacker", ["practice-a", "practice-c"], ids=["enrolled", "trusted-not-enrolled"])
def test_ten_slow_header_connections_do_not_keep_an_enrolled_practice_out(
    site: Site, serve: Callable[..., Served], attacker: str
) -> None:
    """Ten workers (the default), ten connections trickling headers (before: each held its worker for the
    socket timeout, and a send failed after 10 s). Each is cut off at the header deadline (5 s) with a 408 and
    comes straight back; the send waits its turn in the queue and gets through."""
    served = serve()
    with _Trickler(site, served, attacker, 10) as trickler:
        deadline = time.monotonic() + 30
        while trickler.connections < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # every worker is now reading a trickle
        started = time.monotonic()
        result = _send(site, served, "practice-a", A_FROM, timeout=(10.0, 30.0))
        took = time.monotonic() - started
    assert result.outcome is Outcome.SUCCESS, result.message
    assert took < 15, f"the send took {took:.1f} s"
    assert any(a.startswith(b"HTTP/1.1 408 Request Timeout") for a in trickler.answers), trickler.answers[:3]
    assert any(
        "refused with 408: the request line and headers did not arrive within 5 s" in line
        for line in served.lines
    )


@pytest.mark.slow
def test_a_send_to_a_server_whose_workers_are_held_says_nothing_was_sent(
    site: Site, serve: Callable[..., Served]
) -> None:
    """Two workers, both held by trickling connections for longer than the client waits (header deadline set
    to a minute here): the TLS handshake of the send never completes, no request byte leaves, and that is
    what the result says (before: OutcomeUnknown, "the HISP may or may not have stored it", bytes_sent 0)."""
    served = serve("--threads", "2", "--header-timeout", "60")
    with _Trickler(site, served, "practice-c", 2) as trickler:
        deadline = time.monotonic() + 30
        while trickler.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        result = _send(site, served, "practice-a", A_FROM, timeout=(2.0, 30.0))
    assert result.outcome is Outcome.TRANSPORT_ERROR, result.message
    assert result.message.endswith("nothing was sent") and result.bytes_sent == 0


@pytest.mark.slow
def test_one_practice_cannot_take_every_worker(site: Site, serve: Callable[..., Served]) -> None:
    """Four workers, two requests per practice: practice-a's third request in progress is refused with 503 and
    Retry-After before its body is read, while practice-b is served."""
    served = serve("--threads", "4", "--max-requests-per-practice", "2")
    content_type, body = _normal_request(site)
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(2):  # two uploads that are slow (but within the pacing grace): each holds a worker
            raw = socket.create_connection(("127.0.0.1", served.port), timeout=30)
            tls = site.context("practice-a").wrap_socket(raw, server_hostname="127.0.0.1")
            head = (
                f"POST /xdr HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
            )
            tls.sendall(head.encode())
            held.append(tls)
        # cheroot answers "100 Continue" once it has read a request's headers, just before it calls the app:
        # from then on the request is (or is about to be) in progress, whatever the machine's load.
        for tls in held:
            interim = _read_head(tls)
            assert interim.startswith(b"HTTP/1.1 100 Continue"), (interim, served.lines)
            tls.sendall(body[:100])
        # The app takes the practice's slot just after: ask until the third request is refused (each ask is
        # a new submission, so an early one that got in is harmless).
        answers: list[Answer] = []

        def refused() -> bool:
            fresh_type, fresh = _normal_request(site)
            answers.append(_post(site, served, fresh, fresh_type))
            return answers[-1].status == 503

        assert _wait_for(refused, 20.0), ([a.status for a in answers], served.lines)
        busy = answers[-1]
        assert busy.headers.get("retry-after") == "5"
        assert b"requests of this practice are already in progress here" in busy.body
        other_type, other = _normal_request(site, B_FROM)
        assert _post(site, served, other, other_type, practice="practice-b").status == 200
    finally:
        for tls in held:
            tls.close()
    assert _wait_for(lambda: _post(site, served, body, content_type).status == 200, 20.0)
    assert any("outcome=practice-busy status=503" in line for line in served.lines)


def _read_head(tls: ssl.SSLSocket) -> bytes:
    """What the server sent up to the first blank line (an interim or final response head), or up to EOF."""
    received = b""
    while b"\r\n\r\n" not in received:
        piece = tls.recv(4096)
        if not piece:
            break
        received += piece
    return received


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


# ----------------------------------------------------------------------------------------------------------
# A huge answer


_CLIENT = """
import json, sys
from pathlib import Path
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.practice import Binding, ClientCredential, Practice
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.model import Document
from xdr_edge.sender.client import RetryPolicy, XdrClient
endpoint, ca, cert, key, sender = sys.argv[1:6]
practice = Practice(id="p", bindings=(Binding.parse(sender),), credential=ClientCredential(cert=Path(cert), key=Path(key)))
submission = compose([Document.from_bytes(sample_ccda(), name="ccd.xml")], sender=sender, recipients=["x@direct.y.org"])
with XdrClient(endpoint=endpoint, ca_bundle=ca, practices=[practice], retry=RetryPolicy(max_attempts=1)) as client:
    if sys.argv[6] == "send":
        result = client.send(submission, practice="p")
        print(json.dumps({"outcome": result.outcome.value, "message": result.message}))
    else:
        client.preflight(submission, "p")  # everything but the exchange: the imports and the session
"""


def _client_child(site: Site, endpoint: str, what: str) -> tuple[dict[str, str], float]:
    """Run the client in a child process; what it printed, and its peak RSS in MB (``os.wait4``)."""
    demo = site.pki.practices["practice-a"]
    args = [endpoint, str(site.pki.ca_cert), str(demo.cert), str(demo.key), A_FROM, what]
    process = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, *args], stdout=subprocess.PIPE, cwd=site.directory
    )
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output
    printed = json.loads(output.strip().splitlines()[-1]) if what == "send" else {}
    return printed, usage.ru_maxrss / 1024


def test_a_2_gib_answer_is_read_up_to_the_cap_in_bounded_memory(site: Site) -> None:
    with HugeAnswer(site.pki.server_cert, site.pki.server_key, 2 * 1024 * MIB) as huge:
        _, baseline = _client_child(site, huge.url, "preflight")
        printed, peak = _client_child(site, huge.url, "send")
    assert printed["outcome"] == "OutcomeUnknown"
    assert "is larger than the 16777216 bytes xdr-edge reads of a response" in printed["message"]
    assert peak - baseline < 48, (peak, baseline)  # the cap (16 MiB) and buffers; before: 4.6 GB
    assert huge.sent < 256 * MIB  # reading stopped: the rest of the 2 GiB was never sent
