"""The sender catalogue: a recording XDR endpoint that checks everything an edge sends against the digest.

:class:`RecordingEndpoint` listens with mutual TLS (cheroot via :class:`xdr_edge.receiver.server.XdrServer`,
client certificates verified against ``client_ca`` in the handshake), spools every request body to disk, records
the client certificate and the headers, and answers as told (``success``, ``failure``, ``fault`` or ``stall``),
so a sender's handling of each answer can be watched on the sender's side. With ``bad_server_cert`` it instead
accepts TCP connections and offers a server certificate from a CA nobody trusts: the sender passes ETT test 7
when it hangs up without sending a single byte of application data (Direct Edge Protocols IG §1.1, ETT tests 6-9).

After the run, :func:`sender_catalogue` judges the recorded requests: HTTP Content-Type and MIME parts (digest
ITI TF-2b 3.41.5, W3C MTOM/XOP), SOAP and WS-Addressing (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding; MessageIDs unique across sends, ETT MT 19/48), the Direct address block (XDR and XDM for Direct Messaging §4,
ETT MT 49), metadata for the declared level (ITI TF-3 4.3.1, XDR Limited Metadata), hash and size against the bytes (NIST XDS toolkit validators), the client certificate.
Documents are never logged or printed (PHI); they live in the spool directory until :meth:`close`.
"""

from __future__ import annotations

__all__ = [
    "ConnectionAttempt",
    "RecordedRequest",
    "RecordingEndpoint",
    "RequestAnalysis",
    "Respond",
    "SenderContext",
    "SenderEndpointConfig",
    "run_sender",
    "sender_catalogue",
]

import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import multipart
from cryptography import x509
from lxml import etree

from xdr_edge.certs import fingerprint_sha256
from xdr_edge.conformance.cases import CaseResult, CaseStatus, Report, TestCase, Verdict, run_cases
from xdr_edge.minting import CertificateAuthority
from xdr_edge.protocol import ns
from xdr_edge.protocol.codes import MISSING_DOCUMENT, MISSING_DOCUMENT_METADATA, REPOSITORY_ERROR
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.findings import Finding
from xdr_edge.protocol.mediatype import parse_content_type
from xdr_edge.protocol.mtom import MtomLimits
from xdr_edge.protocol.response import (
    RegistryErrorEntry,
    RegistryResponse,
)
from xdr_edge.protocol.soap import (
    Fault,
    LevelPlacement,
    RequestEnvelope,
)
from xdr_edge.protocol.wire import (
    ReplyBytes,
    build_reply,
    parse_request,
)
from xdr_edge.protocol.xml import parse
from xdr_edge.receiver.server import ServerConfig, XdrServer
from xdr_edge.tls import server_ssl_context

MAX_BODY_BYTES = 512 * 1024 * 1024
_READ = 256 * 1024
_MU = f"{{{ns.SOAP}}}mustUnderstand"


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

    @property
    def message_id(self) -> str | None:
        return self.envelope.message_id if self.envelope is not None else None


# ----------------------------------------------------------------------------------------------------------
# Reading a recorded request


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


def _content_type_problems(content_type: str) -> tuple[list[str], dict[str, str], bool]:
    """XOP 1.0 §4.1, RFC 2387, ITI TF-2b 3.41.5 (and NIST's MtomMessageValidator): the exact MTOM Content-Type parameters."""
    try:
        media, params = parse_content_type(content_type)
    except RemoteProtocolError as exc:
        return [f"Content-Type unreadable: {exc.message}"], {}, False
    if media != "multipart/related":
        return (
            [
                f"Content-Type is {media or 'missing'}, not multipart/related (MTOM is required, ITI TF-2b 3.41.5, W3C MTOM/XOP)"
            ],
            {},
            False,
        )
    problems = []
    if params.get("type", "").lower() != "application/xop+xml":
        problems.append(f'type parameter is {params.get("type")!r}, expected "application/xop+xml"')
    if not params.get("boundary"):
        problems.append("no boundary parameter")
    if params.get("start-info", "").lower() != "application/soap+xml":
        problems.append(f'start-info is {params.get("start-info")!r}, expected "application/soap+xml"')
    start = params.get("start")
    if start is not None and not (start.startswith("<") and start.endswith(">")):
        problems.append(f"start {start!r} is not wrapped in < >")
    return problems, params, True


