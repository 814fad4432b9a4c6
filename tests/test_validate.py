"""Tests for xdr_edge.protocol.validate: valid minimal and XDS submissions pass; each rule fires on its own defect."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.reference import official_schema, sample_path
from xdr_edge.protocol import ns
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import ValidationFailed
from xdr_edge.protocol.findings import Finding, Severity
from xdr_edge.protocol.metadata import write_submit_objects
from xdr_edge.protocol.model import (
    Association,
    Author,
    Code,
    DirectAddress,
    Document,
    DocumentEntry,
    Dtm,
    MetadataLevel,
    Organization,
    Patient,
    Person,
    Recipient,
    Submission,
    SubmissionSet,
    Telecom,
)
from xdr_edge.protocol.validate import (
    ASSOCIATION_LENGTH_RULES,
    AUTHOR_LENGTH_RULES,
    CODE_LENGTH_RULES,
    DOCUMENT_ENTRY_LENGTH_RULES,
    DOCUMENT_ENTRY_RULES,
    SUBMISSION_SET_LENGTH_RULES,
    SUBMISSION_SET_RULES,
    LengthRule,
    Requirement,
    check_documents,
    check_outgoing,
    raise_for_errors,
    validate,
)
from xdr_edge.protocol.wire import build_request, parse_request
from xdr_edge.protocol.xml import parse, qname, tostring

SENDER = DirectAddress("sender@direct.clinic.example")
RECEIVER = DirectAddress("doctor@direct.hospital.example")
PATIENT = Patient.of("MRN-1", "1.2.3.4.5")
CONTENT = b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>"
SS = "RegistryPackage[@id='SubmissionSet01']"
DE = "ExtrinsicObject[@id='Document01']"

# factory


def _author() -> Author:
    return Author(
        person=Person.of(family="Welby", given="Marcus", id="1234", authority="1.2.3.4.9"),
        institutions=(Organization.of("Get Well Clinic", "1.2.3.4.10"),),
        telecoms=(Telecom.of(SENDER),),
    )


def make_entry(level: MetadataLevel, **changes: Any) -> DocumentEntry:
    """A DocumentEntry with every attribute the level requires (and for minimal, only those)."""
    if level is MetadataLevel.MINIMAL:
        entry = DocumentEntry(
            entry_id="Document01",
            unique_id="1.2.3.4.100.1",
            mime_type="text/xml",
            document=Document.from_bytes(CONTENT),
        )
    else:
        entry = DocumentEntry(
            entry_id="Document01",
            unique_id="1.2.3.4.100.1",
            mime_type="text/xml",
            document=Document.from_bytes(CONTENT),
            creation_time=Dtm("20240131120000"),
            class_code=Code("34133-9", "2.16.840.1.113883.6.1", "Summary of episode note"),
            type_code=Code("34133-9", "2.16.840.1.113883.6.1", "Summary of episode note"),
            format_code=Code("urn:hl7-org:sdwg:ccda-structuredBody:2.1", "1.3.6.1.4.1.19376.1.2.3"),
            confidentiality_codes=(Code("N", "2.16.840.1.113883.5.25", "normal"),),
            healthcare_facility_type_code=Code("35971002", "2.16.840.1.113883.6.96", "Ambulatory"),
            practice_setting_code=Code("408443003", "2.16.840.1.113883.6.96", "General medical practice"),
            language_code="en-US",
            patient_id=PATIENT,
            source_patient_id=Patient.of("LOCAL-7", "1.2.3.4.6"),
            source_patient_info=("PID-3|LOCAL-7^^^&1.2.3.4.6&ISO", "PID-8|F"),
            authors=(_author(),),
            service_start_time=Dtm("20240101"),
            service_stop_time=Dtm("20240102"),
        )
    return dataclasses.replace(entry, **changes)


def make_submission(level: MetadataLevel = MetadataLevel.XDS, **changes: Any) -> Submission:
    """A valid submission at ``level``; ``changes`` replace Submission fields."""
    if level is MetadataLevel.MINIMAL:
        ss = SubmissionSet(
            entry_id="SubmissionSet01",
            unique_id="1.2.3.4.200.1",
            source_id="1.2.3.4.300",
            submission_time=Dtm("20240131120500"),
            authors=(Author(telecoms=(Telecom.of(SENDER),)),),
            intended_recipients=(Recipient.of(RECEIVER),),
            limited_metadata=True,
        )
    else:
        ss = SubmissionSet(
            entry_id="SubmissionSet01",
            unique_id="1.2.3.4.200.1",
            source_id="1.2.3.4.300",
            submission_time=Dtm("20240131120500"),
            content_type_code=Code("34133-9", "2.16.840.1.113883.6.1", "Summary of episode note"),
            authors=(_author(),),
            intended_recipients=(
                Recipient.of(RECEIVER, organization=Organization.of("Hospital", "1.2.3.4.11")),
            ),
            patient_id=PATIENT,
        )
    fields: dict[str, Any] = {
        "submission_set": ss,
        "document_entries": (make_entry(level),),
        "associations": (Association("as01", "SubmissionSet01", "Document01"),),
        "level": level,
        "direct_from": SENDER,
        "direct_to": (RECEIVER,),
    }
    fields.update(changes)
    return Submission(**fields)


def with_ss(submission: Submission, **changes: Any) -> Submission:
    return dataclasses.replace(
        submission, submission_set=dataclasses.replace(submission.submission_set, **changes)
    )


def with_entry(submission: Submission, **changes: Any) -> Submission:
    entry = dataclasses.replace(submission.document_entries[0], **changes)
    return dataclasses.replace(submission, document_entries=(entry, *submission.document_entries[1:]))


def rules(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


def only(findings: list[Finding], rule: str) -> Finding:
    """The single finding of ``rule``, asserting nothing else is an error."""
    matching = [f for f in findings if f.rule == rule]
    assert len(matching) == 1, findings
    others = [f for f in findings if f.is_error and f.rule != rule]
    assert not others, others
    return matching[0]


LEVELS = [MetadataLevel.MINIMAL, MetadataLevel.XDS]

# valid baselines


@pytest.mark.parametrize("level", LEVELS)
def test_valid_submission_has_no_findings(level: MetadataLevel) -> None:
    submission = make_submission(level)
    assert validate(submission) == []
    assert check_documents(submission) == []


def test_minimal_submission_fails_at_xds_level() -> None:
    findings = validate(make_submission(MetadataLevel.MINIMAL), MetadataLevel.XDS)
    assert {
        "de-missing-creation-time",
        "de-missing-patient-id",
        "de-missing-class-code",
        "ss-missing-patient-id",
        "ss-missing-content-type-code",
    } <= rules(findings)
    assert "ss-unexpected-limited-metadata" in rules(findings)
    assert all(f.code == "XDSRegistryMetadataError" for f in findings)


def test_xds_submission_is_valid_at_minimal_level() -> None:
    submission = make_submission(MetadataLevel.XDS)
    assert validate(submission, MetadataLevel.MINIMAL) == []


def test_level_defaults_to_the_submissions_own() -> None:
    minimal = make_submission(MetadataLevel.MINIMAL)
    assert validate(minimal) == validate(minimal, MetadataLevel.MINIMAL)
    assert validate(dataclasses.replace(minimal, level=MetadataLevel.XDS)) != []


# the rule table


def test_rule_tables_follow_digest_section_9() -> None:
    de = {r.attribute: (r.prds, r.prdsml) for r in DOCUMENT_ENTRY_RULES}
    ss = {r.attribute: (r.prds, r.prdsml) for r in SUBMISSION_SET_RULES}
    R, R2, OPT, NA = Requirement.R, Requirement.R2, Requirement.O, Requirement.NA
    assert de["mimeType"] == (R, R)
    assert de["uniqueId"] == (R, R)
    assert de["creationTime"] == (R, R2)
    assert de["sourcePatientInfo"] == (OPT, R2)
    assert de["serviceStartTime"] == (R2, R2)
    assert de["hash"] == (OPT, OPT)
    assert de["limitedMetadata"][0] is NA
    assert ss["submissionTime"] == (R, R)
    assert ss["patientId"] == (R, R2)
    assert ss["intendedRecipient"] == (OPT, R)
    assert len({r.name for r in DOCUMENT_ENTRY_RULES}) == len(DOCUMENT_ENTRY_RULES)


# Every R attribute of the tables, removed on its own, gives exactly its rule at the level where it is R.
_DE_REMOVALS: list[tuple[str, dict[str, Any], list[MetadataLevel]]] = [
    ("de-missing-mime-type", {"mime_type": ""}, LEVELS),
    ("de-missing-unique-id", {"unique_id": ""}, LEVELS),
    ("de-missing-creation-time", {"creation_time": None}, [MetadataLevel.XDS]),
    ("de-missing-language-code", {"language_code": None}, [MetadataLevel.XDS]),
    ("de-missing-source-patient-id", {"source_patient_id": None}, [MetadataLevel.XDS]),
    ("de-missing-class-code", {"class_code": None}, [MetadataLevel.XDS]),
    ("de-missing-confidentiality-code", {"confidentiality_codes": ()}, [MetadataLevel.XDS]),
    ("de-missing-format-code", {"format_code": None}, [MetadataLevel.XDS]),
    (
        "de-missing-healthcare-facility-type-code",
        {"healthcare_facility_type_code": None},
        [MetadataLevel.XDS],
    ),
    ("de-missing-practice-setting-code", {"practice_setting_code": None}, [MetadataLevel.XDS]),
    ("de-missing-type-code", {"type_code": None}, [MetadataLevel.XDS]),
    ("de-missing-author", {"authors": ()}, [MetadataLevel.XDS]),
    ("de-missing-author-person", {"authors": (Author(telecoms=(Telecom.of(SENDER),)),)}, [MetadataLevel.XDS]),
]


@pytest.mark.parametrize(("rule", "change", "levels"), _DE_REMOVALS, ids=[r[0] for r in _DE_REMOVALS])
def test_each_required_entry_attribute(
    rule: str, change: dict[str, Any], levels: list[MetadataLevel]
) -> None:
    for level in LEVELS:
        findings = validate(with_entry(make_submission(MetadataLevel.XDS), **change), level)
        if level in levels:
            finding = only(findings, rule)
            assert finding.code == "XDSRegistryMetadataError"
            assert finding.severity is Severity.ERROR
            assert finding.location.startswith(DE + "/")
            assert "Document01" in finding.message
        else:
            assert rule not in rules(findings)
            assert not [f for f in findings if f.is_error]


def test_patient_id_missing_on_entry_is_required_only_at_xds() -> None:
    submission = with_entry(make_submission(MetadataLevel.XDS), patient_id=None)
    assert (
        only(validate(submission), "de-missing-patient-id").location == f"{DE}/ExternalIdentifier[patientId]"
    )
    assert validate(submission, MetadataLevel.MINIMAL) == []


_SS_REMOVALS: list[tuple[str, dict[str, Any], list[MetadataLevel], str]] = [
    ("ss-missing-unique-id", {"unique_id": ""}, LEVELS, "ExternalIdentifier[uniqueId]"),
    ("ss-missing-source-id", {"source_id": ""}, LEVELS, "ExternalIdentifier[sourceId]"),
    ("ss-missing-submission-time", {"submission_time": None}, LEVELS, "Slot[@name='submissionTime']"),
    (
        "ss-missing-content-type-code",
        {"content_type_code": None},
        [MetadataLevel.XDS],
        "Classification[contentTypeCode]",
    ),
]


@pytest.mark.parametrize(
    ("rule", "change", "levels", "where"), _SS_REMOVALS, ids=[r[0] for r in _SS_REMOVALS]
)
def test_each_required_submission_set_attribute(
    rule: str, change: dict[str, Any], levels: list[MetadataLevel], where: str
) -> None:
    for level in LEVELS:
        findings = validate(with_ss(make_submission(MetadataLevel.XDS), **change), level)
        if level in levels:
            assert only(findings, rule).location == f"{SS}/{where}"
        else:
            assert findings == []


def test_ss_patient_id_required_at_xds_only() -> None:
    submission = with_ss(make_submission(MetadataLevel.XDS), patient_id=None)
    assert (
        only(validate(submission), "ss-missing-patient-id").location == f"{SS}/ExternalIdentifier[patientId]"
    )
    assert validate(submission, MetadataLevel.MINIMAL) == []


def test_ss_author_person_required_at_xds_when_an_author_is_present() -> None:
    submission = with_ss(
        make_submission(MetadataLevel.XDS), authors=(Author(telecoms=(Telecom.of(SENDER),)),)
    )
    finding = only(validate(submission), "ss-missing-author-person")
    assert finding.location == f"{SS}/Classification[author]/Slot[@name='authorPerson']"


def test_r2_and_optional_attributes_missing_stay_quiet() -> None:
    submission = with_entry(
        make_submission(MetadataLevel.XDS),
        service_start_time=None,
        service_stop_time=None,
        source_patient_info=(),
    )
    assert validate(submission) == []


def test_limited_metadata_flag_at_xds_level_is_a_warning() -> None:
    submission = with_entry(make_submission(MetadataLevel.XDS), limited_metadata=True)
    finding = only(validate(submission), "de-unexpected-limited-metadata")
    assert finding.severity is Severity.WARNING
    assert finding.location == f"{DE}/Classification[limitedMetadata]"


# the five ETT missing-metadata variants (ONC ETT XDR tests, negative_missing_metadata_elements1-5)


def test_ett_variant_1_document_entry_unique_id_missing() -> None:
    submission = with_entry(make_submission(MetadataLevel.MINIMAL), unique_id="")
    finding = only(validate(submission), "de-missing-unique-id")
    assert finding.location == f"{DE}/ExternalIdentifier[uniqueId]"


def test_ett_variant_2_submission_set_source_id_missing() -> None:
    submission = with_ss(make_submission(MetadataLevel.MINIMAL), source_id="")
    finding = only(validate(submission), "ss-missing-source-id")
    assert finding.location == f"{SS}/ExternalIdentifier[sourceId]"
    assert finding.code == "XDSRegistryMetadataError"


def test_ett_variant_3_mime_type_missing() -> None:
    submission = with_entry(make_submission(MetadataLevel.MINIMAL), mime_type="")
    assert only(validate(submission), "de-missing-mime-type").location == f"{DE}/@mimeType"


def test_ett_variant_4_document_entry_without_id() -> None:
    submission = with_entry(make_submission(MetadataLevel.MINIMAL), entry_id="")
    findings = validate(submission)
    finding = [f for f in findings if f.rule == "de-missing-entry-id"]
    assert len(finding) == 1
    assert finding[0].location == "ExtrinsicObject[1]/@id"
    # the HasMember to 'Document01' now dangles; no second complaint about the id-less entry itself
    assert rules(findings) == {"de-missing-entry-id", "association-dangling-target"}


def test_ett_variant_5_creation_time_missing_at_xds_but_fine_at_minimal() -> None:
    submission = with_entry(make_submission(MetadataLevel.XDS), creation_time=None)
    finding = only(validate(submission), "de-missing-creation-time")
    assert finding.location == f"{DE}/Slot[@name='creationTime']"
    assert "PRDS" in finding.message
    assert validate(submission, MetadataLevel.MINIMAL) == []
    minimal = with_entry(make_submission(MetadataLevel.MINIMAL), creation_time=None)
    assert validate(minimal) == []


def test_no_document_entries() -> None:
    submission = make_submission(MetadataLevel.MINIMAL, document_entries=(), associations=())
    assert only(validate(submission), "no-document-entries").location == "RegistryObjectList"


# identifiers


@pytest.mark.parametrize(
    "unique_id",
    ["1.2.3.4", "1.2.3.4^ext-7", "2.25.329800735698586629295641978511506172918", "1." + "1" * 126],
)
def test_good_document_unique_ids(unique_id: str) -> None:
    assert validate(with_entry(make_submission(), unique_id=unique_id)) == []


@pytest.mark.parametrize(
    "unique_id",
    ["not-an-oid", "1.2.3^", "1.02.3", "urn:oid:1.2.3", "1.2^a^b", "1." + "1" * 127, "abc^1.2.3"],
)
def test_bad_document_unique_ids(unique_id: str) -> None:
    finding = only(validate(with_entry(make_submission(), unique_id=unique_id)), "de-bad-unique-id")
    assert finding.location == f"{DE}/ExternalIdentifier[uniqueId]"


@pytest.mark.parametrize(
    ("field", "value"), [("unique_id", "1.2.x"), ("source_id", "source-1"), ("unique_id", "1." + "2" * 63)]
)
def test_bad_submission_set_oids(field: str, value: str) -> None:
    rule = "ss-bad-unique-id" if field == "unique_id" else "ss-bad-source-id"
    where = "uniqueId" if field == "unique_id" else "sourceId"
    finding = only(validate(with_ss(make_submission(), **{field: value})), rule)
    assert finding.location == f"{SS}/ExternalIdentifier[{where}]"


def test_document_unique_id_equal_to_submission_set_unique_id() -> None:
    submission = with_entry(make_submission(), unique_id="1.2.3.4.200.1")
    finding = only(validate(submission), "de-unique-id-equals-submission-set")
    assert finding.code == "XDSRegistryDuplicateUniqueIdInMessage"
    assert finding.message.startswith("1.2.3.4.200.1:")
    assert "DTS 443" in finding.message
    assert finding.location == f"{DE}/ExternalIdentifier[uniqueId]"


def _two_entries(second: DocumentEntry) -> Submission:
    base = make_submission(MetadataLevel.XDS)
    return dataclasses.replace(
        base,
        document_entries=(base.document_entries[0], second),
        associations=(*base.associations, Association("as02", "SubmissionSet01", second.entry_id)),
    )


def test_duplicate_document_unique_ids() -> None:
    submission = _two_entries(make_entry(MetadataLevel.XDS, entry_id="Document02"))
    finding = only(validate(submission), "duplicate-unique-id")
    assert finding.code == "XDSRegistryDuplicateUniqueIdInMessage"
    assert finding.message.startswith("1.2.3.4.100.1:")
    assert finding.location == "ExtrinsicObject[@id='Document02']/ExternalIdentifier[uniqueId]"


def test_duplicate_entry_ids() -> None:
    submission = _two_entries(make_entry(MetadataLevel.XDS, unique_id="1.2.3.4.100.2"))
    findings = validate(submission)
    dup = [f for f in findings if f.rule == "duplicate-entry-id"]
    assert len(dup) == 1
    assert dup[0].location == f"{DE}/@id"
    assert "'Document01'" in dup[0].message


def test_urn_uuid_ids_must_be_uuids() -> None:
    submission = make_submission(
        associations=(Association("urn:uuid:not-a-uuid", "SubmissionSet01", "Document01"),)
    )
    finding = only(validate(submission), "association-bad-id")
    assert finding.location == "Association[@id='urn:uuid:not-a-uuid']/@id"


def test_valid_urn_uuid_ids_are_accepted() -> None:
    ss_id, de_id = (
        "urn:uuid:96bd4589-6975-43bf-81e8-9cf1701d0f10",
        "urn:uuid:1d4f0b2e-1a38-4dcb-9a2b-7c1c5e6a1f00",
    )
    submission = with_entry(with_ss(make_submission(), entry_id=ss_id), entry_id=de_id)
    submission = dataclasses.replace(
        submission, associations=(Association("urn:uuid:5a2e1e7c-7d8e-4a42-a1a4-3f7f8f2d0c11", ss_id, de_id),)
    )
    assert validate(submission) == []


# formats (ITI TF-3 4.2.3)


def test_bad_cx_patient_ids() -> None:
    submission = with_ss(
        with_entry(make_submission(), patient_id=Patient("MRN-1^^^1.2.3.4.5")), patient_id=None
    )
    finding = only(validate(submission, MetadataLevel.MINIMAL), "de-bad-patient-id")
    assert finding.location == f"{DE}/ExternalIdentifier[patientId]"
    assert "CX" in finding.message
    bad_source = with_entry(make_submission(), source_patient_id=Patient("X^^^&not-oid&ISO"))
    assert (
        only(validate(bad_source), "de-bad-source-patient-id").location
        == f"{DE}/Slot[@name='sourcePatientId']"
    )
    bad_ss = with_ss(make_submission(), patient_id=Patient("^^^&1.2.3&ISO"))
    findings = validate(bad_ss)
    assert "ss-bad-patient-id" in rules(findings)


def test_bad_xcn_author_person() -> None:
    author = dataclasses.replace(_author(), person=Person("^Welby"))
    finding = only(validate(with_entry(make_submission(), authors=(author,))), "de-bad-author-person")
    assert finding.location == f"{DE}/Classification[author][1]/Slot[@name='authorPerson']"
    assert "XCN" in finding.message


def test_bad_xcn_legal_authenticator() -> None:
    submission = with_entry(make_submission(), legal_authenticator=Person("99^Welby^^^^^^^&bad&ISO"))
    assert only(validate(submission), "de-bad-legal-authenticator").location == (
        f"{DE}/Slot[@name='legalAuthenticator']"
    )


def test_bad_xon_institution() -> None:
    author = dataclasses.replace(_author(), institutions=(Organization("^^^^^^^^^1.2.3"),))
    finding = only(validate(with_ss(make_submission(), authors=(author,))), "ss-bad-author-institution")
    assert finding.location == f"{SS}/Classification[author][1]/Slot[@name='authorInstitution']"
    assert "XON" in finding.message


def test_bad_xtn_author_telecommunication() -> None:
    author = dataclasses.replace(_author(), telecoms=(Telecom("^^X.400^sender@direct.clinic.example"),))
    findings = validate(with_ss(make_submission(), authors=(author,)))
    finding = [f for f in findings if f.rule == "ss-bad-author-telecommunication"]
    assert len(finding) == 1
    assert finding[0].location == f"{SS}/Classification[author][1]/Slot[@name='authorTelecommunication']"
    assert "Internet" in finding[0].message


def test_bad_intended_recipient_without_xtn() -> None:
    submission = with_ss(
        make_submission(MetadataLevel.MINIMAL), intended_recipients=(Recipient("Hospital||"),)
    )
    finding = only(validate(submission), "ss-bad-intended-recipient")
    assert finding.location == f"{SS}/Slot[@name='intendedRecipient']"
    assert "DTS 434" in finding.message


@pytest.mark.parametrize("text", ["2024013", "20240231", "2024-01-31", "202401311200000"])
def test_bad_dtm_values(text: str) -> None:
    submission = with_entry(make_submission(), creation_time=Dtm(text))
    finding = only(validate(submission), "de-bad-creation-time")
    assert finding.location == f"{DE}/Slot[@name='creationTime']"
    ss_bad = with_ss(make_submission(), submission_time=Dtm(text))
    assert only(validate(ss_bad), "ss-bad-submission-time").location == f"{SS}/Slot[@name='submissionTime']"


def test_service_stop_before_start() -> None:
    submission = with_entry(
        make_submission(), service_start_time=Dtm("20240105"), service_stop_time=Dtm("20240104")
    )
    finding = only(validate(submission), "de-service-time-order")
    assert finding.location == f"{DE}/Slot[@name='serviceStopTime']"
    same_day = with_entry(
        make_submission(), service_start_time=Dtm("20240105"), service_stop_time=Dtm("20240105")
    )
    assert validate(same_day) == []


@pytest.mark.parametrize("code", ["en US", "en_US", "en-", "123", "toolonglang"])
def test_bad_language_codes(code: str) -> None:
    finding = only(validate(with_entry(make_submission(), language_code=code)), "de-bad-language-code")
    assert finding.location == f"{DE}/Slot[@name='languageCode']"


@pytest.mark.parametrize("code", ["en", "en-us", "en-US", "zh-Hant-TW", "i-klingon"])
def test_good_language_codes(code: str) -> None:
    assert validate(with_entry(make_submission(), language_code=code)) == []


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("hash", "abc", "de-bad-hash"),
        ("hash", "g" * 40, "de-bad-hash"),
        ("size", -1, "de-bad-size"),
        ("mime_type", "textxml", "de-bad-mime-type"),
        ("source_patient_info", ("Jones^Isabella",), "de-bad-source-patient-info"),
        ("object_type", ns.DOC_ENTRY_ON_DEMAND, "de-bad-object-type"),
    ],
)
def test_bad_entry_values(field: str, value: Any, rule: str) -> None:
    only(validate(with_entry(make_submission(), **{field: value})), rule)


def test_good_hash_and_size_formats() -> None:
    sha1 = hashlib.sha1(CONTENT).hexdigest().upper()
    assert validate(with_entry(make_submission(), hash=sha1, size=0)) == []


def test_bad_coded_values() -> None:
    submission = with_entry(make_submission(), class_code=Code("", "2.16.840.1.113883.6.1"))
    assert only(validate(submission), "de-bad-class-code").location == f"{DE}/Classification[classCode]"
    no_scheme = with_ss(make_submission(), content_type_code=Code("34133-9", ""))
    finding = only(validate(no_scheme), "ss-bad-content-type-code")
    assert "codingScheme" in finding.message


def test_unknown_slot_names_are_warnings_and_urn_slots_are_legal() -> None:
    submission = with_entry(make_submission(), extra_slots=(("colour", ("blue",)), ("urn:example:x", ("1",))))
    finding = only(validate(submission), "de-unknown-slot")
    assert finding.severity is Severity.WARNING
    assert finding.location == f"{DE}/Slot[@name='colour']"


# patient ids


def test_patient_id_mismatch_between_submission_set_and_entry() -> None:
    submission = with_entry(make_submission(), patient_id=Patient.of("OTHER", "1.2.3.4.5"))
    finding = only(validate(submission), "de-patient-id-mismatch")
    assert finding.code == "XDSPatientIdDoesNotMatch"
    assert finding.location == f"{DE}/ExternalIdentifier[patientId]"
    assert "OTHER" not in finding.message  # identifiers stay out of messages


def test_patient_id_mismatch_between_entries_without_submission_set_patient() -> None:
    second = make_entry(
        MetadataLevel.MINIMAL,
        entry_id="Document02",
        unique_id="1.2.3.4.100.2",
        patient_id=Patient.of("B", "1.2.3"),
    )
    first = make_entry(MetadataLevel.MINIMAL, patient_id=Patient.of("A", "1.2.3"))
    base = make_submission(MetadataLevel.MINIMAL)
    submission = dataclasses.replace(
        base,
        document_entries=(first, second),
        associations=(*base.associations, Association("as02", "SubmissionSet01", "Document02")),
    )
    finding = only(validate(submission), "de-patient-id-mismatch")
    assert finding.location == "ExtrinsicObject[@id='Document02']/ExternalIdentifier[patientId]"


# associations


def test_missing_has_member_association() -> None:
    submission = make_submission(MetadataLevel.MINIMAL, associations=())
    finding = only(validate(submission), "de-missing-has-member")
    assert finding.location == DE
    assert "'Document01'" in finding.message
    assert finding.code == "XDSRegistryMetadataError"


def test_has_member_from_another_source_does_not_count() -> None:
    submission = make_submission(associations=(Association("as01", "Document01", "Document01"),))
    assert rules(validate(submission)) == {"de-missing-has-member", "association-to-self"}


def test_two_has_member_associations_for_one_entry() -> None:
    submission = make_submission(
        associations=(
            Association("as01", "SubmissionSet01", "Document01"),
            Association("as02", "SubmissionSet01", "Document01"),
        )
    )
    assert only(validate(submission), "de-duplicate-has-member").location == DE


@pytest.mark.parametrize("status", ["Reference", None])
def test_has_member_status_must_be_original(status: str | None) -> None:
    submission = make_submission(
        associations=(Association("as01", "SubmissionSet01", "Document01", submission_set_status=status),)
    )
    finding = only(validate(submission), "association-bad-submission-set-status")
    assert finding.location == "Association[@id='as01']/Slot[@name='SubmissionSetStatus']"


def test_dangling_association_ends() -> None:
    extra = Association("as02", "SubmissionSet01", "Document99")
    submission = make_submission(associations=(Association("as01", "SubmissionSet01", "Document01"), extra))
    finding = only(validate(submission), "association-dangling-target")
    assert finding.location == "Association[@id='as02']/@targetObject"
    assert "'Document99'" in finding.message
    source = make_submission(
        associations=(
            Association("as01", "SubmissionSet01", "Document01"),
            Association("as02", "Nowhere", "as01"),
        )
    )
    assert (
        only(validate(source), "association-dangling-source").location
        == "Association[@id='as02']/@sourceObject"
    )


def test_association_to_itself() -> None:
    submission = make_submission(
        associations=(
            Association("as01", "SubmissionSet01", "Document01"),
            Association("as02", "Document01", "Document01", type="urn:ihe:iti:2007:AssociationType:signs"),
        )
    )
    assert only(validate(submission), "association-to-self").location == "Association[@id='as02']"


def test_association_without_id() -> None:
    submission = make_submission(associations=(Association("", "SubmissionSet01", "Document01"),))
    assert only(validate(submission), "association-missing-id").location == "Association[1]/@id"


# Direct sender and recipients (XDR and XDM for Direct Messaging §4; our practice-binding rule)


def test_sender_from_author_telecom_when_no_address_block() -> None:
    submission = make_submission(MetadataLevel.MINIMAL, direct_from=None, direct_to=())
    assert validate(submission) == []


def test_sender_unknown_without_address_block_or_author_telecom() -> None:
    submission = with_ss(make_submission(MetadataLevel.MINIMAL, direct_from=None), authors=())
    finding = only(validate(submission), "sender-unknown")
    assert finding.location == f"{SS}/Classification[author]/Slot[@name='authorTelecommunication']"
    assert "DTS 433" in finding.message


def test_direct_from_without_author_telecom_is_enough() -> None:
    assert validate(with_ss(make_submission(MetadataLevel.MINIMAL), authors=())) == []


def test_direct_from_disagrees_with_author_telecom() -> None:
    other = DirectAddress("mallory@direct.elsewhere.example")
    finding = only(validate(make_submission(direct_from=other)), "sender-mismatch")
    assert finding.location == "S:Header/direct:addressBlock/direct:from"
    assert str(other) in finding.message
    assert str(SENDER) in finding.message


def test_direct_from_domain_case_does_not_matter() -> None:
    submission = make_submission(direct_from=DirectAddress.parse("mailto:sender@DIRECT.Clinic.example"))
    assert validate(submission) == []


def test_no_recipient_at_all() -> None:
    submission = with_ss(make_submission(MetadataLevel.XDS, direct_to=()), intended_recipients=())
    finding = only(validate(submission), "no-recipient")
    assert finding.location == "S:Header/direct:addressBlock/direct:to"


def test_intended_recipient_required_at_minimal() -> None:
    submission = with_ss(make_submission(MetadataLevel.MINIMAL), intended_recipients=())
    finding = only(validate(submission), "ss-missing-intended-recipient")
    assert finding.location == f"{SS}/Slot[@name='intendedRecipient']"
    assert validate(submission, MetadataLevel.XDS) != []  # still XDS-incomplete, but no recipient complaint
    assert "ss-missing-intended-recipient" not in rules(validate(submission, MetadataLevel.XDS))


def test_recipient_from_intended_recipient_when_no_address_block() -> None:
    submission = make_submission(MetadataLevel.XDS, direct_to=())
    assert submission.submission_set.intended_recipients
    assert validate(submission) == []


# documents


def test_missing_document() -> None:
    submission = with_entry(make_submission(), document=None)
    findings = check_documents(submission)
    assert len(findings) == 1
    assert findings[0].code == "XDSMissingDocument"
    assert findings[0].rule == "de-missing-document"
    assert findings[0].location == DE


def test_matching_hash_and_size_case_insensitive() -> None:
    sha1 = hashlib.sha1(CONTENT).hexdigest()
    submission = with_entry(make_submission(), hash=sha1.upper(), size=len(CONTENT))
    assert check_documents(submission) == []


def test_hash_mismatch() -> None:
    declared = "0" * 40
    submission = with_entry(make_submission(), hash=declared)
    findings = check_documents(submission)
    assert len(findings) == 1
    finding = findings[0]
    assert finding.code == "XDSRepositoryMetadataError"
    assert finding.rule == "de-hash-mismatch"
    assert finding.location == f"{DE}/Slot[@name='hash']"
    assert finding.message == (
        f"DocumentEntry 'Document01': declared hash {declared} does not match the document's SHA-1 "
        f"{hashlib.sha1(CONTENT).hexdigest()}"
    )
    assert "ClinicalDocument" not in finding.message


def test_size_mismatch() -> None:
    submission = with_entry(make_submission(), size=len(CONTENT) + 1)
    findings = check_documents(submission)
    assert [f.rule for f in findings] == ["de-size-mismatch"]
    assert str(len(CONTENT)) in findings[0].message


def test_document_from_file_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "doc.xml"
    path.write_bytes(CONTENT)
    entry_doc = Document.from_path(path)
    good = with_entry(make_submission(), document=entry_doc, hash=hashlib.sha1(CONTENT).hexdigest())
    assert check_documents(good) == []
    path.unlink()
    findings = check_documents(good)
    assert [f.rule for f in findings] == ["de-unreadable-document"]
    assert findings[0].code == "XDSMissingDocument"


# raise_for_errors


def test_raise_for_errors() -> None:
    raise_for_errors([])
    warning = Finding("XDSRegistryMetadataError", Severity.WARNING, "here", "just a warning", "w")
    raise_for_errors([warning])
    findings = validate(with_ss(make_submission(), source_id=""))
    with pytest.raises(ValidationFailed) as info:
        raise_for_errors([warning, *findings])
    assert info.value.findings[0] is warning
    assert "sourceId" in str(info.value)


def test_association_type_must_be_a_urn() -> None:
    submission = make_submission(
        associations=(Association("as01", "SubmissionSet01", "Document01", type="HasMember"),)
    )
    findings = validate(submission)
    assert rules(findings) == {"association-bad-type", "de-missing-has-member"}
    bad_type = next(f for f in findings if f.rule == "association-bad-type")
    assert bad_type.location == "Association[@id='as01']/@associationType"


def test_association_naming_itself() -> None:
    submission = make_submission(
        associations=(
            Association("as01", "SubmissionSet01", "Document01"),
            Association("as02", "SubmissionSet01", "as02", submission_set_status=None),
        )
    )
    assert only(validate(submission), "association-to-self").location == "Association[@id='as02']"


# lengths: the maxLength facets of rim.xsd (ITI TF-3 4.2, ebRIM 3.0) the writer's values must respect

LONG_NAME, FREE_FORM_TEXT = 256, 1024
FILLER = "Q"
ADDRESS_TAIL = "@direct.clinic.example"


def _text(length: int, prefix: str = "", suffix: str = "") -> str:
    """``prefix`` + filler + ``suffix``, exactly ``length`` characters: a value made to sit on a limit."""
    filler = length - len(prefix) - len(suffix)
    assert filler >= 1
    return prefix + FILLER * filler + suffix


def _language_tag(length: int) -> str:
    """A well-formed BCP 47 tag of exactly ``length`` characters (subtags of at most 8)."""
    tag = "en"
    while length - len(tag) > 9:
        tag += "-" + "a" * min(8, length - len(tag) - 3)
    if rest := length - len(tag):
        tag += "-" + "b" * (rest - 1)
    assert len(tag) == length
    return tag


def _long_address(length: int) -> DirectAddress:
    return DirectAddress(_text(length, suffix=ADDRESS_TAIL))


def _xds() -> Submission:
    return make_submission(MetadataLevel.XDS)


def _minimal() -> Submission:
    return make_submission(MetadataLevel.MINIMAL)


def _ss_author_telecom(n: int) -> Submission:
    address = _long_address(n - len(_XTN))
    author = dataclasses.replace(_author(), telecoms=(Telecom.of(address),))
    return with_ss(make_submission(MetadataLevel.XDS, direct_from=address), authors=(author,))


@dataclasses.dataclass(frozen=True)
class LengthCase:
    """One value on its limit: ``build(n)`` is a submission whose value has ``n`` characters. ``clean``: the
    at-limit submission has no error at all (values with a fixed format, such as DTM, cannot be that long)."""

    id: str
    limit: int
    rule: str
    location: str
    attribute: str
    build: Callable[[int], Submission]
    clean: bool = True


_CX = "^^^&1.2.3.4.5&ISO"
_XTN = "^^Internet^"
_LOINC, _SNOMED, _CONF = "2.16.840.1.113883.6.1", "2.16.840.1.113883.6.96", "2.16.840.1.113883.5.25"
_DE_AUTHOR = f"{DE}/Classification[author][1]"
_SS_AUTHOR = f"{SS}/Classification[author][1]"


def _slot_value(slot: str, n: int = 1) -> str:
    return f"Slot[@name='{slot}']/ValueList/Value[{n}]"


def _on_entry(
    base: Callable[[], Submission] = _xds, **fields: Callable[[int], Any]
) -> Callable[[int], Submission]:
    """A builder: ``base()`` with each DocumentEntry field made by its function of the length."""
    return lambda n: with_entry(base(), **{name: make(n) for name, make in fields.items()})


def _on_ss(
    base: Callable[[], Submission] = _xds, **fields: Callable[[int], Any]
) -> Callable[[int], Submission]:
    return lambda n: with_ss(base(), **{name: make(n) for name, make in fields.items()})


def _on_author(
    on: Callable[..., Callable[[int], Submission]], **fields: Callable[[int], Any]
) -> Callable[[int], Submission]:
    return on(
        authors=lambda n: (dataclasses.replace(_author(), **{k: make(n) for k, make in fields.items()}),)
    )


def _dtm(n: int) -> Dtm:
    return Dtm(_text(n, "2024"))


def _cx(n: int) -> Patient:
    return Patient(_text(n, suffix=_CX))


def _xcn(n: int) -> Person:
    return Person(_text(n, "^", "^Marcus"))


LENGTH_CASES: list[LengthCase] = [
    # DocumentEntry
    LengthCase("de-title", FREE_FORM_TEXT, "de-too-long-title", f"{DE}/Name/LocalizedString/@value",
               "title", _on_entry(title=_text)),
    LengthCase("de-comments", FREE_FORM_TEXT, "de-too-long-comments",
               f"{DE}/Description/LocalizedString/@value", "comments", _on_entry(comments=_text)),
    LengthCase("de-mime-type", LONG_NAME, "de-too-long-mime-type", f"{DE}/@mimeType",
               "mimeType", _on_entry(mime_type=lambda n: _text(n, "text/"))),
    LengthCase("de-patient-id", LONG_NAME, "de-too-long-patient-id",
               f"{DE}/ExternalIdentifier[patientId]/@value", "patientId",
               _on_entry(_minimal, patient_id=_cx)),
    LengthCase("de-creation-time", LONG_NAME, "de-too-long-creation-time",
               f"{DE}/{_slot_value('creationTime')}", "creationTime", _on_entry(creation_time=_dtm), False),
    LengthCase("de-hash", LONG_NAME, "de-too-long-hash",
               f"{DE}/{_slot_value('hash')}", "hash", _on_entry(hash=_text), False),
    LengthCase("de-size", LONG_NAME, "de-too-long-size",
               f"{DE}/{_slot_value('size')}", "size", _on_entry(size=lambda n: int("9" * n))),
    LengthCase("de-language-code", LONG_NAME, "de-too-long-language-code",
               f"{DE}/{_slot_value('languageCode')}", "languageCode", _on_entry(language_code=_language_tag)),
    LengthCase("de-legal-authenticator", LONG_NAME, "de-too-long-legal-authenticator",
               f"{DE}/{_slot_value('legalAuthenticator')}", "legalAuthenticator",
               _on_entry(legal_authenticator=_xcn)),
    LengthCase("de-service-start-time", LONG_NAME, "de-too-long-service-start-time",
               f"{DE}/{_slot_value('serviceStartTime')}", "serviceStartTime",
               _on_entry(service_start_time=_dtm), False),
    LengthCase("de-service-stop-time", LONG_NAME, "de-too-long-service-stop-time",
               f"{DE}/{_slot_value('serviceStopTime')}", "serviceStopTime",
               _on_entry(service_stop_time=_dtm), False),
    LengthCase("de-source-patient-id", LONG_NAME, "de-too-long-source-patient-id",
               f"{DE}/{_slot_value('sourcePatientId')}", "sourcePatientId", _on_entry(source_patient_id=_cx)),
    LengthCase("de-source-patient-info", LONG_NAME, "de-too-long-source-patient-info",
               f"{DE}/{_slot_value('sourcePatientInfo', 2)}", "sourcePatientInfo value 2",
               _on_entry(source_patient_info=lambda n: ("PID-8|F", _text(n, "PID-5|", "^Isabella^^^")))),
    LengthCase("de-author-person", LONG_NAME, "de-too-long-author-person",
               f"{_DE_AUTHOR}/{_slot_value('authorPerson')}", "authorPerson",
               _on_author(_on_entry, person=_xcn)),
    LengthCase("de-author-institution", LONG_NAME, "de-too-long-author-institution",
               f"{_DE_AUTHOR}/{_slot_value('authorInstitution')}", "authorInstitution value 1",
               _on_author(_on_entry, institutions=lambda n: (Organization(_text(n)),))),
    LengthCase("de-author-role", LONG_NAME, "de-too-long-author-role",
               f"{_DE_AUTHOR}/{_slot_value('authorRole', 2)}", "authorRole value 2",
               _on_author(_on_entry, roles=lambda n: ("Attending", _text(n)))),
    LengthCase("de-author-specialty", LONG_NAME, "de-too-long-author-specialty",
               f"{_DE_AUTHOR}/{_slot_value('authorSpecialty')}", "authorSpecialty value 1",
               _on_author(_on_entry, specialties=lambda n: (_text(n),))),
    LengthCase("de-author-telecommunication", LONG_NAME, "de-too-long-author-telecommunication",
               f"{_DE_AUTHOR}/{_slot_value('authorTelecommunication')}", "authorTelecommunication value 1",
               _on_author(_on_entry, telecoms=lambda n: (Telecom.of(_long_address(n - len(_XTN))),))),
    LengthCase("de-class-code", LONG_NAME, "de-too-long-code",
               f"{DE}/Classification[classCode]/@nodeRepresentation", "classCode nodeRepresentation",
               _on_entry(class_code=lambda n: Code(_text(n), _LOINC, "Note"))),
    LengthCase("de-class-code-scheme", LONG_NAME, "de-too-long-coding-scheme",
               f"{DE}/Classification[classCode]/{_slot_value('codingScheme')}", "classCode codingScheme",
               _on_entry(class_code=lambda n: Code("34133-9", _text(n), "Note"))),
    LengthCase("de-class-code-display", FREE_FORM_TEXT, "de-too-long-code-display",
               f"{DE}/Classification[classCode]/Name/LocalizedString/@value", "classCode display name",
               _on_entry(class_code=lambda n: Code("34133-9", _LOINC, _text(n)))),
    LengthCase("de-confidentiality-code", LONG_NAME, "de-too-long-code",
               f"{DE}/Classification[confidentialityCode][2]/@nodeRepresentation",
               "confidentialityCode nodeRepresentation",
               _on_entry(confidentiality_codes=lambda n: (Code("N", _CONF), Code(_text(n), _CONF)))),
    LengthCase("de-event-code", LONG_NAME, "de-too-long-code",
               f"{DE}/Classification[eventCodeList][1]/@nodeRepresentation",
               "eventCodeList nodeRepresentation",
               _on_entry(event_codes=lambda n: (Code(_text(n), _SNOMED),))),
    LengthCase("de-extension-slot-value", LONG_NAME, "de-too-long-slot-value",
               f"{DE}/{_slot_value('urn:example:note')}", "slot 'urn:example:note' value 1",
               _on_entry(extra_slots=lambda n: (("urn:example:note", (_text(n),)),))),
    # SubmissionSet
    LengthCase("ss-title", FREE_FORM_TEXT, "ss-too-long-title", f"{SS}/Name/LocalizedString/@value",
               "title", _on_ss(title=_text)),
    LengthCase("ss-title-minimal", FREE_FORM_TEXT, "ss-too-long-title", f"{SS}/Name/LocalizedString/@value",
               "title", _on_ss(_minimal, title=_text)),
    LengthCase("ss-comments", FREE_FORM_TEXT, "ss-too-long-comments",
               f"{SS}/Description/LocalizedString/@value", "comments", _on_ss(_minimal, comments=_text)),
    LengthCase("ss-patient-id", LONG_NAME, "ss-too-long-patient-id",
               f"{SS}/ExternalIdentifier[patientId]/@value", "patientId", _on_ss(_minimal, patient_id=_cx)),
    LengthCase("ss-submission-time", LONG_NAME, "ss-too-long-submission-time",
               f"{SS}/{_slot_value('submissionTime')}", "submissionTime",
               _on_ss(_minimal, submission_time=_dtm), False),
    LengthCase("ss-intended-recipient", LONG_NAME, "ss-too-long-intended-recipient",
               f"{SS}/{_slot_value('intendedRecipient')}", "intendedRecipient value 1",
               _on_ss(_minimal,
                      intended_recipients=lambda n: (Recipient(_text(n, suffix=f"||{_XTN}{RECEIVER}")),))),
    LengthCase("ss-author-person", LONG_NAME, "ss-too-long-author-person",
               f"{_SS_AUTHOR}/{_slot_value('authorPerson')}", "authorPerson",
               _on_author(_on_ss, person=_xcn)),
    LengthCase("ss-author-telecommunication", LONG_NAME, "ss-too-long-author-telecommunication",
               f"{_SS_AUTHOR}/{_slot_value('authorTelecommunication')}", "authorTelecommunication value 1",
               _ss_author_telecom),
    LengthCase("ss-content-type-code", LONG_NAME, "ss-too-long-code",
               f"{SS}/Classification[contentTypeCode]/@nodeRepresentation",
               "contentTypeCode nodeRepresentation",
               _on_ss(content_type_code=lambda n: Code(_text(n), _LOINC))),
    LengthCase("ss-extension-slot-name", LONG_NAME, "ss-too-long-slot-name",
               f"{SS}/Slot[starts-with(@name, 'urn:example:{FILLER * 28}')]/@name", "a slot name",
               _on_ss(extra_slots=lambda n: ((_text(n, "urn:example:"), ("1",)),))),
    # Association (the HasMember status must be 'Original' too, so this one is never clean)
    LengthCase("association-status", LONG_NAME, "association-too-long-submission-set-status",
               f"Association[@id='as01']/{_slot_value('SubmissionSetStatus')}", "SubmissionSetStatus",
               lambda n: make_submission(associations=(Association("as01", "SubmissionSet01", "Document01",
                                                                   submission_set_status=_text(n)),)), False),
]  # fmt: skip


def _too_long(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if "-too-long-" in f.rule]


@pytest.mark.parametrize("case", LENGTH_CASES, ids=[c.id for c in LENGTH_CASES])
def test_value_at_its_limit_passes(case: LengthCase) -> None:
    submission = case.build(case.limit)
    for level in LEVELS:
        assert _too_long(validate(submission, level)) == []
    if case.clean:
        assert [f for f in validate(submission) if f.is_error] == []


@pytest.mark.parametrize("case", LENGTH_CASES, ids=[c.id for c in LENGTH_CASES])
def test_value_one_over_its_limit_fails_at_both_levels(case: LengthCase) -> None:
    submission = case.build(case.limit + 1)
    for level in LEVELS:
        findings = _too_long(validate(submission, level))
        assert len(findings) == 1, findings
        finding = findings[0]
        assert finding.rule == case.rule
        assert finding.location == case.location
        assert finding.severity is Severity.ERROR
        assert finding.code == "XDSRegistryMetadataError"
        assert finding.message.startswith(f"{case.attribute} is {case.limit + 1} characters long; ")
        assert f"at most {case.limit} are allowed" in finding.message
        assert ("FreeFormText" if case.limit == FREE_FORM_TEXT else "LongName") in finding.message
        assert FILLER * 40 not in finding.message  # the value itself (PHI for titles and names) stays out
        assert FILLER * 40 not in finding.location
    if case.clean:  # the length is the only thing wrong with it
        assert [f.rule for f in validate(submission) if f.is_error] == [case.rule]


def test_lengths_count_characters_not_bytes() -> None:
    """rim.xsd maxLength counts characters: 1024 astral-plane characters (4096 UTF-8 bytes) make a valid
    title."""
    at_limit = with_ss(_xds(), title="\U0001f600" * FREE_FORM_TEXT)
    assert validate(at_limit) == []
    over = with_ss(_xds(), title="\U0001f600" * (FREE_FORM_TEXT + 1))
    assert only(validate(over), "ss-too-long-title").message.startswith("title is 1025 characters long")


def test_unique_ids_keep_their_tighter_xds_limits() -> None:
    """uniqueId and sourceId are not in the length tables: XD 180/197/198 bound them below LongName, once."""
    entry = validate(with_entry(_xds(), unique_id="1." + "1" * 300))
    assert [f.rule for f in entry] == ["de-bad-unique-id"]
    assert "302 characters long; at most 128" in entry[0].message
    ss = validate(with_ss(_xds(), source_id="1." + "2" * 300))
    assert [f.rule for f in ss] == ["ss-bad-source-id"]
    assert "at most 64" in ss[0].message


def test_length_tables_name_the_rim_xsd_types() -> None:
    tables: list[Sequence[LengthRule[Any]]] = [
        DOCUMENT_ENTRY_LENGTH_RULES,
        SUBMISSION_SET_LENGTH_RULES,
        AUTHOR_LENGTH_RULES,
        CODE_LENGTH_RULES,
        ASSOCIATION_LENGTH_RULES,
    ]
    limits = {r.limit.type_name: r.limit.max_length for table in tables for r in table}
    assert limits == {"LongName": LONG_NAME, "FreeFormText": FREE_FORM_TEXT}
    for table in tables:
        assert len({r.name for r in table}) == len(table)
    by_name = {r.name: r for r in DOCUMENT_ENTRY_LENGTH_RULES}
    assert by_name["title"].limit.carrier == "rim:LocalizedString/@value"
    assert by_name["patient-id"].limit.carrier == "rim:ExternalIdentifier/@value"
    assert "unique-id" not in by_name


@pytest.fixture(scope="module")
def pnr_schema() -> etree.XMLSchema:
    return official_schema("schema/IHE/XDS.b_DocumentRepository.xsd")


def _schema_valid(schema: etree.XMLSchema, submission: Submission) -> bool:
    request = etree.Element(qname(ns.XDSB, "ProvideAndRegisterDocumentSetRequest"), nsmap={"xdsb": ns.XDSB})
    request.append(write_submit_objects(submission))
    return schema.validate(parse(tostring(request)))


@pytest.mark.shared
@pytest.mark.parametrize("case", LENGTH_CASES, ids=[c.id for c in LENGTH_CASES])
def test_limits_agree_with_the_official_rim_xsd(pnr_schema: etree.XMLSchema, case: LengthCase) -> None:
    """The table's limit is rim.xsd's: the written request is schema-valid on the limit, invalid one over."""
    assert _schema_valid(pnr_schema, case.build(case.limit)), pnr_schema.error_log
    assert not _schema_valid(pnr_schema, case.build(case.limit + 1))
    assert "maxLength" in str(pnr_schema.error_log)


@pytest.mark.shared
def test_every_value_on_its_limit_at_once_is_schema_valid(pnr_schema: etree.XMLSchema) -> None:
    submission = with_ss(
        with_entry(
            _xds(),
            title="\U0001f600" * FREE_FORM_TEXT,
            comments=_text(FREE_FORM_TEXT),
            mime_type=_text(LONG_NAME, "text/"),
            patient_id=Patient(_text(LONG_NAME, suffix=_CX)),
            source_patient_info=(_text(LONG_NAME, "PID-5|", "^I^^^"),),
            class_code=Code(_text(LONG_NAME), _text(LONG_NAME), _text(FREE_FORM_TEXT)),
            extra_slots=((_text(LONG_NAME, "urn:"), (_text(LONG_NAME),)),),
        ),
        title=_text(FREE_FORM_TEXT),
        patient_id=Patient(_text(LONG_NAME, suffix=_CX)),
    )
    assert [f for f in validate(submission) if f.is_error] == []
    assert _schema_valid(pnr_schema, submission), pnr_schema.error_log


def test_receiver_reads_an_over_limit_title_as_a_metadata_error() -> None:
    """A peer's over-limit value reaches validation intact (no truncation by the reader), so the receiver
    answers Failure with XDSRegistryMetadataError instead of storing a schema-invalid submission."""
    submission = with_ss(_minimal(), title=_text(2000))
    request = build_request(submission, endpoint="https://hisp.example.org/xdr")
    with parse_request(request.content_type, io.BytesIO(b"".join(request.body))) as incoming:
        errors = incoming.errors
    assert [f.rule for f in errors] == ["ss-too-long-title"]
    assert errors[0].code == "XDSRegistryMetadataError"
    assert "2000 characters long" in errors[0].message


# reference messages (ETT templates, NIST samples) read through the metadata reader

_PLACEHOLDERS = {
    "#DIRECT_FROM#": "john.doe@healthcare.example.org",  # the templates' authorTelecommunication
    "#DIRECT_TO#": str(RECEIVER),
    "#UNIQUE_ID_SS#": "1.2.3.4.200.1",
    "#UNIQUE_ID#": "7",
    "#MESSAGE_ID#": "urn:uuid:0f8c7c1e-8a7b-4f0e-9d7e-1d2c3b4a5f60",
    "#WSA_TO#": "https://hisp.example/xdr",
}


def _sample_submission(relative: str) -> tuple[Submission, list[Finding]]:
    """The Submission a receiver would build from a reference message, with the reader's own findings.

    ETT templates carry ``#PLACEHOLDER#`` values its test runner fills in; they are filled the same way here.
    """
    from xdr_edge.protocol.metadata import read_submit_objects
    from xdr_edge.protocol.xml import parse

    text = sample_path(relative).read_text(encoding="utf-8")
    for placeholder, value in _PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    root = parse(text.encode("utf-8"))
    request = root.find(f".//{{{ns.LCM}}}SubmitObjectsRequest")
    assert request is not None
    read = read_submit_objects(request)
    assert read.submission_set is not None
    level_el = root.find(f".//{{{ns.DIRECT}}}metadata-level")
    block = f"{{{ns.DIRECT}}}addressBlock"
    sender = root.find(f".//{block}/{{{ns.DIRECT}}}from")
    to = root.findall(f".//{block}/{{{ns.DIRECT}}}to")
    submission = Submission(
        submission_set=read.submission_set,
        document_entries=read.document_entries,
        associations=read.associations,
        level=MetadataLevel.parse(level_el.text or "") if level_el is not None else MetadataLevel.XDS,
        direct_from=DirectAddress.parse(sender.text or "") if sender is not None else None,
        direct_to=tuple(DirectAddress.parse(t.text or "") for t in to),
    )
    return submission, read.findings


@pytest.mark.shared
@pytest.mark.parametrize(
    ("sample", "level"),
    [
        ("ett/Xdr_minimal_metadata_only.xml", MetadataLevel.MINIMAL),
        ("ett/Xdr_full_metadata_only.xml", MetadataLevel.XDS),
    ],
)
def test_ett_valid_messages_pass(sample: str, level: MetadataLevel) -> None:
    submission, reader_findings = _sample_submission(sample)
    assert submission.level is level
    assert reader_findings == []
    assert validate(submission) == []


@pytest.mark.shared
@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("ett/negative_missing_metadata_elements1.xml", {"de-missing-unique-id"}),
        ("ett/negative_missing_metadata_elements2.xml", {"ss-missing-source-id"}),
        ("ett/negative_missing_metadata_elements3.xml", {"de-missing-mime-type"}),
        (
            "ett/negative_missing_metadata_elements4.xml",
            {"de-missing-entry-id", "association-dangling-target"},
        ),
        ("ett/negative_missing_metadata_elements5.xml", {"de-missing-creation-time"}),
        ("ett/negative_missing_association.xml", {"de-missing-has-member"}),
    ],
)
def test_ett_negative_messages_are_rejected(sample: str, expected: set[str]) -> None:
    submission, _ = _sample_submission(sample)
    findings = validate(submission)
    assert {f.rule for f in findings if f.is_error} == expected


@pytest.mark.shared
def test_ett_missing_direct_block_passes_only_through_author_telecom() -> None:
    """XDR and XDM for Direct Messaging §4.1 decision: without an address block, accept when the SubmissionSet author carries
    authorTelecommunication (this ETT message does), else reject as sender unknown."""
    submission, _ = _sample_submission("ett/negative_missing_direct_block.xml")
    assert submission.direct_from is None
    assert submission.sender == DirectAddress("john.doe@healthcare.example.org")
    assert validate(submission) == []
    anonymous = with_ss(submission, authors=())
    assert {f.rule for f in validate(anonymous) if f.is_error} == {"sender-unknown"}


@pytest.mark.shared
def test_nist_association_to_itself() -> None:
    submission, _ = _sample_submission("nist/pnr-assoc-to-self.xml")
    submission = dataclasses.replace(submission, direct_from=SENDER, direct_to=(RECEIVER,))
    findings = validate(submission)
    assert {f.rule for f in findings if f.is_error} == {"association-to-self", "de-missing-has-member"}


@pytest.mark.shared
def test_nist_pnr_is_valid_xds_once_addressed() -> None:
    submission, _ = _sample_submission("nist/pnr.xml")
    assert rules(validate(submission)) == {"sender-unknown", "no-recipient"}  # not a Direct message
    addressed = dataclasses.replace(submission, direct_from=SENDER, direct_to=(RECEIVER,))
    assert validate(addressed) == []


# property tests over tests/strategies.py (well-formed values, not necessarily complete for their level)

# What strategies.submissions() does not promise: presence per level, the Direct sender/recipient, patient
# agreement between objects and service-time order. Everything else (formats, ids, associations) it does.
_NOT_PROMISED = {
    *(f"de-missing-{r.name}" for r in DOCUMENT_ENTRY_RULES),
    *(f"ss-missing-{r.name}" for r in SUBMISSION_SET_RULES),
    "de-service-time-order",
    "de-patient-id-mismatch",
    "sender-unknown",
    "sender-mismatch",
    "no-recipient",
}


def _complete(submission: Submission) -> Submission:
    """Fill what the profile requires at the submission's own level, keeping every generated value that is
    already there: the result must validate without errors (no false positives on awkward but valid data)."""
    level = submission.level
    ss = submission.submission_set
    patient = ss.patient_id or next(
        (e.patient_id for e in submission.document_entries if e.patient_id), PATIENT
    )
    fill = level is MetadataLevel.XDS
    template = make_entry(MetadataLevel.XDS)

    def person_for(author: Author) -> Author:
        return author if author.person else dataclasses.replace(author, person=_author().person)

    entries = []
    for entry in submission.document_entries:
        changes: dict[str, Any] = {"patient_id": patient if (entry.patient_id or fill) else None}
        if fill:
            for name in (
                "creation_time",
                "language_code",
                "source_patient_id",
                "class_code",
                "type_code",
                "format_code",
                "healthcare_facility_type_code",
                "practice_setting_code",
            ):
                if getattr(entry, name) is None:
                    changes[name] = getattr(template, name)
            changes["confidentiality_codes"] = entry.confidentiality_codes or template.confidentiality_codes
            changes["authors"] = tuple(person_for(a) for a in entry.authors) or template.authors
        start, stop = entry.service_start_time, entry.service_stop_time
        if start and stop and stop.to_datetime() < start.to_datetime():
            changes["service_start_time"], changes["service_stop_time"] = stop, start
        entries.append(dataclasses.replace(entry, **changes))

    ss_changes: dict[str, Any] = {"submission_time": ss.submission_time or Dtm("20240131")}
    if fill:
        ss_changes["patient_id"] = patient
        ss_changes["content_type_code"] = ss.content_type_code or Code("34133-9", "2.16.840.1.113883.6.1")
        ss_changes["authors"] = tuple(person_for(a) for a in ss.authors)
    elif ss.patient_id is not None:
        ss_changes["patient_id"] = patient
    if level is MetadataLevel.MINIMAL and not ss.intended_recipients:
        ss_changes["intended_recipients"] = (Recipient.of(RECEIVER),)
    ss = dataclasses.replace(ss, **ss_changes)

    telecoms = [a for author in ss.authors for a in author.addresses]
    direct_from = submission.direct_from
    if telecoms and direct_from not in telecoms:
        direct_from = None if direct_from is None else telecoms[0]
    if not telecoms and direct_from is None:
        direct_from = SENDER
    completed = dataclasses.replace(
        submission, submission_set=ss, document_entries=tuple(entries), direct_from=direct_from
    )
    if not completed.recipients:
        completed = dataclasses.replace(completed, direct_to=(RECEIVER,))
    return completed


def _strategies() -> Any:
    try:
        from tests import strategies
    except ImportError:  # pragma: no cover - only when the shared strategies module is missing
        pytest.skip("tests/strategies.py is not available")
    return strategies


@pytest.mark.slow
def test_generated_submissions() -> None:
    """Over tests/strategies.py: a generated submission breaks only rules the strategy does not promise, its
    declared hash/size match its bytes, and once completed for its own level it validates without errors."""
    from hypothesis import given, settings

    strategies = _strategies()

    @settings(max_examples=20, deadline=None)
    @given(strategies.submissions())
    def check(submission: Submission) -> None:
        findings = validate(submission)
        assert [f for f in findings if f.is_error and f.rule not in _NOT_PROMISED] == []
        assert all(f.rule and f.location and f.message for f in findings)
        # its documents match what it declares; an empty one (which the strategy may draw) is only a warning
        assert all(f.rule == "de-empty-document" and not f.is_error for f in check_documents(submission))
        completed = _complete(submission)
        assert [f for f in validate(completed) if f.is_error] == []
        if completed.level is MetadataLevel.XDS:
            # XDS-complete is minimal-complete too once a recipient is listed (PRDS is stricter than PRDSML)
            listed = with_ss(completed, intended_recipients=(Recipient.of(RECEIVER),))
            assert [f for f in validate(listed, MetadataLevel.MINIMAL) if f.is_error] == []

    check()


def test_an_empty_document_is_an_error_for_the_sender_and_a_warning_for_the_receiver() -> None:
    """Nobody sends an empty file on purpose, so the sender's pre-flight refuses one; XDS allows size 0, so a
    receiver (and inspect) only warn."""
    empty = compose(
        [Document.from_bytes(b"", name="note.txt")],
        sender="a@direct.a.example",
        recipients=["b@direct.b.example"],
    )
    (error,) = [f for f in check_outgoing(empty) if f.is_error]
    assert (error.rule, error.code) == ("de-empty-document", "XDSMissingDocument")
    assert error.message == "the document of DocumentEntry 'Document01' (note.txt) is empty (0 bytes)"
    (warning,) = [f for f in check_documents(empty) if f.rule == "de-empty-document"]
    assert warning.severity is Severity.WARNING
    full = compose(
        [Document.from_bytes(b"x", name="note.txt")],
        sender="a@direct.a.example",
        recipients=["b@direct.b.example"],
    )
    assert not [f for f in check_outgoing(full) + check_documents(full) if f.rule == "de-empty-document"]
