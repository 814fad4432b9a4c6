"""What the outbox makes of each outcome the client can report: sent, failed, or wait and retry (and whether the
practice pauses, and whether the next send may count a duplicate as delivered); and what error.txt says."""

from __future__ import annotations

from typing import Any

import pytest

from xdr_edge.protocol.classify import Outcome
from xdr_edge.protocol.codes import DUPLICATE_IN_REGISTRY, METADATA_ERROR
from xdr_edge.protocol.findings import Severity
from xdr_edge.protocol.response import RegistryErrorEntry
from xdr_edge.protocol.soap import Fault
from xdr_edge.sender.client import SendResult
from xdr_edge.sender.outbox.verdict import Pause, Step, error_text, judge, response_entity, result_document


def _result(outcome: Outcome, **more: Any) -> SendResult:
    fields: dict[str, Any] = {
        "outcome": outcome,
        "message": f"{outcome.value} happened",
        "practice_id": "practice-a",
        "endpoint": "https://hisp.example/xdr",
        "message_id": "urn:uuid:1",
        "submission_set_unique_id": "2.25.1",
        "document_unique_ids": ("2.25.2",),
        "bytes_sent": 1000,
    }
    return SendResult(**{**fields, **more})


BUSY = RegistryErrorEntry("XDSRegistryBusy", "try later")
REFUSED = RegistryErrorEntry(METADATA_ERROR, "patient id missing")
TRANSPORT = Outcome.TRANSPORT_ERROR


W, F, S = Step.WAIT, Step.FAILED, Step.SENT
END, PRACTICE = Pause.ENDPOINT, Pause.PRACTICE


@pytest.mark.parametrize(
    ("result", "step", "outcome", "maybe_stored", "pause"),
    [
        (_result(Outcome.SUCCESS, http_status=200), S, "Success", False, None),
        (_result(Outcome.PARTIAL_SUCCESS, http_status=200), S, "PartialSuccess", False, None),
        (
            _result(Outcome.SUCCESS, http_status=200, already_delivered=True),
            S,
            "AlreadyDelivered",
            False,
            None,
        ),
        (_result(Outcome.FAILURE, http_status=200, errors=(REFUSED,)), F, "Failure", False, None),
        (_result(Outcome.FAILURE, http_status=200, errors=(BUSY,)), W, "Failure", False, END),
        (_result(Outcome.FAILURE, http_status=200, errors=(BUSY, REFUSED)), F, "Failure", False, None),
        (_result(Outcome.FAULT, http_status=500, fault=Fault("Sender", "bad")), F, "Fault", False, None),
        (
            _result(Outcome.FAULT, http_status=500, fault=Fault("MustUnderstand", "x")),
            F,
            "Fault",
            False,
            None,
        ),
        (
            _result(Outcome.FAULT, http_status=500, fault=Fault("VersionMismatch", "x")),
            F,
            "Fault",
            False,
            None,
        ),
        # SOAP 1.2 Part 1 5.4.6: a Receiver fault "may succeed if resent" (and may hide a stored request)
        (
            _result(Outcome.FAULT, http_status=500, fault=Fault("Receiver", "not stored")),
            W,
            "Fault",
            True,
            PRACTICE,
        ),
        (_result(Outcome.OUTCOME_UNKNOWN, retryable=True), W, "OutcomeUnknown", True, None),
        (_result(Outcome.OUTCOME_UNKNOWN, http_status=200), W, "OutcomeUnknown", True, None),
        (_result(TRANSPORT, retryable=True, bytes_sent=0), W, "TransportError", False, END),
        (_result(TRANSPORT, retryable=True, bytes_sent=10), W, "TransportError", False, None),
        (_result(TRANSPORT, http_status=503, retryable=True), W, "TransportError", False, END),
        (_result(TRANSPORT, http_status=502), W, "TransportError", True, END),
        (_result(TRANSPORT, http_status=500), W, "TransportError", True, END),
        (_result(TRANSPORT, http_status=429), W, "TransportError", False, END),
        # 408: the server gave up reading the request (RFC 9110 15.5.9): it does not have it; sent again
        (_result(TRANSPORT, http_status=408), W, "TransportError", False, None),
        (_result(TRANSPORT, http_status=404), F, "TransportError", False, None),
        (_result(TRANSPORT, http_status=302), F, "TransportError", False, None),
        (
            _result(TRANSPORT, bytes_sent=0),
            F,
            "TransportError",
            False,
            None,
        ),  # the HISP's certificate untrusted
        # our certificate refused in the handshake: the practice waits, as with an expired one
        (_result(TRANSPORT, bytes_sent=0, certificate_refused=True), W, "TransportError", False, PRACTICE),
        # an earlier attempt of the same send may have been stored, whatever the last one says
        (
            _result(TRANSPORT, http_status=503, retryable=True, maybe_stored=True),
            W,
            "TransportError",
            True,
            END,
        ),
    ],
)
def test_each_outcome_is_judged_for_a_sender_that_retries_for_hours(
    result: SendResult, step: Step, outcome: str, maybe_stored: bool, pause: Pause | None
) -> None:
    judgement = judge(result)
    assert (judgement.step, judgement.outcome, judgement.maybe_stored, judgement.pause) == (
        step,
        outcome,
        maybe_stored,
        pause,
    )


