"""Reading an ITI-41 request envelope (the MTOM root part, or a whole simple-SOAP request).

Walks the tree from :func:`xdr_edge.protocol.xml.parse`, never through zeep, and raises
:class:`~xdr_edge.protocol.errors.RemoteProtocolError` carrying the SOAP fault the receiver answers with (SOAP 1.2
Part 1 §5.4, WS-Addressing 1.0 SOAP Binding §6) for what makes a message unprocessable; what it tolerates
(ETT's bare MessageIDs, a missing ReplyTo, ...) becomes warning findings. Pure: bytes in, a value out.
"""

from __future__ import annotations

__all__ = ["RequestEnvelope", "header_qname", "message_id_in_prefix", "read_request_envelope"]

import base64
import binascii
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

from lxml import etree

from xdr_edge.protocol import ns
from xdr_edge.protocol.codes import MISSING_DOCUMENT_METADATA, REPOSITORY_METADATA_ERROR
from xdr_edge.protocol.errors import ConfigurationError, RemoteProtocolError
from xdr_edge.protocol.findings import Finding, Severity
from xdr_edge.protocol.model import DirectAddress, MetadataLevel
from xdr_edge.protocol.mtom import content_id_of
from xdr_edge.protocol.soap.envelope import (
    BODY_WARNING,
    DIRECT_WARNING,
    FINAL_DESTINATION_DELIVERY,
    MUST_UNDERSTAND,
    ROLE,
    WSA_WARNING,
    DocumentRef,
    LevelPlacement,
    check_envelope,
    child_elements,
    element_name,
    is_element,
    sender_fault,
    text_of,
)
from xdr_edge.protocol.xml import DEFAULT_XML_BUDGET, XmlBudget, parse, qname, readable_elements

_ROLE_NEXT = f"{ns.SOAP}/role/next"
_ROLE_ULTIMATE = f"{ns.SOAP}/role/ultimateReceiver"
#: Roles this node plays (SOAP 1.2 Part 1 §2.2): the default (no role), next, ultimateReceiver, and the Direct
#: destination role the addressBlock targets (XDR and XDM for Direct Messaging §4.1; the receiving endpoint is that destination).
_OUR_ROLES = frozenset({"", _ROLE_NEXT, _ROLE_ULTIMATE, ns.DIRECT_ROLE})
_WSA_SINGLE = ("To", "From", "ReplyTo", "FaultTo", "MessageID", "Action")
_WSA_KNOWN = frozenset({*_WSA_SINGLE, "RelatesTo"})
_LEVELS = {"minimal": MetadataLevel.MINIMAL, "XDS": MetadataLevel.XDS}
_HUGE_INPUT = 9 * 1024 * 1024  # libxml2 refuses text nodes over 10 MB unless huge_tree
_BAD_ADDRESS_CODE = (
    REPOSITORY_METADATA_ERROR  # our practice-binding rule: an unusable address block is a metadata error
)


@dataclass(frozen=True)
class RequestEnvelope:
    """What :func:`read_request_envelope` found; ``findings`` hold the tolerated deviations (warnings) and the
    address-block errors that do not stop reading (an invalid direct:from or direct:to)."""

    message_id: str
    action: str
    to: str | None
    reply_to: str | None
    direct_from: DirectAddress | None
    direct_to: tuple[DirectAddress, ...]
    level: MetadataLevel | None
    level_placement: LevelPlacement | None
    has_address_block: bool
    submit_objects: etree._Element | None
    documents: tuple[DocumentRef, ...]
    findings: list[Finding] = field(default_factory=list)
    final_destination_delivery: bool = False  # X-DIRECT-FINAL-DESTINATION-DELIVERY true in the addressBlock


@dataclass
class _Headers:
    """Mutable scratch state while walking the header blocks of one request."""

    wsa: dict[str, etree._Element] = field(default_factory=dict)
    block: etree._Element | None = None
    top_level: etree._Element | None = None
    any_wsa_must_understand: bool = False


