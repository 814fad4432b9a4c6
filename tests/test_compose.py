"""compose(): the defaults a user expects, so a C-CDA goes out with only from/to addresses."""

from __future__ import annotations

import hashlib
import re
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.protocol import ns
from xdr_edge.protocol.compose import compose, guess_mime_type, new_unique_id
from xdr_edge.protocol.errors import LocalProtocolError
from xdr_edge.protocol.model import DirectAddress, Document, MetadataLevel, Patient, Submission, is_oid
from xdr_edge.protocol.validate import check_documents, validate

FROM = "dr.a@direct.a.example.org"
TO = ["dr.b@direct.b.example.org", "front.desk@direct.c.example.org"]
UUID_RE = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    contents = {
        "ccd.xml": sample_ccda(),
        "scan.pdf": sample_pdf(),
        "photo.png": _png(),
        "note.txt": b"Referral note: please see the attached summary.\n",
        "ccd-no-extension": sample_ccda(patient_id="TEST-0002"),
    }
    paths = {}
    for name, data in contents.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths[name] = path
    return paths


def _errors(submission: Submission, level: MetadataLevel | None = None) -> list[str]:
    return [str(f) for f in validate(submission, level) + check_documents(submission) if f.is_error]


# ---------------------------------------------------------------------------------------------------------
# Identifiers and times


def test_unique_ids_are_oids(files: dict[str, Path]) -> None:
    sub = compose([files["ccd.xml"], files["scan.pdf"]], sender=FROM, recipients=TO)
    ids = [sub.submission_set.unique_id] + [e.unique_id for e in sub.document_entries]
    assert len(set(ids)) == len(ids)
    for uid in ids:
        assert uid.startswith("2.25.") and is_oid(uid), uid
    assert len(sub.submission_set.unique_id) <= 64
    assert is_oid(sub.submission_set.source_id)


def test_unique_ids_under_a_root(files: dict[str, Path]) -> None:
    root = "1.3.6.1.4.1.21367.2017.2.5.42"
    sub = compose([files["ccd.xml"]], sender=FROM, recipients=TO, uid_root=root)
    for uid in (sub.submission_set.unique_id, sub.document_entries[0].unique_id):
        assert uid.startswith(root + ".") and is_oid(uid)
    assert len(sub.submission_set.unique_id) <= 64
    assert sub.submission_set.source_id == root


def test_long_root_still_fits_64_characters() -> None:
    root = "1.2.840.113619.2.55.3.604688119.971.1234567890.123456"  # 53 characters: room for 10 digits
    with pytest.raises(LocalProtocolError, match="too long to leave room"):
        new_unique_id(root)  # less than 16 digits of room: refused rather than risk collisions
    shorter = root[:40].rstrip(".")
    uid = new_unique_id(shorter)
    assert len(uid) <= 64 and uid.startswith(shorter + ".") and is_oid(uid)


def test_bad_root_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(LocalProtocolError) as err:
        compose([files["ccd.xml"]], sender=FROM, recipients=TO, uid_root="1.2.x")
    assert "1.2.x" in err.value.message and err.value.code == "bad-uid-root"


def test_source_id_is_stable_per_sending_domain(files: dict[str, Path]) -> None:
    first = compose([files["ccd.xml"]], sender=FROM, recipients=TO)
    second = compose([files["scan.pdf"]], sender="other@direct.a.example.org", recipients=TO)
    third = compose([files["scan.pdf"]], sender="x@direct.z.example.org", recipients=TO)
    assert first.submission_set.source_id == second.submission_set.source_id
    assert first.submission_set.source_id != third.submission_set.source_id


def test_symbolic_entry_ids(files: dict[str, Path]) -> None:
    sub = compose([files["ccd.xml"], files["scan.pdf"]], sender=FROM, recipients=TO)
    assert sub.submission_set.entry_id == "SubmissionSet01"
    assert [e.entry_id for e in sub.document_entries] == ["Document01", "Document02"]
    assert [(a.source, a.target, a.type) for a in sub.associations] == [
        ("SubmissionSet01", "Document01", ns.HAS_MEMBER),
        ("SubmissionSet01", "Document02", ns.HAS_MEMBER),
    ]
    assert all(a.submission_set_status == "Original" for a in sub.associations)


