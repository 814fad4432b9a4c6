"""Submission <-> ebRIM 3.0 ``lcm:SubmitObjectsRequest``: writer and reader side by side (ITI TF-3 4.2, ebRIM 3.0).

Pure: elements in, elements out. No parsing of bytes (callers use :func:`xdr_edge.xml.parse`), no I/O, no
logging (metadata holds PHI). The writer emits exactly what the model holds, in the child order rim.xsd
demands (``Slot*, Name?, Description?, VersionInfo?, Classification*, ExternalIdentifier*``, ITI TF-3 4.2, ebRIM 3.0);
profile rules (what is required at the minimal or XDS level) belong to :mod:`xdr_edge.validate`, not here.

The reader is lenient on purpose: a receiver must be able to *hold* what a peer sent and name every problem,
not stop at the first. What the model cannot hold (a missing ``@id``, a dangling ``classifiedObject``, an
unknown ``objectType``, zero or several SubmissionSets, ...) becomes a :class:`~xdr_edge.findings.Finding`
with an element path such as ``ExtrinsicObject[@id='Document01']/Slot[@name='creationTime']``. Values keep
their wire text; the HL7 format checks run later through the model's ``format_problems()``.
"""

from __future__ import annotations

__all__ = ["MetadataRead", "read_submit_objects", "write_submit_objects"]

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from lxml import etree

from xdr_edge.protocol import ns
from xdr_edge.protocol.findings import (
    Finding,
    Severity,
)
from xdr_edge.protocol.model import (
    Association,
    Author,
    Code,
    DocumentEntry,
    Dtm,
    Organization,
    Patient,
    Person,
    Recipient,
    Submission,
    SubmissionSet,
    Telecom,
)
from xdr_edge.protocol.xml import qname

_META_ERROR: Final = "XDSRegistryMetadataError"

# Namespace for the deterministic ids of Classifications and ExternalIdentifiers: the same Submission always
# produces the same bytes (reproducible output, stable fixtures), and every id is a valid urn:uuid (XD 104).
_ID_NAMESPACE: Final = uuid.UUID("6f1d4a0e-8a57-4b0e-9a53-0c3a5e1f2d77")

# ITI TF-3 4.2.3: DocumentEntry slots the model maps to fields, and the other legal names it keeps in ``extra_slots``.
_DE_MODELLED_SLOTS: Final = frozenset(
    {
        "creationTime",
        "hash",
        "size",
        "languageCode",
        "legalAuthenticator",
        "serviceStartTime",
        "serviceStopTime",
        "sourcePatientId",
        "sourcePatientInfo",
    }
)
_DE_OTHER_LEGAL_SLOTS: Final = frozenset({"URI", "repositoryUniqueId", "documentAvailability"})
_SS_MODELLED_SLOTS: Final = frozenset({"submissionTime", "intendedRecipient"})

_AUTHOR_SINGLE: Final = "authorPerson"
_AUTHOR_MULTI: Final = ("authorInstitution", "authorRole", "authorSpecialty", "authorTelecommunication")

# ITI TF-3 4.2.5: coded DocumentEntry classifications, in the order the writer emits them.
_DE_CODE_SCHEMES: Final = {
    ns.DE_CLASS_CODE: "classCode",
    ns.DE_CONFIDENTIALITY_CODE: "confidentialityCode",
    ns.DE_EVENT_CODE: "eventCodeList",
    ns.DE_FORMAT_CODE: "formatCode",
    ns.DE_HEALTHCARE_FACILITY_TYPE_CODE: "healthcareFacilityTypeCode",
    ns.DE_PRACTICE_SETTING_CODE: "practiceSettingCode",
    ns.DE_TYPE_CODE: "typeCode",
}
_KNOWN_OBJECT_TYPES: Final = frozenset({ns.DOC_ENTRY_STABLE, ns.DOC_ENTRY_ON_DEMAND})
_EXT_ID_NAMES: Final = {
    ns.DE_PATIENT_ID: "XDSDocumentEntry.patientId",
    ns.DE_UNIQUE_ID: "XDSDocumentEntry.uniqueId",
    ns.SS_UNIQUE_ID: "XDSSubmissionSet.uniqueId",
    ns.SS_SOURCE_ID: "XDSSubmissionSet.sourceId",
    ns.SS_PATIENT_ID: "XDSSubmissionSet.patientId",
}


def _rim(local: str) -> str:
    return qname(ns.RIM, local)


