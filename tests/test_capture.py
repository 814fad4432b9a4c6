"""Raw HTTP captures as ``inspect`` reads them (xdr_edge.protocol.capture): chunked bodies decoded (RFC 9112
§7.1), Content-Length checked against the body (RFC 9112 §6.2-6.3), bare-LF captures restored to CRLF in linear
time; and ``xdr-edge inspect`` on them: the README's exit statuses, one JSON document with ``--json``."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import BinaryIO, cast

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from xdr_edge.cli import main
from xdr_edge.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.protocol import ns
from xdr_edge.protocol.capture import Entity, _CrlfRestorer, length_findings, read_entity
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.inspection import Inspection, inspect_stream
from xdr_edge.protocol.model import Document
from xdr_edge.protocol.mtom import MtomBody
from xdr_edge.protocol.soap import Fault
from xdr_edge.protocol.wire import build_reply, build_request


@pytest.fixture(scope="module")
def packed() -> tuple[str, bytes]:
    """A valid request as ``pack`` makes it: its Content-Type and body."""
    submission = compose(
        [Document.from_bytes(sample_ccda(), name="ccd.xml")],
        sender="dr.a@direct.a.example.org",
        recipients=["dr.b@direct.b.example.org"],
    )
    request = build_request(submission, endpoint="https://hisp.invalid/xdr")
    return request.content_type, b"".join(request.body)


def _capture(content_type: str, body: bytes, *extra: str, eol: bytes = b"\r\n") -> bytes:
    lines = ["POST /xdr HTTP/1.1", "Host: hisp.invalid", f"Content-Type: {content_type}", *extra]
    return eol.join(line.encode("latin-1") for line in lines) + eol + eol + body


def _chunked(body: bytes, size: int, *, extension: bytes = b"", trailer: bytes = b"") -> bytes:
    out = [
        b"%x%s\r\n%s\r\n" % (len(body[i : i + size]), extension, body[i : i + size])
        for i in range(0, len(body), size)
    ]
    return b"".join(out) + b"0\r\n" + trailer + b"\r\n"


def _inspect(data: bytes) -> Inspection:
    return inspect_stream(io.BytesIO(data))


def _rules(result: Inspection) -> list[str]:
    return [f.rule for f in result.findings]


# ----------------------------------------------------------------------------------------------------------
# Chunked bodies


@pytest.mark.parametrize("size", [1, 7, 1000, 10**6])
def test_a_chunked_capture_reads_as_the_request_it_carries(packed: tuple[str, bytes], size: int) -> None:
    content_type, body = packed
    data = _capture(content_type, _chunked(body, size), "Transfer-Encoding: chunked")
    result = _inspect(data)
    assert (result.kind, result.mtom, result.has_errors) == ("request", True, False), result.as_dict()


def test_chunk_extensions_and_trailers_are_read_past(packed: tuple[str, bytes]) -> None:
    content_type, body = packed
    chunked = _chunked(body, 4096, extension=b';name="v"', trailer=b"X-Checksum: 1\r\nX-Other: 2\r\n")
    result = _inspect(_capture(content_type, chunked, "Transfer-Encoding: Chunked"))
    assert (result.kind, result.has_errors) == ("request", False), result.as_dict()


def _crlf_only_reply() -> bytes:
    """A plain-SOAP fault whose every line end is CRLF (so a text copy of it can be restored exactly)."""
    reply = build_reply(
        Fault("Sender", "no"), relates_to="urn:uuid:0f0e0d0c-0b0a-4908-8706-050403020100", mtom=False
    )
    return reply.body.replace(b"\n", b"\r\n")


def test_a_chunked_capture_saved_as_text_gets_its_line_ends_back() -> None:
    """Chunk sizes count the CRLFs a text editor turned into LF: they are restored before the chunks are read."""
    capture = _capture(
        "application/soap+xml", _chunked(_crlf_only_reply(), 100), "Transfer-Encoding: chunked"
    )
    result = _inspect(capture.replace(b"\r\n", b"\n"))
    assert (result.kind, result.has_errors) == ("fault", False), result.as_dict()
    assert _rules(result) == ["capture-line-ends"]


def test_a_text_copy_of_chunks_holding_bare_lf_says_why_it_cannot_be_read(packed: tuple[str, bytes]) -> None:
    """A C-CDA with LF line ends inside a chunk: restoring CRLF changes the chunk's length, and the finding says
    the capture was saved as text."""
    content_type, body = packed
    capture = _capture(content_type, _chunked(body, 1500), "Transfer-Encoding: chunked").replace(
        b"\r\n", b"\n"
    )
    result = _inspect(capture)
    [finding] = [f for f in result.findings if f.is_error]
    assert finding.rule == "capture-chunked" and "saved as text" in finding.message


@pytest.mark.parametrize(
    ("chunked", "problem"),
    [
        (b"zz\r\nabc\r\n0\r\n\r\n", "malformed chunk-size line"),
        (b"5\r\nabc\r\n0\r\n\r\n", "not followed by CRLF"),
        (b"10\r\nabc", "ends inside a chunk"),
        (b"3\r\nabc\r\n", "ends before the last chunk"),
        (b"3\r\nabcXY0\r\n\r\n", "not followed by CRLF"),
        (b"1" * 5000, "longer than 4096 bytes"),
    ],
)
def test_broken_chunked_framing_is_a_finding(chunked: bytes, problem: str) -> None:
    result = _inspect(_capture("application/soap+xml", chunked, "Transfer-Encoding: chunked"))
    [finding] = [f for f in result.findings if f.is_error]
    assert finding.rule == "capture-chunked" and problem in finding.message, finding


def test_a_transfer_coding_other_than_chunked_is_a_finding() -> None:
    result = _inspect(_capture("application/soap+xml", b"\x1f\x8b", "Transfer-Encoding: gzip, chunked"))
    assert result.kind == "unknown" and result.has_errors
    assert "only chunked can be decoded" in result.findings[0].message


# ----------------------------------------------------------------------------------------------------------
# Content-Length


def test_a_content_length_that_matches_gives_no_finding(packed: tuple[str, bytes]) -> None:
    content_type, body = packed
    result = _inspect(_capture(content_type, body, f"Content-Length: {len(body)}"))
    assert (result.kind, result.findings) == ("request", [])


@pytest.mark.parametrize(("delta", "word"), [(-100, "truncated"), (+100, "more than one message")])
def test_a_content_length_that_disagrees_is_an_error(
    packed: tuple[str, bytes], delta: int, word: str
) -> None:
    content_type, body = packed
    declared = len(body) - delta
    result = _inspect(_capture(content_type, body, f"Content-Length: {declared}"))
    [finding] = [f for f in result.findings if f.rule == "capture-content-length"]
    assert finding.is_error and finding.location == "Content-Length"
    assert (
        f"says {declared} bytes but the body has {len(body)}" in finding.message and word in finding.message
    )


def test_blank_line_ends_after_the_content_length_are_only_a_warning(packed: tuple[str, bytes]) -> None:
    content_type, body = packed
    result = _inspect(_capture(content_type, body + b"\r\n", f"Content-Length: {len(body)}"))
    [finding] = [f for f in result.findings if f.rule == "capture-content-length"]
    assert not finding.is_error and "2 blank line-end byte(s)" in finding.message
    assert not result.has_errors


@pytest.mark.parametrize("value", ["abc", "-5", "+5", "12, 13", "1e3"])
def test_a_content_length_that_is_not_a_length_is_an_error(value: str) -> None:
    result = _inspect(_capture("application/soap+xml", b"<a/>", f"Content-Length: {value}"))
    assert any(f.rule == "capture-content-length" and f.is_error for f in result.findings), result.as_dict()


def test_a_repeated_identical_content_length_is_one_length() -> None:
    data = _capture("application/soap+xml", b"<a/>", "Content-Length: 4, 4")
    assert "capture-content-length" not in _rules(_inspect(data))


def test_content_length_with_chunked_is_an_error(packed: tuple[str, bytes]) -> None:
    content_type, body = packed
    data = _capture(content_type, _chunked(body, 999), "Transfer-Encoding: chunked", "Content-Length: 5")
    result = _inspect(data)
    assert result.kind == "request"
    [finding] = [f for f in result.findings if f.is_error]
    assert finding.rule == "capture-content-length" and "RFC 9112 §6.1" in finding.message


def test_a_bare_lf_capture_is_measured_after_its_line_ends_are_restored() -> None:
    """What was sent had CRLF line ends: its Content-Length counts them, and so does the check."""
    body = _crlf_only_reply()
    mime = MtomBody(body, [], action=ns.ACTION_FAULT)
    mtom = b"".join(mime)
    capture = _capture(mime.content_type, mtom, f"Content-Length: {len(mtom)}").replace(b"\r\n", b"\n")
    result = _inspect(capture)
    assert result.kind == "fault" and "capture-content-length" not in _rules(result), result.as_dict()


def test_a_disagreement_in_a_capture_saved_as_text_is_a_warning(packed: tuple[str, bytes]) -> None:
    """The C-CDA's own LF line ends become CRLF when the capture's are restored: the count cannot be trusted."""
    content_type, body = packed
    capture = _capture(content_type, body, f"Content-Length: {len(body)}").replace(b"\r\n", b"\n")
    [finding] = [f for f in _inspect(capture).findings if f.rule == "capture-content-length"]
    assert not finding.is_error and "saved as text" in finding.message


def test_length_findings_without_a_content_length_read_nothing() -> None:
    entity = read_entity(io.BytesIO(b"Content-Type: application/soap+xml\r\n\r\n<a/>"))
    assert isinstance(entity, Entity) and length_findings(entity) == []
    assert entity.body.read() == b"<a/>"


# ----------------------------------------------------------------------------------------------------------
# The line-end restorer: the same result as the former regular expression, in linear time

_FORMER = re.compile(rb"[ \t]*\r?\n")  # the quadratic original, kept here as the reference


class _Trickle:
    """A stream that returns at most ``step`` bytes per read, so the restorer's read boundaries fall anywhere."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._step, self._at = data, step, 0

    def read(self, n: int | None = -1) -> bytes:
        take = self._step if n is None or n < 0 else min(n, self._step)
        out = self._data[self._at : self._at + take]
        self._at += len(out)
        return out


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.sampled_from([b" ", b"\t", b"\r", b"\n", b"a", b"\r\n", b" \n"]), max_size=200).map(
        b"".join
    ),
    step=st.integers(1, 9),
    read_size=st.integers(1, 50),
)
def test_the_restorer_matches_the_former_regular_expression(data: bytes, step: int, read_size: int) -> None:
    restorer = _CrlfRestorer(cast(BinaryIO, _Trickle(data, step)))
    out = b""
    while piece := restorer.read(read_size):
        out += piece
    assert out == _FORMER.sub(b"\r\n", data)


