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
from xdr_edge.sender.outbox.verdict import Step, error_text, judge, response_entity, result_document


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


@pytest.mark.parametrize(
    ("result", "step", "outcome", "maybe_stored", "outage"),
    [
        (_result(Outcome.SUCCESS, http_status=200), Step.SENT, "Success", False, False),
        (_result(Outcome.PARTIAL_SUCCESS, http_status=200), Step.SENT, "PartialSuccess", False, False),
        (
            _result(Outcome.SUCCESS, http_status=200, already_delivered=True),
            Step.SENT,
            "AlreadyDelivered",
            False,
            False,
        ),
        (_result(Outcome.FAILURE, http_status=200, errors=(REFUSED,)), Step.FAILED, "Failure", False, False),
        (_result(Outcome.FAILURE, http_status=200, errors=(BUSY,)), Step.WAIT, "Failure", False, True),
        (
            _result(Outcome.FAILURE, http_status=200, errors=(BUSY, REFUSED)),
            Step.FAILED,
            "Failure",
            False,
            False,
        ),
        (
            _result(Outcome.FAULT, http_status=500, fault=Fault("Sender", "bad")),
            Step.FAILED,
            "Fault",
            False,
            False,
        ),
        (_result(Outcome.OUTCOME_UNKNOWN, retryable=True), Step.WAIT, "OutcomeUnknown", True, False),
        (_result(Outcome.OUTCOME_UNKNOWN, http_status=200), Step.WAIT, "OutcomeUnknown", True, False),
        (
            _result(Outcome.TRANSPORT_ERROR, retryable=True, bytes_sent=0),
            Step.WAIT,
            "TransportError",
            False,
            True,
        ),
        (
            _result(Outcome.TRANSPORT_ERROR, retryable=True, bytes_sent=10),
            Step.WAIT,
            "TransportError",
            False,
            False,
        ),
        (
            _result(Outcome.TRANSPORT_ERROR, http_status=503, retryable=True),
            Step.WAIT,
            "TransportError",
            False,
            True,
        ),
        (_result(Outcome.TRANSPORT_ERROR, http_status=502), Step.WAIT, "TransportError", True, True),
        (_result(Outcome.TRANSPORT_ERROR, http_status=429), Step.WAIT, "TransportError", False, True),
        (_result(Outcome.TRANSPORT_ERROR, http_status=404), Step.FAILED, "TransportError", False, False),
        (_result(Outcome.TRANSPORT_ERROR, http_status=302), Step.FAILED, "TransportError", False, False),
        (
            _result(Outcome.TRANSPORT_ERROR, bytes_sent=0),
            Step.FAILED,
            "TransportError",
            False,
            False,
        ),  # TLS refusal
    ],
)
def test_each_outcome_is_judged_for_a_sender_that_retries_for_hours(
    result: SendResult, step: Step, outcome: str, maybe_stored: bool, outage: bool
) -> None:
    judgement = judge(result)
    assert (judgement.step, judgement.outcome, judgement.maybe_stored, judgement.outage) == (
        step,
        outcome,
        maybe_stored,
        outage,
    )


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
        problems=[{"code": "bad-manifest", "message": "message.toml: to: must be a list", "location": "to"}],
    )
    text = error_text(bad, "order-7")
    assert "Nothing was sent" in text and text.count("must be a list") == 1  # not repeated under errors:
    given_up = error_text(_document(gave_up=True, result=None), "order-7")
    assert "could not be reached" in given_up and "the same uniqueIds are kept" in given_up


def test_the_response_is_kept_as_a_mime_entity_inspect_reads() -> None:
    assert (
        response_entity("application/soap+xml", b"<x/>") == b"Content-Type: application/soap+xml\r\n\r\n<x/>"
    )
    assert response_entity(None, b"") == b"Content-Type: application/octet-stream\r\n\r\n"


def test_severity_warnings_alone_never_make_a_failure_busy() -> None:
    warning = RegistryErrorEntry("XDSRegistryBusy", "fyi", severity=Severity.WARNING)
    assert judge(_result(Outcome.FAILURE, errors=(warning, REFUSED))).step is Step.FAILED
