"""What a peer sends and we quote back, or match: made safe for XML and short in one place (``xml.reply_text``,
used by every writer of our replies), told in our own neutral words when XML does not parse, and matched by
regular expressions that run in linear time."""

from __future__ import annotations

import itertools
import re

import pytest
from cryptography.x509.verification import VerificationError
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from tests.watchdog import must_finish_within
from xdr_edge.minting import CertificateAuthority
from xdr_edge.protocol import xml
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.findings import Severity
from xdr_edge.protocol.model import DirectAddress, is_oid
from xdr_edge.protocol.response import RegistryErrorEntry, RegistryResponse
from xdr_edge.protocol.soap import Fault
from xdr_edge.protocol.soap.request_reader import message_id_in_prefix
from xdr_edge.protocol.validate import checks
from xdr_edge.protocol.wire import build_reply, parse_response
from xdr_edge.protocol.xml import REPLY_TEXT_LIMIT, reply_text
from xdr_edge.registry.verify import _explain

# ----------------------------------------------------------------------------------------------------------
# reply_text


def _xml_can_hold(text: str) -> bool:
    element = etree.Element("a")
    try:
        element.text = text
        element.set("b", text)
    except ValueError:
        return False
    return etree.fromstring(etree.tostring(element)).text == (text or None)


@given(st.text(max_size=2000))
def test_any_text_becomes_text_xml_holds_within_the_limit(text: str) -> None:
    safe = reply_text(text)
    assert len(safe) <= REPLY_TEXT_LIMIT
    assert _xml_can_hold(safe)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=REPLY_TEXT_LIMIT))
def test_short_text_xml_holds_is_kept_as_it_is(text: str) -> None:
    if _xml_can_hold(text):
        assert reply_text(text) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("<a\x01>", "<a\\x01>"),
        ("\x00\x08\x0b\x0c\x1f", "\\x00\\x08\\x0b\\x0c\\x1f"),
        ("a\ufffeb\uffff", "a\\ufffeb\\uffff"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("tab\tline\nreturn\r", "tab\tline\nreturn\r"),
    ],
)
def test_characters_xml_cannot_hold_are_shown_escaped(text: str, shown: str) -> None:
    assert reply_text(text) == shown


def test_long_text_keeps_its_start_and_end() -> None:
    text = "xop:Include references cid:" + "A" * 10_000 + ", which is not a part of this package"
    safe = reply_text(text)
    assert len(safe) == REPLY_TEXT_LIMIT
    assert safe.startswith("xop:Include references cid:AAA") and safe.endswith("not a part of this package")
    assert " … " in safe


def test_escaping_that_makes_text_too_long_is_cut_again() -> None:
    safe = reply_text("\x01" * 400)  # 400 characters, 1600 once escaped
    assert len(safe) == REPLY_TEXT_LIMIT and safe.startswith("\\x01\\x01")


# ----------------------------------------------------------------------------------------------------------
# Every writer of our replies uses it


@pytest.mark.parametrize("mtom", [False, True])
def test_a_fault_quoting_control_characters_is_written_and_reads_back(mtom: bool) -> None:
    fault = Fault("Sender", "the start parameter <a\x01> names no MIME part " + "x" * 5000)
    reply = build_reply(fault, relates_to=None, mtom=mtom)
    parsed = parse_response(reply.content_type, reply.body)
    assert parsed.fault is not None and reply.status == 400
    assert parsed.fault.reason.startswith("the start parameter <a\\x01> names no MIME part")
    assert len(parsed.fault.reason) <= REPLY_TEXT_LIMIT


def test_fault_details_are_made_safe_too() -> None:
    fault = Fault("Sender", "unknown action", "wsa:ActionNotSupported", "urn:a\x02" + "b" * 2000)
    reply = build_reply(fault, relates_to=None, mtom=False)
    assert b"urn:a\\x02" in reply.body and b"b" * 1000 not in reply.body


def test_registry_errors_quoting_control_characters_are_written_and_read_back() -> None:
    failure = RegistryResponse.failure(
        [
            RegistryErrorEntry(
                "XDSMissingDocumentMetadata", "not referenced", Severity.ERROR, "MIME part <\x01>"
            ),
            RegistryErrorEntry("XDSMissingDocument", "cid:\x01\x1b" + "%" * 3000, Severity.ERROR, "x" * 3000),
        ]
    )
    reply = build_reply(failure, relates_to="urn:uuid:1", mtom=True)
    parsed = parse_response(reply.content_type, reply.body)
    assert parsed.registry_response is not None
    first, second = parsed.registry_response.errors
    assert first.location == "MIME part <\\x01>"
    assert (
        second.code_context.startswith("cid:\\x01\\x1b%%%") and len(second.code_context) <= REPLY_TEXT_LIMIT
    )
    assert second.location is not None and len(second.location) <= REPLY_TEXT_LIMIT


# ----------------------------------------------------------------------------------------------------------
# Neutral reasons of our own when XML does not parse

_LIBXML_WORDS = re.compile(r"XML_PARSE|libxml|xmlSAX|HUGE|Excessive|Premature|PCDATA|try ", re.IGNORECASE)


