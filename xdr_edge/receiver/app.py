"""The XDR edge endpoint as a WSGI application.

Processing order, each step able to stop the request:

1. peer identity: the verified client certificate (from the TLS layer, or from a trusted proxy's header) ->
   ``registry.identify`` -> the practice. Trusted but unknown, expired or revoked: rejected *before the body is
   read* (HTTP 403, SOAP Sender fault, connection closed). A practice that already has
   ``max_requests_per_practice`` requests in progress: 503 with ``Retry-After``, body unread
   (:mod:`xdr_edge.receiver.admission`).
2. read the MTOM or plain SOAP request within limits (the envelope within ``limits.max_root_bytes`` and
   ``xml_budget``), spooling documents to disk (``wire.parse_request``); SOAP and WS-Addressing errors -> SOAP
   fault.
3. the sender (``direct:from``, and the SubmissionSet ``authorTelecommunication`` when present) must be bound to
   that practice -> else RegistryResponse Failure, errorCode ``XDSRepositoryError`` with a codeContext naming
   the address (our practice-binding rule: no standard Direct code exists; XDSRepositoryError is what RI-style recipients use
   for a refusal that is not a metadata defect).
4. metadata validation for the declared level, declared hash/size vs the bytes -> Failure with the XDS codes (ITI TF-3 4.2.4).
5. store whole-or-nothing; the same SubmissionSet uniqueId twice, through this receiver or any other sharing the
   registry database -> Failure ``XDSDuplicateUniqueIdInRegistry``.
6. answer: MTOM response to an MTOM request, plain SOAP otherwise; RelatesTo = the request's MessageID.

The registry database unreachable: HTTP 503 with ``Retry-After`` (a sender retries; nothing was stored).
``GET /healthz`` answers for a load balancer: 200 when the registry answers and the inbox's working area is
writable, 503 naming the failing check otherwise (JSON; no detail beyond ok/failing, which goes to the log).

One structured log line per request (practice, sender, message id, outcome, duration); never document content,
patient data or certificate private material.
"""

from __future__ import annotations

__all__ = ["PeerIdentitySource", "ReceiverConfig", "XdrEdgeApp"]

import importlib
import ipaddress
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, BinaryIO, Protocol, cast

from cryptography import x509

from xdr_edge.logsafe import log_internal_error, log_safe
from xdr_edge.practice import Practice
from xdr_edge.protocol.codes import DUPLICATE_IN_REGISTRY, METADATA_ERROR, REPOSITORY_ERROR
from xdr_edge.protocol.errors import (
    STOP_REQUESTS,
    ConfigurationError,
    LimitExceeded,
    RemoteProtocolError,
    StoreError,
)
from xdr_edge.protocol.findings import Finding, Severity
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.model import DirectAddress, Submission
from xdr_edge.protocol.mtom import MtomLimits
from xdr_edge.protocol.response import RegistryErrorEntry, RegistryResponse
from xdr_edge.protocol.soap import Fault
from xdr_edge.protocol.wire import (
    IncomingRequest,
    ReplyBytes,
    build_reply,
    message_id_of_unread,
    parse_request,
)
from xdr_edge.protocol.xml import DEFAULT_XML_BUDGET, XmlBudget
from xdr_edge.receiver.admission import PracticeSlots
from xdr_edge.receiver.deadlines import BODY_DEADLINE_KEY, UploadTooSlow
from xdr_edge.receiver.store import (
    OUTCOME_UNKNOWN,
    DocumentConflict,
    Inbox,
    StoredSubmission,
    UniqueIdOwnedElsewhere,
)
from xdr_edge.receiver.wsgi import content_length, is_chunked, status_line
from xdr_edge.registry.database import UNAVAILABLE

log = logging.getLogger("xdr_edge.receiver")

UNBOUND_SENDER_CODE = REPOSITORY_ERROR
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class PeerIdentitySource(str, Enum):
    """Where the verified client certificate comes from."""

    TLS = "tls"  # our own TLS layer (cheroot): SSL_CLIENT_CERT in the WSGI environ
    PROXY = "proxy"  # a TLS-terminating proxy's header, trusted only from configured proxy addresses


