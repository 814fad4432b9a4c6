"""What a request we refuse still gets right: the media type's ``action`` checked against ``wsa:Action``
(WS-Addressing 1.0 SOAP Binding §6.4.1, ``wsa:ActionMismatch``) and a fault that says which request it answers
(``wsa:RelatesTo``, WS-Addressing 1.0 Core §3.4), even when the MIME framing, a size limit or the XML after the
header was what we refused. Pure wire tests first, then the same over a real mutual-TLS receiver."""

from __future__ import annotations

import http.client
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from xdr_edge.certs import load_identity
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.protocol import ns
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.inspection import inspect_stream
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.model import Document
from xdr_edge.protocol.mtom import MtomLimits
from xdr_edge.protocol.soap import Fault, message_id_in_prefix
from xdr_edge.protocol.wire import (
    SALVAGE_BYTES,
    OutgoingRequest,
    ParsedResponse,
    build_plain_request,
    build_reply,
    build_request,
    message_id_of_unread,
    parse_request,
    parse_response,
)
from xdr_edge.tls import client_ssl_context

ENDPOINT = "https://hisp.example.org/xdr"
MESSAGE_ID = "uuid:2d12156a-4934-4a9a-afc3-ef4ba9d4e5b3"  # Metro's form: a URI, not a urn:uuid:
PNR = ns.ACTION_PNR
BOUNDARY = "uuid:0b0844c0-def9-4c83-b25c-d3d23674a4b8"
ROOT_ID = "rootpart*0b0844c0-def9-4c83-b25c-d3d23674a4b8@example.jaxws.sun.com"
METRO_OUTER = (
    f'multipart/related;start="<{ROOT_ID}>";type="application/xop+xml";boundary="{BOUNDARY}";'
    f'start-info="application/soap+xml;action=\\"{PNR}\\""'
)
METRO_ROOT = f'application/xop+xml;charset=utf-8;type="application/soap+xml;action=\\"{PNR}\\""'
SENDER = "dr.smith@direct.practice-a.org"
BODY_END = b"</xdsb:ProvideAndRegisterDocumentSetRequest>"


def _request(message_id: str = MESSAGE_ID, endpoint: str = ENDPOINT) -> OutgoingRequest:
    submission = compose(
        [Document.from_bytes(sample_ccda(), name="ccd.xml")],
        sender=SENDER,
        recipients=["records@direct.hospital.example"],
    )
    return build_request(submission, endpoint=endpoint, message_id=message_id)


def metro_framing(
    request: OutgoingRequest,
    *,
    outer: str = METRO_OUTER,
    root_type: str = METRO_ROOT,
    root: bytes | None = None,
    document_headers: tuple[str, ...] | None = None,
) -> tuple[str, bytes]:
    """``request`` framed the way Metro frames it (start first, start-info with an escaped action, the root
    part's type with the action, ``Content-Id`` spelling, no CRLF after the closing delimiter)."""
    delimiter = b"--" + BOUNDARY.encode()
    out = delimiter + b"\r\n"
    out += f"Content-Id: <{ROOT_ID}>\r\nContent-Type: {root_type}\r\n".encode()
    out += b"Content-Transfer-Encoding: binary\r\n\r\n" + (request.body.root if root is None else root)
    for part in request.body.parts:
        headers = document_headers or (
            f"Content-Id: <{part.content_id}>",
            "Content-Type: application/octet-stream",
            "Content-Transfer-Encoding: binary",
        )
        out += b"\r\n" + delimiter + b"\r\n" + "".join(h + "\r\n" for h in headers).encode() + b"\r\n"
        out += part.document.read_all()
    return outer, out + b"\r\n" + delimiter + b"--"


def refusal(content_type: str, body: bytes, **kwargs: object) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as err:
        parse_request(content_type, io.BytesIO(body), **kwargs)  # type: ignore[arg-type]
    return err.value


# ----------------------------------------------------------------------------------------------------------
# The action a media type states


