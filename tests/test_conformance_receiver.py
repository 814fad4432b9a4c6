"""The receiver catalogue against our own endpoint (every required case passes) and against deliberately broken
endpoints on the same real mutual-TLS server (the suite must fail them, naming the right cases)."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner

from xdr_edge.cli import main
from xdr_edge.conformance import ReceiverTarget, Report, receiver_catalogue, run_receiver
from xdr_edge.conformance.cases import CaseStatus
from xdr_edge.conformance.report import catalogue_markdown, format_table, junit_xml, write_json, write_junit
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.model import DirectAddress
from xdr_edge.protocol.response import RegistryResponse
from xdr_edge.protocol.soap import Fault
from xdr_edge.protocol.wire import build_reply, parse_request
from xdr_edge.receiver.app import ReceiverConfig, XdrEdgeApp
from xdr_edge.registry import Decision

SOAP_CASES = {
    "soap-header-namespace",
    "soap-body-namespace",
    "soap-version",
    "wsa-action-missing",
    "wsa-message-id-missing",
    "wsa-action-unknown",
}
METADATA_CASES = {
    "metadata-de-unique-id",
    "metadata-ss-source-id",
    "metadata-mime-type",
    "metadata-entry-id",
    "metadata-creation-time",
    "association-missing",
    "hash-mismatch",
    "size-mismatch",
    "document-without-metadata",
    "metadata-without-document",
}


def _target(lab: Lab, *, tls_material: bool = True) -> ReceiverTarget:
    a = lab.practices["practice-a"]
    assert a.credential is not None
    pki = lab.pki
    return ReceiverTarget(
        endpoint=lab.endpoint,
        ca_bundle=lab.ca_bundle,
        credential=a.credential,
        bound_from=DirectAddress.parse(pki.practices["practice-a"].addresses[0]),
        unbound_from=DirectAddress.parse(pki.practices["practice-b"].addresses[0]),
        recipients=(DirectAddress.parse(pki.practices["practice-b"].addresses[0]),),
        untrusted=(pki.untrusted_client_cert, pki.untrusted_client_key) if tls_material else None,
        expired=(pki.expired_client_cert, pki.expired_client_key) if tls_material else None,
        timeout=15,
    )


def _failed(report: Report, *, required: bool | None = True) -> set[str]:
    return {
        r.case.id for r in report.results if r.failed and (required is None or r.case.required == required)
    }


# ---------------------------------------------------------------------------------------------------------------
# Our own endpoint


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Report:
    with start_lab(tmp_path_factory.mktemp("lab")) as lab:
        return run_receiver(_target(lab))


def test_every_case_passes_against_our_endpoint(good_run: Report) -> None:
    not_passed = {
        r.case.id: f"{r.observed} | {r.detail}"
        for r in good_run.results
        if not r.passed and r.case.id != "document-unique-id-reused"  # see the next test
    }
    assert not_passed == {}
    assert good_run.ok and good_run.exit_status == 0
    assert {r.case.id for r in good_run.results} == {c.id for c in receiver_catalogue()}


def test_reused_document_unique_id_is_refused(good_run: Report) -> None:
    """ITI TF-3 4.2.4, ebRS 3.0: a DocumentEntry uniqueId already received with other bytes must not be stored again
    (XDSNonIdenticalHash). Fails until the receiver checks DocumentEntry uniqueIds, not only the SubmissionSet's
    (reported to the lead, see the conformance report)."""
    result = good_run.result("document-unique-id-reused")
    assert result.passed, f"{result.observed} | {result.detail}"


def test_good_run_observations_are_precise(good_run: Report) -> None:
    assert good_run.result("valid-minimal").observed == "HTTP 200 Success"
    relates = good_run.result("reply-relates-to").observed
    assert re.fullmatch(r"all \d+ answers that must name our MessageID conform", relates), relates
    assert re.fullmatch(r"all \d+ faults conform", good_run.result("reply-fault-action").observed)
    assert "VersionMismatch" in good_run.result("soap-version").observed
    assert "wsa:ActionNotSupported" in good_run.result("wsa-action-unknown").observed
    assert "XDSRepositoryMetadataError" in good_run.result("hash-mismatch").observed
    assert "XDSMissingDocument" in good_run.result("metadata-without-document").observed
    assert "XDSRepositoryError" in good_run.result("unbound-sender").observed
    assert "XDSDuplicateUniqueIdInRegistry" in good_run.result("duplicate-submission").observed
    for tls in ("tls-untrusted-ca", "tls-expired", "tls-no-certificate"):
        assert good_run.result(tls).observed.startswith("refused"), tls


def test_junit_and_json_reports_parse_with_the_right_counts(good_run: Report, tmp_path: Path) -> None:
    write_junit(good_run, tmp_path / "r.xml")
    write_json(good_run, tmp_path / "r.json")
    suite = ET.parse(tmp_path / "r.xml").getroot()
    assert suite.tag == "testsuite"
    assert suite.get("tests") == str(len(good_run.results)) == str(len(suite.findall("testcase")))
    failed = good_run.counts()["failed"]
    assert suite.get("failures") == str(failed) == str(len(suite.findall("testcase/failure")))
    assert suite.get("skipped") == "0"
    assert all(f.get("type") == "optional" for f in suite.findall("testcase/failure"))
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["ok"] is True and data["counts"]["passed"] == len(good_run.results) - failed
    assert data["results"][0]["id"] == "valid-minimal"


def test_table_names_every_case(good_run: Report) -> None:
    table = format_table(good_run)
    for case in receiver_catalogue():
        assert case.id in table
    assert table.rstrip().endswith("OK: every required case passed")


def test_tls_cases_without_material_are_skipped_not_failed(tmp_path: Path) -> None:
    with start_lab(tmp_path) as lab:
        report = run_receiver(_target(lab, tls_material=False), only=["tls"])
    statuses = {r.case.id: r.status for r in report.results}
    assert statuses == {
        "tls-mutual": CaseStatus.PASS,
        "tls-untrusted-ca": CaseStatus.SKIP,
        "tls-expired": CaseStatus.SKIP,
        "tls-no-certificate": CaseStatus.PASS,
    }
    assert report.ok
    assert "--untrusted-cert" in report.result("tls-untrusted-ca").detail
    suite = ET.fromstring(junit_xml(report))
    assert suite.get("skipped") == "2" and len(suite.findall("testcase/skipped")) == 2


# ---------------------------------------------------------------------------------------------------------------
# Broken endpoints


class _AllowAnySender:
    """A registry that identifies certificates properly but lets any address send for any practice."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def identify(self, cert: Any, chain: Any = (), *, at: Any = None) -> Any:
        return self.inner.identify(cert, chain, at=at)

    def authorize_sender(self, practice: Any, address: Any) -> Decision:
        return Decision(True, "broken on purpose: anyone may send", practice.id)


