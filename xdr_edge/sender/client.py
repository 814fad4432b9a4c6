"""XdrClient: send a Submission to a HISP's XDR edge with the right practice's client certificate.

The I/O shell around the pure core: pre-flight (binding, certificate coverage, validation), then
``wire.build_request`` -> the practice's own TLS session (:mod:`xdr_edge.tls`) -> ``wire.parse_response`` ->
a typed :class:`SendResult`. Library exceptions (urllib3, ssl) are translated here, at one boundary.

What was sent decides what a failure means: when no request byte left the machine (a refused or timed-out
connection or TLS handshake) the result is TransportError, "nothing was sent"; a request cut off before its
last byte cannot have been stored either (TransportError); only after the whole request went out is an
unanswered or unreadable answer OutcomeUnknown. Answers are read up to ``max_response_bytes`` (16 MiB by
default), never further: memory stays bounded whatever the peer sends.

Retry rule (docs/design.md, "Retries"): retry only when nothing was sent (connect failure), on
HTTP 503, when the connection closed before the whole body was written (nothing complete reached the HISP), and
when the outcome is unknown (timeout or drop after the body went out); each attempt gets a new
MessageID but keeps the SubmissionSet and DocumentEntry uniqueIds, so a receiver that already stored the first
attempt answers with a duplicate-uniqueId Failure, which we report as already delivered.
"""

from __future__ import annotations

__all__ = ["RetryPolicy", "SendResult", "XdrClient"]

import io
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from urllib3 import exceptions as http_errors

from xdr_edge.certs import covered_by_certificate
from xdr_edge.practice import Practice
from xdr_edge.protocol.classify import Outcome, classify_response, retry_after_seconds
from xdr_edge.protocol.codes import ALREADY_STORED
from xdr_edge.protocol.errors import (
    CertificateError,
    ConfigurationError,
    LocalProtocolError,
    NotBound,
    ValidationFailed,
)
from xdr_edge.protocol.findings import Finding
from xdr_edge.protocol.metadata import MetadataTemplates, check_xml_text
from xdr_edge.protocol.model import Submission
from xdr_edge.protocol.mtom import MtomBody
from xdr_edge.protocol.response import RegistryErrorEntry
from xdr_edge.protocol.soap import Fault, LevelPlacement, RequestEnvelopeWriter
from xdr_edge.protocol.validate import check_outgoing
from xdr_edge.protocol.wire import OutgoingRequest, build_request
from xdr_edge.sender.failures import alert_meaning, is_connection_drop, probe_client_auth, root_cause
from xdr_edge.sender.sessions import DEFAULT_CONNECTIONS, PracticeResponse, PracticeSession, SessionPool

log = logging.getLogger(__name__)

#: The largest answer read from a HISP. An ITI-41 response is a few KB (a RegistryResponse, or a fault); past
#: this, reading stops, the connection is closed and the outcome is unknown (see :meth:`XdrClient._interpret`).
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (``uniform(0, min(cap, base * 2**n))``), or with ``jitter="equal"``
    half of each step fixed and half random (``step/2 + uniform(0, step/2)``): never close to nothing, for a
    caller that waits for hours and must not knock again at once (the outbox)."""

    max_attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 30.0
    jitter: Literal["full", "equal"] = "full"

    def __post_init__(self) -> None:
        # Checked here, not where used: a zero max_attempts would otherwise surface as a bare AssertionError
        # after the loop, and a negative delay as a ValueError from time.sleep in the middle of a send.
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ConfigurationError(
                f"RetryPolicy max_attempts must be a whole number of at least 1 (one attempt, no retries), "
                f"not {self.max_attempts!r}",
                location="RetryPolicy.max_attempts",
            )
        for name in ("base_delay", "max_delay"):
            value = getattr(self, name)
            if not _finite_number(value) or value < 0:
                raise ConfigurationError(
                    f"RetryPolicy {name} must be a finite number of seconds, 0 or more, not {value!r}",
                    location=f"RetryPolicy.{name}",
                )
        if self.jitter not in ("full", "equal"):
            raise ConfigurationError(
                f"RetryPolicy jitter must be 'full' or 'equal', not {self.jitter!r}",
                location="RetryPolicy.jitter",
            )

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` >= 1); the exponent stops growing once the
        cap is reached, so a caller counting thousands of retries never overflows."""
        step = min(self.max_delay, self.base_delay * 2.0 ** min(max(attempt - 1, 0), 64))
        if self.jitter == "equal":
            return step / 2 + rng.uniform(0, step / 2)
        return rng.uniform(0, step)


