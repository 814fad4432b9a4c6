"""The sender catalogue's ``practice-binding`` case: given the bindings (the receiver's registry, or ``--practice``
pairs), a request whose sender address is not bound to the practice of its client certificate fails.

The good sender is the real ``xdr-edge send`` command over mutual TLS on loopback. The broken one presents
practice B's certificate with practice A's address: ``xdr-edge send`` itself refuses to (its pre-flight reads the
certificate's SAN e-mail addresses), so it is a raw sender built from the conformance suite's own framing, as a
sender with a misconfigured practice table would send it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization

from xdr_edge.certs import fingerprint_sha256, load_certificates
from xdr_edge.cli import main
from xdr_edge.conformance.bindings import DeclaredBindings, RegistryBindings, SenderBindings
from xdr_edge.conformance.exchange import ExchangeKind
from xdr_edge.conformance.receiver_context import ReceiverContext, ReceiverTarget
from xdr_edge.conformance.recording import RecordingEndpoint, SenderEndpointConfig
from xdr_edge.conformance.report import format_table
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.conformance.sender import judge_recorded
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.practice import ClientCredential
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.protocol.model import DirectAddress

A_FROM = "dr.smith@direct.practice-a.org"
B_FROM = "dr.jones@direct.practice-b.org"
TO = "records@direct.hospital.example"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """PKI and registry (practice-a bound to A_FROM, practice-b to B_FROM); its receiver is not used here."""
    with start_lab(tmp_path_factory.mktemp("lab")) as running:
        yield running


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("docs") / "ccd.xml"
    path.write_bytes(sample_ccda())
    return path


def _declared(lab: Lab) -> DeclaredBindings:
    a, b = lab.pki.practices["practice-a"], lab.pki.practices["practice-b"]
    return DeclaredBindings.parse([(str(a.cert), A_FROM), (b.fingerprint_sha256, "direct.practice-b.org")])


def _registry(lab: Lab) -> RegistryBindings:
    return RegistryBindings(lab.registry, tuple(load_certificates(lab.pki.ca_cert)))


BINDINGS: dict[str, Callable[[Lab], SenderBindings]] = {"registry": _registry, "declared": _declared}


def _send(lab: Lab, url: str, document: Path, *, practice: str, sender: str) -> Result:
    """The real ``xdr-edge send`` with ``practice``'s certificate, claiming ``sender`` (ad hoc: no pre-flight
    binding, the user asserts the address belongs to the certificate)."""
    demo = lab.pki.practices[practice]
    args = [
        "send", str(document), "--from", sender, "--to", TO, "--endpoint", url, "--ca", str(lab.ca_bundle),
        "--cert", str(demo.cert), "--key", str(demo.key),
    ]  # fmt: skip
    return CliRunner().invoke(main, args)


def _send_raw(lab: Lab, url: str, *, practice: str, sender: str) -> None:
    """A sender that presents ``practice``'s certificate and claims ``sender`` (direct:from and
    authorTelecommunication) in an otherwise valid request."""
    demo = lab.pki.practices[practice]
    target = ReceiverTarget(
        endpoint=url,
        ca_bundle=lab.ca_bundle,
        credential=ClientCredential(cert=demo.cert, key=demo.key),
        bound_from=DirectAddress.parse(sender),
        unbound_from=DirectAddress.parse(B_FROM),
        recipients=(DirectAddress.parse(TO),),
    )
    ctx = ReceiverContext(target)
    answer = ctx.send(ctx.frame(ctx.submission()))
    assert answer.kind is ExchangeKind.SUCCESS, (
        answer.describe()
    )  # the endpoint records; it judges afterwards


def _endpoint(lab: Lab) -> RecordingEndpoint:
    return RecordingEndpoint(
        SenderEndpointConfig(cert=lab.pki.server_cert, key=lab.pki.server_key, client_ca=lab.pki.ca_cert)
    )


@pytest.mark.parametrize("source", sorted(BINDINGS))
def test_unmodified_send_passes_every_required_case(lab: Lab, document: Path, source: str) -> None:
    with _endpoint(lab) as endpoint:
        sent = _send(lab, endpoint.url, document, practice="practice-a", sender=A_FROM)
        assert sent.exit_code == 0, sent.output
        assert endpoint.wait(1, timeout=10)
        report = judge_recorded(endpoint, expect=1, bindings=BINDINGS[source](lab))
    not_passed = {r.case.id: r.status.value for r in report.results if not r.passed}
    assert not_passed == {"tls-bad-server-certificate": "SKIP"}
    assert report.exit_status == 0
    observed = report.result("practice-binding").observed
    assert observed.startswith("1 request(s): every sender address bound to the certificate's practice")


@pytest.mark.parametrize("source", sorted(BINDINGS))
def test_practice_b_certificate_with_practice_a_address_fails(lab: Lab, document: Path, source: str) -> None:
    with _endpoint(lab) as endpoint:
        refused = _send(lab, endpoint.url, document, practice="practice-b", sender=A_FROM)
        assert refused.exit_code == 2 and "not covered by the certificate" in refused.output  # our own sender
        _send_raw(lab, endpoint.url, practice="practice-b", sender=A_FROM)
        assert endpoint.wait(1, timeout=10)
        report = judge_recorded(endpoint, expect=1, bindings=BINDINGS[source](lab))
    assert report.exit_status == 1
    assert {r.case.id for r in report.results if r.failed} == {"practice-binding"}
    result = report.result("practice-binding")
    assert result.observed.startswith(f"request 1: direct:from {A_FROM} is not bound to ")
    assert "UID=practice-b" in result.observed  # the certificate it came with
    if source == "registry":
        assert "practice 'practice-b'" in result.observed
    else:
        assert "it is bound to the certificate" in result.observed and "UID=practice-a" in result.observed
    assert "FAILED required: practice-binding" in format_table(report)


def test_a_certificate_the_bindings_do_not_know_fails(lab: Lab, document: Path, tmp_path: Path) -> None:
    only_a = DeclaredBindings.parse([(str(lab.pki.practices["practice-a"].cert), A_FROM)])
    with _endpoint(lab) as endpoint:
        assert _send(lab, endpoint.url, document, practice="practice-b", sender=B_FROM).exit_code == 0
        assert endpoint.wait(1, timeout=10)
        report = judge_recorded(endpoint, expect=1, bindings=only_a)
    result = report.result("practice-binding")
    assert result.failed and "is not one of the --practice certificates" in result.observed


def test_without_bindings_the_case_is_skipped_and_says_why(lab: Lab, document: Path) -> None:
    with _endpoint(lab) as endpoint:
        _send_raw(lab, endpoint.url, practice="practice-b", sender=A_FROM)
        assert endpoint.wait(1, timeout=10)
        report = judge_recorded(endpoint, expect=1)
    result = report.result("practice-binding")
    assert result.skipped and "--registry URL, or --practice" in result.detail
    # a pass does not hide that the central rule was not tried: the verdict names the case and why
    verdict = format_table(report).rstrip().splitlines()[-1]
    assert verdict.startswith("OK, but required case(s) not judged: ") and "practice-binding (" in verdict
    assert "--registry URL, or --practice" in verdict and report.exit_status == 0
    assert report.counts()["required_skipped"] == len(report.required_skipped) >= 1


def test_registry_refuses_an_unenrolled_certificate_with_its_reason(lab: Lab) -> None:
    bindings: SenderBindings = _registry(lab)
    untrusted = load_certificates(lab.pki.untrusted_client_cert)[0]
    found = bindings.problems(untrusted, [("direct:from", DirectAddress.parse(A_FROM))], at=datetime.now(UTC))
    assert len(found) == 1 and "maps the client certificate" in found[0] and "to no practice" in found[0]


def test_declared_bindings_read_files_fingerprints_addresses_and_domains(lab: Lab, tmp_path: Path) -> None:
    a = lab.pki.practices["practice-a"]
    der = tmp_path / "a.der"
    der.write_bytes(load_certificates(a.cert)[0].public_bytes(serialization.Encoding.DER))
    colons = ":".join(re.findall("..", a.fingerprint_sha256.upper()))
    bindings = DeclaredBindings.parse([(str(der), A_FROM), (colons, "@direct.practice-a.org")])
    assert len(bindings) == 1  # both name practice-a's certificate
    assert "2 --practice binding(s) for 1 certificate(s)" == bindings.describe()
    cert = load_certificates(a.cert)[0]
    assert fingerprint_sha256(cert) == a.fingerprint_sha256
    other = DirectAddress.parse("anyone@direct.practice-a.org")
    assert bindings.problems(cert, [("authorTelecommunication", other)], at=datetime.now(UTC)) == []
    for bad, where in [
        (("not-a-file-nor-hex", A_FROM), "neither a certificate file"),
        ((colons, "x"), "domain"),
    ]:
        with pytest.raises(ConfigurationError, match=where):
            DeclaredBindings.parse([bad])


# ---------------------------------------------------------------------------------------------------------------
# The command: `xdr-edge conformance sender --registry URL` / `--practice CERT ADDRESS`


def test_cli_sender_with_registry_exits_1_naming_the_defect(lab: Lab, document: Path, tmp_path: Path) -> None:
    """The whole command in a child process, as a certification run would use it; the sender presents practice
    B's certificate with practice A's address."""
    launcher = "from xdr_edge.cli import main; main()"
    command = [
        sys.executable, "-c", launcher, "conformance", "sender", "--listen", "127.0.0.1:0",
        "--cert", str(lab.pki.server_cert), "--key", str(lab.pki.server_key), "--client-ca", str(lab.pki.ca_cert),
        "--registry", lab.registry.location, "--expect", "1", "--timeout", "60", "--json", str(tmp_path / "s.json"),
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"},
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        found = re.search(r"listening on (https://127\.0\.0\.1:\d+/xdr)", first)
        assert found, first
        _send_raw(lab, found.group(1), practice="practice-b", sender=A_FROM)
        output, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1, output + errors
    assert "FAILED required: practice-binding" in output
    flat = " ".join(output.split())
    assert f"direct:from {A_FROM} is not bound to practice 'practice-b'" in flat
    data = json.loads((tmp_path / "s.json").read_text())
    failed = [r for r in data["results"] if r["status"] == "FAIL"]
    assert [r["id"] for r in failed] == ["practice-binding"]
    assert failed[0]["source"].startswith("our practice-binding rule")


def test_cli_sender_binding_options_are_checked_before_listening(lab: Lab, tmp_path: Path) -> None:
    base = [
        "conformance", "sender", "--listen", "127.0.0.1:0", "--cert", str(lab.pki.server_cert),
        "--key", str(lab.pki.server_key), "--client-ca", str(lab.pki.ca_cert), "--timeout", "1",
    ]  # fmt: skip
    a_cert = str(lab.pki.practices["practice-a"].cert)
    cases = {
        "give the bindings either as --registry or as --practice": [
            "--registry", lab.registry.location, "--practice", a_cert, A_FROM,
        ],
        "does not exist": ["--registry", str(tmp_path / "none.db")],
        "neither a certificate file nor a SHA-256 fingerprint": ["--practice", "nonsense", A_FROM],
        "not a Direct address": ["--practice", a_cert, "not an address"],
    }  # fmt: skip
    for message, extra in cases.items():
        result = CliRunner().invoke(main, [*base, *extra])
        assert result.exit_code == 2, (message, result.output)
        assert message in result.output, result.output
        assert "listening on" not in result.output
