"""A receiving cluster on loopback for tests and benchmarks: a PostgreSQL registry, ``xdr-edge serve
--behind-proxy`` receivers as real processes, and nginx running the shipped configuration in front.

Everything is real: the receivers are started with the ``xdr-edge`` command (so a SIGKILL kills a whole
receiver), the registry is set up with the ``xdr-edge registry`` commands, and clients speak mutual TLS to nginx
with the demo PKI's practice certificates.
"""

from __future__ import annotations

import contextlib
import http.client
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import CliRunner

from tests.servers import ServerStartError, free_port, nginx_proxy, stop_process, wait_until
from xdr_edge.certs import load_identity
from xdr_edge.cli import main
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.devtools.pki import DemoPki, write_demo_pki
from xdr_edge.practice import ClientCredential
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.model import Document, MetadataLevel, Submission
from xdr_edge.protocol.response import RegistryResponse
from xdr_edge.protocol.wire import build_request, parse_response
from xdr_edge.tls import client_ssl_context

RECIPIENT = "inbox@direct.hisp.example"
SENDERS = {"practice-a": "dr.smith@direct.practice-a.org", "practice-b": "dr.jones@direct.practice-b.org"}


def registry_command(url: str, *args: str) -> str:
    """``xdr-edge registry ARGS --registry URL`` in this process; its output (a failure fails the caller)."""
    result = CliRunner().invoke(main, ["registry", *args, "--registry", url])
    if result.exit_code != 0:
        raise AssertionError(f"xdr-edge registry {' '.join(args)}: exit {result.exit_code}\n{result.output}")
    return result.output


def set_up_registry(url: str, pki: DemoPki) -> None:
    registry_command(url, "init")
    registry_command(url, "add-anchor", str(pki.ca_cert))
    for practice_id, practice in pki.practices.items():
        registry_command(url, "add-practice", practice_id, "--name", f"Demo {practice_id}")
        registry_command(url, "enroll", practice_id, str(practice.cert))
        for address in practice.addresses:
            registry_command(url, "bind", practice_id, address)


@dataclass
class Receiver:
    """One ``xdr-edge serve --behind-proxy`` process."""

    name: str
    registry: str
    inbox: Path
    log: Path
    threads: int = 8
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 60.0, *, same_port: bool = False) -> Receiver:
        """Start (or, with ``same_port``, restart where nginx expects it) and wait until /healthz says 200."""
        for attempt in range(1, 4):
            if not same_port:
                self.port = free_port()
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    [
                        *(sys.executable, "-m", "xdr_edge", "serve", "--behind-proxy"),
                        *("--trusted-proxy", "127.0.0.1", "--host", "127.0.0.1", "--port", str(self.port)),
                        *("--registry", self.registry, "--inbox", str(self.inbox)),
                        *("--receiver-name", self.name, "--threads", str(self.threads)),
                        # one practice carries all the load here; its share of the workers is tested elsewhere
                        *("--max-requests-per-practice", str(self.threads)),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                wait_until(self.healthy, self.process, timeout, f"receiver {self.name}", [self.log])
                return self
            except ServerStartError:
                if same_port or attempt == 3 or "in use" not in self.log.read_text(errors="replace"):
                    raise
        raise AssertionError("unreachable")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a crash or an out-of-memory kill."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGTERM, 15.0)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def handled(self, message_id: str, outcome: str, timeout: float = 10.0) -> bool:
        """Whether this receiver logged ``message_id`` with ``outcome`` (the line is written as it answers)."""
        deadline = time.monotonic() + timeout
        needle = f"message_id={message_id} outcome={outcome} "
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return True
            time.sleep(0.05)
        return False


@dataclass
class Cluster:
    pki: DemoPki
    registry: str
    receivers: list[Receiver]
    port: int  # nginx, mutual TLS

    def receiver_of(self, message_id: str) -> Receiver:
        """The receiver whose log has a line for ``message_id``."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for receiver in self.receivers:
                if f"message_id={message_id} " in receiver.log_text():
                    return receiver
            time.sleep(0.05)
        raise AssertionError(f"no receiver logged {message_id}")

    def context(
        self, practice: str = "practice-a", *, identity: tuple[Path, Path] | None = None
    ) -> ssl.SSLContext:
        """A client context with ``practice``'s demo certificate, or ``identity`` (certificate and key files)."""
        demo = self.pki.practices[practice]
        cert, key = identity or (demo.cert, demo.key)
        return client_ssl_context(load_identity(ClientCredential(cert=cert, key=key)), self.pki.ca_cert)

    def connect(
        self, practice: str = "practice-a", *, identity: tuple[Path, Path] | None = None
    ) -> http.client.HTTPSConnection:
        context = self.context(practice, identity=identity)
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=60)


