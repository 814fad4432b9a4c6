"""The exact bytes of outgoing ITI-41 requests, pinned (ITI TF-2b 3.41, XOP 1.0, RFC 2387).

Why: the send path is tuned for speed (cached skeletons, fewer copies); such a change must not move one byte on
the wire. Each case builds a request from a submission with fixed ids and times, replaces only what is fresh per
message (the MIME boundary and the Content-IDs; the MessageID is passed in) by fixed names, and compares the
headers and the whole body with a file under ``tests/golden/``. The cases cover what the writers branch on:
the three placements of ``metadata-level``, several documents, a document with no bytes, authors, coded values
with and without display names, limited metadata, extra slots, associations with and without a status, the
delivery-notification request, and text that XML must escape (``&<>"'``, non-ASCII).

To record the files again after a change *meant* to alter the wire, run with ``XDR_EDGE_RECORD_GOLDEN=1``
and review the diff.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from xdr_edge.protocol.metadata import MetadataTemplates
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
from xdr_edge.protocol.soap import LevelPlacement, RequestEnvelopeWriter
from xdr_edge.protocol.wire import OutgoingRequest, build_plain_request, build_request

GOLDEN = Path(__file__).parent / "golden"
ENDPOINT = "https://hisp.example.org:8443/xdr?route=a&b=<c>"
MESSAGE_ID = "urn:uuid:0f0e0d0c-0b0a-4908-8706-050403020100"
LOINC = "2.16.840.1.113883.6.1"
SNOMED = "2.16.840.1.113883.6.96"
ESCAPED = 'Smith & Jones <"Cardiology"> l\'hôpital Zürich \u00e9\u4e2d'
SENDER = DirectAddress("dr.smith@direct.practice-a.org")
RECIPIENTS = (DirectAddress("records@direct.hospital.example"), DirectAddress("Dr.B@Direct.B.Example"))
CCDA = b'<?xml version="1.0"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3"><title>Note &amp; plan</title></ClinicalDocument>\n'
TEXT = b"plain text document\r\nsecond line \xe2\x9c\x93\n"


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _author(suffix: str) -> Author:
    return Author(
        person=Person(f"^Smith{suffix}^John^^^Dr."),
        institutions=(Organization("Practice A & Co<>^^^^^^^^^1.2.3.4"), Organization("Second Org")),
        roles=("Attending", ESCAPED),
        specialties=("Cardiology",),
        telecoms=(Telecom(f"^^Internet^{SENDER.address}"),),
    )


def _submission(
    *,
    level: MetadataLevel,
    documents: tuple[Document | None, ...],
    limited: bool = False,
    final_destination_delivery: bool = False,
    direct_to: tuple[DirectAddress, ...] = RECIPIENTS,
) -> Submission:
    patient = Patient("PID-1^^^&1.2.3.4.5&ISO")
    entries = []
    for index, document in enumerate(documents, start=1):
        data = CCDA if index % 2 else TEXT
        entries.append(
            DocumentEntry(
                entry_id=f"Document{index:02d}",
                unique_id=f"1.2.3.4.5.6.{index}",
                mime_type="text/xml" if index % 2 else "text/plain",
                document=document,
                hash=_sha1(data),
                size=len(data),
                creation_time=Dtm("20261206101500"),
                class_code=Code("34133-9", LOINC, "Summary of episode note"),
                type_code=Code("34133-9", LOINC, ""),
                format_code=Code("urn:hl7-org:sdwg:ccda-structuredBody:2.1", "1.3.6.1.4.1.19376.1.2.3"),
                confidentiality_codes=(
                    Code("N", "2.16.840.1.113883.5.25", "Normal"),
                    Code("R", "x", ESCAPED),
                ),
                healthcare_facility_type_code=Code("35971002", SNOMED, "Ambulatory care site"),
                practice_setting_code=Code("394802001", SNOMED, "General medicine"),
                language_code="en-US",
                patient_id=patient,
                source_patient_id=Patient("LOCAL-7^^^&1.2.3.99&ISO"),
                source_patient_info=("PID-3|LOCAL-7^^^&1.2.3.99&ISO", f"PID-5|{ESCAPED}^John"),
                authors=(_author("A"), Author(person=Person("^Second^Author"))),
                title=f"Summary {index}: {ESCAPED}",
                comments="comment with\nnew line\tand tab" if index == 1 else None,
                event_codes=(Code("ev1", "1.2.3", "Event one"),) if index == 1 else (),
                service_start_time=Dtm("202612050800"),
                service_stop_time=Dtm("202612050900") if index == 1 else None,
                legal_authenticator=Person("^Legal^Auth") if index == 1 else None,
                limited_metadata=limited,
                extra_slots=(("urn:example:slot", ("one", ESCAPED)),) if index == 1 else (),
            )
        )
    submission_set = SubmissionSet(
        entry_id="SubmissionSet01",
        unique_id="1.2.3.4.5.6.100",
        source_id="1.2.3.4.5.6",
        submission_time=Dtm("20261206101530"),
        title=f"Referral {ESCAPED}",
        comments="set comment",
        content_type_code=Code("18761-7", LOINC, "Transfer summary note"),
        authors=(_author("S"),),
        intended_recipients=tuple(Recipient.of(a) for a in direct_to),
        patient_id=patient,
        limited_metadata=limited,
        extra_slots=(("urn:example:set-slot", ("v",)),),
    )
    associations = [
        Association(entry_id=f"Association{index:02d}", source="SubmissionSet01", target=entry.entry_id)
        for index, entry in enumerate(entries, start=1)
    ]
    if len(entries) > 1:
        associations.append(
            Association(
                entry_id="Association99",
                source="Document01",
                target="Document02",
                type="urn:ihe:iti:2007:AssociationType:XFRM",
                submission_set_status=None,
            )
        )
    return Submission(
        submission_set=submission_set,
        document_entries=tuple(entries),
        associations=tuple(associations),
        level=level,
        direct_from=SENDER,
        direct_to=direct_to,
        final_destination_delivery=final_destination_delivery,
    )


def _documents(tmp_path: Path, count: int) -> tuple[Document, ...]:
    """Odd documents from a file (streamed by path), even ones from memory: both sources the body reads."""
    documents: list[Document] = []
    for index in range(1, count + 1):
        if index % 2:
            path = tmp_path / f"doc{index}.xml"
            path.write_bytes(CCDA)
            documents.append(Document.from_path(path))
        else:
            documents.append(Document.from_bytes(TEXT, name=f"doc{index}.txt"))
    return tuple(documents)


def _normalised(request: OutgoingRequest) -> bytes:
    """Headers and body, with the boundary and every Content-ID (fresh per message) replaced by fixed names."""
    body = request.body
    head = "".join(f"{name}: {value}\r\n" for name, value in request.headers().items()).encode("ascii")
    wire = head + b"\r\n" + b"".join(body)
    fresh = [(body.boundary, "BOUNDARY"), (body.root_content_id, "root@golden")]
    fresh += [(part.content_id, f"part{index}@golden") for index, part in enumerate(body.parts, start=1)]
    for value, name in fresh:
        assert len(value) >= 30 and wire.count(value.encode("ascii")) >= 1  # random enough to be unambiguous
        wire = wire.replace(value.encode("ascii"), name.encode("ascii"))
    return wire


def _compare(name: str, actual: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("XDR_EDGE_RECORD_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(actual)
    expected = path.read_bytes()
    if actual != expected:
        at = next((i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b), None)
        at = min(len(actual), len(expected)) if at is None else at
        raise AssertionError(
            f"{name}: the request differs from the pinned bytes at offset {at} "
            f"(lengths {len(actual)} and {len(expected)}):\n"
            f"actual:   {actual[max(0, at - 80) : at + 80]!r}\nexpected: {expected[max(0, at - 80) : at + 80]!r}"
        )


@dataclass(frozen=True)
class Case:
    level: MetadataLevel
    count: int
    placement: LevelPlacement
    limited: bool = False
    final_destination_delivery: bool = False

    def submission(self, directory: Path) -> Submission:
        directory.mkdir(exist_ok=True)
        return _submission(
            level=self.level,
            documents=_documents(directory, self.count),
            limited=self.limited,
            final_destination_delivery=self.final_destination_delivery,
        )


CASES = {
    "xds-top-level": Case(MetadataLevel.XDS, 2, LevelPlacement.TOP_LEVEL),
    "xds-in-block": Case(MetadataLevel.XDS, 1, LevelPlacement.IN_BLOCK),
    "minimal-both-limited": Case(
        MetadataLevel.MINIMAL, 3, LevelPlacement.BOTH, limited=True, final_destination_delivery=True
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_mtom_request_bytes_are_pinned(case: str, tmp_path: Path) -> None:
    spec = CASES[case]
    request = build_request(
        spec.submission(tmp_path), endpoint=ENDPOINT, message_id=MESSAGE_ID, placement=spec.placement
    )
    _compare(f"request-{case}.bin", _normalised(request))


def test_request_without_documents_or_recipients_is_pinned() -> None:
    """A DocumentEntry without bytes gets no part and no Document slot; no recipients, no ``direct:to``."""
    submission = _submission(level=MetadataLevel.XDS, documents=(None,), direct_to=())
    request = build_request(submission, endpoint=ENDPOINT, message_id=MESSAGE_ID)
    assert request.body.parts == ()
    _compare("request-no-documents.bin", _normalised(request))


def test_inline_request_bytes_are_pinned(tmp_path: Path) -> None:
    """The simple-SOAP form (base64 inline): the same envelope writer, no MIME framing to normalise."""
    submission = _submission(level=MetadataLevel.XDS, documents=_documents(tmp_path, 2))
    message_id, content_type, body = build_plain_request(submission, endpoint=ENDPOINT, message_id=MESSAGE_ID)
    assert message_id == MESSAGE_ID
    _compare("request-inline.bin", f"Content-Type: {content_type}\r\n\r\n".encode("ascii") + body)


def test_the_same_submission_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    """Nothing a writer keeps between messages leaks into the next one: a second request, built after a
    different one, is byte for byte the first (apart from the fresh ids)."""
    first = _submission(level=MetadataLevel.XDS, documents=_documents(tmp_path, 2))
    other = _submission(level=MetadataLevel.MINIMAL, documents=_documents(tmp_path, 3), limited=True)
    writer = RequestEnvelopeWriter()
    before = _normalised(build_request(first, endpoint=ENDPOINT, message_id=MESSAGE_ID, writer=writer))
    build_request(other, endpoint=ENDPOINT, message_id=MESSAGE_ID, writer=writer)
    after = _normalised(build_request(first, endpoint=ENDPOINT, message_id=MESSAGE_ID, writer=writer))
    assert before == after
    _compare("request-xds-top-level.bin", after)  # the same case as the parametrized one


@pytest.mark.parametrize("case", sorted(CASES))
def test_templates_give_the_pinned_bytes(case: str, tmp_path: Path) -> None:
    """A sender's MetadataTemplates copy the parts that repeat between messages: the first message fills them,
    the next ones copy them, and every one is byte for byte the pinned request, also after other submissions
    used the same templates."""
    spec = CASES[case]
    submission = spec.submission(tmp_path)
    templates = MetadataTemplates()
    writer = RequestEnvelopeWriter()
    for other in (None, *CASES):
        if other is not None and other != case:
            made = CASES[other].submission(tmp_path / other)
            build_request(made, endpoint=ENDPOINT, templates=templates, writer=writer)
        request = build_request(
            submission,
            endpoint=ENDPOINT,
            message_id=MESSAGE_ID,
            placement=spec.placement,
            writer=writer,
            templates=templates,
            text_checked=True,
        )
        _compare(f"request-{case}.bin", _normalised(request))


def _varied(submission: Submission, change: str) -> Submission:
    """``submission`` with one component of every kept value changed, in place: each code's ``change`` field
    (code, scheme or display), each author's (person, institutions, roles, specialties, telecoms) or the
    sourceId and patient ids (``ids``)."""

    def code(value: Code | None) -> Code | None:
        if value is None or change not in ("code", "scheme", "display"):
            return value
        return dataclasses.replace(value, **{change: getattr(value, change) + "-other"})

    def author(value: Author) -> Author:
        changed: dict[str, Any] = {
            "person": Person("^Other^Jane"),
            "institutions": (Organization("Other Org^^^^^^^^^9.9.9"),),
            "roles": ("Nurse",),
            "specialties": ("Oncology",),
            "telecoms": (Telecom("^^Internet^other@direct.practice-a.org"),),
        }
        return dataclasses.replace(value, **{change: changed[change]}) if change in changed else value

    patient = Patient("PID-2^^^&1.2.3.4.5&ISO") if change == "ids" else None
    entries = tuple(
        dataclasses.replace(
            e,
            class_code=code(e.class_code),
            type_code=code(e.type_code),
            format_code=code(e.format_code),
            confidentiality_codes=tuple(c for c in map(code, e.confidentiality_codes) if c is not None),
            event_codes=tuple(c for c in map(code, e.event_codes) if c is not None),
            healthcare_facility_type_code=code(e.healthcare_facility_type_code),
            practice_setting_code=code(e.practice_setting_code),
            authors=tuple(map(author, e.authors)),
            patient_id=patient or e.patient_id,
        )
        for e in submission.document_entries
    )
    ss = submission.submission_set
    ss = dataclasses.replace(
        ss,
        content_type_code=code(ss.content_type_code),
        authors=tuple(map(author, ss.authors)),
        source_id="1.2.3.4.5.7" if change == "ids" else ss.source_id,
        patient_id=patient or ss.patient_id,
    )
    return dataclasses.replace(submission, submission_set=ss, document_entries=entries)


@pytest.mark.parametrize(
    "change",
    ["code", "scheme", "display", "person", "institutions", "roles", "specialties", "telecoms", "ids"],
)
def test_a_value_that_differs_in_one_component_is_written_not_copied(change: str, tmp_path: Path) -> None:
    """Templates are keyed by everything their bytes depend on: after a submission filled them, one whose kept
    values differ in a single component at the same places (a code's display only, an author's role only, the
    patient) is byte for byte what writing it without templates gives. A key that left a component out would
    put the first message's value (a code, an author, a patient id) into the second."""
    first = _submission(level=MetadataLevel.XDS, documents=_documents(tmp_path, 2))
    second = _varied(first, change)
    templates = MetadataTemplates()
    build_request(first, endpoint=ENDPOINT, message_id=MESSAGE_ID, templates=templates)
    assert len(templates) > 0
    copied = build_request(second, endpoint=ENDPOINT, message_id=MESSAGE_ID, templates=templates)
    written = build_request(second, endpoint=ENDPOINT, message_id=MESSAGE_ID)
    assert _normalised(copied) == _normalised(written)
    assert _normalised(written) != _normalised(build_request(first, endpoint=ENDPOINT, message_id=MESSAGE_ID))