def test_metro_framing_with_actions_in_start_info_and_root_type_is_read() -> None:
    content_type, body = metro_framing(_request())
    with parse_request(content_type, io.BytesIO(body), content_length=len(body)) as incoming:
        assert incoming.envelope.message_id == MESSAGE_ID
        assert incoming.errors == []
        assert incoming.package is not None
        assert [a for _, a in incoming.package.declared_actions] == [PNR, PNR]


@pytest.mark.parametrize(
    ("outer", "root_type", "where"),
    [
        (METRO_OUTER.replace(PNR, "urn:other"), METRO_ROOT, "start-info"),
        (METRO_OUTER, METRO_ROOT.replace(PNR, "urn:other"), "root part"),
        (f'{METRO_OUTER};action="urn:other"', METRO_ROOT, "Content-Type action parameter"),
    ],
    ids=["start-info", "root-type", "package-action"],
)
def test_an_action_that_is_not_wsa_action_is_an_action_mismatch(
    outer: str, root_type: str, where: str
) -> None:
    content_type, body = metro_framing(_request(), outer=outer, root_type=root_type)
    error = refusal(content_type, body)
    assert (error.fault_code, error.fault_subcode) == ("Sender", "wsa:InvalidAddressingHeader")
    assert error.fault_subsubcode == "wsa:ActionMismatch"
    assert where in error.message and "urn:other" in error.message
    assert error.relates_to == MESSAGE_ID


def test_a_plain_soap_action_parameter_is_checked_too() -> None:
    message_id, content_type, xml = build_plain_request(_request().submission, endpoint=ENDPOINT)
    with parse_request(content_type, io.BytesIO(xml)) as incoming:  # ours states the right action
        assert incoming.envelope.action == PNR
    wrong = content_type.replace(PNR, "urn:other")
    error = refusal(wrong, xml)
    assert error.fault_subsubcode == "wsa:ActionMismatch"
    assert error.relates_to == message_id
    with parse_request('application/soap+xml; action=""', io.BytesIO(xml)):
        pass  # an empty action states nothing


def test_the_action_mismatch_fault_on_the_wire() -> None:
    content_type, body = metro_framing(_request(), root_type=METRO_ROOT.replace(PNR, "urn:other"))
    error = refusal(content_type, body)
    reply = build_reply(Fault.from_error(error), relates_to=error.relates_to, mtom=True)
    assert reply.status == 400
    parsed = parse_response(reply.content_type, reply.body)
    assert parsed.fault is not None
    assert (parsed.fault.subcode, parsed.fault.subsubcode) == (
        "wsa:InvalidAddressingHeader",
        "wsa:ActionMismatch",
    )
    assert parsed.fault.detail == "wsa:Action"  # wsa:ProblemHeaderQName
    assert parsed.envelope.relates_to == MESSAGE_ID
    root = etree.fromstring(reply.body[reply.body.index(b"<?xml") : reply.body.rindex(b"Envelope>") + 9])
    values = root.xpath("//S:Code//S:Value/text()", namespaces={"S": ns.SOAP})
    assert values == ["S:Sender", "wsa:InvalidAddressingHeader", "wsa:ActionMismatch"]


# ----------------------------------------------------------------------------------------------------------
# RelatesTo on refusals: the MessageID read from what could be read


def _metro(**kwargs: object) -> tuple[str, bytes]:
    return metro_framing(_request(), **kwargs)  # type: ignore[arg-type]


def _refusal_cases() -> Iterator[tuple[str, str, bytes, dict[str, object], str]]:
    content_type, body = _metro()
    yield (
        "soap11-start-info",
        content_type.replace("application/soap+xml;", "text/xml;"),
        body,
        {},
        "start-info",
    )
    yield (
        "swa-package-type",
        content_type.replace("application/xop+xml", "text/xml"),
        body,
        {},
        "type parameter",
    )
    yield "root-not-xop", *_metro(root_type="text/xml"), {}, "root part"
    yield (
        "root-declares-soap11",
        *_metro(root_type='application/xop+xml; type="text/xml"'),
        {},
        "type parameter",
    )
    no_cid = ("Content-Type: application/octet-stream",)
    yield "part-without-content-id", *_metro(document_headers=no_cid), {}, "Content-ID"
    encoded = ("Content-Id: <d@x>", "Content-Transfer-Encoding: base64")
    yield "part-base64", *_metro(document_headers=encoded), {}, "Content-Transfer-Encoding"
    yield "truncated", content_type, body[:-200], {"content_length": len(body)}, "truncated"
    yield "root-too-large", content_type, body, {"limits": MtomLimits(max_root_bytes=2000)}, "max_root_bytes"
    yield (
        "body-too-large",
        content_type,
        body,
        {"limits": MtomLimits(max_total_bytes=3000)},
        "max_total_bytes",
    )
    bad_xml = _request().body.root.replace(BODY_END, b"<oops>" + BODY_END)
    yield "xml-broken-after-header", *_metro(root=bad_xml), {}, "not well-formed"
    yield "unsupported-type", "application/json", _request().body.root, {}, "unsupported Content-Type"


