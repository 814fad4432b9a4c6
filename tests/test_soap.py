"""SOAP 1.2 envelopes: the request zeep builds and its reader, replies and faults (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding, SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3)."""

from __future__ import annotations

import base64
import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from tests.reference import official_schema, sample_path
from xdr_edge.protocol import ns
from xdr_edge.protocol.errors import (
    ConfigurationError,
    LimitExceeded,
    LocalProtocolError,
    RemoteProtocolError,
)
from xdr_edge.protocol.model import DirectAddress, MetadataLevel
from xdr_edge.protocol.response import (
    RegistryErrorEntry,
    RegistryResponse,
    read_registry_response,
    write_registry_response,
)
from xdr_edge.protocol.soap import (
    BODY_WARNING,
    DIRECT_WARNING,
    FINAL_DESTINATION_DELIVERY,
    WSA_WARNING,
    DocumentRef,
    Fault,
    LevelPlacement,
    build_fault_envelope,
    build_request_envelope,
    build_response_envelope,
    fault_http_status,
    header_qname,
    read_request_envelope,
    read_response_envelope,
)
from xdr_edge.protocol.xml import DEFAULT_XML_BUDGET, XmlBudget, parse

S = ns.SOAP
WSA = ns.WSA
NSMAP = {"S": S, "wsa": WSA, "direct": ns.DIRECT, "xdsb": ns.XDSB, "lcm": ns.LCM, "xop": ns.XOP, "rs": ns.RS}
MU = f"{{{S}}}mustUnderstand"

FROM = DirectAddress.parse("mailto:dr.sender@direct.example.org")
TO = (DirectAddress("one@hisp.example.com"), DirectAddress("two@hisp.example.com"))


def _sample(relative: str) -> bytes:
    return sample_path(relative).read_bytes()


def _submit_objects() -> etree._Element:
    """A small hand-built SubmitObjectsRequest: one ExtrinsicObject and a SubmissionSet package."""
    return etree.fromstring(
        f'<lcm:SubmitObjectsRequest xmlns:lcm="{ns.LCM}" xmlns:rim="{ns.RIM}"><rim:RegistryObjectList>'
        f'<rim:ExtrinsicObject id="Document01" mimeType="text/xml" objectType="{ns.DOC_ENTRY_STABLE}"/>'
        '<rim:RegistryPackage id="SubmissionSet01"/>'
        "</rim:RegistryObjectList></lcm:SubmitObjectsRequest>"
    )


def _build(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "submit_objects": _submit_objects(),
        "documents": [DocumentRef("Document01", content_id="1.abc@xdr-edge.example")],
        "to": "https://hisp.example.com/xdr",
        "message_id": "urn:uuid:6d296e90-e5dc-43d0-b455-7c1f3eb35d83",
        "direct_from": FROM,
        "direct_to": TO,
        "level": MetadataLevel.MINIMAL,
    }
    args.update(overrides)
    return build_request_envelope(**args)  # type: ignore[arg-type]


def _xpath(xml: bytes, path: str) -> list[etree._Element]:
    result = etree.fromstring(xml).xpath(path, namespaces=NSMAP)
    assert isinstance(result, list)
    return [e for e in result if isinstance(e, etree._Element)]


# --- building the request


def test_request_has_each_wsa_header_exactly_once_with_must_understand() -> None:
    xml = _build()
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    headers = _xpath(xml, "/S:Envelope/S:Header/wsa:*")
    names = [etree.QName(h).localname for h in headers]
    assert sorted(names) == ["Action", "MessageID", "ReplyTo", "To"]
    assert all(h.get(MU) == "true" for h in headers)
    by_name = dict(zip(names, headers, strict=True))
    assert by_name["Action"].text == ns.ACTION_PNR
    assert by_name["To"].text == "https://hisp.example.com/xdr"
    assert by_name["MessageID"].text == "urn:uuid:6d296e90-e5dc-43d0-b455-7c1f3eb35d83"
    assert _xpath(xml, "//wsa:ReplyTo/wsa:Address")[0].text == ns.WSA_ANONYMOUS


def test_request_address_block() -> None:
    xml = _build()
    (block,) = _xpath(xml, "/S:Envelope/S:Header/direct:addressBlock")
    assert block.get(f"{{{S}}}role") == ns.DIRECT_ROLE
    assert block.get(f"{{{S}}}relay") == "true"
    assert block.get(MU) is None
    assert [e.text for e in block.findall("direct:from", NSMAP)] == ["mailto:dr.sender@direct.example.org"]
    assert [e.text for e in block.findall("direct:to", NSMAP)] == [
        "mailto:one@hisp.example.com",
        "mailto:two@hisp.example.com",
    ]


def test_final_destination_delivery_request_is_written_after_the_recipients_and_read_back() -> None:
    assert "X-DIRECT" not in _build().decode()  # only when asked for
    xml = _build(final_destination_delivery=True)
    (block,) = _xpath(xml, "/S:Envelope/S:Header/direct:addressBlock")
    assert [etree.QName(e).localname for e in block] == ["from", "to", "to", FINAL_DESTINATION_DELIVERY]
    assert block[-1].text == "true"
    assert read_request_envelope(xml).final_destination_delivery is True
    assert read_request_envelope(_build()).final_destination_delivery is False