@dataclass(frozen=True)
class SendResult:
    """What happened to one submission. ``ok`` is true for Success and PartialSuccess."""

    outcome: Outcome
    message: str
    practice_id: str
    endpoint: str
    message_id: str
    submission_set_unique_id: str
    document_unique_ids: tuple[str, ...]
    http_status: int | None = None
    elapsed_seconds: float = 0.0
    attempts: int = 1
    bytes_sent: int = 0
    errors: tuple[RegistryErrorEntry, ...] = ()
    fault: Fault | None = None
    already_delivered: bool = False
    message_ids: tuple[str, ...] = ()
    response_findings: tuple[Finding, ...] = ()
    raw_response: bytes | None = field(default=None, repr=False)
    response_content_type: str | None = None
    #: The last attempt failed in a way a later attempt may cure (connect failure, HTTP 503, a connection
    #: closed mid-upload, an unknown outcome): what a caller that keeps retrying for longer (the outbox) reads.
    retryable: bool = False
    #: Some attempt of this call (or an earlier send the caller declared with ``maybe_stored``) may have been
    #: stored by the HISP, whatever the last attempt says (an unknown outcome followed by a 503): a later send of
    #: the same submission must count a duplicate-uniqueId answer as delivered.
    maybe_stored: bool = False
    #: Seconds the last answer asked to wait before trying again (``Retry-After``, RFC 9110 §10.2.3), if any.
    retry_after: float | None = None
    #: The HISP refused our client certificate in the TLS handshake (an alert naming it): nothing was sent, and
    #: the practice's other submissions would be refused the same way until its certificate is accepted there.
    certificate_refused: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.SUCCESS, Outcome.PARTIAL_SUCCESS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "ok": self.ok,
            "message": self.message,
            "practice": self.practice_id,
            "endpoint": self.endpoint,
            "message_id": self.message_id,
            "message_ids": list(self.message_ids),
            "submission_set_unique_id": self.submission_set_unique_id,
            "document_unique_ids": list(self.document_unique_ids),
            "http_status": self.http_status,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "attempts": self.attempts,
            "bytes_sent": self.bytes_sent,
            "already_delivered": self.already_delivered,
            "retryable": self.retryable,
            "maybe_stored": self.maybe_stored,
            "retry_after": self.retry_after,
            "certificate_refused": self.certificate_refused,
            "errors": [e.as_dict() for e in self.errors],
            "fault": None
            if self.fault is None
            else {"code": self.fault.code, "subcode": self.fault.subcode, "reason": self.fault.reason},
            "response_findings": [f.as_dict() for f in self.response_findings],
        }


@dataclass(frozen=True)
class _Attempt:
    outcome: Outcome
    message: str
    retryable: bool
    http_status: int | None = None
    errors: tuple[RegistryErrorEntry, ...] = ()
    fault: Fault | None = None
    findings: tuple[Finding, ...] = ()
    raw: bytes | None = None
    content_type: str | None = None
    bytes_sent: int = 0
    retry_after: float | None = None
    certificate_refused: bool = False


def _may_be_stored(attempt: _Attempt) -> bool:
    """Whether the HISP may hold what this attempt sent: an unknown outcome, or a ``Receiver`` fault (SOAP 1.2
    Part 1 §5.4.6: the processing failed, not the message; a HISP that cannot confirm it stored a submission,
    its database failing while recording it, answers so)."""
    if attempt.outcome is Outcome.OUTCOME_UNKNOWN:
        return True
    return attempt.outcome is Outcome.FAULT and attempt.fault is not None and attempt.fault.code == "Receiver"


