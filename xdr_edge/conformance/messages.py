"""The messages the receiver cases send: valid submissions, and one-defect mutations of a valid request.

Every message starts as a valid request built by our own composer and wire writer; a negative case mutates the
root XML with lxml (and, where the defect is about documents, the list of MIME parts) and frames it again, so
exactly one thing is wrong in it.
"""

from __future__ import annotations

__all__ = [
    "UNREACHABLE_RECIPIENT",
    "body_wrong_namespace",
    "delivery_request",
    "delivery_request_unreachable",
    "drop_associations",
    "drop_attribute",
    "drop_creation_time",
    "drop_document",
    "drop_external_identifier",
    "drop_second_entry",
    "header_unqualified",
    "mutated",
    "no_address_block",
    "no_sender_anywhere",
    "plain_soap_request",
    "remove_wsa",
    "several_recipients",
    "soap11",
    "unbound_sender",
    "unknown_action",
    "unreadable_delivery_request",
    "valid",
    "wrong_hash",
    "wrong_size",
]

import dataclasses
from collections.abc import Callable, Sequence

from lxml import etree

from xdr_edge.conformance.receiver_context import Mutation, Prepared, ReceiverContext
from xdr_edge.protocol import ns
from xdr_edge.protocol.model import DirectAddress, MetadataLevel
from xdr_edge.protocol.mtom import MtomPart
from xdr_edge.protocol.soap import FINAL_DESTINATION_DELIVERY
from xdr_edge.protocol.xml import qname

_SOAP12_NS = ns.SOAP


_SOAP_2005_03 = (
    "http://www.w3.org/2005/03/soap-envelope"  # ETT negative_bad_soap_body.xml (ONC ETT XDR tests, 4b)
)


def _q(namespace: str, local: str) -> str:
    return f"{{{namespace}}}{local}"


def _all(root: etree._Element, namespace: str, local: str) -> list[etree._Element]:
    return list(root.iter(_q(namespace, local)))


def _text_of(root: etree._Element, namespace: str, local: str) -> str | None:
    found = _all(root, namespace, local)
    return (found[0].text or "").strip() if found else None


def _remove(element: etree._Element) -> None:
    parent = element.getparent()
    if parent is None:
        raise ValueError("cannot remove the root element")
    parent.remove(element)


def _header(root: etree._Element) -> etree._Element:
    header = root.find(_q(_SOAP12_NS, "Header"))
    if header is None:
        raise ValueError("the request built by wire.build_request has no S:Header")
    return header


def _extrinsic(root: etree._Element, entry_id: str = "Document01") -> etree._Element:
    for element in _all(root, ns.RIM, "ExtrinsicObject"):
        if element.get("id") == entry_id:
            return element
    raise ValueError(f"no ExtrinsicObject {entry_id!r} in the request")


def _external_identifier(root: etree._Element, scheme: str) -> etree._Element:
    for element in _all(root, ns.RIM, "ExternalIdentifier"):
        if element.get("identificationScheme") == scheme:
            return element
    raise ValueError(f"no ExternalIdentifier with scheme {scheme}")


def _slot(parent: etree._Element, name: str) -> etree._Element:
    for element in parent.findall(_q(ns.RIM, "Slot")):
        if element.get("name") == name:
            return element
    raise ValueError(f"no Slot {name!r}")


def _slot_value(parent: etree._Element, name: str) -> etree._Element:
    value = _slot(parent, name).find(f"{_q(ns.RIM, 'ValueList')}/{_q(ns.RIM, 'Value')}")
    if value is None:
        raise ValueError(f"Slot {name!r} has no Value")
    return value