def _with_delivery_request(*values: str) -> bytes:
    extra = "".join(
        f"<direct:{FINAL_DESTINATION_DELIVERY}>{v}</direct:{FINAL_DESTINATION_DELIVERY}>" for v in values
    )
    return _template(block=PARTS["block"].replace("</direct:addressBlock>", extra + "</direct:addressBlock>"))


@pytest.mark.parametrize(
    ("value", "expected"), [(" true ", True), ("1", True), ("false", False), ("0", False)]
)
def test_final_destination_delivery_values(value: str, expected: bool) -> None:
    read = read_request_envelope(_with_delivery_request(value))
    assert read.final_destination_delivery is expected
    assert not [f for f in read.findings if f.is_error]


def test_an_unreadable_delivery_request_is_an_error_finding_naming_the_element() -> None:
    read = read_request_envelope(_with_delivery_request("yes please"))
    (error,) = [f for f in read.findings if f.is_error]
    assert error.code == "XDSRepositoryMetadataError"
    assert error.location == f"S:Header/direct:addressBlock/direct:{FINAL_DESTINATION_DELIVERY}"
    assert "'yes please'" in error.message and "true or false" in error.message
    assert read.final_destination_delivery is False


def test_a_repeated_delivery_request_is_a_sender_fault() -> None:
    with pytest.raises(RemoteProtocolError, match="appears more than once") as caught:
        read_request_envelope(_with_delivery_request("true", "false"))
    assert caught.value.fault_code == "Sender"


@pytest.mark.parametrize(
    ("placement", "top", "inside"),
    [(LevelPlacement.TOP_LEVEL, 1, 0), (LevelPlacement.IN_BLOCK, 0, 1), (LevelPlacement.BOTH, 1, 1)],
)
def test_request_metadata_level_placement(placement: LevelPlacement, top: int, inside: int) -> None:
    xml = _build(level=MetadataLevel.XDS, placement=placement)
    assert [e.text for e in _xpath(xml, "/S:Envelope/S:Header/direct:metadata-level")] == ["XDS"] * top
    assert [e.text for e in _xpath(xml, "//direct:addressBlock/direct:metadata-level")] == ["XDS"] * inside
    read = read_request_envelope(xml)
    assert read.level is MetadataLevel.XDS and read.level_placement is placement


def test_request_without_level_or_addresses() -> None:
    xml = _build(level=None, direct_from=None, direct_to=())
    assert _xpath(xml, "//direct:*") == []
    read = read_request_envelope(xml)
    assert read.level is None and read.level_placement is None and not read.has_address_block
    assert {f.rule for f in read.findings} == {"direct-level-absent", "direct-block-absent"}


def test_request_documents_and_placeholders() -> None:
    original = _submit_objects()
    xml = _build(
        submit_objects=original,
        documents=[
            DocumentRef("Document01", content_id="a b/c%d@x.org"),
            DocumentRef("Doc2", inline=b"\x00hi"),
        ],
    )
    assert original.getparent() is None and len(original[0]) == 2  # the caller's tree is untouched
    docs = _xpath(xml, "//xdsb:ProvideAndRegisterDocumentSetRequest/xdsb:Document")
    assert [d.get("id") for d in docs] == ["Document01", "Doc2"]
    include = docs[0].find("xop:Include", NSMAP)
    assert include is not None and include.get("href") == "cid:a%20b%2Fc%25d@x.org"  # mtom.cid_href
    assert docs[1].text == base64.b64encode(b"\x00hi").decode()
    (request,) = _xpath(xml, "/S:Envelope/S:Body/xdsb:ProvideAndRegisterDocumentSetRequest")
    assert etree.QName(request[0]).localname == "SubmitObjectsRequest"
    assert request[0].find(f"{{{ns.RIM}}}RegistryObjectList/{{{ns.RIM}}}RegistryPackage") is not None
    assert len(_xpath(xml, "//lcm:SubmitObjectsRequest")) == 1


def test_request_refuses_bad_arguments() -> None:
    with pytest.raises(LocalProtocolError, match="exactly one of content_id or inline"):
        DocumentRef("D1")
    with pytest.raises(LocalProtocolError, match="exactly one of content_id or inline"):
        DocumentRef("D1", content_id="x", inline=b"")
    with pytest.raises(LocalProtocolError, match="Content-ID used more than once"):
        _build(documents=[DocumentRef("D1", content_id="x"), DocumentRef("D2", content_id="x")])
    with pytest.raises(LocalProtocolError, match="Document/@id used more than once"):
        _build(documents=[DocumentRef("D1", content_id="x"), DocumentRef("D1", content_id="y")])
    with pytest.raises(LocalProtocolError, match="wsa:To"):
        _build(to=" ")
    with pytest.raises(LocalProtocolError, match="expected lcm:SubmitObjectsRequest"):
        _build(submit_objects=etree.Element("other"))


_cids = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_characters="<>"), min_size=1)


@given(st.lists(_cids, min_size=1, max_size=4, unique=True))
@settings(max_examples=40)
def test_request_round_trip(cids: list[str]) -> None:
    docs = [DocumentRef(f"Doc{i}", content_id=c) for i, c in enumerate(cids)]
    read = read_request_envelope(_build(documents=docs, placement=LevelPlacement.IN_BLOCK))
    assert read.documents == tuple(docs)
    assert read.action == ns.ACTION_PNR and read.to == "https://hisp.example.com/xdr"
    assert read.message_id == "urn:uuid:6d296e90-e5dc-43d0-b455-7c1f3eb35d83"
    assert read.reply_to == ns.WSA_ANONYMOUS
    assert read.direct_from == FROM and read.direct_to == TO
    assert read.level is MetadataLevel.MINIMAL and read.level_placement is LevelPlacement.IN_BLOCK
    assert read.submit_objects is not None and read.submit_objects[0][0].get("id") == "Document01"
    assert read.findings == []


