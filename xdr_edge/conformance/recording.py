"""The recording XDR endpoint the sender catalogue listens with, and the analysis of what it recorded.

:class:`RecordingEndpoint` listens with mutual TLS (cheroot via :class:`xdr_edge.receiver.server.XdrServer`,
client certificates verified against ``client_ca`` in the handshake), spools every request body to disk, records
the client certificate and the headers, and answers as told (``success``, ``failure``, ``fault`` or ``stall``),
so a sender's handling of each answer can be watched on the sender's side. With ``bad_server_cert`` it instead
accepts TCP connections and offers a server certificate from a CA nobody trusts: the sender passes ETT test 7
when it hangs up without sending a single byte of application data (Direct Edge Protocols IG §1.1, ETT tests 6-9).

:func:`analyse` reads one recorded request with our own reader plus the raw header scan, so the sender checks
(:mod:`.sender`) judge both what our reader made of it and what was literally on the wire.
Documents are never logged or printed (PHI); they live in the spool directory until :meth:`RecordingEndpoint.close`.
"""

from __future__ import annotations

__all__ = [
    "MAX_BODY_BYTES",
    "ConnectionAttempt",
    "RecordedRequest",
    "RecordingEndpoint",
    "RequestAnalysis",
    "Respond",
    "SenderEndpointConfig",
    "analyse",
]

import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import multipart
from cryptography import x509
from lxml import etree

from xdr_edge.certs import fingerprint_sha256
from xdr_edge.conformance.lenient import MESSAGE_ID, read_leniently
from xdr_edge.conformance.wireform import request_content_type
from xdr_edge.minting import CertificateAuthority
from xdr_edge.protocol import ns
from xdr_edge.protocol.codes import REPOSITORY_ERROR
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.findings import Finding
from xdr_edge.protocol.mtom import MtomLimits
from xdr_edge.protocol.response import RegistryErrorEntry, RegistryResponse
from xdr_edge.protocol.soap import Fault, RequestEnvelope
from xdr_edge.protocol.wire import ReplyBytes, build_reply
from xdr_edge.protocol.xml import parse
from xdr_edge.receiver.server import ServerConfig, XdrServer
from xdr_edge.tls import server_ssl_context

MAX_BODY_BYTES = 512 * 1024 * 1024


_READ = 256 * 1024


class Respond(str, Enum):
    """How the recording endpoint answers each request."""

    SUCCESS = "success"
    FAILURE = "failure"
    FAULT = "fault"
    STALL = "stall"


@dataclass(frozen=True)
class SenderEndpointConfig:
    """Where to listen, the endpoint's TLS material, and how to answer."""

    cert: Path
    key: Path
    client_ca: Path
    host: str = "127.0.0.1"
    port: int = 0
    respond: Respond = Respond.SUCCESS
    bad_server_cert: bool = False
    spool_dir: Path | None = None
    stall_seconds: float = 300.0


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as received. ``body_path`` is the spooled body (deleted by ``close``)."""

    index: int
    received_at: datetime
    peer: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body_path: Path
    body_size: int
    client_subject: str | None
    client_fingerprint: str | None
    client_verified: bool
    client_certificate: x509.Certificate | None = field(default=None, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    @property
    def content_type(self) -> str:
        return self.header("Content-Type") or ""


@dataclass(frozen=True)
class ConnectionAttempt:
    """A connection in ``bad_server_cert`` mode: did the handshake complete, did application bytes arrive."""

    peer: str
    handshake_completed: bool
    application_bytes: int
    detail: str


@dataclass
class RequestAnalysis:
    """What one recorded request says, read once and shared by every check."""

    record: RecordedRequest
    content_type_problems: list[str] = field(default_factory=list)
    part_headers: list[tuple[tuple[str, str], ...]] = field(default_factory=list)
    start: str | None = None
    mime_problem: str | None = None
    envelope: RequestEnvelope | None = None
    envelope_error: str | None = None
    root: etree._Element | None = None
    findings: list[Finding] = field(default_factory=list)
    mtom: bool = False
    included: list[str] = field(default_factory=list)
    senders_in_metadata: list[str] = field(default_factory=list)
    #: WS-Addressing header problems the reader stopped on and was read past (location -> message, .lenient)
    header_problems: dict[str, str] = field(default_factory=dict)

    @property
    def message_id(self) -> str | None:
        """The request's own MessageID: None when it had none, or none the reader could use."""
        if self.envelope is None or MESSAGE_ID in self.header_problems:
            return None
        return self.envelope.message_id


