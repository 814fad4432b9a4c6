"""The sender catalogue: our XdrClient against the recording endpoint (every required case passes), a deliberately
broken raw sender (the right checks fail), the --respond modes as our client sees them, and ETT 7 (bad server
certificate) with our client and with a sender that ignores certificate errors."""

from __future__ import annotations

import copy
import dataclasses
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner
from lxml import etree

from xdr_edge.cli import main
from xdr_edge.conformance.bindings import DeclaredBindings
from xdr_edge.conformance.cases import CaseStatus
from xdr_edge.conformance.messages import remove_wsa, unknown_action
from xdr_edge.conformance.receiver_context import Mutation, ReceiverContext, ReceiverTarget
from xdr_edge.conformance.recording import RecordingEndpoint, Respond, SenderEndpointConfig
from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.conformance.sender import judge_recorded, run_sender, sender_catalogue
from xdr_edge.devtools.pki import DemoPki, write_demo_pki
from xdr_edge.practice import Binding, ClientCredential, Practice
from xdr_edge.protocol import ns
from xdr_edge.protocol.classify import Outcome
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.model import DirectAddress, Document, MetadataLevel
from xdr_edge.protocol.mtom import MtomPart
from xdr_edge.sender.client import RetryPolicy, SendResult, XdrClient

RECIPIENT = "records@direct.hospital.example"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPki:
    return write_demo_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def practice(pki: DemoPki) -> Practice:
    demo = pki.practices["practice-a"]
    return Practice(
        id=demo.id,
        name="Demo A",
        bindings=tuple(Binding.parse(a) for a in demo.addresses),
        credential=ClientCredential(cert=demo.cert, key=demo.key),
    )


def _config(
    pki: DemoPki, *, respond: Respond = Respond.SUCCESS, bad_server_cert: bool = False
) -> SenderEndpointConfig:
    return SenderEndpointConfig(
        cert=pki.server_cert,
        key=pki.server_key,
        client_ca=pki.ca_cert,
        respond=respond,
        bad_server_cert=bad_server_cert,
    )


@pytest.fixture
def endpoint(pki: DemoPki) -> Iterator[RecordingEndpoint]:
    with RecordingEndpoint(_config(pki)) as ep:
        yield ep


def _send(endpoint_url: str, pki: DemoPki, practice: Practice, docs: list[bytes], level: MetadataLevel,
          timeout: tuple[float, float] = (5.0, 15.0)) -> SendResult:  # fmt: skip
    submission = compose(
        [Document.from_bytes(d, name=f"doc{i}") for i, d in enumerate(docs)],
        sender=pki.practices["practice-a"].addresses[0],
        recipients=[RECIPIENT],
        level=level,
    )
    with XdrClient(
        endpoint=endpoint_url,
        ca_bundle=pki.ca_cert,
        practices=[practice],
        timeout=timeout,
        retry=RetryPolicy(max_attempts=1),
    ) as client:
        return client.send(submission, practice=practice)


def test_our_client_passes_every_required_case(
    endpoint: RecordingEndpoint, pki: DemoPki, practice: Practice
) -> None:
    results = [
        _send(endpoint.url, pki, practice, [sample_ccda()], MetadataLevel.MINIMAL),
        _send(endpoint.url, pki, practice, [sample_ccda()], MetadataLevel.XDS),
        _send(endpoint.url, pki, practice, [sample_ccda(), sample_pdf()], MetadataLevel.MINIMAL),
    ]
    assert [r.outcome for r in results] == [Outcome.SUCCESS] * 3
    assert endpoint.wait(3, timeout=5)
    demo = pki.practices["practice-a"]
    bindings = DeclaredBindings.parse([(str(demo.cert), a) for a in demo.addresses])
    report = judge_recorded(endpoint, expect=3, bindings=bindings)
    not_passed = {
        r.case.id: f"{r.status.value}: {r.observed} | {r.detail}" for r in report.results if not r.passed
    }
    assert not_passed == {
        "tls-bad-server-certificate": "SKIP: not run | run with --bad-server-cert to test this (ETT 7)"
    }
    assert report.exit_status == 0
    assert report.result("wsa-message-id").observed == "3 request(s), 3 distinct MessageIDs"
    assert report.result("practice-binding").passed
    recorded_ids = [a.message_id for a in endpoint.analyses]
    assert sorted(str(m) for m in recorded_ids) == sorted(r.message_id for r in results)
    assert "UID=practice-a" in report.result("tls-client-certificate").observed
    assert {a.record.client_fingerprint for a in endpoint.analyses} == {
        pki.practices["practice-a"].fingerprint_sha256
    }