_EXTRINSIC: Final = _rim("ExtrinsicObject")
_PACKAGE: Final = _rim("RegistryPackage")
_CLASSIFICATION: Final = _rim("Classification")
_EXTERNAL_ID: Final = _rim("ExternalIdentifier")
_ASSOCIATION: Final = _rim("Association")
_SLOT: Final = _rim("Slot")


@dataclass(frozen=True)
class MetadataRead:
    """What :func:`read_submit_objects` found: the model objects and every structural finding."""

    submission_set: SubmissionSet | None
    document_entries: tuple[DocumentEntry, ...]
    associations: tuple[Association, ...]
    findings: list[Finding] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------- writer


class _Ids:
    """Deterministic, unique ids for the Classifications and ExternalIdentifiers of one parent object."""

    def __init__(self, parent_id: str) -> None:
        self._parent = parent_id
        self._count = 0

    def next(self) -> str:
        self._count += 1
        return f"urn:uuid:{uuid.uuid5(_ID_NAMESPACE, f'{self._parent}#{self._count}')}"


def _sub(parent: etree._Element, local: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, _rim(local), attrs)


def _write_slot(parent: etree._Element, name: str, values: Sequence[str]) -> None:
    slot = _sub(parent, "Slot", name=name)
    value_list = _sub(slot, "ValueList")
    for value in values:
        _sub(value_list, "Value").text = value


def _write_slots(parent: etree._Element, slots: Iterable[tuple[str, Sequence[str] | str | None]]) -> None:
    """Writes each slot that has a value; ``None`` and empty lists are omitted (nothing the model lacks)."""
    for name, value in slots:
        if value is None:
            continue
        values = [value] if isinstance(value, str) else list(value)
        if values:
            _write_slot(parent, name, values)


def _write_localized(parent: etree._Element, local: str, text: str | None) -> None:
    if text is not None:
        _sub(_sub(parent, local), "LocalizedString", value=text)


def _write_author(parent: etree._Element, scheme: str, author: Author, ids: _Ids) -> None:
    cl = _sub(
        parent,
        "Classification",
        id=ids.next(),
        objectType=ns.OT_CLASSIFICATION,
        classificationScheme=scheme,
        classifiedObject=parent.get("id", ""),
        nodeRepresentation="",
    )
    _write_slots(
        cl,
        [
            (_AUTHOR_SINGLE, author.person.xcn if author.person else None),
            ("authorInstitution", [o.xon for o in author.institutions]),
            ("authorRole", author.roles),
            ("authorSpecialty", author.specialties),
            ("authorTelecommunication", [t.xtn for t in author.telecoms]),
        ],
    )


def _write_code(parent: etree._Element, scheme: str, code: Code, ids: _Ids) -> None:
    cl = _sub(
        parent,
        "Classification",
        id=ids.next(),
        objectType=ns.OT_CLASSIFICATION,
        classificationScheme=scheme,
        classifiedObject=parent.get("id", ""),
        nodeRepresentation=code.code,
    )
    _write_slot(cl, "codingScheme", [code.scheme])
    if code.display:
        _write_localized(cl, "Name", code.display)


def _write_node(parent: etree._Element, object_id: str, node: str, class_id: str) -> None:
    _sub(
        parent,
        "Classification",
        id=class_id,
        objectType=ns.OT_CLASSIFICATION,
        classifiedObject=object_id,
        classificationNode=node,
    )


def _write_external_id(parent: etree._Element, scheme: str, value: str, ids: _Ids) -> None:
    ext = _sub(
        parent,
        "ExternalIdentifier",
        id=ids.next(),
        objectType=ns.OT_EXTERNAL_IDENTIFIER,
        registryObject=parent.get("id", ""),
        identificationScheme=scheme,
        value=value,
    )
    _write_localized(ext, "Name", _EXT_ID_NAMES[scheme])


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


