"""The profile rules of XDS metadata as data: which attribute is required at which level (the R/R2/O/NA matrix
of ITI TF-3 4.3.1 for Provide and Register and its XDR Limited Metadata variant: the ONC checklist's PRDS and
PRDSML columns, XD rows 149-198), and the maxLength facets of rim.xsd for every value the metadata writer emits
(ebRIM 3.0: LongName 256, FreeFormText 1024). :mod:`.checks` runs them; tests read them to make one defect per
rule. Pure data and small predicates.
"""

from __future__ import annotations

__all__ = [
    "ASSOCIATION_LENGTH_RULES",
    "AUTHOR_LENGTH_RULES",
    "CODE_LENGTH_RULES",
    "DOCUMENT_ENTRY_LENGTH_RULES",
    "DOCUMENT_ENTRY_RULES",
    "SLOT_NAME",
    "SUBMISSION_SET_LENGTH_RULES",
    "SUBMISSION_SET_RULES",
    "VALUE",
    "LengthRule",
    "PresenceRule",
    "Requirement",
    "RimString",
]

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from xdr_edge.protocol.model import Association, Author, Code, DocumentEntry, MetadataLevel, SubmissionSet

# XDS error codes used here (ITI TF-3 4.2.4, ebRS 3.0).


class Requirement(StrEnum):
    """Checklist optionality (ITI TF-3 4.3.1, XDR Limited Metadata): R required, R2 required if known, O optional, NA not sent."""

    R = "R"
    R2 = "R2"
    O = "O"  # noqa: E741 - the checklist's own letter
    NA = "NA"


_T = TypeVar("_T")


@dataclass(frozen=True)
class PresenceRule(Generic[_T]):
    """One row of the ITI TF-3 4.3.1, XDR Limited Metadata matrix: whether ``attribute`` must be present at each metadata level.

    ``name`` forms the finding rule ids ``<prefix>-missing-<name>`` (R absent) and
    ``<prefix>-unexpected-<name>`` (NA present); ``where`` is the element path below the object, ``row`` the
    checklist row it comes from.
    """

    name: str
    attribute: str
    row: str
    prds: Requirement
    prdsml: Requirement
    where: str
    present: Callable[[_T], bool]

    def requirement(self, level: MetadataLevel) -> Requirement:
        """PRDSML for minimal metadata, PRDS for XDS (ONC XDR checklist DTS 430)."""
        return self.prdsml if level is MetadataLevel.MINIMAL else self.prds


_R, _R2, _O, _NA = Requirement.R, Requirement.R2, Requirement.O, Requirement.NA


def _every_author_has_person(authors: tuple[Author, ...]) -> bool:
    """authorPerson is R/R2 *within* an author classification; a missing author is the author row's job."""
    return all(a.person is not None and a.person.xcn != "" for a in authors)


def _code_present(code: Code | None) -> bool:
    return code is not None


DocumentEntryRule = PresenceRule[DocumentEntry]


SubmissionSetRule = PresenceRule[SubmissionSet]


