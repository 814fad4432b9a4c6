"""Profile rules for an ITI-41 submission: a :class:`~xdr_edge.protocol.model.Submission` in, findings out.

This module owns the question "is this submission acceptable metadata?" for both directions: the sender
runs :func:`validate` as a pre-flight before anything is written to the wire, the receiver runs it after the
metadata reader has turned the peer's ebRIM into the model. :func:`check_documents` adds the checks that
need the bytes (a document per entry, declared ``hash``/``size`` equal the octets, ITI TF-3 4.2.4, ebRS 3.0/NIST XDS toolkit validators).

Pure: no sockets, no files, no logging. The only I/O is :func:`check_documents` reading a
:class:`~xdr_edge.protocol.model.Document` through its own ``digest()``. Messages never carry document content and do
not repeat patient identifiers beyond what the model's ``format_problems()`` report about a malformed value.

The R/R2/O/NA matrix of ITI TF-3 4.3.1, XDR Limited Metadata (the ONC checklist's PRDS and PRDSML columns, XD rows 149-198) is data:
:data:`DOCUMENT_ENTRY_RULES` and :data:`SUBMISSION_SET_RULES`. Everything else (formats, identifiers,
associations, Direct addressing) is a small function per concern, each yielding :class:`Finding` objects
with a stable kebab-case ``rule`` and an element-path ``location``.

The ``maxLength`` facets of rim.xsd are data too (:data:`DOCUMENT_ENTRY_LENGTH_RULES` and its siblings,
ITI TF-3 4.2, ebRIM 3.0): a value the writer would put into a LongName or FreeFormText over its limit makes the request
schema-invalid, so it is an error at both levels, reported with its length and the limit, never its text.
"""

from __future__ import annotations

__all__ = ["check_documents", "check_outgoing", "raise_for_errors", "validate"]

import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, TypeVar

from xdr_edge.protocol import ns

# XDS error codes used here (ITI TF-3 4.2.4, ebRS 3.0).
from xdr_edge.protocol.codes import (
    DUPLICATE_IN_MESSAGE,
    METADATA_ERROR,
    MISSING_DOCUMENT,
    PATIENT_ID_MISMATCH,
    REPOSITORY_METADATA_ERROR,
)
from xdr_edge.protocol.errors import ValidationFailed
from xdr_edge.protocol.findings import Finding, Severity
from xdr_edge.protocol.metadata.vocabulary import DE_OTHER_LEGAL_SLOTS
from xdr_edge.protocol.model import (
    Association,
    Author,
    Code,
    DocumentEntry,
    MetadataLevel,
    Submission,
    SubmissionSet,
    is_oid,
)
from xdr_edge.protocol.validate.rules import (
    ASSOCIATION_LENGTH_RULES,
    AUTHOR_LENGTH_RULES,
    CODE_LENGTH_RULES,
    DOCUMENT_ENTRY_LENGTH_RULES,
    DOCUMENT_ENTRY_RULES,
    SLOT_NAME,
    SUBMISSION_SET_LENGTH_RULES,
    SUBMISSION_SET_RULES,
    VALUE,
    LengthRule,
    PresenceRule,
    Requirement,
    RimString,
)

_T = TypeVar("_T")

_HEADER_FROM = "S:Header/direct:addressBlock/direct:from"


_HEADER_TO = "S:Header/direct:addressBlock/direct:to"


# Shapes from ITI TF-3 4.2.3. languageCode: RFC 3066 / BCP 47 (primary tag, then alphanumeric subtags).
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}+(?:-[A-Za-z0-9]{1,8}+)*+")  # possessive: linear on any input


_HASH = re.compile(r"^[0-9A-Fa-f]{40}$")


_MIME = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$")


_SOURCE_PATIENT_INFO = re.compile(r"^PID-[0-9]+\|")


_DE_UNIQUE_ID_MAX = 128  # XD 180


_SS_OID_MAX = 64  # XD 197/198, DTS 442


_SS_EXTRA_SLOTS: frozenset[str] = frozenset()


_ASSOCIATION_TYPES = frozenset(
    {ns.HAS_MEMBER}
    | {f"urn:ihe:iti:2007:AssociationType:{t}" for t in ("RPLC", "APND", "XFRM", "XFRM_RPLC", "signs")}
)