def _write_entry(parent: etree._Element, entry: DocumentEntry) -> None:
    eo = _sub(
        parent, "ExtrinsicObject", id=entry.entry_id, mimeType=entry.mime_type, objectType=entry.object_type
    )
    ids = _Ids(entry.entry_id)
    _write_slots(
        eo,
        [
            ("creationTime", _text(entry.creation_time)),
            ("hash", entry.hash),
            ("size", _text(entry.size)),
            ("languageCode", entry.language_code),
            ("legalAuthenticator", _text(entry.legal_authenticator)),
            ("serviceStartTime", _text(entry.service_start_time)),
            ("serviceStopTime", _text(entry.service_stop_time)),
            ("sourcePatientId", _text(entry.source_patient_id)),
            ("sourcePatientInfo", entry.source_patient_info),
        ],
    )
    for name, values in entry.extra_slots:
        _write_slot(eo, name, values)
    _write_localized(eo, "Name", entry.title)
    _write_localized(eo, "Description", entry.comments)
    for author in entry.authors:
        _write_author(eo, ns.DE_AUTHOR, author, ids)
    coded: list[tuple[str, Code | None]] = [
        (ns.DE_CLASS_CODE, entry.class_code),
        *((ns.DE_CONFIDENTIALITY_CODE, c) for c in entry.confidentiality_codes),
        *((ns.DE_EVENT_CODE, c) for c in entry.event_codes),
        (ns.DE_FORMAT_CODE, entry.format_code),
        (ns.DE_HEALTHCARE_FACILITY_TYPE_CODE, entry.healthcare_facility_type_code),
        (ns.DE_PRACTICE_SETTING_CODE, entry.practice_setting_code),
        (ns.DE_TYPE_CODE, entry.type_code),
    ]
    for scheme, code in coded:
        if code is not None:
            _write_code(eo, scheme, code, ids)
    if entry.limited_metadata:
        _write_node(eo, entry.entry_id, ns.DE_LIMITED_METADATA, ids.next())
    if entry.patient_id is not None:
        _write_external_id(eo, ns.DE_PATIENT_ID, entry.patient_id.cx, ids)
    _write_external_id(eo, ns.DE_UNIQUE_ID, entry.unique_id, ids)


def _write_submission_set(parent: etree._Element, ss: SubmissionSet) -> None:
    pkg = _sub(parent, "RegistryPackage", id=ss.entry_id, objectType=ns.OT_REGISTRY_PACKAGE)
    ids = _Ids(ss.entry_id)
    _write_slots(
        pkg,
        [
            ("submissionTime", _text(ss.submission_time)),
            ("intendedRecipient", [r.value for r in ss.intended_recipients]),
        ],
    )
    for name, values in ss.extra_slots:
        _write_slot(pkg, name, values)
    _write_localized(pkg, "Name", ss.title)
    _write_localized(pkg, "Description", ss.comments)
    for author in ss.authors:
        _write_author(pkg, ns.SS_AUTHOR, author, ids)
    if ss.content_type_code is not None:
        _write_code(pkg, ns.SS_CONTENT_TYPE_CODE, ss.content_type_code, ids)
    if ss.limited_metadata:
        _write_node(pkg, ss.entry_id, ns.SS_LIMITED_METADATA, ids.next())
    _write_external_id(pkg, ns.SS_UNIQUE_ID, ss.unique_id, ids)
    _write_external_id(pkg, ns.SS_SOURCE_ID, ss.source_id, ids)
    if ss.patient_id is not None:
        _write_external_id(pkg, ns.SS_PATIENT_ID, ss.patient_id.cx, ids)
    # The classification that makes this RegistryPackage the SubmissionSet sits beside it (ITI TF-3 4.2, ebRIM 3.0); its id
    # continues the package's sequence so it cannot collide with the package's own children.
    _write_node(parent, ss.entry_id, ns.SUBMISSION_SET, ids.next())


def _write_association(parent: etree._Element, assoc: Association) -> None:
    el = _sub(
        parent,
        "Association",
        id=assoc.entry_id,
        objectType=ns.OT_ASSOCIATION,
        associationType=assoc.type,
        sourceObject=assoc.source,
        targetObject=assoc.target,
    )
    if assoc.submission_set_status is not None:
        _write_slot(el, "SubmissionSetStatus", [assoc.submission_set_status])


def write_submit_objects(submission: Submission) -> etree._Element:
    """The ``lcm:SubmitObjectsRequest`` for ``submission`` (ITI TF-3 4.2, ebRIM 3.0): DocumentEntries, the SubmissionSet,
    its a54d6aa5 classification, then the associations. Ids of Classifications and ExternalIdentifiers are
    derived from their parent's id, so the output is reproducible.
    """
    root = etree.Element(qname(ns.LCM, "SubmitObjectsRequest"), nsmap={"lcm": ns.LCM, "rim": ns.RIM})
    object_list = _sub(root, "RegistryObjectList")
    for entry in submission.document_entries:
        _write_entry(object_list, entry)
    _write_submission_set(object_list, submission.submission_set)
    for assoc in submission.associations:
        _write_association(object_list, assoc)
    return root


# --------------------------------------------------------------------------------------------------- reader


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _where(el: etree._Element, index: int) -> str:
    """``ExtrinsicObject[@id='Document01']``, or ``ExtrinsicObject[2]`` when the element has no id."""
    object_id = el.get("id")
    return f"{_local(el)}[@id='{object_id}']" if object_id else f"{_local(el)}[{index}]"


