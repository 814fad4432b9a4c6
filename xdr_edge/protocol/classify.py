"""What an ITI-41 answer means: HTTP status, Content-Type, body and our MessageID in; a typed outcome out.

The one classifier of responses, used by the client (what to report and whether to retry) and by the
conformance suite (what the peer answered). It separates two questions:

- :attr:`Reply.kind`: what the body *says*: a RegistryResponse Success, PartialSuccess or Failure, a SOAP
  fault, or something that is not a SOAP answer at all;
- :attr:`Reply.outcome`: what a *sender* may conclude from the whole exchange. A Success that names another
  request in ``wsa:RelatesTo`` proves nothing about ours (the outcome is unknown); HTTP 503 means "not processed,
  come back" whatever the body (retryable); a redirect is never followed for a POST of clinical documents; an
  HTML error page from a proxy may hide a stored request, so it is not retried.

SOAP 1.2 Part 2 §7.5 (HTTP status of faults), ITI TF-2x V.3 (faults and RegistryResponses), WS-Addressing 1.0
Core §3.4 (RelatesTo). Pure: bytes in, values out.
"""

from __future__ import annotations

__all__ = ["Outcome", "Reply", "ReplyKind", "classify_response", "retry_after_seconds"]

from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import Enum

from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.findings import Finding, Severity
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.response import RegistryErrorEntry, RegistryResponse
from xdr_edge.protocol.soap.envelope import Fault
from xdr_edge.protocol.wire import ParsedResponse, parse_response


class Outcome(str, Enum):
    """What happened to a submission, as its sender can know it."""

    SUCCESS = "Success"
    PARTIAL_SUCCESS = "PartialSuccess"
    FAILURE = "Failure"
    FAULT = "Fault"
    TRANSPORT_ERROR = "TransportError"
    OUTCOME_UNKNOWN = "OutcomeUnknown"


class ReplyKind(str, Enum):
    """What the answer's body is."""

    SUCCESS = "Success"
    PARTIAL_SUCCESS = "PartialSuccess"
    FAILURE = "Failure"
    FAULT = "Fault"
    NOT_SOAP = "not SOAP"  # neither a RegistryResponse nor a SOAP fault (an HTML page, an empty body, ...)


@dataclass(frozen=True)
class Reply:
    """A classified answer. ``parsed`` is None when the body is not a SOAP answer (``problem`` says why)."""

    status: int
    content_type: str
    kind: ReplyKind
    outcome: Outcome
    retryable: bool
    message: str
    parsed: ParsedResponse | None = None
    findings: tuple[Finding, ...] = ()
    problem: str = ""

    @property
    def relates_to(self) -> str | None:
        return self.parsed.envelope.relates_to if self.parsed is not None else None

    @property
    def action(self) -> str | None:
        return self.parsed.envelope.action if self.parsed is not None else None

    @property
    def fault(self) -> Fault | None:
        return self.parsed.fault if self.parsed is not None else None

    @property
    def registry_response(self) -> RegistryResponse | None:
        return self.parsed.registry_response if self.parsed is not None else None

    @property
    def errors(self) -> tuple[RegistryErrorEntry, ...]:
        rr = self.registry_response
        return rr.errors if rr is not None else ()


def _body_kind(parsed: ParsedResponse) -> ReplyKind:
    if parsed.fault is not None:
        return ReplyKind.FAULT
    rr = parsed.registry_response
    if rr is None:
        return ReplyKind.NOT_SOAP
    if rr.is_success:
        return ReplyKind.SUCCESS
    if rr.is_partial:
        return ReplyKind.PARTIAL_SUCCESS
    return ReplyKind.FAILURE


def _missing_relates_to(relates: str | None) -> tuple[Finding, ...]:
    """A warning when the response names no request at all (no or empty ``wsa:RelatesTo``).

    Still accepted: real HISPs omit it, and the answer arrived on our own connection. But the pairing of request
    and response then rests on the connection alone, which an operator chasing a mix-up should be able to see.
    """
    if relates:
        return ()
    return (
        Finding(
            "missing-relates-to",
            Severity.WARNING,
            "S:Header/wsa:RelatesTo",
            "the response has no wsa:RelatesTo naming our MessageID; accepted as the answer on this connection",
            "wsa-relates-to",
        ),
    )