def validate(submission: Submission, level: MetadataLevel | None = None) -> list[Finding]:
    """Every metadata problem of ``submission`` at ``level`` (default: the level the submission declares).

    Minimal metadata is checked against the checklist's PRDSML column, XDS against PRDS (ITI TF-3 4.3.1, XDR Limited Metadata, DTS 430).
    A receiver that found no ``metadata-level`` header may pass ``MetadataLevel.MINIMAL`` here to validate
    leniently (XDR and XDM for Direct Messaging §6.1.1).
    """
    effective = submission.level if level is None else level
    findings: list[Finding] = []
    findings += _submission_set_findings(submission.submission_set, effective)
    if not submission.document_entries:
        findings.append(
            _error(
                "no-document-entries",
                "RegistryObjectList",
                "the submission has no DocumentEntry (ExtrinsicObject); ITI-41 requires at least one",
            )
        )
    for index, entry in enumerate(submission.document_entries, start=1):
        findings += _document_entry_findings(entry, _de_path(entry, index), effective)
    findings += _identifier_findings(submission)
    findings += _patient_id_findings(submission)
    findings += _association_findings(submission)
    findings += _direct_findings(submission)
    return findings


def check_outgoing(submission: Submission) -> list[Finding]:
    """The sender's pre-flight: :func:`validate`, and an error for every document that is empty.

    An empty document is not invalid metadata (XDS ``size`` may be 0), so a receiver only warns about one
    (:func:`check_documents`); but nobody sends an empty file on purpose (a failed export, a file truncated by
    a crash), and once it is stored the mistake is in the recipient's record. The size is the declared one
    when known (:func:`~xdr_edge.protocol.compose.compose` always declares it), else the document's own.
    """
    findings = validate(submission)
    for index, entry in enumerate(submission.document_entries, start=1):
        if entry.document is None:
            continue
        size = entry.size if entry.size is not None else entry.document.digest()[1]
        if size == 0:
            findings.append(_empty_document(entry, _de_path(entry, index), Severity.ERROR))
    return findings


def _empty_document(entry: DocumentEntry, path: str, severity: Severity) -> Finding:
    name = f" ({entry.document.name})" if entry.document is not None and entry.document.name else ""
    return Finding(
        code=MISSING_DOCUMENT,
        severity=severity,
        location=path,
        message=f"the document of DocumentEntry {entry.entry_id!r}{name} is empty (0 bytes)",
        rule="de-empty-document",
    )


def check_documents(submission: Submission) -> list[Finding]:
    """Each DocumentEntry has its document, and declared ``hash``/``size`` equal the document's bytes; an empty
    document is a warning (see :func:`check_outgoing` for why a sender refuses one).

    ``hash``/``size`` are optional for a Document Source but, when sent, a repository compares them with what
    it received (case-insensitively for the hex hash) and answers XDSRepositoryMetadataError on a mismatch
    (ITI TF-3 4.2.3; NIST XDS toolkit validators; NIST RepPnRSim). Received documents were hashed while they
    were spooled, so this reads nothing of them; a document given as a file is read once.
    """
    findings: list[Finding] = []
    for index, entry in enumerate(submission.document_entries, start=1):
        findings += _document_findings(entry, _de_path(entry, index))
    return findings


def raise_for_errors(findings: Iterable[Finding]) -> None:
    """Raise :class:`~xdr_edge.protocol.errors.ValidationFailed` (carrying every finding) when any is an error.

    The sender's pre-flight: warnings alone never stop a send.
    """
    collected = list(findings)
    if any(f.is_error for f in collected):
        raise ValidationFailed(collected)


def _error(rule: str, location: str, message: str, code: str = METADATA_ERROR) -> Finding:
    return Finding(code=code, severity=Severity.ERROR, location=location, message=message, rule=rule)


def _warning(rule: str, location: str, message: str, code: str = METADATA_ERROR) -> Finding:
    return Finding(code=code, severity=Severity.WARNING, location=location, message=message, rule=rule)


def _de_path(entry: DocumentEntry, index: int) -> str:
    """``ExtrinsicObject[@id='…']``, or by position when the entry has no id (ETT negative variant 4)."""
    return f"ExtrinsicObject[@id='{entry.entry_id}']" if entry.entry_id else f"ExtrinsicObject[{index}]"


def _ss_path(ss: SubmissionSet) -> str:
    return f"RegistryPackage[@id='{ss.entry_id}']" if ss.entry_id else "RegistryPackage[SubmissionSet]"