def _accept_any_sender(config: ReceiverConfig) -> object:
    return XdrEdgeApp(dataclasses.replace(config, registry=_AllowAnySender(config.registry)))


Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _message_id(body: bytes) -> str | None:
    """The request's wsa:MessageID read off the raw bytes (the broken apps below answer without parsing)."""
    found = re.search(rb"MessageID[^>]*>([^<]+)<", body)
    return found.group(1).decode() if found else None


def _always_success(config: ReceiverConfig) -> Wsgi:
    """Reads the request (SOAP errors still fault) but never validates, binds or stores: always Success."""
    proper = XdrEdgeApp(config)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        try:
            request = parse_request(environ.get("CONTENT_TYPE", ""), io.BytesIO(body))
        except RemoteProtocolError:
            environ["wsgi.input"] = io.BytesIO(body)
            return proper(environ, start_response)
        with request:
            reply = build_reply(
                RegistryResponse.success(), relates_to=request.envelope.message_id, mtom=request.mtom
            )
        start_response(
            "200 OK", [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body)))]
        )
        return [reply.body]

    return app


def _success_instead_of_faults(config: ReceiverConfig) -> Wsgi:
    """Our app, except that every SOAP fault it would send is replaced by a Success RegistryResponse."""
    proper = XdrEdgeApp(config)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        captured: list[Any] = []
        out = b"".join(proper(environ, lambda status, headers: captured.append((status, headers))))
        status, headers = captured[0]
        if status.startswith(("400", "500")):
            reply = build_reply(RegistryResponse.success(), relates_to=_message_id(body), mtom=True)
            status, out = "200 OK", reply.body
            headers = [("Content-Type", reply.content_type), ("Content-Length", str(len(out)))]
        start_response(status, headers)
        return [out]

    return app