class _Context:
    """Collects findings for one read; passed explicitly (no module state)."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def error(self, location: str, message: str, rule: str) -> None:
        self.findings.append(Finding(_META_ERROR, Severity.ERROR, location, message, rule))

    def warning(self, location: str, message: str, rule: str) -> None:
        self.findings.append(Finding(_META_ERROR, Severity.WARNING, location, message, rule))


def _value_text(value: etree._Element) -> str:
    # Pretty-printers indent element content; no HL7 value begins or ends with XML whitespace.
    return (value.text or "").strip(" \t\r\n")


def _slot_values(slot: etree._Element) -> tuple[str, ...]:
    return tuple(_value_text(v) for v in slot.iterfind(f"{_rim('ValueList')}/{_rim('Value')}"))


def _localized(el: etree._Element, local: str) -> str | None:
    """``Name``/``Description`` text from ``LocalizedString/@value``; None when absent or empty of strings."""
    holder = el.find(_rim(local))
    if holder is None:
        return None
    string = holder.find(_rim("LocalizedString"))
    return None if string is None else string.get("value", "")


class _Slots:
    """The Slots of one object, by name, with findings for duplicates and multiple values of single slots."""

    def __init__(self, owner: etree._Element, where: str, ctx: _Context) -> None:
        self.where = where
        self.ctx = ctx
        self.ordered: list[tuple[str, tuple[str, ...]]] = []
        self._by_name: dict[str, tuple[str, ...]] = {}
        for slot in owner.iterfind(_SLOT):
            name = slot.get("name")
            if not name:
                ctx.error(where + "/Slot", "a Slot has no name attribute", "slot-name-missing")
                continue
            values = _slot_values(slot)
            if name in self._by_name:
                ctx.error(self.at(name), f"slot {name!r} appears more than once", "slot-duplicate")
                continue
            self._by_name[name] = values
            self.ordered.append((name, values))

    def at(self, name: str) -> str:
        return f"{self.where}/Slot[@name='{name}']"

    def multi(self, name: str) -> tuple[str, ...]:
        return self._by_name.get(name, ())

    def single(self, name: str) -> str | None:
        values = self._by_name.get(name)
        if not values:
            return None
        if len(values) > 1:
            self.ctx.error(
                self.at(name), f"slot {name!r} must hold one value, found {len(values)}", "slot-single"
            )
        return values[0]

    def extras(
        self, modelled: frozenset[str], legal: frozenset[str] = frozenset()
    ) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Slots the model has no field for; names neither legal nor ``urn:`` extensions are warned (ITI TF-3 4.2.3)."""
        kept: list[tuple[str, tuple[str, ...]]] = []
        for name, values in self.ordered:
            if name in modelled:
                continue
            if name not in legal and not name.startswith("urn:"):
                self.ctx.warning(
                    self.at(name),
                    f"slot name {name!r} is not defined by XDS and is not a urn: extension",
                    "slot-name-unknown",
                )
            kept.append((name, values))
        return tuple(kept)


class _Index:
    """Every id in the RegistryObjectList, and the top-level Classifications/ExternalIdentifiers by the object
    they point at, so that an object's classifications can be children or siblings (ebRIM allows both).
    """

    def __init__(self, object_list: etree._Element) -> None:
        self.ids: set[str] = set()
        self.loose_classifications: dict[str, list[etree._Element]] = {}
        self.loose_external_ids: dict[str, list[etree._Element]] = {}
        for el in object_list.iterchildren(etree.Element):
            if el.get("id"):
                self.ids.add(el.get("id", ""))
            for child in el.iterchildren(etree.Element):
                if child.get("id"):
                    self.ids.add(child.get("id", ""))
            if el.tag == _CLASSIFICATION:
                self.loose_classifications.setdefault(el.get("classifiedObject", ""), []).append(el)
            elif el.tag == _EXTERNAL_ID:
                self.loose_external_ids.setdefault(el.get("registryObject", ""), []).append(el)

    def classifications(self, owner: etree._Element) -> list[etree._Element]:
        loose = self.loose_classifications.get(owner.get("id", ""), []) if owner.get("id") else []
        return [*owner.iterfind(_CLASSIFICATION), *loose]

    def external_ids(self, owner: etree._Element) -> list[etree._Element]:
        loose = self.loose_external_ids.get(owner.get("id", ""), []) if owner.get("id") else []
        return [*owner.iterfind(_EXTERNAL_ID), *loose]