def _assoc_path(association: Association, index: int) -> str:
    return f"Association[@id='{association.entry_id}']" if association.entry_id else f"Association[{index}]"


def _presence_findings(
    obj: _T, rules: Sequence[PresenceRule[_T]], level: MetadataLevel, path: str, prefix: str, label: str
) -> Iterator[Finding]:
    """Apply one table of ITI TF-3 4.3.1, XDR Limited Metadata: R absent is an error, NA present a warning; R2 and O stay quiet."""
    column = "PRDSML (minimal)" if level is MetadataLevel.MINIMAL else "PRDS (XDS)"
    for rule in rules:
        need = rule.requirement(level)
        here = f"{path}/{rule.where}"
        if need is Requirement.R and not rule.present(obj):
            yield _error(
                f"{prefix}-missing-{rule.name}",
                here,
                f"{label} has no {rule.attribute}; it is required for {column} metadata "
                f"({rule.row}, ITI TF-3 4.3.1, XDR Limited Metadata)",
            )
        elif need is Requirement.NA and rule.present(obj):
            yield _warning(
                f"{prefix}-unexpected-{rule.name}",
                here,
                f"{label} carries {rule.attribute}, which is not applicable to {column} metadata "
                f"({rule.row})",
            )


class _HL7Value(Protocol):
    """The model's HL7 v2 text values (Dtm, Patient, Person, Organization, Telecom, Recipient)."""

    def format_problems(self) -> list[str]: ...


def _format(rule: str, location: str, value: _HL7Value | None) -> Iterator[Finding]:
    """An error per problem the model reports for an HL7 value; the model owns the format rules (ITI TF-3 4.2.3)."""
    if value is not None:
        for problem in value.format_problems():
            yield _error(rule, location, problem)


def _code(rule: str, location: str, attribute: str, value: Code | None) -> Iterator[Finding]:
    """A coded classification needs nodeRepresentation and its codingScheme slot (XD 171-178, ITI TF-3 4.2, ebRIM 3.0)."""
    if value is None:
        return
    if not value.code:
        yield _error(rule, location, f"{attribute} has an empty code (nodeRepresentation)")
    if not value.scheme:
        yield _error(rule, location, f"{attribute} {value.code!r} has no codingScheme")


def _authors(prefix: str, path: str, authors: tuple[Author, ...]) -> Iterator[Finding]:
    """authorPerson XCN, authorInstitution XON, authorTelecommunication XTN (ITI TF-3 4.2.3, DTS 433)."""
    for number, author in enumerate(authors, start=1):
        where = f"{path}/Classification[author][{number}]"
        yield from _format(
            f"{prefix}-bad-author-person", f"{where}/Slot[@name='authorPerson']", author.person
        )
        for institution in author.institutions:
            yield from _format(
                f"{prefix}-bad-author-institution", f"{where}/Slot[@name='authorInstitution']", institution
            )
        for telecom in author.telecoms:
            yield from _format(
                f"{prefix}-bad-author-telecommunication",
                f"{where}/Slot[@name='authorTelecommunication']",
                telecom,
            )


def _unknown_slots(
    prefix: str, path: str, slots: tuple[tuple[str, tuple[str, ...]], ...], legal: frozenset[str]
) -> Iterator[Finding]:
    for name, _values in slots:
        if not name.startswith("urn:") and name not in legal:
            yield _warning(
                f"{prefix}-unknown-slot",
                f"{path}/Slot[@name='{name}']",
                f"slot {name!r} is not defined for this object; extension slot names start with 'urn:'",
            )


def _entry_id_problem(entry_id: str) -> str | None:
    """Symbolic ids are free; a ``urn:uuid:`` id must hold a valid UUID (XD 104)."""
    if entry_id.lower().startswith("urn:uuid:"):
        try:
            uuid.UUID(entry_id[len("urn:uuid:") :])
        except ValueError:
            return f"id {entry_id!r} starts with 'urn:uuid:' but is not a valid UUID"
    return None


def _de_unique_id_problem(unique_id: str) -> str | None:
    """DocumentEntry uniqueId: OID or ``OID^extension``, at most 128 characters (XD 180, ITI TF-3 4.2.3)."""
    if len(unique_id) > _DE_UNIQUE_ID_MAX:
        return f"uniqueId is {len(unique_id)} characters long; at most {_DE_UNIQUE_ID_MAX} are allowed"
    root, caret, extension = unique_id.partition("^")
    if not is_oid(root) or (caret and (not extension or "^" in extension)):
        return f"uniqueId {unique_id!r} is not an OID, OID^extension, or UUID-as-OID (2.25.N)"
    return None