def test_a_refused_certificate_and_the_retry_after_asked_for_are_in_the_judgement() -> None:
    refused = judge(_result(TRANSPORT, bytes_sent=0, certificate_refused=True))
    assert refused.code == "client-certificate-refused"
    busy = judge(_result(TRANSPORT, http_status=503, retryable=True, retry_after=60.0))
    assert busy.retry_after == 60.0


def test_the_code_is_the_first_error_code_or_the_fault_subcode() -> None:
    assert judge(_result(Outcome.FAILURE, errors=(REFUSED,))).code == METADATA_ERROR
    fault = Fault("Sender", "no action", subcode="wsa:ActionNotSupported")
    assert judge(_result(Outcome.FAULT, fault=fault)).code == "wsa:ActionNotSupported"
    assert judge(_result(Outcome.TRANSPORT_ERROR, http_status=502)).code == "HTTP 502"


def _document(**more: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "drop": "order-7",
        "drop_id": "abc",
        "state": Step.FAILED,
        "outcome": "Failure",
        "code": DUPLICATE_IN_REGISTRY,
        "message": "Failure: refused",
        "practice": "practice-a",
        "sender": "a@b.example",
        "recipients": ["c@d.example"],
        "documents": ["ccd.xml"],
        "submission_set_unique_id": "2.25.1",
        "document_unique_ids": ["2.25.2"],
        "message_ids": ["urn:uuid:1", "urn:uuid:2"],
        "attempts": 2,
        "result": _result(Outcome.FAILURE, http_status=200, errors=(REFUSED,)),
        "problems": [],
        "gave_up": False,
        "response": "response.mime",
        "received_at": 0.0,
        "first_attempt_at": 1.0,
        "finished_at": 2.0,
        "maybe_delivered": False,
    }
    return result_document(**{**fields, **more})


def test_result_json_has_what_the_operator_needs() -> None:
    document = _document()
    assert document["message_id"] == "urn:uuid:2" and document["attempts"] == 2
    assert document["errors"] == [REFUSED.as_dict()]
    assert (
        document["received_at"] == "1970-01-01T00:00:00Z"
        and document["finished_at"] == "1970-01-01T00:00:02Z"
    )
    text = error_text(document, "order-7")
    assert text.startswith("Failure: refused\n")
    assert f"Error {METADATA_ERROR}: patient id missing" in text
    assert "xdr-edge outbox retry DIR order-7" in text


def test_error_text_for_a_bad_drop_and_for_a_drop_given_up() -> None:
    bad = _document(
        outcome="BadDrop",
        code="bad-manifest",
        message="message.toml: to: must be a list",
        result=None,
        attempts=0,
        message_ids=[],
        problems=[{"code": "bad-manifest", "message": "message.toml: to: must be a list", "location": "to"}],
    )
    text = error_text(bad, "order-7")
    assert "Nothing was sent" in text and text.count("must be a list") == 1  # not repeated under errors:
    given_up = error_text(_document(gave_up=True, result=None), "order-7")
    assert "could not be reached" in given_up and "the same uniqueIds are kept" in given_up


def _last_line(document: dict[str, Any]) -> str:
    return error_text(document, "order-9").rstrip("\n").rsplit("\n", 1)[-1]


def test_what_to_do_next_follows_what_happened_and_whether_the_hisp_may_hold_it() -> None:
    """The last line of error.txt is chosen by the code and by whether anything may have been delivered: never
    "nothing was sent" after a send, never a plain retry for a drop that a plain retry fails again."""
    changed = _document(
        outcome="BadDrop", code="drop-changed", message="the drop changed after it was sent", result=None
    )
    line = _last_line(changed)
    assert (
        "--new-ids" in line
        and "Nothing was sent" not in line
        and "outbox retry DIR order-9 --new-ids" in line
    )
    assert "gets both" not in line
    assert "gets both" in _last_line({**changed, "maybe_delivered": True})
    after_send = _last_line(_document(outcome="BadDrop", code="document-changed", result=None))
    assert after_send.startswith("It was not sent again") and "Nothing was sent" not in after_send
    internal = _last_line(_document(outcome="InternalError", code="internal-error", maybe_delivered=True))
    assert "unexpected error" in internal and "may have been delivered" in internal
    refused = _last_line(_document(outcome="TransportError", code="client-certificate-refused", result=None))
    assert "refused the practice's client certificate" in refused
    not_sent = _last_line(_document(outcome="NotSent", code="gave-up", gave_up=True, attempts=0, result=None))
    assert "nothing was sent" in not_sent and "could not send" in not_sent


def test_result_json_says_whether_the_hisp_may_hold_the_submission() -> None:
    assert _document(state=Step.SENT, outcome="Success")["maybe_delivered"] is True
    assert _document()["maybe_delivered"] is False  # a Failure: the HISP refused it, stored nothing
    assert _document(maybe_delivered=True)["maybe_delivered"] is True


def test_the_response_is_kept_as_a_mime_entity_inspect_reads() -> None:
    assert (
        response_entity("application/soap+xml", b"<x/>") == b"Content-Type: application/soap+xml\r\n\r\n<x/>"
    )
    assert response_entity(None, b"") == b"Content-Type: application/octet-stream\r\n\r\n"


def test_severity_warnings_alone_never_make_a_failure_busy() -> None:
    warning = RegistryErrorEntry("XDSRegistryBusy", "fyi", severity=Severity.WARNING)
    assert judge(_result(Outcome.FAILURE, errors=(warning, REFUSED))).step is Step.FAILED