@pytest.mark.parametrize(
    ("data", "huge", "says"),
    [
        (b"<a>" * 300 + b"</a>" * 300, False, "beyond the XML parser's limits"),
        (b"<a>" * 300, False, "beyond the XML parser's limits"),
        (b"<a>x", True, "ends inside an element"),
        (b"<a></b>", True, "end tag does not match"),
        (b"<a>\x01</a>", True, "a character that XML 1.0 does not allow"),
        (b"<a>&nbsp;</a>", True, "not one of XML's predefined entities"),
        (b"<p:a/>", True, "namespace prefix is not declared"),
        (b"", True, "the document is empty"),
        (b"<a/><b/>", True, "content after the root element"),
        (b"<a x='1' x='2'/>", True, "the same attribute twice"),
    ],
)
def test_xml_that_does_not_parse_is_told_in_our_words(data: bytes, huge: bool, says: str) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        xml.parse(data, what="SOAP envelope", huge=huge)
    assert says in err.value.message and err.value.message.startswith("SOAP envelope ")
    assert not _LIBXML_WORDS.search(err.value.message), err.value.message
    assert err.value.location is not None and err.value.location.startswith("SOAP envelope, line 1")
    assert err.value.fault_code == "Sender"


def test_a_text_node_over_10_mb_is_told_in_our_words() -> None:
    """libxml2 says "Resource limit exceeded: Text node too long, try XML_PARSE_HUGE"; the peer reads ours."""
    with pytest.raises(RemoteProtocolError) as err:
        xml.parse(b"<a>" + b"x" * 10_500_000 + b"</a>", what="SOAP envelope")
    assert "beyond the XML parser's limits" in err.value.message
    assert not _LIBXML_WORDS.search(str(err.value))


# ----------------------------------------------------------------------------------------------------------
# Regular expressions matched against peer input: the possessive forms accept exactly what the former did

_FORMER_OID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
_FORMER_ADDRESS = re.compile(
    r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)
_FORMER_LANGUAGE = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")


def _strings(alphabet: str, longest: int) -> list[str]:
    return ["".join(p) for n in range(1, longest + 1) for p in itertools.product(alphabet, repeat=n)]


def test_is_oid_accepts_what_it_did() -> None:
    for text in _strings("01.9x", 6):
        assert is_oid(text) == bool(_FORMER_OID.match(text)), text


def test_direct_addresses_are_accepted_as_before() -> None:
    for text in _strings("a-.@ 9", 6):

        def accepted(value: str) -> bool:
            try:
                DirectAddress(value)
            except ValueError:
                return False
            return True

        assert accepted(text) == bool(_FORMER_ADDRESS.match(text.strip())), repr(text)


def test_language_codes_are_accepted_as_before() -> None:
    for text in [*_strings("aZ1-", 6), "abcdefgh-12345678", "abcdefghi", "en-US-x-twain"]:
        assert (checks._LANGUAGE.fullmatch(text) is not None) == bool(_FORMER_LANGUAGE.match(text)), text


@pytest.mark.parametrize(
    "text",
    [
        "1." * 200_000 + "x",
        "1" + ".1" * 2_000_000 + ".",
        "a@" + "a." * 2_000_000 + "!",
        "a@a" + "-" * 4_000_000 + "!",
    ],
)
def test_pathological_identifiers_are_refused(text: str) -> None:
    """The shapes that made the former patterns quadratic (0.56 s for 160 KB of "1.1.1...x", so about six minutes
    for these 4 MB): refused, and linearly so (a fifth of a second; benchmarks/bench_readers.py measures the
    scaling)."""
    with must_finish_within(30, "matching 4 MB against the OID and Direct address patterns"):
        assert not is_oid(text)
        with pytest.raises(ValueError, match="not a Direct address"):
            DirectAddress(text)


def test_the_certificate_a_chain_check_failed_at_is_named() -> None:
    """cryptography quotes the subject of the certificate where verification failed; the reason names it, and a
    subject made of a long run of blanks costs a linear scan (the former pattern searched it in quadratic time)."""
    leaf = CertificateAuthority.create("xdr-edge test CA").issue_client("client").cert
    where = "(encountered processing <Certificate(subject=<Name(CN=edge,O=Practice A)>, ...)>)"
    error = VerificationError(f"validation failed: required EKU not found {where}")
    assert (
        _explain(error, leaf)
        == "not a TLS client certificate: its extended key usage lacks clientAuth (at CN=edge,O=Practice A)"
    )
    blanks = VerificationError(
        "validation failed: something else" + " " * 4_000_000 + "(encountered processing"
    )
    with must_finish_within(30, "explaining a verification error holding 4 MB of blanks"):
        assert _explain(blanks, leaf).startswith("certificate chain rejected: something else")


@pytest.mark.parametrize(
    ("prefix", "found"),
    [
        (b"<S:Envelope xmlns:S='http://www.w3.org/2003/05/soap-envelope'><S:Header><rim:Value/>", None),
        (b"<x:Envelope><S:Header/></x:Envelope>", None),
        (
            b"<S:Envelope xmlns:S='http://www.w3.org/2003/05/soap-envelope' xmlns:wsa='http://www.w3.org/2005/08/"
            b"addressing'><S:Header><wsa:MessageID>urn:uuid:1</wsa:MessageID><rim:Value/></S:Header>",
            "urn:uuid:1",
        ),
    ],
)
def test_reading_a_prefix_stops_at_an_undeclared_namespace_prefix(prefix: bytes, found: str | None) -> None:
    """Namespaces in XML 1.0 §5: libxml2 reads past an unbound prefix and leaves a name lxml's QName refuses;
    readable_elements stops there, so the MessageID reader never meets one (it raised ValueError before)."""
    assert message_id_in_prefix(prefix) == found
    assert all(":" not in str(e.tag).rpartition("}")[2] for e in xml.readable_elements(prefix))