#: DocumentEntry rows of ITI TF-3 4.3.1, XDR Limited Metadata (ONC checklist XD 149-180). limitedMetadata is NA for PRDS and R for
#: PRDSML, but Direct signals minimal metadata in the SOAP header and ETT/NIST minimal messages omit the node,
#: so a receiver must not require it (ITI TF-3 4.3.1, XDR Limited Metadata; docs/interop.md item 6): it is held at R2 here.
DOCUMENT_ENTRY_RULES: tuple[DocumentEntryRule, ...] = (
    DocumentEntryRule("entry-id", "entryUUID (@id)", "XD 149", _R, _R, "@id", lambda e: e.entry_id != ""),
    DocumentEntryRule("mime-type", "mimeType", "XD 152", _R, _R, "@mimeType", lambda e: e.mime_type != ""),
    DocumentEntryRule(
        "unique-id", "uniqueId", "XD 180", _R, _R, "ExternalIdentifier[uniqueId]", lambda e: e.unique_id != ""
    ),
    DocumentEntryRule(
        "creation-time",
        "creationTime",
        "XD 153",
        _R,
        _R2,
        "Slot[@name='creationTime']",
        lambda e: e.creation_time is not None,
    ),
    DocumentEntryRule(
        "language-code",
        "languageCode",
        "XD 155",
        _R,
        _R2,
        "Slot[@name='languageCode']",
        lambda e: bool(e.language_code),
    ),
    DocumentEntryRule(
        "source-patient-id",
        "sourcePatientId",
        "XD 161",
        _R,
        _R2,
        "Slot[@name='sourcePatientId']",
        lambda e: e.source_patient_id is not None,
    ),
    DocumentEntryRule(
        "source-patient-info",
        "sourcePatientInfo",
        "XD 162",
        _O,
        _R2,
        "Slot[@name='sourcePatientInfo']",
        lambda e: bool(e.source_patient_info),
    ),
    DocumentEntryRule(
        "patient-id",
        "patientId",
        "XD 179",
        _R,
        _R2,
        "ExternalIdentifier[patientId]",
        lambda e: e.patient_id is not None,
    ),
    DocumentEntryRule(
        "author", "author", "XD 166", _R, _R2, "Classification[author]", lambda e: bool(e.authors)
    ),
    DocumentEntryRule(
        "author-person",
        "authorPerson",
        "XD 168",
        _R,
        _R2,
        "Classification[author]/Slot[@name='authorPerson']",
        lambda e: _every_author_has_person(e.authors),
    ),
    DocumentEntryRule(
        "class-code",
        "classCode",
        "XD 171",
        _R,
        _R2,
        "Classification[classCode]",
        lambda e: _code_present(e.class_code),
    ),
    DocumentEntryRule(
        "confidentiality-code",
        "confidentialityCode",
        "XD 172",
        _R,
        _R2,
        "Classification[confidentialityCode]",
        lambda e: bool(e.confidentiality_codes),
    ),
    DocumentEntryRule(
        "format-code",
        "formatCode",
        "XD 174",
        _R,
        _R2,
        "Classification[formatCode]",
        lambda e: _code_present(e.format_code),
    ),
    DocumentEntryRule(
        "healthcare-facility-type-code",
        "healthcareFacilityTypeCode",
        "XD 175",
        _R,
        _R2,
        "Classification[healthcareFacilityTypeCode]",
        lambda e: _code_present(e.healthcare_facility_type_code),
    ),
    DocumentEntryRule(
        "practice-setting-code",
        "practiceSettingCode",
        "XD 177",
        _R,
        _R2,
        "Classification[practiceSettingCode]",
        lambda e: _code_present(e.practice_setting_code),
    ),
    DocumentEntryRule(
        "type-code",
        "typeCode",
        "XD 178",
        _R,
        _R2,
        "Classification[typeCode]",
        lambda e: _code_present(e.type_code),
    ),
    DocumentEntryRule(
        "service-start-time",
        "serviceStartTime",
        "XD 158",
        _R2,
        _R2,
        "Slot[@name='serviceStartTime']",
        lambda e: e.service_start_time is not None,
    ),
    DocumentEntryRule(
        "service-stop-time",
        "serviceStopTime",
        "XD 159",
        _R2,
        _R2,
        "Slot[@name='serviceStopTime']",
        lambda e: e.service_stop_time is not None,
    ),
    DocumentEntryRule("hash", "hash", "XD 154", _O, _O, "Slot[@name='hash']", lambda e: e.hash is not None),
    DocumentEntryRule("size", "size", "XD 160", _O, _O, "Slot[@name='size']", lambda e: e.size is not None),
    DocumentEntryRule(
        "limited-metadata",
        "limitedMetadata",
        "XD 176",
        _NA,
        _R2,
        "Classification[limitedMetadata]",
        lambda e: e.limited_metadata,
    ),
)