# --- official schemas (on the XOP-decoded infoset, ITI TF-2b 3.41.5)


def _xop_decode(xml: bytes) -> etree._Element:
    root = etree.fromstring(xml)
    for include in root.iterfind(".//xop:Include", NSMAP):
        parent = include.getparent()
        assert parent is not None
        parent.remove(include)
        parent.text = base64.b64encode(b"<ClinicalDocument/>").decode()
    return root


def _assert_schema_valid(xml: bytes) -> None:
    envelope = _xop_decode(xml)
    soap = official_schema("soap/soap-1.2-envelope.xsd")
    assert soap.validate(envelope), soap.error_log
    body_child = envelope.find("S:Body/xdsb:ProvideAndRegisterDocumentSetRequest", NSMAP)
    assert body_child is not None
    xds = official_schema("schema/IHE/XDS.b_DocumentRepository.xsd")
    assert xds.validate(copy.deepcopy(body_child)), xds.error_log
    wsa = official_schema("wsa/ws-addr.xsd")
    for header in envelope.iterfind("S:Header/wsa:*", NSMAP):
        assert wsa.validate(copy.deepcopy(header)), (etree.QName(header).localname, wsa.error_log)


@pytest.mark.shared
@pytest.mark.parametrize("placement", list(LevelPlacement))
def test_request_is_schema_valid(placement: LevelPlacement) -> None:
    docs = [DocumentRef("Document01", content_id="1.abc@x.org"), DocumentRef("Doc2", inline=b"text")]
    _assert_schema_valid(_build(documents=docs, placement=placement))


@pytest.mark.shared
def test_request_with_metadata_writer_is_schema_valid() -> None:
    metadata = pytest.importorskip("xdr_edge.protocol.metadata")
    strategies = pytest.importorskip("tests.strategies")
    official_schema("schema/IHE/XDS.b_DocumentRepository.xsd")  # skip early when absent

    @given(strategies.submissions(max_entries=2))
    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def check(submission: object) -> None:
        element = metadata.write_submit_objects(submission)
        entries = submission.document_entries  # type: ignore[attr-defined]
        docs = [DocumentRef(e.entry_id, content_id=f"{i}.part@xdr-edge") for i, e in enumerate(entries)]
        xml = _build(submit_objects=element, documents=docs)
        _assert_schema_valid(xml)
        read = read_request_envelope(xml)
        assert [d.entry_id for d in read.documents] == [e.entry_id for e in entries]
        assert read.submit_objects is not None
        back = metadata.read_submit_objects(read.submit_objects)
        assert back.document_entries == tuple(entries)

    check()


# --- reading requests: a hand-written ETT-style template

TEMPLATE = f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="{S}" xmlns:wsa="{WSA}" xmlns:direct="{ns.DIRECT}">
  <soapenv:Header>
    {{level}}
    {{block}}
    <wsa:To soapenv:mustUnderstand="true">https://hisp.example.com/xdr</wsa:To>
    {{message_id}}
    {{action}}
    {{reply_to}}
    {{extra}}
  </soapenv:Header>
  <soapenv:Body>{{body}}</soapenv:Body>