def _must_understand_value(element: etree._Element, where: str) -> bool:
    value = element.get(MUST_UNDERSTAND)
    if value is None:
        return False
    text = value.strip()
    if text not in ("true", "1", "false", "0"):
        raise sender_fault(
            f"{where}/@S:mustUnderstand is {text!r}, not an xs:boolean", f"{where}/@S:mustUnderstand"
        )
    return text in ("true", "1")


_NCNAME = re.compile(r"[A-Za-z_][\w.\-]*")

#: Prefixes an operator may use when naming a header block to treat as understood (``wsse:Security``).
_HEADER_PREFIXES = {"wsse": ns.WSSE, "wsa": ns.WSA, "direct": ns.DIRECT, "soap": ns.SOAP, "S": ns.SOAP}


def header_qname(name: str) -> str:
    """A header block name as given by an operator (``{namespace}local`` or ``wsse:Security``, with the
    prefixes wsse, wsa, direct, soap) -> Clark notation, the form :func:`read_request_envelope` compares.

    Raises :class:`~xdr_edge.protocol.errors.ConfigurationError` naming the text when it is neither."""
    text = name.strip()
    if text.startswith("{"):
        namespace, brace, local = text[1:].partition("}")
        if brace and namespace and _NCNAME.fullmatch(local):
            return f"{{{namespace}}}{local}"
    else:
        prefix, colon, local = text.partition(":")
        if colon and prefix in _HEADER_PREFIXES and _NCNAME.fullmatch(local):
            return f"{{{_HEADER_PREFIXES[prefix]}}}{local}"
    known = ", ".join(sorted(_HEADER_PREFIXES))
    raise ConfigurationError(
        f"header name {name!r} is neither {{namespace}}local nor prefix:local with a known prefix ({known})",
        location="understood_headers",
    )


def _sort_header_block(
    block: etree._Element, state: _Headers, understood: Collection[str] = frozenset()
) -> None:
    where = f"S:Header/{element_name(block)}"
    must = _must_understand_value(block, where)
    qn = etree.QName(block)
    if qn.namespace == ns.WSA and qn.localname in _WSA_KNOWN:
        if qn.localname in state.wsa and qn.localname in _WSA_SINGLE:
            raise sender_fault(
                f"{where} appears more than once (WS-Addressing allows one)",
                where,
                code="ws-addressing",
                subcode="wsa:InvalidAddressingHeader",
            )
        state.wsa.setdefault(qn.localname, block)
        state.any_wsa_must_understand |= must
        return
    if is_element(block, ns.DIRECT, "addressBlock"):
        if state.block is not None:
            raise sender_fault(
                f"{where} appears more than once (XDR and XDM for Direct Messaging §4.1)",
                where,
                code="direct-address-block",
            )
        state.block = block
        return
    if is_element(block, ns.DIRECT, "metadata-level"):
        if state.top_level is not None:
            raise sender_fault(f"{where} appears more than once", where, code="direct-metadata-level")
        state.top_level = block
        return
    role = (block.get(ROLE) or "").strip()
    if must and role in _OUR_ROLES and qn.text not in understood:
        # SOAP 1.2 Part 1 §5.2.3: a mandatory block aimed at us that we do not process must fault, unless the
        # operator declared it understood (a sender's wsse:Security, when the client certificate is what
        # authenticates; ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding).
        raise RemoteProtocolError(
            f"{where} is marked S:mustUnderstand but is not understood by this endpoint",
            code="must-understand",
            location=where,
            fault_code="MustUnderstand",
            fault_detail=qn.text,
        )


def _required_wsa(state: _Headers, local: str) -> str:
    element = state.wsa.get(local)
    where = f"S:Header/wsa:{local}"
    if element is None:
        raise sender_fault(
            f"{where} is missing; WS-Addressing requires it (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding)",
            where,
            code="ws-addressing",
            subcode="wsa:MessageAddressingHeaderRequired",
        )
    return text_of(element)


