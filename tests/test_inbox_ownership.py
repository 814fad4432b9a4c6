"""Inbox ownership through the real endpoint: a uniqueId one practice sent first is refused to another practice
with a Failure the other practice's sender cannot read as "already delivered" (xdr_edge.receiver.store).

A real lab (mutual TLS on loopback, two practices), requests built with compose + wire.build_request, the
uniqueIds of practice B's submissions replaced with practice A's.
"""

from __future__ import annotations

import dataclasses
import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from xdr_edge.certs import load_identity
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.model import Document, MetadataLevel, Submission
from xdr_edge.protocol.response import RegistryResponse
from xdr_edge.protocol.wire import build_request, parse_response
from xdr_edge.tls import client_ssl_context

SENDER_A = "dr.smith@direct.practice-a.org"
SENDER_B = "dr.jones@direct.practice-b.org"
RECIPIENT = "inbox@direct.hisp.example"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    running = start_lab(tmp_path_factory.mktemp("lab"))
    try:
        yield running
    finally:
        running.stop()


def _submission(sender: str, content: bytes = b"") -> Submission:
    document = Document.from_bytes(sample_ccda() + content, name="ccd.xml")
    return compose([document], sender=sender, recipients=[RECIPIENT], level=MetadataLevel.MINIMAL)


def _send(lab: Lab, practice_id: str, submission: Submission) -> RegistryResponse:
    credential = lab.practices[practice_id].credential
    assert credential is not None
    context = client_ssl_context(load_identity(credential), lab.ca_bundle)
    request = build_request(submission, endpoint=lab.endpoint)
    connection = http.client.HTTPSConnection("127.0.0.1", lab.server.port, context=context, timeout=30)
    try:
        connection.request("POST", "/xdr", body=b"".join(request.body), headers=request.headers())
        response = connection.getresponse()
        parsed = parse_response(response.getheader("Content-Type", ""), response.read())
    finally:
        connection.close()
    assert parsed.registry_response is not None, f"no RegistryResponse (HTTP {response.status})"
    return parsed.registry_response


def _stored(lab: Lab, unique_id: str) -> list[Path]:
    return [p for p in lab.inbox.root.glob("*/*") if p.parent.name[0] != "." and p.name.startswith(unique_id)]


def _assert_refused_as_foreign(rr: RegistryResponse, unique_id: str) -> None:
    assert rr.status == FAILURE
    assert [e.error_code for e in rr.errors] == ["XDSRepositoryError"]  # not XDSDuplicateUniqueIdInRegistry
    context = rr.errors[0].code_context
    assert unique_id in context and "is already used by a submission from another sender" in context
    assert "practice-b" not in context and SENDER_B not in context  # the holder is never named


def test_submission_set_unique_id_sent_first_by_another_practice(lab: Lab) -> None:
    own = _submission(SENDER_A)
    uid = own.submission_set.unique_id
    squat = _submission(SENDER_B)
    squat = dataclasses.replace(
        squat, submission_set=dataclasses.replace(squat.submission_set, unique_id=uid)
    )
    assert _send(lab, "practice-b", squat).status == SUCCESS

    _assert_refused_as_foreign(_send(lab, "practice-a", own), uid)
    assert len(_stored(lab, uid)) == 1  # B's only
    # B's own resend is still the ordinary duplicate answer
    assert [e.error_code for e in _send(lab, "practice-b", squat).errors] == [
        "XDSDuplicateUniqueIdInRegistry"
    ]


def test_document_unique_id_sent_first_by_another_practice_with_other_bytes(lab: Lab) -> None:
    own = _submission(SENDER_A)
    doc_uid = own.document_entries[0].unique_id
    squat = _submission(SENDER_B, b"\n<!-- different -->")
    entry = dataclasses.replace(squat.document_entries[0], unique_id=doc_uid)
    squat = dataclasses.replace(squat, document_entries=(entry,))
    assert _send(lab, "practice-b", squat).status == SUCCESS

    _assert_refused_as_foreign(_send(lab, "practice-a", own), doc_uid)
    assert _stored(lab, own.submission_set.unique_id) == []
    assert not lab.inbox.contains(own.submission_set.unique_id)