def _root_bytes(record: RecordedRequest, incoming_root: bytes | None) -> bytes | None:
    if incoming_root is not None:
        return incoming_root
    if record.body_size <= 64 * 1024 * 1024:
        return record.body_path.read_bytes()
    return None


def analyse(record: RecordedRequest, spool_dir: Path | None = None) -> RequestAnalysis:
    """Read one recorded request with our own reader (:func:`xdr_edge.wire.parse_request`) plus the raw header
    scans the reader is lenient about."""
    result = RequestAnalysis(record)
    problems, params, mtom = _content_type_problems(record.content_type)
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
        with record.body_path.open("rb") as stream:
            with parse_request(
                record.content_type,
                stream,
                limits=MtomLimits(max_total_bytes=MAX_BODY_BYTES),
                spool_dir=spool_dir,
                content_length=record.body_size,
            ) as incoming:
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


# ----------------------------------------------------------------------------------------------------------
# The recording endpoint


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

    def report(
        self, *, expect: int | None = None, on_result: Callable[[CaseResult], None] | None = None
    ) -> Report:
        """Judge everything recorded so far with the sender catalogue."""
        with self._lock:
            context = SenderContext(
                analyses=tuple(self.analyses),
                attempts=tuple(self.attempts),
                bad_server_cert=self.config.bad_server_cert,
                expect=expect,
            )
        return run_cases(sender_catalogue(), context, mode="sender", target=self.url, on_result=on_result)

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


# ----------------------------------------------------------------------------------------------------------
# Judging what was recorded


@dataclass(frozen=True)
class SenderContext:
    """Everything the sender cases judge: the analysed requests, or the connection attempts (ETT 7 mode)."""

    analyses: tuple[RequestAnalysis, ...]
    attempts: tuple[ConnectionAttempt, ...] = ()
    bad_server_cert: bool = False
    expect: int | None = None


Check = Callable[[RequestAnalysis], list[str]]


def _per_request(check: Check, *, needs_envelope: bool = True) -> Callable[[SenderContext], Verdict]:
    """Run ``check`` on every request; the case passes when no request has a problem."""

    def run(ctx: SenderContext) -> Verdict:
        if ctx.bad_server_cert:
            return Verdict.skip("--bad-server-cert run: no request is expected to arrive")
        if not ctx.analyses:
            return Verdict.fail("no request recorded", "the sender sent nothing that reached the endpoint")
        problems: list[str] = []
        for analysis in ctx.analyses:
            if needs_envelope and analysis.envelope is None:
                problems.append(f"request {analysis.record.index}: unreadable: {analysis.envelope_error}")
                continue
            problems += [f"request {analysis.record.index}: {p}" for p in check(analysis)]
        n = len(ctx.analyses)
        if problems:
            extra = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            return Verdict.fail(problems[0] + extra, "; ".join(problems))
        return Verdict.ok(f"{n} request(s), all conform")

    return run


def _header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name.lower()), None)


def _bracketed(value: str | None) -> bool:
    return value is not None and len(value) > 2 and value.startswith("<") and value.endswith(">")


def _check_content_type(a: RequestAnalysis) -> list[str]:
    return list(a.content_type_problems)


def _root_index(a: RequestAnalysis) -> int:
    for i, headers in enumerate(a.part_headers):
        if a.start is not None and _header(headers, "Content-ID") == f"<{a.start}>":
            return i
    return 0


def _check_root_part(a: RequestAnalysis) -> list[str]:
    if not a.mtom:
        return ["not an MTOM request"]
    if a.mime_problem:
        return [a.mime_problem]
    if not a.part_headers:
        return ["no MIME parts"]
    headers = a.part_headers[_root_index(a)]
    problems = []
    try:
        media, params = parse_content_type(_header(headers, "Content-Type") or "")
    except RemoteProtocolError:
        media, params = "", {}
    if media != "application/xop+xml" or params.get("type", "").lower() != "application/soap+xml":
        problems.append(
            f"root part Content-Type {_header(headers, 'Content-Type')!r}; expected "
            'application/xop+xml; type="application/soap+xml" (XOP 1.0 §4.1)'
        )
    if not _bracketed(_header(headers, "Content-ID")):
        problems.append("root part Content-ID missing or not wrapped in < >")
    if _header(headers, "Content-Transfer-Encoding") is None:
        problems.append("root part has no Content-Transfer-Encoding")
    return problems


