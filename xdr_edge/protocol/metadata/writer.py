"""Submission -> ebRIM 3.0 ``lcm:SubmitObjectsRequest`` (ITI TF-3 4.2, 4.2.3, 4.2.5).

Emits exactly what the model holds, in the child order rim.xsd demands (``Slot*, Name?, Description?,
VersionInfo?, Classification*, ExternalIdentifier*``); profile rules (what is required at the minimal or XDS
level) belong to :mod:`xdr_edge.protocol.validate`, not here. Ids of Classifications and ExternalIdentifiers are
derived from their parent's id, so the same Submission always gives the same bytes. Pure: no I/O, no logging.
"""

from __future__ import annotations

__all__ = ["MetadataTemplates", "check_xml_text", "write_submit_objects"]

import hashlib
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from types import MappingProxyType
from typing import Any, Final

from lxml import etree

from xdr_edge.protocol import ns
from xdr_edge.protocol.errors import LocalProtocolError
from xdr_edge.protocol.metadata.vocabulary import AUTHOR_SINGLE, EXT_ID_NAMES, ID_NAMESPACE, rim
from xdr_edge.protocol.model import Association, Author, Code, DocumentEntry, Submission, SubmissionSet
from xdr_edge.protocol.xml import ElementTemplates, not_xml_char, qname

_NAMESPACE_BYTES = ID_NAMESPACE.bytes


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(ID_NAMESPACE, name))`` (RFC 4122 §4.3: SHA-1 of namespace and name, version 5, RFC 4122
    variant), formatted directly: building ``uuid.UUID`` objects was a tenth of writing the metadata."""
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8"), usedforsecurity=False).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class _Ids:
    """Deterministic, unique ids for the Classifications and ExternalIdentifiers of one parent object."""

    def __init__(self, parent_id: str) -> None:
        self.parent_id = parent_id
        self._count = 0

    def next(self) -> str:
        self._count += 1
        return f"urn:uuid:{_uuid5(f'{self.parent_id}#{self._count}')}"

    def upcoming(self) -> int:
        """The sequence number :meth:`next` will use (what names an id without computing it)."""
        return self._count + 1

    def skip(self) -> None:
        """Use up one id without computing it: a template that holds it was copied."""
        self._count += 1


class MetadataTemplates:
    """Rendered parts of the metadata that come out the same from one message to the next, kept to be copied.

    Why: a sender's submissions repeat most of their metadata (the practice's author, the coded values, the
    source's identifier), and building an lxml subtree element by element costs about four
    times as much as copying it whole. A template is keyed by everything its bytes depend on (its parent's id,
    the position that derives its own id, the scheme and the model value), so a copy is byte for byte what
    writing it would give; values unique to one message (uniqueIds, hashes, times) are never kept, nor the
    patient's identifiers (a practice seldom sends the same patient twice in a row, so they would only fill the
    store, and a long-lived store is no place for PHI).

    One per sender (:class:`xdr_edge.sender.client.XdrClient` keeps one), never process-wide; thread-safe and
    bounded as :class:`~xdr_edge.protocol.xml.ElementTemplates`, which holds them.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._store = ElementTemplates(capacity)

    def __len__(self) -> int:
        """How many templates are held (at most ``capacity``)."""
        return len(self._store)

    def copy_of(self, key: Hashable, ids: _Ids, write: Callable[[etree._Element], None]) -> etree._Element:
        """A copy of the template for ``key`` (with the parent's id and the upcoming id number added to it),
        written by ``write`` (which uses up one id of ``ids``) into a holder of its own the first time."""

        def make() -> etree._Element:
            holder = etree.Element(_TAGS["RegistryObjectList"], nsmap={"lcm": ns.LCM, "rim": ns.RIM})
            write(holder)
            return holder[0]

        element, made = self._store.copy_of((ids.parent_id, ids.upcoming(), key), make)
        if not made:
            ids.skip()  # the copy holds the id that writing it would have used up
        return element


def _write_kept(
    parent: etree._Element,
    templates: MetadataTemplates | None,
    write: Callable[[etree._Element, str, Any, _Ids], None],
    scheme: str,
    value: Hashable,
    ids: _Ids,
) -> None:
    """``write(parent, scheme, value, ids)``, or a copy of its template (keyed by the writer, the scheme and the
    value) appended to ``parent``.

    An object whose id is a UUID (``urn:uuid:``) is written directly: a UUID names one registry object of one
    submission (ebRIM 3.0), so nothing keyed by it comes again, and keeping it would only crowd out what does
    (symbolic ids such as ``Document01`` are local to a submission and repeat in every one)."""
    if templates is None or ids.parent_id.startswith("urn:uuid:"):
        write(parent, scheme, value, ids)
    else:
        parent.append(
            templates.copy_of((write, scheme, value), ids, lambda into: write(into, scheme, value, ids))
        )


