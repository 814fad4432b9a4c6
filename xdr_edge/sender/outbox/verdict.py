"""What the outbox does with the outcome of one send, and what it writes about a finished drop.

The client's outcome (:class:`~xdr_edge.sender.client.SendResult`) is judged for a sender that keeps trying for
hours, not seconds:

- delivered: Success and PartialSuccess; and a duplicate-uniqueId answer after an attempt that may have been
  stored (a crash in the middle of a send, an unknown outcome, in this send or an earlier one): the HISP has the
  submission (``AlreadyDelivered``);
- failed: a RegistryResponse Failure; a SOAP fault that blames the message (``Sender``, ``MustUnderstand``,
  ``VersionMismatch``, ``DataEncodingUnknown``: resending the same message gets the same answer); a redirect; a
  non-SOAP 4xx page other than 408 and 429; a TLS failure other than a refusal of our certificate;
- retried later: what may pass: no connection; HTTP 503 (Service Unavailable, RFC 9110 §15.6.4), 429 (Too Many
  Requests, RFC 6585 §4) or 408 (Request Timeout, RFC 9110 §15.5.9: the server gave up reading the request, so it
  did not store it); a 5xx page from a gateway; an unknown outcome (sent, no usable answer); a Failure whose every
  error is a load or availability code (XDSRegistryBusy, XDSRepositoryOutOfResources, XDSRegistryNotAvailable
  ..., ITI TF-3 Table 4.2.4.1-2); a ``Receiver`` fault, which SOAP 1.2 Part 1 §5.4.6 defines as a failure of the
  processing, not of the message, that "may succeed if resent"; our client certificate refused in the TLS
  handshake (not enrolled yet at the HISP, revoked there: fixed by people, not by the drop).

A 5xx page other than 503, and a Receiver fault, may hide a stored request, as an unknown outcome does, so the
next send counts a duplicate answer as delivered (``maybe_stored``).

``pause`` says what the answer tells about more than this drop: :attr:`Pause.ENDPOINT` when the HISP is not taking
requests at all (no connection, 503, 429, a gateway page, busy): every practice pauses, as they share the endpoint;
:attr:`Pause.PRACTICE` when the trouble is the practice's (its certificate refused, expired or unreadable; a
Receiver fault, which may come from that practice's configuration at the HISP): its drops pause, the others go on.
"""

from __future__ import annotations

__all__ = [
    "ALREADY_DELIVERED",
    "BAD_DROP",
    "INTERNAL_ERROR",
    "Judgement",
    "Pause",
    "Step",
    "error_text",
    "judge",
    "response_entity",
    "result_document",
    "tally",
]

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from xdr_edge.protocol.classify import Outcome
from xdr_edge.protocol.codes import TRANSIENT
from xdr_edge.sender.client import SendResult
from xdr_edge.sender.outbox.events import iso
from xdr_edge.sender.outbox.journal import DropRow

ALREADY_DELIVERED = "AlreadyDelivered"
BAD_DROP = "BadDrop"
#: A drop the outbox could not handle (an unexpected error, parked and tried again, then given up).
INTERNAL_ERROR = "InternalError"
#: The machine-readable code of a client certificate the HISP refused in the TLS handshake.
CERTIFICATE_REFUSED = "client-certificate-refused"
#: SOAP 1.2 fault codes that blame the message itself (SOAP 1.2 Part 1 §5.4.6): sending it again cannot help.
_MESSAGE_FAULTS = frozenset({"Sender", "MustUnderstand", "VersionMismatch", "DataEncodingUnknown"})


class Step(str, Enum):
    SENT = "sent"
    FAILED = "failed"
    WAIT = "waiting"


class Pause(str, Enum):
    """What an answer pauses besides the drop that got it."""

    ENDPOINT = "endpoint"  # the HISP is not taking requests: every practice
    PRACTICE = "practice"  # the trouble is this practice's


@dataclass(frozen=True)
class Judgement:
    step: Step
    outcome: str  # the value result.json shows: an Outcome value, AlreadyDelivered or BadDrop
    code: str  # machine-readable reason, safe to log (an outcome or an XDS error code)
    message: str
    maybe_stored: bool = False
    pause: Pause | None = None
    retry_after: float | None = None  # seconds the HISP asked to wait (Retry-After), if it did


def _busy(result: SendResult) -> bool:
    errors = [e for e in result.errors if e.is_error]
    return bool(errors) and all(e.error_code in TRANSIENT for e in errors)


