"""Tests for xdr_edge.protocol.mediatype: Content-Type values read from the octets of a header field (RFC 9110
§8.3.1 and §5.6, RFC 2045 §5.1), compared as media types, and written back in canonical form."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdr_edge.protocol import ns
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.mediatype import MediaType, _Reader, _well_formed, parse_content_type

METRO = (
    b'multipart/related;start="<rootpart*0b08@example.jaxws.sun.com>";type="application/xop+xml";'
    b'boundary="uuid:0b08";start-info="application/soap+xml;action=\\"urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b\\""'
)


def test_metro_content_type_from_its_octets() -> None:
    media = MediaType.parse(METRO)
    assert media.essence == "multipart/related"
    assert [name for name, _ in media.params] == ["start", "type", "boundary", "start-info"]
    assert media.param("boundary") == "uuid:0b08"  # quoted because of the colon
    assert media.param("start") == "<rootpart*0b08@example.jaxws.sun.com>"
    start_info = media.param_media_type("start-info")
    assert start_info == MediaType("application", "soap+xml", (("action", ns.ACTION_PNR),))
    assert start_info is not None and start_info.matches("application/soap+xml")
    assert media.param("action") is None  # Metro states the action only inside start-info


def test_quotes_whitespace_case_and_empty_parameters() -> None:
    media = MediaType.parse(
        b' Multipart/Related ;BOUNDARY=abc ; type = "application/xop+xml";start="<a;b@x>"; '
        b'x="q\\"uote" ; empty="";; '
    )
    assert media.essence == "multipart/related"
    assert dict(media.params) == {
        "boundary": "abc",
        "type": "application/xop+xml",
        "start": "<a;b@x>",  # a ; inside quotes is part of the value
        "x": 'q"uote',
        "empty": "",
    }
    assert media.param("BOUNDARY") == media.param("boundary") == "abc"
    assert parse_content_type("text/plain") == ("text/plain", {})


def test_values_keep_their_case_and_names_do_not() -> None:
    media = MediaType.parse(b"Text/XML; CharSet=UTF-8; Boundary=AbC")
    assert (media.type, media.subtype) == ("text", "xml")
    assert media.params == (("charset", "UTF-8"), ("boundary", "AbC"))


def test_obs_text_in_values_is_read_as_latin_1() -> None:
    media = MediaType.parse(b'text/plain; name="caf\xe9"; other=\xe9t\xe9')
    assert media.param("name") == "caf\u00e9"
    assert media.param("other") == "\u00e9t\u00e9"
    assert MediaType.parse(media.__str__().encode("latin-1")) == media


def test_unquoted_values_that_are_not_tokens_are_recovered() -> None:
    """Axis2 and others write ``type=application/xop+xml`` unquoted; RFC 9110 §2.2 lets us read it."""
    media = MediaType.parse(b"multipart/related; type=application/xop+xml; boundary=----=_Part_0_1.2")
    assert media.param("type") == "application/xop+xml"
    assert media.param("boundary") == "----=_Part_0_1.2"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"", "no type/subtype"),
        (b"text", "no type/subtype"),
        (b"text/", "no type/subtype"),
        (b"/plain", "no type/subtype"),
        (b"text / plain", "no type/subtype"),
        (b"a b/c", "no type/subtype"),
        (b"text/plain; novalue", "not name=value"),
        (b"text/plain; =x", "not name=value"),
        (b"text/plain; a=", "no value"),
        (b"text/plain; a=b c", "unexpected"),
        (b'text/plain; a="x"y', "unexpected"),
        (b"text/plain x", "unexpected"),
        (b'text/plain; a="open', "unterminated"),
        (b'text/plain; a="ends in backslash\\', "unterminated"),
        (b"text/plain; a=1; A=2", "more than once"),
        (b"text/plain; a=\x00", "control character"),
        (b"text/plain;\r\n a=1", "control character"),
        (b"text/plain; a=\x7f", "control character"),
    ],
)
def test_malformed_values_are_refused_naming_why(value: bytes, why: str) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        MediaType.parse(value, where="MIME part 2 Content-Type")
    assert why in err.value.message
    assert err.value.code == "malformed-media-type"
    assert err.value.fault_code == "Sender"
    assert err.value.location == "MIME part 2 Content-Type"
    assert MediaType.parse_or_none(value) is None


def test_a_str_with_characters_no_header_can_carry_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="cannot appear in a header field"):
        MediaType.parse('text/plain; name="\u20ac"')


def test_long_values_are_cut_in_messages() -> None:
    with pytest.raises(RemoteProtocolError) as err:
        MediaType.parse("x" * 5000)
    assert len(err.value.message) < 400


def test_matches_compares_essence_only() -> None:
    media = MediaType.parse("Application/SOAP+XML; charset=utf-8; action=urn:a")
    assert media.matches("application/soap+xml")
    assert media.matches("APPLICATION/soap+xml; action=urn:other")
    assert media.matches(MediaType("application", "soap+xml"))
    assert not media.matches("application/xop+xml")
    assert not media.matches("text/xml")


def test_param_media_type_reads_nested_media_types_and_names_the_parameter() -> None:
    media = MediaType.parse('application/xop+xml; type="application/soap+xml; action=\\"urn:a\\""')
    inner = media.param_media_type("type")
    assert inner is not None and inner.param("action") == "urn:a"
    assert media.param_media_type("start-info") is None
    broken = MediaType.parse('multipart/related; start-info="application"')
    with pytest.raises(RemoteProtocolError) as err:
        broken.param_media_type("start-info")
    assert err.value.location == "Content-Type start-info parameter"


def test_parse_or_none() -> None:
    assert MediaType.parse_or_none(None) is None
    assert MediaType.parse_or_none("garbage") is None
    assert MediaType.parse_or_none("text/xml") == MediaType("text", "xml")


def test_str_is_canonical() -> None:
    media = MediaType.parse(b'TEXT/Plain;charset="utf-8";   x="a b";y="q\\"\\\\"')
    assert str(media) == 'text/plain; charset=utf-8; x="a b"; y="q\\"\\\\"'


@pytest.mark.parametrize(
    ("type_", "subtype", "params"),
    [
        ("Text", "plain", ()),
        ("text", "", ()),
        ("text", "plain", (("Charset", "x"),)),
        ("text", "plain", (("a", "1"), ("a", "2"))),
        ("te xt", "plain", ()),
    ],
)
def test_constructing_an_invalid_value_is_a_programming_error(
    type_: str, subtype: str, params: tuple[tuple[str, str], ...]
) -> None:
    with pytest.raises(ValueError):
        MediaType(type_, subtype, params)


# ---------------------------------------------------------------------------------------------------------
# Properties over octets
# ---------------------------------------------------------------------------------------------------------

_TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
_tokens = st.text(alphabet=_TCHAR, min_size=1, max_size=12)
# Parameter values: any octet a quoted string can carry (HTAB, SP, VCHAR, obs-text), as latin-1 text.
_values = st.text(alphabet=st.sampled_from([chr(c) for c in [9, *range(0x20, 0x7F), *range(0x80, 0x100)]]))


@st.composite
def media_types(draw: st.DrawFn) -> MediaType:
    names = draw(st.lists(_tokens, unique=True, max_size=6))
    return MediaType(draw(_tokens), draw(_tokens), tuple((n, draw(_values)) for n in names))


@given(media_types())
def test_writing_then_reading_octets_is_the_identity(media: MediaType) -> None:
    assert MediaType.parse(str(media).encode("latin-1")) == media


@given(media_types(), st.data())
def test_case_and_whitespace_do_not_change_the_value(media: MediaType, data: st.DataObject) -> None:
    def case(text: str) -> str:
        return "".join(c.upper() if data.draw(st.booleans()) else c for c in text)

    ows = st.sampled_from(["", " ", "\t", "  "])
    written = case(media.essence) + "".join(
        f"{data.draw(ows)};{data.draw(ows)}{case(name)}={_quoted(value)}" for name, value in media.params
    )
    assert MediaType.parse(written.encode("latin-1")) == media


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(st.binary(max_size=200))
def test_any_octets_give_a_media_type_or_a_sender_error(raw: bytes) -> None:
    try:
        media = MediaType.parse(raw)
    except RemoteProtocolError as exc:
        assert exc.code == "malformed-media-type" and exc.fault_code == "Sender"
    else:
        assert MediaType.parse(str(media).encode("latin-1")) == media


@given(st.binary(max_size=60), st.binary(max_size=60))
def test_any_octets_inside_start_info_are_read_or_refused(head: bytes, tail: bytes) -> None:
    raw = b'multipart/related; boundary=b; start-info="' + head.replace(b'"', b"") + b'"' + tail
    try:
        media = MediaType.parse(raw)
        media.param_media_type("start-info")
    except RemoteProtocolError as exc:
        assert exc.code == "malformed-media-type"


_PIECES = st.sampled_from(
    [*'ab/;= \t"\\\x01\x7f\xe9xX-+.', "multipart", "related", "type", "start-info", "Type", '"a;b"', '\\"']
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(_PIECES, max_size=16).map("".join))
def test_the_quick_reading_agrees_with_the_full_reader(text: str) -> None:
    """A value is read in a few regular-expression matches when it is well-formed, and by the reader that says
    what is wrong otherwise: whenever the quick reading gives an answer, it is the reader's, and every value
    the reader accepts (with distinct parameters) is read the quick way."""
    quick = _well_formed(text)
    try:
        full: MediaType | None = _Reader(text, "Content-Type").media_type()
    except RemoteProtocolError:
        full = None
    if quick is not None:
        assert quick == full
    elif full is not None:
        assert len({name for name, _ in full.params}) != len(full.params)