def _fault_on_delivery_requests(config: ReceiverConfig) -> Wsgi:
    """Our app behind a strict schema that knows no X-DIRECT-FINAL-DESTINATION-DELIVERY: a Sender fault."""
    proper = XdrEdgeApp(config)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        if b"X-DIRECT-FINAL-DESTINATION-DELIVERY" not in body:
            return proper(environ, start_response)
        fault = Fault("Sender", "unexpected element direct:X-DIRECT-FINAL-DESTINATION-DELIVERY")
        reply = build_reply(fault, relates_to=_message_id(body), mtom=True)
        start_response(
            "400 Bad Request",
            [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body)))],
        )
        return [reply.body]

    return app


def test_endpoint_that_cannot_read_delivery_requests_fails_the_delivery_cases(tmp_path: Path) -> None:
    with start_lab(tmp_path, app_factory=_fault_on_delivery_requests) as lab:
        report = run_receiver(_target(lab))
    assert _failed(report) == {"delivery-notification-request", "delivery-notification-unreachable"}
    assert "not a fault" in report.result("delivery-notification-unreachable").detail
    assert "unexpected element" in report.result("delivery-notification-request").detail
    assert report.result("delivery-notification-unreadable").passed  # a fault is an allowed refusal there
    assert report.exit_status == 1


def test_endpoint_accepting_any_sender_fails_unbound_sender(tmp_path: Path) -> None:
    with start_lab(tmp_path, app_factory=_accept_any_sender) as lab:
        report = run_receiver(_target(lab))
    assert _failed(report) == {"unbound-sender"}
    result = report.result("unbound-sender")
    assert result.observed.startswith("HTTP 200 Success")
    assert "accepted a submission it must refuse" in result.detail
    assert report.exit_status == 1
    assert "FAILED required: unbound-sender" in format_table(report)
    suite = ET.fromstring(junit_xml(report))
    names = [
        tc.get("name", "")
        for tc in suite.findall("testcase")
        if tc.find("failure[@type='required']") is not None
    ]
    assert [n.split(":")[0] for n in names] == ["unbound-sender"]


def test_endpoint_that_never_validates_fails_the_metadata_cases(tmp_path: Path) -> None:
    with start_lab(tmp_path, app_factory=_always_success) as lab:
        report = run_receiver(_target(lab))
    assert _failed(report) == METADATA_CASES | {
        "unbound-sender",
        "duplicate-submission",
        "address-block-missing",
    }
    assert all(report.result(c).passed for c in SOAP_CASES)
    assert "accepted a submission it must refuse" in report.result("hash-mismatch").detail
    assert "accepted twice" in report.result("duplicate-submission").detail
    assert report.exit_status == 1


def test_endpoint_answering_soap_errors_with_success_fails_the_soap_cases(tmp_path: Path) -> None:
    with start_lab(tmp_path, app_factory=_success_instead_of_faults) as lab:
        report = run_receiver(_target(lab))
    assert _failed(report) == SOAP_CASES
    optional = _failed(report, required=False) - {"document-unique-id-reused"}
    assert optional == {f"{c}-code" for c in SOAP_CASES}
    assert "must reject with a SOAP Fault" in report.result("soap-version").detail
    assert all(report.result(c).passed for c in METADATA_CASES)
    assert report.exit_status == 1