def classify_response(
    status: int,
    content_type: str,
    body: bytes,
    *,
    message_id: str,
    peer: str = "the HISP",
    redirect_to: str | None = None,
) -> Reply:
    """Classify one HTTP answer to the request whose MessageID is ``message_id``.

    ``peer`` names the other side in messages (an endpoint URL); ``redirect_to`` is the ``Location`` header of a
    3xx answer. Never raises for what the peer sent.
    """
    try:
        parsed: ParsedResponse | None = parse_response(content_type, body)
    except RemoteProtocolError as exc:
        parsed, problem = None, exc.message
    else:
        problem = ""
    kind = _body_kind(parsed) if parsed is not None else ReplyKind.NOT_SOAP
    if parsed is not None and kind is ReplyKind.NOT_SOAP:
        problem = "the response has neither a RegistryResponse nor a fault"

    def reply(outcome: Outcome, retryable: bool, message: str, findings: tuple[Finding, ...] = ()) -> Reply:
        return Reply(status, content_type, kind, outcome, retryable, message, parsed, findings, problem)

    if status == 503:
        return reply(Outcome.TRANSPORT_ERROR, True, f"the HISP is unavailable (HTTP 503 from {peer})")
    if 300 <= status < 400:
        return reply(
            Outcome.TRANSPORT_ERROR,
            False,
            f"HTTP {status} redirect to {redirect_to or '?'} refused: redirects are not followed for a POST of "
            "clinical documents",
        )
    if parsed is None:
        media = MediaType.parse_or_none(content_type)
        shown = (
            media.essence if media is not None else repr(content_type) if content_type else "no Content-Type"
        )
        return reply(
            Outcome.TRANSPORT_ERROR if status >= 400 else Outcome.OUTCOME_UNKNOWN,
            False,  # only 503 says "not processed, come back"; a 502/504 page may hide a stored request
            f"HTTP {status} from {peer} is not a SOAP response ({shown}): {problem}",
        )
    relates = parsed.envelope.relates_to
    findings = tuple(parsed.findings)
    if relates and relates != message_id:
        return reply(
            Outcome.OUTCOME_UNKNOWN,
            True,
            f"the response relates to {relates}, not to our MessageID {message_id}",
            findings,
        )
    findings += _missing_relates_to(relates)
    if parsed.fault is not None:
        fault = parsed.fault
        sub = f" / {fault.subcode}" if fault.subcode else ""
        return reply(
            Outcome.FAULT, False, f"SOAP fault {fault.code}{sub} from {peer}: {fault.reason}", findings
        )
    rr = parsed.registry_response
    if rr is None:
        return reply(Outcome.OUTCOME_UNKNOWN, False, problem)
    if rr.is_success:
        return reply(Outcome.SUCCESS, False, "Success: the HISP accepted the submission", findings)
    if rr.is_partial:
        return reply(
            Outcome.PARTIAL_SUCCESS,
            False,
            "PartialSuccess: the HISP accepted part of the submission",
            findings,
        )
    first = rr.errors[0] if rr.errors else None
    text = f"Failure: {first.error_code}: {first.code_context}" if first else "Failure (no error given)"
    return reply(Outcome.FAILURE, False, text, findings)


def retry_after_seconds(value: str | None, *, now: float) -> float | None:
    """How long a ``Retry-After`` header asks a client to wait, in seconds from ``now`` (seconds since the
    epoch); None when there is none or it cannot be read.

    RFC 9110 §10.2.3: either ``delay-seconds`` (digits only) or an HTTP-date (IMF-fixdate, and the obsolete
    RFC 850 and asctime forms a recipient must accept, §5.6.7). A date in the past means "now" (0). A 503 or 429
    answer may carry it (RFC 9110 §15.6.4, RFC 6585 §4); how long to honour it is the caller's choice."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(min(int(text[:12]), 10**11))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # asctime carries no zone; HTTP-dates are always GMT (RFC 9110 §5.6.7)
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)
