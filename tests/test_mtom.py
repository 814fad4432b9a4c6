"""Tests for xdr_edge.protocol.mtom: the writer and the reader against each other, awkward bytes and chunkings, every
limit and error, and the real NIST/ETT captures. (How the sender's HTTP session sends a body: tests/test_tls.py.)"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import BinaryIO, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reference import sample_path
from xdr_edge.protocol import ns
from xdr_edge.protocol.errors import LimitExceeded, LocalProtocolError, RemoteProtocolError
from xdr_edge.protocol.model import Document
from xdr_edge.protocol.mtom import (
    MtomBody,
    MtomLimits,
    MtomPackage,
    MtomPart,
    cid_href,
    content_id_of,
    new_content_id,
    read_mtom,
    root_part_prefix,
)

ROOT = b'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="' + ns.SOAP.encode() + b'"/>'
BOUNDARY = "MIMEBoundary_test0123456789"
# Bytes chosen to trip a careless MIME reader: CRLFs, "--", a prefix of the delimiter, a lone CR at the end.
AWKWARD = (
    b"\r\n--\r\n--MIMEBoundary_test\r\n\r\n--MIMEBoundary_tes" + bytes(range(256)) + b"\r\n--MIMEBoundary\r"
)


class ShortReader(io.RawIOBase):
    """A binary stream that never returns more than ``step`` bytes per read (like a socket)."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def stream(data: bytes, step: int = 64 * 1024) -> BinaryIO:
    return cast(BinaryIO, ShortReader(data, step))


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def read(body: MtomBody | bytes, content_type: str | None = None, **kwargs: object) -> MtomPackage:
    if isinstance(body, MtomBody):
        content_type, data = body.content_type, b"".join(body)
    else:
        data = body
    assert content_type is not None
    limits = cast(MtomLimits, kwargs.pop("limits", MtomLimits()))
    step = cast(int, kwargs.pop("step", 64 * 1024))
    return read_mtom(content_type, stream(data, step), limits=limits, **kwargs)  # type: ignore[arg-type]


def raw_package(*parts: tuple[list[str], bytes], boundary: str = BOUNDARY, tail: bytes = b"--\r\n") -> bytes:
    """A hand-written multipart body (for inputs our writer refuses to make)."""
    out = b""
    for headers, payload in parts:
        out += b"--" + boundary.encode() + b"\r\n"
        out += b"".join(h.encode() + b"\r\n" for h in headers) + b"\r\n" + payload + b"\r\n"
    return out + b"--" + boundary.encode() + tail


ROOT_HEADERS = [
    'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"',
    "Content-Transfer-Encoding: binary",
    "Content-ID: <root@x>",
]
HAND_CT = f'multipart/related; boundary="{BOUNDARY}"; type="application/xop+xml"; start="<root@x>"'


def doc_headers(cid: str = "d1@x", ctype: str = "text/plain") -> list[str]:
    return [f"Content-Type: {ctype}", "Content-Transfer-Encoding: binary", f"Content-ID: <{cid}>"]


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    d = tmp_path / "spool"
    d.mkdir()
    return d


# ---------------------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------------------


def test_content_type_names_type_start_start_info_and_action() -> None:
    """The outer Content-Type of an ITI-41 MTOM request (ITI TF-2x V.3.3, XOP 1.0 / MTOM 1.0, RFC 2387)."""
    body = MtomBody(ROOT, [], boundary="b1", root_content_id="root@x")
    assert body.content_type == (
        'multipart/related; boundary="b1"; type="application/xop+xml"; start="<root@x>"; '
        'start-info="application/soap+xml"; action="urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"'
    )


def test_part_headers_and_framing_are_exact() -> None:
    part = MtomPart("d1@x", "text/xml", Document.from_bytes(b"DOC"))
    body = MtomBody(ROOT, [part], boundary="b1", root_content_id="root@x")
    assert b"".join(body) == (
        b"--b1\r\n"
        b'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n'
        b"Content-Transfer-Encoding: binary\r\n"
        b"Content-ID: <root@x>\r\n"
        b"\r\n" + ROOT + b"\r\n--b1\r\n"
        b"Content-Type: text/xml\r\n"
        b"Content-Transfer-Encoding: binary\r\n"
        b"Content-ID: <d1@x>\r\n"
        b"\r\n"
        b"DOC"
        b"\r\n--b1--\r\n"
    )