def test_a_full_template_store_starts_again() -> None:
    """Past its capacity the store drops what it holds and goes on: bounded memory, the same bytes."""
    submission = _submission(level=MetadataLevel.XDS, documents=(None,), direct_to=())
    expected = build_request(submission, endpoint=ENDPOINT, message_id=MESSAGE_ID)
    templates = MetadataTemplates(capacity=3)
    for _ in range(3):
        request = build_request(submission, endpoint=ENDPOINT, message_id=MESSAGE_ID, templates=templates)
        assert _normalised(request) == _normalised(expected)
        assert 0 < len(templates) <= 3


def test_uuid_entry_ids_are_written_not_kept(tmp_path: Path) -> None:
    """Objects named by ``urn:uuid:`` ids belong to one submission: their parts are written each time and never
    fill the store, and the bytes are those written without templates."""
    symbolic = CASES["xds-top-level"].submission(tmp_path)
    renamed = {"SubmissionSet01": "urn:uuid:0a0b0c0d-0000-4000-8000-000000000001"}
    for index, entry in enumerate(symbolic.document_entries, start=2):
        renamed[entry.entry_id] = f"urn:uuid:0a0b0c0d-0000-4000-8000-00000000000{index}"
    submission = dataclasses.replace(
        symbolic,
        submission_set=dataclasses.replace(symbolic.submission_set, entry_id=renamed["SubmissionSet01"]),
        document_entries=tuple(
            dataclasses.replace(e, entry_id=renamed[e.entry_id]) for e in symbolic.document_entries
        ),
        associations=tuple(
            dataclasses.replace(a, source=renamed[a.source], target=renamed[a.target])
            for a in symbolic.associations
        ),
    )
    templates = MetadataTemplates()
    plain = _normalised(build_request(submission, endpoint=ENDPOINT, message_id=MESSAGE_ID))
    for _ in range(2):
        copied = build_request(submission, endpoint=ENDPOINT, message_id=MESSAGE_ID, templates=templates)
        assert _normalised(copied) == plain
    assert len(templates) == 0