def _address(element: etree._Element, where: str, findings: list[Finding]) -> DirectAddress | None:
    """The address, or None with an error finding: an unusable address is a metadata error answered with a
    RegistryResponse Failure (our practice-binding rule), so the rest of the request is still read and reported."""
    try:
        return DirectAddress.parse(text_of(element))
    except ValueError:
        findings.append(
            Finding(
                _BAD_ADDRESS_CODE,
                Severity.ERROR,
                where,
                f"{where} is not a Direct address (expected user@domain or mailto:user@domain)",
                "direct-bad-address",
            )
        )
        return None


def _level(element: etree._Element, where: str) -> MetadataLevel:
    text = text_of(element).strip()
    if text not in _LEVELS:
        raise sender_fault(
            f"{where} must be 'minimal' or 'XDS' (case-sensitive, XDR and XDM for Direct Messaging §6.1.1)",
            where,
            code="direct-metadata-level",
        )
    return _LEVELS[text]


@dataclass
class _Block:
    direct_from: DirectAddress | None = None
    direct_to: tuple[DirectAddress, ...] = ()
    level: MetadataLevel | None = None
    final_destination_delivery: bool | None = None  # None: the element is absent


def _read_block(block: etree._Element, findings: list[Finding]) -> _Block:
    base = "S:Header/direct:addressBlock"
    result = _Block()
    senders = recipients = 0
    addresses: list[DirectAddress] = []
    for child in child_elements(block):
        if is_element(child, ns.DIRECT, "from"):
            senders += 1
            if senders > 1:
                raise sender_fault(f"{base}/direct:from appears more than once", f"{base}/direct:from[2]")
            result.direct_from = _address(child, f"{base}/direct:from", findings)
        elif is_element(child, ns.DIRECT, "to"):
            recipients += 1
            address = _address(child, f"{base}/direct:to[{recipients}]", findings)
            if address is not None:
                addresses.append(address)
        elif is_element(child, ns.DIRECT, "metadata-level"):
            if result.level is not None:
                raise sender_fault(
                    f"{base}/direct:metadata-level appears more than once", f"{base}/direct:metadata-level"
                )
            result.level = _level(child, f"{base}/direct:metadata-level")
        elif is_element(child, ns.DIRECT, FINAL_DESTINATION_DELIVERY):
            where = f"{base}/direct:{FINAL_DESTINATION_DELIVERY}"
            if result.final_destination_delivery is not None:
                raise sender_fault(f"{where} appears more than once", where, code="direct-address-block")
            result.final_destination_delivery = _delivery_request(child, where, findings)
    result.direct_to = tuple(addresses)
    return result


def _delivery_request(element: etree._Element, where: str, findings: list[Finding]) -> bool:
    """``true``/``false`` (xs:boolean, so also 1/0). Anything else is an error finding, answered with a
    Failure: a sender that asked for a delivery notification in a form we cannot read must not believe it
    will get one (ETT MT 31 sends such requests and expects them handled, not ignored)."""
    text = text_of(element).strip()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    findings.append(
        Finding(
            _BAD_ADDRESS_CODE,
            Severity.ERROR,
            where,
            f"{where} must be true or false (Delivery Notification IG §1.3), got {text[:40]!r}",
            "direct-bad-delivery-request",
        )
    )
    return False


_WARNING_CODES = {"wsa": WSA_WARNING, "direct": DIRECT_WARNING, "xdsb": BODY_WARNING}


def _warn(findings: list[Finding], location: str, message: str, rule: str) -> None:
    """A tolerated deviation; its code is the header family named by the rule's prefix (``wsa-…``)."""
    findings.append(
        Finding(_WARNING_CODES[rule.partition("-")[0]], Severity.WARNING, location, message, rule)
    )


