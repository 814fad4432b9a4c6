"""ebRIM 3.0 ``lcm:SubmitObjectsRequest`` -> Submission, leniently (ITI TF-3 4.2, 4.2.3, 4.2.5).

A receiver must be able to *hold* what a peer sent and name every problem, not stop at the first. What the
model cannot hold (a missing ``@id``, a dangling ``classifiedObject``, an unknown ``objectType``, zero or
several SubmissionSets, ...) becomes a :class:`~xdr_edge.protocol.findings.Finding` with an element path such as
``ExtrinsicObject[@id='Document01']/Slot[@name='creationTime']``. Values keep their wire text; the HL7 format
checks run later through the model's ``format_problems()``. Pure: elements in (callers parse bytes with
:func:`xdr_edge.protocol.xml.parse`), no I/O, no logging (metadata holds PHI).
"""

from __future__ import annotations

__all__ = ["MetadataRead", "read_submit_objects"]

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from lxml import etree

from xdr_edge.protocol import ns
from xdr_edge.protocol.codes import METADATA_ERROR
from xdr_edge.protocol.findings import Finding, Severity
from xdr_edge.protocol.metadata.vocabulary import (
    ASSOCIATION,
    AUTHOR_MULTI,
    AUTHOR_SINGLE,
    CLASSIFICATION,
    DE_CODE_SCHEMES,
    DE_MODELLED_SLOTS,
    DE_OTHER_LEGAL_SLOTS,
    EXT_ID_NAMES,
    EXTERNAL_ID,
    EXTRINSIC,
    KNOWN_OBJECT_TYPES,
    PACKAGE,
    SLOT,
    SS_MODELLED_SLOTS,
    rim,
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
    SubmissionSet,
    Telecom,
)
from xdr_edge.protocol.xml import qname


@dataclass(frozen=True)
class MetadataRead:
    """What :func:`read_submit_objects` found: the model objects and every structural finding."""

    submission_set: SubmissionSet | None
    document_entries: tuple[DocumentEntry, ...]
    associations: tuple[Association, ...]
    findings: list[Finding] = field(default_factory=list)


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
        self.findings.append(Finding(METADATA_ERROR, Severity.ERROR, location, message, rule))

    def warning(self, location: str, message: str, rule: str) -> None:
        self.findings.append(Finding(METADATA_ERROR, Severity.WARNING, location, message, rule))


def _value_text(value: etree._Element) -> str:
    # Pretty-printers indent element content; no HL7 value begins or ends with XML whitespace.
    return (value.text or "").strip(" \t\r\n")


def _slot_values(slot: etree._Element) -> tuple[str, ...]:
    return tuple(_value_text(v) for v in slot.iterfind(f"{rim('ValueList')}/{rim('Value')}"))


def _localized(el: etree._Element, local: str) -> str | None:
    """``Name``/``Description`` text from ``LocalizedString/@value``; None when absent or empty of strings."""
    holder = el.find(rim(local))
    if holder is None:
        return None
    string = holder.find(rim("LocalizedString"))
    return None if string is None else string.get("value", "")


class _Slots:
    """The Slots of one object, by name, with findings for duplicates and multiple values of single slots."""

    def __init__(self, owner: etree._Element, where: str, ctx: _Context) -> None:
        self.where = where
        self.ctx = ctx
        self.ordered: list[tuple[str, tuple[str, ...]]] = []
        self._by_name: dict[str, tuple[str, ...]] = {}
        for slot in owner.iterfind(SLOT):
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
            if el.tag == CLASSIFICATION:
                self.loose_classifications.setdefault(el.get("classifiedObject", ""), []).append(el)
            elif el.tag == EXTERNAL_ID:
                self.loose_external_ids.setdefault(el.get("registryObject", ""), []).append(el)

    def classifications(self, owner: etree._Element) -> list[etree._Element]:
        loose = self.loose_classifications.get(owner.get("id", ""), []) if owner.get("id") else []
        return [*owner.iterfind(CLASSIFICATION), *loose]

    def external_ids(self, owner: etree._Element) -> list[etree._Element]:
        loose = self.loose_external_ids.get(owner.get("id", ""), []) if owner.get("id") else []
        return [*owner.iterfind(EXTERNAL_ID), *loose]


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
    person = slots.single(AUTHOR_SINGLE)
    for name, _values in slots.ordered:
        if name != AUTHOR_SINGLE and name not in AUTHOR_MULTI:
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
    by_name = next((s for s in known if EXT_ID_NAMES[s] == name), None)
    if scheme in known:
        if name is not None and by_name != scheme:
            ctx.warning(
                here,
                f"Name {name!r} does not match identificationScheme {scheme} ({EXT_ID_NAMES[scheme]})",
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
            ctx.error(here, f"{EXT_ID_NAMES[scheme]} has no value attribute", "identifier-value-missing")
            continue
        if scheme in found:
            ctx.error(here, f"{EXT_ID_NAMES[scheme]} appears more than once", "identifier-duplicate")
            continue
        found[scheme] = value
    return found


def _single_code(classified: _Classified, scheme: str, where: str, ctx: _Context) -> Code | None:
    codes = classified.codes.get(scheme, [])
    if len(codes) > 1:
        name = DE_CODE_SCHEMES.get(scheme, "contentTypeCode")
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
    elif object_type not in KNOWN_OBJECT_TYPES:
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
        code_schemes=DE_CODE_SCHEMES,
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
        extra_slots=slots.extras(DE_MODELLED_SLOTS, DE_OTHER_LEGAL_SLOTS),
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
    # ASCII digits only: str.isdigit() also accepts "²" (which int() refuses) and any number of digits (int()
    # refuses more than 4300); a size beyond 2**63 bytes is not a document's.
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_SIZE_DIGITS:
        shown = text if len(text) <= 40 else text[:40] + "..."
        slots.ctx.error(slots.at("size"), f"size {shown!r} is not a non-negative integer", "size-format")
        return None
    return int(text)


_MAX_SIZE_DIGITS = 19


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
        extra_slots=slots.extras(SS_MODELLED_SLOTS),
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
            attr = "classifiedObject" if el.tag == CLASSIFICATION else "registryObject"
            ctx.error(
                _where(el, 0) if el.get("id") else _local(el),
                f"{attr} {target!r} references no object in this submission",
                "reference-dangling",
            )


def _object_list(element: etree._Element) -> etree._Element | None:
    if element.tag == rim("RegistryObjectList"):
        return element
    if element.tag == qname(ns.LCM, "SubmitObjectsRequest"):
        return element.find(rim("RegistryObjectList"))
    return element.find(f"{qname(ns.LCM, 'SubmitObjectsRequest')}/{rim('RegistryObjectList')}")


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
    extrinsic = [el for el in object_list if el.tag == EXTRINSIC]
    packages = list(enumerate((el for el in object_list if el.tag == PACKAGE), start=1))
    associations = [el for el in object_list if el.tag == ASSOCIATION]
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
    rim(name): rank
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