@pytest.mark.parametrize(
    ("content_type", "body", "kwargs", "fragment"),
    [case[1:] for case in _refusal_cases()],
    ids=[case[0] for case in _refusal_cases()],
)
def test_a_refused_request_still_relates_to_its_message_id(
    content_type: str, body: bytes, kwargs: dict[str, object], fragment: str, tmp_path: Path
) -> None:
    error = refusal(content_type, body, spool_dir=tmp_path, **kwargs)
    assert fragment in error.message
    assert error.is_fault or error.code == "limit-exceeded"
    assert error.relates_to == MESSAGE_ID
    assert list(tmp_path.iterdir()) == []  # nothing spooled is left behind


def test_a_plain_soap_request_refused_for_its_xml_or_size_relates_to_its_message_id() -> None:
    message_id, content_type, xml = build_plain_request(_request().submission, endpoint=ENDPOINT)
    broken = xml.replace(BODY_END, b"<oops>" + BODY_END)
    assert broken != xml
    assert refusal(content_type, broken).relates_to == message_id
    too_large = refusal(content_type, xml, limits=MtomLimits(max_root_bytes=len(xml) - 1))
    assert too_large.code == "limit-exceeded" and too_large.relates_to == message_id


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (
            (b"\n<soap-env:Envelope", b'<!DOCTYPE x [<!ENTITY e "1">]><soap-env:Envelope'),
            "a DOCTYPE is never read",
        ),
        ((b"</wsa:MessageID>", b"</wsa:MessageID><wsa:MessageID>uuid:2</wsa:MessageID>"), "two MessageIDs"),
        ((MESSAGE_ID.encode(), b"has space"), "not a URI"),
        ((b"<wsa:MessageID", b"<oops><wsa:MessageID"), "broken before the MessageID ends"),
    ],
)
def test_no_relates_to_when_the_message_id_cannot_be_read(change: tuple[bytes, bytes], why: str) -> None:
    root = _request().body.root.replace(*change, 1)
    assert root != _request().body.root, why
    content_type, body = _metro(root=root, root_type="text/xml")  # refused for its framing
    assert refusal(content_type, body).relates_to is None


def test_message_id_of_unread_reads_a_bounded_prefix_only() -> None:
    content_type, body = _metro()
    big = body + b"x" * (4 * SALVAGE_BYTES)
    stream = io.BytesIO(big)
    assert message_id_of_unread(content_type, stream, content_length=len(big)) == MESSAGE_ID
    assert stream.tell() == SALVAGE_BYTES
    short = io.BytesIO(body + b"NEXT")
    assert message_id_of_unread(content_type, short, content_length=len(body)) == MESSAGE_ID
    assert short.read() == b"NEXT"  # never beyond the Content-Length


ENVELOPE = (
    b"<?xml version='1.0' encoding='UTF-8'?><env:Envelope xmlns:env=\"" + ns.SOAP.encode() + b'">'
    b'<env:Header><To xmlns="' + ns.WSA.encode() + b'">https://x.example/xdr</To>'
    b'<MessageID xmlns="' + ns.WSA.encode() + b'">' + MESSAGE_ID.encode() + b"</MessageID>"
    b"</env:Header><env:Body><x/></env:Body></env:Envelope>"
)