def _wsa_findings(state: _Headers, message_id: str, action: str, findings: list[Finding]) -> str | None:
    """The tolerated WS-A deviations (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding): bare MessageID, padded Action, missing To or ReplyTo."""
    if not message_id.strip().startswith("urn:uuid:"):
        _warn(
            findings,
            "S:Header/wsa:MessageID",
            "MessageID is not a urn:uuid: URI (ETT sends bare UUIDs)",
            "wsa-message-id-bare",
        )
    if action != action.strip():
        _warn(
            findings,
            "S:Header/wsa:Action",
            "Action has surrounding whitespace (NIST flags it)",
            "wsa-action-whitespace",
        )
    if "To" not in state.wsa:
        _warn(findings, "S:Header/wsa:To", "To is missing (DTS 413 requires it)", "wsa-to-absent")
    elif not text_of(state.wsa["To"]).strip().startswith("http"):
        _warn(findings, "S:Header/wsa:To", "To is not an http(s) URL (NIST)", "wsa-to-not-http")
    if not state.any_wsa_must_understand:
        _warn(
            findings,
            "S:Header",
            "no WS-Addressing header has S:mustUnderstand true (NIST)",
            "wsa-no-must-understand",
        )
    reply = state.wsa.get("ReplyTo")
    if reply is None:
        _warn(
            findings,
            "S:Header/wsa:ReplyTo",
            "ReplyTo is absent; replying anonymously (DTS 419)",
            "wsa-reply-to-absent",
        )
        return None
    address = reply.find(qname(ns.WSA, "Address"))
    if address is None:
        raise sender_fault(
            "S:Header/wsa:ReplyTo has no wsa:Address",
            "S:Header/wsa:ReplyTo/wsa:Address",
            code="ws-addressing",
            subcode="wsa:InvalidAddressingHeader",
        )
    value = text_of(address).strip()
    if value != ns.WSA_ANONYMOUS:
        _warn(
            findings,
            "S:Header/wsa:ReplyTo/wsa:Address",
            "ReplyTo is not anonymous; the reply is sent on the HTTP response",
            "wsa-reply-to-not-anonymous",
        )
    return value


def _placement(
    block: _Block, top_level: etree._Element | None
) -> tuple[MetadataLevel | None, LevelPlacement | None]:
    top = _level(top_level, "S:Header/direct:metadata-level") if top_level is not None else None
    if top is not None and block.level is not None:
        if top is not block.level:
            raise sender_fault(
                "S:Header/direct:metadata-level disagrees with "
                "S:Header/direct:addressBlock/direct:metadata-level",
                "S:Header/direct:metadata-level",
                code="direct-metadata-level",
            )
        return top, LevelPlacement.BOTH
    if top is not None:
        return top, LevelPlacement.TOP_LEVEL
    if block.level is not None:
        return block.level, LevelPlacement.IN_BLOCK
    return None, None


