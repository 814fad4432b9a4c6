"""Inspect a stored XDR message (request or response, MTOM or plain SOAP, or a bare ebRIM/ebRS document):
a summary plus every validation finding. The library behind ``xdr-edge inspect``.

SOAP-level problems that a receiver would answer with a fault are reported as findings too (code
``env:<Code>`` and the WS-Addressing subcode), so one run shows everything that is wrong. Patient names
(sourcePatientInfo) are left out of the summary unless asked for: it is often pasted into tickets.
"""

from __future__ import annotations

__all__ = ["Inspection", "inspect_stream"]

import dataclasses
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from lxml import etree

from xdr_edge.protocol import ns, xml
from xdr_edge.protocol.capture import length_findings, read_entity
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.findings import Finding, Severity
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.metadata import read_submit_objects
from xdr_edge.protocol.model import MetadataLevel, Submission
from xdr_edge.protocol.mtom import MtomLimits, MtomPackage, read_mtom
from xdr_edge.protocol.response import RegistryResponse, read_registry_response
from xdr_edge.protocol.soap import read_response_envelope
from xdr_edge.protocol.soap.envelope import check_envelope, child_elements, element_name
from xdr_edge.protocol.validate import validate
from xdr_edge.protocol.wire import interpret_request, read_bounded


@dataclass
class Inspection:
    kind: str  # "request", "response", "fault", "metadata", "unknown"
    content_type: str
    mtom: bool
    summary: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return any(f.is_error for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "content_type": self.content_type,
            "mtom": self.mtom,
            "summary": self.summary,
            "findings": [f.as_dict() for f in self.findings],
            "errors": sum(1 for f in self.findings if f.is_error),
            "warnings": sum(1 for f in self.findings if not f.is_error),
        }


def _fault_finding(exc: RemoteProtocolError) -> Finding:
    code = f"env:{exc.fault_code}" if exc.fault_code else exc.xds_error_code
    if exc.fault_subcode:
        code += f" / {exc.fault_subcode}"
        if exc.fault_subsubcode:
            code += f" / {exc.fault_subsubcode}"
    return Finding(code, Severity.ERROR, exc.location or "message", exc.message, exc.code)


def _submission_summary(sub: Submission, show_phi: bool) -> dict[str, Any]:
    ss = sub.submission_set
    out: dict[str, Any] = {
        "metadata_level": sub.level.value,
        "direct_from": str(sub.direct_from) if sub.direct_from else None,
        "direct_to": [str(a) for a in sub.direct_to],
        "final_destination_delivery": sub.final_destination_delivery,
        "submission_set": {
            "entry_id": ss.entry_id,
            "unique_id": ss.unique_id,
            "source_id": ss.source_id,
            "submission_time": str(ss.submission_time) if ss.submission_time else None,
            "patient_id": str(ss.patient_id) if ss.patient_id else None,
            "intended_recipients": [r.value for r in ss.intended_recipients],
            "author_telecom": [t.xtn for a in ss.authors for t in a.telecoms],
        },
        "documents": [],
    }
    for e in sub.document_entries:
        doc: dict[str, Any] = {
            "entry_id": e.entry_id,
            "unique_id": e.unique_id,
            "mime_type": e.mime_type,
            "declared_hash": e.hash,
            "declared_size": e.size,
            "creation_time": str(e.creation_time) if e.creation_time else None,
            "type_code": e.type_code.code if e.type_code else None,
            "patient_id": str(e.patient_id) if e.patient_id else None,
        }
        if e.document is not None:
            sha1, size = e.document.digest()
            doc["actual_hash"], doc["actual_size"] = sha1, size
        else:
            doc["actual_hash"] = doc["actual_size"] = None
        if show_phi:
            doc["source_patient_info"] = list(e.source_patient_info)
            doc["title"] = e.title
        out["documents"].append(doc)
    return out


def _body_child(root_el: etree._Element) -> etree._Element | None:
    """The first element child of a SOAP 1.2 Body (comments and processing instructions are not the message),
    or the root itself when it is not a SOAP 1.2 Envelope."""
    if root_el.tag == xml.qname(ns.SOAP, "Envelope"):
        body = root_el.find(xml.qname(ns.SOAP, "Body"))
        children = child_elements(body) if body is not None else []
        return children[0] if children else None
    return root_el