</soapenv:Envelope>"""

INCLUDE = f'<xop:Include xmlns:xop="{ns.XOP}" href="cid:1.3293f2@apache.org"/>'

PARTS = {
    "level": "<direct:metadata-level>minimal</direct:metadata-level>",
    "block": (
        '<direct:addressBlock soapenv:role="urn:direct:addressing:destination" soapenv:relay="true">'
        "<direct:from>sender@ttpedge.sitenv.org</direct:from><direct:to>mailto:rcpt@hisp.example.com</direct:to>"
        "</direct:addressBlock>"
    ),
    "message_id": (
        '<wsa:MessageID soapenv:mustUnderstand="true">30f7b099-9fd8-4a4a-bf3a-1f4e6a3f0c01</wsa:MessageID>'
    ),
    "action": f'<wsa:Action soapenv:mustUnderstand="true">{ns.ACTION_PNR}</wsa:Action>',
    "reply_to": "",
    "extra": "",
    "body": (
        f'<xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="{ns.XDSB}">'
        f'<lcm:SubmitObjectsRequest xmlns:lcm="{ns.LCM}"/>'
        f'<xdsb:Document id="Document01">{INCLUDE}</xdsb:Document>'
        "</xdsb:ProvideAndRegisterDocumentSetRequest>"
    ),
}


def _template(**changes: str) -> bytes:
    return TEMPLATE.format(**{**PARTS, **changes}).encode()


def test_read_ett_style_request() -> None:
    read = read_request_envelope(_template())
    assert read.direct_from == DirectAddress("sender@ttpedge.sitenv.org")  # bare address accepted
    assert read.direct_to == (DirectAddress("rcpt@hisp.example.com"),)  # mailto: accepted
    assert read.level is MetadataLevel.MINIMAL and read.level_placement is LevelPlacement.TOP_LEVEL
    assert read.reply_to is None
    assert read.message_id == "30f7b099-9fd8-4a4a-bf3a-1f4e6a3f0c01"
    assert read.documents == (DocumentRef("Document01", content_id="1.3293f2@apache.org"),)
    assert {f.rule for f in read.findings} == {"wsa-message-id-bare", "wsa-reply-to-absent"}
    assert all(not f.is_error for f in read.findings)


def test_read_tolerates_foreign_headers_not_aimed_at_us() -> None:
    extra = (
        '<x:Trace xmlns:x="urn:x" soapenv:mustUnderstand="true" soapenv:role="urn:some:other:role"/>'
        '<y:Note xmlns:y="urn:y" soapenv:mustUnderstand="false"/>'
    )
    assert read_request_envelope(_template(extra=extra)).action == ns.ACTION_PNR


_WSSE_BLOCK = f'<wsse:Security xmlns:wsse="{ns.WSSE}" soapenv:mustUnderstand="true"><x/></wsse:Security>'


def test_a_mandatory_wsse_security_faults_unless_declared_understood() -> None:
    """Strict SOAP by default (Part 1 §5.2.3); an operator may accept RI-style senders' wsse:Security."""
    xml = _template(extra=_WSSE_BLOCK)
    with pytest.raises(RemoteProtocolError) as caught:
        read_request_envelope(xml)
    assert caught.value.fault_code == "MustUnderstand"
    read = read_request_envelope(xml, understood_headers={header_qname("wsse:Security")})
    assert read.action == ns.ACTION_PNR
    # Declaring one header understood does not let another mandatory one through.
    other = _template(extra=_WSSE_BLOCK + '<x:T xmlns:x="urn:x" soapenv:mustUnderstand="1"/>')
    with pytest.raises(RemoteProtocolError, match=r"\{urn:x\}T"):
        read_request_envelope(other, understood_headers={header_qname("wsse:Security")})


def test_faults_carry_the_readable_message_id_and_their_machine_readable_detail() -> None:
    """RelatesTo correlates even a fault; MustUnderstand names the block in env:NotUnderstood (SOAP 1.2 Part 1
    XDR and XDM for Direct Messaging §4.2, ITI TF-3 4.2.3.3.8); ActionNotSupported names the action in wsa:ProblemAction (WS-A SOAP binding §6)."""
    with pytest.raises(RemoteProtocolError) as caught:
        read_request_envelope(_template(extra=_WSSE_BLOCK))
    exc = caught.value
    assert exc.relates_to == "30f7b099-9fd8-4a4a-bf3a-1f4e6a3f0c01"
    xml = build_fault_envelope(Fault.from_error(exc), relates_to=exc.relates_to, message_id="urn:uuid:f")
    (nu,) = _xpath(xml, "/S:Envelope/S:Header/S:NotUnderstood")
    prefix, _, local = (nu.get("qname") or "").partition(":")
    assert (nu.nsmap[prefix], local) == (ns.WSSE, "Security")
    assert _xpath(xml, "/S:Envelope/S:Header/wsa:RelatesTo")[0].text == exc.relates_to

    action = "urn:ihe:iti:2007:RegistryStoredQuery"
    with pytest.raises(RemoteProtocolError) as caught:
        read_request_envelope(_template(action=f"<wsa:Action>{action}</wsa:Action>"))
    xml = build_fault_envelope(Fault.from_error(caught.value), relates_to=None, message_id="urn:uuid:f")
    assert [e.text for e in _xpath(xml, "//S:Detail/wsa:ProblemAction/wsa:Action")] == [action]


def test_an_envelope_with_more_elements_than_allowed_is_refused_before_parsing() -> None:
    """A few MB of empty elements would take GBs as a tree: refused by counting, before lxml builds one, as a
    Sender fault (400), not a size limit (413): the envelope is not too large, it holds too much structure."""
    filler = "<x:a/>" * (DEFAULT_XML_BUDGET.max_nodes + 1)
    xml = _template(extra=f'<x:Pad xmlns:x="urn:x">{filler}</x:Pad>')
    with pytest.raises(RemoteProtocolError, match=r"more than the \d+ allowed") as caught:
        read_request_envelope(xml)
    sparse = XmlBudget(bytes_per_node=1)  # only the absolute ceiling applies
    with pytest.raises(RemoteProtocolError, match=r"more than the 200000 allowed .*at most 200000"):
        read_request_envelope(xml, budget=sparse)
    assert not isinstance(caught.value, LimitExceeded)
    assert (caught.value.code, caught.value.fault_code) == ("xml-budget-exceeded", "Sender")
    within = _template(extra=f'<x:Pad xmlns:x="urn:x">{"<x:a/>" * 1000}</x:Pad>')
    assert read_request_envelope(within).action == ns.ACTION_PNR


def _short_name(number: int) -> str:
    """A distinct XML name per number, as short as base 23 makes it (``a`` to ``w``, then ``ba``, ...): no ``x``,
    so never a name starting with the reserved ``xml``."""
    letters = ""
    while True:
        number, digit = divmod(number, 23)
        letters = chr(ord("a") + digit) + letters
        if not number:
            return letters