def _read_document(slot: etree._Element, index: int, findings: list[Finding]) -> DocumentRef:
    where = f"S:Body/xdsb:ProvideAndRegisterDocumentSetRequest/xdsb:Document[{index}]"
    entry_id = slot.get("id")
    if not entry_id:
        findings.append(
            Finding(
                MISSING_DOCUMENT_METADATA,
                Severity.ERROR,
                f"{where}/@id",
                "xdsb:Document has no @id",
                "xdsb-document-id",
            )
        )
        entry_id = ""
    children = child_elements(slot)
    if not children:
        text = "".join((slot.text or "").split())
        try:
            return DocumentRef(entry_id, inline=base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise sender_fault(f"{where} is neither an xop:Include nor valid base64 text", where) from exc
    if len(children) != 1 or not is_element(children[0], ns.XOP, "Include") or (slot.text or "").strip():
        raise sender_fault(f"{where} must hold base64 text or exactly one xop:Include", where)
    content_id = content_id_of(children[0].get("href") or "")
    if content_id is None:
        # Only references to parts of this package; never follow another URL (XOP 1.0 §3, RFC 2392, XOP 1.0 §3).
        raise sender_fault(f"{where}/xop:Include/@href must be a cid: URL", f"{where}/xop:Include/@href")
    return DocumentRef(entry_id, content_id=content_id)


def _read_body(
    body: etree._Element, findings: list[Finding]
) -> tuple[etree._Element | None, tuple[DocumentRef, ...]]:
    children = child_elements(body)
    if len(children) != 1:
        raise sender_fault(f"S:Body must have exactly one child element, found {len(children)}", "S:Body")
    request = children[0]
    if not is_element(request, ns.XDSB, "ProvideAndRegisterDocumentSetRequest"):
        raise sender_fault(
            f"S:Body/{element_name(request)} is not xdsb:ProvideAndRegisterDocumentSetRequest ({ns.XDSB})",
            f"S:Body/{element_name(request)}",
        )
    submit = request.find(qname(ns.LCM, "SubmitObjectsRequest"))
    documents: list[DocumentRef] = []
    for child in child_elements(request):
        if is_element(child, ns.XDSB, "Document"):
            documents.append(_read_document(child, len(documents) + 1, findings))
        elif child is not submit:
            _warn(
                findings,
                f"S:Body/xdsb:ProvideAndRegisterDocumentSetRequest/{element_name(child)}",
                "unexpected element ignored",
                "xdsb-unexpected-element",
            )
    cids = Counter(d.content_id for d in documents if d.content_id is not None)
    twice = sorted(c for c, n in cids.items() if n > 1)
    if twice:
        raise sender_fault(
            f"the same MIME part is referenced by more than one xdsb:Document (DTS 432): {', '.join(twice)}",
            "xdsb:Document/xop:Include/@href",
        )
    return submit, tuple(documents)


def read_request_envelope(
    xml: bytes,
    *,
    understood_headers: Collection[str] = frozenset(),
    budget: XmlBudget = DEFAULT_XML_BUDGET,
) -> RequestEnvelope:
    """Read an ITI-41 request envelope (the XOP root part, or a whole simple-SOAP request).

    ``understood_headers`` (Clark names, see :func:`header_qname`) are header blocks accepted and ignored even
    when marked ``mustUnderstand``; any other such block aimed at us is a MustUnderstand fault.

    Faults (as :class:`RemoteProtocolError` with ``fault_code``/``fault_subcode``, SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3) for what makes
    the message unprocessable; findings for what we tolerate: bare MessageID, no ReplyTo, no metadata-level
    (treated as XDS by the caller, XDR and XDM for Direct Messaging §6.1.1), no addressBlock (sender from the metadata, XDR and XDM for Direct Messaging §4.1). A direct:from or
    direct:to that is not a Direct address is an error finding (XDSRepositoryMetadataError, our practice-binding rule) and is left
    out of ``direct_from``/``direct_to``, so the caller answers with a Failure that lists every problem.
    ``budget`` bounds the tree the envelope may make (:class:`~xdr_edge.protocol.xml.XmlBudget`).
    """
    root = parse(xml, what="SOAP envelope", huge=len(xml) > _HUGE_INPUT, budget=budget)
    header, body = check_envelope(root)
    try:
        return _read_request(header, body, understood_headers)
    except RemoteProtocolError as exc:
        exc.relates_to = _readable_message_id(header)
        raise


def _readable_message_id(header: etree._Element | None) -> str | None:
    """The request's MessageID for the RelatesTo of a fault answer, when there is exactly one usable one."""
    if header is None:
        return None
    found = [e for e in child_elements(header) if is_element(e, ns.WSA, "MessageID")]
    if len(found) != 1:
        return None
    text = text_of(found[0]).strip()
    return text if _message_id_problem(text) is None else None


#: The envelope namespaces whose header may hold the MessageID of a request we refuse: a SOAP 1.1 envelope gets
#: a VersionMismatch fault, which may as well say which request it answers.
_ENVELOPE_NAMESPACES = frozenset({ns.SOAP, ns.SOAP11})


def message_id_in_prefix(prefix: bytes) -> str | None:
    """The request's MessageID read from the first bytes of its envelope alone, or None.

    Why: a request refused before its envelope could be read (the MIME framing, a size limit, malformed XML
    after the header) still deserves a fault that says which request it answers (``wsa:RelatesTo``, WS-Addressing
    1.0 Core §3.4): senders match an answer to their request by it, and one that requires addressing on answers
    may refuse a fault without it. Reads only ``Envelope/Header/wsa:MessageID``, with the same rules as a full
    read: one usable MessageID or none. ``prefix`` may be cut anywhere or broken after the header.
    """
    found: list[str] = []
    for element in readable_elements(prefix):
        parent = element.getparent()
        outer = parent.getparent() if parent is not None else None
        if (
            is_element(element, ns.WSA, "MessageID")
            and parent is not None
            and outer is not None
            and outer.getparent() is None
            and etree.QName(parent).localname == "Header"
            and etree.QName(parent).namespace in _ENVELOPE_NAMESPACES
            and etree.QName(outer).localname == "Envelope"
        ):
            found.append(text_of(element).strip())
        elif etree.QName(element).localname == "Header" and parent is not None and parent.getparent() is None:
            break  # the header is complete: the MessageID is never in the body
    if len(found) != 1:
        return None
    return found[0] if _message_id_problem(found[0]) is None else None


_MAX_MESSAGE_ID = 1024


def _message_id_problem(text: str) -> str | None:
    """Why ``text`` cannot be a MessageID (an xs:anyURI), or None. Whitespace and control characters are
    refused: besides not being a URI, they would let a sender forge lines in our per-request log."""
    if not text:
        return "is empty"
    if len(text) > _MAX_MESSAGE_ID:
        return f"is {len(text)} characters long (at most {_MAX_MESSAGE_ID})"
    if any(c.isspace() or not c.isprintable() for c in text):
        return "contains whitespace or control characters, so it is not a URI"
    return None


def _read_request(
    header: etree._Element | None, body: etree._Element, understood_headers: Collection[str]
) -> RequestEnvelope:
    state = _Headers()
    for block in child_elements(header) if header is not None else []:
        _sort_header_block(block, state, understood_headers)
    action = _required_wsa(state, "Action")
    if action.strip() != ns.ACTION_PNR:
        raise RemoteProtocolError(
            f"S:Header/wsa:Action {action.strip()[:100]!r} is not supported here (expected {ns.ACTION_PNR})",
            code="ws-addressing",
            location="S:Header/wsa:Action",
            fault_code="Sender",
            fault_subcode="wsa:ActionNotSupported",
            fault_detail=action.strip()[:1024],
        )
    message_id = _required_wsa(state, "MessageID")
    problem = _message_id_problem(message_id.strip())
    if problem is not None:
        raise sender_fault(
            f"S:Header/wsa:MessageID {problem}",
            "S:Header/wsa:MessageID",
            code="ws-addressing",
            subcode="wsa:InvalidAddressingHeader",
        )
    findings: list[Finding] = []
    reply_to = _wsa_findings(state, message_id, action, findings)
    addresses = _read_block(state.block, findings) if state.block is not None else _Block()
    level, placement = _placement(addresses, state.top_level)
    if state.block is None:
        _warn(
            findings,
            "S:Header/direct:addressBlock",
            "no Direct addressBlock; addresses come from the metadata (XDR and XDM for Direct Messaging §4.1)",
            "direct-block-absent",
        )
    if level is None:
        _warn(
            findings,
            "S:Header/direct:metadata-level",
            "metadata-level is absent; treated as XDS (XDR and XDM for Direct Messaging §6.1.1)",
            "direct-level-absent",
        )
    submit, documents = _read_body(body, findings)
    to = state.wsa.get("To")
    return RequestEnvelope(
        message_id=message_id.strip(),
        action=action.strip(),
        to=text_of(to).strip() if to is not None else None,
        reply_to=reply_to,
        direct_from=addresses.direct_from,
        direct_to=addresses.direct_to,
        level=level,
        level_placement=placement,
        has_address_block=state.block is not None,
        submit_objects=submit,
        documents=documents,
        findings=findings,
        final_destination_delivery=bool(addresses.final_destination_delivery),
    )