def inspect_stream(
    stream: BinaryIO, *, show_phi: bool = False, limits: MtomLimits | None = None
) -> Inspection:
    """Inspect one stored entity (see :func:`xdr_edge.protocol.capture.read_entity` for the accepted framings).

    Never raises for what the message holds: whatever makes it unreadable (no headers, a malformed
    Content-Type, broken chunked or MIME framing, XML that is not well-formed, an element we do not know)
    becomes an error finding, so a batch of captures can be inspected in one go. A raw HTTP capture's
    Content-Length is checked against its body (:func:`xdr_edge.protocol.capture.length_findings`).
    """
    try:
        entity = read_entity(stream)
    except RemoteProtocolError as exc:
        result = Inspection(kind="unknown", content_type="", mtom=False)
        result.findings.append(_fault_finding(exc))
        return result
    result = Inspection(kind="unknown", content_type=entity.content_type, mtom=False)
    if entity.line_ends_restored:
        result.findings.append(
            Finding(
                "capture-line-ends",
                Severity.WARNING,
                "entity",
                "the capture was stored as text (bare LF line ends); CRLF framing was restored to read it, "
                "so document bytes may differ from what was sent",
                "capture-line-ends",
            )
        )
    try:
        _read_and_dispatch(result, entity.content_type, entity.body, show_phi, limits or MtomLimits())
    except RemoteProtocolError as exc:
        result.findings.append(_fault_finding(exc))
    result.findings.extend(length_findings(entity))
    return result


def _read_and_dispatch(
    result: Inspection, content_type: str, body: BinaryIO, show_phi: bool, limits: MtomLimits
) -> None:
    result.mtom = MediaType.parse(content_type).matches("multipart/related")
    package: MtomPackage | None = None
    try:
        if result.mtom:
            package = read_mtom(content_type, body, limits=limits)
            root = package.root
        else:
            root = read_bounded(body, limits.max_root_bytes)
        root_el = xml.parse(root, what="message", huge=True)
        _dispatch(result, root, root_el, package, show_phi)
    finally:
        if package is not None:
            package.close()


# validate() rules that judge the Direct addressing of a whole request (XDR and XDM for Direct Messaging §4.1; our practice-binding rule): the sender is
# direct:from else authorTelecommunication, the recipients direct:to else intendedRecipient. Bare metadata has no
# envelope, so when they fire it only means the envelope that carries this metadata would need an address block.
_ENVELOPE_DEPENDENT_RULES = frozenset({"sender-unknown", "no-recipient"})
_NO_ENVELOPE = " (bare metadata: a warning, since the address block of the carrying envelope may supply it)"

_REQUEST = (ns.XDSB, "ProvideAndRegisterDocumentSetRequest")
_SUBMIT_OBJECTS = frozenset({(ns.LCM, "SubmitObjectsRequest"), (ns.REGISTRY_21, "SubmitObjectsRequest")})
_REPLIES = frozenset({(ns.RS, "RegistryResponse"), (ns.RS, "RegistryResponseType"), (ns.SOAP, "Fault")})


def _dispatch(
    result: Inspection, root: bytes, root_el: etree._Element, package: MtomPackage | None, show_phi: bool
) -> None:
    """Dispatch on the namespace *and* local name of the message element: a ``RegistryResponse`` in no
    namespace (or any other) is not an ebRS response (ITI TF-3 4.2.4, ebRS 3.0), and is reported as unknown."""
    child = _body_child(root_el)
    name = (etree.QName(child).namespace, etree.QName(child).localname) if child is not None else None
    in_envelope = root_el is not child
    if name == _REQUEST and in_envelope:
        _inspect_request(result, root, package, show_phi)
    elif child is not None and (name == _REQUEST or name in _SUBMIT_OBJECTS):
        _inspect_bare_metadata(result, child, show_phi)
    elif name in _REPLIES:
        _inspect_response(result, root)
    elif etree.QName(root_el).localname == "Envelope":
        _inspect_unknown_envelope(result, root_el, element_name(child) if child is not None else "")
    else:
        shown = element_name(child) if child is not None else element_name(root_el)
        result.findings.append(
            Finding("env:Sender", Severity.ERROR, "Body", f"unexpected message element {shown!r}")
        )