#: The Clark names of the ebRIM elements written, made once (a constant table, never changed).
_TAGS: Final = MappingProxyType(
    {
        local: rim(local)
        for local in (
            "Association",
            "Classification",
            "Description",
            "ExternalIdentifier",
            "ExtrinsicObject",
            "LocalizedString",
            "Name",
            "RegistryObjectList",
            "RegistryPackage",
            "Slot",
            "Value",
            "ValueList",
        )
    }
)


_SLOT: Final = _TAGS["Slot"]
_VALUE_LIST: Final = _TAGS["ValueList"]
_VALUE: Final = _TAGS["Value"]
_LOCALIZED_STRING: Final = _TAGS["LocalizedString"]


def _sub(parent: etree._Element, local: str, **attrs: str) -> etree._Element:
    # Attributes one by one: lxml copies and re-checks an attribute dict given to SubElement, which made each
    # attribute cost about a third more than ``set`` does (the same attributes, in the same order).
    element = etree.SubElement(parent, _TAGS[local])
    for name, value in attrs.items():
        element.set(name, value)
    return element


def _write_slot(parent: etree._Element, name: str, values: Sequence[str]) -> None:
    # Written out rather than through _sub: a message has a dozen slots of three or more elements each, the
    # most frequent shape in the metadata.
    slot = etree.SubElement(parent, _SLOT)
    slot.set("name", name)
    value_list = etree.SubElement(slot, _VALUE_LIST)
    for value in values:
        etree.SubElement(value_list, _VALUE).text = value


def _write_slots(parent: etree._Element, slots: Iterable[tuple[str, Sequence[str] | str | None]]) -> None:
    """Writes each slot that has a value; ``None`` and empty lists are omitted (nothing the model lacks)."""
    for name, value in slots:
        if value is None:
            continue
        if isinstance(value, str):
            _write_slot(parent, name, (value,))
        elif value:
            _write_slot(parent, name, value)


def _write_localized(parent: etree._Element, local: str, text: str | None) -> None:
    if text is not None:
        etree.SubElement(etree.SubElement(parent, _TAGS[local]), _LOCALIZED_STRING).set("value", text)