@pytest.mark.parametrize(
    "flood",
    [
        # one element with many attributes, one with many namespace declarations, many small elements
        "<x:a " + " ".join(f'a{i}=""' for i in range(30_000)) + "/>",
        "<x:a " + " ".join(f'xmlns:{_short_name(i)}="u"' for i in range(30_000)) + "/>",
        "<x:a/>" * 30_000,
    ],
    ids=["attributes", "namespace-declarations", "elements"],
)
def test_every_kind_of_node_counts_against_the_budget(flood: str) -> None:
    """Elements, attributes and namespace declarations are counted together: 30,000 of any kind pass a budget
    of 40,000 nodes and fail one of 20,000; and a document denser than its budget allows for its size is
    refused whatever kind of node makes it dense."""
    xml = _template(extra=f'<x:Pad xmlns:x="urn:x">{flood}</x:Pad>')
    roomy = XmlBudget(max_nodes=40_000, bytes_per_node=1)
    assert read_request_envelope(xml, budget=roomy).action == ns.ACTION_PNR
    tight = XmlBudget(max_nodes=20_000, bytes_per_node=1)
    with pytest.raises(RemoteProtocolError, match="too much structure") as caught:
        read_request_envelope(xml, budget=tight)
    assert caught.value.code == "xml-budget-exceeded"
    dense = XmlBudget(bytes_per_node=64, free_nodes=1_000)  # allows one node per 64 bytes
    with pytest.raises(RemoteProtocolError, match="one per 64 bytes beyond the first 1000"):
        read_request_envelope(xml, budget=dense)


def test_a_real_envelope_is_far_within_the_budget_for_its_size() -> None:
    """The budget leaves real envelopes a wide margin: one node per 37 bytes is typical, 16 is allowed."""
    xml = _template()
    nodes = xml.count(b"<") - xml.count(b"</") + xml.count(b"=")
    assert len(xml) / nodes > 2 * DEFAULT_XML_BUDGET.bytes_per_node
    assert parse(xml, budget=XmlBudget(max_nodes=nodes, free_nodes=1, bytes_per_node=1)) is not None
    with pytest.raises(RemoteProtocolError, match="too much structure"):
        parse(xml, budget=XmlBudget(max_nodes=nodes - 1, free_nodes=1, bytes_per_node=1))


@pytest.mark.parametrize("field", ["max_nodes", "bytes_per_node", "free_nodes"])
def test_a_budget_needs_positive_whole_numbers(field: str) -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=field):
            XmlBudget(**{field: bad})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "message_id",
    ["urn:uuid:1\nrequest practice=practice-b outcome=stored", "urn:uuid:a b", "x" * 1025, "urn:x\u0085y"],
)
def test_a_message_id_that_is_not_a_uri_is_an_invalid_addressing_header(message_id: str) -> None:
    xml = _template(message_id=f'<wsa:MessageID soapenv:mustUnderstand="true">{message_id}</wsa:MessageID>')
    with pytest.raises(RemoteProtocolError) as caught:
        read_request_envelope(xml)
    assert caught.value.fault_subcode == "wsa:InvalidAddressingHeader"
    assert caught.value.location == "S:Header/wsa:MessageID"
    assert caught.value.relates_to is None  # an unusable id is not echoed back


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("wsse:Security", f"{{{ns.WSSE}}}Security"),
        (" {urn:x}T ", "{urn:x}T"),
        ("direct:addressBlock", f"{{{ns.DIRECT}}}addressBlock"),
    ],
)
def test_header_qname_forms(text: str, expected: str) -> None:
    assert header_qname(text) == expected


@pytest.mark.parametrize("text", ["Security", "foo:Security", "{urn:x}", "{}T", "wsse:1bad", "{urn:x"])
def test_header_qname_rejects_what_it_cannot_resolve(text: str) -> None:
    with pytest.raises(ConfigurationError, match="neither"):
        header_qname(text)


def test_read_inline_document() -> None:
    body = PARTS["body"].replace(INCLUDE, "aGVs\n bG8=")
    read = read_request_envelope(_template(body=body))
    assert read.documents == (DocumentRef("Document01", inline=b"hello"),)