def test_uuid_entry_ids(files: dict[str, Path]) -> None:
    sub = compose([files["ccd.xml"], files["scan.pdf"]], sender=FROM, recipients=TO, entry_id_style="uuid")
    ids = [sub.submission_set.entry_id] + [e.entry_id for e in sub.document_entries]
    ids += [a.entry_id for a in sub.associations]
    assert all(UUID_RE.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    assert {a.target for a in sub.associations} == {e.entry_id for e in sub.document_entries}
    assert _errors(sub) == []


def test_unknown_entry_id_style_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(LocalProtocolError) as err:
        compose([files["ccd.xml"]], sender=FROM, recipients=TO, entry_id_style="numbers")
    assert "numbers" in err.value.message


def test_submission_time_is_utc_now(files: dict[str, Path]) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    sub = compose([files["scan.pdf"]], sender=FROM, recipients=TO)
    after = datetime.now(UTC)
    time = sub.submission_set.submission_time
    assert time is not None and re.fullmatch(r"\d{14}", time.text)
    assert before <= time.to_datetime() <= after


def test_submission_time_given_in_another_zone_is_written_in_utc(files: dict[str, Path]) -> None:
    from datetime import timedelta, timezone

    moment = datetime(2026, 3, 1, 8, 30, 15, tzinfo=timezone(timedelta(hours=-5)))
    sub = compose([files["scan.pdf"]], sender=FROM, recipients=TO, submission_time=moment)
    assert sub.submission_set.submission_time is not None
    assert sub.submission_set.submission_time.text == "20260301133015"


# ---------------------------------------------------------------------------------------------------------
# Documents: hash, size, mimeType


def test_hash_and_size_are_those_of_the_bytes(files: dict[str, Path]) -> None:
    names = ["ccd.xml", "scan.pdf", "photo.png", "note.txt"]
    sub = compose([files[n] for n in names], sender=FROM, recipients=TO)
    for name, entry in zip(names, sub.document_entries, strict=True):
        data = files[name].read_bytes()
        assert entry.hash == hashlib.sha1(data).hexdigest()
        assert entry.size == len(data)
    assert check_documents(sub) == []


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("ccd.xml", "text/xml"),
        ("ccd-no-extension", "text/xml"),  # content decides, not the name
        ("scan.pdf", "application/pdf"),
        ("photo.png", "image/png"),
        ("note.txt", "text/plain"),
    ],
)
def test_mime_type_is_sniffed(files: dict[str, Path], name: str, mime: str) -> None:
    sub = compose([files[name]], sender=FROM, recipients=TO)
    assert sub.document_entries[0].mime_type == mime


def test_mime_type_from_extension_when_content_says_nothing() -> None:
    assert guess_mime_type(b"\x00\x01\x02binary", "archive.json") == "application/json"
    assert guess_mime_type(b"\x80\x81\xfe", None) == "application/octet-stream"
    assert guess_mime_type(b"%PDF-1.7\n", "misnamed.txt") == "application/pdf"


def test_in_memory_document() -> None:
    data = sample_pdf("in memory")
    sub = compose([Document.from_bytes(data, name="mem.pdf")], sender=FROM, recipients=TO)
    entry = sub.document_entries[0]
    assert entry.mime_type == "application/pdf"
    assert (entry.hash, entry.size) == (hashlib.sha1(data).hexdigest(), len(data))


# ---------------------------------------------------------------------------------------------------------
# Direct addresses, levels


def test_recipients_and_sender_from_addresses(files: dict[str, Path]) -> None:
    sub = compose([files["scan.pdf"]], sender=FROM, recipients=TO)
    ss = sub.submission_set
    assert [r.address for r in ss.intended_recipients] == [DirectAddress(a) for a in TO]
    assert all(r.value.endswith(f"^^Internet^{a}") for r, a in zip(ss.intended_recipients, TO, strict=True))
    assert [t.xtn for a in ss.authors for t in a.telecoms] == [f"^^Internet^{FROM}"]
    assert sub.direct_from == DirectAddress(FROM)
    assert sub.direct_to == tuple(DirectAddress(a) for a in TO)


def test_mailto_addresses_are_accepted(files: dict[str, Path]) -> None:
    sub = compose([files["scan.pdf"]], sender=f"mailto:{FROM}", recipients=[f"mailto:{TO[0]}"])
    assert sub.direct_from == DirectAddress(FROM)
    assert sub.direct_to == (DirectAddress(TO[0]),)


def test_minimal_level_sets_both_limited_metadata_flags(files: dict[str, Path]) -> None:
    sub = compose([files["scan.pdf"], files["note.txt"]], sender=FROM, recipients=TO)
    assert sub.level is MetadataLevel.MINIMAL
    assert sub.submission_set.limited_metadata
    assert all(e.limited_metadata for e in sub.document_entries)
    assert _errors(sub) == []


def test_xds_level_clears_limited_metadata(files: dict[str, Path]) -> None:
    sub = compose([files["ccd.xml"]], sender=FROM, recipients=TO, level=MetadataLevel.XDS)
    assert not sub.submission_set.limited_metadata
    assert not any(e.limited_metadata for e in sub.document_entries)


# ---------------------------------------------------------------------------------------------------------
# C-CDA header