def remove_wsa(local: str) -> Mutation:
    def mutate(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
        for element in _all(_header(root), ns.WSA, local):
            _remove(element)
        return parts

    return mutate


def header_unqualified(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    """ETT 4a (``negative_bad_soap.xml``): ``Header`` not in the SOAP namespace."""
    _header(root).tag = "Header"
    return parts


def body_wrong_namespace(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    """ETT 4b (``negative_bad_soap_body.xml``): ``Body`` in the 2005/03 draft namespace."""
    body = root.find(_q(_SOAP12_NS, "Body"))
    assert body is not None
    body.tag = _q(_SOAP_2005_03, "Body")
    return parts


def soap11(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    """Every SOAP 1.2 element and attribute moved to the SOAP 1.1 namespace (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding: not allowed)."""
    for element in root.iter(etree.Element):  # elements only, no comments or PIs
        qn = etree.QName(element)
        if qn.namespace == _SOAP12_NS:
            element.tag = _q(ns.SOAP11, qn.localname)
        for name in list(element.attrib):
            aq = etree.QName(name)
            if aq.namespace == _SOAP12_NS:
                value = element.attrib.pop(name)
                element.set(_q(ns.SOAP11, aq.localname), value)
    return parts


def unknown_action(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    for element in _all(_header(root), ns.WSA, "Action"):
        element.text = "urn:ihe:iti:2007:RegistryStoredQuery"
    return parts


def no_sender_anywhere(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    """ETT 4c plus the XDR and XDM for Direct Messaging §4.1 rule: no addressBlock and no SubmissionSet authorTelecommunication."""
    for element in _all(_header(root), ns.DIRECT, "addressBlock"):
        _remove(element)
    for element in _all(root, ns.RIM, "Classification"):
        if element.get("classificationScheme") == ns.SS_AUTHOR:
            _remove(element)
    return parts


def no_address_block(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    for element in _all(_header(root), ns.DIRECT, "addressBlock"):
        _remove(element)
    return parts


def drop_external_identifier(scheme: str) -> Mutation:
    def mutate(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
        _remove(_external_identifier(root, scheme))
        return parts

    return mutate


def drop_attribute(name: str) -> Mutation:
    def mutate(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
        del _extrinsic(root).attrib[name]
        return parts

    return mutate


def drop_creation_time(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    _remove(_slot(_extrinsic(root), "creationTime"))
    return parts


def drop_associations(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    """ETT 4e (``negative_missing_association.xml``): no HasMember association."""
    for element in _all(root, ns.RIM, "Association"):
        _remove(element)
    return parts


def wrong_hash(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    value = _slot_value(_extrinsic(root), "hash")
    value.text = "0" * 40 if (value.text or "").strip() != "0" * 40 else "1" * 40
    return parts


def wrong_size(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    value = _slot_value(_extrinsic(root), "size")
    value.text = str(int((value.text or "0").strip()) + 1)
    return parts


def drop_second_entry(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    """A Document (and MIME part) whose ExtrinsicObject and association are gone: XDSMissingDocumentMetadata."""
    _remove(_extrinsic(root, "Document02"))
    for element in _all(root, ns.RIM, "Association"):
        if element.get("targetObject") == "Document02":
            _remove(element)
    return parts


def drop_document(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    """The ExtrinsicObject stays; its xdsb:Document and MIME part go: XDSMissingDocument."""
    removed: set[str] = set()
    for element in _all(root, ns.XDSB, "Document"):
        if element.get("id") == "Document01":
            for include in element.iter(_q(ns.XOP, "Include")):
                removed.add((include.get("href") or "")[4:])
            _remove(element)
    return [p for p in parts if p.content_id not in removed]


def valid(
    kinds: Sequence[str] = ("ccda",), level: MetadataLevel = MetadataLevel.MINIMAL
) -> Callable[[ReceiverContext], Prepared]:
    return lambda ctx: ctx.frame(ctx.submission(kinds, level=level))


def mutated(
    mutate: Mutation,
    kinds: Sequence[str] = ("ccda",),
    level: MetadataLevel = MetadataLevel.MINIMAL,
    *,
    envelope_intact: bool = True,
) -> Callable[[ReceiverContext], Prepared]:
    """A valid request with ``mutate`` applied; ``envelope_intact=False`` when the mutation breaks the SOAP 1.2
    envelope itself (the answer then need not name our MessageID, :class:`.receiver_context.Prepared`)."""
    return lambda ctx: ctx.frame(ctx.submission(kinds, level=level), mutate, envelope_intact=envelope_intact)


def several_recipients(ctx: ReceiverContext) -> Prepared:
    recipients = list(ctx.target.recipients)
    if len(recipients) < 2:
        first = recipients[0]
        recipients.append(DirectAddress.parse(f"conformance.second@{first.domain}"))
    return ctx.frame(ctx.submission(recipients=recipients))


def delivery_request(ctx: ReceiverContext) -> Prepared:
    """ETT MT 30: a valid message whose address block asks for final-destination delivery (XDR and XDM for Direct Messaging §4.1)."""
    return ctx.frame(dataclasses.replace(ctx.submission(), final_destination_delivery=True))


#: A recipient no HISP can reach: the ``.invalid`` top-level domain never resolves (RFC 2606).
UNREACHABLE_RECIPIENT = "conformance.nobody@destination.invalid"


def delivery_request_unreachable(ctx: ReceiverContext) -> Prepared:
    """ETT MT 31: a valid address block asking for delivery notification, to a destination that cannot exist."""
    recipients = [DirectAddress.parse(UNREACHABLE_RECIPIENT)]
    return ctx.frame(
        dataclasses.replace(ctx.submission(recipients=recipients), final_destination_delivery=True)
    )


def unreadable_delivery_request(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    for block in _all(_header(root), ns.DIRECT, "addressBlock"):
        etree.SubElement(block, qname(ns.DIRECT, FINAL_DESTINATION_DELIVERY)).text = "perhaps"
    return parts


def unbound_sender(ctx: ReceiverContext) -> Prepared:
    return ctx.frame(ctx.submission(sender=ctx.target.unbound_from))


def plain_soap_request(ctx: ReceiverContext) -> Prepared:
    return ctx.plain_soap(ctx.submission())
