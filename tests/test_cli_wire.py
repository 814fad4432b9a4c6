"""``xdr-edge pack`` and ``xdr-edge inspect`` through click's CliRunner: real files in, real files out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from xdr_edge.cli import main
from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.wire import build_request

FROM = "dr.a@direct.a.example.org"
TO = "dr.b@direct.b.example.org"


@pytest.fixture
def docs(tmp_path: Path) -> dict[str, Path]:
    ccda = tmp_path / "ccd.xml"
    ccda.write_bytes(sample_ccda())
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(sample_pdf())
    return {"ccda": ccda, "pdf": pdf}


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _pack(out: Path, *files: Path, extra: tuple[str, ...] = ()) -> Result:
    return _run("pack", *map(str, files), "--from", FROM, "--to", TO, *extra, "-o", str(out))


def test_pack_writes_one_mime_entity(tmp_path: Path, docs: dict[str, Path]) -> None:
    out = tmp_path / "request.mime"
    result = _pack(out, docs["ccda"], docs["pdf"])
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(b"Content-Type: multipart/related; boundary=")
    header, sep, body = data.partition(b"\r\n\r\n")
    assert sep and b"\n" not in header  # one header line, then a blank line
    boundary = re.search(rb'boundary="?([^";]+)"?', header)
    assert boundary is not None
    assert body.startswith(b"--" + boundary.group(1) + b"\r\n")
    assert body.endswith(b"--" + boundary.group(1) + b"--\r\n")
    assert sample_pdf() in body and sample_ccda() in body  # documents as binary parts, byte for byte
    assert "2 document(s)" in result.output
    assert not (tmp_path / "request.mime.part").exists()


def test_inspect_of_packed_file_is_clean(tmp_path: Path, docs: dict[str, Path]) -> None:
    out = tmp_path / "request.mime"
    assert _pack(out, docs["ccda"], docs["pdf"]).exit_code == 0
    text = _run("inspect", str(out))
    assert text.exit_code == 0, text.output
    assert text.output.startswith("request (MTOM)")
    assert "findings: 0 error(s)" in text.output
    as_json = _run("inspect", "--json", str(out))
    assert as_json.exit_code == 0
    report = json.loads(as_json.output)
    assert report["kind"] == "request" and report["mtom"] is True
    assert report["errors"] == 0
    assert report["summary"]["direct_from"] == FROM
    assert report["summary"]["direct_to"] == [TO]
    assert len(report["summary"]["documents"]) == 2


def test_pack_can_ask_for_a_final_destination_delivery_notification(
    tmp_path: Path, docs: dict[str, Path]
) -> None:
    plain, asked = tmp_path / "plain.mime", tmp_path / "asked.mime"
    assert _pack(plain, docs["ccda"]).exit_code == 0
    assert _pack(asked, docs["ccda"], extra=("--final-delivery-notification",)).exit_code == 0
    assert b"X-DIRECT-FINAL-DESTINATION-DELIVERY>true<" in asked.read_bytes()
    assert b"X-DIRECT-FINAL-DESTINATION-DELIVERY" not in plain.read_bytes()
    assert "final destination delivery: requested" in _run("inspect", str(asked)).output
    assert "final destination delivery" not in _run("inspect", str(plain)).output
    report = json.loads(_run("inspect", "--json", str(asked)).output)
    assert report["summary"]["final_destination_delivery"] is True


def test_flipped_byte_in_a_document_is_a_hash_mismatch(tmp_path: Path, docs: dict[str, Path]) -> None:
    out = tmp_path / "request.mime"
    assert _pack(out, docs["pdf"]).exit_code == 0
    data = bytearray(out.read_bytes())
    where = bytes(data).index(b"/BaseFont /Helvetica")  # inside the PDF part, not in the XML root
    data[where + 1] ^= 0x20  # 'B' -> 'b': same size, other SHA-1
    out.write_bytes(bytes(data))
    result = _run("inspect", "--json", str(out))
    assert result.exit_code == 1
    report = json.loads(result.output)
    rules = {f["rule"]: f for f in report["findings"] if f["severity"] == "Error"}
    assert set(rules) == {"de-hash-mismatch"}, report["findings"]
    assert rules["de-hash-mismatch"]["code"] == "XDSRepositoryMetadataError"
    text = _run("inspect", str(out))
    assert text.exit_code == 1 and "does not match" in text.output


def test_pack_with_invalid_from_exits_2(tmp_path: Path, docs: dict[str, Path]) -> None:
    out = tmp_path / "request.mime"
    result = _run("pack", str(docs["pdf"]), "--from", "not-an-address", "--to", TO, "-o", str(out))
    assert result.exit_code == 2
    assert "not-an-address" in result.output and "Direct address" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_pack_xds_level_of_the_sample_ccda(tmp_path: Path, docs: dict[str, Path]) -> None:
    out = tmp_path / "request.mime"
    result = _pack(out, docs["ccda"], extra=("--metadata", "xds", "--level-placement", "in-block"))
    assert result.exit_code == 0, result.output
    report = json.loads(_run("inspect", "--json", str(out)).output)
    assert report["errors"] == 0
    assert report["summary"]["metadata_level_header"] == "XDS"
    assert report["summary"]["metadata_level_placement"] == "in-block"


def test_pack_xds_level_without_patient_is_refused(tmp_path: Path, docs: dict[str, Path]) -> None:
    out = tmp_path / "request.mime"
    result = _pack(out, docs["pdf"], extra=("--metadata", "xds"))
    assert result.exit_code == 2
    assert "patient" in result.output.lower()
    assert not out.exists()


def test_a_lone_pdf_at_the_xds_level_names_the_options_that_supply_what_is_missing(
    tmp_path: Path, docs: dict[str, Path]
) -> None:
    out = tmp_path / "request.mime"
    refused = _pack(out, docs["pdf"], extra=("--metadata", "xds"))
    assert refused.exit_code == 2
    assert "--patient-id (for patientId, sourcePatientId)" in refused.output
    assert "--author-person (for authorPerson, author)" in refused.output
    assert "--metadata minimal" in refused.output
    author = (
        "--patient-id",
        "8273^^^&1.3.6.1.4.1.21367.2005.3.7&ISO",
        "--author-person",
        "^Smith^John^^^Dr.",
        "--author-institution",
        "Riverside Clinic^^^^^^^^^1.2.3.4.5",
        "--author-role",
        "Attending",
        "--author-specialty",
        "Family Medicine",
    )
    result = _pack(out, docs["pdf"], extra=("--metadata", "xds", *author))
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    for value in (
        b"^Smith^John^^^Dr.",
        b"Riverside Clinic^^^^^^^^^1.2.3.4.5",
        b"Attending",
        b"Family Medicine",
    ):
        assert data.count(value) == 2, value  # the SubmissionSet's author and the DocumentEntry's
    report = json.loads(_run("inspect", "--json", str(out)).output)
    assert report["errors"] == 0, report["findings"]


def test_an_empty_document_is_refused_by_pack_and_flagged_by_inspect(tmp_path: Path) -> None:
    empty = tmp_path / "note.txt"
    empty.write_bytes(b"")
    out = tmp_path / "request.mime"
    refused = _pack(out, empty)
    assert refused.exit_code == 2
    assert "the document of DocumentEntry 'Document01' (note.txt) is empty (0 bytes)" in refused.output
    assert not out.exists()

    request = build_request(
        compose([empty], sender=FROM, recipients=[TO]), endpoint="https://hisp.invalid/xdr"
    )
    with out.open("wb") as fh:  # what another sender might write, and our receiver still store
        request.write_entity(fh)
    report = json.loads(_run("inspect", "--json", str(out)).output)
    (finding,) = [f for f in report["findings"] if f["rule"] == "de-empty-document"]
    assert finding["severity"] == "Warning" and "is empty (0 bytes)" in finding["message"]
    assert report["errors"] == 0


def test_inspect_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = _run("inspect", str(tmp_path / "nowhere.mime"))
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_inspect_of_an_unreadable_entity_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "garbage.txt"
    path.write_bytes(b"X-Nothing: here\r\n\r\nnot a message")
    result = _run("inspect", "--json", str(path))
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["kind"] == "unknown" and report["errors"] == 1


def test_pack_with_an_over_long_title_exits_2(tmp_path: Path, docs: dict[str, Path]) -> None:
    """rim.xsd bounds LocalizedString/@value (FreeFormText) at 1024 characters: pack refuses a longer --title
    before writing anything, naming the attribute, the limit and the length, but not the title itself."""
    out = tmp_path / "request.mime"
    result = _pack(out, docs["ccda"], extra=("--title", "T" * 2000))
    assert result.exit_code == 2, result.output
    assert "title is 2000 characters long; at most 1024 are allowed" in result.output
    assert "RegistryPackage[@id=" in result.output and "/Name/LocalizedString/@value" in result.output
    assert "T" * 100 not in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert _pack(out, docs["ccda"], extra=("--title", "T" * 1024)).exit_code == 0