class Identifier(Protocol):
    """What the app needs from the certificate registry (:class:`xdr_edge.registry.Registry`)."""

    def identify(self, cert: x509.Certificate, chain: Any = ..., *, at: datetime | None = ...) -> Any: ...

    def authorize_sender(self, practice: Practice, address: DirectAddress) -> Any: ...


@dataclass(frozen=True)
class ReceiverConfig:
    """Everything one endpoint needs; immutable and shared by all worker threads."""

    registry: Identifier
    inbox: Inbox
    limits: MtomLimits = field(default_factory=MtomLimits)
    identity_source: PeerIdentitySource = PeerIdentitySource.TLS
    trusted_proxies: tuple[str, ...] = ()  # addresses or networks, e.g. "127.0.0.1", "10.0.0.0/24"
    proxy_cert_header: str = "X-SSL-Client-Cert"
    proxy_verify_header: str = "X-SSL-Client-Verify"
    hook: Callable[[StoredSubmission], None] | None = None
    path: str | None = None  # accept POSTs only on this path; None accepts any path
    # Header blocks (Clark names, soap.header_qname) accepted even when marked mustUnderstand, e.g. a sender's
    # wsse:Security when the client certificate is what authenticates; any other one gets a MustUnderstand fault.
    understood_headers: frozenset[str] = frozenset()
    # Checks /healthz runs besides the inbox's own (its working area is writable), e.g. ("registry",
    # registry.ping); each raises when failing.
    health_checks: tuple[tuple[str, Callable[[], object]], ...] = ()
    # CA certificates a client certificate may chain through to a registry trust anchor. Python's ssl module
    # (before 3.13) does not hand the application the chain a client sent, only its leaf; the registry then
    # needs the intermediates from configuration (the client CA bundle, or an intermediates file).
    intermediates: tuple[x509.Certificate, ...] = ()
    # How much structure the SOAP envelope may make the parser build (elements, attributes, namespace
    # declarations); its size is limits.max_root_bytes.
    xml_budget: XmlBudget = DEFAULT_XML_BUDGET
    # Requests one practice may have in progress at once (None: no limit); over it, 503 with Retry-After, so
    # that no single certificate can take every worker thread. build_server sets half the threads.
    max_requests_per_practice: int | None = None

    def __post_init__(self) -> None:
        if self.identity_source is PeerIdentitySource.PROXY and not self.trusted_proxies:
            raise ConfigurationError(
                "proxy mode needs at least one trusted proxy address", location="trusted_proxies"
            )
        for entry in self.trusted_proxies:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ConfigurationError(
                    f"not an IP address or network: {entry!r}", location="trusted_proxies"
                ) from exc


