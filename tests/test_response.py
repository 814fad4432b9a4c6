"""RegistryResponse writer and reader: round trips, the official rs.xsd, real peers' responses (ITI TF-3 4.2.4, ebRS 3.0)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from tests.reference import official_schema, sample_path
from xdr_edge.protocol import ns
from xdr_edge.protocol.errors import LocalProtocolError, RemoteProtocolError
from xdr_edge.protocol.findings import Finding, Severity
from xdr_edge.protocol.response import (
    RegistryErrorEntry,
    RegistryResponse,
    read_registry_response,
    write_registry_response,
)
from xdr_edge.protocol.xml import parse


def _sample(relative: str) -> bytes:
    return sample_path(relative).read_bytes()


def _rs_schema() -> etree.XMLSchema:
    return official_schema("schema/ebRS/rs.xsd")


def _rules(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


# --- constructors

ERR = RegistryErrorEntry("XDSRegistryMetadataError", "creationTime is missing", Severity.ERROR, "Document01")
WARN = RegistryErrorEntry("XDSExtraMetadataNotSaved", "slot foo ignored", Severity.WARNING)


def test_success_with_warnings() -> None:
    resp = RegistryResponse.success([WARN])
    assert resp.is_success and not resp.is_failure and not resp.is_partial
    assert resp.status == ns.STATUS_SUCCESS
    assert resp.highest_severity is Severity.WARNING


def test_success_refuses_error_entries() -> None:
    with pytest.raises(LocalProtocolError, match="warnings only"):
        RegistryResponse.success([ERR])


def test_failure_needs_an_error_entry() -> None:
    with pytest.raises(LocalProtocolError, match="at least one Error"):
        RegistryResponse.failure([WARN])
    resp = RegistryResponse.failure([WARN, ERR])
    assert resp.is_failure and resp.highest_severity is Severity.ERROR


def test_partial_needs_entries() -> None:
    with pytest.raises(LocalProtocolError):
        RegistryResponse.partial([])
    resp = RegistryResponse.partial(
        [RegistryErrorEntry("PartialFolderContentNotProcessed", "folder", Severity.WARNING)]
    )
    assert resp.is_partial and resp.status == ns.STATUS_PARTIAL


def test_from_findings() -> None:
    warn = Finding("XDSRegistryMetadataError", Severity.WARNING, "SubmissionSet/title", "title missing", "r1")
    err = Finding("XDSMissingDocument", Severity.ERROR, "ExtrinsicObject[@id='Doc1']", "no document", "r2")
    ok = RegistryResponse.from_findings([warn])
    assert ok.is_success
    assert ok.errors == (
        RegistryErrorEntry(
            "XDSRegistryMetadataError", "title missing", Severity.WARNING, "SubmissionSet/title"
        ),
    )
    bad = RegistryResponse.from_findings([warn, err])
    assert bad.is_failure
    assert bad.errors[1] == RegistryErrorEntry(
        "XDSMissingDocument", "no document", Severity.ERROR, "ExtrinsicObject[@id='Doc1']"
    )
    assert RegistryResponse.from_findings([]) == RegistryResponse.success()


# --- writer


def test_write_shape() -> None:
    el = write_registry_response(RegistryResponse.failure([WARN, ERR]))
    assert el.tag == f"{{{ns.RS}}}RegistryResponse"
    assert el.get("status") == ns.STATUS_FAILURE
    error_list = el.find(f"{{{ns.RS}}}RegistryErrorList")
    assert error_list is not None
    assert error_list.get("highestSeverity") == ns.SEVERITY_ERROR
    errors = error_list.findall(f"{{{ns.RS}}}RegistryError")
    assert [e.get("severity") for e in errors] == [ns.SEVERITY_WARNING, ns.SEVERITY_ERROR]
    assert errors[1].get("errorCode") == "XDSRegistryMetadataError"
    assert errors[1].get("codeContext") == "creationTime is missing"
    assert errors[1].get("location") == "Document01"
    assert errors[0].get("location") is None


def test_write_success_has_no_error_list() -> None:
    el = write_registry_response(RegistryResponse.success())
    assert len(el) == 0 and el.get("requestId") is None
    el = write_registry_response(RegistryResponse(ns.STATUS_SUCCESS, (), request_id="urn:uuid:1"))
    assert el.get("requestId") == "urn:uuid:1"


@pytest.mark.shared
def test_written_responses_are_schema_valid() -> None:
    schema = _rs_schema()
    for resp in (
        RegistryResponse.success(),
        RegistryResponse.success([WARN]),
        RegistryResponse.failure([ERR, WARN]),
        RegistryResponse.partial([WARN]),
    ):
        el = write_registry_response(resp)
        assert schema.validate(el), schema.error_log


# --- round trip

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
_entries = st.builds(
    RegistryErrorEntry,
    error_code=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30),
    code_context=_text,
    severity=st.sampled_from(Severity),
    location=st.none() | _text,
)


@given(st.lists(_entries, max_size=6), st.none() | st.just("urn:uuid:0f0e"))
def test_round_trip(entries: list[RegistryErrorEntry], request_id: str | None) -> None:
    if any(e.is_error for e in entries):
        resp = RegistryResponse.failure(entries)
    else:
        resp = RegistryResponse.success(entries)
    resp = RegistryResponse(resp.status, resp.errors, request_id)
    wire = etree.tostring(write_registry_response(resp))
    back, findings = read_registry_response(parse(wire))
    assert back == resp
    assert findings == []


# --- reader: consistency rules


def _read(xml: str) -> tuple[RegistryResponse, list[Finding]]:
    return read_registry_response(parse(xml.encode()))


RS_OPEN = f'<rs:RegistryResponse xmlns:rs="{ns.RS}"'


def test_reader_unknown_status() -> None:
    resp, findings = _read(f'{RS_OPEN} status="urn:x:Maybe"/>')
    assert resp.status == "urn:x:Maybe"
    assert not (resp.is_success or resp.is_failure or resp.is_partial)
    assert "rs-status-unknown" in _rules(findings)
    assert any(f.is_error and f.location == "rs:RegistryResponse/@status" for f in findings)


def test_reader_missing_status() -> None:
    _, findings = _read(f"{RS_OPEN}/>")
    assert _rules(findings) == {"rs-status-missing"}


def test_reader_severity_not_urn_and_highest_severity_text() -> None:
    # The Direct RI: severity="Error" and highestSeverity carrying the error text (ITI TF-3 4.2.4, ebRS 3.0).
    resp, findings = _read(
        f'{RS_OPEN} status="{ns.STATUS_FAILURE}"><rs:RegistryErrorList highestSeverity="Something broke">'
        '<rs:RegistryError errorCode="XDSRepositoryError" codeContext="boom" severity="Error"/>'
        "</rs:RegistryErrorList></rs:RegistryResponse>"
    )
    assert resp.is_failure and resp.errors[0].severity is Severity.ERROR
    assert _rules(findings) == {"rs-severity-not-urn", "rs-highest-severity-mismatch"}
    assert any(f.location.endswith("rs:RegistryError[1]/@severity") for f in findings)


def test_reader_empty_error_code_and_default_severity() -> None:
    resp, findings = _read(
        f'{RS_OPEN} status="{ns.STATUS_FAILURE}"><rs:RegistryErrorList>'
        '<rs:RegistryError errorCode="" codeContext="validator failed"/>'
        "</rs:RegistryErrorList></rs:RegistryResponse>"
    )
    assert resp.errors[0].severity is Severity.ERROR  # rs.xsd default
    assert _rules(findings) == {"rs-error-code-empty"}


def test_reader_unknown_severity() -> None:
    resp, findings = _read(
        f'{RS_OPEN} status="{ns.STATUS_FAILURE}"><rs:RegistryErrorList>'
        '<rs:RegistryError errorCode="X" codeContext="c" severity="urn:x:Fatal"/>'
        "</rs:RegistryErrorList></rs:RegistryResponse>"
    )
    assert resp.errors[0].severity is Severity.ERROR
    assert _rules(findings) == {"rs-severity-unknown"}


def test_reader_rejects_other_roots() -> None:
    with pytest.raises(RemoteProtocolError, match="expected rs:RegistryResponse") as info:
        _read('<x:Other xmlns:x="urn:x"/>')
    assert info.value.code == "not-a-registry-response"


# --- reader: real peers


@pytest.mark.shared
def test_nist_success_with_error_entry() -> None:
    resp, findings = read_registry_response(parse(_sample("nist/regresp-suc-err.xml")))
    assert resp.is_success
    assert resp.errors[0].error_code == "XDSUnknownPatientId"
    assert _rules(findings) == {"rs-success-with-error"}


@pytest.mark.shared
def test_nist_failure_without_errors() -> None:
    resp, findings = read_registry_response(parse(_sample("nist/regresp-fail-noerr.xml")))
    assert resp.is_failure and resp.errors == ()
    assert _rules(findings) == {"rs-failure-without-error"}


@pytest.mark.shared
def test_direct_ri_response_type_root() -> None:
    resp, findings = read_registry_response(parse(_sample("directri/response.xml")))
    assert resp.is_success
    assert _rules(findings) == {"rs-root-type-name"}
    assert all(not f.is_error for f in findings)