def submission(practice: str = "practice-a", *, size: int = 0, sender: str | None = None) -> Submission:
    """A fresh submission (new uniqueIds) from ``practice``'s bound address (or ``sender``); ``size`` pads the
    C-CDA to about that many bytes."""
    content = sample_ccda()
    if size > len(content):
        content += b"\n<!--" + b"x" * (size - len(content) - 8) + b"-->"
    return compose(
        [Document.from_bytes(content, name="ccd.xml")],
        sender=sender or SENDERS[practice],
        recipients=[RECIPIENT],
        level=MetadataLevel.MINIMAL,
    )


@dataclass(frozen=True)
class Answer:
    status: int
    response: RegistryResponse | None  # None: not a RegistryResponse (a fault, or nginx's own error page)
    message_id: str
    body: bytes

    @property
    def success(self) -> bool:
        return self.response is not None and self.response.is_success

    @property
    def error_codes(self) -> list[str]:
        return [] if self.response is None else [e.error_code for e in self.response.errors]


def post(
    connection: http.client.HTTPConnection, item: Submission, headers: dict[str, str] | None = None
) -> Answer:
    request = build_request(item, endpoint="https://localhost/xdr")
    connection.request(
        "POST", "/xdr", body=b"".join(request.body), headers={**request.headers(), **(headers or {})}
    )
    reply = connection.getresponse()
    body = reply.read()
    response = None
    try:
        response = parse_response(reply.getheader("Content-Type", ""), body).registry_response
    except Exception:
        response = None
    return Answer(reply.status, response, request.message_id, body)


def send(
    cluster: Cluster,
    item: Submission,
    practice: str = "practice-a",
    *,
    identity: tuple[Path, Path] | None = None,
) -> Answer:
    """One submission on a connection of its own."""
    connection = cluster.connect(practice, identity=identity)
    try:
        return post(connection, item)
    finally:
        connection.close()


@contextlib.contextmanager
def start_cluster(
    tmp_dir: Path, registry: str, *, receivers: int = 2, threads: int = 8, shared_inbox: bool = False
) -> Iterator[Cluster]:
    """The registry set up through the CLI, ``receivers`` receivers (inbox per receiver, or one shared), nginx."""
    pki = write_demo_pki(tmp_dir / "pki")
    set_up_registry(registry, pki)
    started: list[Receiver] = []
    try:
        for n in range(1, receivers + 1):
            inbox = tmp_dir / ("inbox" if shared_inbox else f"inbox-{n}")
            receiver = Receiver(f"rx-{n}", registry, inbox, tmp_dir / f"rx-{n}.log", threads=threads)
            started.append(receiver.start())
        upstreams: Sequence[tuple[str, int]] = [("127.0.0.1", r.port) for r in started]
        with nginx_proxy(
            tmp_dir, upstreams, ca_file=pki.ca_cert, cert_file=pki.server_cert, key_file=pki.server_key
        ) as port:
            yield Cluster(pki, registry, started, port)
    finally:
        for receiver in started:
            receiver.stop()
