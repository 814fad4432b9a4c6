"""Whole messages on the wire (xdr_edge.protocol.wire): reader(writer(s)) == s for generated submissions, official-schema
validity of produced requests and responses after XOP decoding, and the document/part pairing findings of
ITI TF-2b 3.41.5, W3C MTOM/XOP; ITI TF-3 4.2.4, ebRS 3.0. Real bytes end to end: the MTOM body is streamed and parsed back with spooled parts."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from lxml import etree

from tests import strategies
from tests.reference import official_schema
from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.protocol import ns
from xdr_edge.protocol.capture import read_entity
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import LocalProtocolError, RemoteProtocolError
from xdr_edge.protocol.findings import Finding, Severity
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.model import Document, MetadataLevel, Submission
from xdr_edge.protocol.mtom import MtomBody, MtomLimits, MtomPart, new_content_id, read_mtom
from xdr_edge.protocol.response import RegistryErrorEntry, RegistryResponse
from xdr_edge.protocol.soap import DocumentRef, Fault, LevelPlacement
from xdr_edge.protocol.validate import check_documents, validate
from xdr_edge.protocol.wire import (
    IncomingRequest,
    build_plain_request,
    build_reply,
    build_request,
    parse_request,
    parse_response,
    request_envelope,
)

ENDPOINT = "https://hisp.example.org/xdr"
MESSAGE_ID = "urn:uuid:2f1c8a6e-5b4d-4c3b-9a2e-1d0f9e8d7c6b"
NSMAP = {
    "S": ns.SOAP,
    "wsa": ns.WSA,
    "xop": ns.XOP,
    "xdsb": ns.XDSB,
    "rs": ns.RS,
}


def _body(request_body: MtomBody) -> bytes:
    return b"".join(request_body)


def _parse(content_type: str, body: bytes) -> IncomingRequest:
    return parse_request(content_type, io.BytesIO(body), content_length=len(body))


def _roundtrip(
    submission: Submission, placement: LevelPlacement = LevelPlacement.TOP_LEVEL
) -> IncomingRequest:
    request = build_request(submission, endpoint=ENDPOINT, placement=placement)
    return _parse(request.content_type, _body(request.body))


def _rules(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.rule or "", f.location) for f in findings if f.is_error}


@pytest.fixture
def ccda_submission(tmp_path: Path) -> Submission:
    ccda = tmp_path / "ccd.xml"
    ccda.write_bytes(sample_ccda())
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(sample_pdf())
    return compose([ccda, pdf], sender="dr.a@direct.a.example.org", recipients=["dr.b@direct.b.example.org"])


# ---------------------------------------------------------------------------------------------------------
# Property: reader(writer(s)) == s, with every document's bytes


def _check_roundtrip(submission: Submission, placement: LevelPlacement) -> None:
    with _roundtrip(submission, placement) as incoming:
        parsed = incoming.submission
        assert parsed is not None
        assert parsed.submission_set == submission.submission_set
        assert parsed.document_entries == submission.document_entries  # metadata equality (document ignored)
        assert parsed.associations == submission.associations
        assert parsed.level is submission.level
        assert incoming.declared_level is submission.level
        assert parsed.direct_from == submission.direct_from
        assert parsed.direct_to == submission.direct_to
        assert incoming.mtom
        for sent, got in zip(submission.document_entries, parsed.document_entries, strict=True):
            assert sent.document is not None and got.document is not None
            data = sent.document.read_all()
            assert got.document.read_all() == data
            assert got.document.digest() == (hashlib.sha1(data).hexdigest(), len(data))
            if got.hash is not None:
                assert got.hash == hashlib.sha1(data).hexdigest()
            if got.size is not None:
                assert got.size == len(data)
        # The reader and the pairing add no error of their own: every error is one the profile rules find in
        # the submission as it was built (generated metadata is not always complete for its level).
        expected = _rules(validate(submission) + check_documents(submission))
        assert _rules(incoming.findings) == expected


@pytest.mark.slow
@pytest.mark.parametrize("placement", list(LevelPlacement))
def test_reader_of_writer_is_identity(placement: LevelPlacement) -> None:
    @given(strategies.submissions())
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def check(submission: Submission) -> None:
        _check_roundtrip(submission, placement)

    check()


@pytest.mark.parametrize("level", list(MetadataLevel))
@pytest.mark.parametrize("placement", list(LevelPlacement))
def test_composed_submission_roundtrips_without_findings(
    tmp_path: Path, level: MetadataLevel, placement: LevelPlacement
) -> None:
    ccda = tmp_path / "ccd.xml"
    ccda.write_bytes(sample_ccda())
    submission = compose(
        [ccda], sender="a@direct.a.example.org", recipients=["b@direct.b.example.org"], level=level
    )
    with _roundtrip(submission, placement) as incoming:
        assert incoming.errors == []
        assert incoming.envelope.level_placement is placement
        assert incoming.submission is not None
        assert incoming.submission.document_entries == submission.document_entries


# ---------------------------------------------------------------------------------------------------------
# Official schemas, after XOP decoding (ITI TF-2b 3.41.5)


def _xop_decoded(root: bytes, parts: dict[str, bytes]) -> etree._Element:
    """The envelope with each xop:Include replaced by the base64 of the part it references."""
    envelope = etree.fromstring(root)
    for include in envelope.iterfind(".//xop:Include", NSMAP):
        parent = include.getparent()
        assert parent is not None
        href = include.get("href", "")
        assert href.startswith("cid:")
        parent.remove(include)
        parent.text = base64.b64encode(parts[href[4:]]).decode("ascii")
    return envelope


def _assert_request_schema_valid(envelope: etree._Element) -> None:
    assert envelope.find(".//xop:Include", NSMAP) is None
    soap = official_schema("soap/soap-1.2-envelope.xsd")
    assert soap.validate(envelope), soap.error_log
    body_child = envelope.find("S:Body/xdsb:ProvideAndRegisterDocumentSetRequest", NSMAP)
    assert body_child is not None
    xds = official_schema("schema/IHE/XDS.b_DocumentRepository.xsd")
    assert xds.validate(copy.deepcopy(body_child)), xds.error_log
    wsa = official_schema("wsa/ws-addr.xsd")
    headers = envelope.findall("S:Header/wsa:*", NSMAP)
    assert {etree.QName(h).localname for h in headers} >= {"To", "MessageID", "Action", "ReplyTo"}
    for header in headers:
        assert wsa.validate(copy.deepcopy(header)), (etree.QName(header).localname, wsa.error_log)


@pytest.mark.shared
@pytest.mark.parametrize("level", list(MetadataLevel))
@pytest.mark.parametrize("placement", list(LevelPlacement))
def test_produced_request_is_schema_valid(
    tmp_path: Path, level: MetadataLevel, placement: LevelPlacement
) -> None:
    (tmp_path / "ccd.xml").write_bytes(sample_ccda())
    (tmp_path / "scan.pdf").write_bytes(sample_pdf())
    submission = compose(
        [tmp_path / "ccd.xml", tmp_path / "scan.pdf"],
        sender="a@direct.a.example.org",
        recipients=["b@direct.b.example.org", "c@direct.c.example.org"],
        level=level,
    )
    request = build_request(submission, endpoint=ENDPOINT, placement=placement)
    body = _body(request.body)
    with read_mtom(request.content_type, io.BytesIO(body), limits=MtomLimits()) as package:
        parts = {cid: Path(part.document().path or "").read_bytes() for cid, part in package.parts.items()}
        assert len(parts) == 2
        _assert_request_schema_valid(_xop_decoded(package.root, parts))


@pytest.mark.shared
def test_generated_requests_are_schema_valid() -> None:
    official_schema("schema/IHE/XDS.b_DocumentRepository.xsd")  # skip early when absent

    @given(strategies.submissions(max_entries=2))
    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def check(submission: Submission) -> None:
        request = build_request(submission, endpoint=ENDPOINT)
        parts = {p.content_id: p.document.read_all() for p in request.body.parts}
        _assert_request_schema_valid(_xop_decoded(request.body.root, parts))

    check()


def _reply_root(content_type: str, body: bytes) -> bytes:
    if content_type.startswith("multipart/related"):
        with read_mtom(content_type, io.BytesIO(body), limits=MtomLimits()) as package:
            assert package.parts == {}
            return package.root
    return body


_OUTCOMES = {
    "success": RegistryResponse.success(),
    "failure": RegistryResponse.failure(
        [
            RegistryErrorEntry(
                "XDSMissingDocument", "DocumentEntry Document01 has no document", Severity.ERROR, None
            ),
            RegistryErrorEntry("XDSRegistryMetadataError", "bad <author> & co", Severity.ERROR, "Document01"),
        ]
    ),
    "partial": RegistryResponse(
        status=ns.STATUS_PARTIAL,
        errors=(
            RegistryErrorEntry("XDSRegistryMetadataError", "one rejected", Severity.ERROR, "Document02"),
        ),
    ),
}


@pytest.mark.shared
@pytest.mark.parametrize("mtom", [True, False])
@pytest.mark.parametrize("name", sorted(_OUTCOMES))
def test_produced_response_is_schema_valid(name: str, mtom: bool) -> None:
    reply = build_reply(
        _OUTCOMES[name], relates_to="urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427", mtom=mtom
    )
    envelope = etree.fromstring(_reply_root(reply.content_type, reply.body))
    soap = official_schema("soap/soap-1.2-envelope.xsd")
    assert soap.validate(envelope), soap.error_log
    response = envelope.find("S:Body/rs:RegistryResponse", NSMAP)
    assert response is not None
    rs = official_schema("schema/ebRS/rs.xsd")
    assert rs.validate(copy.deepcopy(response)), rs.error_log
    wsa = official_schema("wsa/ws-addr.xsd")
    for header in envelope.findall("S:Header/wsa:*", NSMAP):
        assert wsa.validate(copy.deepcopy(header)), (etree.QName(header).localname, wsa.error_log)


@pytest.mark.shared
@pytest.mark.parametrize("mtom", [True, False])
def test_produced_fault_is_schema_valid(mtom: bool) -> None:
    fault = Fault("Sender", "S:Header/wsa:Action is missing", subcode="wsa:MessageAddressingHeaderRequired")
    reply = build_reply(fault, relates_to=None, mtom=mtom)
    envelope = etree.fromstring(_reply_root(reply.content_type, reply.body))
    soap = official_schema("soap/soap-1.2-envelope.xsd")
    assert soap.validate(envelope), soap.error_log


# ---------------------------------------------------------------------------------------------------------
# Responses: build_reply / parse_response


@pytest.mark.parametrize("mtom", [True, False])
@pytest.mark.parametrize("name", sorted(_OUTCOMES))
def test_reply_roundtrip(name: str, mtom: bool) -> None:
    outcome = _OUTCOMES[name]
    relates_to = "urn:uuid:6c3b2f6e-0b8e-4c7e-9d1a-3f1d2a4b5c6d"
    reply = build_reply(
        outcome, relates_to=relates_to, mtom=mtom, message_id="urn:uuid:00000000-0000-4000-8000-1"
    )
    assert reply.status == 200
    assert reply.content_type.startswith("multipart/related;" if mtom else "application/soap+xml")
    assert ns.ACTION_PNR_RESPONSE in reply.content_type
    parsed = parse_response(reply.content_type, reply.body)
    assert parsed.fault is None
    assert parsed.registry_response is not None
    assert parsed.registry_response.status == outcome.status
    assert parsed.registry_response.errors == outcome.errors
    assert parsed.envelope.relates_to == relates_to
    assert parsed.envelope.action == ns.ACTION_PNR_RESPONSE
    assert parsed.envelope.message_id == "urn:uuid:00000000-0000-4000-8000-1"
    assert [f for f in parsed.findings if f.is_error] == []


@pytest.mark.parametrize("mtom", [True, False])
def test_fault_roundtrip(mtom: bool) -> None:
    fault = Fault("Sender", "wsa:Action is missing", subcode="wsa:MessageAddressingHeaderRequired")
    reply = build_reply(fault, relates_to="urn:uuid:6c3b2f6e-0b8e-4c7e-9d1a-3f1d2a4b5c6d", mtom=mtom)
    assert (
        reply.status == 400
    )  # SOAP 1.2 HTTP binding: Sender faults are 400 (SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3)
    parsed = parse_response(reply.content_type, reply.body)
    assert parsed.registry_response is None
    assert parsed.fault is not None
    assert parsed.fault.code == "Sender"
    assert parsed.fault.subcode == "wsa:MessageAddressingHeaderRequired"
    assert parsed.fault.reason == "wsa:Action is missing"
    assert parsed.envelope.action == ns.ACTION_WSA_FAULT  # a WS-Addressing fault (WS-A 1.0 SOAP Binding §6)
    assert MediaType.parse(reply.content_type).param("action") == ns.ACTION_WSA_FAULT  # RFC 3902 agrees


def test_receiver_fault_is_500() -> None:
    reply = build_reply(Fault("Receiver", "storage unavailable"), relates_to=None, mtom=False)
    assert reply.status == 500
    parsed = parse_response(reply.content_type, reply.body)
    assert parsed.fault is not None and parsed.fault.code == "Receiver"


def test_reply_relates_to_request(ccda_submission: Submission) -> None:
    request = build_request(ccda_submission, endpoint=ENDPOINT)
    with _parse(request.content_type, _body(request.body)) as incoming:
        assert incoming.envelope.message_id == request.message_id
        reply = build_reply(
            RegistryResponse.from_findings(incoming.findings),
            relates_to=incoming.envelope.message_id,
            mtom=incoming.mtom,
        )
    parsed = parse_response(reply.content_type, reply.body)
    assert parsed.envelope.relates_to == request.message_id
    assert parsed.registry_response is not None and parsed.registry_response.is_success


def test_every_request_gets_a_new_message_id(ccda_submission: Submission) -> None:
    first = build_request(ccda_submission, endpoint=ENDPOINT)
    second = build_request(ccda_submission, endpoint=ENDPOINT)
    assert first.message_id != second.message_id
    assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", first.message_id)


@pytest.mark.parametrize(
    ("content_type", "body", "code"),
    [
        ("application/soap+xml", b"  \r\n", "empty-response"),
        ("text/html", b"<html><body>502 Bad Gateway</body></html>", "not-soap"),
    ],
)
def test_parse_response_refuses_non_soap(content_type: str, body: bytes, code: str) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        parse_response(content_type, body)
    assert err.value.code == code


# ---------------------------------------------------------------------------------------------------------
# Pairing documents with parts (ITI TF-2b 3.41.5, W3C MTOM/XOP; ITI TF-3 4.2.4, ebRS 3.0)


def _package(
    submission: Submission, refs: list[DocumentRef], parts: list[MtomPart], root_edit: bytes | None = None
) -> tuple[str, bytes]:
    root = request_envelope(submission, endpoint=ENDPOINT, message_id=MESSAGE_ID, documents=refs)
    body = MtomBody(root_edit if root_edit is not None else root, parts)
    return body.content_type, _body(body)


def _entry_parts(submission: Submission) -> Iterator[tuple[DocumentRef, MtomPart]]:
    for entry in submission.document_entries:
        assert entry.document is not None
        cid = new_content_id()
        yield (
            DocumentRef(entry.entry_id, content_id=cid),
            MtomPart(content_id=cid, content_type=entry.mime_type, document=entry.document),
        )


def _codes(incoming: IncomingRequest) -> dict[str, str]:
    return {f.rule or "": f.code for f in incoming.errors}


def test_orphan_part_is_missing_document_metadata(ccda_submission: Submission) -> None:
    pairs = list(_entry_parts(ccda_submission))
    extra = MtomPart(
        content_id="orphan@x.example.org", content_type="text/plain", document=Document.from_bytes(b"x")
    )
    content_type, body = _package(ccda_submission, [r for r, _ in pairs], [p for _, p in pairs] + [extra])
    with _parse(content_type, body) as incoming:
        orphan = [f for f in incoming.errors if f.rule == "part-orphan"]
        assert len(orphan) == 1
        assert orphan[0].code == "XDSMissingDocumentMetadata"
        assert "orphan@x.example.org" in orphan[0].location
        assert {f.rule for f in incoming.errors} == {"part-orphan"}


def test_document_without_extrinsic_object_is_missing_document_metadata(ccda_submission: Submission) -> None:
    pairs = list(_entry_parts(ccda_submission))
    stray = MtomPart(
        content_id="stray@x.example.org", content_type="text/plain", document=Document.from_bytes(b"x")
    )
    refs = [r for r, _ in pairs] + [DocumentRef("Document99", content_id="stray@x.example.org")]
    content_type, body = _package(ccda_submission, refs, [p for _, p in pairs] + [stray])
    with _parse(content_type, body) as incoming:
        assert _codes(incoming) == {"doc-no-metadata": "XDSMissingDocumentMetadata"}
        assert "Document99" in incoming.errors[0].location


def test_extrinsic_object_without_document_is_missing_document(ccda_submission: Submission) -> None:
    pairs = list(_entry_parts(ccda_submission))[:1]  # Document02 (the PDF) is sent without its part
    content_type, body = _package(ccda_submission, [r for r, _ in pairs], [p for _, p in pairs])
    with _parse(content_type, body) as incoming:
        assert _codes(incoming) == {"de-missing-document": "XDSMissingDocument"}
        assert "Document02" in incoming.errors[0].message
        assert incoming.submission is not None
        assert incoming.submission.document_entries[1].document is None


def test_hash_mismatch_is_reported(ccda_submission: Submission) -> None:
    pairs = list(_entry_parts(ccda_submission))
    _ref, part = pairs[1]
    tampered = MtomPart(
        content_id=part.content_id,
        content_type=part.content_type,
        document=Document.from_bytes(sample_pdf("other")),
    )
    content_type, body = _package(ccda_submission, [r for r, _ in pairs], [pairs[0][1], tampered])
    with _parse(content_type, body) as incoming:
        codes = _codes(incoming)
        assert codes.get("de-hash-mismatch") == "XDSRepositoryMetadataError"
        assert set(codes) <= {"de-hash-mismatch", "de-size-mismatch"}
        assert any("Document02" in f.location for f in incoming.errors)


def test_invalid_direct_from_is_a_failure_next_to_other_findings(ccda_submission: Submission) -> None:
    """our practice-binding rule: an invalid direct:from is XDSRepositoryMetadataError in a Failure, not a Sender fault, so the
    same reply also names the missing document."""
    pairs = list(_entry_parts(ccda_submission))[:1]  # Document02 is sent without its part
    content_type, body = _package(ccda_submission, [r for r, _ in pairs], [p for _, p in pairs])
    body = body.replace(b"mailto:dr.a@direct.a.example.org", b"#DIRECT_FROM#", 1)
    with _parse(content_type, body) as incoming:
        assert incoming.envelope.direct_from is None
        assert _codes(incoming) == {
            "direct-bad-address": "XDSRepositoryMetadataError",
            "de-missing-document": "XDSMissingDocument",
        }
        reply = RegistryResponse.from_findings(incoming.findings)
        assert reply.status == ns.STATUS_FAILURE
        assert {e.error_code for e in reply.errors if e.is_error} == {
            "XDSRepositoryMetadataError",
            "XDSMissingDocument",
        }


def test_unresolvable_cid_is_missing_document(ccda_submission: Submission) -> None:
    pairs = list(_entry_parts(ccda_submission))
    refs = [pairs[0][0], DocumentRef("Document02", content_id="nowhere@x.example.org")]
    content_type, body = _package(ccda_submission, refs, [pairs[0][1]])
    with _parse(content_type, body) as incoming:
        unresolved = [f for f in incoming.errors if f.rule == "xop-unresolved"]
        assert len(unresolved) == 1
        assert unresolved[0].code == "XDSMissingDocument"
        assert "nowhere@x.example.org" in unresolved[0].message


def test_part_referenced_twice_is_a_sender_fault(ccda_submission: Submission) -> None:
    pairs = list(_entry_parts(ccda_submission))
    root = request_envelope(
        ccda_submission, endpoint=ENDPOINT, message_id=MESSAGE_ID, documents=[r for r, _ in pairs]
    )
    first, second = (r.content_id or "" for r, _ in pairs)
    edited = root.replace(second.encode(), first.encode())
    content_type, body = _package(ccda_submission, [], [p for _, p in pairs], root_edit=edited)
    with pytest.raises(RemoteProtocolError) as err:
        _parse(content_type, body)
    assert err.value.fault_code == "Sender"  # DTS 432: one part per xop:Include
    assert first in err.value.message


def test_inline_base64_request_is_parsed(ccda_submission: Submission) -> None:
    _, content_type, root = build_plain_request(ccda_submission, endpoint=ENDPOINT, message_id=MESSAGE_ID)
    with _parse(content_type, root) as incoming:
        assert not incoming.mtom
        assert incoming.errors == []
        assert incoming.submission is not None
        for sent, got in zip(
            ccda_submission.document_entries, incoming.submission.document_entries, strict=True
        ):
            assert sent.document is not None and got.document is not None
            assert got.document.read_all() == sent.document.read_all()


def test_unsupported_content_type_is_a_sender_fault() -> None:
    with pytest.raises(RemoteProtocolError) as err:
        parse_request("text/plain", io.BytesIO(b"hello"))
    assert err.value.fault_code == "Sender"
    assert "text/plain" in err.value.message


# ---------------------------------------------------------------------------------------------------------
# Streaming the body re-checks the documents


class _CountingFile(io.BytesIO):
    """A real in-memory file that counts the bytes read from it (the documents' I/O is what is measured)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_send_path_reads_each_document_once_to_hash_and_once_to_send() -> None:
    """compose hashes; validate, build_request and MtomBody's length do not re-read; sending streams it once."""
    data = b"%PDF-1.4\n" + bytes(range(256)) * 4096  # 1 MiB: larger than compose's 64 KiB sniffing head
    source = _CountingFile(data)
    submission = compose(
        [Document.from_file(source, name="scan.pdf")], sender="a@b.example", recipients=["c@d.example"]
    )
    hashed = source.bytes_read
    assert len(data) <= hashed <= len(data) + 64 * 1024
    assert not [f for f in validate(submission) if f.is_error]
    request = build_request(submission, endpoint=ENDPOINT)
    assert source.bytes_read == hashed
    sent = _body(request.body)
    assert source.bytes_read == hashed + len(data)
    assert len(sent) == len(request.body)


def test_document_changed_after_compose_aborts_the_body(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(sample_pdf("before"))
    submission = compose([path], sender="a@direct.a.example.org", recipients=["b@direct.b.example.org"])
    request = build_request(submission, endpoint=ENDPOINT)
    path.write_bytes(sample_pdf("after!"))  # same length, other bytes
    with pytest.raises(LocalProtocolError) as err:
        _body(request.body)
    assert err.value.code == "document-changed"


def test_write_entity_then_read_entity(ccda_submission: Submission) -> None:
    request = build_request(ccda_submission, endpoint=ENDPOINT)
    out = io.BytesIO()
    size = request.write_entity(out)
    assert size == len(request.body)
    assert request.headers()["Content-Length"] == str(size)
    entity = read_entity(io.BytesIO(out.getvalue()))
    content_type, body, restored = entity.content_type, entity.body, entity.line_ends_restored
    assert content_type == request.content_type
    assert not restored
    with parse_request(content_type, body) as incoming:
        assert incoming.errors == []
        assert incoming.submission is not None
        assert incoming.submission.submission_set == ccda_submission.submission_set


def test_read_entity_restores_crlf_of_a_text_capture(ccda_submission: Submission) -> None:
    """A capture saved as text (LF only, and a blank before each line end as NIST logs add) still reads."""
    request = build_request(ccda_submission, endpoint=ENDPOINT)
    out = io.BytesIO()
    request.write_entity(out)
    mangled = out.getvalue().replace(b"\r\n", b" \n")
    entity = read_entity(io.BytesIO(mangled))
    content_type, body, restored = entity.content_type, entity.body, entity.line_ends_restored
    assert restored
    with parse_request(content_type, body) as incoming:
        assert incoming.submission is not None
        assert incoming.submission.submission_set == ccda_submission.submission_set
        assert not [f for f in incoming.errors if f.code == "XDSMissingDocument"]


def test_read_entity_of_http_response_without_content_type() -> None:
    capture = b"HTTP/1.1 200 OK\nServer: x\n\n\n<S:Envelope xmlns:S='" + ns.SOAP.encode() + b"'/>"
    entity = read_entity(io.BytesIO(capture))
    content_type, body = entity.content_type, entity.body
    assert content_type == "application/soap+xml"
    assert body.read().strip().startswith(b"<S:Envelope")


def test_read_entity_reads_past_the_first_chunk() -> None:
    """A bare XML message larger than the 64 KiB head is returned whole by one bounded read."""
    xml = b"<root>" + b"x" * 200_000 + b"</root>"
    entity = read_entity(io.BytesIO(xml))
    content_type, body = entity.content_type, entity.body
    assert content_type == "application/soap+xml"
    assert body.read(len(xml) + 1) == xml


def test_read_entity_without_headers_is_refused() -> None:
    with pytest.raises(RemoteProtocolError) as err:
        read_entity(io.BytesIO(b"X-Thing: 1\r\n\r\nnot xml"))
    assert err.value.code == "bad-entity"