def judge(result: SendResult) -> Judgement:
    """Sent, failed, or wait and try again (see the module docstring)."""
    verdict = _judge(result)
    if result.maybe_stored and not verdict.maybe_stored:
        # an earlier attempt of this send may have been stored, whatever the last one says (unknown, then 503)
        verdict = dataclasses.replace(verdict, maybe_stored=True)
    return verdict


def _judge(result: SendResult) -> Judgement:
    outcome = result.outcome.value
    if result.ok:
        shown = ALREADY_DELIVERED if result.already_delivered else outcome
        return Judgement(Step.SENT, shown, shown, result.message)
    status = result.http_status
    if result.outcome is Outcome.FAILURE:
        first = next((e for e in result.errors if e.is_error), None)
        code = first.error_code if first is not None else outcome
        if _busy(result):
            return Judgement(
                Step.WAIT, outcome, code, result.message, pause=Pause.ENDPOINT, retry_after=result.retry_after
            )
        return Judgement(Step.FAILED, outcome, code, result.message)
    if result.outcome is Outcome.FAULT:
        fault = result.fault
        code = (fault.subcode or fault.code or "Fault") if fault is not None else "Fault"
        if fault is not None and fault.code not in _MESSAGE_FAULTS:
            # Receiver (or a code SOAP 1.2 does not define): the processing failed, not the message
            return Judgement(
                Step.WAIT,
                outcome,
                code,
                result.message,
                maybe_stored=True,
                pause=Pause.PRACTICE,
                retry_after=result.retry_after,
            )
        return Judgement(Step.FAILED, outcome, code, result.message)
    if result.outcome is Outcome.OUTCOME_UNKNOWN:
        return Judgement(Step.WAIT, outcome, outcome, result.message, maybe_stored=True)
    # TransportError
    if result.certificate_refused:
        return Judgement(Step.WAIT, outcome, CERTIFICATE_REFUSED, result.message, pause=Pause.PRACTICE)
    if status == 408:
        return Judgement(Step.WAIT, outcome, "HTTP 408", result.message)
    if status is not None and (status >= 500 or status == 429):
        return Judgement(
            Step.WAIT,
            outcome,
            f"HTTP {status}",
            result.message,
            maybe_stored=status >= 500 and status != 503,
            pause=Pause.ENDPOINT,
            retry_after=result.retry_after,
        )
    if result.retryable:
        nothing_left = result.bytes_sent == 0
        return Judgement(
            Step.WAIT, outcome, outcome, result.message, pause=Pause.ENDPOINT if nothing_left else None
        )
    return Judgement(Step.FAILED, outcome, f"HTTP {status}" if status else outcome, result.message)


def tally(row: DropRow, result: SendResult | None) -> tuple[int, tuple[str, ...]]:
    """The drop's HTTP attempts and their MessageIDs over its whole life, ``result``'s included (what the journal
    keeps; an attempt cut off by a crash counts in ``row.interrupted`` as well, for people)."""
    if result is None:
        return row.attempts, row.message_ids
    return row.attempts + result.attempts, (*row.message_ids, *result.message_ids)


def result_document(
    *,
    drop: str,
    drop_id: str,
    state: Step,
    outcome: str,
    code: str,
    message: str,
    practice: str | None,
    sender: str | None,
    recipients: Sequence[str],
    documents: Sequence[str],
    submission_set_unique_id: str | None,
    document_unique_ids: Sequence[str],
    message_ids: Sequence[str],
    attempts: int,
    result: SendResult | None,
    problems: Sequence[dict[str, Any]],
    gave_up: bool,
    response: str | None,
    received_at: float | None,
    first_attempt_at: float | None,
    finished_at: float,
    maybe_delivered: bool,
) -> dict[str, Any]:
    """result.json: what happened to the drop, for people and programs; the same keys whatever happened (null or
    empty where a value is not known). ``errors`` holds the HISP's RegistryErrors (error_code, code_context,
    severity, location) after a Failure, or the reasons a bad drop was refused (code, message, location;
    validation findings also severity and rule). ``maybe_delivered``: the HISP may hold this submission (a sent
    drop; a failed one after an attempt that may have been stored), so a new submission of the same documents
    could reach the recipient twice."""
    errors: list[dict[str, Any]] = [e.as_dict() for e in result.errors] if result is not None else []
    fault = result.fault if result is not None else None
    return {
        "drop": drop,
        "drop_id": drop_id,
        "state": state.value,
        "outcome": outcome,
        "code": code,
        "message": message,
        "practice": practice,
        "from": sender,
        "to": list(recipients),
        "documents": list(documents),
        "message_id": message_ids[-1] if message_ids else None,
        "message_ids": list(message_ids),
        "submission_set_unique_id": submission_set_unique_id,
        "document_unique_ids": list(document_unique_ids),
        "attempts": attempts,
        "http_status": result.http_status if result is not None else None,
        "errors": errors + list(problems),
        "fault": None
        if fault is None
        else {"code": fault.code, "subcode": fault.subcode, "reason": fault.reason},
        "already_delivered": outcome == ALREADY_DELIVERED,
        "maybe_delivered": maybe_delivered or state is Step.SENT,
        "gave_up": gave_up,
        "response": response,
        "received_at": iso(received_at),
        "first_attempt_at": iso(first_attempt_at),
        "finished_at": iso(finished_at),
    }


