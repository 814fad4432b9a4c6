"""``xdr-edge pack`` and ``inspect`` refuse what would destroy an input or misreport an empty file (CliRunner,
real files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from xdr_edge.cli import main
from xdr_edge.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE
from xdr_edge.conformance.samples import sample_ccda, sample_pdf

FROM = "dr.a@direct.a.example.org"
TO = "dr.b@direct.b.example.org"


def _run(*args: str | Path, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], input=stdin, catch_exceptions=False)


def _pack(out: Path | str, *files: Path) -> Result:
    return _run("pack", *files, "--from", FROM, "--to", TO, "-o", out)


@pytest.fixture
def docs(tmp_path: Path) -> tuple[Path, Path]:
    ccda, pdf = tmp_path / "ccd.xml", tmp_path / "scan.pdf"
    ccda.write_bytes(sample_ccda())
    pdf.write_bytes(sample_pdf())
    return ccda, pdf


def test_pack_refuses_to_write_over_an_input_document(docs: tuple[Path, Path]) -> None:
    ccda, pdf = docs
    result = _pack(pdf, ccda, pdf)
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"--output {pdf} is the input file {pdf}" in result.stderr
    assert "nothing was written" in result.stderr
    assert pdf.read_bytes() == sample_pdf() and ccda.read_bytes() == sample_ccda()
    assert not pdf.with_name(pdf.name + ".part").exists()


def test_pack_refuses_another_spelling_or_a_hard_link_of_an_input(
    docs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ccda, _ = docs
    monkeypatch.chdir(ccda.parent)
    (ccda.parent / "sub").mkdir()
    respelled = _pack("sub/../ccd.xml", ccda)
    assert respelled.exit_code == EXIT_BAD_INPUT and "is the input file" in respelled.stderr
    link = ccda.parent / "link.xml"
    os.link(ccda, link)
    linked = _pack(link, ccda)
    assert linked.exit_code == EXIT_BAD_INPUT and f"--output {link} is the input file {ccda}" in linked.stderr
    assert ccda.read_bytes() == sample_ccda()


def test_pack_into_a_missing_directory_is_refused_before_composing(docs: tuple[Path, Path]) -> None:
    out = docs[0].parent / "missing" / "request.mime"
    result = _pack(out, docs[0])
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"--output {out}: the directory {out.parent} does not exist" in result.stderr


def test_pack_to_another_file_still_works(docs: tuple[Path, Path]) -> None:
    out = docs[0].parent / "request.mime"
    result = _pack(out, *docs)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"Content-Type: multipart/related")


def test_inspect_of_an_empty_file_exits_2_saying_it_is_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mime"
    empty.write_bytes(b"")
    result = _run("inspect", empty)
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"{empty} is empty" in result.stderr
    assert "blank line" not in result.output
    as_json = _run("inspect", "--json", empty)
    assert as_json.exit_code == EXIT_BAD_INPUT
    document = json.loads(as_json.stdout)  # --json: one JSON document, also when there is nothing to inspect
    assert document["kind"] == "none" and document["error"]["code"] == "file-empty"


def test_inspect_of_empty_standard_input_exits_2(tmp_path: Path) -> None:
    result = _run("inspect", "-", stdin=b"")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "standard input is empty" in result.stderr


def test_inspect_of_an_unrecognised_file_exits_1_as_its_help_says(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 not a message at all")
    result = _run("inspect", junk)
    assert result.exit_code == EXIT_FAILURE
    assert "findings: 1 error(s)" in result.stdout
    help_text = " ".join(_run("inspect", "--help").stdout.split())
    assert "not a message xdr-edge recognises" in help_text
    assert "empty" in help_text


def test_inspect_reads_a_packed_request_from_standard_input(docs: tuple[Path, Path]) -> None:
    out = docs[0].parent / "request.mime"
    assert _pack(out, docs[0]).exit_code == 0
    result = _run("inspect", "-", stdin=out.read_bytes())
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("request (MTOM)")
