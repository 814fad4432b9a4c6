"""What the outbox does with the outcome of one send, and what it writes about a finished drop.

The client's outcome (:class:`~xdr_edge.sender.client.SendResult`) is judged for a sender that keeps trying for
hours, not seconds:

- delivered: Success and PartialSuccess; and a duplicate-uniqueId answer after an attempt that may have been
  stored (a crash in the middle of a send, an unknown outcome): the HISP has the submission (``AlreadyDelivered``);
- failed: a Failure or a SOAP fault from the HISP (it read the submission and refused it), a TLS refusal, a
  redirect, a non-SOAP 4xx page;
- retried later: what may pass: no connection; HTTP 503 (Service Unavailable, RFC 9110 §15.6.4) or 429 (Too Many
  Requests, RFC 6585 §4); a 5xx page from a gateway; an unknown outcome (sent, no usable answer); a Failure whose
  every error is a load or availability code (XDSRegistryBusy, XDSRepositoryOutOfResources, XDSRegistryNotAvailable
  ..., ITI TF-3 Table 4.2.4.1-2). A 5xx page other than 503 may hide a stored request, as an unknown outcome does,
  so the next send counts a duplicate answer as delivered.

``outage`` marks the answers that say the HISP is not taking requests at all (no connection, 503, 429, a
gateway page, busy): the practice pauses until its next retry instead of sending every waiting drop into it.
"""

from __future__ import annotations

__all__ = ["Judgement", "Step", "error_text", "judge", "response_entity", "result_document"]

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from xdr_edge.protocol.classify import Outcome
from xdr_edge.protocol.codes import TRANSIENT
from xdr_edge.sender.client import SendResult
from xdr_edge.sender.outbox.events import iso

ALREADY_DELIVERED = "AlreadyDelivered"
BAD_DROP = "BadDrop"


class Step(str, Enum):
    SENT = "sent"
    FAILED = "failed"
    WAIT = "waiting"


@dataclass(frozen=True)
class Judgement:
    step: Step
    outcome: str  # the value result.json shows: an Outcome value, AlreadyDelivered or BadDrop
    code: str  # machine-readable reason, safe to log (an outcome or an XDS error code)
    message: str
    maybe_stored: bool = False
    outage: bool = False


def _busy(result: SendResult) -> bool:
    errors = [e for e in result.errors if e.is_error]
    return bool(errors) and all(e.error_code in TRANSIENT for e in errors)


def judge(result: SendResult) -> Judgement:
    """Sent, failed, or wait and try again (see the module docstring)."""
    if result.ok:
        outcome = ALREADY_DELIVERED if result.already_delivered else result.outcome.value
        return Judgement(Step.SENT, outcome, outcome, result.message)
    status = result.http_status
    if result.outcome is Outcome.FAILURE:
        first = next((e for e in result.errors if e.is_error), None)
        code = first.error_code if first is not None else Outcome.FAILURE.value
        if _busy(result):
            return Judgement(Step.WAIT, result.outcome.value, code, result.message, outage=True)
        return Judgement(Step.FAILED, result.outcome.value, code, result.message)
    if result.outcome is Outcome.FAULT:
        code = result.fault.subcode or result.fault.code if result.fault is not None else "Fault"
        return Judgement(Step.FAILED, result.outcome.value, code or "Fault", result.message)
    if result.outcome is Outcome.OUTCOME_UNKNOWN:
        return Judgement(
            Step.WAIT, result.outcome.value, result.outcome.value, result.message, maybe_stored=True
        )
    # TransportError
    if status is not None and (status >= 500 or status == 429):
        return Judgement(
            Step.WAIT,
            result.outcome.value,
            f"HTTP {status}",
            result.message,
            maybe_stored=status >= 500 and status != 503,
            outage=True,
        )
    if result.retryable:
        nothing_left = result.bytes_sent == 0
        return Judgement(
            Step.WAIT, result.outcome.value, result.outcome.value, result.message, outage=nothing_left
        )
    return Judgement(
        Step.FAILED, result.outcome.value, f"HTTP {status}" if status else "TransportError", result.message
    )


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
    received_at: float,
    first_attempt_at: float | None,
    finished_at: float,
) -> dict[str, Any]:
    """result.json: what happened to the drop, for people and programs. ``errors`` holds the HISP's
    RegistryErrors (error_code, code_context, severity, location) after a Failure, or the reasons a bad drop was
    refused (code, message, location; validation findings also severity and rule)."""
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
    if document["outcome"] == BAD_DROP:
        lines.append(
            "Nothing was sent. Correct the drop in this folder, then send it again with "
            f"`xdr-edge outbox retry DIR {name}`."
        )
    elif document["gave_up"]:
        lines.append(
            "The HISP could not be reached or did not answer in time, for longer than the outbox waits. "
            f"When it is back: `xdr-edge outbox retry DIR {name}` (the same uniqueIds are kept, so a copy the HISP "
            "already has is recognised)."
        )
    else:
        lines.append(
            "The HISP refused the submission. Once the cause is fixed: "
            f"`xdr-edge outbox retry DIR {name}` (add --new-ids if you changed a document)."
        )
    return "\n".join(lines) + "\n"


def response_entity(content_type: str | None, raw: bytes) -> bytes:
    """The HISP's response as one MIME entity (a Content-Type line, a blank line, the body): the form
    ``xdr-edge inspect`` reads, as ``xdr-edge send --save-response`` writes it."""
    header = f"Content-Type: {content_type or 'application/octet-stream'}\r\n\r\n"
    return header.encode("latin-1", "replace") + raw
