"""inspect_stream on every reference sample in ../shared/conformance/samples: read without an exception and
classified as SOURCES.md describes (kind, and whether the message is conformant), plus our own messages."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reference import SAMPLES
from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.inspection import Inspection, inspect_stream
from xdr_edge.protocol.model import MetadataLevel
from xdr_edge.protocol.response import RegistryResponse
from xdr_edge.protocol.soap import Fault
from xdr_edge.protocol.wire import build_reply, build_request


@dataclass(frozen=True)
class Expect:
    """What inspect must say about one sample: its kind, whether it has errors, and the codes/rules (or message
    fragments) that must be among its error findings."""

    kind: str
    errors: bool
    must: tuple[str, ...] = ()
    mtom: bool = False
    why: str = ""


# Per SOURCES.md (expected outcome column). ETT files are templates with #...# placeholders: they must be read
# (no crash) and show findings; the address block placeholder is an error finding (our practice-binding rule), reported next to
# the metadata findings.
TABLE: dict[str, Expect] = {
    "directri/request.xml": Expect(
        "metadata",
        True,
        ("ss-bad-intended-recipient",),
        why="legacy intendedRecipient form (address in XCN.1)",
    ),
    "directri/response.xml": Expect(
        "response", True, ("RegistryResponseType",), why="type name as root element"
    ),
    "ett/DeliveryStatusNotification_failure.xml": Expect(
        "unknown", True, ("malformed-xml",), why="not well-formed"
    ),
    "ett/DeliveryStatusNotification_success.xml": Expect(
        "request", True, ("env:Sender",), why="REF template"
    ),
    "ett/DeliveryStatusNotification_success_standalone.xml": Expect(
        "unknown", True, ("messageDisposition",), why="a disposition document, not an XDR message"
    ),
    "ett/Xdr_full_metadata_only.xml": Expect("request", True, ("direct-bad-address", "ss-bad-unique-id")),
    "ett/Xdr_minimal_metadata_only.xml": Expect("request", True, ("direct-bad-address", "ss-bad-unique-id")),
    "ett/negative_bad_soap.xml": Expect(
        "request", True, ("env:Sender",), why="Header not in the SOAP namespace"
    ),
    "ett/negative_bad_soap_body.xml": Expect(
        "unknown", True, ("env:Sender", "2005/03"), why="Body namespace"
    ),
    "ett/negative_missing_association.xml": Expect("request", True, ("de-missing-has-member",)),
    "ett/negative_missing_direct_block.xml": Expect("request", True, ("ss-bad-unique-id",)),
    "ett/negative_missing_metadata_elements1.xml": Expect("request", True, ("de-missing-unique-id",)),
    "ett/negative_missing_metadata_elements2.xml": Expect("request", True, ("ss-missing-source-id",)),
    "ett/negative_missing_metadata_elements3.xml": Expect("request", True, ("de-missing-mime-type",)),
    "ett/negative_missing_metadata_elements4.xml": Expect("request", True, ("id-missing",)),
    "ett/negative_missing_metadata_elements5.xml": Expect("request", True, ("de-missing-creation-time",)),
    "ett/sample_response.txt": Expect(
        "fault", False, why="a well-formed SOAP fault (no Content-Type in capture)"
    ),
    "ett/xdr_full_metadata_report.txt": Expect(
        "unknown", True, ("transactionLog",), why="a toolkit log, REF"
    ),
    "ett/xdr_full_metadata_sample_request.txt": Expect(
        "request", True, ("XDSMissingDocument", "XDSMissingDocumentMetadata"), mtom=True
    ),
    "nist/Bill-msg.txt": Expect("response", False, why="a valid Failure response"),
    "nist/http-mtom-pnr.txt": Expect("request", True, ("sender-unknown", "no-recipient"), mtom=True),
    "nist/pnr-assoc-to-self.xml": Expect("metadata", True, ("association-to-self", "de-missing-has-member")),
    "nist/pnr-bad-uplink.xml": Expect("metadata", True, ("reference-dangling",)),
    "nist/pnr-element-order.xml": Expect(
        "metadata", True, ("element-order",), why="ebRIM child order (Name before Slot)"
    ),
    "nist/pnr-limited.xml": Expect(
        "metadata", True, ("ss-missing-intended-recipient",), why="IHE limited, but Direct minimal needs it"
    ),
    "nist/pnr.xml": Expect("metadata", False),
    "nist/regresp-fail-noerr.xml": Expect("response", True, ("rs-failure-without-error",)),
    "nist/regresp-suc-err.xml": Expect("response", True, ("rs-success-with-error",)),
    "nist/soap-noaction-pnr.xml": Expect("request", True, ("MessageAddressingHeaderRequired", "wsa:Action")),
    "nist/soap-pnr-resp.xml": Expect("response", False),
    "nist/soap-pnr-soap-order.xml": Expect("request", True, ("env:Sender", "before S:Body")),
    "nist/soap-pnr.xml": Expect("request", True, ("MessageAddressingHeaderRequired",)),
    "nist/testdata-xdr/CCDA_Ambulatory_minimal_metadata/single_doc.xml": Expect(
        "metadata", True, ("no-object-list",), why="ebRIM 2.1 syntax"
    ),
    "nist/testdata-xdr/CCDA_Ambulatory_minimal_metadata/testplan.xml": Expect("unknown", True, ("TestPlan",)),
}

# Known gaps in other modules (strict: the test fails once the gap is closed, so the entry gets updated).
KNOWN_GAPS: dict[str, str] = {}


def _samples_dir() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(
            f"reference samples {SAMPLES} are absent (../shared/conformance is not beside the project)"
        )
    return SAMPLES


def _inspect(path: Path) -> Inspection:
    with path.open("rb") as fh:
        return inspect_stream(fh)


def _texts(result: Inspection) -> list[str]:
    return [f"{f.code} {f.rule} {f.location} {f.message}" for f in result.findings if f.is_error]


def _params() -> list[object]:
    out: list[object] = []
    for name in sorted(TABLE):
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[name])] if name in KNOWN_GAPS else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.shared
def test_every_sample_is_in_the_table() -> None:
    root = _samples_dir()
    present = {
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != "SOURCES.md"
    }
    assert present == set(TABLE), ("samples without an expectation", present - set(TABLE))


@pytest.mark.shared
@pytest.mark.parametrize("name", _params())
def test_sample_is_classified(name: str) -> None:
    path = _samples_dir() / name
    expect = TABLE[name]
    result = _inspect(path)
    assert result.kind == expect.kind, result.as_dict()
    assert result.mtom is expect.mtom
    assert result.has_errors is expect.errors, _texts(result)
    texts = _texts(result)
    for needle in expect.must:
        assert any(needle in t for t in texts), (needle, texts)
    as_dict = result.as_dict()
    assert as_dict["errors"] == len(texts)


@pytest.mark.shared
def test_ett_capture_shows_both_pairing_errors() -> None:
    result = _inspect(_samples_dir() / "ett/xdr_full_metadata_sample_request.txt")
    codes = {f.code: f for f in result.findings if f.is_error}
    assert "apache.org" in codes["XDSMissingDocumentMetadata"].location  # the orphan part, by Content-ID
    assert "id_extrinsicobject" in codes["XDSMissingDocument"].message
    assert any(f.rule == "capture-line-ends" and not f.is_error for f in result.findings)
    bad = {f.location for f in result.findings if f.rule == "direct-bad-address"}
    assert bad == {"S:Header/direct:addressBlock/direct:from", "S:Header/direct:addressBlock/direct:to[1]"}


@pytest.mark.shared
def test_nist_mtom_capture_resolves_its_part() -> None:
    result = _inspect(_samples_dir() / "nist/http-mtom-pnr.txt")
    documents = result.summary["documents"]
    assert len(documents) == 1
    assert documents[0]["actual_size"] and documents[0]["actual_size"] > 0
    # Only Direct routing errors: it is an XDS PnR without an address block (SOURCES.md: VALID, no Direct block).
    assert {f.rule for f in result.findings if f.is_error} <= {
        "ss-missing-intended-recipient",
        "sender-unknown",
        "no-recipient",
    }


@pytest.mark.shared
def test_bare_metadata_direct_rules_are_warnings() -> None:
    result = _inspect(_samples_dir() / "nist/pnr.xml")
    rules = {f.rule: f for f in result.findings}
    assert not rules["sender-unknown"].is_error and not rules["no-recipient"].is_error
    assert "bare metadata" in rules["sender-unknown"].message
    assert result.summary["note"].startswith("bare metadata")


@pytest.mark.shared
def test_fault_summary() -> None:
    result = _inspect(_samples_dir() / "ett/sample_response.txt")
    assert result.summary["fault_code"] == "Sender"
    assert "MTOM is required" in result.summary["reason"]


# ---------------------------------------------------------------------------------------------------------
# Our own messages (no ../shared needed)


def _entity(content_type: str, body: bytes) -> io.BytesIO:
    return io.BytesIO(f"Content-Type: {content_type}\r\n\r\n".encode() + body)


@pytest.mark.parametrize("level", list(MetadataLevel))
def test_packed_request_inspects_clean(tmp_path: Path, level: MetadataLevel) -> None:
    (tmp_path / "ccd.xml").write_bytes(sample_ccda())
    (tmp_path / "scan.pdf").write_bytes(sample_pdf())
    submission = compose(
        [tmp_path / "ccd.xml", tmp_path / "scan.pdf"],
        sender="a@direct.a.example.org",
        recipients=["b@direct.b.example.org"],
        level=level,
    )
    request = build_request(submission, endpoint="https://hisp.example.org/xdr")
    result = inspect_stream(_entity(request.content_type, b"".join(request.body)))
    assert result.kind == "request" and result.mtom
    assert not result.has_errors, _texts(result)
    assert result.summary["message_id"] == request.message_id
    assert result.summary["metadata_level_header"] == level.value
    documents = result.summary["documents"]
    assert [d["declared_hash"] for d in documents] == [d["actual_hash"] for d in documents]
    assert "source_patient_info" not in documents[0]  # PHI only with show_phi


def test_show_phi_adds_patient_info(tmp_path: Path) -> None:
    (tmp_path / "ccd.xml").write_bytes(sample_ccda())
    submission = compose(
        [tmp_path / "ccd.xml"], sender="a@direct.a.example.org", recipients=["b@b.example.org"]
    )
    request = build_request(submission, endpoint="https://hisp.example.org/xdr")
    result = inspect_stream(_entity(request.content_type, b"".join(request.body)), show_phi=True)
    assert any("Testpatient" in info for info in result.summary["documents"][0]["source_patient_info"])


@pytest.mark.parametrize("mtom", [True, False])
def test_replies_inspect(mtom: bool) -> None:
    reply = build_reply(
        RegistryResponse.success(), relates_to="urn:uuid:0f0e0d0c-0b0a-4908-8706-050403020100", mtom=mtom
    )
    result = inspect_stream(_entity(reply.content_type, reply.body))
    assert (result.kind, result.mtom, result.has_errors) == ("response", mtom, False)
    assert result.summary["relates_to"] == "urn:uuid:0f0e0d0c-0b0a-4908-8706-050403020100"
    fault = build_reply(Fault("Sender", "bad"), relates_to=None, mtom=mtom)
    result = inspect_stream(_entity(fault.content_type, fault.body))
    assert result.kind == "fault" and result.summary["reason"] == "bad"


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"", "bad-entity"),
        (b"X-Other: 1\r\n\r\nplain words", "bad-entity"),
        (b"Content-Type: multipart/related; boundary=zz\r\n\r\n--zz\r\ngarbage", None),
        (b"<unclosed", "malformed-xml"),
    ],
)
def test_unreadable_entities_are_findings(data: bytes, rule: str | None) -> None:
    result = inspect_stream(io.BytesIO(data))
    assert result.kind == "unknown"
    assert result.has_errors
    if rule is not None:
        assert any(f.rule == rule for f in result.findings), result.as_dict()