def test_the_restorer_passes_a_blank_run_longer_than_it_holds_through() -> None:
    """Only line-end padding is stripped: a run of blanks over 4 KiB keeps all but its last 4 KiB, however the
    reads fall."""
    data = b"x" + b" " * 10_000 + b"\ny"
    whole = _CrlfRestorer(io.BytesIO(data)).read()
    trickled = _CrlfRestorer(cast(BinaryIO, _Trickle(data, 777))).read()
    assert whole == trickled == b"x" + b" " * (10_000 - 4096) + b"\r\ny"


def test_reading_the_restorer_whole_or_in_pieces_is_the_same() -> None:
    data = (b"line  \nnext\t\r\n" * 20_000) + b"end  "
    whole = _CrlfRestorer(io.BytesIO(data)).read()
    restorer = _CrlfRestorer(io.BytesIO(data))
    pieces = b"".join(iter(lambda: restorer.read(1000), b""))
    assert whole == pieces == _FORMER.sub(b"\r\n", data)


def test_a_capture_without_headers_is_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        read_entity(io.BytesIO(b"X: 1\r\n\r\nnot xml"))


# ----------------------------------------------------------------------------------------------------------
# xdr-edge inspect: exit statuses as the README says, one JSON document with --json


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_inspect_reads_a_chunked_capture_as_valid(tmp_path: Path, packed: tuple[str, bytes]) -> None:
    content_type, body = packed
    path = tmp_path / "chunked.txt"
    path.write_bytes(_capture(content_type, _chunked(body, 512), "Transfer-Encoding: chunked"))
    result = _run("inspect", "--json", str(path))
    assert result.exit_code == EXIT_OK, result.output
    report = json.loads(result.stdout)
    assert (report["kind"], report["errors"]) == ("request", 0)


