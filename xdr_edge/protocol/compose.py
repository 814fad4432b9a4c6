"""Compose a complete :class:`~xdr_edge.protocol.model.Submission` from documents and Direct addresses, with the defaults
a user expects, so that a caller can send a C-CDA with only the from and to addresses.

What is filled in, and why:
- uniqueIds as OIDs: ``2.25.<uuid>`` (ITU-T X.667, needs no registered root) or under a configured root;
- entry ids symbolic (``Document01``, ``SubmissionSet01``) or ``urn:uuid:`` (both legal, ITI TF-3 4.2, ebRIM 3.0);
- UTC ``submissionTime`` now; ``sourceId`` stable per sending Direct domain (a name-based UUID OID) unless given;
- SHA-1 ``hash`` and ``size`` computed by streaming the exact bytes that will be sent (the MTOM writer re-checks
  them while sending, so a file changed in between aborts the send instead of contradicting the metadata);
- ``mimeType`` as the sender declared it (:attr:`~xdr_edge.protocol.model.Document.mime_type`), else from the
  content's magic bytes, then from the file extension;
- ``intendedRecipient`` (``||^^Internet^addr``) and ``authorTelecommunication`` from the Direct addresses (DTS
  433/434), and the HasMember associations with ``SubmissionSetStatus=Original``;
- for a C-CDA document, patient id and name, title, type code, author, confidentiality, language, creation and
  service times from the CDA header (:mod:`xdr_edge.protocol.cda`);
- at the minimal level, both limitedMetadata classifications (ITI TF-3 4.3.1, XDR Limited Metadata: harmless for XDS receivers, required
  by IHE Metadata-Limited).

Pure: files are read only as document sources.
"""

from __future__ import annotations

__all__ = ["XdsDefaults", "compose", "guess_mime_type", "new_unique_id"]

import mimetypes
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from xdr_edge.protocol import ns
from xdr_edge.protocol.cda import CdaHeader, read_cda_header
from xdr_edge.protocol.errors import LocalProtocolError
from xdr_edge.protocol.model import (
    Association,
    Author,
    Code,
    DirectAddress,
    Document,
    DocumentEntry,
    Dtm,
    MetadataLevel,
    Patient,
    Recipient,
    Submission,
    SubmissionSet,
    Telecom,
    is_oid,
)

LOINC = "2.16.840.1.113883.6.1"
SNOMED = "2.16.840.1.113883.6.96"
CONFIDENTIALITY = "2.16.840.1.113883.5.25"
FORMAT_CODES = "1.3.6.1.4.1.19376.1.2.3"


@dataclass(frozen=True)
class XdsDefaults:
    """Codes used at the XDS level when neither the caller nor a CDA header supplies them.

    The values are common choices in US Direct deployments; affinity domains differ, so a HISP's own code lists
    should be configured here (the receiver's code checks, if any, are the authority).
    """

    class_code: Code = Code("56444-3", LOINC, "Healthcare communication")
    type_code: Code = Code("56444-3", LOINC, "Healthcare communication")
    confidentiality_code: Code = Code("N", CONFIDENTIALITY, "Normal")
    healthcare_facility_type_code: Code = Code("35971002", SNOMED, "Ambulatory care site")
    practice_setting_code: Code = Code("394802001", SNOMED, "General medicine")
    language_code: str = "en-US"
    cda_format_code: Code = Code(
        "urn:hl7-org:sdwg:ccda-structuredBody:2.1", FORMAT_CODES, "C-CDA R2.1 Structured Body"
    )
    pdf_format_code: Code = Code("urn:ihe:iti:xds-sd:pdf:2008", FORMAT_CODES, "Scanned Document PDF")
    text_format_code: Code = Code("urn:ihe:iti:xds-sd:text:2008", FORMAT_CODES, "Scanned Document text")
    other_format_code: Code = Code(
        "urn:ihe:iti:xds:2017:mimeTypeSufficient", FORMAT_CODES, "mimeType Sufficient"
    )


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"PK\x03\x04", "application/zip"),
)


def guess_mime_type(head: bytes, name: str | None = None) -> str:
    """Content first (magic bytes; XML, and C-CDA as ``text/xml``), then the file extension, then octet-stream."""
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"<?xml") or stripped.startswith(b"<"):
        return "text/xml"
    if name:
        guessed, _ = mimetypes.guess_type(name, strict=False)
        if guessed:
            return guessed
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain" if head else "application/octet-stream"


