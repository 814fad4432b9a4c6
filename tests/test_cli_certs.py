"""``xdr-edge certs demo-pki`` and ``xdr-edge certs inspect`` through click's CliRunner, with a real registry."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from xdr_edge.certs import load_identity
from xdr_edge.cli import main
from xdr_edge.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE
from xdr_edge.devtools.pki import DemoPki, write_demo_pki
from xdr_edge.practice import ClientCredential
from xdr_edge.registry import open_registry


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPki:
    return write_demo_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def registry_url(pki: DemoPki, tmp_path_factory: pytest.TempPathFactory) -> str:
    url = str(tmp_path_factory.mktemp("reg") / "registry.db")
    registry = open_registry(url)
    registry.init(actor="test")
    registry.add_trust_anchor(pki.ca_cert.read_bytes(), actor="test")
    registry.add_practice("practice-a", "Practice A", actor="test")
    registry.enroll("practice-a", pki.practices["practice-a"].cert.read_bytes(), actor="test")
    registry.bind("practice-a", "dr.smith@direct.practice-a.org", actor="test")
    return url


def test_demo_pki_writes_and_lists_every_file(tmp_path: Path) -> None:
    target = tmp_path / "pki"
    result = run(
        "certs", "demo-pki", target, "--practice", "clinic=front@direct.clinic.example,direct.clinic.example"
    )
    assert result.exit_code == 0, result.output
    listed = [Path(line.split()[-1]) for line in result.stdout.splitlines()[1:]]
    assert all(p.is_file() for p in listed)
    assert {p.name for p in listed} == {p.name for p in target.iterdir() if p.is_file()}
    assert {"ca.pem", "server.pem", "clinic.pem", "clinic.key", "clinic.p12", "clinic.p12.pass"} <= {
        p.name for p in listed
    }
    assert stat.S_IMODE((target / "clinic.key").stat().st_mode) == 0o600
    identity = load_identity(ClientCredential(cert=target / "clinic.pem", key=target / "clinic.key"))
    assert identity.san_emails == ("front@direct.clinic.example", "direct.clinic.example")
    assert "PRIVATE KEY" not in result.output


def test_demo_pki_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    assert run("certs", "demo-pki", tmp_path).exit_code == 0
    before = (tmp_path / "ca.pem").read_bytes()
    again = run("certs", "demo-pki", tmp_path)
    assert again.exit_code == EXIT_BAD_INPUT and "--force" in again.stderr
    assert (tmp_path / "ca.pem").read_bytes() == before
    assert run("certs", "demo-pki", tmp_path, "--force").exit_code == 0
    assert (tmp_path / "ca.pem").read_bytes() != before


def test_demo_pki_rejects_a_malformed_practice(tmp_path: Path) -> None:
    result = run("certs", "demo-pki", tmp_path, "--practice", "no-addresses")
    assert result.exit_code == 2 and "ID=ADDRESS" in result.stderr


def test_inspect_prints_the_certificate(pki: DemoPki) -> None:
    path = pki.practices["practice-a"].cert
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    result = run("certs", "inspect", path)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "subject:        UID=practice-a,CN=practice-a edge client" in out
    assert "issuer:         CN=xdr-edge demo CA" in out
    assert f"SHA-256:        {cert.fingerprint(hashes.SHA256()).hex()}" in out
    assert "SAN e-mail:     dr.smith@direct.practice-a.org" in out
    assert "extended usage: clientAuth" in out
    assert "key usage:      digital_signature" in out
    assert "days left" in out


def test_inspect_json_of_an_expired_der_certificate(pki: DemoPki, tmp_path: Path) -> None:
    cert = x509.load_pem_x509_certificate(pki.expired_client_cert.read_bytes())
    der = tmp_path / "expired.der"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    result = run("certs", "inspect", der, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (only,) = data["certificates"]
    assert only["expired"] is True and only["not_yet_valid"] is False
    assert only["subject"] == "UID=practice-a,CN=practice-a (expired)"
    assert data["registry"] is None
    assert "(EXPIRED)" in run("certs", "inspect", der).stdout


def test_inspect_with_registry_names_the_practice(pki: DemoPki, registry_url: str) -> None:
    path = pki.practices["practice-a"].cert
    text = run("certs", "inspect", path, "--registry", registry_url)
    assert text.exit_code == 0, text.output
    assert f"registry {registry_url}: practice practice-a (fingerprint" in text.stdout
    assert "bound addresses: dr.smith@direct.practice-a.org" in text.stdout
    data = json.loads(run("certs", "inspect", path, "--registry", registry_url, "--json").stdout)
    assert data["registry"]["accepted"] is True
    assert data["registry"]["practice_id"] == "practice-a"
    assert data["registry"]["url"] == registry_url


def test_inspect_with_registry_reports_a_rejection_with_exit_1(pki: DemoPki, registry_url: str) -> None:
    untrusted = run("certs", "inspect", pki.untrusted_client_cert, "--registry", registry_url)
    assert untrusted.exit_code == EXIT_FAILURE
    assert "NOT ACCEPTED" in untrusted.stdout
    not_enrolled = run(
        "certs", "inspect", pki.practices["practice-b"].cert, "--registry", registry_url, "--json"
    )
    assert not_enrolled.exit_code == EXIT_FAILURE
    data = json.loads(not_enrolled.stdout)
    assert data["registry"]["accepted"] is False and data["registry"]["reason"]


def test_inspect_a_chain_file_lists_every_certificate(pki: DemoPki, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.practices["practice-a"].cert.read_bytes() + pki.ca_cert.read_bytes())
    data = json.loads(run("certs", "inspect", bundle, "--json").stdout)
    assert [c["is_ca"] for c in data["certificates"]] == [False, True]
    assert "[2 of 2]" in run("certs", "inspect", bundle).stdout


def test_inspect_rejects_a_file_that_is_not_a_certificate(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    result = run("certs", "inspect", junk)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "not a PEM or DER X.509 certificate file" in result.stderr and str(junk) in result.stderr


def test_inspect_with_a_missing_registry_exits_2(pki: DemoPki, tmp_path: Path) -> None:
    result = run("certs", "inspect", pki.ca_cert, "--registry", tmp_path / "nope.db")
    assert result.exit_code == EXIT_BAD_INPUT and "registry init" in result.stderr