def test_inspect_of_a_malformed_content_type_exits_1_with_one_json_document(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"Content-Type: x\r\n\r\n<a/>")
    result = _run("inspect", "--json", str(path))
    assert result.exit_code == EXIT_FAILURE
    report = json.loads(result.stdout)
    assert report["kind"] == "unknown" and report["errors"] == 1
    assert report["findings"][0]["location"] == "Content-Type"
    text = _run("inspect", str(path))
    assert text.exit_code == EXIT_FAILURE and "malformed Content-Type" in text.stdout


def test_inspect_of_a_content_length_mismatch_exits_1(tmp_path: Path, packed: tuple[str, bytes]) -> None:
    content_type, body = packed
    path = tmp_path / "short.txt"
    path.write_bytes(_capture(content_type, body, f"Content-Length: {len(body) + 10}"))
    result = _run("inspect", str(path))
    assert result.exit_code == EXIT_FAILURE
    assert "Content-Length says" in result.stdout


@pytest.mark.parametrize(("make", "code"), [("missing", "file-not-found"), ("directory", "file-unreadable")])
def test_inspect_json_of_a_file_it_cannot_read_is_one_json_document(
    tmp_path: Path, make: str, code: str
) -> None:
    path = tmp_path / "x.mime"
    if make == "directory":
        path.mkdir()
    result = _run("inspect", "--json", str(path))
    assert result.exit_code == EXIT_BAD_INPUT
    report = json.loads(result.stdout)
    assert report["kind"] == "none" and report["error"]["code"] == code and report["findings"] == []
    assert str(path) in result.stderr


