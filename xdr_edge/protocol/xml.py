"""The one hardened lxml parser used everywhere in xdr-edge.

SOAP 1.2 forbids a document type declaration (SOAP 1.2 Part 1 §5), and an XML parser that resolves entities or
fetches DTDs is the classic XXE hole. Modern libxml2 already stops entity amplification, but still *accepts* a
DOCTYPE, so we reject any document that has one, never touch the network, and keep libxml2's 10 MB text-node cap
(``huge_tree`` off): documents travel as MTOM parts, never as giant text nodes, except base64 inline requests,
which are bounded by the request size limit and decoded through :func:`parse` with ``huge=True``.
"""

from __future__ import annotations

__all__ = ["parse", "qname", "readable_elements", "tostring"]

from collections.abc import Iterator
from typing import Any

from lxml import etree

from xdr_edge.protocol.errors import LimitExceeded, RemoteProtocolError


def _parser(huge: bool) -> etree.XMLParser:
    # A parser object is not thread-safe to share while parsing; they are cheap, so make one per call.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        remove_comments=False,
        remove_pis=False,
        huge_tree=huge,
    )


#: Most elements (counted as ``<`` characters, which bounds them from above) one document may have. A tree
#: costs about 130 bytes per element, so a few MB of ``<a/>`` would otherwise take GBs; real envelopes and
#: responses have thousands (about 150 per DocumentEntry), and inline base64 documents contain no ``<``.
MAX_ELEMENTS = 500_000


def parse(
    data: bytes, *, what: str = "XML", huge: bool = False, max_elements: int = MAX_ELEMENTS
) -> etree._Element:
    """Parse ``data`` into an element, rejecting DOCTYPEs and malformed XML with a precise error.

    ``what`` names the thing being parsed in error messages ("SOAP envelope", "RegistryResponse", a file name).
    Errors are :class:`RemoteProtocolError` with fault code ``Sender``: a peer's malformed XML is answered with
    a SOAP fault (SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3); more than ``max_elements`` markup starts is :class:`LimitExceeded`, checked
    before any tree is built.
    """
    markup = data.count(b"<")
    if markup > max_elements:
        raise LimitExceeded(
            f"{what} has {markup} markup starts, more than the {max_elements} elements allowed",
            code="too-many-elements",
            location=what,
            fault_code="Sender",
        )
    try:
        root = etree.fromstring(data, _parser(huge))
    except etree.XMLSyntaxError as exc:
        line = getattr(exc, "lineno", None)
        where = f"{what}, line {line}" if line else what
        raise RemoteProtocolError(
            f"{what} is not well-formed XML: {exc.msg}",
            code="malformed-xml",
            location=where,
            fault_code="Sender",
        ) from exc
    except ValueError as exc:  # e.g. unicode string with encoding declaration
        raise RemoteProtocolError(
            f"{what} could not be parsed: {exc}", code="malformed-xml", location=what, fault_code="Sender"
        ) from exc
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lack DocInfo.doctype
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise RemoteProtocolError(
            f"{what} contains a DOCTYPE declaration, which SOAP 1.2 forbids",
            code="doctype-forbidden",
            location=what,
            fault_code="Sender",
        )
    return root


#: How much :func:`readable_elements` feeds at a time: a malformed byte stops it within this distance.
_PREFIX_STEP = 1024


def readable_elements(data: bytes) -> Iterator[etree._Element]:
    """Each element of ``data`` as its end tag is read, for as long as the bytes are well-formed XML.

    Why: a request refused for its framing, its size or a defect further on still starts with a readable SOAP
    header, and a fault should say which request it answers (its MessageID). ``data`` may be cut anywhere; reading
    stops silently at the first malformed byte or at the end. A document with a DOCTYPE yields nothing, and the
    parser settings are those of :func:`parse` (no entities, no network). The elements belong to a partial tree:
    read what is needed as they come.
    """
    if b"<!DOCTYPE" in data:
        return
    parser = etree.XMLPullParser(
        events=("end",), resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    for offset in range(0, len(data), _PREFIX_STEP):
        try:
            parser.feed(data[offset : offset + _PREFIX_STEP])
        except etree.XMLSyntaxError:
            return
        for _event, element in parser.read_events():
            if isinstance(element, etree._Element):  # "end" events carry elements only
                yield element


def qname(ns: str, local: str) -> str:
    """Clark notation ``{ns}local``."""
    return f"{{{ns}}}{local}"


def tostring(element: etree._Element) -> bytes:
    """Serialize as UTF-8 with an XML declaration; no pretty printing (bytes on the wire stay predictable)."""
    return etree.tostring(element, encoding="UTF-8", xml_declaration=True)