def _ss_oid_problem(attribute: str, value: str) -> str | None:
    """SubmissionSet uniqueId and sourceId: an OID of at most 64 characters (XD 197/198, DTS 442)."""
    if len(value) > _SS_OID_MAX:
        return f"{attribute} is {len(value)} characters long; at most {_SS_OID_MAX} are allowed"
    if not is_oid(value):
        return f"{attribute} {value!r} is not an OID"
    return None


def _too_long(what: str, length: int, limit: RimString) -> str:
    return (
        f"{what} is {length} characters long; at most {limit.max_length} are allowed in {limit.carrier} "
        f"({limit.citation}, ITI TF-3 4.2, ebRIM 3.0)"
    )


def _length_findings(
    obj: _T, rules: Sequence[LengthRule[_T]], path: str, prefix: str, label: str = ""
) -> Iterator[Finding]:
    """Apply one length table to ``obj``; ``label`` names the classification a code rule is about."""
    for rule in rules:
        for n, value in enumerate(rule.values(obj), start=1):
            if len(value) <= rule.limit.max_length:
                continue
            what = f"{label}{rule.attribute}" + (f" value {n}" if rule.several else "")
            yield _error(
                f"{prefix}-too-long-{rule.name}",
                f"{path}/{rule.where.format(n=n)}",
                _too_long(what, len(value), rule.limit),
            )


def _slot_selector(name: str) -> str:
    """``Slot[@name='…']``; a name over its own limit is abbreviated so that a location stays readable."""
    if len(name) <= SLOT_NAME.max_length:
        return f"Slot[@name='{name}']"
    return f"Slot[starts-with(@name, '{name[:40]}')]"


def _extra_slot_lengths(
    prefix: str, path: str, slots: tuple[tuple[str, tuple[str, ...]], ...]
) -> Iterator[Finding]:
    """Slots the model keeps by name: the name is LongName (Slot/@name), every value LongName (rim:Value)."""
    for name, values in slots:
        where = f"{path}/{_slot_selector(name)}"
        if len(name) > SLOT_NAME.max_length:
            yield _error(
                f"{prefix}-too-long-slot-name",
                f"{where}/@name",
                _too_long("a slot name", len(name), SLOT_NAME),
            )
        for n, value in enumerate(values, start=1):
            if len(value) > VALUE.max_length:
                yield _error(
                    f"{prefix}-too-long-slot-value",
                    f"{where}/ValueList/Value[{n}]",
                    _too_long(f"slot {name[:40]!r} value {n}", len(value), VALUE),
                )


def _author_lengths(prefix: str, path: str, authors: tuple[Author, ...]) -> Iterator[Finding]:
    for number, author in enumerate(authors, start=1):
        where = f"{path}/Classification[author][{number}]"
        yield from _length_findings(author, AUTHOR_LENGTH_RULES, where, prefix)


def _code_lengths(
    prefix: str, path: str, coded: Iterable[tuple[str, Code | None, int | None]]
) -> Iterator[Finding]:
    """``coded``: (attribute, code, position among several such classifications or None when single-valued)."""
    for attribute, code, position in coded:
        if code is None:
            continue
        where = f"{path}/Classification[{attribute}]" + (f"[{position}]" if position is not None else "")
        yield from _length_findings(code, CODE_LENGTH_RULES, where, prefix, label=f"{attribute} ")


def _de_lengths(entry: DocumentEntry, path: str) -> Iterator[Finding]:
    yield from _length_findings(entry, DOCUMENT_ENTRY_LENGTH_RULES, path, "de")
    yield from _author_lengths("de", path, entry.authors)
    coded: list[tuple[str, Code | None, int | None]] = [
        ("classCode", entry.class_code, None),
        ("typeCode", entry.type_code, None),
        ("formatCode", entry.format_code, None),
        ("healthcareFacilityTypeCode", entry.healthcare_facility_type_code, None),
        ("practiceSettingCode", entry.practice_setting_code, None),
        *(("confidentialityCode", c, i) for i, c in enumerate(entry.confidentiality_codes, start=1)),
        *(("eventCodeList", c, i) for i, c in enumerate(entry.event_codes, start=1)),
    ]
    yield from _code_lengths("de", path, coded)
    yield from _extra_slot_lengths("de", path, entry.extra_slots)