def test_inspect_json_of_every_shape_parses(tmp_path: Path, packed: tuple[str, bytes]) -> None:
    """Whatever the file holds, stdout under --json is exactly one JSON document."""
    content_type, body = packed
    shapes = [
        b"",
        b"\x00\x01\x02",
        b"Content-Type: multipart/related; boundary=\r\n\r\n--",
        _capture(content_type, body, f"Content-Length: {len(body)}"),
        _capture("application/soap+xml", b"1" * 5000, "Transfer-Encoding: chunked"),
    ]
    for i, data in enumerate(shapes):
        path = tmp_path / f"shape-{i}"
        path.write_bytes(data)
        result = _run("inspect", "--json", str(path))
        assert isinstance(json.loads(result.stdout), dict), (i, result.output)
        assert result.exit_code in (EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT)


def test_inspect_json_of_an_internal_error_is_still_one_json_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> Inspection:
        raise RuntimeError("a bug")

    monkeypatch.setattr("xdr_edge.cli.wirecmds.inspect_stream", broken)
    path = tmp_path / "x.xml"
    path.write_bytes(b"<a/>")
    result = CliRunner().invoke(main, ["inspect", "--json", str(path)])
    assert result.exit_code == 4
    report = json.loads(result.stdout)
    assert report["kind"] == "none" and report["error"]["code"] == "internal-error"
    assert "this is a bug in xdr-edge" in result.stderr