def _write_author(parent: etree._Element, scheme: str, author: Author, ids: _Ids) -> None:
    cl = _sub(
        parent,
        "Classification",
        id=ids.next(),
        objectType=ns.OT_CLASSIFICATION,
        classificationScheme=scheme,
        classifiedObject=ids.parent_id,
        nodeRepresentation="",
    )
    _write_slots(
        cl,
        [
            (AUTHOR_SINGLE, author.person.xcn if author.person else None),
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
        classifiedObject=ids.parent_id,
        nodeRepresentation=code.code,
    )
    _write_slot(cl, "codingScheme", [code.scheme])
    if code.display:
        _write_localized(cl, "Name", code.display)


def _write_node(parent: etree._Element, node: str, _: None, ids: _Ids) -> None:
    """The classification of ``ids``' object as ``node`` (a value-less writer of :func:`_write_kept`'s shape)."""
    _sub(
        parent,
        "Classification",
        id=ids.next(),
        objectType=ns.OT_CLASSIFICATION,
        classifiedObject=ids.parent_id,
        classificationNode=node,
    )


def _write_external_id(parent: etree._Element, scheme: str, value: str, ids: _Ids) -> None:
    ext = _sub(
        parent,
        "ExternalIdentifier",
        id=ids.next(),
        objectType=ns.OT_EXTERNAL_IDENTIFIER,
        registryObject=ids.parent_id,
        identificationScheme=scheme,
        value=value,
    )
    _write_localized(ext, "Name", EXT_ID_NAMES[scheme])


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


def _write_entry(parent: etree._Element, entry: DocumentEntry, templates: MetadataTemplates | None) -> None:
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
        _write_kept(eo, templates, _write_author, ns.DE_AUTHOR, author, ids)
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
            _write_kept(eo, templates, _write_code, scheme, code, ids)
    if entry.limited_metadata:
        _write_kept(eo, templates, _write_node, ns.DE_LIMITED_METADATA, None, ids)
    if entry.patient_id is not None:
        _write_external_id(
            eo, ns.DE_PATIENT_ID, entry.patient_id.cx, ids
        )  # seldom repeats, and is PHI: no template
    _write_external_id(eo, ns.DE_UNIQUE_ID, entry.unique_id, ids)  # a new one per submission: no template


def _write_submission_set(
    parent: etree._Element, ss: SubmissionSet, templates: MetadataTemplates | None
) -> None:
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
        _write_kept(pkg, templates, _write_author, ns.SS_AUTHOR, author, ids)
    if ss.content_type_code is not None:
        _write_kept(pkg, templates, _write_code, ns.SS_CONTENT_TYPE_CODE, ss.content_type_code, ids)
    if ss.limited_metadata:
        _write_kept(pkg, templates, _write_node, ns.SS_LIMITED_METADATA, None, ids)
    _write_external_id(pkg, ns.SS_UNIQUE_ID, ss.unique_id, ids)  # a new one per submission: no template
    _write_kept(pkg, templates, _write_external_id, ns.SS_SOURCE_ID, ss.source_id, ids)
    if ss.patient_id is not None:
        _write_external_id(pkg, ns.SS_PATIENT_ID, ss.patient_id.cx, ids)  # as the entry's: no template
    # The classification that makes this RegistryPackage the SubmissionSet sits beside it (ITI TF-3 4.2, ebRIM 3.0); its id
    # continues the package's sequence so it cannot collide with the package's own children.
    _write_kept(parent, templates, _write_node, ns.SUBMISSION_SET, None, ids)


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


def _texts(value: object, path: str) -> Iterator[tuple[str, str]]:
    """Every string in ``value`` (a model dataclass, a tuple of them, a string) with the path that names it."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, tuple):
        for index, item in enumerate(value):
            yield from _texts(item, f"{path}[{index}]")
    else:
        # the model's dataclasses (a Document, which holds bytes, is none)
        for name in getattr(type(value), "__dataclass_fields__", None) or ():
            yield from _texts(getattr(value, name), f"{path}.{name}" if path else name)


def _collect(value: object, out: list[str]) -> None:
    """Every string in ``value``, appended to ``out`` (the fast pass: no paths)."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, tuple):
        for item in value:
            _collect(item, out)
    else:
        for name in getattr(type(value), "__dataclass_fields__", None) or ():
            _collect(getattr(value, name), out)


def check_xml_text(submission: Submission) -> None:
    """Refuse a submission holding text XML cannot carry (a control character such as U+0001 in a title, a lone
    surrogate in a patient name, an author or an address: XML 1.0 §2.2 ``Char``), naming the field.

    Why: lxml refuses it with a bare ``ValueError`` (or a ``UnicodeEncodeError`` when serialising) in the middle
    of writing; a library caller gets a :class:`LocalProtocolError` ``text-not-xml`` instead, before anything is
    written or sent. The message gives the field and the character's position and code point, never the text
    (it may be PHI)."""
    strings: list[str] = []
    _collect(submission, strings)
    if not_xml_char("\n".join(strings)) is None:
        return  # the common case, in one scan; the paths are worked out only for a problem
    for path, text in _texts(submission, ""):
        problem = not_xml_char(text)
        if problem is not None:
            raise LocalProtocolError(
                f"text XML cannot carry: {problem}, which XML 1.0 does not allow (§2.2 Char)",
                code="text-not-xml",
                location=path,
            )


def write_submit_objects(
    submission: Submission, *, text_checked: bool = False, templates: MetadataTemplates | None = None
) -> etree._Element:
    """The ``lcm:SubmitObjectsRequest`` for ``submission`` (ITI TF-3 4.2, ebRIM 3.0): DocumentEntries, the SubmissionSet,
    its a54d6aa5 classification, then the associations. Ids of Classifications and ExternalIdentifiers are
    derived from their parent's id, so the output is reproducible. Text XML cannot hold is refused first
    (:func:`check_xml_text`), unless ``text_checked`` says the caller has just done so for this submission (a
    sender's pre-flight does, to refuse before anything is sent; the model is immutable, so the answer stands
    and the walk over every string is not made twice per message). A sender passes its ``templates``: the
    parts that repeat between its messages are then copied rather than built (the same bytes).
    """
    if not text_checked:
        check_xml_text(submission)
    root = etree.Element(qname(ns.LCM, "SubmitObjectsRequest"), nsmap={"lcm": ns.LCM, "rim": ns.RIM})
    object_list = _sub(root, "RegistryObjectList")
    for entry in submission.document_entries:
        _write_entry(object_list, entry, templates)
    _write_submission_set(object_list, submission.submission_set, templates)
    for assoc in submission.associations:
        _write_association(object_list, assoc)
    return root
