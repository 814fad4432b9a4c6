"""Replies to ITI-41: the RegistryResponse envelope and SOAP 1.2 faults, written and read.

The response carries ``wsa:Action`` ``...-bResponse`` (mustUnderstand) and ``wsa:RelatesTo`` = the request's
MessageID (ITI TF-2x V.3.2, WS-Addressing 1.0 Core §3.4); a fault carries the WS-Addressing fault action and its
code, subcode and reason (SOAP 1.2 Part 1 §5.4, WS-Addressing 1.0 SOAP Binding §6). The RegistryResponse content
itself is :mod:`xdr_edge.protocol.response`. Pure: elements and bytes in and out.
"""

from __future__ import annotations

__all__ = [
    "ResponseEnvelope",
    "build_fault_envelope",
    "build_response_envelope",
    "fault_action",
    "fault_http_status",
    "read_response_envelope",
]

import copy
from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from xdr_edge.protocol import ns
from xdr_edge.protocol.errors import LocalProtocolError, RemoteProtocolError
from xdr_edge.protocol.soap.envelope import (
    SOAP_NS,
    Fault,
    check_envelope,
    child_elements,
    is_element,
    must_understand,
    text_of,
    wsa_element,
)
from xdr_edge.protocol.xml import parse, qname, reply_text, tostring

_FAULT_CODES = ("VersionMismatch", "MustUnderstand", "DataEncodingUnknown", "Sender", "Receiver")


@dataclass(frozen=True)
class ResponseEnvelope:
    """A reply as read: WS-A headers (None when absent) and either the Body child or the fault."""

    action: str | None
    relates_to: str | None
    message_id: str | None
    body: etree._Element | None
    fault: Fault | None


def _envelope(headers: Sequence[etree._Element]) -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element(qname(SOAP_NS, "Envelope"), nsmap={"S": SOAP_NS, "wsa": ns.WSA})
    header = etree.SubElement(envelope, qname(SOAP_NS, "Header"))
    for element in headers:
        header.append(element)
    return envelope, etree.SubElement(envelope, qname(SOAP_NS, "Body"))


def _reply_headers(action: str, message_id: str, relates_to: str | None) -> list[etree._Element]:
    headers = [must_understand(wsa_element("Action", action)), wsa_element("MessageID", message_id)]
    if relates_to is not None:
        headers.append(wsa_element("RelatesTo", relates_to))
    return headers


def _serialize(envelope: etree._Element) -> bytes:
    etree.cleanup_namespaces(
        envelope, top_nsmap={"S": SOAP_NS, "wsa": ns.WSA}, keep_ns_prefixes=["S", "wsa", "sub", "nu"]
    )
    return tostring(envelope)


def build_response_envelope(body: etree._Element, *, relates_to: str, message_id: str) -> bytes:
    """The ITI-41 response: Action ``...-bResponse`` (mustUnderstand), MessageID, RelatesTo = the request's
    MessageID (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding), and ``body`` (normally ``response.write_registry_response(...)``), copied."""
    envelope, body_el = _envelope(_reply_headers(ns.ACTION_PNR_RESPONSE, message_id, relates_to))
    body_el.append(copy.deepcopy(body))
    return _serialize(envelope)


def _add_subcode(code: etree._Element, subcode: str) -> etree._Element:
    """``wsa:X`` is written as is (``wsa`` is bound on the envelope); Clark ``{ns}X`` gets a prefix of its own
    declared on the Value element, since a QName in text content needs an in-scope prefix. Returns the Subcode
    element, which may hold a nested Subcode (SOAP 1.2 Part 1 §5.4.1.3)."""
    sub = etree.SubElement(code, qname(SOAP_NS, "Subcode"))
    if subcode.startswith("{"):
        namespace, _, local = subcode[1:].partition("}")
        if namespace == ns.WSA:
            etree.SubElement(sub, qname(SOAP_NS, "Value")).text = f"wsa:{local}"
        else:
            etree.SubElement(sub, qname(SOAP_NS, "Value"), nsmap={"sub": namespace}).text = f"sub:{local}"
    elif subcode.startswith("wsa:"):
        etree.SubElement(sub, qname(SOAP_NS, "Value")).text = subcode
    else:
        raise LocalProtocolError(
            f"a fault subcode must be a wsa: QName or {{namespace}}local, got {subcode!r}"
        )
    return sub