def _ss_lengths(ss: SubmissionSet, path: str) -> Iterator[Finding]:
    yield from _length_findings(ss, SUBMISSION_SET_LENGTH_RULES, path, "ss")
    yield from _author_lengths("ss", path, ss.authors)
    yield from _code_lengths("ss", path, [("contentTypeCode", ss.content_type_code, None)])
    yield from _extra_slot_lengths("ss", path, ss.extra_slots)


def _document_entry_findings(entry: DocumentEntry, path: str, level: MetadataLevel) -> Iterator[Finding]:
    label = f"DocumentEntry {entry.entry_id!r}" if entry.entry_id else "a DocumentEntry without id"
    yield from _presence_findings(entry, DOCUMENT_ENTRY_RULES, level, path, "de", label)
    yield from _de_identity(entry, path)
    yield from _de_slots(entry, path)
    yield from _de_codes(entry, path)
    yield from _authors("de", path, entry.authors)
    yield from _unknown_slots("de", path, entry.extra_slots, DE_OTHER_LEGAL_SLOTS)
    yield from _de_lengths(entry, path)


def _de_identity(entry: DocumentEntry, path: str) -> Iterator[Finding]:
    if problem := _entry_id_problem(entry.entry_id):
        yield _error("de-bad-entry-id", f"{path}/@id", problem)
    if entry.mime_type and not _MIME.match(entry.mime_type):
        yield _error(
            "de-bad-mime-type", f"{path}/@mimeType", f"mimeType {entry.mime_type!r} is not type/subtype"
        )
    if entry.unique_id and (problem := _de_unique_id_problem(entry.unique_id)):
        yield _error("de-bad-unique-id", f"{path}/ExternalIdentifier[uniqueId]", problem)
    if entry.object_type != ns.DOC_ENTRY_STABLE:
        yield _error(
            "de-bad-object-type",
            f"{path}/@objectType",
            f"objectType {entry.object_type!r} is not the stable DocumentEntry type {ns.DOC_ENTRY_STABLE} "
            "required in a Provide and Register request (ITI TF-3 4.2.5)",
        )
    yield from _format("de-bad-patient-id", f"{path}/ExternalIdentifier[patientId]", entry.patient_id)


def _de_slots(entry: DocumentEntry, path: str) -> Iterator[Finding]:
    yield from _format("de-bad-creation-time", f"{path}/Slot[@name='creationTime']", entry.creation_time)
    yield from _format(
        "de-bad-service-start-time", f"{path}/Slot[@name='serviceStartTime']", entry.service_start_time
    )
    yield from _format(
        "de-bad-service-stop-time", f"{path}/Slot[@name='serviceStopTime']", entry.service_stop_time
    )
    yield from _service_time_order(entry, path)
    if entry.language_code is not None and _LANGUAGE.fullmatch(entry.language_code) is None:
        yield _error(
            "de-bad-language-code",
            f"{path}/Slot[@name='languageCode']",
            f"languageCode {entry.language_code!r} is not an RFC 3066 / BCP 47 tag such as 'en-US'",
        )
    yield from _format(
        "de-bad-source-patient-id", f"{path}/Slot[@name='sourcePatientId']", entry.source_patient_id
    )
    for value in entry.source_patient_info:
        if not _SOURCE_PATIENT_INFO.match(value):
            yield _error(
                "de-bad-source-patient-info",
                f"{path}/Slot[@name='sourcePatientInfo']",
                "a sourcePatientInfo value does not start with 'PID-<field>|' (XD 162)",
            )
    yield from _format(
        "de-bad-legal-authenticator", f"{path}/Slot[@name='legalAuthenticator']", entry.legal_authenticator
    )
    if entry.hash is not None and not _HASH.match(entry.hash):
        yield _error(
            "de-bad-hash",
            f"{path}/Slot[@name='hash']",
            f"hash {entry.hash!r} is not a SHA-1 of 40 hex digits",
        )
    if entry.size is not None and entry.size < 0:
        yield _error("de-bad-size", f"{path}/Slot[@name='size']", f"size {entry.size} is negative")


def _service_time_order(entry: DocumentEntry, path: str) -> Iterator[Finding]:
    """serviceStopTime must not precede serviceStartTime (ONC XDR checklist XD 158/159)."""
    start, stop = entry.service_start_time, entry.service_stop_time
    if start is None or stop is None or start.format_problems() or stop.format_problems():
        return
    if stop.to_datetime() < start.to_datetime():
        yield _error(
            "de-service-time-order",
            f"{path}/Slot[@name='serviceStopTime']",
            f"serviceStopTime {stop.text} is before serviceStartTime {start.text}",
        )