class _HeaderScanner(multipart.PushMultipartParser):  # type: ignore[misc]  # multipart ships no type hints
    """Only the part headers of a multipart body (MTOM parts have no Content-Disposition: no form rules)."""

    def _create_segment(self, headerlist: list[tuple[str, str]]) -> multipart.MultipartSegment:
        return multipart.MultipartSegment(headerlist)


def _scan_part_headers(path: Path, boundary: str) -> list[tuple[tuple[str, str], ...]]:
    parser = _HeaderScanner(boundary, max_header_count=64, max_header_size=16384)
    headers: list[tuple[tuple[str, str], ...]] = []
    with path.open("rb") as handle:
        while chunk := handle.read(_READ):
            for event in parser.parse(chunk):
                if isinstance(event, multipart.MultipartSegment):
                    headers.append(tuple((str(k), str(v).strip()) for k, v in event.headerlist))
    parser.close(check_complete=False)
    return headers


def _root_bytes(record: RecordedRequest, incoming_root: bytes | None) -> bytes | None:
    if incoming_root is not None:
        return incoming_root
    if record.body_size <= 64 * 1024 * 1024:
        return record.body_path.read_bytes()
    return None


def analyse(record: RecordedRequest, spool_dir: Path | None = None) -> RequestAnalysis:
    """Read one recorded request with our own reader (:func:`xdr_edge.protocol.wire.parse_request`), past the
    WS-Addressing header defects it stops on (:mod:`.lenient`), plus the raw header scans the reader is lenient
    about."""
    result = RequestAnalysis(record)
    problems, params, mtom = request_content_type(record.content_type)
    result.content_type_problems = problems
    result.mtom = mtom
    if mtom and params.get("boundary"):
        try:
            result.part_headers = _scan_part_headers(record.body_path, params["boundary"])
        except multipart.MultipartError as exc:
            result.mime_problem = f"malformed multipart body: {exc}"
        start = params.get("start")
        result.start = start[1:-1] if start and start.startswith("<") and start.endswith(">") else None
    root_bytes: bytes | None = None
    try:
        read, result.header_problems = read_leniently(
            record.content_type,
            record.body_path,
            record.body_size,
            limits=MtomLimits(max_total_bytes=MAX_BODY_BYTES),
            spool_dir=spool_dir,
        )
        with read as incoming:
            result.envelope = incoming.envelope
            result.findings = list(incoming.findings)
            if incoming.package is not None:
                root_bytes = incoming.package.root
            if incoming.submission is not None:
                ss = incoming.submission.submission_set
                result.senders_in_metadata = [str(a) for author in ss.authors for a in author.addresses]
    except RemoteProtocolError as exc:
        result.envelope_error = str(exc)
    raw = _root_bytes(record, root_bytes) if result.envelope is not None else None
    if raw is not None:
        try:
            result.root = parse(raw, what="request envelope", huge=len(raw) > 9 * 1024 * 1024)
        except RemoteProtocolError as exc:
            result.envelope_error = str(exc)
    if result.root is not None:
        result.included = [(el.get("href") or "")[4:] for el in result.root.iter(f"{{{ns.XOP}}}Include")]
    return result


class _RecordingApp:
    """WSGI app: spool, record, analyse, answer as configured. Thread-safe (the endpoint holds the lock)."""

    def __init__(self, endpoint: RecordingEndpoint) -> None:
        self.endpoint = endpoint

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        record = self.endpoint._record(environ)
        analysis = self.endpoint._analysis_of(record)
        reply = self.endpoint._reply(analysis)
        headers = [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body)))]
        start_response(f"{reply.status} {'OK' if reply.status == 200 else 'Error'}", headers)
        return [reply.body]