# ---------------------------------------------------------------------------------------------------------------
# A broken sender (raw requests built with the receiver catalogue's own framing)


def _remove_address_block(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    for block in root.iter(f"{{{ns.DIRECT}}}addressBlock"):
        parent = block.getparent()
        assert parent is not None
        parent.remove(block)
    return parts


def _wrong_hash(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    for slot in root.iter(f"{{{ns.RIM}}}Slot"):
        if slot.get("name") == "hash":
            value = slot.find(f"{{{ns.RIM}}}ValueList/{{{ns.RIM}}}Value")
            assert value is not None
            value.text = "0" * 40
    return parts


def _reuse_message_id(message_id: str) -> Mutation:
    def mutate(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
        for element in root.iter(f"{{{ns.WSA}}}MessageID"):
            element.text = message_id
        return parts

    return mutate


def _raw_sender(endpoint: RecordingEndpoint, pki: DemoPki, practice: Practice) -> ReceiverContext:
    """A sender that frames raw (possibly broken) requests with the receiver catalogue's own helpers."""
    assert practice.credential is not None
    return ReceiverContext(
        ReceiverTarget(
            endpoint=endpoint.url,
            ca_bundle=pki.ca_cert,
            credential=practice.credential,
            bound_from=DirectAddress.parse(pki.practices["practice-a"].addresses[0]),
            unbound_from=DirectAddress.parse(pki.practices["practice-b"].addresses[0]),
            recipients=(DirectAddress.parse(RECIPIENT),),
        )
    )


def _unreadable_delivery_request(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    for block in root.iter(f"{{{ns.DIRECT}}}addressBlock"):
        etree.SubElement(block, f"{{{ns.DIRECT}}}X-DIRECT-FINAL-DESTINATION-DELIVERY").text = "yes"
    return parts


def test_a_delivery_request_is_checked_with_the_address_block(
    endpoint: RecordingEndpoint, pki: DemoPki, practice: Practice
) -> None:
    """One good request asking for final-destination delivery, one asking with an unreadable value: only the
    address-block check fails, and it names the element; the metadata check is not blamed."""
    sender = _raw_sender(endpoint, pki, practice)
    asking = dataclasses.replace(sender.submission(), final_destination_delivery=True)
    for prepared in (sender.frame(asking), sender.frame(sender.submission(), _unreadable_delivery_request)):
        sender.send(prepared)
    assert endpoint.wait(2, timeout=5)
    report = judge_recorded(endpoint, expect=2)
    assert {r.case.id for r in report.results if r.failed} == {"direct-address-block"}
    observed = report.result("direct-address-block").observed
    assert observed.startswith("request 2: XDSRepositoryMetadataError")
    assert "X-DIRECT-FINAL-DESTINATION-DELIVERY" in observed and "'yes'" in observed
    assert report.result("metadata-valid").passed


def test_broken_sender_fails_the_matching_checks(
    endpoint: RecordingEndpoint, pki: DemoPki, practice: Practice
) -> None:
    sender = _raw_sender(endpoint, pki, practice)
    first = sender.frame(sender.submission())
    assert first.message_id is not None
    prepared = [
        first,
        sender.frame(sender.submission(), _reuse_message_id(first.message_id)),
        sender.frame(sender.submission(), _remove_address_block),
        sender.frame(sender.submission(), _wrong_hash),
    ]
    answers = [sender.send(p) for p in prepared]
    assert [a.kind.value for a in answers] == [
        "Success"
    ] * 4  # the endpoint records and answers; it judges later
    assert endpoint.wait(4, timeout=5)
    report = judge_recorded(endpoint, expect=4)
    failed = {r.case.id for r in report.results if r.failed}
    assert failed == {"wsa-message-id", "direct-address-block", "hash-size"}
    assert first.message_id in report.result("wsa-message-id").detail
    assert report.result("direct-address-block").observed.startswith("request 3: no direct:addressBlock")
    assert "request 4: XDSRepositoryMetadataError" in report.result("hash-size").observed
    assert report.exit_status == 1


def _duplicate_to(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    to = next(root.iter(f"{{{ns.WSA}}}To"))
    to.addnext(copy.deepcopy(to))
    return parts


def test_a_wsa_header_defect_fails_only_the_case_about_it(
    endpoint: RecordingEndpoint, pki: DemoPki, practice: Practice
) -> None:
    """Our reader stops on these headers (a receiver must fault); the sender catalogue reads past them, so each
    defect is reported once, by its own case, and every other case still judges the request."""
    sender = _raw_sender(endpoint, pki, practice)
    for mutate in (remove_wsa("MessageID"), unknown_action, _duplicate_to):
        sender.send(sender.frame(sender.submission(), mutate))
    assert endpoint.wait(3, timeout=5)
    report = judge_recorded(endpoint, expect=3)
    assert {r.case.id for r in report.results if r.failed} == {"wsa-message-id", "wsa-action", "wsa-to"}
    assert report.result("wsa-message-id").observed.startswith("request 1: S:Header/wsa:MessageID is missing")
    assert report.result("wsa-action").observed.startswith(
        "request 2: wsa:Action is 'urn:ihe:iti:2007:RegistryStoredQuery'"
    )
    assert report.result("wsa-to").observed.startswith("request 3: 2 wsa:To headers")
    for judged in (
        "soap-envelope",
        "metadata-valid",
        "direct-address-block",
        "documents-attached",
        "hash-size",
    ):
        assert report.result(judged).observed == "3 request(s), all conform", judged


def test_a_content_type_action_contradicting_wsa_action_fails_only_the_action_case(
    endpoint: RecordingEndpoint, pki: DemoPki, practice: Practice
) -> None:
    """The MTOM Content-Type states another action than the envelope (WS-Addressing 1.0 SOAP Binding §6.4.1):
    the wsa-action case reports the mismatch; the request is still read for every other case."""
    sender = _raw_sender(endpoint, pki, practice)
    prepared = sender.frame(sender.submission())
    other = prepared.content_type.replace(ns.ACTION_PNR, "urn:ihe:iti:2007:RegistryStoredQuery")
    assert other != prepared.content_type
    sender.send(dataclasses.replace(prepared, content_type=other))
    assert endpoint.wait(1, timeout=5)
    report = judge_recorded(endpoint, expect=1)
    assert {r.case.id for r in report.results if r.failed} == {"wsa-action"}
    assert "RegistryStoredQuery" in report.result("wsa-action").observed
    assert report.result("hash-size").observed == "1 request(s), all conform"


@pytest.mark.slow
def test_expected_count_fails_on_timeout(pki: DemoPki) -> None:
    report = run_sender(_config(pki), expect=1, timeout=1)
    assert report.result("expected-count").failed
    assert report.result("tls-client-certificate").observed == "no request recorded"
    assert report.exit_status == 1


# ---------------------------------------------------------------------------------------------------------------
# --respond modes, as our client reports them


@pytest.mark.parametrize(
    ("respond", "outcome"),
    [
        (Respond.FAULT, Outcome.FAULT),
        (Respond.FAILURE, Outcome.FAILURE),
        (Respond.STALL, Outcome.OUTCOME_UNKNOWN),
    ],
)
@pytest.mark.slow
def test_respond_modes_reach_our_client(
    pki: DemoPki, practice: Practice, respond: Respond, outcome: Outcome
) -> None:
    with RecordingEndpoint(_config(pki, respond=respond)) as ep:
        result = _send(ep.url, pki, practice, [sample_ccda()], MetadataLevel.MINIMAL, timeout=(5.0, 3.0))
        assert ep.wait(1, timeout=5)
        report = judge_recorded(ep, expect=1)
    assert result.outcome is outcome, result.message
    assert report.ok  # the request itself was conformant whatever the answer
    if respond is Respond.FAULT:
        assert result.fault is not None and "--respond fault" in result.fault.reason
    if respond is Respond.FAILURE:
        assert result.errors[0].error_code == "XDSRepositoryError"


# ---------------------------------------------------------------------------------------------------------------
# ETT 7: a server certificate from an untrusted CA


def test_bad_server_cert_our_client_refuses_and_sends_nothing(pki: DemoPki, practice: Practice) -> None:
    with RecordingEndpoint(_config(pki, bad_server_cert=True)) as ep:
        result = _send(ep.url, pki, practice, [sample_ccda()], MetadataLevel.MINIMAL)
        assert ep.wait(1, timeout=5)
        report = judge_recorded(ep, expect=1)
        attempts = list(ep.attempts)
    assert result.outcome is Outcome.TRANSPORT_ERROR
    assert "server certificate not trusted" in result.message
    assert attempts and all(a.application_bytes == 0 and not a.handshake_completed for a in attempts)
    case = report.result("tls-bad-server-certificate")
    assert case.passed, case.detail
    assert report.exit_status == 0
    skipped = {r.case.id for r in report.results if r.status is CaseStatus.SKIP}
    assert skipped == {c.id for c in sender_catalogue()} - {"tls-bad-server-certificate", "expected-count"}


def test_bad_server_cert_a_sender_ignoring_it_fails(pki: DemoPki, tmp_path: Path) -> None:
    careless = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    careless.check_hostname = False
    careless.verify_mode = ssl.CERT_NONE
    demo = pki.practices["practice-a"]
    careless.load_cert_chain(str(demo.cert), str(demo.key))
    with RecordingEndpoint(_config(pki, bad_server_cert=True)) as ep:
        with socket.create_connection(("127.0.0.1", ep.port), timeout=5) as raw:
            with careless.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"POST /xdr HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert ep.wait(1, timeout=5)
        report = judge_recorded(ep, expect=1)
    case = report.result("tls-bad-server-certificate")
    assert case.failed
    assert "sent application data" in case.detail
    assert report.exit_status == 1


@pytest.mark.slow
def test_cli_sender_reports_and_exit_status(pki: DemoPki, tmp_path: Path) -> None:
    args = [
        "conformance", "sender", "--listen", "127.0.0.1:0", "--cert", str(pki.server_cert),
        "--key", str(pki.server_key), "--client-ca", str(pki.ca_cert), "--expect", "1", "--timeout", "1",
        "--junit", str(tmp_path / "s.xml"),
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "listening on https://127.0.0.1:" in result.output
    assert "FAILED required: expected-count" in result.output
    suite = ElementTree.parse(tmp_path / "s.xml").getroot()
    assert suite.get("tests") == str(len(sender_catalogue()))
    bad = CliRunner().invoke(main, [*args[:3], "nonsense", *args[4:]])
    assert bad.exit_code == 2 and "HOST:PORT" in bad.output


def test_cli_list_prints_both_catalogues_as_markdown() -> None:
    result = CliRunner().invoke(main, ["conformance", "list", "--markdown"])
    assert result.exit_code == 0
    assert "### Receiver catalogue" in result.output and "### Sender catalogue" in result.output
    assert "| `tls-bad-server-certificate` | yes | ETT 7 / 17 |" in result.output