class _DocumentChanged(Exception):
    """``document-changed`` from building or streaming one attempt, with what that attempt had already written,
    so :meth:`XdrClient.send` can tell "nothing ever left" (raise) from "an earlier attempt went out" (report
    that attempt's outcome rather than lose it)."""

    def __init__(self, error: LocalProtocolError, bytes_sent: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.bytes_sent = bytes_sent


class _CountingBody:
    """Wraps the MTOM body to learn whether any byte left: the difference between "nothing was sent" (safe to
    retry as a connect failure) and "the outcome is unknown". Keeps ``__len__`` (the length urllib3 is told in
    the Content-Length header)."""

    def __init__(self, body: MtomBody) -> None:
        self._body = body
        self.total = len(body)
        self.sent = 0

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[bytes]:
        # ``sent`` counts a chunk when it is handed over, before it is written: "sent < total" proves the peer
        # never had the whole body; "sent == total" does not prove it had.
        for chunk in self._body:
            self.sent += len(chunk)
            yield chunk


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _checked_timeout(timeout: tuple[float, float]) -> tuple[float, float]:
    """``(connect, read)`` seconds, both finite and above 0: urllib3 refuses 0 itself (a ValueError in the middle
    of a send), and a negative or infinite one is never what was meant."""
    if not isinstance(timeout, tuple) or len(timeout) != 2:
        raise ConfigurationError(
            f"XdrClient timeout must be a (connect, read) pair of seconds, not {timeout!r}",
            location="timeout",
        )
    for name, value in zip(("connect", "read"), timeout, strict=True):
        if not _finite_number(value) or value <= 0:
            raise ConfigurationError(
                f"XdrClient timeout: the {name} timeout must be a finite number of seconds above 0, not "
                f"{value!r} (timeout={timeout!r})",
                location="timeout",
            )
    return timeout


class XdrClient:
    """Sends submissions for many practices to one XDR endpoint; thread-safe.

    One TLS session per practice (and certificate): a practice's connection is never reused for another
    practice. Construct once and share between threads; call :meth:`close` (or use ``with``) at the end.

    ``connections_per_practice`` bounds the connections kept open to the endpoint per practice: a connection is
    opened only when a send finds none free, and kept for the next send; with more threads sending for one
    practice than that, the others wait for a connection rather than open and close one per message. Set it to
    the number of threads that send at once.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        ca_bundle: Path | str,
        practices: Iterable[Practice] | Mapping[str, Practice] = (),
        timeout: tuple[float, float] = (10.0, 120.0),
        retry: RetryPolicy | None = None,
        placement: LevelPlacement = LevelPlacement.TOP_LEVEL,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        connections_per_practice: int = DEFAULT_CONNECTIONS,
    ) -> None:
        if not endpoint.lower().startswith("https://"):
            raise ConfigurationError(
                f"endpoint {endpoint!r} is not https: the XDR edge requires mutual TLS", location="endpoint"
            )
        self.endpoint = endpoint
        self.ca_bundle = Path(ca_bundle)
        if not self.ca_bundle.is_file():
            raise ConfigurationError(f"CA bundle not found: {self.ca_bundle}", location="ca_bundle")
        items = practices.values() if isinstance(practices, Mapping) else practices
        self._practices = {p.id: p for p in items}
        self.timeout = _checked_timeout(timeout)
        if (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or max_response_bytes < 1
        ):
            raise ConfigurationError(
                f"XdrClient max_response_bytes must be a whole number of bytes above 0, not {max_response_bytes!r}",
                location="max_response_bytes",
            )
        self.max_response_bytes = max_response_bytes
        self.retry = retry or RetryPolicy()
        self.placement = placement
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        if (
            isinstance(connections_per_practice, bool)
            or not isinstance(connections_per_practice, int)
            or connections_per_practice < 1
        ):
            raise ConfigurationError(
                "XdrClient connections_per_practice must be a whole number of at least 1, not "
                f"{connections_per_practice!r}",
                location="connections_per_practice",
            )
        self._pool = SessionPool(self.ca_bundle, connections_per_practice=connections_per_practice)
        # What does not change from one message to the next is built once per client: the parsed WSDL (the
        # envelope writer), the metadata that repeats between messages (templates) and, per practice, the TLS
        # session and its connections (the pool).
        self._writer = RequestEnvelopeWriter()
        self._templates = MetadataTemplates()

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> XdrClient:
        """Build from a :class:`xdr_edge.sender.config.SenderConfig`."""
        timeout = (10.0, float(config.timeout_seconds))
        return cls(
            endpoint=config.endpoint,
            ca_bundle=config.ca_bundle,
            practices=config.practices,
            timeout=timeout,
            **kwargs,
        )

    def __enter__(self) -> XdrClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.close()

    def practice(self, practice: Practice | str) -> Practice:
        if isinstance(practice, Practice):
            return practice
        found = self._practices.get(practice)
        if found is None:
            known = ", ".join(sorted(self._practices)) or "none"
            raise ConfigurationError(
                f"unknown practice {practice!r} (configured: {known})", location="practice"
            )
        return found

    # -- pre-flight -------------------------------------------------------------------------------------------

    def preflight(self, submission: Submission, practice: Practice | str) -> list[Finding]:
        """Checks before any network I/O; raises on the first blocking problem, returns warnings otherwise."""
        return self._preflight(submission, self.practice(practice))[0]

    def _preflight(self, submission: Submission, prac: Practice) -> tuple[list[Finding], PracticeSession]:
        """:meth:`preflight`, and the session (with the identity it checked) the first attempt sends with."""
        if not prac.active:
            raise ConfigurationError(f"practice {prac.id!r} is not active", location=f"practice {prac.id}")
        if prac.credential is None:
            raise ConfigurationError(
                f"practice {prac.id!r} has no client certificate configured", location=f"practice {prac.id}"
            )
        # The pool's identity: loaded once and re-read only when the files change, as the send will use it.
        session = self._pool.session_for(prac)
        identity = session.identity
        now = datetime.now(UTC)
        if identity.not_after < now:
            raise CertificateError(
                f"certificate expired: the client certificate of practice {prac.id!r} ({identity.subject}) expired "
                f"on {identity.not_after:%Y-%m-%d %H:%M} UTC; nothing was sent to {self.endpoint}",
                code="client-certificate-expired",
                location=str(prac.credential.cert or prac.credential.p12),
            )
        if identity.not_before > now:
            raise CertificateError(
                f"the client certificate of practice {prac.id!r} ({identity.subject}) is not valid before "
                f"{identity.not_before:%Y-%m-%d %H:%M} UTC",
                code="client-certificate-not-yet-valid",
            )
        sender = submission.sender
        if sender is None:
            raise NotBound(
                f"the submission has no sender address (direct:from or authorTelecommunication) for practice "
                f"{prac.id!r}",
                location="direct:from",
            )
        if not prac.binds(sender):
            bound = ", ".join(str(b) for b in prac.bindings) or "nothing"
            raise NotBound(
                f"sender {sender} is not bound to practice {prac.id!r} (bound: {bound}); certificate subject "
                f"{identity.subject}; nothing was sent",
                location="direct:from",
            )
        if not covered_by_certificate(identity, sender):
            raise NotBound(
                f"sender {sender} is not covered by the certificate of practice {prac.id!r} (subject "
                f"{identity.subject}; SAN e-mail {list(identity.san_emails)}, DNS {list(identity.san_dns)})",
                code="sender-not-in-certificate",
                location="direct:from",
            )
        try:
            check_xml_text(submission)  # lxml would refuse it only while writing, with a bare ValueError
        except LocalProtocolError as exc:
            raise LocalProtocolError(
                f"{exc.message}; nothing was sent to {self.endpoint}", code=exc.code, location=exc.location
            ) from exc
        findings = check_outgoing(submission)  # metadata for its level, and no empty document
        if any(f.is_error for f in findings):
            raise ValidationFailed(findings)
        return findings, session

    # -- sending ----------------------------------------------------------------------------------------------

    def send(
        self,
        submission: Submission,
        *,
        practice: Practice | str,
        keep_raw_response: bool = False,
        maybe_stored: bool = False,
    ) -> SendResult:
        """Send ``submission`` with ``practice``'s certificate; retries per :class:`RetryPolicy`.

        Raises only for problems found before sending (configuration, certificate files, binding, validation),
        and :class:`~xdr_edge.protocol.errors.LocalProtocolError` ``document-changed`` when a document changed on disk
        before any attempt sent a byte; everything that happens on the wire is reported in the returned
        :class:`SendResult`. A document that changes between attempts, after one was sent, is not re-sent and
        is not raised either: the earlier attempt's outcome (which may be "stored") must not be lost.

        ``maybe_stored`` says an earlier send of this same submission (same uniqueIds), made by another call or
        before a restart, may have been stored: a duplicate-uniqueId answer then means already delivered from the
        first attempt on, as it does after an unknown outcome within one call.
        """
        prac = self.practice(practice)
        _, checked = self._preflight(submission, prac)
        session: PracticeSession | None = checked  # the first attempt sends with the identity just checked
        started = time.monotonic()
        message_ids: list[str] = []
        attempt_result: _Attempt | None = None
        total_sent = 0
        already = False
        changed: LocalProtocolError | None = None
        # an earlier attempt (of this call, or of an earlier call the caller told us of) may have been stored
        for number in range(1, self.retry.max_attempts + 1):
            try:
                request = self._build(submission)
                current = self._attempt(session or self._pool.session_for(prac), request)
                session = None  # a retry asks the pool again: the certificate may have been renewed
            except _DocumentChanged as exc:
                if attempt_result is None or total_sent == 0:
                    raise exc.error from None  # no complete request ever left: nothing can have been stored
                total_sent += exc.bytes_sent
                changed = exc.error
                log.warning("document changed practice=%s before attempt %d: not re-sent", prac.id, number)
                break
            attempt_result = current
            message_ids.append(request.message_id)
            total_sent += attempt_result.bytes_sent
            if maybe_stored and self._is_duplicate(attempt_result, submission):
                already = True
                break
            maybe_stored = maybe_stored or _may_be_stored(attempt_result)
            if not attempt_result.retryable or number == self.retry.max_attempts:
                break
            with self._rng_lock:
                pause = self.retry.delay(number, self._rng)
            log.info(
                "retry practice=%s message_id=%s outcome=%s in %.2fs",
                prac.id,
                request.message_id,
                attempt_result.outcome.value,
                pause,
            )
            self._sleep(pause)
        assert attempt_result is not None  # max_attempts >= 1, and a first-attempt change is raised above
        attempts = len(message_ids)
        outcome, message = attempt_result.outcome, attempt_result.message
        if already:
            outcome = Outcome.SUCCESS
            message = (
                "already delivered: an earlier attempt was stored by the HISP (it reports the uniqueIds as "
                f"duplicates after {attempts} attempts)"
            )
        elif changed is not None:
            which = f"document {changed.location}" if changed.location else "a document"
            message = (
                f"{message}; then the {which} changed on disk, so it was not re-sent (attempt {attempts + 1} "
                f"was abandoned): this outcome of attempt {attempts} stands"
            )
        result = SendResult(
            outcome=outcome,
            message=message,
            practice_id=prac.id,
            endpoint=self.endpoint,
            message_id=message_ids[-1],
            message_ids=tuple(message_ids),
            submission_set_unique_id=submission.submission_set.unique_id,
            document_unique_ids=tuple(e.unique_id for e in submission.document_entries),
            http_status=attempt_result.http_status,
            elapsed_seconds=time.monotonic() - started,
            attempts=attempts,
            bytes_sent=total_sent,
            errors=attempt_result.errors,
            fault=attempt_result.fault,
            already_delivered=already,
            response_findings=attempt_result.findings,
            raw_response=attempt_result.raw if keep_raw_response else None,
            response_content_type=attempt_result.content_type,
            retryable=attempt_result.retryable,
            maybe_stored=maybe_stored or already,
            retry_after=attempt_result.retry_after,
            certificate_refused=attempt_result.certificate_refused,
        )
        log.info(
            "send practice=%s message_id=%s outcome=%s http_status=%s duration_ms=%d bytes=%d attempts=%d",
            result.practice_id,
            result.message_id,
            result.outcome.value,
            result.http_status,
            result.elapsed_seconds * 1000,
            result.bytes_sent,
            result.attempts,
        )
        return result

    def _build(self, submission: Submission) -> OutgoingRequest:
        """A fresh request (new MessageID); a document whose size no longer matches its metadata is found here,
        by ``os.stat``, before anything is sent. The submission passed :meth:`_preflight`, whose
        ``check_xml_text`` the metadata writer need not repeat."""
        try:
            return build_request(
                submission,
                endpoint=self.endpoint,
                placement=self.placement,
                writer=self._writer,
                text_checked=True,
                templates=self._templates,
            )
        except LocalProtocolError as exc:
            if exc.code == "document-changed":
                raise _DocumentChanged(exc, 0) from exc
            raise

    @staticmethod
    def _is_duplicate(attempt: _Attempt, submission: Submission) -> bool:
        """A Failure whose every error says one of *our* uniqueIds is already there (and nothing else).

        Only meaningful after an attempt whose outcome is unknown: after a connect failure or a 503 nothing of
        ours was stored, so a duplicate then means someone else used those uniqueIds, which is a real Failure.
        """
        if attempt.outcome is not Outcome.FAILURE:
            return False
        errors = [e for e in attempt.errors if e.severity.value == "Error"]
        ids = {submission.submission_set.unique_id, *(e.unique_id for e in submission.document_entries)}
        return bool(errors) and all(
            e.error_code in ALREADY_STORED and (not e.code_context or any(i in e.code_context for i in ids))
            for e in errors
        )

    def _attempt(self, session: PracticeSession, request: OutgoingRequest) -> _Attempt:
        body = _CountingBody(request.body)
        subject = session.identity.subject
        try:
            response = session.post(self.endpoint, data=body, headers=request.headers(), timeout=self.timeout)
        except LocalProtocolError as exc:
            # Raised by the body while streaming, before its closing boundary: the peer got no complete request.
            if exc.code == "document-changed":
                raise _DocumentChanged(exc, body.sent) from exc
            raise
        except http_errors.SSLError as exc:
            rejected = self._rejection(exc, session)
            if rejected is not None:
                return _Attempt(
                    Outcome.TRANSPORT_ERROR, rejected, False, bytes_sent=body.sent, certificate_refused=True
                )
            if body.sent > 0:
                return self._cut_off(exc, body)  # past the handshake: the connection dropped mid-request
            return _Attempt(
                Outcome.TRANSPORT_ERROR, self._tls_message(exc, subject), False, bytes_sent=body.sent
            )
        except http_errors.ConnectTimeoutError as exc:
            if isinstance(exc, http_errors.NewConnectionError):  # refused, unreachable, no such host
                return self._failed(exc, session, body)
            return _Attempt(
                Outcome.TRANSPORT_ERROR, f"connection to {self.endpoint} timed out; nothing was sent", True
            )
        except http_errors.ReadTimeoutError as exc:
            if body.sent == 0:
                # A TLS handshake that never completes is reported by urllib3 as a read timeout (of the connect
                # timeout): a server whose every worker is busy looks like this. No request byte left.
                return _Attempt(
                    Outcome.TRANSPORT_ERROR,
                    f"{self.endpoint} did not complete the connection within {self.timeout[0]:g}s (the server may "
                    f"be overloaded): {root_cause(exc)}; nothing was sent",
                    True,
                )
            if body.sent < body.total:
                return self._cut_off(exc, body)
            return _Attempt(
                Outcome.OUTCOME_UNKNOWN,
                f"no response from {self.endpoint} within {self.timeout[1]:g}s after the request was sent; "
                "the HISP may or may not have stored it",
                True,
                bytes_sent=body.sent,
            )
        except http_errors.HTTPError as exc:
            return self._failed(exc, session, body)
        with response:
            return self._interpret(response, request, body.sent)

    def _failed(self, exc: Exception, session: PracticeSession, body: _CountingBody) -> _Attempt:
        """The connection failed (refused, reset, closed) other than by a timeout or a TLS error of our own."""
        rejected = self._rejection(exc, session)
        if rejected is not None:
            return _Attempt(
                Outcome.TRANSPORT_ERROR, rejected, False, bytes_sent=body.sent, certificate_refused=True
            )
        if body.sent == 0:
            return _Attempt(
                Outcome.TRANSPORT_ERROR,
                f"could not connect to {self.endpoint}: {root_cause(exc)}; nothing was sent",
                True,
            )
        return self._cut_off(exc, body)

    def _cut_off(self, exc: Exception, body: _CountingBody) -> _Attempt:
        """The connection failed after part or all of the body was written. Short of the whole body, the HISP
        cannot have a complete request, so nothing was stored (a server that refuses early, as too large or for
        the certificate, and closes without waiting for the rest looks like this); with the whole body
        written, it may have stored it."""
        cause = root_cause(exc)
        if body.sent < body.total:
            return _Attempt(
                Outcome.TRANSPORT_ERROR,
                f"{self.endpoint} closed the connection after {body.sent} of {body.total} request bytes, before "
                f"the request was complete, so it was not stored ({cause}); a HISP that refuses a request early "
                "(too large, certificate refused) and does not wait for the rest looks like this",
                True,
                bytes_sent=body.sent,
            )
        return _Attempt(
            Outcome.OUTCOME_UNKNOWN,
            f"the connection to {self.endpoint} failed after the whole request ({body.sent} bytes) was sent: "
            f"{cause}; the HISP may or may not have stored it",
            True,
            bytes_sent=body.sent,
        )

    def _interpret(self, response: PracticeResponse, request: OutgoingRequest, sent: int) -> _Attempt:
        status = response.status_code
        content_type = response.headers.get("Content-Type", "")
        try:
            raw = _read_capped(response, self.max_response_bytes)
        except _ResponseTooLarge:
            # Reading stopped at the cap and the connection is closed (``with response`` in _attempt) without
            # reading the rest. What the HISP decided is in the part not read; retrying would likely get the
            # same answer, after sending the documents again to a peer that misbehaves.
            return _Attempt(
                Outcome.OUTCOME_UNKNOWN,
                f"the response from {self.endpoint} (HTTP {status}) is larger than the {self.max_response_bytes} "
                "bytes xdr-edge reads of a response; reading stopped there, so what the HISP decided is unknown: "
                "it may or may not have stored the submission (not retried)",
                False,
                http_status=status,
                content_type=content_type,
                bytes_sent=sent,
            )
        except (http_errors.HTTPError, OSError) as exc:
            return _Attempt(
                Outcome.OUTCOME_UNKNOWN,
                f"the response from {self.endpoint} was cut off: {root_cause(exc)}",
                True,
                http_status=status,
                bytes_sent=sent,
            )
        reply = classify_response(
            status,
            content_type,
            raw,
            message_id=request.message_id,
            peer=self.endpoint,
            redirect_to=response.headers.get("Location"),
        )
        return _Attempt(
            reply.outcome,
            reply.message,
            reply.retryable,
            http_status=status,
            errors=reply.errors,
            fault=reply.fault,
            findings=reply.findings,
            raw=raw,
            content_type=content_type,
            bytes_sent=sent,
            retry_after=retry_after_seconds(response.headers.get("Retry-After"), now=time.time()),
        )

    def _rejection(self, exc: Exception, session: PracticeSession) -> str | None:
        """The "our client certificate was rejected ..." message when that is what happened, else ``None``.

        With TLS 1.2 the server's alert arrives in the handshake and names the reason. With TLS 1.3 the client
        finishes its half of the handshake before the server has checked the client certificate; the server's
        alert then races the request we are already writing, and the reset that follows usually destroys it,
        so all we see is an EOF or a reset. In that case one diagnostic handshake that sends nothing and only
        waits reads the alert itself (an accepting server just waits for a request; the probe gives up)."""
        alert = self._tls_alert(exc)
        if alert is None and is_connection_drop(exc):
            alert = probe_client_auth(self.endpoint, session.ssl_context, self.timeout[0])
        if alert is None:
            return None
        return f"{alert} (subject {session.identity.subject}, endpoint {self.endpoint})"

    def _tls_message(self, exc: Exception, subject: str) -> str:
        alert = self._tls_alert(exc)
        if alert is not None:
            return f"{alert} (subject {subject}, endpoint {self.endpoint})"
        text = root_cause(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            if "expired" in text:
                return f"server certificate expired: {self.endpoint} presented an expired certificate"
            if "hostname" in text.lower() or "IP address mismatch" in text:
                return f"server certificate does not match the host of {self.endpoint}: {text}"
            return f"server certificate not trusted: {self.endpoint} presented a certificate not issued by our CA bundle"
        return f"TLS handshake with {self.endpoint} failed: {text}"

    @staticmethod
    def _tls_alert(exc: Exception) -> str | None:
        """Recognise the TLS alerts a server sends when it rejects our client certificate."""
        return alert_meaning(root_cause(exc))


class _ResponseTooLarge(Exception):
    """The response went past the cap; what was read is dropped."""


def _read_capped(response: PracticeResponse, cap: int) -> bytes:
    """The response body (decoded), read as it streams in; :class:`_ResponseTooLarge` as soon as it passes
    ``cap`` bytes, without reading further. Held in one buffer that ``getvalue`` hands over without a copy."""
    buffer = io.BytesIO()
    for chunk in response.iter_content(65536):
        buffer.write(chunk)
        if buffer.tell() > cap:
            raise _ResponseTooLarge
    return buffer.getvalue()