def _check_document_parts(a: RequestAnalysis) -> list[str]:
    if not a.mtom:
        return ["not an MTOM request (documents inline)"]
    if a.mime_problem:
        return [a.mime_problem]
    problems = []
    root = _root_index(a)
    ids: list[str] = []
    for i, headers in enumerate(a.part_headers):
        if i == root:
            continue
        cid = _header(headers, "Content-ID")
        if not _bracketed(cid):
            problems.append(f"MIME part {i + 1}: Content-ID {cid!r} missing or not wrapped in < >")
        else:
            assert cid is not None
            ids.append(cid[1:-1])
        if _header(headers, "Content-Transfer-Encoding") is None:
            problems.append(f"MIME part {i + 1}: no Content-Transfer-Encoding (DTS 432)")
    refs = Counter(unquote(h) for h in a.included)
    for cid, n in refs.items():
        if n > 1:
            problems.append(f"part <{cid}> referenced by {n} xop:Include elements (DTS 432)")
        if cid not in ids:
            problems.append(f"xop:Include cid:{cid} names no MIME part")
    for cid in ids:
        if cid not in refs:
            problems.append(f"MIME part <{cid}> is not referenced by any xop:Include")
    return problems


def _check_soap(a: RequestAnalysis) -> list[str]:
    return [] if a.envelope is not None else [f"not a readable ITI-41 SOAP 1.2 request: {a.envelope_error}"]


def _wsa_elements(a: RequestAnalysis, local: str) -> list[etree._Element]:
    if a.root is None:
        return []
    header = a.root.find(f"{{{ns.SOAP}}}Header")
    return [] if header is None else header.findall(f"{{{ns.WSA}}}{local}")


def _must_understand(element: etree._Element) -> bool:
    return (element.get(_MU) or "").strip() in ("true", "1")


def _check_action(a: RequestAnalysis) -> list[str]:
    actions = _wsa_elements(a, "Action")
    if len(actions) != 1:
        return [f"{len(actions)} wsa:Action headers, expected exactly 1"]
    problems = []
    if (actions[0].text or "") != ns.ACTION_PNR:
        problems.append(f"wsa:Action is {actions[0].text!r}, expected {ns.ACTION_PNR} without whitespace")
    if not _must_understand(actions[0]):
        problems.append('wsa:Action lacks S:mustUnderstand="true" (ONC XDR checklist XD 2, IHE_WSA101)')
    return problems


def _check_to(a: RequestAnalysis) -> list[str]:
    to = _wsa_elements(a, "To")
    if len(to) != 1:
        return [f"{len(to)} wsa:To headers, expected 1 (DTS 413)"]
    if not (to[0].text or "").strip().startswith("http"):
        return [f"wsa:To {to[0].text!r} is not the endpoint URL"]
    return []


def _check_reply_to(a: RequestAnalysis) -> list[str]:
    reply = _wsa_elements(a, "ReplyTo")
    if len(reply) != 1:
        return ["no wsa:ReplyTo (ONC XDR checklist XD 3 requires it; DTS 419 makes it optional)"]
    problems = []
    address = reply[0].find(f"{{{ns.WSA}}}Address")
    if address is None or (address.text or "").strip() != ns.WSA_ANONYMOUS:
        problems.append("wsa:ReplyTo/wsa:Address is not the anonymous URI")
    if not _must_understand(reply[0]):
        problems.append('wsa:ReplyTo lacks S:mustUnderstand="true" (DTS 420)')
    return problems


def _check_address_block(a: RequestAnalysis) -> list[str]:
    env = a.envelope
    assert env is not None
    if not env.has_address_block:
        return ["no direct:addressBlock (ETT MT 49)"]
    problems = []
    if env.direct_from is None:
        problems.append("addressBlock has no direct:from")
    if not env.direct_to:
        problems.append("addressBlock has no direct:to")
    # an address that is not one, or a delivery-notification request that is neither true nor false
    return problems + _errors(a, lambda f: f.rule in _ADDRESS_BLOCK_RULES)


