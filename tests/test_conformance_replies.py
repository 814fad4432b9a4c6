"""The ``reply-*`` receiver cases: how every answer is formed (RelatesTo, Action, media type, MTOM form, HTTP
status), judged once across the run. Each test plants one defect in our real receiver (its answers rewritten on
the way out, on the real cheroot mutual-TLS server of a lab) and requires the suite to fail exactly the case that
names it; the last test runs the unmodified ``xdr-edge serve`` command and requires every required case to pass."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from xdr_edge.cli import main
from xdr_edge.conformance import Report, run_receiver
from xdr_edge.conformance.report import format_table, junit_xml
from xdr_edge.devtools.lab import start_lab
from xdr_edge.devtools.pki import write_demo_pki
from xdr_edge.protocol import ns
from xdr_edge.protocol.wire import build_reply, parse_response
from xdr_edge.receiver.app import ReceiverConfig, XdrEdgeApp
from xdr_edge.registry import open_registry

from .test_conformance_receiver import _failed, _target

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
#: Rewrites one answer: (HTTP status line, headers, body) in, the same out.
Rewrite = Callable[[str, list[tuple[str, str]], bytes], tuple[str, list[tuple[str, str]], bytes]]

#: The cases that judge every answer, in catalogue order.
REPLY_CASES = [
    "reply-relates-to",
    "reply-action",
    "reply-content-type",
    "reply-fault-action",
    "reply-mtom",
    "reply-http-status",
    "reply-action-must-understand",
]
FAILURE = b"ResponseStatusType:Failure"
FAULT = b"<S:Fault>"


def _rewriting(rewrite: Rewrite) -> Callable[[ReceiverConfig], Wsgi]:
    """Our receiver, with every answer passed through ``rewrite`` before it leaves (Content-Length follows)."""

    def factory(config: ReceiverConfig) -> Wsgi:
        proper = XdrEdgeApp(config)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            captured: list[tuple[str, list[tuple[str, str]]]] = []
            body = b"".join(proper(environ, lambda status, headers, *_: captured.append((status, headers))))
            status, headers, body = rewrite(*captured[0], body)
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            start_response(status, [*headers, ("Content-Length", str(len(body)))])
            return [body]

        return app

    return factory


def _sub(pattern: bytes, replacement: bytes, when: Callable[[bytes], bool] = lambda body: True) -> Rewrite:
    """A byte-level substitution in the answer's SOAP header (our answers write it literally, even in MTOM)."""

    def rewrite(
        status: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        if when(body):
            body = re.sub(pattern, replacement, body)
        return status, headers, body

    return rewrite


RELATES_TO = rb"<wsa:RelatesTo>[^<]*</wsa:RelatesTo>"
MESSAGE_ID = rb"<wsa:MessageID>[^<]*</wsa:MessageID>"


def _run(tmp_path: Path, rewrite: Rewrite, *, only: tuple[str, ...] = ()) -> Report:
    with start_lab(tmp_path, app_factory=_rewriting(rewrite)) as lab:
        return run_receiver(_target(lab), only=only)


def _everything_else_passed(report: Report, *failing: str) -> None:
    """Only ``failing`` did not pass (document-unique-id-reused aside: see test_conformance_receiver)."""
    assert {r.case.id for r in report.results if not r.passed} - {"document-unique-id-reused"} == set(failing)


# ---------------------------------------------------------------------------------------------------------------
# wsa:RelatesTo on every kind of answer


def test_wrong_relates_to_on_failure_answers_fails_reply_relates_to(tmp_path: Path) -> None:
    other = f"urn:uuid:{uuid.uuid4()}".encode()
    wrong = _sub(RELATES_TO, b"<wsa:RelatesTo>" + other + b"</wsa:RelatesTo>", lambda body: FAILURE in body)
    report = _run(tmp_path, wrong)
    assert report.exit_status == 1
    _everything_else_passed(report, "reply-relates-to")
    result = report.result("reply-relates-to")
    assert "wsa:RelatesTo names another message" in result.observed
    assert other.decode() in result.detail  # the example shows the value found
    assert result.detail.startswith("wsa:RelatesTo names another message on 15 answer(s): Failure to ")
    assert "metadata-mime-type" in result.detail and "unbound-sender" in result.detail
    assert "Success to" not in result.detail and "Fault to" not in result.detail
    assert "FAILED required: reply-relates-to" in format_table(report)


def test_missing_relates_to_on_faults_fails_reply_relates_to(tmp_path: Path) -> None:
    report = _run(tmp_path, _sub(RELATES_TO, b"", lambda body: FAULT in body))
    assert report.exit_status == 1
    _everything_else_passed(report, "reply-relates-to")
    result = report.result("reply-relates-to")
    assert result.observed.startswith("2 of ") and "no wsa:RelatesTo" in result.observed
    # the faults to requests whose MessageID was readable; not those whose envelope itself was broken
    assert result.detail == "no wsa:RelatesTo on 2 answer(s): Fault to wsa-action-missing, wsa-action-unknown"
    # not the faults to requests whose envelope itself was broken (soap-version, soap-*-namespace)


def test_wrong_relates_to_on_partial_success_answers_fails_reply_relates_to(tmp_path: Path) -> None:
    """Our receiver never answers PartialSuccess (it stores all of a submission or none), so the defect is planted
    with the status too: every Success becomes a PartialSuccess relating to another message, and the RelatesTo
    case names the PartialSuccess answers."""
    other = f"urn:uuid:{uuid.uuid4()}".encode()
    success = re.escape(ns.STATUS_SUCCESS.encode())

    def partial_and_wrong(
        status: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        if re.search(success, body):
            body = re.sub(success, ns.STATUS_PARTIAL.encode(), body)  # ITI TF-3 4.2.4.2
            body = re.sub(RELATES_TO, b"<wsa:RelatesTo>" + other + b"</wsa:RelatesTo>", body)
        return status, headers, body

    report = _run(tmp_path, partial_and_wrong)
    assert report.exit_status == 1  # (the valid-* cases fail as well: each expects a Success)
    detail = report.result("reply-relates-to").detail
    assert detail.startswith("wsa:RelatesTo names another message on ") and "PartialSuccess to " in detail
    assert "Failure to" not in detail and "Fault to" not in detail


def test_answers_without_message_id_headers_fail_one_case_as_the_cause(tmp_path: Path) -> None:
    """No RelatesTo (nor a MessageID of its own) on any answer: one required case fails, naming the cause once;
    every valid message is still judged accepted, every defect still judged refused."""
    strip = _sub(RELATES_TO + rb"|" + MESSAGE_ID, b"")
    report = _run(tmp_path, strip)
    assert report.exit_status == 1
    assert _failed(report) == {"reply-relates-to"}
    _everything_else_passed(report, "reply-relates-to")
    result = report.result("reply-relates-to")
    assert re.fullmatch(
        r"(\d+) of \1 answers that must name our MessageID: no wsa:RelatesTo", result.observed
    )
    for valid in (
        "valid-minimal",
        "valid-full",
        "valid-pdf",
        "valid-documents",
        "delivery-notification-request",
    ):
        assert report.result(valid).observed == "HTTP 200 Success", valid
        assert valid in result.detail.split("Success to ")[1].split(";")[0]
    mentions = [r.case.id for r in report.results if "RelatesTo" in f"{r.observed} {r.detail}"]
    assert mentions == ["reply-relates-to"]
    table = " ".join(format_table(report).split())
    assert table.count("no wsa:RelatesTo") == 2  # observed and why, of the one case


# ---------------------------------------------------------------------------------------------------------------
# The response wsa:Action


@pytest.mark.parametrize(
    ("which", "when", "action"),
    [
        ("every RegistryResponse", lambda body: True, ns.ACTION_PNR),
        ("Failure answers only", lambda body: FAILURE in body, "urn:ihe:iti:2007:RegistryResponse"),
    ],
)
def test_wrong_response_action_fails_reply_action(
    tmp_path: Path, which: str, when: Callable[[bytes], bool], action: str
) -> None:
    pattern = re.escape(ns.ACTION_PNR_RESPONSE.encode())
    report = _run(tmp_path, _sub(pattern, action.encode(), when))
    assert report.exit_status == 1, which
    _everything_else_passed(report, "reply-action")
    result = report.result("reply-action")
    assert f"wsa:Action is {action!r}, not {ns.ACTION_PNR_RESPONSE}" in result.observed
    assert "Failure to " in result.detail and "metadata-entry-id" in result.detail
    assert ("Success to valid-minimal" in result.detail) is (which == "every RegistryResponse")


#: Either fault action, as our answers write it (WS-Addressing 1.0 SOAP Binding §6).
FAULT_ACTION = rb"http://www\.w3\.org/2005/08/addressing/(?:soap/)?fault"


def test_fault_labelled_as_the_response_fails_the_optional_fault_action(tmp_path: Path) -> None:
    pattern = FAULT_ACTION
    report = _run(tmp_path, _sub(pattern, ns.ACTION_PNR_RESPONSE.encode()), only=("reply",))
    assert report.exit_status == 0  # optional: WS-Addressing 1.0 SOAP Binding §6 lets a module pick its own
    result = report.result("reply-fault-action")
    assert result.failed and "labelled as the ITI-41 response" in result.observed
    assert "Fault to wsa-action-unknown" in result.detail


def test_ws_addressing_fault_labelled_as_a_soap_fault_fails_the_optional_fault_action(tmp_path: Path) -> None:
    """wsa:ActionNotSupported is a WS-Addressing fault: its action is .../addressing/fault, not .../soap/fault."""
    wsa_fault = re.escape(ns.ACTION_WSA_FAULT.encode()) + rb"(?=<)"
    report = _run(tmp_path, _sub(wsa_fault, ns.ACTION_FAULT.encode()), only=("reply",))
    assert report.exit_status == 0  # an optional case
    result = report.result("reply-fault-action")
    assert result.failed
    assert f"a WS-Addressing fault with wsa:Action {ns.ACTION_FAULT}" in result.observed
    assert "Fault to wsa-action-unknown" in result.detail and "wsa:ActionNotSupported" in result.detail


# ---------------------------------------------------------------------------------------------------------------
# Media type, MTOM form, HTTP status


def _plain_text_xml(
    status: str, headers: list[tuple[str, str]], body: bytes
) -> tuple[str, list[tuple[str, str]], bytes]:
    """Every answer re-sent as plain SOAP labelled text/xml (the SOAP 1.1 media type), headers kept."""
    content_type = next(v for k, v in headers if k.lower() == "content-type")
    parsed = parse_response(content_type, body)
    outcome = parsed.fault if parsed.fault is not None else parsed.registry_response
    assert outcome is not None
    reply = build_reply(outcome, relates_to=parsed.envelope.relates_to, mtom=False)
    return status, [("Content-Type", "text/xml; charset=utf-8")], reply.body


def test_text_xml_answers_fail_reply_content_type(tmp_path: Path) -> None:
    report = _run(tmp_path, _plain_text_xml)
    assert report.exit_status == 1
    _everything_else_passed(report, "reply-content-type", "reply-mtom")
    result = report.result("reply-content-type")
    assert "text/xml is the SOAP 1.1 media type" in result.observed
    assert "hash-mismatch" in result.detail.split("Failure to ")[1]
    assert "soap-version" in result.detail.split("Fault to ")[1]
    assert not report.result("reply-mtom").case.required
    assert "text/xml answer to an MTOM request" in report.result("reply-mtom").observed


def test_faults_with_http_200_fail_the_optional_http_status_case(tmp_path: Path) -> None:
    """The NIST toolkit answers faults with HTTP 200; SOAP 1.2 Part 2 §7.5.2.2 says 400/500. Reported, optional.
    ``--only reply`` also shows that the reply cases send their own probes when the run has not."""

    def ok_status(
        status: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        return "200 OK", headers, body

    report = _run(tmp_path, ok_status, only=("reply",))
    assert [r.case.id for r in report.results] == REPLY_CASES
    assert report.exit_status == 0
    result = report.result("reply-http-status")
    assert result.observed == "1 of 3 SOAP answers: HTTP 200 for a Sender fault (expected 400)"
    assert (
        result.detail
        == "HTTP 200 for a Sender fault (expected 400) on 1 answer(s): Fault to wsa-action-unknown"
    )
    assert report.result("reply-relates-to").observed == "all 3 answers that must name our MessageID conform"


def test_report_keeps_every_case_traceable_and_nothing_cut(tmp_path: Path) -> None:
    report = _run(tmp_path, _sub(RELATES_TO, b"", lambda body: FAILURE in body))
    table = format_table(report, width=90)
    assert all(len(line) <= 90 for line in table.splitlines())
    flattened = " ".join(table.split())
    for result in report.results:  # every case with its source, every text whole: wrapped, never cut
        assert f"source: {' '.join(result.case.source.split())}" in flattened, result.case.id
        assert f"-> {' '.join(result.observed.split())}" in flattened, result.case.id
    detail = report.result("reply-relates-to").detail
    assert f"why: {' '.join(detail.split())}" in flattened
    assert "..." not in table
    suite = junit_xml(report).decode()
    assert "source: WS-Addressing 1.0 Core §3.4" in suite


# ---------------------------------------------------------------------------------------------------------------
# The unmodified `xdr-edge serve`


SERVE_TOML = """\
    [server]
    host = "127.0.0.1"
    port = 0
    cert = "pki/server.pem"
    key = "pki/server.key"
    client_ca = "pki/ca.pem"
    threads = 4

    [receiver]
    registry = "registry.db"
    inbox = "inbox"
    path = "/xdr"
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``xdr-edge serve`` in a child process, exactly as an operator runs it: (endpoint URL, site directory)."""
    pki = write_demo_pki(tmp_path / "pki")
    registry = open_registry(str(tmp_path / "registry.db"))
    registry.init(actor="test")
    registry.add_trust_anchor(pki.ca_cert.read_bytes(), actor="test")
    for practice_id, demo in pki.practices.items():
        registry.add_practice(practice_id, practice_id, actor="test")
        registry.enroll(practice_id, demo.cert.read_bytes(), actor="test")
        for address in demo.addresses:
            registry.bind(practice_id, address, actor="test")
    config = tmp_path / "serve.toml"
    config.write_text(textwrap.dedent(SERVE_TOML))
    launcher = "from xdr_edge.cli import main; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        found = re.search(r"listening on (https://127\.0\.0\.1:\d+/xdr)", first)
        assert found, first
        yield found.group(1), tmp_path
    finally:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def test_unmodified_serve_passes_every_required_case(served: tuple[str, Path], tmp_path: Path) -> None:
    endpoint, site = served
    pki = site / "pki"
    result = CliRunner().invoke(
        main,
        [
            "conformance", "receiver", endpoint, "--ca", str(pki / "ca.pem"),
            "--cert", str(pki / "practice-a.pem"), "--key", str(pki / "practice-a.key"),
            "--from", "dr.smith@direct.practice-a.org", "--unbound-from", "dr.jones@direct.practice-b.org",
            "--to", "records@direct.hospital.example",
            "--untrusted-cert", str(pki / "untrusted-client.pem"), "--untrusted-key", str(pki / "untrusted-client.key"),
            "--expired-cert", str(pki / "expired-client.pem"), "--expired-key", str(pki / "expired-client.key"),
            "--json", str(tmp_path / "r.json"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "OK: every required case passed" in result.output
    data = json.loads((tmp_path / "r.json").read_text())
    statuses = {r["id"]: r["status"] for r in data["results"]}
    assert {k: v for k, v in statuses.items() if v != "PASS"} == {}
    assert [k for k in statuses if k.startswith("reply-")] == REPLY_CASES
    assert all(r["source"] for r in data["results"])
