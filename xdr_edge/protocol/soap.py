"""The SOAP 1.2 envelope of ITI-41: request writer and reader, response writer and reader, SOAP faults.

Owns the envelope around the ebRIM metadata: WS-Addressing headers (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding), the Direct ``addressBlock``
and ``metadata-level`` (XDR and XDM for Direct Messaging §4), the ``xdsb:Document`` slots that point at MTOM parts (ITI TF-2b 3.41.5, W3C MTOM/XOP), the RegistryResponse
and SOAP Fault envelopes (ITI TF-3 4.2.4, ebRS 3.0; SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3). Pure: bytes and lxml elements in and out; no sockets, no MIME packaging
(``mtom.py``), no ebRIM content (``metadata.py``), no RegistryResponse content (``response.py``).

The request is built by zeep from our own WSDL (``wsdl/iti41.wsdl``) so the body follows the WSDL binding
(SOAP 1.2, document/literal). zeep cannot do MTOM (STACK-NOTES "zeep"), so it renders one empty
``xdsb:Document`` placeholder per document and an empty ``lcm:SubmitObjectsRequest`` placeholder; we then
put the element ``metadata.py`` built in place of the latter and an ``xop:Include`` (or inline base64) into
each Document. Our WSDL carries no ``wsaw:Action``, so zeep adds no WS-Addressing headers of its own: the
headers we need (with ``mustUnderstand`` and ``ReplyTo``) are lxml elements passed through ``_soapheaders``
and appear once.

The readers never go through zeep: they walk the tree from :func:`xdr_edge.xml.parse` and raise
:class:`~xdr_edge.errors.RemoteProtocolError` with the SOAP fault code the receiver answers with (SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3).
"""

from __future__ import annotations

__all__ = [
    "BODY_WARNING",
    "DIRECT_WARNING",
    "FINAL_DESTINATION_DELIVERY",
    "WSA_WARNING",
    "DocumentRef",
    "Fault",
    "LevelPlacement",
    "RequestEnvelope",
    "ResponseEnvelope",
    "build_fault_envelope",
    "build_request_envelope",
    "build_response_envelope",
    "fault_http_status",
    "header_qname",
    "read_request_envelope",
    "read_response_envelope",
]

import base64
import binascii
import copy
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import zeep
import zeep.transports
from lxml import etree

from xdr_edge.protocol import ns
from xdr_edge.protocol.errors import (
    ConfigurationError,
    LocalProtocolError,
    RemoteProtocolError,
)
from xdr_edge.protocol.findings import (
    Finding,
    Severity,
)
from xdr_edge.protocol.model import (
    DirectAddress,
    MetadataLevel,
)
from xdr_edge.protocol.mtom import (
    cid_href,
    content_id_of,
)
from xdr_edge.protocol.xml import (
    parse,
    qname,
    tostring,
)

WSDL_DIR = Path(__file__).parents[1] / "wsdl"
WSDL_PATH = WSDL_DIR / "iti41.wsdl"
_OPERATION = "ProvideAndRegisterDocumentSet-b"

_ROLE_NEXT = f"{ns.SOAP}/role/next"
_ROLE_ULTIMATE = f"{ns.SOAP}/role/ultimateReceiver"
#: Roles this node plays (SOAP 1.2 Part 1 §2.2): the default (no role), next, ultimateReceiver, and the Direct
#: destination role the addressBlock targets (XDR and XDM for Direct Messaging §4.1; the receiving endpoint is that destination).
_OUR_ROLES = frozenset({"", _ROLE_NEXT, _ROLE_ULTIMATE, ns.DIRECT_ROLE})
_WSA_SINGLE = ("To", "From", "ReplyTo", "FaultTo", "MessageID", "Action")
_WSA_KNOWN = frozenset({*_WSA_SINGLE, "RelatesTo"})
_LEVELS = {"minimal": MetadataLevel.MINIMAL, "XDS": MetadataLevel.XDS}
_HUGE_INPUT = 9 * 1024 * 1024  # libxml2 refuses text nodes over 10 MB unless huge_tree (STACK-NOTES)
_FAULT_CODES = ("VersionMismatch", "MustUnderstand", "DataEncodingUnknown", "Sender", "Receiver")
#: ``Finding.code`` of the tolerated envelope deviations (warnings). They are not faults (a fault code such as
#: ``env:Sender`` would tell a reader of the RegistryResponse the request was refused) and not XDS registry
#: errors: the code names the header family whose rule was bent, the ``rule`` says which rule.
WSA_WARNING = "WS-Addressing"
DIRECT_WARNING = "DirectAddressing"
BODY_WARNING = "ITI-41"
_BAD_ADDRESS_CODE = (
    "XDSRepositoryMetadataError"  # our practice-binding rule: an unusable address block is a metadata error
)
#: Delivery Notification IG §1.3 (XDR and XDM for Direct Messaging §4.1): the addressBlock child asking for final-destination delivery.
FINAL_DESTINATION_DELIVERY = "X-DIRECT-FINAL-DESTINATION-DELIVERY"