def _check_reference(
    child: etree._Element, attr: str, owner: etree._Element, where: str, ctx: _Context
) -> str:
    """XD 132/136: ``classifiedObject``/``registryObject`` must equal the owning object's id. Returns the
    child's location."""
    here = f"{where}/{_where(child, 0)}" if child.get("id") else f"{where}/{_local(child)}"
    if not child.get("id"):
        ctx.error(here, f"{_local(child)} has no id attribute", "id-missing")
    target = child.get(attr)
    owner_id = owner.get("id", "")
    if target is None:
        ctx.error(here, f"{_local(child)} has no {attr} attribute", "reference-missing")
    elif target != owner_id:
        ctx.error(
            here,
            f"{attr} {target!r} does not reference the object it belongs to ({owner_id!r})",
            "reference-dangling",
        )
    return here


def _read_author(cl: etree._Element, here: str, ctx: _Context) -> Author:
    slots = _Slots(cl, here, ctx)
    person = slots.single(_AUTHOR_SINGLE)
    for name, _values in slots.ordered:
        if name != _AUTHOR_SINGLE and name not in _AUTHOR_MULTI:
            ctx.warning(slots.at(name), f"slot {name!r} is not an author slot", "author-slot-unknown")
    return Author(
        person=Person(person) if person is not None else None,
        institutions=tuple(Organization(v) for v in slots.multi("authorInstitution")),
        roles=slots.multi("authorRole"),
        specialties=slots.multi("authorSpecialty"),
        telecoms=tuple(Telecom(v) for v in slots.multi("authorTelecommunication")),
    )


def _read_code(cl: etree._Element, here: str, ctx: _Context) -> Code:
    code = cl.get("nodeRepresentation")
    if code is None:
        ctx.error(here, "coded classification has no nodeRepresentation", "code-missing")
    slots = _Slots(cl, here, ctx)
    scheme = slots.single("codingScheme")
    if scheme is None:
        ctx.error(here, "coded classification has no codingScheme slot", "coding-scheme-missing")
    return Code(code or "", scheme or "", _localized(cl, "Name") or "")


@dataclass
class _Classified:
    """The classifications of one object, sorted by meaning."""

    authors: list[Author] = field(default_factory=list)
    codes: dict[str, list[Code]] = field(default_factory=dict)
    nodes: set[str] = field(default_factory=set)


def _read_classifications(
    owner: etree._Element,
    where: str,
    index: _Index,
    ctx: _Context,
    *,
    author_scheme: str,
    code_schemes: Iterable[str],
    known_nodes: frozenset[str],
) -> _Classified:
    result = _Classified()
    schemes = frozenset(code_schemes)
    for cl in index.classifications(owner):
        here = _check_reference(cl, "classifiedObject", owner, where, ctx)
        scheme = cl.get("classificationScheme")
        node = cl.get("classificationNode")
        if scheme == author_scheme:
            result.authors.append(_read_author(cl, here, ctx))
        elif scheme in schemes:
            result.codes.setdefault(scheme, []).append(_read_code(cl, here, ctx))
        elif scheme is not None:
            ctx.warning(here, f"unknown classificationScheme {scheme!r} is ignored", "scheme-unknown")
        elif node in known_nodes:
            result.nodes.add(node)
        elif node is not None:
            ctx.warning(here, f"unknown classificationNode {node!r} is ignored", "node-unknown")
        else:
            ctx.error(
                here,
                "Classification has neither classificationScheme nor classificationNode",
                "scheme-missing",
            )
    return result


def _identifier_scheme(ext: etree._Element, here: str, ctx: _Context, known: frozenset[str]) -> str | None:
    """The scheme an ExternalIdentifier stands for, from ``@identificationScheme`` and its ``Name`` (ITI TF-3 4.2.5).

    The scheme decides; a Name that contradicts it draws a warning. A peer that got the UUID wrong but the
    Name right (``XDSDocumentEntry.uniqueId``) is read by its Name, with an error, so that the value is not
    lost and the report says exactly what was wrong.
    """
    scheme = ext.get("identificationScheme", "")
    name = _localized(ext, "Name")
    by_name = next((s for s in known if _EXT_ID_NAMES[s] == name), None)
    if scheme in known:
        if name is not None and by_name != scheme:
            ctx.warning(
                here,
                f"Name {name!r} does not match identificationScheme {scheme} ({_EXT_ID_NAMES[scheme]})",
                "identifier-name-mismatch",
            )
        return scheme
    if by_name is not None:
        ctx.error(
            here,
            f"identificationScheme {scheme!r} is not the scheme of {name} ({by_name}); read by its Name",
            "identifier-scheme-wrong",
        )
        return by_name
    ctx.warning(here, f"unknown identificationScheme {scheme!r} is ignored", "identifier-unknown")
    return None


