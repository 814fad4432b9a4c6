"""Metro (the JAX-WS reference implementation, Debian's ``libjaxws-java``) as a real peer for interoperability
tests: our own small Java programs in ``tests/interop/java`` (an ITI-41 client and a ``Provider`` endpoint, with
the TLS set-up they share), compiled once per test session into a temporary directory and run as child processes
on loopback.

Nothing here downloads anything: the programs compile against the Debian jar, whose manifest ``Class-Path`` brings
in the rest of Metro. When ``javac``, ``java`` or the jar is missing, :func:`missing` says so and the tests skip (fail when ``XDR_EDGE_REQUIRE_SERVERS=1``, as in CI).
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

JAXWS_JAR = Path("/usr/share/java/jaxws-rt.jar")
SOURCES = Path(__file__).resolve().parent / "interop" / "java"
PROGRAMS = ("MetroXdrClient.java", "MetroXdrEndpoint.java", "PeerTls.java")
#: Quiet flags only (no behaviour change): SAAJ's deprecated factory lookup warning, and Metro's monitoring,
#: which needs a library Debian's Metro does not depend on and logs a stack trace without it.
JVM_FLAGS = (
    "-Djavax.xml.soap.SAAJMetaFactory=com.sun.xml.messaging.saaj.soap.SAAJMetaFactoryImpl",
    "-Dcom.sun.xml.ws.monitoring.endpoint=false",
)
#: Metro's start-up and one round trip take 1-2 s on an idle machine; shared CI machines are slower.
CLIENT_TIMEOUT = 180.0
READY_TIMEOUT = 120.0


def missing() -> str | None:
    """Why the Metro peers cannot run here, or None when they can."""
    for tool in ("javac", "java"):
        if shutil.which(tool) is None:
            return f"{tool} not found (install a JDK, e.g. Debian's default-jdk-headless)"
    if not JAXWS_JAR.is_file():
        return f"{JAXWS_JAR} not found (install Debian's libjaxws-java and libsaaj-ri-java)"
    return None


@dataclass(frozen=True)
class Metro:
    """The compiled peers."""

    classes: Path

    def command(self, program: str, *args: str) -> list[str]:
        return ["java", *JVM_FLAGS, "-cp", f"{self.classes}:{JAXWS_JAR}", program, *args]


def compile_peers(into: Path) -> Metro:
    """``javac`` both programs into ``into`` (about 2 s); a compiler error fails loudly with its output."""
    into.mkdir(parents=True, exist_ok=True)
    sources = [str(SOURCES / name) for name in PROGRAMS]
    done = subprocess.run(
        ["javac", "-Xlint:all,-path", "-cp", str(JAXWS_JAR), "-d", str(into), *sources],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"javac failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return Metro(into)


@dataclass(frozen=True)
class Identity:
    """A PKCS#12 key store, the file holding its password, and the CA bundle (PEM) the peer trusts."""

    keystore: Path
    password_file: Path
    ca: Path

    def options(self) -> list[str]:
        """The command-line options both peers take for it."""
        keystore = ["--keystore", str(self.keystore), "--keystore-password-file", str(self.password_file)]
        return [*keystore, "--ca", str(self.ca)]


@dataclass(frozen=True)
class ClientRun:
    """One run of MetroXdrClient: its exit status and the JSON object it printed (see the Java source)."""

    returncode: int
    result: dict[str, Any]
    stderr: str

    def __getitem__(self, key: str) -> Any:
        return self.result.get(key)

    def __str__(self) -> str:  # what an assertion shows: the whole result, and Metro's log on failure
        text = json.dumps(self.result)
        return text if self.returncode == 0 else f"{text}\nstderr: {self.stderr[-2000:]}"


def run_client(
    metro: Metro,
    *,
    url: str,
    identity: Identity,
    submit_objects: Path,
    documents: dict[str, Path],
    headers: Sequence[Path] = (),
    message_id: str | None = None,
    action: str | None = None,
) -> ClientRun:
    args = [
        "--url",
        url,
        "--submit-objects",
        str(submit_objects),
        *identity.options(),
        "--timeout-seconds",
        str(int(CLIENT_TIMEOUT / 2)),
    ]
    for entry_id, path in documents.items():
        args += ["--document", f"{entry_id}={path}"]
    for header in headers:
        args += ["--header", str(header)]
    if message_id is not None:
        args += ["--message-id", message_id]
    if action is not None:
        args += ["--action", action]
    done = subprocess.run(
        metro.command("MetroXdrClient", *args), capture_output=True, text=True, timeout=CLIENT_TIMEOUT
    )
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise AssertionError(
            f"MetroXdrClient printed nothing (exit {done.returncode}): {done.stderr[-2000:]}"
        )
    return ClientRun(done.returncode, json.loads(lines[-1]), done.stderr)


@dataclass(frozen=True)
class EndpointRequest:
    """What MetroXdrEndpoint printed for one request: the REQUEST fields and one dict per DOCUMENT line."""

    fields: dict[str, str]
    documents: list[dict[str, str]] = field(default_factory=list)


class Endpoint:
    """MetroXdrEndpoint as a child process on 127.0.0.1 (a free port), its stdout read by a thread."""

    def __init__(self, metro: Metro, identity: Identity, log: Path) -> None:
        self._stderr: IO[bytes] = log.open("wb")
        self._process = subprocess.Popen(
            metro.command("MetroXdrEndpoint", "--port", "0", *identity.options()),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.log = log
        try:
            ready = self._fields(self._line("READY", READY_TIMEOUT))
        except BaseException:
            self.stop()
            raise
        self.port = int(ready["port"])
        self.url = f"https://localhost:{self.port}{ready['path']}"

    def _pump(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.rstrip("\n"))

    def _line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self._process.poll() is not None:
                    break
                continue
            if line.startswith(prefix + " "):
                return line
        status = self._process.poll()
        raise AssertionError(
            f"MetroXdrEndpoint printed no {prefix} line within {timeout:.0f} s (exit status {status}); "
            f"stderr: {self.log.read_text(errors='replace')[-2000:]}"
        )

    @staticmethod
    def _fields(line: str) -> dict[str, str]:
        return dict(item.split("=", 1) for item in line.split()[1:])

    def next_request(self, timeout: float = CLIENT_TIMEOUT) -> EndpointRequest:
        """The next request Metro accepted, with its documents (sha1 and size of the bytes Metro decoded)."""
        request = EndpointRequest(self._fields(self._line("REQUEST", timeout)))
        for _ in range(int(request.fields["documents"])):
            request.documents.append(self._fields(self._line("DOCUMENT", timeout)))
        return request

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(30)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()