def _inspect_unknown_envelope(result: Inspection, root_el: etree._Element, shown: str) -> None:
    """An envelope whose Body holds no message we know: a structural fault of the envelope (SOAP 1.1, a Body in
    the wrong namespace, a misplaced Header; SOAP 1.2 Part 1 §5, ITI TF-2x V.3) is named precisely where one
    exists, else the element that is not an ITI-41 message."""
    try:
        check_envelope(root_el)
    except RemoteProtocolError as exc:
        result.findings.append(_fault_finding(exc))
        return
    result.findings.append(
        Finding("env:Sender", Severity.ERROR, "Body", f"unexpected message element {shown or 'none'!r}")
    )


def _inspect_request(result: Inspection, root: bytes, package: MtomPackage | None, show_phi: bool) -> None:
    result.kind = "request"
    try:
        request = interpret_request(root, package, media_type=MediaType.parse_or_none(result.content_type))
    except RemoteProtocolError as exc:
        result.findings.append(_fault_finding(exc))
        return
    env = request.envelope
    result.summary = {
        "message_id": env.message_id,
        "action": env.action,
        "to": env.to,
        "reply_to": env.reply_to,
        "metadata_level_header": env.level.value if env.level else None,
        "metadata_level_placement": env.level_placement.name.lower().replace("_", "-")
        if env.level_placement
        else None,
        "address_block": env.has_address_block,
    }
    if request.submission is not None:
        result.summary.update(_submission_summary(request.submission, show_phi))
    result.findings.extend(request.findings)


def _inspect_bare_metadata(result: Inspection, element: etree._Element, show_phi: bool) -> None:
    result.kind = "metadata"
    sor = element
    if etree.QName(element).localname == "ProvideAndRegisterDocumentSetRequest":
        found = element.find(xml.qname(ns.LCM, "SubmitObjectsRequest"))
        if found is None:
            result.findings.append(
                Finding(
                    "env:Sender",
                    Severity.ERROR,
                    "ProvideAndRegisterDocumentSetRequest",
                    "no SubmitObjectsRequest",
                )
            )
            return
        sor = found
    meta = read_submit_objects(sor)
    result.findings.extend(meta.findings)
    if meta.submission_set is None:
        return
    limited = meta.submission_set.limited_metadata
    level = MetadataLevel.MINIMAL if limited else MetadataLevel.XDS
    sub = Submission(meta.submission_set, meta.document_entries, meta.associations, level=level)
    result.summary = _submission_summary(sub, show_phi)
    result.summary["note"] = "bare metadata (no SOAP envelope): documents are not checked"
    result.findings.extend(
        dataclasses.replace(f, severity=Severity.WARNING, message=f"{f.message}{_NO_ENVELOPE}")
        if f.rule in _ENVELOPE_DEPENDENT_RULES and f.is_error
        else f
        for f in validate(sub, level)
    )


def _inspect_response(result: Inspection, root: bytes) -> None:
    try:
        env = read_response_envelope(root)
    except RemoteProtocolError as exc:
        result.kind = "response"
        result.findings.append(_fault_finding(exc))
        return
    result.summary = {"action": env.action, "relates_to": env.relates_to, "message_id": env.message_id}
    if env.fault is not None:
        result.kind = "fault"
        result.summary.update(
            {"fault_code": env.fault.code, "fault_subcode": env.fault.subcode, "reason": env.fault.reason}
        )
        return
    result.kind = "response"
    if env.body is not None:
        resp, findings = read_registry_response(env.body)
        result.summary.update(_response_summary(resp))
        result.findings.extend(_as_conformance(f) for f in findings)


def _as_conformance(finding: Finding) -> Finding:
    """The response reader is lenient (a client still derives an outcome from a Success that carries an Error,
    or from a Failure without one); the inspector judges conformance, and a response that breaks the ITI TF-3 4.2.4, ebRS 3.0
    consistency rules or uses the type name as root element is one a receiver must not send: an error here."""
    if finding.code == "RegistryResponseInconsistent" and not finding.is_error:
        return dataclasses.replace(finding, severity=Severity.ERROR)
    return finding


def _response_summary(resp: RegistryResponse) -> dict[str, Any]:
    return {
        "status": resp.status,
        "errors": [e.as_dict() for e in resp.errors],
    }