@given(st.integers(min_value=0, max_value=len(ENVELOPE)))
def test_message_id_in_prefix_for_every_cut(keep: int) -> None:
    found = message_id_in_prefix(ENVELOPE[:keep])
    complete = keep >= ENVELOPE.index(b"</MessageID>") + len(b"</MessageID>")
    assert found == (MESSAGE_ID if complete else None)


def test_message_id_in_prefix_reads_only_the_envelope_header() -> None:
    soap11 = ENVELOPE.replace(ns.SOAP.encode(), ns.SOAP11.encode())
    assert message_id_in_prefix(soap11) == MESSAGE_ID  # a VersionMismatch fault may relate too
    in_body = ENVELOPE.replace(b"<env:Header>", b"<env:Header></env:Header><env:Body>").replace(
        b"</env:Header><env:Body><x/>", b""
    )
    assert message_id_in_prefix(in_body) is None
    nested = ENVELOPE.replace(b"<MessageID", b"<y><MessageID").replace(b"</MessageID>", b"</MessageID></y>")
    assert message_id_in_prefix(nested) is None
    assert message_id_in_prefix(b"") is None
    assert message_id_in_prefix(b"\x00\xff not xml") is None


# ----------------------------------------------------------------------------------------------------------
# The same over a real receiver (mutual TLS on loopback)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with start_lab(tmp_path_factory.mktemp("lab"), threads=2) as running:
        yield running