def _check_level(a: RequestAnalysis) -> list[str]:
    env = a.envelope
    assert env is not None
    if env.level is None:
        return [
            "no direct:metadata-level (receivers then assume XDS, XDR and XDM for Direct Messaging §6.1.1)"
        ]
    if env.level_placement is LevelPlacement.IN_BLOCK:
        return [
            "direct:metadata-level only inside the addressBlock; ETT/NIST read it at the top level (XDR and XDM for Direct Messaging §6.1.1)"
        ]
    return []


_DOCUMENT_CODES = frozenset({MISSING_DOCUMENT, MISSING_DOCUMENT_METADATA})
_HASH_RULES = frozenset({"de-hash-mismatch", "de-size-mismatch"})
_SENDER_RULES = frozenset({"sender-mismatch", "sender-unknown"})
_ADDRESS_BLOCK_RULES = frozenset({"direct-bad-address", "direct-bad-delivery-request"})


def _errors(a: RequestAnalysis, keep: Callable[[Finding], bool]) -> list[str]:
    return [f"{f.code} at {f.location}: {f.message}" for f in a.findings if f.is_error and keep(f)]


def _check_metadata(a: RequestAnalysis) -> list[str]:
    return _errors(
        a,
        lambda f: (
            f.code not in _DOCUMENT_CODES and f.rule not in _HASH_RULES | _SENDER_RULES | _ADDRESS_BLOCK_RULES
        ),
    )


def _check_documents(a: RequestAnalysis) -> list[str]:
    return _errors(a, lambda f: f.code in _DOCUMENT_CODES)


def _check_hash_size(a: RequestAnalysis) -> list[str]:
    return _errors(a, lambda f: f.rule in _HASH_RULES)


def _check_sender(a: RequestAnalysis) -> list[str]:
    env = a.envelope
    assert env is not None
    if not a.senders_in_metadata:
        return ["no SubmissionSet authorTelecommunication with the sender's Direct address (DTS 433)"]
    if env.direct_from is not None and str(env.direct_from) not in a.senders_in_metadata:
        return [f"direct:from {env.direct_from} differs from authorTelecommunication (DTS 433)"]
    return []


def _message_ids_unique(ctx: SenderContext) -> Verdict:
    base = _per_request(lambda a: [] if a.message_id else ["no wsa:MessageID"])(ctx)
    if base.status is not CaseStatus.PASS:
        return base
    counts = Counter(a.message_id for a in ctx.analyses)
    reused = sorted(str(m) for m, n in counts.items() if n > 1)
    if reused:
        return Verdict.fail(
            f"{len(reused)} MessageID(s) reused across {len(ctx.analyses)} sends",
            "reused: " + ", ".join(reused) + " (each send needs a new MessageID: ETT MT 19/48)",
        )
    return Verdict.ok(f"{len(ctx.analyses)} request(s), {len(counts)} distinct MessageIDs")


def _client_certificate(ctx: SenderContext) -> Verdict:
    if ctx.bad_server_cert:
        return Verdict.skip("--bad-server-cert run: the handshake is expected to fail")
    if not ctx.analyses:
        return Verdict.fail("no request recorded", "no sender completed mutual TLS with this endpoint")
    missing = [a.record.index for a in ctx.analyses if not a.record.client_verified]
    if missing:
        return Verdict.fail(f"requests without a verified client certificate: {missing}")
    subjects = sorted({a.record.client_subject or "?" for a in ctx.analyses})
    return Verdict.ok(f"verified client certificate on every request: {', '.join(subjects)}")


def _bad_server_cert(ctx: SenderContext) -> Verdict:
    if not ctx.bad_server_cert:
        return Verdict.skip("run with --bad-server-cert to test this (ETT 7)")
    if not ctx.attempts:
        return Verdict.fail("no connection attempt", "the sender never connected")
    leaked = [a for a in ctx.attempts if a.application_bytes]
    if leaked:
        return Verdict.fail(
            leaked[0].detail, "the sender sent application data to a server whose certificate it cannot trust"
        )
    return Verdict.ok(f"{len(ctx.attempts)} connection(s), no application data: {ctx.attempts[0].detail}")


def _expected_count(ctx: SenderContext) -> Verdict:
    have = len(ctx.attempts) if ctx.bad_server_cert else len(ctx.analyses)
    if ctx.expect is None:
        return Verdict.skip("no --expect given")
    return Verdict.check(
        have >= ctx.expect, f"{have} of {ctx.expect}", "" if have >= ctx.expect else "timed out"
    )