def _headers_of(environ: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.append((key[5:].replace("_", "-").title(), str(value)))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers.append((key.replace("_", "-").title(), str(value)))
    return tuple(headers)


class RecordingEndpoint:
    """The sender catalogue's test endpoint. Use as a context manager; :meth:`report` judges what arrived."""

    def __init__(self, config: SenderEndpointConfig) -> None:
        self.config = config
        self._own_spool = config.spool_dir is None
        self.spool_dir = (
            Path(tempfile.mkdtemp(prefix="xdr-conformance-"))
            if config.spool_dir is None
            else config.spool_dir
        )
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self.records: list[RecordedRequest] = []
        self.analyses: list[RequestAnalysis] = []
        self.attempts: list[ConnectionAttempt] = []
        self._server: XdrServer | None = None
        self._socket: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._port = config.port
        self._next_index = 0

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> RecordingEndpoint:
        if self.config.bad_server_cert:
            self._start_bad()
        else:
            server_config = ServerConfig(
                host=self.config.host,
                port=self.config.port,
                cert=self.config.cert,
                key=self.config.key,
                client_ca=self.config.client_ca,
                threads=4,
                socket_timeout=30,
            )
            self._server = XdrServer(_RecordingApp(self), server_config).start()
            self._port = self._server.port
        return self

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"https://{host}:{self.port}/xdr"

    def wait(self, expect: int, timeout: float) -> bool:
        """Block until ``expect`` requests (connection attempts with ``bad_server_cert``) arrived or ``timeout``
        seconds passed; True when enough arrived."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                have = len(self.attempts) if self.config.bad_server_cert else len(self.records)
                left = deadline - time.monotonic()
                if have >= expect or left <= 0:
                    return have >= expect
                self._lock.wait(min(left, 0.5))

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        for thread in self._threads:
            thread.join(timeout=5)

    def close(self) -> None:
        """Stop and delete the spooled bodies (PHI) when the spool directory is ours."""
        self.stop()
        if self._own_spool:
            shutil.rmtree(self.spool_dir, ignore_errors=True)

    def __enter__(self) -> RecordingEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def recorded(self) -> tuple[tuple[RequestAnalysis, ...], tuple[ConnectionAttempt, ...]]:
        """Everything recorded so far: the analysed requests and every connection attempt, in arrival order."""
        with self._lock:
            return tuple(self.analyses), tuple(self.attempts)

    # -- recording ------------------------------------------------------------------------------------------

    def _record(self, environ: dict[str, Any]) -> RecordedRequest:
        with self._lock:
            self._next_index += 1
            index = self._next_index
        handle = tempfile.NamedTemporaryFile(  # kept until close(); the body may be large
            dir=self.spool_dir, prefix=f"request-{index:03d}-", suffix=".body", delete=False
        )
        size = 0
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH")
        remaining = int(length) if length else None
        with handle:
            while remaining is None or remaining > 0:
                chunk = stream.read(_READ if remaining is None else min(_READ, remaining))
                if not chunk:
                    break
                size += len(chunk)
                if remaining is not None:
                    remaining -= len(chunk)
                if size > MAX_BODY_BYTES:
                    break
                handle.write(chunk)
        pem = environ.get("SSL_CLIENT_CERT")
        subject = fingerprint = None
        cert: x509.Certificate | None = None
        if pem:
            cert = x509.load_pem_x509_certificate(str(pem).encode("ascii"))
            subject, fingerprint = cert.subject.rfc4514_string(), fingerprint_sha256(cert)
        record = RecordedRequest(
            index=index,
            received_at=datetime.now(UTC),
            peer=str(environ.get("REMOTE_ADDR", "?")),
            method=str(environ.get("REQUEST_METHOD", "")),
            path=str(environ.get("PATH_INFO", "")),
            headers=_headers_of(environ),
            body_path=Path(handle.name),
            body_size=size,
            client_subject=subject,
            client_fingerprint=fingerprint,
            client_verified=environ.get("SSL_CLIENT_VERIFY") == "SUCCESS",
            client_certificate=cert,
        )
        return record

    def _analysis_of(self, record: RecordedRequest) -> RequestAnalysis:
        analysis = analyse(record, self.spool_dir)
        with self._lock:
            self.records.append(record)
            self.analyses.append(analysis)
            self._lock.notify_all()
        return analysis

    def _reply(self, analysis: RequestAnalysis) -> ReplyBytes:
        relates_to = analysis.message_id
        respond = self.config.respond
        if respond is Respond.STALL:
            # Never answer within the sender's timeout: the sender must report the outcome as unknown.
            self._stop.wait(self.config.stall_seconds)
            return ReplyBytes(503, "text/plain", b"stalled on purpose (--respond stall)\n")
        if respond is Respond.FAULT:
            fault = Fault("Receiver", "xdr-edge conformance endpoint: fault on request (--respond fault)")
            return build_reply(fault, relates_to=relates_to, mtom=analysis.mtom)
        if respond is Respond.FAILURE:
            entry = RegistryErrorEntry(
                REPOSITORY_ERROR, "xdr-edge conformance endpoint: Failure on request (--respond failure)"
            )
            return build_reply(RegistryResponse.failure([entry]), relates_to=relates_to, mtom=analysis.mtom)
        return build_reply(RegistryResponse.success(), relates_to=relates_to, mtom=analysis.mtom)

    # -- bad server certificate (ETT 7) ---------------------------------------------------------------------

    def _start_bad(self) -> None:
        """Listen with a server certificate from a fresh CA that no sender trusts."""
        hosts = list(dict.fromkeys([self.config.host, "localhost", "127.0.0.1"]))
        issued = CertificateAuthority.create("xdr-edge conformance UNTRUSTED CA").issue_server(hosts)
        cert, key = self.spool_dir / "bad-server.pem", self.spool_dir / "bad-server.key"
        issued.write_pem(cert, key)
        context = server_ssl_context(cert, key, self.config.client_ca, require_client_cert=False)
        listener = socket.create_server((self.config.host, self.config.port))
        listener.settimeout(0.2)
        self._socket = listener
        self._port = int(listener.getsockname()[1])
        thread = threading.Thread(target=self._accept_loop, args=(listener, context), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self, listener: socket.socket, context: ssl.SSLContext) -> None:
        while not self._stop.is_set():
            try:
                conn, address = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            worker = threading.Thread(target=self._probe, args=(conn, address, context), daemon=True)
            worker.start()
            self._threads.append(worker)

    def _probe(self, conn: socket.socket, address: Any, context: ssl.SSLContext) -> None:
        """ETT's TLSReceiverImpl rule: PASS when the client drops the connection, FAIL on any byte of data."""
        peer = f"{address[0]}:{address[1]}"
        conn.settimeout(5)
        try:
            tls = context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            conn.close()
            reason = getattr(exc, "reason", None) or type(exc).__name__
            self._attempt(ConnectionAttempt(peer, False, 0, f"client aborted the handshake ({reason})"))
            return
        received = 0
        detail = "handshake completed; the client then closed without sending data"
        try:
            tls.settimeout(2)
            data = tls.recv(65536)
            received = len(data)
            if received:
                detail = f"handshake completed and the client sent {received} bytes of application data"
        except TimeoutError:
            detail = "handshake completed; the client sent nothing for 2 s"
        except (ssl.SSLError, OSError) as exc:
            detail = f"handshake completed; the client then dropped the connection ({type(exc).__name__})"
        finally:
            tls.close()
        self._attempt(ConnectionAttempt(peer, True, received, detail))

    def _attempt(self, attempt: ConnectionAttempt) -> None:
        with self._lock:
            self.attempts.append(attempt)
            self._lock.notify_all()