def _fault_detail(fault: Fault, fault_el: etree._Element) -> None:
    """WS-A SOAP binding §6: ProblemHeaderQName for header faults, ProblemAction for ActionNotSupported.
    Other details stay out of the wire form (SOAP Detail content must be elements; the reason says it all)."""
    if fault.detail is None or fault.subcode is None or not fault.subcode.startswith("wsa:"):
        return
    detail = etree.SubElement(fault_el, qname(SOAP_NS, "Detail"))
    if fault.subcode == "wsa:ActionNotSupported":
        problem = etree.SubElement(detail, qname(ns.WSA, "ProblemAction"))
        etree.SubElement(problem, qname(ns.WSA, "Action")).text = reply_text(fault.detail)
    else:
        parts = fault.detail.split("/")
        name = parts[1] if parts[0] == "S:Header" and len(parts) > 1 else parts[-1]
        etree.SubElement(detail, qname(ns.WSA, "ProblemHeaderQName")).text = reply_text(name)


def _not_understood(clark: str) -> etree._Element:
    """SOAP 1.2 Part 1 §5.4.8: ``env:NotUnderstood qname="p:local"`` naming the block we did not understand."""
    namespace, _, local = clark[1:].partition("}")
    element = etree.Element(qname(SOAP_NS, "NotUnderstood"), nsmap={"S": SOAP_NS, "nu": namespace})
    element.set("qname", f"nu:{local}")
    return element


def fault_action(fault: Fault) -> str:
    """The ``wsa:Action`` of a fault reply. WS-Addressing 1.0 SOAP Binding §6: the faults WS-Addressing defines
    (a missing or invalid MessageID, Action, To or ReplyTo; an action not supported) carry
    ``http://www.w3.org/2005/08/addressing/fault``; every other SOAP fault (SOAP 1.2 Part 1 §5.4: VersionMismatch,
    MustUnderstand, Sender and Receiver faults of ITI-41 processing) carries
    ``http://www.w3.org/2005/08/addressing/soap/fault``."""
    return ns.ACTION_WSA_FAULT if fault.is_addressing_fault else ns.ACTION_FAULT


def build_fault_envelope(fault: Fault, *, relates_to: str | None, message_id: str) -> bytes:
    """A SOAP 1.2 fault reply (SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3): Code/Value, optional Subcode/Value, Reason/Text xml:lang="en",
    with WS-A Action = :func:`fault_action` and RelatesTo = the request MessageID when one was read. The
    reason and detail texts pass through :func:`~xdr_edge.protocol.xml.reply_text` (XML-safe, short)."""
    if fault.code not in _FAULT_CODES:
        raise LocalProtocolError(
            f"unknown SOAP 1.2 fault code {fault.code!r}: expected one of {_FAULT_CODES}"
        )
    headers = _reply_headers(fault_action(fault), message_id, relates_to)
    if fault.code == "MustUnderstand" and fault.detail is not None and fault.detail.startswith("{"):
        headers.append(_not_understood(fault.detail))
    envelope, body = _envelope(headers)
    fault_el = etree.SubElement(body, qname(SOAP_NS, "Fault"))
    code = etree.SubElement(fault_el, qname(SOAP_NS, "Code"))
    etree.SubElement(code, qname(SOAP_NS, "Value")).text = f"S:{fault.code}"
    if fault.subcode is not None:
        sub = _add_subcode(code, fault.subcode)
        if fault.subsubcode is not None:
            _add_subcode(sub, fault.subsubcode)
    reason = etree.SubElement(etree.SubElement(fault_el, qname(SOAP_NS, "Reason")), qname(SOAP_NS, "Text"))
    reason.set(qname(ns.XML, "lang"), "en")
    reason.text = reply_text(fault.reason)  # may quote what the peer sent: made XML-safe and short
    _fault_detail(fault, fault_el)
    return _serialize(envelope)