def test_length_is_exact_for_every_document_source(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(AWKWARD * 50)
    fileobj = io.BytesIO(b"xx" + AWKWARD)
    fileobj.seek(2)
    parts = [
        MtomPart("p@x", "application/octet-stream", Document.from_path(path)),
        MtomPart("f@x", "application/pdf", Document.from_file(fileobj)),
        MtomPart("b@x", "text/plain", Document.from_bytes(b"")),
    ]
    body = MtomBody(ROOT, parts)
    assert len(body) == len(b"".join(body))


def test_reiteration_yields_identical_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(AWKWARD * 1000)
    body = MtomBody(ROOT, [MtomPart("p@x", "text/plain", Document.from_path(path))])
    first = b"".join(body)
    assert b"".join(body) == first
    assert len(first) == len(body)


def test_a_small_message_is_handed_out_in_one_piece(tmp_path: Path) -> None:
    # Every piece handed out is a TLS record and a system call: the heads, the root and the closing boundary
    # travel with the document, not alone.
    path = tmp_path / "ccd.xml"
    path.write_bytes(AWKWARD * (100 * 1024 // len(AWKWARD) + 1))
    body = MtomBody(ROOT, [MtomPart("p@x", "text/xml", Document.from_path(path))])
    pieces = list(body)
    assert len(pieces) == 1 and len(pieces[0]) == len(body)
    out = io.BytesIO()
    body.write_to(out)
    assert out.getvalue() == pieces[0]


def test_pieces_stay_bounded_whatever_the_parts(tmp_path: Path) -> None:
    # Many small parts are joined only up to a bound, and large documents stream in chunks: what the body
    # holds at once does not grow with the message.
    small = [MtomPart(f"s{n}@x", "text/plain", Document.from_bytes(b"s" * 5000)) for n in range(600)]
    big_path = tmp_path / "big.bin"
    big_path.write_bytes(b"b" * (3 * 1024 * 1024 + 7))
    big = MtomPart("big@x", "application/octet-stream", Document.from_path(big_path))
    body = MtomBody(ROOT, [*small[:300], big, *small[300:]])
    pieces = list(body)
    assert b"".join(pieces) == body_bytes(body)
    assert sum(len(p) for p in pieces) == len(body)
    assert max(len(p) for p in pieces) <= 1024 * 1024 + 256 * 1024


def body_bytes(body: MtomBody) -> bytes:
    out = io.BytesIO()
    body.write_to(out)
    return out.getvalue()


def test_write_to_streams_the_same_bytes(tmp_path: Path) -> None:
    body = MtomBody(ROOT, [MtomPart("p@x", "text/plain", Document.from_bytes(AWKWARD))])
    out = io.BytesIO()
    assert body.write_to(out) == len(body)
    assert out.getvalue() == b"".join(body)


def test_random_boundary_is_128_bit_and_absent_from_root() -> None:
    a, b = MtomBody(ROOT, []), MtomBody(ROOT, [])
    assert re.fullmatch(r"MIMEBoundary_[0-9a-f]{32}", a.boundary)
    assert a.boundary != b.boundary
    assert a.boundary.encode() not in ROOT


def test_given_boundary_occurring_in_root_is_refused() -> None:
    with pytest.raises(LocalProtocolError) as err:
        MtomBody(b"<a>--zz</a>", [], boundary="zz")
    assert err.value.code == "bad-boundary"


@pytest.mark.parametrize("boundary", ["", "x" * 71, "ends with space ", "bad\r\nheader", 'q"uote'])
def test_invalid_boundary_is_refused(boundary: str) -> None:
    with pytest.raises(LocalProtocolError, match="boundary"):
        MtomBody(ROOT, [], boundary=boundary)


@pytest.mark.parametrize("cid", ["", "<a@b>", "a b@c", 'a"b', "é@x", "a\r\n@b"])
def test_invalid_content_id_is_refused(cid: str) -> None:
    with pytest.raises(LocalProtocolError) as err:
        MtomPart(cid, "text/plain", Document.from_bytes(b""))
    assert err.value.code == "bad-content-id"


def test_duplicate_content_ids_are_refused() -> None:
    doc = Document.from_bytes(b"x")
    with pytest.raises(LocalProtocolError) as err:
        MtomBody(ROOT, [MtomPart("a@x", "text/plain", doc), MtomPart("a@x", "text/plain", doc)])
    assert err.value.code == "duplicate-content-id"
    with pytest.raises(LocalProtocolError) as err:
        MtomBody(ROOT, [MtomPart("r@x", "text/plain", doc)], root_content_id="r@x")
    assert err.value.code == "duplicate-content-id"


def test_header_injection_through_content_type_or_action_is_refused() -> None:
    with pytest.raises(LocalProtocolError) as err:
        MtomPart("a@x", "text/plain\r\nX-Evil: 1", Document.from_bytes(b""))
    assert err.value.code == "bad-header"
    with pytest.raises(LocalProtocolError) as err:
        MtomBody(ROOT, [], action='urn:a"; start="<evil>')
    assert err.value.code == "bad-header"


def test_new_content_id_is_unique_and_bare() -> None:
    ids = {new_content_id() for _ in range(100)}
    assert len(ids) == 100
    for cid in ids:
        assert re.fullmatch(r"[0-9a-f-]{36}@xdr-edge", cid)
    assert new_content_id("example.org").endswith("@example.org")


def test_cid_href_percent_encodes_and_resolve_inverts(spool: Path) -> None:
    cid = "a%b/c?d@x"
    assert cid_href(cid) == "cid:a%25b%2Fc%3Fd@x"
    assert cid_href("1.urn:uuid:3D4B@apache.org") == "cid:1.urn:uuid:3D4B@apache.org"
    body = MtomBody(ROOT, [MtomPart(cid, "text/plain", Document.from_bytes(b"x"))])
    with read(body, spool_dir=spool) as pkg:
        assert pkg.resolve(cid_href(cid)).content_id == cid
        assert pkg.resolve("CID:" + cid_href(cid)[4:]).content_id == cid


@pytest.mark.parametrize("cid", ["a%b/c?d@x", "1.urn:uuid:3D4B@apache.org", "é@x", " @x"])
def test_content_id_of_inverts_cid_href(cid: str) -> None:
    assert content_id_of(cid_href(cid)) == cid
    assert content_id_of(" CID:" + cid_href(cid)[4:] + " ") == cid


@pytest.mark.parametrize("href", ["", "cid:", "http://a@x", "a@x", "cidx:a@x"])
def test_content_id_of_refuses_what_is_not_a_cid_url(href: str) -> None:
    assert content_id_of(href) is None


# ---------------------------------------------------------------------------------------------------------
# document-changed detection
# ---------------------------------------------------------------------------------------------------------


def collect_until_error(body: MtomBody) -> tuple[bytes, LocalProtocolError]:
    sent = bytearray()
    with pytest.raises(LocalProtocolError) as err:
        for chunk in body:
            sent += chunk
    return bytes(sent), err.value


def test_file_grown_after_construction_aborts_before_exceeding_length(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"a" * 1000)
    body = MtomBody(ROOT, [MtomPart("p@x", "text/plain", Document.from_path(path))])
    path.write_bytes(b"a" * 2000)
    sent, err = collect_until_error(body)
    assert err.code == "document-changed"
    assert len(sent) < len(body)
    assert not sent.endswith(b"--" + body.boundary.encode() + b"--\r\n")


def test_file_shrunk_after_construction_aborts(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"a" * 1000)
    body = MtomBody(ROOT, [MtomPart("p@x", "text/plain", Document.from_path(path))])
    path.write_bytes(b"a" * 10)
    sent, err = collect_until_error(body)
    assert err.code == "document-changed"
    assert (b"--" + body.boundary.encode() + b"--") not in sent


def test_same_size_different_bytes_aborts_before_closing_boundary(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"original")
    part = MtomPart("p@x", "text/plain", Document.from_path(path), expected_sha1=sha1(b"original").upper())
    body = MtomBody(ROOT, [part])
    assert b"".join(body).count(b"original") == 1  # unchanged: sends fine
    path.write_bytes(b"ORIGINAL")
    sent, err = collect_until_error(body)
    assert err.code == "document-changed"
    assert "SHA-1" in err.message
    assert (b"--" + body.boundary.encode() + b"--") not in sent


def test_path_size_differing_from_metadata_fails_at_construction(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"12345")
    with pytest.raises(LocalProtocolError) as err:
        MtomBody(ROOT, [MtomPart("p@x", "text/plain", Document.from_path(path), expected_size=4)])
    assert err.value.code == "document-changed"


def test_in_memory_document_longer_than_expected_size_never_overruns() -> None:
    body = MtomBody(ROOT, [MtomPart("p@x", "text/plain", Document.from_bytes(b"x" * 100), expected_size=10)])
    sent, err = collect_until_error(body)
    assert err.code == "document-changed"
    assert len(sent) <= len(body)


def test_missing_document_file_is_a_local_error(tmp_path: Path) -> None:
    with pytest.raises(LocalProtocolError) as err:
        MtomBody(ROOT, [MtomPart("p@x", "text/plain", Document.from_path(tmp_path / "gone"))])
    assert err.value.code == "document-unreadable"


# ---------------------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 7, 64 * 1024])
def test_round_trip_with_awkward_bytes_and_short_reads(step: int, tmp_path: Path, spool: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(AWKWARD * (3 if step == 1 else 3000))
    docs = {
        "a@x": ("text/xml", Document.from_bytes(AWKWARD)),
        "empty@x": ("application/octet-stream", Document.from_bytes(b"")),
        "big@x": ("application/pdf", Document.from_path(big)),
        "crlf@x": ("text/plain", Document.from_bytes(b"\r\n")),
    }
    body = MtomBody(ROOT, [MtomPart(cid, ctype, doc) for cid, (ctype, doc) in docs.items()])
    with read(body, spool_dir=spool, step=step) as pkg:
        assert pkg.root == ROOT
        assert pkg.root_content_id == body.root_content_id
        assert pkg.root_content_type == 'application/xop+xml; charset=UTF-8; type="application/soap+xml"'
        assert list(pkg.parts) == list(docs)
        for cid, (ctype, doc) in docs.items():
            part = pkg.parts[cid]
            expected = doc.read_all()
            assert part.content_type == ctype
            assert part.path.read_bytes() == expected
            assert (part.sha1, part.size) == (sha1(expected), len(expected))
            assert part.document().digest() == (sha1(expected), len(expected))
            assert ("Content-Transfer-Encoding", "binary") in part.headers
        paths = [p.path for p in pkg.parts.values()]
        assert all(p.parent == spool for p in paths)
    assert not any(p.exists() for p in paths)


def test_content_length_reads_exactly_that_many_bytes(spool: Path) -> None:
    body = MtomBody(ROOT, [MtomPart("a@x", "text/plain", Document.from_bytes(b"doc"))])
    data = b"".join(body)
    src = io.BytesIO(data + b"NEXT REQUEST")
    with read_mtom(body.content_type, src, limits=MtomLimits(), content_length=len(data), spool_dir=spool):
        pass
    assert src.read() == b"NEXT REQUEST"


def test_root_found_by_start_when_not_first(spool: Path) -> None:
    data = raw_package((doc_headers("d1@x"), b"DOC"), (ROOT_HEADERS, ROOT))
    with read(data, HAND_CT, spool_dir=spool) as pkg:
        assert pkg.root == ROOT
        assert list(pkg.parts) == ["d1@x"]
        assert pkg.parts["d1@x"].path.read_bytes() == b"DOC"


def test_without_start_the_first_part_is_root(spool: Path) -> None:
    ct = f'multipart/related; boundary={BOUNDARY}; type="application/xop+xml"'
    data = raw_package((ROOT_HEADERS, ROOT), (doc_headers(), b"DOC"))
    with read(data, ct, spool_dir=spool) as pkg:
        assert pkg.root == ROOT
        assert pkg.root_content_id == "root@x"


def test_header_whitespace_case_and_missing_part_content_type(spool: Path) -> None:
    headers = ["content-id:   <d1@x>  ", "CONTENT-TRANSFER-ENCODING: Binary "]
    data = raw_package((ROOT_HEADERS, ROOT), (headers, b"DOC"))
    with read(data, HAND_CT, spool_dir=spool) as pkg:
        assert pkg.parts["d1@x"].content_type == "text/plain; charset=us-ascii"  # RFC 2045 default


def test_detach_moves_the_spool_file_and_close_leaves_it(tmp_path: Path, spool: Path) -> None:
    body = MtomBody(ROOT, [MtomPart("a@x", "text/plain", Document.from_bytes(b"keep me"))])
    dest = tmp_path / "stored.bin"
    with read(body, spool_dir=spool) as pkg:
        part = pkg.parts["a@x"]
        old = part.path
        assert part.detach(dest) == dest
        assert not old.exists()
        assert part.path == dest and part.detached
        assert part.document().read_all() == b"keep me"
    assert dest.read_bytes() == b"keep me"
    assert list(spool.iterdir()) == []


def test_detach_refuses_to_overwrite(tmp_path: Path, spool: Path) -> None:
    body = MtomBody(ROOT, [MtomPart("a@x", "text/plain", Document.from_bytes(b"x"))])
    dest = tmp_path / "exists"
    dest.write_bytes(b"old")
    with read(body, spool_dir=spool) as pkg, pytest.raises(FileExistsError):
        pkg.parts["a@x"].detach(dest)
    assert dest.read_bytes() == b"old"


def test_resolve_errors(spool: Path) -> None:
    body = MtomBody(ROOT, [MtomPart("a@x", "text/plain", Document.from_bytes(b"x"))])
    with read(body, spool_dir=spool) as pkg:
        with pytest.raises(RemoteProtocolError) as err:
            pkg.resolve("http://a@x")
        assert err.value.fault_code == "Sender"
        assert err.value.code == "mtom-bad-href"
        with pytest.raises(RemoteProtocolError) as err:
            pkg.resolve("cid:other@x")
        assert err.value.xds_error_code == "XDSMissingDocument"
        assert not err.value.is_fault


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payloads=st.lists(st.binary(max_size=3000), min_size=0, max_size=4),
    root=st.binary(max_size=500),
    step=st.integers(min_value=1, max_value=5000),
)
def test_property_reader_inverts_writer(payloads: list[bytes], root: bytes, step: int, spool: Path) -> None:
    parts = [
        MtomPart(f"p{i}@x", "application/octet-stream", Document.from_bytes(p))
        for i, p in enumerate(payloads)
    ]
    body = MtomBody(root, parts)
    with read(body, spool_dir=spool, step=step) as pkg:
        assert pkg.root == root
        got = [pkg.parts[f"p{i}@x"] for i in range(len(payloads))]
        assert [p.path.read_bytes() for p in got] == payloads
        assert [p.sha1 for p in got] == [sha1(p) for p in payloads]
        assert [p.size for p in got] == [len(p) for p in payloads]
    assert list(spool.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------
# Reader errors and limits
# ---------------------------------------------------------------------------------------------------------


def assert_sender_error(exc: RemoteProtocolError, code: str) -> None:
    assert exc.code == code, exc
    assert exc.fault_code == "Sender"


@pytest.mark.parametrize(
    ("content_type", "fragment"),
    [
        ('application/soap+xml; charset=UTF-8; action="urn:a"', "multipart/related"),
        (f"multipart/related; boundary={BOUNDARY}", "type parameter"),
        (f'multipart/related; boundary={BOUNDARY}; type="text/xml"', "type parameter"),
        ('multipart/related; type="application/xop+xml"', "boundary"),
        (f'multipart/related; boundary={BOUNDARY}; type="application/xop+xml"; start="root@x"', "< >"),
        (
            f'multipart/related; boundary={BOUNDARY}; type="application/xop+xml"; start-info="text/xml"',
            "start-info",
        ),
        ("garbage", "type/subtype"),
        ('multipart/related; boundary="unterminated', "quoted"),
    ],
)
def test_bad_content_types(content_type: str, fragment: str, spool: Path) -> None:
    data = raw_package((ROOT_HEADERS, ROOT))
    with pytest.raises(RemoteProtocolError) as err:
        read(data, content_type, spool_dir=spool)
    assert fragment in err.value.message
    assert err.value.fault_code == "Sender"


def test_missing_content_id_names_the_part(spool: Path) -> None:
    data = raw_package((ROOT_HEADERS, ROOT), (doc_headers()[:2], b"DOC"))
    with pytest.raises(RemoteProtocolError) as err:
        read(data, HAND_CT, spool_dir=spool)
    assert_sender_error(err.value, "mtom-content-id")
    assert "MIME part 2" in err.value.message
    assert list(spool.iterdir()) == []


def test_content_id_without_angle_brackets(spool: Path) -> None:
    data = raw_package((ROOT_HEADERS, ROOT), (["Content-Type: text/plain", "Content-ID: d1@x"], b"DOC"))
    with pytest.raises(RemoteProtocolError) as err:
        read(data, HAND_CT, spool_dir=spool)
    assert_sender_error(err.value, "mtom-content-id")
    assert "< >" in err.value.message


def test_duplicate_content_ids(spool: Path) -> None:
    data = raw_package((ROOT_HEADERS, ROOT), (doc_headers("d@x"), b"1"), (doc_headers("d@x"), b"2"))
    with pytest.raises(RemoteProtocolError) as err:
        read(data, HAND_CT, spool_dir=spool)
    assert_sender_error(err.value, "mtom-duplicate-content-id")
    assert list(spool.iterdir()) == []


def test_start_naming_no_part(spool: Path) -> None:
    ct = HAND_CT.replace("<root@x>", "<elsewhere@x>")
    data = raw_package((ROOT_HEADERS, ROOT), (doc_headers(), b"DOC"))
    with pytest.raises(RemoteProtocolError) as err:
        read(data, ct, spool_dir=spool)
    assert_sender_error(err.value, "mtom-start")
    assert "elsewhere@x" in err.value.message
    assert list(spool.iterdir()) == []


def test_root_part_must_be_xop(spool: Path) -> None:
    headers = ["Content-Type: text/xml", "Content-ID: <root@x>"]
    with pytest.raises(RemoteProtocolError) as err:
        read(raw_package((headers, ROOT)), HAND_CT, spool_dir=spool)
    assert_sender_error(err.value, "mtom-root-type")


def test_encoded_parts_are_refused(spool: Path) -> None:
    headers = ["Content-Type: text/plain", "Content-Transfer-Encoding: base64", "Content-ID: <d1@x>"]
    with pytest.raises(RemoteProtocolError) as err:
        read(raw_package((ROOT_HEADERS, ROOT), (headers, b"RE9D")), HAND_CT, spool_dir=spool)
    assert_sender_error(err.value, "mtom-transfer-encoding")


def test_bare_lf_line_endings_are_malformed(spool: Path) -> None:
    data = raw_package((ROOT_HEADERS, ROOT), (doc_headers(), b"DOC")).replace(b"\r\n", b"\n")
    with pytest.raises(RemoteProtocolError) as err:
        read(data, HAND_CT, spool_dir=spool)
    assert_sender_error(err.value, "mtom-malformed")
    # our words, not the multipart package's ("Invalid line break after first boundary")
    assert (
        err.value.message == "malformed MIME multipart body: the first boundary line does not end with CRLF"
    )
    assert err.value.location == "MIME part 1"


def test_garbage_after_boundary_is_malformed(spool: Path) -> None:
    data = raw_package((ROOT_HEADERS, ROOT), (doc_headers(), b"DOC"))
    data = data.replace(b"DOC\r\n--" + BOUNDARY.encode(), b"DOC\r\n--" + BOUNDARY.encode() + b"XY", 1)
    with pytest.raises(RemoteProtocolError) as err:
        read(data, HAND_CT, spool_dir=spool)
    assert_sender_error(err.value, "mtom-malformed")


def test_truncated_bodies(spool: Path) -> None:
    body = MtomBody(ROOT, [MtomPart("a@x", "text/plain", Document.from_bytes(AWKWARD))])
    data = b"".join(body)
    for cut in (0, 10, len(data) // 2, len(data) - len(body.boundary) - 8):
        with pytest.raises(RemoteProtocolError) as err:
            read(data[:cut], body.content_type, spool_dir=spool)
        assert_sender_error(err.value, "mtom-truncated")
        assert "truncated" in err.value.message
    with pytest.raises(RemoteProtocolError) as err:
        read(data, body.content_type, spool_dir=spool, content_length=len(data) + 5)
    assert_sender_error(err.value, "mtom-truncated")
    assert list(spool.iterdir()) == []


def test_limit_max_parts(spool: Path) -> None:
    parts = [MtomPart(f"p{i}@x", "text/plain", Document.from_bytes(b"x")) for i in range(3)]
    body = MtomBody(ROOT, parts)
    with read(body, limits=MtomLimits(max_parts=4), spool_dir=spool) as pkg:
        assert len(pkg.parts) == 3
    with pytest.raises(LimitExceeded) as err:
        read(body, limits=MtomLimits(max_parts=3), spool_dir=spool)
    assert "max_parts=3" in err.value.message
    assert err.value.fault_code == "Sender"
    assert list(spool.iterdir()) == []


def test_limit_max_header_bytes_for_one_long_line(spool: Path) -> None:
    headers = [*doc_headers(), "X-Padding: " + "a" * 600]
    data = raw_package((ROOT_HEADERS, ROOT), (headers, b"DOC"))
    with pytest.raises(LimitExceeded) as err:
        read(data, HAND_CT, limits=MtomLimits(max_header_bytes=512), spool_dir=spool)
    assert "max_header_bytes=512" in err.value.message


def test_limit_max_header_bytes_for_the_header_block(spool: Path) -> None:
    headers = [*doc_headers(), *[f"X-Pad-{i}: " + "a" * 100 for i in range(8)]]
    data = raw_package((ROOT_HEADERS, ROOT), (headers, b"DOC"))
    with read(data, HAND_CT, limits=MtomLimits(max_header_bytes=2000), spool_dir=spool):
        pass
    with pytest.raises(LimitExceeded) as err:
        read(data, HAND_CT, limits=MtomLimits(max_header_bytes=512), spool_dir=spool)
    assert "max_header_bytes=512" in err.value.message
    assert "MIME part 2" in str(err.value)


def test_limit_max_header_count(spool: Path) -> None:
    headers = [*doc_headers(), *[f"X-H{i}: 1" for i in range(5)]]
    data = raw_package((ROOT_HEADERS, ROOT), (headers, b"DOC"))
    with pytest.raises(LimitExceeded) as err:
        read(data, HAND_CT, limits=MtomLimits(max_header_count=4), spool_dir=spool)
    assert "max_header_count=4" in err.value.message


def test_limit_max_total_bytes(spool: Path) -> None:
    body = MtomBody(ROOT, [MtomPart("a@x", "text/plain", Document.from_bytes(b"x" * 5000))])
    limits = MtomLimits(max_total_bytes=len(body) - 1)
    with pytest.raises(LimitExceeded) as err:
        read(body, limits=limits, spool_dir=spool)
    assert f"max_total_bytes={len(body) - 1}" in err.value.message
    with pytest.raises(LimitExceeded) as err:
        read(body, limits=limits, spool_dir=spool, content_length=len(body))
    assert "Content-Length" in err.value.message
    with read(body, limits=MtomLimits(max_total_bytes=len(body)), spool_dir=spool) as pkg:
        assert pkg.parts["a@x"].size == 5000
    assert list(spool.iterdir()) == []


def test_limit_max_root_bytes(spool: Path) -> None:
    body = MtomBody(ROOT, [])
    with read(body, limits=MtomLimits(max_root_bytes=len(ROOT)), spool_dir=spool) as pkg:
        assert pkg.root == ROOT
    with pytest.raises(LimitExceeded) as err:
        read(body, limits=MtomLimits(max_root_bytes=len(ROOT) - 1), spool_dir=spool)
    assert "max_root_bytes" in err.value.message


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_parts"):
        MtomLimits(max_parts=0)


# ---------------------------------------------------------------------------------------------------------
# Content-Type variants: media types read as media types (RFC 9110 §8.3.1, RFC 2045 §5.1, W3C SOAP 1.2 MTOM §3.2)
# ---------------------------------------------------------------------------------------------------------

PNR = ns.ACTION_PNR
ESCAPED_START_INFO = f'"application/soap+xml;action=\\"{PNR}\\""'


@pytest.mark.parametrize(
    "content_type",
    [
        # Metro (JAX-WS RI 2.3): no spaces, start first, start-info with the action as an escaped quoted string
        f'multipart/related;start="<root@x>";type="application/xop+xml";boundary="{BOUNDARY}";'
        f"start-info={ESCAPED_START_INFO}",
        # Axis2 (the NIST capture): boundary unquoted first, a package-level action, a trailing space
        f'multipart/related; boundary={BOUNDARY}; type="application/xop+xml"; start="<root@x>"; '
        f'start-info="application/soap+xml"; action="{PNR}" ',
        # parameters in yet another order, start-info last but one
        f'multipart/related; start-info="application/soap+xml"; start="<root@x>"; boundary="{BOUNDARY}"; '
        'type="application/xop+xml"',
        # unquoted values, even the ones that are not tokens (type=application/xop+xml)
        f"multipart/related; boundary={BOUNDARY}; type=application/xop+xml; start=<root@x>; "
        "start-info=application/soap+xml",
        # case: type, subtype, parameter names and the media types inside parameters
        f'Multipart/Related; BOUNDARY="{BOUNDARY}"; Type="Application/XOP+XML"; START="<root@x>"; '
        f'Start-Info="Application/SOAP+XML; Action=\\"{PNR}\\""',
        # whitespace around ; and =, tabs, an empty parameter and a trailing ;
        f'multipart/related ;\tboundary = "{BOUNDARY}" ;; type= "application/xop+xml" ; start ="<root@x>";',
        # a quoted-pair resolving to an ordinary character inside the boundary and inside start-info
        'multipart/related; boundary="MIMEBoundary\\_test0123456789"; type="application/xop+xml"; '
        'start-info="application/soap\\+xml"; start="<root@x>"',
        # start-info with its action parameter unquoted inside the quoted string
        f'multipart/related; boundary={BOUNDARY}; type="application/xop+xml"; '
        f'start-info="application/soap+xml; action={PNR}"; start="<root@x>"',
    ],
    ids=["metro", "axis2", "order", "unquoted", "case", "whitespace", "escapes", "inner-unquoted"],
)
def test_content_type_variants_are_read_as_media_types(content_type: str, spool: Path) -> None:
    data = raw_package((ROOT_HEADERS, ROOT), (doc_headers(), b"DOC"))
    with read(data, content_type, spool_dir=spool) as pkg:
        assert pkg.root == ROOT
        assert pkg.root_content_id == "root@x"
        assert pkg.parts["d1@x"].path.read_bytes() == b"DOC"
        assert pkg.media_type is not None and pkg.media_type.essence == "multipart/related"
        assert pkg.media_type.param("boundary") == BOUNDARY
        assert all(action == PNR for _, action in pkg.declared_actions)


@pytest.mark.parametrize(
    "root_type",
    [
        # Metro: lower-case charset, the SOAP media type with its action, escaped quotes, no spaces
        f'application/xop+xml;charset=utf-8;type="application/soap+xml;action=\\"{PNR}\\""',
        'application/xop+xml; type="application/soap+xml"; charset=UTF-8',  # parameters in another order
        "application/xop+xml; type=application/soap+xml",  # unquoted
        'APPLICATION/XOP+XML; CHARSET=UTF-8; Type="Application/Soap+Xml"',  # case
        "application/xop+xml; charset=UTF-8",  # no type: the envelope's namespace says which SOAP it is
    ],
    ids=["metro", "order", "unquoted", "case", "no-type"],
)
def test_root_part_content_type_variants(root_type: str, spool: Path) -> None:
    headers = [f"Content-Type: {root_type}", "Content-Transfer-Encoding: binary", "Content-ID: <root@x>"]
    with read(raw_package((headers, ROOT)), HAND_CT, spool_dir=spool) as pkg:
        assert pkg.root == ROOT
        assert pkg.root_media_type is not None and pkg.root_media_type.matches("application/xop+xml")


def test_declared_actions_name_where_each_action_was_stated(spool: Path) -> None:
    metro_root = 'application/xop+xml;charset=utf-8;type="application/soap+xml;action=\\"urn:b\\""'
    headers = [f"Content-Type: {metro_root}", "Content-ID: <root@x>"]
    content_type = f'{HAND_CT}; start-info="application/soap+xml; action=\\"urn:a\\""; action=urn:c'
    with read(raw_package((headers, ROOT)), content_type, spool_dir=spool) as pkg:
        assert pkg.declared_actions == (
            ("Content-Type action parameter", "urn:c"),
            ("Content-Type start-info action parameter", "urn:a"),
            ("root part Content-Type type action parameter", "urn:b"),
        )
    body = MtomBody(ROOT, [], action="urn:ours")  # our writer states the action at package level only
    with read(body, spool_dir=spool) as pkg:
        assert pkg.declared_actions == (("Content-Type action parameter", "urn:ours"),)
    with read(raw_package((ROOT_HEADERS, ROOT)), f'{HAND_CT}; action=""', spool_dir=spool) as pkg:
        assert pkg.declared_actions == ()  # an empty action states nothing


@pytest.mark.parametrize(
    ("content_type", "code", "fragment"),
    [
        (f'{HAND_CT}; start-info="text/xml; action=\\"{PNR}\\""', "mtom-content-type", "start-info"),
        (
            f'{HAND_CT}; start-info="application/soap+xml; action=\\"unterminated"',
            "malformed-media-type",
            "start-info",
        ),
        (f"{HAND_CT}; boundary=other", "malformed-media-type", "more than once"),
        (
            f'multipart/related; boundary={BOUNDARY}; type="application/xop+xml; x=\\"y"',
            "malformed-media-type",
            "type",
        ),
        (
            f'multipart/related; boundary={BOUNDARY}; type="text/xml; charset=utf-8"',
            "mtom-content-type",
            "type parameter",
        ),
    ],
    ids=["soap11-start-info", "broken-start-info", "duplicate-boundary", "broken-type", "swa-type"],
)
def test_content_types_refused_as_media_types(
    content_type: str, code: str, fragment: str, spool: Path
) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        read(raw_package((ROOT_HEADERS, ROOT)), content_type, spool_dir=spool)
    assert_sender_error(err.value, code)
    assert fragment in err.value.message
    assert list(spool.iterdir()) == []


def test_root_part_declaring_soap_11_is_refused(spool: Path) -> None:
    headers = ['Content-Type: application/xop+xml; type="text/xml"', "Content-ID: <root@x>"]
    with pytest.raises(RemoteProtocolError) as err:
        read(raw_package((headers, ROOT)), HAND_CT, spool_dir=spool)
    assert_sender_error(err.value, "mtom-root-type")
    assert "type parameter" in err.value.message


_PARAMS = (
    ("boundary", BOUNDARY),
    ("type", "application/xop+xml"),
    ("start", "<root@x>"),
    ("start-info", f'application/soap+xml; action="{PNR}"'),
    ("action", PNR),
)


def _written(name: str, value: str, *, quote: bool, upper: bool) -> str:
    """One parameter as a sender might write it: name in either case, value quoted (escaping) or not."""
    name = name.upper() if upper else name
    if quote or any(c in value for c in ' ";\\'):
        return name + '="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name}={value}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order=st.permutations(range(len(_PARAMS))),
    quoting=st.lists(st.booleans(), min_size=len(_PARAMS), max_size=len(_PARAMS)),
    upper=st.lists(st.booleans(), min_size=len(_PARAMS), max_size=len(_PARAMS)),
    separator=st.sampled_from([";", "; ", " ; ", ";\t"]),
)
def test_any_order_quoting_and_case_reads_the_same_package(
    order: list[int], quoting: list[bool], upper: list[bool], separator: str, spool: Path
) -> None:
    params = [_written(*_PARAMS[i], quote=quoting[i], upper=upper[i]) for i in order]
    content_type = separator.join(["multipart/related", *params])
    with read(
        raw_package((ROOT_HEADERS, ROOT), (doc_headers(), b"DOC")), content_type, spool_dir=spool
    ) as pkg:
        assert pkg.root == ROOT and list(pkg.parts) == ["d1@x"]
        assert [action for _, action in pkg.declared_actions] == [PNR, PNR]


# ---------------------------------------------------------------------------------------------------------
# What a refused package still tells: the root part's first bytes (for the fault's wsa:RelatesTo)
# ---------------------------------------------------------------------------------------------------------


def test_root_part_prefix_of_a_refused_package() -> None:
    refused = f'{HAND_CT}; start-info="text/xml"'  # refused by read_mtom, but the boundary is usable
    body = raw_package((doc_headers(), b"DOC"), (ROOT_HEADERS, ROOT))
    assert root_part_prefix(refused, body) == ROOT  # found by start, not by position
    assert root_part_prefix(refused, body[: body.index(ROOT) + 20]) == ROOT[:20]  # cut short
    first = f'multipart/related; boundary="{BOUNDARY}"'
    assert root_part_prefix(first, raw_package((ROOT_HEADERS, ROOT), (doc_headers(), b"DOC"))) == ROOT
    unterminated = raw_package((ROOT_HEADERS, ROOT)).replace(b"--" + BOUNDARY.encode() + b"--", b"JUNK")
    assert (root_part_prefix(first, unterminated) or b"").startswith(ROOT)  # no closing delimiter
    garbage = raw_package((ROOT_HEADERS, ROOT), tail=b"GARBAGE")  # broken framing after the root part
    assert root_part_prefix(first, garbage) == ROOT


@pytest.mark.parametrize(
    "content_type",
    ["application/soap+xml", "multipart/related", 'multipart/related; boundary=""', "not a media type"],
)
def test_root_part_prefix_without_a_usable_boundary(content_type: str) -> None:
    assert root_part_prefix(content_type, raw_package((ROOT_HEADERS, ROOT))) is None


# ---------------------------------------------------------------------------------------------------------
# Real captures (../shared/conformance)
# ---------------------------------------------------------------------------------------------------------


def load_capture(name: str) -> tuple[str, bytes]:
    """Split a raw HTTP capture at the first blank line; return its Content-Type header and its body.

    The captures are stored as text: their CRs were lost (the ETT capture's Content-Length is 123393 while its
    LF-only body is 123072 bytes and its CRLF form 123394), and the NIST toolkit log adds a space before each
    line end. MIME over HTTP is CRLF-framed, so we restore CRLF line ends before feeding the body.
    """
    head, _, body = sample_path(name).read_bytes().partition(b"\n\n")
    content_type = next(
        line.split(b":", 1)[1].decode()
        for line in head.split(b"\n")
        if line.lower().startswith(b"content-type:")
    )
    return content_type, body.replace(b" \n", b"\n").replace(b"\n", b"\r\n")


@pytest.mark.shared
def test_nist_capture(spool: Path) -> None:
    content_type, body = load_capture("nist/http-mtom-pnr.txt")
    assert content_type.endswith(" ")  # the trailing space the media type reader must tolerate
    with read(body, content_type, spool_dir=spool, step=7) as pkg:
        assert pkg.root.startswith(b"<?xml")
        assert pkg.root_content_id == "0.urn:uuid:3D4B161591CD1DEC0C1286850962203@apache.org"
        href = re.search(rb'href="(cid:[^"]+)"', pkg.root)
        assert href is not None
        part = pkg.resolve(href.group(1).decode())
        assert part.content_id == "1.urn:uuid:3D4B161591CD1DEC0C1286850962319@apache.org"
        assert part.content_type == "text/plain"
        assert part.size > 0


@pytest.mark.shared
def test_ett_capture_has_an_orphan_part(spool: Path) -> None:
    content_type, body = load_capture("ett/xdr_full_metadata_sample_request.txt")
    with read(body, content_type, spool_dir=spool, content_length=len(body)) as pkg:
        assert pkg.root.lstrip().startswith(b"<s:Envelope")
        assert list(pkg.parts) == ["1.3293f28762856bdafcf446f2a6f4a61d95a95d0ad1177f20@apache.org"]
        assert b"xop:Include" not in pkg.root  # the defect SOURCES.md records: no xdsb:Document for the part