def test_threads_sharing_templates_and_a_writer_all_get_the_pinned_bytes(tmp_path: Path) -> None:
    """An XdrClient is shared by threads, and so are its templates and its envelope writer: eight threads
    building every case at once, over and over (templates filled, copied and, at a small capacity, dropped while
    others copy them), each get byte for byte the pinned requests."""
    templates = MetadataTemplates(capacity=16)
    writer = RequestEnvelopeWriter()
    made = {case: spec.submission(tmp_path / case) for case, spec in CASES.items()}
    expected = {case: (GOLDEN / f"request-{case}.bin").read_bytes() for case in CASES}
    start = threading.Barrier(8)

    def build_all(worker: int) -> list[str]:
        start.wait(30)
        wrong: list[str] = []
        for round_ in range(25):
            for case in sorted(CASES)[worker % len(CASES) :] + sorted(CASES)[: worker % len(CASES)]:
                request = build_request(
                    made[case],
                    endpoint=ENDPOINT,
                    message_id=MESSAGE_ID,
                    placement=CASES[case].placement,
                    writer=writer,
                    templates=templates,
                    text_checked=True,
                )
                if _normalised(request) != expected[case]:
                    wrong.append(f"worker {worker} round {round_}: {case}")
        return wrong

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        wrong = [w for found in pool.map(build_all, range(8)) for w in found]
    assert wrong == []