def _fails(xml: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        read_request_envelope(xml)
    return info.value


def test_invalid_addresses_are_error_findings_not_faults() -> None:
    """our practice-binding rule: the receiver answers with a Failure that reports this next to every other problem."""
    block = PARTS["block"].replace("sender@ttpedge.sitenv.org", "#DIRECT_FROM#")
    block = block.replace(
        "</direct:addressBlock>", "<direct:to>not an address</direct:to></direct:addressBlock>"
    )
    read = read_request_envelope(_template(block=block))
    assert read.direct_from is None
    assert read.direct_to == (DirectAddress("rcpt@hisp.example.com"),)  # the valid recipient is kept
    errors = [f for f in read.findings if f.is_error]
    assert [(f.code, f.rule, f.location) for f in errors] == [
        ("XDSRepositoryMetadataError", "direct-bad-address", "S:Header/direct:addressBlock/direct:from"),
        ("XDSRepositoryMetadataError", "direct-bad-address", "S:Header/direct:addressBlock/direct:to[2]"),
    ]
    assert read.documents == (DocumentRef("Document01", content_id="1.3293f2@apache.org"),)  # body still read


def test_warnings_carry_their_header_family_not_a_fault_code() -> None:
    read = read_request_envelope(_template(level="", block=""))
    codes = {f.rule: f.code for f in read.findings}
    assert all(not f.is_error for f in read.findings)
    assert codes == {
        "wsa-message-id-bare": WSA_WARNING,
        "wsa-reply-to-absent": WSA_WARNING,
        "direct-block-absent": DIRECT_WARNING,
        "direct-level-absent": DIRECT_WARNING,
    }
    assert WSA_WARNING == "WS-Addressing" and DIRECT_WARNING == "DirectAddressing"
    body = PARTS["body"].replace(
        "</xdsb:ProvideAndRegisterDocumentSetRequest>",
        "<x xmlns='urn:x'/></xdsb:ProvideAndRegisterDocumentSetRequest>",
    )
    extra = read_request_envelope(_template(body=body)).findings
    assert [(f.code, f.rule) for f in extra if f.rule.startswith("xdsb")] == [
        (BODY_WARNING, "xdsb-unexpected-element")
    ]


ERROR_CASES: list[tuple[str, bytes, str, str | None, str]] = [
    ("not well-formed", _template()[:-40], "Sender", None, "not well-formed"),
    (
        "doctype",
        b'<!DOCTYPE x [<!ENTITY a "b">]>' + _template().split(b"?>", 1)[1],
        "Sender",
        None,
        "DOCTYPE",
    ),
    ("soap 1.1", _template().replace(S.encode(), ns.SOAP11.encode()), "VersionMismatch", None, "SOAP 1.1"),
    ("not an envelope", b'<x:Other xmlns:x="urn:x"/>', "VersionMismatch", None, "Other"),
    (
        "header namespace",
        _template().replace(b"<soapenv:Header>", b"<Header>").replace(b"</soapenv:Header>", b"</Header>"),
        "Sender",
        None,
        "S:Envelope/Header",
    ),
    (
        "order",
        TEMPLATE.replace("<soapenv:Body>{body}</soapenv:Body>", "")
        .replace("<soapenv:Header>", "<soapenv:Body>{body}</soapenv:Body><soapenv:Header>")
        .format(**PARTS)
        .encode(),
        "Sender",
        None,
        "S:Header must come before S:Body",
    ),
    (
        "two headers",
        _template().replace(b"<soapenv:Body>", b"<soapenv:Header/><soapenv:Body>"),
        "Sender",
        None,
        "more than one S:Header",
    ),
    ("empty body", _template(body=""), "Sender", None, "exactly one child"),
    ("two body children", _template(body=PARTS["body"] * 2), "Sender", None, "exactly one child"),
    ("wrong body child", _template(body='<x:Other xmlns:x="urn:x"/>'), "Sender", None, "S:Body/{urn:x}Other"),
    (
        "no action",
        _template(action=""),
        "Sender",
        "wsa:MessageAddressingHeaderRequired",
        "S:Header/wsa:Action",
    ),
    (
        "no message id",
        _template(message_id=""),
        "Sender",
        "wsa:MessageAddressingHeaderRequired",
        "wsa:MessageID",
    ),
    (
        "two message ids",
        _template(extra=PARTS["message_id"]),
        "Sender",
        "wsa:InvalidAddressingHeader",
        "S:Header/wsa:MessageID",
    ),
    (
        "unknown action",
        _template(action="<wsa:Action>urn:ihe:iti:2007:RetrieveDocumentSet</wsa:Action>"),
        "Sender",
        "wsa:ActionNotSupported",
        "S:Header/wsa:Action",
    ),
    (
        "not understood",
        _template(extra='<wsse:Security xmlns:wsse="urn:wsse" soapenv:mustUnderstand="true"/>'),
        "MustUnderstand",
        None,
        "{urn:wsse}Security",
    ),
    (
        "not understood, role next",
        _template(extra=f'<x:T xmlns:x="urn:x" soapenv:mustUnderstand="1" soapenv:role="{S}/role/next"/>'),
        "MustUnderstand",
        None,
        "{urn:x}T",
    ),
    (
        "bad level",
        _template(level="<direct:metadata-level>full</direct:metadata-level>"),
        "Sender",
        None,
        "S:Header/direct:metadata-level",
    ),
    (
        "levels disagree",
        _template(
            block=PARTS["block"].replace(
                "</direct:addressBlock>",
                "<direct:metadata-level>XDS</direct:metadata-level></direct:addressBlock>",
            )
        ),
        "Sender",
        None,
        "disagrees",
    ),
    (
        "two address blocks",
        _template(extra=PARTS["block"]),
        "Sender",
        None,
        "direct:addressBlock appears more",
    ),
    (
        "non-cid include",
        _template(body=PARTS["body"].replace("cid:1.3293f2@apache.org", "http://evil.example/x")),
        "Sender",
        None,
        "must be a cid: URL",
    ),
    (
        "bad base64",
        _template(body=PARTS["body"].replace(INCLUDE, "@@@")),
        "Sender",
        None,
        "base64",
    ),
]


@pytest.mark.parametrize(
    ("xml", "code", "subcode", "names"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_read_request_faults(xml: bytes, code: str, subcode: str | None, names: str) -> None:
    exc = _fails(xml)
    assert exc.fault_code == code
    assert exc.fault_subcode == subcode
    assert names in str(exc)
    fault = Fault.from_error(exc)
    assert (fault.code, fault.subcode) == (code, subcode)


# --- reference samples


@pytest.mark.shared
@pytest.mark.parametrize(
    ("sample", "code", "subcode", "names"),
    [
        ("ett/negative_bad_soap.xml", "Sender", None, "S:Envelope/Header"),
        ("ett/negative_bad_soap_body.xml", "Sender", None, "{http://www.w3.org/2005/03/soap-envelope}Body"),
        (
            "nist/soap-noaction-pnr.xml",
            "Sender",
            "wsa:MessageAddressingHeaderRequired",
            "S:Header/wsa:Action",
        ),
        ("nist/soap-pnr-soap-order.xml", "Sender", None, "S:Header must come before S:Body"),
    ],
)
def test_negative_samples(sample: str, code: str, subcode: str | None, names: str) -> None:
    exc = _fails(_sample(sample))
    assert (exc.fault_code, exc.fault_subcode) == (code, subcode)
    assert names in str(exc)


_ETT_VALUES = {
    b"#DIRECT_FROM#": b"a@b.org",
    b"#DIRECT_TO#": b"c@d.org",
    b"#WSA_TO#": b"https://x",
    b"#MESSAGE_ID#": b"urn:uuid:0d2f3c1e-1111-4222-8333-944455556666",
    b"#UNIQUE_ID_SS#": b"1.2.3.4",
}


@pytest.mark.shared
@pytest.mark.parametrize(
    ("sample", "level"),
    [
        ("ett/Xdr_minimal_metadata_only.xml", MetadataLevel.MINIMAL),
        ("ett/Xdr_full_metadata_only.xml", MetadataLevel.XDS),
    ],
)
def test_ett_templates_read_fine(sample: str, level: MetadataLevel) -> None:
    xml = _sample(sample)
    for placeholder, value in _ETT_VALUES.items():
        xml = xml.replace(placeholder, value)
    read = read_request_envelope(xml)
    assert read.level is level and read.level_placement is LevelPlacement.TOP_LEVEL
    assert read.direct_from == DirectAddress("a@b.org") and read.direct_to == (DirectAddress("c@d.org"),)
    assert read.to == "https://x"
    assert read.submit_objects is not None
    assert [d.entry_id for d in read.documents] == ["Document01"]
    assert read.documents[0].content_id == "1.3293f28762856bdafcf446f2a6f4a61d95a95d0ad1177f20@apache.org"
    assert {f.rule for f in read.findings} == {"wsa-reply-to-absent"}


# --- replies


def test_response_envelope_round_trip() -> None:
    resp = RegistryResponse.failure([RegistryErrorEntry("XDSMissingDocument", "no part for Document01")])
    xml = build_response_envelope(
        write_registry_response(resp), relates_to="urn:uuid:req", message_id="urn:uuid:resp"
    )
    (action,) = _xpath(xml, "/S:Envelope/S:Header/wsa:Action")
    assert action.text == ns.ACTION_PNR_RESPONSE and action.get(MU) == "true"
    read = read_response_envelope(xml)
    assert (read.action, read.relates_to, read.message_id) == (
        ns.ACTION_PNR_RESPONSE,
        "urn:uuid:req",
        "urn:uuid:resp",
    )
    assert read.fault is None and read.body is not None
    assert read_registry_response(read.body) == (resp, [])


#: WS-Addressing 1.0 SOAP Binding §6: the faults WS-Addressing defines carry .../addressing/fault, the others
#: .../addressing/soap/fault.
@pytest.mark.parametrize(
    ("fault", "wanted_action"),
    [
        (
            Fault(
                "Sender",
                "S:Header/wsa:Action is missing",
                "wsa:MessageAddressingHeaderRequired",
                "S:Header/wsa:Action",
            ),
            ns.ACTION_WSA_FAULT,
        ),
        (Fault("Sender", "unknown action", "wsa:ActionNotSupported", "urn:x:action"), ns.ACTION_WSA_FAULT),
        (
            Fault(
                "Sender", "bad ReplyTo", f"{{{ns.WSA}}}InvalidAddressingHeader", None, "wsa:InvalidAddress"
            ),
            ns.ACTION_WSA_FAULT,
        ),
        (Fault("VersionMismatch", "SOAP 1.1 envelope"), ns.ACTION_FAULT),
        (Fault("MustUnderstand", "wsse:Security not understood"), ns.ACTION_FAULT),
        (Fault("Sender", "document part missing"), ns.ACTION_FAULT),
        (Fault("Receiver", "storage unavailable", "{urn:xdr-edge:test}Busy"), ns.ACTION_FAULT),
    ],
)
def test_fault_envelope_round_trip(fault: Fault, wanted_action: str) -> None:
    xml = build_fault_envelope(fault, relates_to="urn:uuid:req", message_id="urn:uuid:f")
    (action,) = _xpath(xml, "/S:Envelope/S:Header/wsa:Action")
    assert action.text == wanted_action
    assert read_response_envelope(xml).action == wanted_action
    (text,) = _xpath(xml, "//S:Fault/S:Reason/S:Text")
    assert text.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    read = read_response_envelope(xml)
    assert read.relates_to == "urn:uuid:req" and read.body is None
    assert read.fault is not None
    assert (read.fault.code, read.fault.reason) == (fault.code, fault.reason)
    assert read.fault.subcode == ((fault.subcode or "").replace(f"{{{ns.WSA}}}", "wsa:") or None)
    if fault.subcode == "wsa:MessageAddressingHeaderRequired":
        assert read.fault.detail == "wsa:Action"  # wsa:ProblemHeaderQName
    elif fault.subcode == "wsa:ActionNotSupported":
        assert read.fault.detail == "urn:x:action"  # wsa:ProblemAction/wsa:Action
    else:
        assert read.fault.detail is None


@pytest.mark.shared
def test_fault_and_response_envelopes_are_schema_valid() -> None:
    soap = official_schema("soap/soap-1.2-envelope.xsd")
    fault = Fault("Sender", "missing", "wsa:MessageAddressingHeaderRequired", "S:Header/wsa:MessageID")
    for xml in (
        build_fault_envelope(fault, relates_to=None, message_id="urn:uuid:f"),
        build_response_envelope(
            write_registry_response(RegistryResponse.success()), relates_to="a", message_id="b"
        ),
    ):
        assert soap.validate(etree.fromstring(xml)), soap.error_log


def test_fault_from_error_and_http_status() -> None:
    exc = _fails(_template(message_id=""))
    fault = Fault.from_error(exc)
    assert fault.detail == "S:Header/wsa:MessageID" and "wsa:MessageID" in fault.reason
    xml = build_fault_envelope(fault, relates_to=None, message_id="urn:uuid:f")
    assert _xpath(xml, "//wsa:RelatesTo") == []
    assert _xpath(xml, "//S:Detail/wsa:ProblemHeaderQName")[0].text == "wsa:MessageID"
    assert fault_http_status(fault) == 400
    assert fault_http_status(Fault("Receiver", "x")) == 500
    # SOAP 1.2 Part 2 Table 23: only env:Sender maps to 400.
    assert fault_http_status(Fault("VersionMismatch", "x")) == 500
    assert fault_http_status(Fault("MustUnderstand", "x")) == 500
    with pytest.raises(LocalProtocolError, match=r"unknown SOAP 1\.2 fault code"):
        build_fault_envelope(Fault("Client", "x"), relates_to=None, message_id="m")


@pytest.mark.shared
def test_read_nist_response() -> None:
    read = read_response_envelope(_sample("nist/soap-pnr-resp.xml"))
    assert read.action == ns.ACTION_PNR_RESPONSE
    assert read.relates_to == "urn:uuid:6d296e90-e5dc-43d0-b455-7c1f3eb35d83"
    assert read.message_id is None and read.fault is None and read.body is not None
    resp, findings = read_registry_response(read.body)
    assert resp.is_success and findings == []


@pytest.mark.shared
def test_read_nist_failure_response() -> None:
    read = read_response_envelope(_sample("nist/Bill-msg.txt"))
    assert read.relates_to == "urn:uuid:A0333E98F34A9C1C761524505193337"
    assert read.body is not None
    resp, findings = read_registry_response(read.body)
    assert resp.is_failure and len(resp.errors) >= 5 and findings == []
    assert {e.error_code for e in resp.errors} == {"XDSRegistryMetadataError"}


@pytest.mark.shared
def test_read_ett_fault_over_http() -> None:
    raw = _sample("ett/sample_response.txt")
    body = raw[raw.index(b"<S:Envelope") :]
    read = read_response_envelope(body)
    assert read.body is None and read.fault is not None
    assert read.fault.code == "Sender" and read.fault.subcode is None
    assert "MTOM is required" in read.fault.reason


@pytest.mark.shared
@pytest.mark.parametrize("sample", ["directri/response.xml", "nist/regresp-fail-noerr.xml"])
def test_read_bare_registry_response(sample: str) -> None:
    read = read_response_envelope(_sample(sample))
    assert read.body is not None and read.action is None and read.fault is None
    resp, _ = read_registry_response(read.body)
    assert resp.status.startswith("urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:")


def test_read_response_rejects_soap11() -> None:
    xml = f'<e:Envelope xmlns:e="{ns.SOAP11}"><e:Body/></e:Envelope>'.encode()
    with pytest.raises(RemoteProtocolError, match=r"SOAP 1\.1") as info:
        read_response_envelope(xml)
    assert info.value.fault_code == "VersionMismatch"


def test_request_reader_parse_is_hardened() -> None:
    exc = _fails(b'<?xml version="1.0"?><!DOCTYPE Envelope SYSTEM "http://evil.example/x.dtd"><Envelope/>')
    assert exc.code == "doctype-forbidden"
    assert parse(_template()).tag == f"{{{S}}}Envelope"


# --- the zeep side


def test_zeep_reads_only_our_wsdl_directory() -> None:
    from xdr_edge.protocol.soap import request_writer

    transport = request_writer._WsdlOnlyTransport()  # type: ignore[no-untyped-call]
    assert b"ProvideAndRegisterDocumentSet-b" in transport.load(str(request_writer.wsdl_path()))
    with pytest.raises(LocalProtocolError, match="may only load files"):
        transport.load("/etc/hostname")
    with pytest.raises(LocalProtocolError, match="must not perform HTTP"):
        transport.post("https://example.org/", b"", {})
    wsdl = etree.parse(str(request_writer.wsdl_path()))
    # A wsaw:Action in the WSDL makes zeep add its own WS-A headers (duplicates).
    assert not wsdl.xpath("//@*[local-name()='Action']")


def test_large_inline_document_is_read_with_huge_tree() -> None:
    data = bytes(range(256)) * (31 * 1024)  # ~7.9 MB: its base64 text node is over libxml2's 10 MB cap
    xml = _build(documents=[DocumentRef("Document01", inline=data)])
    read = read_request_envelope(xml)
    assert read.documents[0].inline == data
