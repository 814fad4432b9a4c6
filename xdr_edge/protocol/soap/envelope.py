"""What the SOAP 1.2 envelope's readers and writers share: the fault and document-reference values, the level
placement, the header-family codes of tolerated deviations, and small element helpers.

SOAP 1.2 Part 1 §5 (envelope, header blocks, mustUnderstand, role, relay), WS-Addressing 1.0 Core and SOAP
Binding, and the Direct address block of "XDR and XDM for Direct Messaging" §4.1. Pure: lxml elements only.
"""

from __future__ import annotations

__all__ = [
    "BODY_WARNING",
    "DIRECT_WARNING",
    "FINAL_DESTINATION_DELIVERY",
    "MUST_UNDERSTAND",
    "RELAY",
    "ROLE",
    "SOAP_NS",
    "WSA_WARNING",
    "DocumentRef",
    "Fault",
    "LevelPlacement",
    "check_envelope",
    "child_elements",
    "element_name",
    "is_element",
    "must_understand",
    "sender_fault",
    "text_of",
    "wsa_element",
]

from dataclasses import dataclass
from enum import Enum

from lxml import etree

from xdr_edge.protocol import ns
from xdr_edge.protocol.errors import LocalProtocolError, RemoteProtocolError
from xdr_edge.protocol.xml import qname

#: ``Finding.code`` of the tolerated envelope deviations (warnings). They are not faults (a fault code such as
#: ``env:Sender`` would tell a reader of the RegistryResponse the request was refused) and not XDS registry
#: errors: the code names the header family whose rule was bent, the ``rule`` says which rule.
WSA_WARNING = "WS-Addressing"
DIRECT_WARNING = "DirectAddressing"
BODY_WARNING = "ITI-41"

#: Delivery Notification IG §1.3 (XDR and XDM for Direct Messaging §4.1): the addressBlock child asking for final-destination delivery.
FINAL_DESTINATION_DELIVERY = "X-DIRECT-FINAL-DESTINATION-DELIVERY"

SOAP_NS = ns.SOAP
MUST_UNDERSTAND = qname(SOAP_NS, "mustUnderstand")
ROLE = qname(SOAP_NS, "role")
RELAY = qname(SOAP_NS, "relay")


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
class Fault:
    """A SOAP 1.2 fault: ``code`` is the local name of ``env:Code/env:Value`` (``Sender``, ``Receiver``,
    ``VersionMismatch``, ``MustUnderstand``); ``subcode`` a QName string such as
    ``wsa:MessageAddressingHeaderRequired`` (or Clark notation for other namespaces); ``detail`` a short text
    (for WS-Addressing faults the problem header QName or action, WS-A SOAP binding §6); ``subsubcode`` the
    Subcode nested in ``subcode`` (``wsa:ActionMismatch`` under ``wsa:InvalidAddressingHeader``, WS-A SOAP binding
    §6.4.1)."""

    code: str
    reason: str
    subcode: str | None = None
    detail: str | None = None
    subsubcode: str | None = None

    @property
    def is_addressing_fault(self) -> bool:
        """Whether WS-Addressing itself raised this fault: its subcode is one of the WS-Addressing fault codes
        (``wsa:MessageAddressingHeaderRequired``, ``wsa:InvalidAddressingHeader``, ``wsa:ActionNotSupported``,
        ... in the WS-Addressing namespace, WS-Addressing 1.0 SOAP Binding §6.4). Such a fault travels with
        ``wsa:Action`` ``.../addressing/fault`` (§6), every other one with ``.../addressing/soap/fault``."""
        subcode = self.subcode or ""
        return subcode.startswith(("wsa:", f"{{{ns.WSA}}}"))

    @classmethod
    def from_error(cls, exc: RemoteProtocolError) -> Fault:
        """The fault a receiver answers with for ``exc`` (a metadata error without a fault code is a Sender
        problem; callers normally answer those with a RegistryResponse Failure instead, SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3)."""
        header_fault = exc.fault_subcode in (
            "wsa:MessageAddressingHeaderRequired",
            "wsa:InvalidAddressingHeader",
        )
        detail = exc.location if header_fault else exc.fault_detail
        subsubcode = exc.fault_subsubcode if exc.fault_subcode is not None else None
        return cls(exc.fault_code or "Sender", str(exc), exc.fault_subcode, detail, subsubcode)


def must_understand(element: etree._Element) -> etree._Element:
    element.set(MUST_UNDERSTAND, "true")
    return element


def wsa_element(local: str, text: str | None = None) -> etree._Element:
    element = etree.Element(qname(ns.WSA, local), nsmap={"wsa": ns.WSA, "S": SOAP_NS})
    if text is not None:
        element.text = text
    return element


def sender_fault(
    message: str, location: str, *, code: str = "soap-envelope", subcode: str | None = None
) -> RemoteProtocolError:
    return RemoteProtocolError(
        message, code=code, location=location, fault_code="Sender", fault_subcode=subcode
    )


def element_name(element: etree._Element) -> str:
    """A readable name for messages: ``S:Header``, ``wsa:Action``, ``direct:to`` or ``{ns}local``."""
    qn = etree.QName(element)
    for prefix, uri in (
        ("S", SOAP_NS),
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


def child_elements(parent: etree._Element) -> list[etree._Element]:
    return [c for c in parent if isinstance(c.tag, str)]


def text_of(element: etree._Element) -> str:
    return "".join(t for t in element.itertext() if isinstance(t, str))


def is_element(element: etree._Element, namespace: str, local: str) -> bool:
    qn = etree.QName(element)
    return qn.namespace == namespace and qn.localname == local


def check_envelope(root: etree._Element) -> tuple[etree._Element | None, etree._Element]:
    """Envelope, then at most one Header before exactly one Body, all SOAP 1.2 (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding; NIST XDS toolkit validators; NIST)."""
    qn = etree.QName(root)
    if qn.localname != "Envelope" or qn.namespace != SOAP_NS:
        found = "SOAP 1.1 " if qn.namespace == ns.SOAP11 else ""
        raise RemoteProtocolError(
            f"the root element is {found}{element_name(root)}, not a SOAP 1.2 S:Envelope ({SOAP_NS})",
            code="soap-version",
            location=element_name(root),
            fault_code="VersionMismatch",
        )
    header: etree._Element | None = None
    body: etree._Element | None = None
    for child in child_elements(root):
        local = etree.QName(child).localname
        if local in ("Header", "Body") and etree.QName(child).namespace != SOAP_NS:
            raise sender_fault(
                f"S:Envelope/{element_name(child)} is not in the SOAP 1.2 namespace {SOAP_NS}",
                f"S:Envelope/{element_name(child)}",
            )
        if is_element(child, SOAP_NS, "Header"):
            if header is not None:
                raise sender_fault("S:Envelope has more than one S:Header", "S:Envelope/S:Header[2]")
            if body is not None:
                raise sender_fault("S:Header must come before S:Body", "S:Envelope/S:Header")
            header = child
        elif is_element(child, SOAP_NS, "Body"):
            if body is not None:
                raise sender_fault("S:Envelope has more than one S:Body", "S:Envelope/S:Body[2]")
            body = child
        else:
            raise sender_fault(
                f"unexpected element {element_name(child)} in S:Envelope (only S:Header and S:Body are allowed)",
                f"S:Envelope/{element_name(child)}",
            )
    if body is None:
        raise sender_fault("S:Envelope has no S:Body", "S:Envelope/S:Body")
    return header, body