def _de_codes(entry: DocumentEntry, path: str) -> Iterator[Finding]:
    single = (
        ("class-code", "classCode", entry.class_code),
        ("type-code", "typeCode", entry.type_code),
        ("format-code", "formatCode", entry.format_code),
        ("healthcare-facility-type-code", "healthcareFacilityTypeCode", entry.healthcare_facility_type_code),
        ("practice-setting-code", "practiceSettingCode", entry.practice_setting_code),
    )
    for name, attribute, code in single:
        yield from _code(f"de-bad-{name}", f"{path}/Classification[{attribute}]", attribute, code)
    for code in entry.confidentiality_codes:
        yield from _code(
            "de-bad-confidentiality-code",
            f"{path}/Classification[confidentialityCode]",
            "confidentialityCode",
            code,
        )
    for code in entry.event_codes:
        yield from _code("de-bad-event-code", f"{path}/Classification[eventCodeList]", "eventCodeList", code)


def _submission_set_findings(ss: SubmissionSet, level: MetadataLevel) -> Iterator[Finding]:
    path = _ss_path(ss)
    label = f"the SubmissionSet {ss.entry_id!r}" if ss.entry_id else "the SubmissionSet"
    yield from _presence_findings(ss, SUBMISSION_SET_RULES, level, path, "ss", label)
    if problem := _entry_id_problem(ss.entry_id):
        yield _error("ss-bad-entry-id", f"{path}/@id", problem)
    if ss.unique_id and (problem := _ss_oid_problem("uniqueId", ss.unique_id)):
        yield _error("ss-bad-unique-id", f"{path}/ExternalIdentifier[uniqueId]", problem)
    if ss.source_id and (problem := _ss_oid_problem("sourceId", ss.source_id)):
        yield _error("ss-bad-source-id", f"{path}/ExternalIdentifier[sourceId]", problem)
    yield from _format("ss-bad-submission-time", f"{path}/Slot[@name='submissionTime']", ss.submission_time)
    yield from _format("ss-bad-patient-id", f"{path}/ExternalIdentifier[patientId]", ss.patient_id)
    yield from _code(
        "ss-bad-content-type-code",
        f"{path}/Classification[contentTypeCode]",
        "contentTypeCode",
        ss.content_type_code,
    )
    yield from _authors("ss", path, ss.authors)
    for recipient in ss.intended_recipients:
        yield from _format("ss-bad-intended-recipient", f"{path}/Slot[@name='intendedRecipient']", recipient)
    yield from _unknown_slots("ss", path, ss.extra_slots, _SS_EXTRA_SLOTS)
    yield from _ss_lengths(ss, path)


def _identifier_findings(submission: Submission) -> Iterator[Finding]:
    yield from _duplicate_entry_ids(submission)
    yield from _duplicate_unique_ids(submission)


def _duplicate_entry_ids(submission: Submission) -> Iterator[Finding]:
    """Every object id in one request is distinct (NIST XDS toolkit validators: "ids unique")."""
    owners: list[tuple[str, str]] = [
        (submission.submission_set.entry_id, _ss_path(submission.submission_set))
    ]
    owners += [(e.entry_id, _de_path(e, i)) for i, e in enumerate(submission.document_entries, start=1)]
    owners += [(a.entry_id, _assoc_path(a, i)) for i, a in enumerate(submission.associations, start=1)]
    counts = Counter(entry_id for entry_id, _ in owners if entry_id)
    reported: set[str] = set()
    for entry_id, path in owners:
        if counts[entry_id] > 1 and entry_id not in reported:
            reported.add(entry_id)
            yield _error(
                "duplicate-entry-id",
                f"{path}/@id",
                f"id {entry_id!r} is used by {counts[entry_id]} objects in this submission; ids must be "
                "unique",
            )