#: SubmissionSet rows of ITI TF-3 4.3.1, XDR Limited Metadata (XD 182-198) with the Direct overrides: intendedRecipient is R for
#: minimal metadata (DTS 434 replaces XD 185). authorTelecommunication (DTS 433) may be replaced by
#: ``direct:from``, so it is checked with the sender rules, not here. limitedMetadata: see
#: :data:`DOCUMENT_ENTRY_RULES`.
SUBMISSION_SET_RULES: tuple[SubmissionSetRule, ...] = (
    SubmissionSetRule("entry-id", "entryUUID (@id)", "XD 182", _R, _R, "@id", lambda s: s.entry_id != ""),
    SubmissionSetRule(
        "unique-id", "uniqueId", "XD 198", _R, _R, "ExternalIdentifier[uniqueId]", lambda s: s.unique_id != ""
    ),
    SubmissionSetRule(
        "source-id", "sourceId", "XD 197", _R, _R, "ExternalIdentifier[sourceId]", lambda s: s.source_id != ""
    ),
    SubmissionSetRule(
        "submission-time",
        "submissionTime",
        "XD 186",
        _R,
        _R,
        "Slot[@name='submissionTime']",
        lambda s: s.submission_time is not None,
    ),
    SubmissionSetRule(
        "patient-id",
        "patientId",
        "XD 196",
        _R,
        _R2,
        "ExternalIdentifier[patientId]",
        lambda s: s.patient_id is not None,
    ),
    SubmissionSetRule(
        "content-type-code",
        "contentTypeCode",
        "XD 194",
        _R,
        _R2,
        "Classification[contentTypeCode]",
        lambda s: _code_present(s.content_type_code),
    ),
    SubmissionSetRule(
        "author", "author", "XD 189", _R2, _R2, "Classification[author]", lambda s: bool(s.authors)
    ),
    SubmissionSetRule(
        "author-person",
        "authorPerson",
        "XD 191",
        _R,
        _R2,
        "Classification[author]/Slot[@name='authorPerson']",
        lambda s: _every_author_has_person(s.authors),
    ),
    SubmissionSetRule(
        "intended-recipient",
        "intendedRecipient",
        "XD 185 / DTS 434",
        _O,
        _R,
        "Slot[@name='intendedRecipient']",
        lambda s: bool(s.intended_recipients),
    ),
    SubmissionSetRule(
        "limited-metadata",
        "limitedMetadata",
        "XD 195",
        _NA,
        _R2,
        "Classification[limitedMetadata]",
        lambda s: s.limited_metadata,
    ),
)


@dataclass(frozen=True)
class RimString:
    """A length-limited string type of rim.xsd and the place our writer puts a value of that type.

    rim.xsd bounds strings by ``maxLength`` facets (characters, not bytes): String4/8/16/32, ShortName (64),
    LongName (256) and FreeFormText (1024). Of these the metadata writer only emits LongName and FreeFormText;
    ShortName and the StringN types belong to objects a PnR does not carry (Person, PostalAddress,
    TelephoneNumber, VersionInfo). ``id`` and every reference attribute are ``anyURI`` without a length limit.
    """

    type_name: str
    max_length: int
    carrier: str
    row: str = ""

    @property
    def citation(self) -> str:
        source = f"rim.xsd {self.type_name}"
        return f"{source}, {self.row}" if self.row else source


VALUE = RimString("LongName", 256, "rim:Slot/rim:ValueList/rim:Value", "XD 109")


_LOCALIZED = RimString("FreeFormText", 1024, "rim:LocalizedString/@value", "XD 121")


SLOT_NAME = RimString("LongName", 256, "rim:Slot/@name")


_EXTERNAL_ID_VALUE = RimString("LongName", 256, "rim:ExternalIdentifier/@value")


_NODE_REPRESENTATION = RimString("LongName", 256, "rim:Classification/@nodeRepresentation")


_MIME_TYPE = RimString("LongName", 256, "rim:ExtrinsicObject/@mimeType")


@dataclass(frozen=True)
class LengthRule(Generic[_T]):
    """One value :func:`xdr_edge.protocol.metadata.write_submit_objects` puts into a length-limited rim.xsd type.

    A value over the limit makes the request schema-invalid, so it is an error at every metadata level: the
    sender refuses it before any network I/O and the receiver answers XDSRegistryMetadataError. ``values``
    yields what the writer emits, in order; ``where`` is the element path below the object, with ``{n}`` for
    the value's position when the carrier holds several (``several``). Messages give the attribute, the limit
    and the actual length, never the value: titles and patient names are PHI.
    """

    name: str
    attribute: str
    limit: RimString
    where: str
    values: Callable[[_T], Iterable[str]]
    several: bool = False


def _one(value: object | None) -> tuple[str, ...]:
    return () if value is None else (str(value),)


def _slot(
    name: str, slot: str, values: Callable[[_T], Iterable[str]], *, several: bool = False
) -> LengthRule[_T]:
    where = f"Slot[@name='{slot}']/ValueList/Value[{{n}}]"
    return LengthRule(name, slot, VALUE, where, values, several)