def error_text(document: dict[str, Any], name: str) -> str:
    """error.txt: the reason first, then the details, then what to do."""
    lines = [document["message"], ""]
    lines.append(f"outcome: {document['outcome']} ({document['code']})")
    if document.get("practice"):
        lines.append(f"practice: {document['practice']}")
    if document.get("submission_set_unique_id"):
        lines.append(f"submission set uniqueId: {document['submission_set_unique_id']}")
    lines.append(f"attempts: {document['attempts']}")
    if document.get("http_status") is not None:
        lines.append(f"HTTP status: {document['http_status']}")
    fault = document.get("fault")
    if fault:
        sub = f" / {fault['subcode']}" if fault.get("subcode") else ""
        lines.append(f"SOAP fault: {fault['code']}{sub}: {fault['reason']}")
    details = [
        e for e in document["errors"] if not e.get("message") or e["message"] not in document["message"]
    ]
    if details:
        lines.append("errors:")
        for error in details:
            if "error_code" in error:
                where = f" [{error['location']}]" if error.get("location") else ""
                lines.append(f"  {error['severity']} {error['error_code']}: {error['code_context']}{where}")
            else:
                where = f" (at {error['location']})" if error.get("location") else ""
                lines.append(f"  {error.get('severity', 'Error')} {error['code']}: {error['message']}{where}")
    lines.append("")
    lines.append(_next_step(document, name))
    return "\n".join(lines) + "\n"


def _next_step(document: dict[str, Any], name: str) -> str:
    """What to do now, chosen by what happened (the code) and by whether the HISP may hold the submission."""
    retry = f"`xdr-edge outbox retry DIR {name}`"
    maybe = bool(document.get("maybe_delivered"))
    code, outcome = document["code"], document["outcome"]
    earlier = (
        " An earlier attempt may have been delivered: the same uniqueIds are kept, so a copy the HISP already "
        "has is recognised."
        if maybe
        else ""
    )
    if code == "drop-changed":
        return (
            "The drop's documents changed after it was sent, so it cannot be sent again under the same uniqueIds "
            "(the HISP may hold the old bytes under them). To send it as a new submission: "
            f"`xdr-edge outbox retry DIR {name} --new-ids`"
            + (" (if an earlier attempt was delivered, the recipient then gets both)." if maybe else ".")
        )
    if code == "orphan":
        return "Nothing in the journal says whether it was sent: check with the recipient before sending it again."
    if outcome == INTERNAL_ERROR:
        return (
            "The outbox could not handle this drop (an unexpected error; its log says which). Once the cause "
            f"is fixed: {retry}." + earlier
        )
    if outcome == BAD_DROP:
        if maybe or document["attempts"]:
            return (
                "It was not sent again. Correct the drop in this folder, then send it again with "
                f"{retry}." + earlier
            )
        return f"Nothing was sent. Correct the drop in this folder, then send it again with {retry}."
    if code == CERTIFICATE_REFUSED:
        return (
            "The HISP refused the practice's client certificate in the TLS handshake (not enrolled there, revoked, "
            f"or issued by a CA it does not trust). Once the certificate is accepted: {retry}." + earlier
        )
    if document["gave_up"]:
        if outcome == "NotSent":
            return (
                "The practice could not send (see the reason above) for longer than the outbox waits; nothing "
                f"was sent. Once that is fixed: {retry}."
            )
        return (
            "The HISP could not be reached or did not answer in time, for longer than the outbox waits. "
            f"When it is back: {retry} (the same uniqueIds are kept, so a copy the HISP already has is "
            "recognised)."
        )
    return f"The HISP refused the submission. Once the cause is fixed: {retry} (add --new-ids if you changed a document)."


def response_entity(content_type: str | None, raw: bytes) -> bytes:
    """The HISP's response as one MIME entity (a Content-Type line, a blank line, the body): the form
    ``xdr-edge inspect`` reads, as ``xdr-edge send --save-response`` writes it."""
    header = f"Content-Type: {content_type or 'application/octet-stream'}\r\n\r\n"
    return header.encode("latin-1", "replace") + raw