def test_ccda_fills_metadata_from_its_header(files: dict[str, Path]) -> None:
    sub = compose([files["ccd.xml"]], sender=FROM, recipients=TO, level=MetadataLevel.XDS)
    entry = sub.document_entries[0]
    patient = Patient.of("TEST-0001", "2.16.840.1.113883.19.5")
    assert entry.patient_id == patient
    assert entry.source_patient_id == patient
    assert sub.submission_set.patient_id == patient
    assert entry.title == "Continuity of Care Document"
    assert entry.type_code is not None and (entry.type_code.code, entry.type_code.scheme) == (
        "34133-9",
        "2.16.840.1.113883.6.1",
    )
    assert entry.authors and entry.authors[0].person is not None
    assert entry.authors[0].person.family == "Smith"
    assert [c.code for c in entry.confidentiality_codes] == ["N"]
    assert entry.language_code == "en-US"
    assert entry.creation_time is not None and entry.creation_time.text == "20261102093000"
    assert any(info.startswith("PID-5|Testpatient^Alex") for info in entry.source_patient_info)
    assert entry.format_code is not None and "ccda" in entry.format_code.code


def test_ccda_with_only_addresses_validates_at_xds_level(files: dict[str, Path]) -> None:
    sub = compose([files["ccd.xml"]], sender=FROM, recipients=TO, level=MetadataLevel.XDS)
    assert _errors(sub, MetadataLevel.XDS) == []
    assert _errors(sub, MetadataLevel.MINIMAL) == []


def test_ccda_at_minimal_level_validates(files: dict[str, Path]) -> None:
    sub = compose([files["ccd.xml"]], sender=FROM, recipients=TO)
    assert _errors(sub) == []
    assert sub.document_entries[0].patient_id == Patient.of("TEST-0001", "2.16.840.1.113883.19.5")


def test_pdf_next_to_ccda_shares_the_patient(files: dict[str, Path]) -> None:
    sub = compose([files["scan.pdf"], files["ccd.xml"]], sender=FROM, recipients=TO, level=MetadataLevel.XDS)
    pdf, ccda = sub.document_entries
    assert ccda.patient_id is not None
    assert pdf.patient_id == ccda.patient_id == sub.submission_set.patient_id
    assert pdf.source_patient_id == ccda.patient_id
    assert pdf.authors == ccda.authors  # XDS: the first known author
    assert _errors(sub, MetadataLevel.XDS) == []


def test_patient_id_option_overrides_the_header(files: dict[str, Path]) -> None:
    cx = "MRN-77^^^&1.2.3.4.5&ISO"
    sub = compose([files["ccd.xml"]], sender=FROM, recipients=TO, level=MetadataLevel.XDS, patient_id=cx)
    assert sub.document_entries[0].patient_id == Patient(cx)
    assert sub.submission_set.patient_id == Patient(cx)
    assert sub.document_entries[0].source_patient_id == Patient.of("TEST-0001", "2.16.840.1.113883.19.5")


def test_pdf_alone_at_xds_level_reports_what_is_missing(files: dict[str, Path]) -> None:
    """No CDA header and no --patient-id: the XDS level cannot be met; validation says so, naming patientId."""
    sub = compose([files["scan.pdf"]], sender=FROM, recipients=TO, level=MetadataLevel.XDS)
    errors = _errors(sub, MetadataLevel.XDS)
    assert errors and any("patient" in e.lower() for e in errors)


# ---------------------------------------------------------------------------------------------------------
# Errors


def test_no_documents() -> None:
    with pytest.raises(LocalProtocolError) as err:
        compose([], sender=FROM, recipients=TO)
    assert err.value.code == "no-documents" and "document" in err.value.message


def test_no_recipients(files: dict[str, Path]) -> None:
    with pytest.raises(LocalProtocolError) as err:
        compose([files["scan.pdf"]], sender=FROM, recipients=[])
    assert err.value.code == "no-recipients" and "--to" in err.value.message


@pytest.mark.parametrize(
    ("sender", "recipients", "code", "bad"),
    [
        ("not-an-address", TO, "bad-sender-address", "not-an-address"),
        (FROM, ["b@y.example.org", "nobody@"], "bad-recipient-address", "nobody@"),
    ],
)
def test_bad_addresses(
    files: dict[str, Path], sender: str, recipients: list[str], code: str, bad: str
) -> None:
    with pytest.raises(LocalProtocolError) as err:
        compose([files["scan.pdf"]], sender=sender, recipients=recipients)
    assert err.value.code == code
    assert bad in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pdf"
    with pytest.raises(LocalProtocolError) as err:
        compose([missing], sender=FROM, recipients=TO)
    assert err.value.code == "document-not-found"
    assert str(missing) in str(err.value)