def _localized(name: str, attribute: str, holder: str, text: Callable[[_T], str | None]) -> LengthRule[_T]:
    return LengthRule(
        name, attribute, _LOCALIZED, f"{holder}/LocalizedString/@value", lambda o: _one(text(o))
    )


#: DocumentEntry values and their rim.xsd types. uniqueId is left to ``de-bad-unique-id``: XD 180 bounds it
#: at 128 characters, tighter than ExternalIdentifier/@value (LongName).
DOCUMENT_ENTRY_LENGTH_RULES: tuple[LengthRule[DocumentEntry], ...] = (
    _localized("title", "title", "Name", lambda e: e.title),
    _localized("comments", "comments", "Description", lambda e: e.comments),
    LengthRule("mime-type", "mimeType", _MIME_TYPE, "@mimeType", lambda e: _one(e.mime_type)),
    LengthRule(
        "patient-id",
        "patientId",
        _EXTERNAL_ID_VALUE,
        "ExternalIdentifier[patientId]/@value",
        lambda e: _one(e.patient_id),
    ),
    _slot("creation-time", "creationTime", lambda e: _one(e.creation_time)),
    _slot("hash", "hash", lambda e: _one(e.hash)),
    _slot("size", "size", lambda e: _one(e.size)),
    _slot("language-code", "languageCode", lambda e: _one(e.language_code)),
    _slot("legal-authenticator", "legalAuthenticator", lambda e: _one(e.legal_authenticator)),
    _slot("service-start-time", "serviceStartTime", lambda e: _one(e.service_start_time)),
    _slot("service-stop-time", "serviceStopTime", lambda e: _one(e.service_stop_time)),
    _slot("source-patient-id", "sourcePatientId", lambda e: _one(e.source_patient_id)),
    _slot("source-patient-info", "sourcePatientInfo", lambda e: e.source_patient_info, several=True),
)


#: SubmissionSet values and their rim.xsd types. uniqueId and sourceId are left to ``ss-bad-unique-id`` /
#: ``ss-bad-source-id``: XD 197/198 bound them at 64 characters.
SUBMISSION_SET_LENGTH_RULES: tuple[LengthRule[SubmissionSet], ...] = (
    _localized("title", "title", "Name", lambda s: s.title),
    _localized("comments", "comments", "Description", lambda s: s.comments),
    LengthRule(
        "patient-id",
        "patientId",
        _EXTERNAL_ID_VALUE,
        "ExternalIdentifier[patientId]/@value",
        lambda s: _one(s.patient_id),
    ),
    _slot("submission-time", "submissionTime", lambda s: _one(s.submission_time)),
    _slot(
        "intended-recipient",
        "intendedRecipient",
        lambda s: (r.value for r in s.intended_recipients),
        several=True,
    ),
)


#: The slots of an author Classification (DocumentEntry and SubmissionSet alike).
AUTHOR_LENGTH_RULES: tuple[LengthRule[Author], ...] = (
    _slot("author-person", "authorPerson", lambda a: _one(a.person)),
    _slot("author-institution", "authorInstitution", lambda a: (o.xon for o in a.institutions), several=True),
    _slot("author-role", "authorRole", lambda a: a.roles, several=True),
    _slot("author-specialty", "authorSpecialty", lambda a: a.specialties, several=True),
    _slot(
        "author-telecommunication",
        "authorTelecommunication",
        lambda a: (t.xtn for t in a.telecoms),
        several=True,
    ),
)


#: A coded Classification: nodeRepresentation, its codingScheme slot and its display Name.
CODE_LENGTH_RULES: tuple[LengthRule[Code], ...] = (
    LengthRule(
        "code", "nodeRepresentation", _NODE_REPRESENTATION, "@nodeRepresentation", lambda c: (c.code,)
    ),
    _slot("coding-scheme", "codingScheme", lambda c: (c.scheme,)),
    _localized("code-display", "display name", "Name", lambda c: c.display or None),
)


#: The one slot the writer puts on an Association.
ASSOCIATION_LENGTH_RULES: tuple[LengthRule[Association], ...] = (
    _slot("submission-set-status", "SubmissionSetStatus", lambda a: _one(a.submission_set_status)),
)