def _read_external_ids(
    owner: etree._Element, where: str, index: _Index, ctx: _Context, known: frozenset[str]
) -> dict[str, str]:
    found: dict[str, str] = {}
    for ext in index.external_ids(owner):
        here = _check_reference(ext, "registryObject", owner, where, ctx)
        scheme = _identifier_scheme(ext, here, ctx, known)
        if scheme is None:
            continue
        value = ext.get("value")
        if value is None:
            ctx.error(here, f"{_EXT_ID_NAMES[scheme]} has no value attribute", "identifier-value-missing")
            continue
        if scheme in found:
            ctx.error(here, f"{_EXT_ID_NAMES[scheme]} appears more than once", "identifier-duplicate")
            continue
        found[scheme] = value
    return found


def _single_code(classified: _Classified, scheme: str, where: str, ctx: _Context) -> Code | None:
    codes = classified.codes.get(scheme, [])
    if len(codes) > 1:
        name = _DE_CODE_SCHEMES.get(scheme, "contentTypeCode")
        ctx.error(where, f"{name} must appear at most once, found {len(codes)}", "code-single")
    return codes[0] if codes else None


def _read_entry(eo: etree._Element, position: int, index: _Index, ctx: _Context) -> DocumentEntry:
    where = _where(eo, position)
    entry_id = eo.get("id")
    if not entry_id:
        ctx.error(where, "ExtrinsicObject has no id attribute", "id-missing")
    object_type = eo.get("objectType")
    if object_type is None:
        ctx.error(where, "ExtrinsicObject has no objectType attribute", "object-type-missing")
    elif object_type not in _KNOWN_OBJECT_TYPES:
        ctx.error(
            where, f"ExtrinsicObject objectType {object_type!r} is not a DocumentEntry type", "object-type"
        )
    slots = _Slots(eo, where, ctx)
    classified = _read_classifications(
        eo,
        where,
        index,
        ctx,
        author_scheme=ns.DE_AUTHOR,
        code_schemes=_DE_CODE_SCHEMES,
        known_nodes=frozenset({ns.DE_LIMITED_METADATA}),
    )
    ext = _read_external_ids(eo, where, index, ctx, frozenset({ns.DE_PATIENT_ID, ns.DE_UNIQUE_ID}))
    return DocumentEntry(
        entry_id=entry_id or "",
        unique_id=ext.get(ns.DE_UNIQUE_ID, ""),
        # The XSD defaults mimeType to application/octet-stream; an absent attribute is recorded as "" so that
        # validation can report it (ETT negative test 3).
        mime_type=eo.get("mimeType", ""),
        hash=slots.single("hash"),
        size=_read_size(slots),
        creation_time=_opt_dtm(slots.single("creationTime")),
        class_code=_single_code(classified, ns.DE_CLASS_CODE, where, ctx),
        type_code=_single_code(classified, ns.DE_TYPE_CODE, where, ctx),
        format_code=_single_code(classified, ns.DE_FORMAT_CODE, where, ctx),
        confidentiality_codes=tuple(classified.codes.get(ns.DE_CONFIDENTIALITY_CODE, [])),
        healthcare_facility_type_code=_single_code(
            classified, ns.DE_HEALTHCARE_FACILITY_TYPE_CODE, where, ctx
        ),
        practice_setting_code=_single_code(classified, ns.DE_PRACTICE_SETTING_CODE, where, ctx),
        language_code=slots.single("languageCode"),
        patient_id=_opt_patient(ext.get(ns.DE_PATIENT_ID)),
        source_patient_id=_opt_patient(slots.single("sourcePatientId")),
        source_patient_info=slots.multi("sourcePatientInfo"),
        authors=tuple(classified.authors),
        title=_localized(eo, "Name"),
        comments=_localized(eo, "Description"),
        event_codes=tuple(classified.codes.get(ns.DE_EVENT_CODE, [])),
        service_start_time=_opt_dtm(slots.single("serviceStartTime")),
        service_stop_time=_opt_dtm(slots.single("serviceStopTime")),
        legal_authenticator=_opt_person(slots.single("legalAuthenticator")),
        limited_metadata=ns.DE_LIMITED_METADATA in classified.nodes,
        object_type=object_type or "",
        extra_slots=slots.extras(_DE_MODELLED_SLOTS, _DE_OTHER_LEGAL_SLOTS),
    )