def _duplicate_unique_ids(submission: Submission) -> Iterator[Finding]:
    """One finding per uniqueId used twice; DTS 443 singles out a DocumentEntry reusing the SubmissionSet's.

    The code is XDSRegistryDuplicateUniqueIdInMessage and the message begins with the id, which is what the
    RegistryError codeContext must carry (ITI TF-3 4.2.4, ebRS 3.0).
    """
    ss = submission.submission_set
    holders: defaultdict[str, list[str]] = defaultdict(list)
    if ss.unique_id:
        holders[ss.unique_id].append(_ss_path(ss))
    for index, entry in enumerate(submission.document_entries, start=1):
        if entry.unique_id:
            holders[entry.unique_id].append(_de_path(entry, index))
    for unique_id, paths in holders.items():
        if len(paths) < 2:
            continue
        with_ss = unique_id == ss.unique_id
        rule = "de-unique-id-equals-submission-set" if with_ss else "duplicate-unique-id"
        why = (
            " (a DocumentEntry uniqueId must differ from the SubmissionSet uniqueId, DTS 443)"
            if with_ss
            else ""
        )
        yield _error(
            rule,
            f"{paths[1]}/ExternalIdentifier[uniqueId]",
            f"{unique_id}: uniqueId used by {len(paths)} objects in this submission "
            f"({', '.join(paths)}){why}",
            code=DUPLICATE_IN_MESSAGE,
        )


def _patient_id_findings(submission: Submission) -> Iterator[Finding]:
    """The SubmissionSet and every DocumentEntry name the same patient (ITI TF-3 4.2.4, ebRS 3.0 XDSPatientIdDoesNotMatch).

    Compared against the SubmissionSet's patientId, or the first entry's when minimal metadata omits it. The
    identifiers themselves stay out of the message.
    """
    reference = submission.submission_set.patient_id
    source = "the SubmissionSet"
    for index, entry in enumerate(submission.document_entries, start=1):
        if entry.patient_id is None:
            continue
        if reference is None:
            reference, source = entry.patient_id, f"DocumentEntry {entry.entry_id!r}"
            continue
        if entry.patient_id.cx.strip() != reference.cx.strip():
            yield _error(
                "de-patient-id-mismatch",
                f"{_de_path(entry, index)}/ExternalIdentifier[patientId]",
                f"DocumentEntry {entry.entry_id!r} names a different patientId than {source}",
                code=PATIENT_ID_MISMATCH,
            )


def _association_findings(submission: Submission) -> Iterator[Finding]:
    known = {submission.submission_set.entry_id} | {e.entry_id for e in submission.document_entries}
    known |= {a.entry_id for a in submission.associations}
    known.discard("")
    for index, association in enumerate(submission.associations, start=1):
        yield from _association_shape(association, _assoc_path(association, index), known)
    yield from _has_member_per_entry(submission)


def _association_shape(association: Association, path: str, known: set[str]) -> Iterator[Finding]:
    if not association.entry_id:
        yield _error("association-missing-id", f"{path}/@id", "an Association has no id")
    elif problem := _entry_id_problem(association.entry_id):
        yield _error("association-bad-id", f"{path}/@id", problem)
    if association.type not in _ASSOCIATION_TYPES:
        yield _error(
            "association-bad-type",
            f"{path}/@associationType",
            f"associationType {association.type!r} is not an ebRIM/XDS association type URN such as "
            f"{ns.HAS_MEMBER} (XD 145, ITI TF-3 4.2.5)",
        )
    for end, value in (("sourceObject", association.source), ("targetObject", association.target)):
        if value not in known:
            yield _error(
                f"association-dangling-{'source' if end == 'sourceObject' else 'target'}",
                f"{path}/@{end}",
                f"{end} {value!r} names no object in this submission",
            )
    yield from _association_to_self(association, path)
    yield from _length_findings(association, ASSOCIATION_LENGTH_RULES, path, "association")


def _association_to_self(association: Association, path: str) -> Iterator[Finding]:
    """An association links two other objects: not an object to itself, and not to the association itself
    (NIST ``pnr-assoc-to-self.xml``: targetObject = the association's own id)."""
    own = association.entry_id
    if association.source and association.source == association.target:
        yield _error(
            "association-to-self",
            path,
            f"Association {own!r} has {association.source!r} as both source and target",
        )
    elif own and own in (association.source, association.target):
        yield _error(
            "association-to-self",
            path,
            f"Association {own!r} names itself as its source or target",
        )