def test_cli_exit_status_and_reports(tmp_path: Path) -> None:
    with start_lab(tmp_path / "lab", app_factory=_accept_any_sender) as lab:
        pki = lab.pki
        a = pki.practices["practice-a"]
        common = [
            "conformance", "receiver", lab.endpoint, "--ca", str(pki.ca_cert), "--cert", str(a.cert),
            "--key", str(a.key), "--from", a.addresses[0],
            "--unbound-from", pki.practices["practice-b"].addresses[0],
            "--to", pki.practices["practice-b"].addresses[0],
        ]  # fmt: skip
        broken = CliRunner().invoke(
            main,
            [
                *common,
                "--only",
                "unbound-sender",
                "--only",
                "valid-minimal",
                "--junit",
                str(tmp_path / "j.xml"),
            ],
        )
        fine = CliRunner().invoke(main, [*common, "--only", "valid", "--json", str(tmp_path / "r.json")])
        bad_option = CliRunner().invoke(main, [*common, "--untrusted-cert", str(a.cert)])
    assert broken.exit_code == 1, broken.output
    assert "FAILED required: unbound-sender" in broken.output
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    assert fine.exit_code == 0, fine.output
    assert json.loads((tmp_path / "r.json").read_text())["counts"]["total"] == 6
    assert bad_option.exit_code == 2
    assert "--untrusted-key" in bad_option.output


def test_catalogue_is_data_with_unique_ids_and_sources() -> None:
    cases = receiver_catalogue()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    assert all(c.source and c.expectation and c.title for c in cases)
    sources = " ".join(c.source for c in cases)
    for ett in ("3add", "4a", "4b", "4c", "4d", "4e", "ETT 5", "ETT 8", "ETT 9"):
        assert ett in sources
    markdown = catalogue_markdown(cases)
    assert markdown.count("\n") == len(cases) + 1


def test_docs_list_every_case_as_generated() -> None:
    """docs/conformance.md embeds `xdr-edge conformance list --markdown`; regenerate it when a case changes."""
    from xdr_edge.conformance.sender import sender_catalogue

    docs = (Path(__file__).resolve().parents[1] / "docs" / "conformance.md").read_text(encoding="utf-8")
    assert catalogue_markdown(receiver_catalogue()) in docs
    assert catalogue_markdown(sender_catalogue()) in docs


def test_cli_refuses_unwritable_report_paths_before_running_anything(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    with start_lab(tmp_path / "lab") as lab:
        pki = lab.pki
        a = pki.practices["practice-a"]
        receiver_args = [
            "conformance", "receiver", lab.endpoint, "--ca", str(pki.ca_cert), "--cert", str(a.cert),
            "--key", str(a.key), "--from", a.addresses[0],
            "--unbound-from", pki.practices["practice-b"].addresses[0],
            "--to", pki.practices["practice-b"].addresses[0], "--only", "valid", "--json", str(missing / "r.json"),
        ]  # fmt: skip
        sender_args = [
            "conformance", "sender", "--listen", "127.0.0.1:0", "--cert", str(pki.server_cert),
            "--key", str(pki.server_key), "--client-ca", str(pki.ca_cert), "--timeout", "1",
            "--junit", str(missing / "s.xml"),
        ]  # fmt: skip
        receiver = CliRunner().invoke(main, receiver_args)
        stored = list(lab.inbox.root.glob("*/*/summary.json"))
        sender = CliRunner().invoke(main, sender_args)
    assert receiver.exit_code == 2, receiver.output
    assert f"--json {missing / 'r.json'}: the directory {missing} does not exist" in receiver.output
    assert "nothing was run" in receiver.output
    assert stored == []  # not one valid case was sent
    assert "PASS" not in receiver.output and "FAIL" not in receiver.output
    assert sender.exit_code == 2, sender.output
    assert f"--junit {missing / 's.xml'}: the directory {missing} does not exist" in sender.output
    assert "listening on" not in sender.output