def load_hook(spec: str) -> Callable[[StoredSubmission], None]:
    """``package.module:function`` -> the callable that receives each stored submission."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"hook {spec!r} must look like 'package.module:function'", location="hook")
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load hook {spec!r}: {exc}", location="hook") from exc
    if not callable(func):
        raise ConfigurationError(f"hook {spec!r} is not callable", location="hook")
    return func  # type: ignore[no-any-return]


@dataclass
class _RequestLog:
    started: float = field(default_factory=time.monotonic)
    practice: str = "-"
    sender: str = "-"
    message_id: str = "-"
    outcome: str = "-"
    fingerprint: str = "-"
    status: int = 0


_RETRY_AFTER_SECONDS = 5  # the registry database unreachable: long enough for a fail-over or a restart
_HEALTH_PATH = "/healthz"


class XdrEdgeApp:
    """WSGI callable. Thread-safe: all per-request state lives in the call."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self._proxies = tuple(ipaddress.ip_network(p, strict=False) for p in config.trusted_proxies)
        self._slots = PracticeSlots(config.max_requests_per_practice)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO") == _HEALTH_PATH:
            return self._health(start_response)  # polled every few seconds: no request log line
        entry = _RequestLog()
        try:
            reply, close = self._handle(environ, entry)
        except STOP_REQUESTS:
            raise
        except BaseException as exc:
            # the last line of defence: a Receiver fault, never a traceback to the peer
            log_internal_error(log, exc, "internal error while handling message_id=%s", entry.message_id)
            reply = self._fault(
                Fault("Receiver", "internal error; the submission was not stored"), None, False
            )
            close = True
            entry.outcome = "internal-error"
        entry.status = reply.status
        headers = [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body)))]
        if close:
            headers.append(("Connection", "close"))
        if reply.status == 503:
            headers.append(("Retry-After", str(_RETRY_AFTER_SECONDS)))
        start_response(status_line(reply.status), headers)
        log.info(
            "request practice=%s sender=%s message_id=%s outcome=%s status=%d cert=%s duration_ms=%d",
            log_safe(entry.practice),
            log_safe(entry.sender),
            log_safe(entry.message_id),
            entry.outcome,
            entry.status,
            entry.fingerprint[:16],
            (time.monotonic() - entry.started) * 1000,
        )
        return [reply.body]

    # -- steps ------------------------------------------------------------------------------------------------

    def _handle(self, environ: dict[str, Any], entry: _RequestLog) -> tuple[ReplyBytes, bool]:
        # A request refused before its body is read closes the connection when it has a body: keeping the
        # connection would make the server read (and, for some servers, hold) that body for nobody.
        has_body = bool(content_length(environ)) or is_chunked(environ)
        if environ.get("REQUEST_METHOD") != "POST":
            entry.outcome = "method-not-allowed"
            body = b"XDR edge endpoint: POST an ITI-41 request here\n"
            return ReplyBytes(405, "text/plain; charset=utf-8", body), has_body
        if self.config.path is not None and environ.get("PATH_INFO", "") != self.config.path:
            entry.outcome = "wrong-path"
            fault = Fault("Sender", f"no XDR endpoint at {environ.get('PATH_INFO')!r}")
            return self._fault(fault, None, False, 404), has_body
        cert, problem = self._peer_certificate(environ)
        if cert is None:
            entry.outcome = "no-client-certificate"
            return self._fault(Fault("Sender", problem), None, False, 403), True
        try:
            ident = self.config.registry.identify(cert, self.config.intermediates)
        except StoreError as exc:
            return self._registry_unavailable(exc, entry, None, False), True
        entry.fingerprint = ident.fingerprint
        if ident.practice is None:
            entry.outcome = "certificate-rejected"
            reason = f"client certificate {ident.subject} rejected: {ident.reason}"
            return self._fault(Fault("Sender", reason), None, False, 403), True
        practice: Practice = ident.practice
        entry.practice = practice.id
        length = content_length(environ)
        if length is not None and length > self.config.limits.max_total_bytes:
            entry.outcome = "too-large"
            fault = Fault(
                "Sender",
                f"request of {length} bytes exceeds the limit of {self.config.limits.max_total_bytes}",
            )
            # Only the first bytes are read, for the MessageID the fault relates to: bounded in bytes, and in
            # time (a client that sends a little and waits must not delay its refusal by the upload pacing).
            deadline = environ.get(BODY_DEADLINE_KEY)
            if callable(deadline):
                deadline(_SALVAGE_SECONDS)
            relates_to = message_id_of_unread(
                environ.get("CONTENT_TYPE", ""),
                cast(BinaryIO, _PeerInput(environ["wsgi.input"])),
                content_length=length,
            )
            entry.message_id = relates_to or "-"
            return self._fault(fault, relates_to, _is_mtom(environ), 413), True
        with self._slots.holding(practice.id) as admitted:
            if not admitted:
                entry.outcome = "practice-busy"
                fault = Fault(
                    "Receiver",
                    f"{self._slots.limit} requests of this practice are already in progress here; retry later",
                )
                return self._fault(fault, None, False, 503), True
            return self._receive(environ, practice, ident.fingerprint, length, entry)

    def _receive(
        self,
        environ: dict[str, Any],
        practice: Practice,
        fingerprint: str,
        length: int | None,
        entry: _RequestLog,
    ) -> tuple[ReplyBytes, bool]:
        """Steps 2 to 6 for an identified practice: read the request, check, store, answer."""
        upload = _PeerInput(environ["wsgi.input"])
        try:
            request = parse_request(
                environ.get("CONTENT_TYPE", ""),
                cast(BinaryIO, upload),  # parse_request only calls read()
                limits=self.config.limits,
                spool_dir=self.config.inbox.spool_dir,
                content_length=length,
                understood_headers=self.config.understood_headers,
                xml_budget=self.config.xml_budget,
            )
        except OSError as exc:
            if exc is not upload.failure:
                raise  # our own I/O (the spool directory): an internal error, not the peer's doing
            if isinstance(exc, TimeoutError):
                # Stalled past the socket timeout, or fell behind the server's minimum upload rate: answer 408
                # (the client may still be reading); parse_request has removed the spool files.
                entry.outcome = f"client-too-slow:after-{upload.bytes_read}-bytes"
                # our own words: the rate rule's text is ours (receiver/deadlines.py), a socket timeout's is the
                # ssl module's ("timed out"), which says neither what stopped nor where
                reason = (
                    str(exc)
                    if isinstance(exc, UploadTooSlow)
                    else "the request body stopped arriving before it was complete (nothing more came within "
                    "this endpoint's socket timeout)"
                )
                return self._fault(Fault("Sender", reason), None, False, 408), True
            # The peer reset the connection mid-upload. Nothing to alert on and nobody to answer;
            # parse_request has removed the spool files. One line, not a traceback.
            entry.outcome = f"client-disconnected:after-{upload.bytes_read}-bytes"
            fault = Fault("Sender", "the connection failed before the request body was complete")
            return self._fault(fault, None, False, 400), True
        except RemoteProtocolError as exc:
            entry.outcome = f"fault:{exc.code}"
            entry.message_id = exc.relates_to or "-"
            if exc.is_fault or isinstance(exc, LimitExceeded):
                status = 413 if isinstance(exc, LimitExceeded) else None
                return self._fault(Fault.from_error(exc), exc.relates_to, _is_mtom(environ), status), True
            failure = RegistryResponse.failure(
                [RegistryErrorEntry(exc.xds_error_code, exc.message, location=exc.location)]
            )
            return build_reply(failure, relates_to=exc.relates_to, mtom=_is_mtom(environ)), True
        with request:
            entry.message_id = request.envelope.message_id or "-"
            try:
                sender_problem = self._check_senders(request, practice, entry)
                response = self._process(request, practice, fingerprint, entry, sender_problem)
            except StoreError as exc:
                if exc.code == OUTCOME_UNKNOWN:  # failed while committing: it may be stored
                    return self._outcome_unknown(exc, entry, request.envelope.message_id, request.mtom), False
                # the registry database did not answer: nothing was stored
                return self._registry_unavailable(
                    exc, entry, request.envelope.message_id, request.mtom
                ), False
            return build_reply(response, relates_to=request.envelope.message_id, mtom=request.mtom), False

    def _process(
        self,
        request: IncomingRequest,
        practice: Practice,
        fingerprint: str,
        entry: _RequestLog,
        sender_problem: RegistryErrorEntry | None,
    ) -> RegistryResponse:
        submission = request.submission
        if sender_problem is not None:
            entry.outcome = "sender-not-bound"
            return RegistryResponse.failure([sender_problem])
        if request.errors or submission is None:
            entry.outcome = "metadata-failure"
            findings = request.findings or [
                Finding(
                    METADATA_ERROR,
                    Severity.ERROR,
                    "RegistryObjectList",
                    "no SubmissionSet",
                    "ss-missing",
                )
            ]
            return RegistryResponse.from_findings(findings)
        assert request.envelope.submit_objects is not None
        try:
            stored = self.config.inbox.store(
                submission,
                metadata=request.envelope.submit_objects,
                package=request.package,
                summary=self._summary(request, submission, practice, fingerprint),
            )
        except DocumentConflict as exc:
            owned = isinstance(exc, UniqueIdOwnedElsewhere)
            entry.outcome = "uniqueid-owned-elsewhere" if owned else "document-conflict"
            return RegistryResponse.failure(
                [RegistryErrorEntry(exc.error_code, exc.code_context, location=exc.location)]
            )
        except StoreError as exc:
            if exc.code in (UNAVAILABLE, OUTCOME_UNKNOWN):
                raise  # "retry later" as a 503, which senders retry by themselves; or "perhaps stored"
            log.exception("store failed message_id=%s", entry.message_id)
            entry.outcome = "store-error"
            return RegistryResponse.failure(
                [RegistryErrorEntry(REPOSITORY_ERROR, "the submission could not be stored; retry later")]
            )
        if stored is None:
            entry.outcome = "duplicate"
            uid = submission.submission_set.unique_id
            return RegistryResponse.failure(
                [
                    RegistryErrorEntry(
                        DUPLICATE_IN_REGISTRY,
                        f"SubmissionSet uniqueId {uid} was already received",
                        location="RegistryPackage/ExternalIdentifier[uniqueId]",
                    )
                ]
            )
        entry.outcome = "stored"
        self._run_hook(stored, entry)
        warnings = [f for f in request.findings if not f.is_error]
        return RegistryResponse.from_findings(warnings)

    def _check_senders(
        self, request: IncomingRequest, practice: Practice, entry: _RequestLog
    ) -> RegistryErrorEntry | None:
        """Every sender address the request claims must be bound to the certificate's practice (our practice-binding rule)."""
        addresses: list[tuple[str, DirectAddress]] = []
        if request.envelope.direct_from is not None:
            addresses.append(("S:Header/direct:addressBlock/direct:from", request.envelope.direct_from))
        submission = request.submission
        if submission is not None:
            for author in submission.submission_set.authors:
                for address in author.addresses:
                    addresses.append(
                        ("RegistryPackage/Classification[author]/Slot[authorTelecommunication]", address)
                    )
        if not addresses:
            return None  # validation reports the missing sender (no address block and no authorTelecommunication)
        entry.sender = str(addresses[0][1])
        allowed: set[DirectAddress] = set()
        for location, address in addresses:
            if address in allowed:
                continue  # direct:from is usually also the author's telecom: one registry read is enough
            decision = self.config.registry.authorize_sender(practice, address)
            if not decision.allowed:
                return RegistryErrorEntry(
                    UNBOUND_SENDER_CODE,
                    f"sender {address} is not bound to the practice of the client certificate: {decision.reason}",
                    location=location,
                )
            allowed.add(address)
        return None

    def _summary(
        self, request: IncomingRequest, submission: Submission, practice: Practice, fingerprint: str
    ) -> dict[str, Any]:
        env = request.envelope
        return {
            "practice": practice.id,
            "sender": str(submission.sender) if submission.sender else None,
            "recipients": [str(a) for a in submission.recipients],
            # the sender asked to be told when the message reaches its final destination (XDR and XDM for Direct Messaging §4.1): the
            # downstream HISP must honour it, so it travels with the submission
            "final_destination_delivery": submission.final_destination_delivery,
            "message_id": env.message_id,
            "submission_set_unique_id": submission.submission_set.unique_id,
            "document_unique_ids": [e.unique_id for e in submission.document_entries],
            "metadata_level": submission.level.value,
            "metadata_level_declared": request.declared_level is not None,
            "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "certificate_sha256": fingerprint,
            "mtom": request.mtom,
        }

    def _run_hook(self, stored: StoredSubmission, entry: _RequestLog) -> None:
        hook = self.config.hook
        if hook is None:
            return
        try:
            hook(stored)
        except Exception:  # stored is delivered: a downstream failure must not turn into a send failure
            log.exception(
                "hook failed for message_id=%s (submission stored at %s)", entry.message_id, stored.directory
            )

    def _outcome_unknown(
        self, exc: StoreError, entry: _RequestLog, relates_to: str | None, mtom: bool
    ) -> ReplyBytes:
        """The index failed while committing and could not be asked afterwards: the submission may be stored
        (the receiver settles it once the database answers). Not a 503, which says "not stored": a Receiver
        fault with HTTP 500, which SOAP 1.2 Part 1 §5.4.6 lets a sender resend; sent again unchanged, it is
        stored or answered as a duplicate, and either means it was delivered."""
        log.error("store outcome unknown message_id=%s: %s", entry.message_id, exc)
        entry.outcome = "store-outcome-unknown"
        fault = Fault(
            "Receiver",
            "whether the submission was stored could not be confirmed (the registry database failed while "
            "recording it); send it again unchanged: a duplicate answer then means it was stored",
        )
        return self._fault(fault, relates_to, mtom, 500)

    def _registry_unavailable(
        self, exc: StoreError, entry: _RequestLog, relates_to: str | None, mtom: bool
    ) -> ReplyBytes:
        """The registry database did not answer: "busy, retry" (503 + Retry-After), never a refusal the sender
        would take as final; the body was not stored."""
        log.warning("registry unavailable message_id=%s: %s", entry.message_id, exc)
        entry.outcome = "registry-unavailable"
        fault = Fault("Receiver", "the certificate registry is unavailable; retry later")
        return self._fault(fault, relates_to, mtom, 503)

    # -- health -----------------------------------------------------------------------------------------------

    def _health(self, start_response: StartResponse) -> Iterable[bytes]:
        """``GET /healthz``: 200 when every check passes, 503 otherwise; what failed, and why, goes to the log
        (the answer says only which check: it may be reachable by more than the load balancer)."""
        checks: dict[str, str] = {}
        for name, check in (*self.config.health_checks, ("inbox", self.config.inbox.probe)):
            try:
                check()
            except Exception as exc:  # any failure of a check is the answer, never an error of the endpoint
                log.warning("health check %s failing: %s", name, exc)
                checks[name] = "failing"
            else:
                checks[name] = "ok"
        healthy = all(value == "ok" for value in checks.values())
        body = json.dumps(
            {
                "status": "ok" if healthy else "failing",
                "receiver": self.config.inbox.receiver,
                "checks": checks,
            },
            sort_keys=True,
        ).encode("utf-8")
        start_response(
            "200 OK" if healthy else "503 Service Unavailable",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]

    # -- identity ---------------------------------------------------------------------------------------------

    def _peer_certificate(self, environ: dict[str, Any]) -> tuple[x509.Certificate | None, str]:
        if self.config.identity_source is PeerIdentitySource.TLS:
            pem = environ.get("SSL_CLIENT_CERT")
            if not pem or environ.get("SSL_CLIENT_VERIFY") != "SUCCESS":
                return None, "a verified TLS client certificate is required"
            return _load_pem(pem)
        remote = environ.get("REMOTE_ADDR", "")
        if not self._from_trusted_proxy(remote):
            return None, "forwarded client certificates are accepted only from the configured proxy"
        verify = environ.get(_environ_key(self.config.proxy_verify_header), "")
        if verify != "SUCCESS":
            return None, "the proxy did not verify a client certificate"
        raw = environ.get(_environ_key(self.config.proxy_cert_header), "")
        if not raw:
            return None, "the proxy forwarded no client certificate"
        return _load_pem(urllib.parse.unquote(raw))

    def _from_trusted_proxy(self, remote: str) -> bool:
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return False
        return any(address in network for network in self._proxies)

    @staticmethod
    def _fault(fault: Fault, relates_to: str | None, mtom: bool, status: int | None = None) -> ReplyBytes:
        reply = build_reply(fault, relates_to=relates_to, mtom=mtom)
        if status is not None:
            return ReplyBytes(status, reply.content_type, reply.body)
        return reply


#: How long a request refused before its body is read may take to show the first bytes of its body (for the
#: MessageID its fault relates to).
_SALVAGE_SECONDS = 2.0


class _PeerInput:
    """``wsgi.input`` as parse_request reads it, remembering how much arrived and whether reading failed.

    Why: an ``OSError`` out of parse_request may come from the peer's socket (reset, timeout) or from our own
    spool files (disk full); only the first is the client's doing, and only this wrapper can tell them apart.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.bytes_read = 0
        self.failure: OSError | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            data: bytes = self._stream.read(size)
        except OSError as exc:
            self.failure = exc
            raise
        self.bytes_read += len(data)
        return data


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _load_pem(pem: str) -> tuple[x509.Certificate | None, str]:
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii")), ""
    except ValueError:
        return None, "the client certificate could not be parsed"


def _is_mtom(environ: dict[str, Any]) -> bool:
    """Whether the request is an MTOM package, so that even a fault answers in kind (ITI TF-2x V.3.6); a
    Content-Type too broken to read is answered in plain SOAP."""
    media = MediaType.parse_or_none(environ.get("CONTENT_TYPE"))
    return media is not None and media.matches("multipart/related")