def _has_member_per_entry(submission: Submission) -> Iterator[Finding]:
    """Each DocumentEntry is the target of exactly one HasMember from the SubmissionSet, status Original.

    ETT negative test 4e (`negative_missing_association.xml`) is the missing case; XD 210/211.
    """
    ss_id = submission.submission_set.entry_id
    members: defaultdict[str, list[tuple[int, Association]]] = defaultdict(list)
    for index, association in enumerate(submission.associations, start=1):
        if association.type == ns.HAS_MEMBER and association.source == ss_id and ss_id:
            members[association.target].append((index, association))
    for index, entry in enumerate(submission.document_entries, start=1):
        if not entry.entry_id:
            continue  # an entry without id cannot be referenced; de-missing-entry-id already says so
        found = members.get(entry.entry_id, [])
        path = _de_path(entry, index)
        if not found:
            yield _error(
                "de-missing-has-member",
                path,
                f"DocumentEntry {entry.entry_id!r} is not the target of a HasMember association from the "
                f"SubmissionSet {ss_id!r} (XD 210)",
            )
            continue
        if len(found) > 1:
            yield _error(
                "de-duplicate-has-member",
                path,
                f"DocumentEntry {entry.entry_id!r} is the target of {len(found)} HasMember associations "
                "from the SubmissionSet; exactly one is allowed",
            )
        for a_index, association in found:
            if association.submission_set_status != "Original":
                status = association.submission_set_status
                yield _error(
                    "association-bad-submission-set-status",
                    f"{_assoc_path(association, a_index)}/Slot[@name='SubmissionSetStatus']",
                    f"HasMember to DocumentEntry {entry.entry_id!r} has SubmissionSetStatus {status!r}; a "
                    "document submitted in this request must be 'Original' (XD 211)",
                )


def _direct_findings(submission: Submission) -> Iterator[Finding]:
    yield from _sender_findings(submission)
    if not submission.recipients:
        yield _error(
            "no-recipient",
            _HEADER_TO,
            "the submission has no recipient: no direct:to in the address block and no intendedRecipient "
            "with an XTN address (XDR and XDM for Direct Messaging §4.1, DTS 434)",
        )


def _sender_findings(submission: Submission) -> Iterator[Finding]:
    """The sender is ``direct:from`` else the SubmissionSet authorTelecommunication; both, then they agree.

    DTS 433 makes authorTelecommunication R and equal to the mail From; the address block is optional
    (DTS 427), so without both the sender is unknown and the receiver cannot check the practice binding
    (our practice-binding rule).
    """
    ss = submission.submission_set
    telecoms = tuple(address for author in ss.authors for address in author.addresses)
    path = f"{_ss_path(ss)}/Classification[author]/Slot[@name='authorTelecommunication']"
    if submission.direct_from is None:
        if not telecoms:
            yield _error(
                "sender-unknown",
                path,
                "the sender is unknown: no direct:from in the address block and no SubmissionSet "
                "authorTelecommunication with a Direct address (DTS 433)",
            )
        return
    if telecoms and submission.direct_from not in telecoms:
        listed = ", ".join(str(a) for a in telecoms)
        yield _error(
            "sender-mismatch",
            _HEADER_FROM,
            f"direct:from {submission.direct_from} does not match the SubmissionSet authorTelecommunication "
            f"{listed} (DTS 433, our practice-binding rule)",
        )


def _document_findings(entry: DocumentEntry, path: str) -> Iterator[Finding]:
    document = entry.document
    if document is None:
        yield _error(
            "de-missing-document",
            path,
            f"DocumentEntry {entry.entry_id!r} has no document (no MTOM part or Document element)",
            code=MISSING_DOCUMENT,
        )
        return
    try:
        sha1, size = document.digest()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        yield _error(
            "de-unreadable-document",
            path,
            f"the document of DocumentEntry {entry.entry_id!r} cannot be read: {reason}",
            code=MISSING_DOCUMENT,
        )
        return
    if entry.hash is not None and entry.hash.strip().lower() != sha1:
        yield _error(
            "de-hash-mismatch",
            f"{path}/Slot[@name='hash']",
            f"DocumentEntry {entry.entry_id!r}: declared hash {entry.hash} does not match the document's SHA-1 {sha1}",
            code=REPOSITORY_METADATA_ERROR,
        )
    if entry.size is not None and entry.size != size:
        yield _error(
            "de-size-mismatch",
            f"{path}/Slot[@name='size']",
            f"DocumentEntry {entry.entry_id!r}: declared size {entry.size} does not match the document's {size} bytes",
            code=REPOSITORY_METADATA_ERROR,
        )
    if size == 0:
        yield _empty_document(entry, path, Severity.WARNING)