def _opt_dtm(value: str | None) -> Dtm | None:
    return None if value is None else Dtm(value)


def _opt_patient(value: str | None) -> Patient | None:
    return None if value is None else Patient(value)


def _opt_person(value: str | None) -> Person | None:
    return None if value is None else Person(value)


def _read_size(slots: _Slots) -> int | None:
    text = slots.single("size")
    if text is None:
        return None
    if not text.isdigit():
        slots.ctx.error(slots.at("size"), f"size {text!r} is not a non-negative integer", "size-format")
        return None
    return int(text)


def _read_submission_set(pkg: etree._Element, position: int, index: _Index, ctx: _Context) -> SubmissionSet:
    where = _where(pkg, position)
    if not pkg.get("id"):
        ctx.error(where, "the SubmissionSet RegistryPackage has no id attribute", "id-missing")
    slots = _Slots(pkg, where, ctx)
    classified = _read_classifications(
        pkg,
        where,
        index,
        ctx,
        author_scheme=ns.SS_AUTHOR,
        code_schemes=(ns.SS_CONTENT_TYPE_CODE,),
        known_nodes=frozenset({ns.SS_LIMITED_METADATA, ns.SUBMISSION_SET}),
    )
    ext = _read_external_ids(
        pkg, where, index, ctx, frozenset({ns.SS_UNIQUE_ID, ns.SS_SOURCE_ID, ns.SS_PATIENT_ID})
    )
    return SubmissionSet(
        entry_id=pkg.get("id", ""),
        unique_id=ext.get(ns.SS_UNIQUE_ID, ""),
        source_id=ext.get(ns.SS_SOURCE_ID, ""),
        submission_time=_opt_dtm(slots.single("submissionTime")),
        title=_localized(pkg, "Name"),
        comments=_localized(pkg, "Description"),
        content_type_code=_single_code(classified, ns.SS_CONTENT_TYPE_CODE, where, ctx),
        authors=tuple(classified.authors),
        intended_recipients=tuple(Recipient(v) for v in slots.multi("intendedRecipient")),
        patient_id=_opt_patient(ext.get(ns.SS_PATIENT_ID)),
        limited_metadata=ns.SS_LIMITED_METADATA in classified.nodes,
        extra_slots=slots.extras(_SS_MODELLED_SLOTS),
    )


def _package_kind(pkg: etree._Element, index: _Index) -> str | None:
    """The classificationNode (SubmissionSet or Folder) that classifies ``pkg``, child or sibling."""
    nodes = {cl.get("classificationNode") for cl in index.classifications(pkg)}
    for node in (ns.SUBMISSION_SET, ns.FOLDER):
        if node in nodes:
            return node
    return None


def _choose_submission_set(
    packages: list[tuple[int, etree._Element]], index: _Index, ctx: _Context
) -> tuple[int, etree._Element] | None:
    """ITI TF-3 4.2, ebRIM 3.0: exactly one SubmissionSet (XD 181). Folders are reported and ignored (not supported)."""
    sets: list[tuple[int, etree._Element]] = []
    unclassified: list[tuple[int, etree._Element]] = []
    for position, pkg in packages:
        kind = _package_kind(pkg, index)
        where = _where(pkg, position)
        if kind == ns.SUBMISSION_SET:
            sets.append((position, pkg))
        elif kind == ns.FOLDER:
            ctx.warning(where, "folders are not supported; this Folder is ignored", "folder-ignored")
        else:
            unclassified.append((position, pkg))
    if not sets:
        # Lenient: a package carrying a SubmissionSet uniqueId is read as the SubmissionSet, with an error.
        sets = [(p, pkg) for p, pkg in unclassified if _has_scheme(pkg, index, ns.SS_UNIQUE_ID)]
        for position, pkg in sets:
            ctx.error(
                _where(pkg, position),
                f"RegistryPackage is not classified as a SubmissionSet (node {ns.SUBMISSION_SET})",
                "submission-set-unclassified",
            )
    for position, pkg in unclassified:
        if (position, pkg) not in sets:
            ctx.warning(
                _where(pkg, position),
                "RegistryPackage is neither a SubmissionSet nor a Folder; ignored",
                "package",
            )
    if not sets:
        ctx.error("RegistryObjectList", "the submission has no SubmissionSet", "submission-set-missing")
        return None
    if len(sets) > 1:
        ctx.error(
            "RegistryObjectList",
            f"a submission must have exactly one SubmissionSet, found {len(sets)}; the first is used",
            "submission-set-several",
        )
    return sets[0]


