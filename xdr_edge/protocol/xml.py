"""The one hardened lxml parser used everywhere in xdr-edge.

SOAP 1.2 forbids a document type declaration (SOAP 1.2 Part 1 §5), and an XML parser that resolves entities or
fetches DTDs is the classic XXE hole. Modern libxml2 already stops entity amplification, but still *accepts* a
DOCTYPE, so we reject any document that has one, never touch the network, and keep libxml2's 10 MB text-node cap
(``huge_tree`` off): documents travel as MTOM parts, never as giant text nodes, except base64 inline requests,
which are bounded by the request size limit and decoded through :func:`parse` with ``huge=True``. And we
count the structure a document would make libxml2 build before building it (:class:`XmlBudget`): limits on
depth and text size do not stop a flood of attributes or namespace declarations.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_XML_BUDGET",
    "REPLY_TEXT_LIMIT",
    "ElementTemplates",
    "XmlBudget",
    "not_xml_char",
    "parse",
    "qname",
    "readable_elements",
    "reply_text",
    "tostring",
]

import copy
import re
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from lxml import etree

from xdr_edge.protocol.errors import RemoteProtocolError


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


@dataclass(frozen=True)
class XmlBudget:
    """How much structure one document may make the parser build: elements, attributes and namespace
    declarations, counted together as *nodes*.

    Why: libxml2 keeps every node of a tree in memory, about 120 bytes per element and 200 per attribute or
    namespace declaration, while the markup for one takes 4 or 5 bytes (``<a/>``, `` a=""``). Without a
    budget, a 49 MiB envelope of 400,000 elements with 20 attributes each becomes a 2 GB tree, and one element
    with millions of attributes or namespace declarations does the same. Real ITI-41 envelopes carry about one
    node per 37 bytes (a 100-document XDS request: 16,700 nodes in 627 KB).

    A document may have at most ``max_nodes`` nodes, and beyond its first ``free_nodes`` at most one per
    ``bytes_per_node`` bytes on average. Together they bound the tree to about 250 bytes per node: never more
    than about 50 MB with the defaults, and never more than about 16 times the document's size (plus 2.5 MB).

    The count is taken on the bytes before any tree is built, so a refused document costs nothing but the
    count (a few milliseconds for 50 MB): every start tag begins with a ``<`` not followed by ``/``, and every
    attribute or namespace declaration has its ``=``. Both counts are upper bounds: a ``<`` in a comment or a
    CDATA section and an ``=`` in text count too, which real envelopes have few of (base64 has ``=`` only as
    padding).
    """

    max_nodes: int = 200_000
    bytes_per_node: int = 16
    free_nodes: int = 10_000

    def __post_init__(self) -> None:
        for name in ("max_nodes", "bytes_per_node", "free_nodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"XmlBudget.{name} must be a whole number of at least 1, not {value!r}")

    def allowed(self, size: int) -> int:
        """The most nodes a document of ``size`` bytes may have."""
        return min(self.max_nodes, self.free_nodes + size // self.bytes_per_node)


#: The budget :func:`parse` applies unless told otherwise (the receiver takes ``max_xml_nodes`` from its settings).
DEFAULT_XML_BUDGET = XmlBudget()


def _check_budget(data: bytes, what: str, budget: XmlBudget) -> None:
    """Refuse ``data`` before parsing when it may hold more nodes than ``budget`` allows for its size.

    Cheapest test first: a document cannot hold more nodes than it has bytes; then ``<`` plus ``=`` (end tags
    included), which settles almost every real envelope in two passes; only then the exact start-tag count.
    """
    allowed = budget.allowed(len(data))
    if len(data) <= allowed:
        return
    markup = data.count(b"<")
    equals = data.count(b"=")
    if markup + equals <= allowed:
        return
    total = markup - data.count(b"</") + equals
    if total <= allowed:
        return
    raise RemoteProtocolError(
        f"{what} has too much structure: up to {total} elements, attributes and namespace declarations "
        f"(counted by their '<' and '=' signs), more than the {allowed} allowed for its {len(data)} bytes "
        f"(at most {budget.max_nodes}, and one per {budget.bytes_per_node} bytes beyond the first "
        f"{budget.free_nodes})",
        code="xml-budget-exceeded",
        location=what,
        fault_code="Sender",
    )


def parse(
    data: bytes, *, what: str = "XML", huge: bool = False, budget: XmlBudget = DEFAULT_XML_BUDGET
) -> etree._Element:
    """Parse ``data`` into an element, rejecting DOCTYPEs, malformed XML and documents over ``budget``.

    ``what`` names the thing being parsed in error messages ("SOAP envelope", "RegistryResponse", a file name).
    Errors are :class:`RemoteProtocolError` with fault code ``Sender``: a peer's malformed XML is answered with
    a SOAP fault (SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3). A document over the :class:`XmlBudget` is refused the
    same way (code ``xml-budget-exceeded``), before any tree is built.
    """
    _check_budget(data, what, budget)
    try:
        root = etree.fromstring(data, _parser(huge))
    except etree.XMLSyntaxError as exc:
        raise RemoteProtocolError(
            f"{what} {_syntax_problem(exc)}",
            code="malformed-xml",
            location=_syntax_location(what, exc),
            fault_code="Sender",
        ) from exc
    except ValueError as exc:  # e.g. unicode string with encoding declaration
        raise RemoteProtocolError(
            f"{what} could not be parsed as XML", code="malformed-xml", location=what, fault_code="Sender"
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


#: What a peer is told about XML that does not parse, in our words: libxml2's own messages name parser options
#: ("try XML_PARSE_HUGE") and internals that mean nothing to a peer, so they never reach a reply. Keyed by the
#: libxml2 error name (lxml ``ErrorTypes``); anything else is "not well-formed" with its line and column.
_LIMITS = "is beyond the XML parser's limits (a text node over 10 MB, a very long name, or very deep nesting)"
_SYNTAX_PROBLEMS: Final = {
    "ERR_DOCUMENT_EMPTY": "the document is empty",
    "ERR_DOCUMENT_END": "there is content after the root element",
    "ERR_TAG_NAME_MISMATCH": "an end tag does not match its start tag",
    "ERR_TAG_NOT_FINISHED": "the document ends inside an element",
    "ERR_ATTRIBUTE_REDEFINED": "an element has the same attribute twice",
    "NS_ERR_UNDEFINED_NAMESPACE": "a namespace prefix is not declared",
    "ERR_UNDECLARED_ENTITY": "an entity reference is not one of XML's predefined entities",
    "ERR_INVALID_CHAR": "a character that XML 1.0 does not allow",
    "ERR_INVALID_CHARREF": "a character reference to a character that XML 1.0 does not allow",
    "ERR_INVALID_ENCODING": "bytes that are not valid in the document's character encoding",
    "ERR_UNSUPPORTED_ENCODING": "a character encoding that is not supported",
}
_LIMIT_ERRORS: Final = frozenset({"ERR_RESOURCE_LIMIT", "ERR_INTERNAL_ERROR"})


def _syntax_problem(exc: etree.XMLSyntaxError) -> str:
    name = etree.ErrorTypes._getName(exc.code, "")  # type: ignore[attr-defined]  # lxml-stubs lack it
    if name in _LIMIT_ERRORS:
        return _LIMITS
    return f"is not well-formed XML: {_SYNTAX_PROBLEMS.get(name, 'a syntax error')}"


def _syntax_location(what: str, exc: etree.XMLSyntaxError) -> str:
    position = getattr(exc, "position", None)
    line, column = position if position else (getattr(exc, "lineno", None), None)
    if line and column:
        return f"{what}, line {line}, column {column}"
    return f"{what}, line {line}" if line else what


#: Longest text (characters) one element or attribute of a reply carries: a fault Reason, a RegistryError
#: codeContext or location. A reply names what is wrong; it does not echo what the peer sent at length.
REPLY_TEXT_LIMIT: Final = 512

# Everything outside the XML 1.0 Char production (§2.2): C0 controls but tab, LF and CR; lone surrogates;
# U+FFFE and U+FFFF. One character class, so matching is linear in the text.
_NOT_XML_CHAR: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CUT: Final = " … "


def reply_text(text: str, *, limit: int = REPLY_TEXT_LIMIT) -> str:
    """``text`` made fit for an element or attribute of a message we send, when any of it may have come from a
    peer (a Content-ID, a MIME parameter, a percent-decoded ``cid:`` URL, a certificate subject).

    Why one function: lxml refuses text XML cannot hold (a ``ValueError`` while writing the reply turned a
    peer's defect into our internal error), and a reply quoting a peer's megabyte back is a reflection vector.
    Characters outside XML 1.0 ``Char`` (§2.2) are shown as Python-style escapes (``\\x01``), so the reader still
    sees what was wrong; text longer than ``limit`` keeps its start and end around a `` … `` (our messages
    name the problem at both ends of a quoted value). Every writer of our replies calls it.
    """
    if len(text) > limit:
        text = _middle_cut(text, limit)
    if _NOT_XML_CHAR.search(text) is not None:
        text = _NOT_XML_CHAR.sub(_escape_char, text)
        if len(text) > limit:
            text = _middle_cut(text, limit)
    return text


def not_xml_char(text: str) -> str | None:
    """Where ``text`` has a character XML cannot hold, described without the text itself (``"character 6 is
    U+0001, a control character"``), or None when every character is an XML 1.0 ``Char`` (§2.2).

    Why: lxml refuses such text with a bare ``ValueError`` (a lone surrogate even only later, when encoding), so
    a writer of what *we* send checks first and names the field; the text itself stays out of the message (it
    may be a patient's name)."""
    match = _NOT_XML_CHAR.search(text)
    if match is None:
        return None
    code = ord(match.group())
    kind = (
        "a control character"
        if code < 0x20
        else "a lone surrogate (not a character)"
        if 0xD800 <= code <= 0xDFFF
        else "a noncharacter"
    )
    return f"character {match.start() + 1} is U+{code:04X}, {kind}"


def _middle_cut(text: str, limit: int) -> str:
    keep = max(limit - len(_CUT), 2)
    head = keep * 2 // 3
    return text[:head] + _CUT + text[len(text) - (keep - head) :]


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


#: How much :func:`readable_elements` feeds at a time: a malformed byte stops it within this distance.
_PREFIX_STEP = 1024


def _valid_name(tag: object) -> bool:
    """Whether lxml's ``QName`` takes this element name, which is what every reader of the element will do.

    libxml2 reads on past a namespace error and leaves names lxml refuses: ``rim:Value`` (a prefix no declaration
    binds), and ``{http://a}}b}MessageID`` or a name without its opening brace when a declared namespace name holds
    a ``}`` (Namespaces in XML 1.0 allows any URI reference; lxml's Clark notation cannot carry one with ``}``)."""
    if not isinstance(tag, str) or ":" in tag.rpartition("}")[2]:
        return False
    try:
        etree.QName(tag)
    except ValueError:
        return False
    return True


def readable_elements(data: bytes) -> Iterator[etree._Element]:
    """Each element of ``data`` as its end tag is read, for as long as the bytes are well-formed XML.

    Why: a request refused for its framing, its size or a defect further on still starts with a readable SOAP
    header, and a fault should say which request it answers (its MessageID). ``data`` may be cut anywhere; reading
    stops silently at the first malformed byte or at the end, and at the first start tag whose name lxml's
    ``QName`` would refuse (:func:`_valid_name`: an undeclared prefix, Namespaces in XML 1.0 §5, or a namespace
    name holding a ``}``), so every element yielded, and each of its ancestors, has a valid name. A document
    with a DOCTYPE yields nothing, and the parser settings are those of :func:`parse` (no entities, no network).
    The elements belong to a partial tree: read what is needed as they come.
    """
    if b"<!DOCTYPE" in data:
        return
    parser = etree.XMLPullParser(
        events=("start", "end"), resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    for offset in range(0, len(data), _PREFIX_STEP):
        try:
            parser.feed(data[offset : offset + _PREFIX_STEP])
        except etree.XMLSyntaxError:
            return
        for event, element in parser.read_events():
            if not isinstance(element, etree._Element):
                continue
            if event == "start":
                if not _valid_name(element.tag):
                    return  # not namespace-well-formed from here on
                continue
            yield element


def qname(ns: str, local: str) -> str:
    """Clark notation ``{ns}local``."""
    return f"{{{ns}}}{local}"


def tostring(element: etree._Element) -> bytes:
    """Serialize as UTF-8 with an XML declaration; no pretty printing (bytes on the wire stay predictable)."""
    return etree.tostring(element, encoding="UTF-8", xml_declaration=True)


class ElementTemplates:
    """Subtrees a writer makes again and again, kept by key and handed out as copies.

    Why: copying an lxml subtree whole costs a fraction of building it element by element, and a sender's
    messages repeat most of theirs (the SOAP header, authors, codes, identifiers). The key must name everything
    a template's bytes depend on; the caller decides that.

    Thread-safe without a lock: a template is never changed once stored, copying one is a single lxml call that
    keeps the interpreter lock throughout, and storing or dropping templates is one dict operation. Bounded: past
    ``capacity`` all are dropped and made again as they are needed. One per writer, never process-wide.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: dict[Hashable, etree._Element] = {}

    def __len__(self) -> int:
        """How many templates are held (at most ``capacity``)."""
        return len(self._items)

    def copy_of(self, key: Hashable, make: Callable[[], etree._Element]) -> tuple[etree._Element, bool]:
        """A copy of the template for ``key``, made by ``make`` the first time; and whether it was made now."""
        template = self._items.get(key)
        made = template is None
        if template is None:
            template = make()
            if len(self._items) >= self._capacity:
                self._items.clear()
            self._items[key] = template
        # lxml's __copy__ copies the whole subtree, as __deepcopy__ does, without the copy module's memo.
        return copy.copy(template), made