def fault_http_status(fault: Fault) -> int:
    """SOAP 1.2 Part 2 §7.5.2.2 (Table 23): 400 for ``Sender``, 500 for every other fault code.

    VersionMismatch and MustUnderstand are 500 in that table, not 400 (the SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3 line agrees: "400 for
    Sender faults, 500 for Receiver/others").
    """
    return 400 if fault.code == "Sender" else 500


def _resolve_qname(element: etree._Element) -> tuple[str | None, str]:
    text = text_of(element).strip()
    prefix, _, local = text.rpartition(":")
    return element.nsmap.get(prefix or None), local


def _read_fault(element: etree._Element) -> Fault:
    value = element.find(f"{qname(SOAP_NS, 'Code')}/{qname(SOAP_NS, 'Value')}")
    if value is None:
        raise RemoteProtocolError(
            "S:Fault has no S:Code/S:Value", code="soap-fault", location="S:Body/S:Fault"
        )
    namespace, code = _resolve_qname(value)
    if namespace != SOAP_NS:
        code = text_of(value).strip()
    subcodes: list[str] = []
    parent = element.find(qname(SOAP_NS, "Code"))
    while parent is not None and len(subcodes) < 2:
        parent = parent.find(qname(SOAP_NS, "Subcode"))
        sub = parent.find(qname(SOAP_NS, "Value")) if parent is not None else None
        if sub is None:
            break
        sub_ns, sub_local = _resolve_qname(sub)
        subcodes.append(
            f"wsa:{sub_local}" if sub_ns == ns.WSA else f"{{{sub_ns}}}{sub_local}" if sub_ns else sub_local
        )
    texts = element.findall(f"{qname(SOAP_NS, 'Reason')}/{qname(SOAP_NS, 'Text')}")
    english = [t for t in texts if (t.get(qname(ns.XML, "lang")) or "").lower().startswith("en")]
    reason = text_of((english or texts)[0]).strip() if texts else ""
    detail_el = element.find(qname(SOAP_NS, "Detail"))
    detail = " ".join(text_of(detail_el).split()) if detail_el is not None else None
    subcode = subcodes[0] if subcodes else None
    subsubcode = subcodes[1] if len(subcodes) > 1 else None
    return Fault(code, reason, subcode, detail or None, subsubcode)


def read_response_envelope(xml: bytes) -> ResponseEnvelope:
    """Read a reply: a SOAP 1.2 envelope holding a RegistryResponse or a Fault (HTTP 200, 400 or 500 alike,
    SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3), or a bare ``rs:RegistryResponse`` document (for ``inspect``)."""
    root = parse(xml, what="SOAP response")
    if etree.QName(root).namespace == ns.RS:
        return ResponseEnvelope(None, None, None, root, None)
    header, body = check_envelope(root)
    values: dict[str, str] = {}
    for block in child_elements(header) if header is not None else []:
        qn = etree.QName(block)
        if qn.namespace == ns.WSA and qn.localname in ("Action", "RelatesTo", "MessageID"):
            values.setdefault(qn.localname, text_of(block).strip())
    children = child_elements(body)
    if len(children) > 1:
        raise RemoteProtocolError(
            f"S:Body of the reply has {len(children)} children, expected one",
            code="soap-envelope",
            location="S:Body",
        )
    child = children[0] if children else None
    fault = _read_fault(child) if child is not None and is_element(child, SOAP_NS, "Fault") else None
    return ResponseEnvelope(
        values.get("Action"),
        values.get("RelatesTo"),
        values.get("MessageID"),
        None if fault is not None else child,
        fault,
    )