def _post(lab: Lab, content_type: str, body: bytes) -> tuple[int, str, ParsedResponse]:
    credential = lab.practices["practice-a"].credential
    assert credential is not None
    context = client_ssl_context(load_identity(credential), lab.ca_bundle)
    connection = http.client.HTTPSConnection("127.0.0.1", lab.server.port, context=context, timeout=30)
    try:
        connection.request("POST", "/xdr", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        data = response.read()
        reply_type = response.getheader("Content-Type", "")
        return response.status, reply_type, parse_response(reply_type, data)
    finally:
        connection.close()


def test_receiver_fault_for_refused_framing_relates_to_the_request(lab: Lab) -> None:
    content_type, body = metro_framing(_request(endpoint=lab.endpoint), root_type="text/xml")
    status, reply_type, parsed = _post(lab, content_type, body)
    assert status == 400
    assert reply_type.startswith("multipart/related")  # an MTOM request gets an MTOM fault
    assert parsed.fault is not None and "root part" in parsed.fault.reason
    assert parsed.envelope.relates_to == MESSAGE_ID
    assert parsed.envelope.action == ns.ACTION_FAULT


def test_receiver_answers_an_action_mismatch(lab: Lab) -> None:
    request = _request(endpoint=lab.endpoint)
    content_type, body = metro_framing(request, outer=METRO_OUTER.replace(PNR, "urn:ihe:iti:2007:Other"))
    status, _, parsed = _post(lab, content_type, body)
    assert status == 400
    assert parsed.fault is not None
    assert (parsed.fault.subcode, parsed.fault.subsubcode) == (
        "wsa:InvalidAddressingHeader",
        "wsa:ActionMismatch",
    )
    assert parsed.envelope.relates_to == MESSAGE_ID
    assert parsed.envelope.action == ns.ACTION_WSA_FAULT  # WS-Addressing 1.0 SOAP Binding §6
    assert not lab.inbox.contains(request.submission.submission_set.unique_id)


_UNKNOWN_MANDATORY = b'<x:Audit xmlns:x="urn:example:audit" soap-env:mustUnderstand="true"/>'


def _plain_cases() -> Iterator[tuple[str, tuple[bytes, bytes], str | None, str]]:
    """``(id, change to the plain request, the fault subcode, the wsa:Action the fault must carry)``: the faults
    WS-Addressing defines carry ``.../addressing/fault``, the others ``.../addressing/soap/fault`` (WS-Addressing
    1.0 SOAP Binding §6)."""
    must = b' soap-env:mustUnderstand="true"'
    message_id = b"<wsa:MessageID" + must + b">" + MESSAGE_ID.encode() + b"</wsa:MessageID>"
    yield "message-id-missing", (message_id, b""), "wsa:MessageAddressingHeaderRequired", ns.ACTION_WSA_FAULT
    action = b">" + PNR.encode() + b"</wsa:Action>"
    yield (
        "action-not-supported",
        (action, b">urn:ihe:iti:2007:RegistryStoredQuery</wsa:Action>"),
        "wsa:ActionNotSupported",
        ns.ACTION_WSA_FAULT,
    )
    yield (
        "action-twice",
        (action, action + b"<wsa:Action>" + PNR.encode() + b"</wsa:Action>"),
        "wsa:InvalidAddressingHeader",
        ns.ACTION_WSA_FAULT,
    )
    reply_to = b"<wsa:Address>" + ns.WSA_ANONYMOUS.encode() + b"</wsa:Address>"
    yield "reply-to-without-address", (reply_to, b""), "wsa:InvalidAddressingHeader", ns.ACTION_WSA_FAULT
    yield (
        "must-understand",
        (b"</soap-env:Header>", _UNKNOWN_MANDATORY + b"</soap-env:Header>"),
        None,
        ns.ACTION_FAULT,
    )
    yield "body-not-well-formed", (BODY_END, b"<oops>" + BODY_END), None, ns.ACTION_FAULT


@pytest.mark.parametrize(
    ("change", "subcode", "action"), [pytest.param(*case[1:], id=case[0]) for case in _plain_cases()]
)
def test_receiver_fault_action_says_whether_ws_addressing_refused(
    lab: Lab, change: tuple[bytes, bytes], subcode: str | None, action: str
) -> None:
    _, _, xml = build_plain_request(
        _request(endpoint=lab.endpoint).submission, endpoint=lab.endpoint, message_id=MESSAGE_ID
    )
    changed = xml.replace(*change, 1)
    assert changed != xml
    # no action parameter: the envelope alone says what the request is
    status, reply_type, parsed = _post(lab, "application/soap+xml; charset=UTF-8", changed)
    assert parsed.fault is not None, parsed
    assert status == (400 if parsed.fault.code == "Sender" else 500)
    assert parsed.fault.subcode == subcode, parsed.fault
    assert parsed.envelope.action == action
    assert MediaType.parse(reply_type).param("action") == action  # RFC 3902: the media type agrees
    if subcode != "wsa:MessageAddressingHeaderRequired":
        assert parsed.envelope.relates_to == MESSAGE_ID


def test_receiver_stores_metro_framing(lab: Lab) -> None:
    request = _request(message_id="uuid:5b0c1f0e-1d36-4c6a-9d53-7c6c3a1b2f10", endpoint=lab.endpoint)
    content_type, body = metro_framing(request)
    status, _, parsed = _post(lab, content_type, body)
    assert status == 200, parsed.fault
    assert parsed.registry_response is not None and parsed.registry_response.is_success
    assert parsed.envelope.relates_to == "uuid:5b0c1f0e-1d36-4c6a-9d53-7c6c3a1b2f10"
    assert lab.inbox.contains(request.submission.submission_set.unique_id)


# ----------------------------------------------------------------------------------------------------------
# xdr-edge inspect reads the same framing


def _capture(content_type: str, body: bytes) -> io.BytesIO:
    head = f"POST /xdr HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return io.BytesIO(head.encode("latin-1") + body)


def test_inspect_reads_a_metro_capture_and_reports_an_action_mismatch() -> None:
    content_type, body = metro_framing(_request())
    result = inspect_stream(_capture(content_type, body))
    assert result.kind == "request" and result.mtom
    assert not result.has_errors, [f.message for f in result.findings if f.is_error]
    assert result.summary["message_id"] == MESSAGE_ID
    content_type, body = metro_framing(_request(), root_type=METRO_ROOT.replace(PNR, "urn:other"))
    mismatch = inspect_stream(_capture(content_type, body))
    codes = [f.code for f in mismatch.findings if f.is_error]
    assert codes == ["env:Sender / wsa:InvalidAddressingHeader / wsa:ActionMismatch"]


def test_inspect_reports_an_unreadable_content_type_instead_of_failing() -> None:
    result = inspect_stream(_capture('multipart/related; boundary="open', b"--x--"))
    assert result.kind == "unknown" and result.has_errors
    assert result.findings[0].rule == "malformed-media-type"