def sender_catalogue() -> tuple[TestCase[SenderContext], ...]:
    """Every sender case, in report order."""
    T = TestCase
    return (
        T("expected-count", "the expected number of messages arrived", True, "xdr-edge",
          "--expect N messages (or connections) before --timeout", _expected_count),
        T("tls-client-certificate", "mutual TLS: a client certificate trusted by --client-ca", True, "ETT 6",
          "every request came with a verified client certificate", _client_certificate),
        T("tls-bad-server-certificate", "server certificate from an untrusted CA", True, "ETT 7 / 17",
          "the sender hangs up without sending application data", _bad_server_cert),
        T("http-content-type", "MTOM HTTP Content-Type parameters", True, "W3C SOAP 1.2 MTOM §3",
          'multipart/related; type="application/xop+xml"; boundary; start=<...>; start-info',
          _per_request(_check_content_type, needs_envelope=False)),
        T("mtom-root-part", "root part headers", True, "XOP 1.0 §4",
          'application/xop+xml; type="application/soap+xml", Content-ID <...>, Content-Transfer-Encoding',
          _per_request(_check_root_part, needs_envelope=False)),
        T("mtom-document-parts", "document parts and xop:Include references", True, "ITI TF-2b 3.41.5, RFC 2392, XOP 1.0 §3, DTS 432",
          "Content-ID <...> and Content-Transfer-Encoding on each part; one xop:Include per part",
          _per_request(_check_document_parts)),
        T("soap-envelope", "SOAP 1.2 ITI-41 envelope", True, "ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding",
          "readable SOAP 1.2 envelope with one Header and Body", _per_request(_check_soap, needs_envelope=False)),
        T("wsa-action", "wsa:Action", True, "ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding (ONC XDR checklist XD 2)",
          "exactly one, the PnR action, mustUnderstand true", _per_request(_check_action)),
        T("wsa-to", "wsa:To", True, "ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding (DTS 413)", "present, the endpoint URL", _per_request(_check_to)),
        T("wsa-message-id", "wsa:MessageID unique across sends", True, "ETT MT 19 / 48, DTS 425",
          "present in every request, never reused", _message_ids_unique),
        T("wsa-reply-to", "wsa:ReplyTo anonymous with mustUnderstand", False, "ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding (XD 3 vs DTS 419)",
          "ReplyTo/Address = anonymous, mustUnderstand true", _per_request(_check_reply_to)),
        T("direct-address-block", "Direct addressBlock with from and to", True, "ETT MT 49, XDR and XDM for Direct Messaging §4.1",
          "direct:addressBlock with direct:from and direct:to", _per_request(_check_address_block)),
        T("direct-metadata-level", "direct:metadata-level at the top level", False, "XDR and XDM for Direct Messaging §6.1.1",
          "top-level direct:metadata-level minimal|XDS", _per_request(_check_level)),
        T("metadata-valid", "metadata valid for the declared level", True, "ETT 1 / 2, ITI TF-3 4.3.1, XDR Limited Metadata",
          "no metadata errors for the declared level", _per_request(_check_metadata)),
        T("author-telecommunication", "sender in SubmissionSet authorTelecommunication", True,
          "XDR and XDM for Direct Messaging §4.2, ITI TF-3 4.2.3.3 (DTS 433)", "authorTelecommunication = direct:from", _per_request(_check_sender)),
        T("documents-attached", "every DocumentEntry has its document and vice versa", True, "ITI TF-3 4.2.4, NIST repository checks",
          "no XDSMissingDocument / XDSMissingDocumentMetadata", _per_request(_check_documents)),
        T("hash-size", "declared hash and size equal the bytes", True, "NIST XDS toolkit validators",
          "hash = SHA-1 and size = length of each part", _per_request(_check_hash_size)),
    )  # fmt: skip


def run_sender(
    config: SenderEndpointConfig,
    *,
    expect: int,
    timeout: float,
    on_ready: Callable[[str], None] | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> Report:
    """Start the endpoint, wait for ``expect`` messages (or connections) or ``timeout`` seconds, judge, stop."""
    with RecordingEndpoint(config) as endpoint:
        if on_ready is not None:
            on_ready(endpoint.url)
        endpoint.wait(expect, timeout)
        endpoint.stop()
        return endpoint.report(expect=expect, on_result=on_result)