_S = ns.SOAP
_MUST_UNDERSTAND = qname(_S, "mustUnderstand")
_ROLE = qname(_S, "role")
_RELAY = qname(_S, "relay")


class LevelPlacement(Enum):
    """Where ``direct:metadata-level`` goes (XDR and XDM for Direct Messaging §6.1.1: ETT, NIST and ONC XDR checklist put it at the top level of the
    SOAP header; the Direct RI and ETT-V inside the addressBlock). BOTH is for peers of either school."""

    TOP_LEVEL = "top-level"
    IN_BLOCK = "in-block"
    BOTH = "both"


@dataclass(frozen=True)
class DocumentRef:
    """What an ``xdsb:Document`` holds: the DocumentEntry id (``@id`` = ExtrinsicObject id, ONC XDR checklist XD 10)
    and either the Content-ID of its MTOM part (without ``<>``) or inline bytes (non-MTOM, ITI TF-2b 3.41.5, non-MTOM form)."""

    entry_id: str
    content_id: str | None = None
    inline: bytes | None = None

    def __post_init__(self) -> None:
        if (self.content_id is None) == (self.inline is None):
            raise LocalProtocolError(
                f"a document reference needs exactly one of content_id or inline (entry {self.entry_id!r})",
                location=f"xdsb:Document[@id={self.entry_id!r}]",
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


@dataclass(frozen=True)
class Fault:
    """A SOAP 1.2 fault: ``code`` is the local name of ``env:Code/env:Value`` (``Sender``, ``Receiver``,
    ``VersionMismatch``, ``MustUnderstand``); ``subcode`` a QName string such as
    ``wsa:MessageAddressingHeaderRequired`` (or Clark notation for other namespaces); ``detail`` a short text
    (for WS-Addressing faults the problem header QName or action, WS-A SOAP binding §6)."""

    code: str
    reason: str
    subcode: str | None = None
    detail: str | None = None

    @classmethod
    def from_error(cls, exc: RemoteProtocolError) -> Fault:
        """The fault a receiver answers with for ``exc`` (a metadata error without a fault code is a Sender
        problem; callers normally answer those with a RegistryResponse Failure instead, SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3)."""
        header_fault = exc.fault_subcode in (
            "wsa:MessageAddressingHeaderRequired",
            "wsa:InvalidAddressingHeader",
        )
        detail = exc.location if header_fault else exc.fault_detail
        return cls(exc.fault_code or "Sender", str(exc), exc.fault_subcode, detail)


@dataclass(frozen=True)
class ResponseEnvelope:
    """A reply as read: WS-A headers (None when absent) and either the Body child or the fault."""

    action: str | None
    relates_to: str | None
    message_id: str | None
    body: etree._Element | None
    fault: Fault | None


# ----------------------------------------------------------------------------------------------------
# Building the request with zeep


class _WsdlOnlyTransport(zeep.transports.Transport):
    """A zeep transport that reads our WSDL directory and nothing else: loading a WSDL or XSD from anywhere
    else, or sending anything, is a programming error (``client.py`` sends the envelope over ``mtom.py``)."""

    def load(self, url: str) -> bytes:
        path = Path(url).resolve()
        if path.parent != WSDL_DIR.resolve() or not path.is_file():
            raise LocalProtocolError(f"the ITI-41 WSDL may only load files from {WSDL_DIR}, not {url!r}")
        return path.read_bytes()

    def get(self, address: str, params: object, headers: object) -> Any:
        raise LocalProtocolError("zeep must not perform HTTP requests in xdr-edge")

    def post(self, address: str, message: object, headers: object) -> Any:
        raise LocalProtocolError("zeep must not perform HTTP requests in xdr-edge")


def _client() -> Any:
    """A fresh zeep Client for our WSDL, built per call.

    Why not cached: a zeep Client carries settings and default headers that a caller could change, and the
    rule is no process-global mutable state. Building one costs about 1 ms (9 ms on the first call of a
    process, measured on the project machine), negligible next to a TLS round trip. The settings forbid DTDs,
    entities and external references; the transport can read only ``wsdl/``.
    """
    settings = zeep.Settings(forbid_dtd=True, forbid_entities=True, forbid_external=True, strict=True)
    transport = _WsdlOnlyTransport()  # type: ignore[no-untyped-call]
    return zeep.Client(str(WSDL_PATH), settings=settings, transport=transport)  # type: ignore[no-untyped-call]


def _must_understand(element: etree._Element) -> etree._Element:
    element.set(_MUST_UNDERSTAND, "true")
    return element


def _wsa(local: str, text: str | None = None) -> etree._Element:
    element = etree.Element(qname(ns.WSA, local), nsmap={"wsa": ns.WSA, "S": _S})
    if text is not None:
        element.text = text
    return element


def _direct(local: str, text: str | None = None, *, parent: etree._Element | None = None) -> etree._Element:
    tag = qname(ns.DIRECT, local)
    element = (
        etree.SubElement(parent, tag)
        if parent is not None
        else etree.Element(tag, nsmap={"direct": ns.DIRECT, "S": _S})
    )
    if text is not None:
        element.text = text
    return element


def _request_headers(
    *,
    to: str,
    message_id: str,
    direct_from: DirectAddress | None,
    direct_to: Sequence[DirectAddress],
    level: MetadataLevel | None,
    placement: LevelPlacement,
    final_destination_delivery: bool = False,
) -> list[etree._Element]:
    """The ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding recommended header: To, MessageID, Action, ReplyTo (all mustUnderstand), then the Direct
    addressBlock (role destination, relay true, no mustUnderstand: XDR and XDM for Direct Messaging §4.1; the delivery-notification request
    after the recipients) and metadata-level (XDR and XDM for Direct Messaging §6.1.1)."""
    reply_to = _must_understand(_wsa("ReplyTo"))
    etree.SubElement(reply_to, qname(ns.WSA, "Address")).text = ns.WSA_ANONYMOUS
    headers = [
        _must_understand(_wsa("To", to)),
        _must_understand(_wsa("MessageID", message_id)),
        _must_understand(_wsa("Action", ns.ACTION_PNR)),
        reply_to,
    ]
    level_in_block = level is not None and placement is not LevelPlacement.TOP_LEVEL
    if direct_from is not None or direct_to or level_in_block or final_destination_delivery:
        block = _direct("addressBlock")
        block.set(_ROLE, ns.DIRECT_ROLE)
        block.set(_RELAY, "true")
        if direct_from is not None:
            _direct("from", direct_from.uri, parent=block)
        for recipient in direct_to:
            _direct("to", recipient.uri, parent=block)
        if final_destination_delivery:
            _direct(FINAL_DESTINATION_DELIVERY, "true", parent=block)
        if level is not None and level_in_block:
            _direct("metadata-level", level.value, parent=block)
        headers.append(block)
    if level is not None and placement is not LevelPlacement.IN_BLOCK:
        headers.append(_direct("metadata-level", level.value))
    return headers


def _check_request_args(documents: Sequence[DocumentRef], to: str, message_id: str) -> None:
    if not to.strip():
        raise LocalProtocolError("wsa:To must be the recipient's endpoint URL; got an empty string")
    if not message_id.strip() or message_id != message_id.strip():
        raise LocalProtocolError(
            f"wsa:MessageID must be a URI without surrounding spaces, got {message_id!r}"
        )
    for what, counts in (
        ("xdsb:Document/@id", Counter(d.entry_id for d in documents)),
        ("Content-ID", Counter(d.content_id for d in documents if d.content_id is not None)),
    ):
        duplicates = sorted(k for k, n in counts.items() if n > 1)
        if duplicates:
            # DTS 432: one part per xop:Include, never referenced twice; XD 10: one Document per entry.
            raise LocalProtocolError(f"{what} used more than once: {', '.join(duplicates)}")


def _fill_document(slot: etree._Element, doc: DocumentRef) -> None:
    if doc.inline is not None:
        slot.text = base64.b64encode(doc.inline).decode("ascii")
        return
    assert doc.content_id is not None  # DocumentRef guarantees one of the two
    slot.text = None
    include = etree.SubElement(slot, qname(ns.XOP, "Include"), nsmap={"xop": ns.XOP})
    include.set("href", cid_href(doc.content_id))


def build_request_envelope(
    *,
    submit_objects: etree._Element,
    documents: Sequence[DocumentRef],
    to: str,
    message_id: str,
    direct_from: DirectAddress | None,
    direct_to: Sequence[DirectAddress],
    level: MetadataLevel | None,
    placement: LevelPlacement = LevelPlacement.TOP_LEVEL,
    final_destination_delivery: bool = False,
) -> bytes:
    """The ITI-41 request envelope (the MTOM root part), as UTF-8 bytes with an XML declaration.

    ``submit_objects`` is copied, not moved, so the caller's tree stays intact. Each ``DocumentRef`` becomes
    an ``xdsb:Document`` with ``xop:Include href="cid:..."`` (percent-encoded Content-ID, RFC 2392; digest
    RFC 2392, XOP 1.0 §3) or base64 text when ``inline`` is given.
    """
    tag = etree.QName(submit_objects)
    if (tag.namespace, tag.localname) != (ns.LCM, "SubmitObjectsRequest"):
        raise LocalProtocolError(f"expected lcm:SubmitObjectsRequest, got {tag.text}")
    _check_request_args(documents, to, message_id)
    headers = _request_headers(
        to=to,
        message_id=message_id,
        direct_from=direct_from,
        direct_to=direct_to,
        level=level,
        placement=placement,
        final_destination_delivery=final_destination_delivery,
    )
    client = _client()
    client.set_ns_prefix("xdsb", ns.XDSB)  # a fresh client per call, so this touches nothing shared
    envelope: etree._Element = client.create_message(
        client.service,
        _OPERATION,
        SubmitObjectsRequest={},
        Document=[{"_value_1": "", "id": d.entry_id} for d in documents],
        _soapheaders=headers,
    )
    request = envelope.find(f"{qname(_S, 'Body')}/{qname(ns.XDSB, 'ProvideAndRegisterDocumentSetRequest')}")
    if request is None:  # our WSDL guarantees it; a changed WSDL must fail loudly
        raise LocalProtocolError("zeep did not render xdsb:ProvideAndRegisterDocumentSetRequest")
    placeholder = request.find(qname(ns.LCM, "SubmitObjectsRequest"))
    assert placeholder is not None
    request.replace(placeholder, copy.deepcopy(submit_objects))
    for slot, doc in zip(request.findall(qname(ns.XDSB, "Document")), documents, strict=True):
        _fill_document(slot, doc)
    etree.cleanup_namespaces(envelope, top_nsmap={"wsa": ns.WSA, "direct": ns.DIRECT, "xop": ns.XOP})
    return tostring(envelope)


# ----------------------------------------------------------------------------------------------------
# Reading the request


def _sender(
    message: str, location: str, *, code: str = "soap-envelope", subcode: str | None = None
) -> RemoteProtocolError:
    return RemoteProtocolError(
        message, code=code, location=location, fault_code="Sender", fault_subcode=subcode
    )


def _name(element: etree._Element) -> str:
    """A readable name for messages: ``S:Header``, ``wsa:Action``, ``direct:to`` or ``{ns}local``."""
    qn = etree.QName(element)
    for prefix, uri in (
        ("S", _S),
        ("wsa", ns.WSA),
        ("direct", ns.DIRECT),
        ("xdsb", ns.XDSB),
        ("lcm", ns.LCM),
    ):
        if qn.namespace == uri:
            return f"{prefix}:{qn.localname}"
    if not qn.namespace:  # no namespace (the stubs say str; lxml gives None)
        return qn.localname
    return f"{{{qn.namespace}}}{qn.localname}"


def _elements(parent: etree._Element) -> list[etree._Element]:
    return [c for c in parent if isinstance(c.tag, str)]


def _text(element: etree._Element) -> str:
    return "".join(t for t in element.itertext() if isinstance(t, str))


def _is(element: etree._Element, namespace: str, local: str) -> bool:
    qn = etree.QName(element)
    return qn.namespace == namespace and qn.localname == local


def _check_envelope(root: etree._Element) -> tuple[etree._Element | None, etree._Element]:
    """Envelope, then at most one Header before exactly one Body, all SOAP 1.2 (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding; NIST XDS toolkit validators; NIST)."""
    qn = etree.QName(root)
    if qn.localname != "Envelope" or qn.namespace != _S:
        found = "SOAP 1.1 " if qn.namespace == ns.SOAP11 else ""
        raise RemoteProtocolError(
            f"the root element is {found}{_name(root)}, not a SOAP 1.2 S:Envelope ({_S})",
            code="soap-version",
            location=_name(root),
            fault_code="VersionMismatch",
        )
    header: etree._Element | None = None
    body: etree._Element | None = None
    for child in _elements(root):
        local = etree.QName(child).localname
        if local in ("Header", "Body") and etree.QName(child).namespace != _S:
            raise _sender(
                f"S:Envelope/{_name(child)} is not in the SOAP 1.2 namespace {_S}",
                f"S:Envelope/{_name(child)}",
            )
        if _is(child, _S, "Header"):
            if header is not None:
                raise _sender("S:Envelope has more than one S:Header", "S:Envelope/S:Header[2]")
            if body is not None:
                raise _sender("S:Header must come before S:Body", "S:Envelope/S:Header")
            header = child
        elif _is(child, _S, "Body"):
            if body is not None:
                raise _sender("S:Envelope has more than one S:Body", "S:Envelope/S:Body[2]")
            body = child
        else:
            raise _sender(
                f"unexpected element {_name(child)} in S:Envelope (only S:Header and S:Body are allowed)",
                f"S:Envelope/{_name(child)}",
            )
    if body is None:
        raise _sender("S:Envelope has no S:Body", "S:Envelope/S:Body")
    return header, body


@dataclass
class _Headers:
    """Mutable scratch state while walking the header blocks of one request."""

    wsa: dict[str, etree._Element] = field(default_factory=dict)
    block: etree._Element | None = None
    top_level: etree._Element | None = None
    any_wsa_must_understand: bool = False


def _must_understand_value(element: etree._Element, where: str) -> bool:
    value = element.get(_MUST_UNDERSTAND)
    if value is None:
        return False
    text = value.strip()
    if text not in ("true", "1", "false", "0"):
        raise _sender(
            f"{where}/@S:mustUnderstand is {text!r}, not an xs:boolean", f"{where}/@S:mustUnderstand"
        )
    return text in ("true", "1")


_NCNAME = re.compile(r"[A-Za-z_][\w.\-]*")

#: Prefixes an operator may use when naming a header block to treat as understood (``wsse:Security``).
_HEADER_PREFIXES = {"wsse": ns.WSSE, "wsa": ns.WSA, "direct": ns.DIRECT, "soap": ns.SOAP, "S": ns.SOAP}


def header_qname(name: str) -> str:
    """A header block name as given by an operator (``{namespace}local`` or ``wsse:Security``, with the
    prefixes wsse, wsa, direct, soap) -> Clark notation, the form :func:`read_request_envelope` compares.

    Raises :class:`~xdr_edge.errors.ConfigurationError` naming the text when it is neither."""
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
    where = f"S:Header/{_name(block)}"
    must = _must_understand_value(block, where)
    qn = etree.QName(block)
    if qn.namespace == ns.WSA and qn.localname in _WSA_KNOWN:
        if qn.localname in state.wsa and qn.localname in _WSA_SINGLE:
            raise _sender(
                f"{where} appears more than once (WS-Addressing allows one)",
                where,
                code="ws-addressing",
                subcode="wsa:InvalidAddressingHeader",
            )
        state.wsa.setdefault(qn.localname, block)
        state.any_wsa_must_understand |= must
        return
    if _is(block, ns.DIRECT, "addressBlock"):
        if state.block is not None:
            raise _sender(
                f"{where} appears more than once (XDR and XDM for Direct Messaging §4.1)",
                where,
                code="direct-address-block",
            )
        state.block = block
        return
    if _is(block, ns.DIRECT, "metadata-level"):
        if state.top_level is not None:
            raise _sender(f"{where} appears more than once", where, code="direct-metadata-level")
        state.top_level = block
        return
    role = (block.get(_ROLE) or "").strip()
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
        raise _sender(
            f"{where} is missing; WS-Addressing requires it (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding)",
            where,
            code="ws-addressing",
            subcode="wsa:MessageAddressingHeaderRequired",
        )
    return _text(element)


def _address(element: etree._Element, where: str, findings: list[Finding]) -> DirectAddress | None:
    """The address, or None with an error finding: an unusable address is a metadata error answered with a
    RegistryResponse Failure (our practice-binding rule), so the rest of the request is still read and reported."""
    try:
        return DirectAddress.parse(_text(element))
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
    text = _text(element).strip()
    if text not in _LEVELS:
        raise _sender(
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
    for child in _elements(block):
        if _is(child, ns.DIRECT, "from"):
            senders += 1
            if senders > 1:
                raise _sender(f"{base}/direct:from appears more than once", f"{base}/direct:from[2]")
            result.direct_from = _address(child, f"{base}/direct:from", findings)
        elif _is(child, ns.DIRECT, "to"):
            recipients += 1
            address = _address(child, f"{base}/direct:to[{recipients}]", findings)
            if address is not None:
                addresses.append(address)
        elif _is(child, ns.DIRECT, "metadata-level"):
            if result.level is not None:
                raise _sender(
                    f"{base}/direct:metadata-level appears more than once", f"{base}/direct:metadata-level"
                )
            result.level = _level(child, f"{base}/direct:metadata-level")
        elif _is(child, ns.DIRECT, FINAL_DESTINATION_DELIVERY):
            where = f"{base}/direct:{FINAL_DESTINATION_DELIVERY}"
            if result.final_destination_delivery is not None:
                raise _sender(f"{where} appears more than once", where, code="direct-address-block")
            result.final_destination_delivery = _delivery_request(child, where, findings)
    result.direct_to = tuple(addresses)
    return result


def _delivery_request(element: etree._Element, where: str, findings: list[Finding]) -> bool:
    """``true``/``false`` (xs:boolean, so also 1/0). Anything else is an error finding, answered with a
    Failure: a sender that asked for a delivery notification in a form we cannot read must not believe it
    will get one (ETT MT 31 sends such requests and expects them handled, not ignored)."""
    text = _text(element).strip()
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
    elif not _text(state.wsa["To"]).strip().startswith("http"):
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
        raise _sender(
            "S:Header/wsa:ReplyTo has no wsa:Address",
            "S:Header/wsa:ReplyTo/wsa:Address",
            code="ws-addressing",
            subcode="wsa:InvalidAddressingHeader",
        )
    value = _text(address).strip()
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
            raise _sender(
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
                "XDSMissingDocumentMetadata",
                Severity.ERROR,
                f"{where}/@id",
                "xdsb:Document has no @id",
                "xdsb-document-id",
            )
        )
        entry_id = ""
    children = _elements(slot)
    if not children:
        text = "".join((slot.text or "").split())
        try:
            return DocumentRef(entry_id, inline=base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise _sender(f"{where} is neither an xop:Include nor valid base64 text", where) from exc
    if len(children) != 1 or not _is(children[0], ns.XOP, "Include") or (slot.text or "").strip():
        raise _sender(f"{where} must hold base64 text or exactly one xop:Include", where)
    content_id = content_id_of(children[0].get("href") or "")
    if content_id is None:
        # Only references to parts of this package; never follow another URL (XOP 1.0 §3, RFC 2392, XOP 1.0 §3).
        raise _sender(f"{where}/xop:Include/@href must be a cid: URL", f"{where}/xop:Include/@href")
    return DocumentRef(entry_id, content_id=content_id)


def _read_body(
    body: etree._Element, findings: list[Finding]
) -> tuple[etree._Element | None, tuple[DocumentRef, ...]]:
    children = _elements(body)
    if len(children) != 1:
        raise _sender(f"S:Body must have exactly one child element, found {len(children)}", "S:Body")
    request = children[0]
    if not _is(request, ns.XDSB, "ProvideAndRegisterDocumentSetRequest"):
        raise _sender(
            f"S:Body/{_name(request)} is not xdsb:ProvideAndRegisterDocumentSetRequest ({ns.XDSB})",
            f"S:Body/{_name(request)}",
        )
    submit = request.find(qname(ns.LCM, "SubmitObjectsRequest"))
    documents: list[DocumentRef] = []
    for child in _elements(request):
        if _is(child, ns.XDSB, "Document"):
            documents.append(_read_document(child, len(documents) + 1, findings))
        elif child is not submit:
            _warn(
                findings,
                f"S:Body/xdsb:ProvideAndRegisterDocumentSetRequest/{_name(child)}",
                "unexpected element ignored",
                "xdsb-unexpected-element",
            )
    cids = Counter(d.content_id for d in documents if d.content_id is not None)
    twice = sorted(c for c, n in cids.items() if n > 1)
    if twice:
        raise _sender(
            f"the same MIME part is referenced by more than one xdsb:Document (DTS 432): {', '.join(twice)}",
            "xdsb:Document/xop:Include/@href",
        )
    return submit, tuple(documents)


def read_request_envelope(
    xml: bytes, *, understood_headers: Collection[str] = frozenset()
) -> RequestEnvelope:
    """Read an ITI-41 request envelope (the XOP root part, or a whole simple-SOAP request).

    ``understood_headers`` (Clark names, see :func:`header_qname`) are header blocks accepted and ignored even
    when marked ``mustUnderstand``; any other such block aimed at us is a MustUnderstand fault.

    Faults (as :class:`RemoteProtocolError` with ``fault_code``/``fault_subcode``, SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3) for what makes
    the message unprocessable; findings for what we tolerate: bare MessageID, no ReplyTo, no metadata-level
    (treated as XDS by the caller, XDR and XDM for Direct Messaging §6.1.1), no addressBlock (sender from the metadata, XDR and XDM for Direct Messaging §4.1). A direct:from or
    direct:to that is not a Direct address is an error finding (XDSRepositoryMetadataError, our practice-binding rule) and is left
    out of ``direct_from``/``direct_to``, so the caller answers with a Failure that lists every problem.
    """
    root = parse(xml, what="SOAP envelope", huge=len(xml) > _HUGE_INPUT)
    header, body = _check_envelope(root)
    try:
        return _read_request(header, body, understood_headers)
    except RemoteProtocolError as exc:
        exc.relates_to = _readable_message_id(header)
        raise


def _readable_message_id(header: etree._Element | None) -> str | None:
    """The request's MessageID for the RelatesTo of a fault answer, when there is exactly one usable one."""
    if header is None:
        return None
    found = [e for e in _elements(header) if _is(e, ns.WSA, "MessageID")]
    if len(found) != 1:
        return None
    text = _text(found[0]).strip()
    return text if _message_id_problem(text) is None else None


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
    for block in _elements(header) if header is not None else []:
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
        raise _sender(
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
        to=_text(to).strip() if to is not None else None,
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


# ----------------------------------------------------------------------------------------------------
# Responses and faults


def _envelope(headers: Sequence[etree._Element]) -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element(qname(_S, "Envelope"), nsmap={"S": _S, "wsa": ns.WSA})
    header = etree.SubElement(envelope, qname(_S, "Header"))
    for element in headers:
        header.append(element)
    return envelope, etree.SubElement(envelope, qname(_S, "Body"))


def _reply_headers(action: str, message_id: str, relates_to: str | None) -> list[etree._Element]:
    headers = [_must_understand(_wsa("Action", action)), _wsa("MessageID", message_id)]
    if relates_to is not None:
        headers.append(_wsa("RelatesTo", relates_to))
    return headers


def _serialize(envelope: etree._Element) -> bytes:
    etree.cleanup_namespaces(
        envelope, top_nsmap={"S": _S, "wsa": ns.WSA}, keep_ns_prefixes=["S", "wsa", "sub", "nu"]
    )
    return tostring(envelope)


def build_response_envelope(body: etree._Element, *, relates_to: str, message_id: str) -> bytes:
    """The ITI-41 response: Action ``...-bResponse`` (mustUnderstand), MessageID, RelatesTo = the request's
    MessageID (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding), and ``body`` (normally ``response.write_registry_response(...)``), copied."""
    envelope, body_el = _envelope(_reply_headers(ns.ACTION_PNR_RESPONSE, message_id, relates_to))
    body_el.append(copy.deepcopy(body))
    return _serialize(envelope)


def _add_subcode(code: etree._Element, subcode: str) -> None:
    """``wsa:X`` is written as is (``wsa`` is bound on the envelope); Clark ``{ns}X`` gets a prefix of its own
    declared on the Value element, since a QName in text content needs an in-scope prefix."""
    sub = etree.SubElement(code, qname(_S, "Subcode"))
    if subcode.startswith("{"):
        namespace, _, local = subcode[1:].partition("}")
        if namespace == ns.WSA:
            etree.SubElement(sub, qname(_S, "Value")).text = f"wsa:{local}"
        else:
            etree.SubElement(sub, qname(_S, "Value"), nsmap={"sub": namespace}).text = f"sub:{local}"
    elif subcode.startswith("wsa:"):
        etree.SubElement(sub, qname(_S, "Value")).text = subcode
    else:
        raise LocalProtocolError(
            f"a fault subcode must be a wsa: QName or {{namespace}}local, got {subcode!r}"
        )


def _fault_detail(fault: Fault, fault_el: etree._Element) -> None:
    """WS-A SOAP binding §6: ProblemHeaderQName for header faults, ProblemAction for ActionNotSupported.
    Other details stay out of the wire form (SOAP Detail content must be elements; the reason says it all)."""
    if fault.detail is None or fault.subcode is None or not fault.subcode.startswith("wsa:"):
        return
    detail = etree.SubElement(fault_el, qname(_S, "Detail"))
    if fault.subcode == "wsa:ActionNotSupported":
        problem = etree.SubElement(detail, qname(ns.WSA, "ProblemAction"))
        etree.SubElement(problem, qname(ns.WSA, "Action")).text = fault.detail
    else:
        parts = fault.detail.split("/")
        name = parts[1] if parts[0] == "S:Header" and len(parts) > 1 else parts[-1]
        etree.SubElement(detail, qname(ns.WSA, "ProblemHeaderQName")).text = name


def _not_understood(clark: str) -> etree._Element:
    """SOAP 1.2 Part 1 §5.4.8: ``env:NotUnderstood qname="p:local"`` naming the block we did not understand."""
    namespace, _, local = clark[1:].partition("}")
    element = etree.Element(qname(_S, "NotUnderstood"), nsmap={"S": _S, "nu": namespace})
    element.set("qname", f"nu:{local}")
    return element


def build_fault_envelope(fault: Fault, *, relates_to: str | None, message_id: str) -> bytes:
    """A SOAP 1.2 fault reply (SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3): Code/Value, optional Subcode/Value, Reason/Text xml:lang="en",
    with WS-A Action = the WS-A fault action and RelatesTo = the request MessageID when one was read."""
    if fault.code not in _FAULT_CODES:
        raise LocalProtocolError(
            f"unknown SOAP 1.2 fault code {fault.code!r}: expected one of {_FAULT_CODES}"
        )
    headers = _reply_headers(ns.ACTION_FAULT, message_id, relates_to)
    if fault.code == "MustUnderstand" and fault.detail is not None and fault.detail.startswith("{"):
        headers.append(_not_understood(fault.detail))
    envelope, body = _envelope(headers)
    fault_el = etree.SubElement(body, qname(_S, "Fault"))
    code = etree.SubElement(fault_el, qname(_S, "Code"))
    etree.SubElement(code, qname(_S, "Value")).text = f"S:{fault.code}"
    if fault.subcode is not None:
        _add_subcode(code, fault.subcode)
    reason = etree.SubElement(etree.SubElement(fault_el, qname(_S, "Reason")), qname(_S, "Text"))
    reason.set(qname(ns.XML, "lang"), "en")
    reason.text = fault.reason
    _fault_detail(fault, fault_el)
    return _serialize(envelope)


def fault_http_status(fault: Fault) -> int:
    """SOAP 1.2 Part 2 §7.5.2.2 (Table 23): 400 for ``Sender``, 500 for every other fault code.

    VersionMismatch and MustUnderstand are 500 in that table, not 400 (the SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3 line agrees: "400 for
    Sender faults, 500 for Receiver/others").
    """
    return 400 if fault.code == "Sender" else 500


def _resolve_qname(element: etree._Element) -> tuple[str | None, str]:
    text = _text(element).strip()
    prefix, _, local = text.rpartition(":")
    return element.nsmap.get(prefix or None), local


def _read_fault(element: etree._Element) -> Fault:
    value = element.find(f"{qname(_S, 'Code')}/{qname(_S, 'Value')}")
    if value is None:
        raise RemoteProtocolError(
            "S:Fault has no S:Code/S:Value", code="soap-fault", location="S:Body/S:Fault"
        )
    namespace, code = _resolve_qname(value)
    if namespace != _S:
        code = _text(value).strip()
    subcode: str | None = None
    sub = element.find(f"{qname(_S, 'Code')}/{qname(_S, 'Subcode')}/{qname(_S, 'Value')}")
    if sub is not None:
        sub_ns, sub_local = _resolve_qname(sub)
        subcode = (
            f"wsa:{sub_local}" if sub_ns == ns.WSA else f"{{{sub_ns}}}{sub_local}" if sub_ns else sub_local
        )
    texts = element.findall(f"{qname(_S, 'Reason')}/{qname(_S, 'Text')}")
    english = [t for t in texts if (t.get(qname(ns.XML, "lang")) or "").lower().startswith("en")]
    reason = _text((english or texts)[0]).strip() if texts else ""
    detail_el = element.find(qname(_S, "Detail"))
    detail = " ".join(_text(detail_el).split()) if detail_el is not None else None
    return Fault(code, reason, subcode, detail or None)


def read_response_envelope(xml: bytes) -> ResponseEnvelope:
    """Read a reply: a SOAP 1.2 envelope holding a RegistryResponse or a Fault (HTTP 200, 400 or 500 alike,
    SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3), or a bare ``rs:RegistryResponse`` document (for ``inspect``)."""
    root = parse(xml, what="SOAP response")
    if etree.QName(root).namespace == ns.RS:
        return ResponseEnvelope(None, None, None, root, None)
    header, body = _check_envelope(root)
    values: dict[str, str] = {}
    for block in _elements(header) if header is not None else []:
        qn = etree.QName(block)
        if qn.namespace == ns.WSA and qn.localname in ("Action", "RelatesTo", "MessageID"):
            values.setdefault(qn.localname, _text(block).strip())
    children = _elements(body)
    if len(children) > 1:
        raise RemoteProtocolError(
            f"S:Body of the reply has {len(children)} children, expected one",
            code="soap-envelope",
            location="S:Body",
        )
    child = children[0] if children else None
    fault = _read_fault(child) if child is not None and _is(child, _S, "Fault") else None
    return ResponseEnvelope(
        values.get("Action"),
        values.get("RelatesTo"),
        values.get("MessageID"),
        None if fault is not None else child,
        fault,
    )