def new_unique_id(root: str | None = None, *, max_length: int = 64) -> str:
    """A fresh OID: ``2.25.<uuid4 as integer>`` or ``<root>.<digits>`` that fits ``max_length`` (SS uniqueId
    must be <= 64 characters, ITI TF-3 4.2.3)."""
    digits = str(uuid.uuid4().int)
    if root is None:
        return f"2.25.{digits}"
    if not is_oid(root):
        raise LocalProtocolError(f"unique id root {root!r} is not an OID", code="bad-uid-root")
    room = max_length - len(root) - 1
    if room < 16:
        raise LocalProtocolError(
            f"unique id root {root!r} is too long to leave room for a unique suffix", code="bad-uid-root"
        )
    return f"{root}.{digits[:room]}"


def _source_id_for(sender: DirectAddress) -> str:
    """A stable sourceId per sending Direct domain: the name-based UUID (RFC 4122 v5) of the domain, as an OID."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_DNS, sender.domain).int}"


def _as_document(item: Document | Path | str) -> Document:
    if isinstance(item, Document):
        return item
    path = Path(item)
    if not path.is_file():
        raise LocalProtocolError(
            f"document file not found: {path}", code="document-not-found", location=str(path)
        )
    return Document.from_path(path)


def _format_code(mime: str, cda: CdaHeader | None, defaults: XdsDefaults) -> Code:
    if cda is not None:
        return defaults.cda_format_code
    if mime == "application/pdf":
        return defaults.pdf_format_code
    if mime == "text/plain":
        return defaults.text_format_code
    return defaults.other_format_code


def _entry_ids(count: int, style: str) -> tuple[str, list[str], list[str]]:
    if style == "uuid":
        return (
            f"urn:uuid:{uuid.uuid4()}",
            [f"urn:uuid:{uuid.uuid4()}" for _ in range(count)],
            [f"urn:uuid:{uuid.uuid4()}" for _ in range(count)],
        )
    if style != "symbolic":
        raise LocalProtocolError(
            f"unknown entry id style {style!r}: use 'symbolic' or 'uuid'", code="bad-option"
        )
    return (
        "SubmissionSet01",
        [f"Document{i + 1:02d}" for i in range(count)],
        [f"Association{i + 1:02d}" for i in range(count)],
    )


def _creation_time(document: Document, cda: CdaHeader | None, level: MetadataLevel) -> Dtm | None:
    if cda is not None and cda.effective_time is not None:
        return cda.effective_time
    if level is MetadataLevel.XDS and document.path is not None:
        # creationTime is R at the XDS level; the file's modification time is the best local knowledge of when
        # the document was authored (DTS 441 forbids a transaction time such as the send time).
        mtime = datetime.fromtimestamp(document.path.stat().st_mtime, UTC)
        return Dtm.from_datetime(mtime)
    return None


def _entry(
    document: Document,
    *,
    entry_id: str,
    level: MetadataLevel,
    uid_root: str | None,
    patient_id: Patient | None,
    defaults: XdsDefaults,
    author: Author | None,
) -> DocumentEntry:
    head = document.head()
    mime = document.mime_type or guess_mime_type(head, document.name)
    cda = read_cda_header(head) if mime in ("text/xml", "application/xml") else None
    sha1, size = document.digest()
    xds = level is MetadataLevel.XDS
    entry = DocumentEntry(
        entry_id=entry_id,
        unique_id=new_unique_id(uid_root, max_length=128),
        mime_type=mime,
        document=document,
        hash=sha1,
        size=size,
        creation_time=_creation_time(document, cda, level),
        title=(cda.title if cda and cda.title else None) or document.name,
        patient_id=patient_id or (cda.patient_id if cda else None),
        limited_metadata=not xds,
    )
    if cda is not None:
        entry = replace(
            entry,
            type_code=cda.type_code,
            class_code=cda.type_code,
            confidentiality_codes=(cda.confidentiality,) if cda.confidentiality else (),
            language_code=cda.language_code,
            source_patient_id=cda.patient_id,
            source_patient_info=cda.source_patient_info,
            authors=(cda.author,) if cda.author else (),
            service_start_time=cda.service_start_time,
            service_stop_time=cda.service_stop_time,
            legal_authenticator=cda.legal_authenticator,
        )
    if author is not None and not entry.authors:
        entry = replace(entry, authors=(author,))
    if xds:
        entry = replace(
            entry,
            class_code=entry.class_code or defaults.class_code,
            type_code=entry.type_code or defaults.type_code,
            format_code=_format_code(mime, cda, defaults),
            confidentiality_codes=entry.confidentiality_codes or (defaults.confidentiality_code,),
            healthcare_facility_type_code=defaults.healthcare_facility_type_code,
            practice_setting_code=defaults.practice_setting_code,
            language_code=entry.language_code or defaults.language_code,
            source_patient_id=entry.source_patient_id or entry.patient_id,
        )
    return entry


def compose(
    documents: Sequence[Document | Path | str],
    *,
    sender: DirectAddress | str,
    recipients: Sequence[DirectAddress | str],
    level: MetadataLevel = MetadataLevel.MINIMAL,
    patient_id: Patient | str | None = None,
    uid_root: str | None = None,
    source_id: str | None = None,
    title: str | None = None,
    comments: str | None = None,
    content_type_code: Code | None = None,
    author: Author | None = None,
    defaults: XdsDefaults | None = None,
    entry_id_style: str = "symbolic",
    submission_time: datetime | None = None,
    final_destination_delivery: bool = False,
) -> Submission:
    """Build a Submission ready to validate and send.

    ``patient_id`` is a CX string (``ID^^^&OID&ISO``) or a :class:`Patient`; it overrides what a CDA header
    says. ``author`` is used for every DocumentEntry that has none of its own and is merged into the
    SubmissionSet author, whose ``authorTelecommunication`` is always the sender's address.
    ``final_destination_delivery`` asks the HISP for a notification once the message reached its final
    destination (the address block's X-DIRECT-FINAL-DESTINATION-DELIVERY, XDR and XDM for Direct Messaging §4.1).
    """
    if not documents:
        raise LocalProtocolError("a submission needs at least one document", code="no-documents")
    if not recipients:
        raise LocalProtocolError("a submission needs at least one recipient (--to)", code="no-recipients")
    from_addr = sender if isinstance(sender, DirectAddress) else _address(sender, "sender")
    to_addrs = tuple(r if isinstance(r, DirectAddress) else _address(r, "recipient") for r in recipients)
    patient = Patient(patient_id) if isinstance(patient_id, str) else patient_id
    defaults = defaults or XdsDefaults()
    ss_id, entry_ids, assoc_ids = _entry_ids(len(documents), entry_id_style)
    entries = tuple(
        _entry(
            _as_document(doc),
            entry_id=entry_id,
            level=level,
            uid_root=uid_root,
            patient_id=patient,
            defaults=defaults,
            author=author,
        )
        for doc, entry_id in zip(documents, entry_ids, strict=True)
    )
    entries = _share_patient_and_author(entries, patient, level)
    ss_author = replace(author or Author(), telecoms=(Telecom.of(from_addr),))
    if author is None and level is MetadataLevel.XDS:
        first = next((a for e in entries for a in e.authors if a.person is not None), None)
        if first is not None:
            ss_author = replace(first, telecoms=(Telecom.of(from_addr),))
    xds = level is MetadataLevel.XDS
    submission_set = SubmissionSet(
        entry_id=ss_id,
        unique_id=new_unique_id(uid_root),
        source_id=source_id or (uid_root if uid_root else _source_id_for(from_addr)),
        submission_time=Dtm.from_datetime(submission_time or datetime.now(UTC)),
        title=title,
        comments=comments,
        content_type_code=content_type_code or (entries[0].class_code if xds else None),
        authors=(ss_author,),
        intended_recipients=tuple(Recipient.of(a) for a in to_addrs),
        patient_id=patient or next((e.patient_id for e in entries if e.patient_id), None),
        limited_metadata=not xds,
    )
    associations = tuple(
        Association(entry_id=assoc_id, source=ss_id, target=entry.entry_id, type=ns.HAS_MEMBER)
        for assoc_id, entry in zip(assoc_ids, entries, strict=True)
    )
    return Submission(
        submission_set=submission_set,
        document_entries=entries,
        associations=associations,
        level=level,
        direct_from=from_addr,
        direct_to=to_addrs,
        final_destination_delivery=final_destination_delivery,
    )


def _share_patient_and_author(
    entries: tuple[DocumentEntry, ...], patient: Patient | None, level: MetadataLevel
) -> tuple[DocumentEntry, ...]:
    """A submission is about one patient: documents without a patient id (a PDF next to a C-CDA) take the
    submission's, and at the XDS level entries without an author take the first known author."""
    shared = patient or next((e.patient_id for e in entries if e.patient_id is not None), None)
    first_author = next((a for e in entries for a in e.authors), None)
    out = []
    for entry in entries:
        if entry.patient_id is None and shared is not None:
            entry = replace(entry, patient_id=shared)
            if level is MetadataLevel.XDS and entry.source_patient_id is None:
                entry = replace(entry, source_patient_id=shared)
        if level is MetadataLevel.XDS and not entry.authors and first_author is not None:
            entry = replace(entry, authors=(first_author,))
        out.append(entry)
    return tuple(out)


def _address(text: str, role: str) -> DirectAddress:
    try:
        return DirectAddress.parse(text)
    except ValueError as exc:
        raise LocalProtocolError(str(exc), code=f"bad-{role}-address", location=role) from exc