def _has_scheme(pkg: etree._Element, index: _Index, scheme: str) -> bool:
    return any(ext.get("identificationScheme") == scheme for ext in index.external_ids(pkg))


def _read_association(el: etree._Element, position: int, ctx: _Context) -> Association:
    where = _where(el, position)
    for attr, label in (("id", "id"), ("associationType", "associationType")):
        if not el.get(attr):
            ctx.error(where, f"Association has no {label} attribute", f"association-{label.lower()}-missing")
    for attr in ("sourceObject", "targetObject"):
        if not el.get(attr):
            ctx.error(where, f"Association has no {attr} attribute", "association-end-missing")
    slots = _Slots(el, where, ctx)
    return Association(
        entry_id=el.get("id", ""),
        source=el.get("sourceObject", ""),
        target=el.get("targetObject", ""),
        type=el.get("associationType", ""),
        submission_set_status=slots.single("SubmissionSetStatus"),
    )


def _check_loose(index: _Index, ctx: _Context) -> None:
    """Top-level Classifications/ExternalIdentifiers must name an object of this submission (XD 132/136)."""
    for target, elements in (*index.loose_classifications.items(), *index.loose_external_ids.items()):
        if target and target in index.ids:
            continue
        for el in elements:
            attr = "classifiedObject" if el.tag == _CLASSIFICATION else "registryObject"
            ctx.error(
                _where(el, 0) if el.get("id") else _local(el),
                f"{attr} {target!r} references no object in this submission",
                "reference-dangling",
            )


def _object_list(element: etree._Element) -> etree._Element | None:
    if element.tag == _rim("RegistryObjectList"):
        return element
    if element.tag == qname(ns.LCM, "SubmitObjectsRequest"):
        return element.find(_rim("RegistryObjectList"))
    return element.find(f"{qname(ns.LCM, 'SubmitObjectsRequest')}/{_rim('RegistryObjectList')}")


def read_submit_objects(element: etree._Element) -> MetadataRead:
    """Reads an ``lcm:SubmitObjectsRequest`` (also accepted: the enclosing PnR request element or a bare
    ``rim:RegistryObjectList``) into the model, with findings for what the model cannot hold.
    """
    ctx = _Context()
    object_list = _object_list(element)
    if object_list is None:
        ctx.error(
            _local(element), "no lcm:SubmitObjectsRequest/rim:RegistryObjectList found", "no-object-list"
        )
        return MetadataRead(None, (), (), ctx.findings)
    index = _Index(object_list)
    extrinsic = [el for el in object_list if el.tag == _EXTRINSIC]
    packages = list(enumerate((el for el in object_list if el.tag == _PACKAGE), start=1))
    associations = [el for el in object_list if el.tag == _ASSOCIATION]
    entries = tuple(_read_entry(eo, i, index, ctx) for i, eo in enumerate(extrinsic, start=1))
    chosen = _choose_submission_set(packages, index, ctx)
    submission_set = _read_submission_set(chosen[1], chosen[0], index, ctx) if chosen else None
    assocs = tuple(_read_association(el, i, ctx) for i, el in enumerate(associations, start=1))
    _check_loose(index, ctx)
    _check_child_order(object_list, ctx)
    return MetadataRead(submission_set, entries, assocs, ctx.findings)


# ebRIM RegistryObjectType content model (rim.xsd): Slot*, Name?, Description?, VersionInfo?, Classification*,
# ExternalIdentifier*, then ExtrinsicObject's ContentVersionInfo?. The XSD enforces it; a reader that does not
# validate against the schema must check it itself (NIST pnr-element-order.xml is the negative example).
_CHILD_RANK: Final = {
    _rim(name): rank
    for rank, name in enumerate(
        (
            "Slot",
            "Name",
            "Description",
            "VersionInfo",
            "Classification",
            "ExternalIdentifier",
            "ContentVersionInfo",
        )
    )
}


def _check_child_order(object_list: etree._Element, ctx: _Context) -> None:
    for obj in object_list.iter():
        highest, previous = -1, ""
        for child in obj:
            rank = _CHILD_RANK.get(child.tag) if isinstance(child.tag, str) else None
            if rank is None:
                continue
            if rank < highest:
                where = f"{_local(obj)}[@id='{obj.get('id', '')}']/{_local(child)}"
                ctx.error(
                    where,
                    f"rim:{_local(child)} comes after rim:{previous}; ebRIM requires the order Slot, Name, "
                    "Description, VersionInfo, Classification, ExternalIdentifier",
                    "element-order",
                )
                break
            highest, previous = rank, _local(child)
