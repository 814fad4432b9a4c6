"""The test/demo PKI: certificates the way cryptography's verifier and OpenSSL expect them (RFC 5280 extensions, critical where required)."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from xdr_edge.devtools.pki import DemoPki
from xdr_edge.minting import CLIENT_URI_PREFIX, CertificateAuthority


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_root_ca_extensions(pki_ca: CertificateAuthority) -> None:
    cert = pki_ca.cert
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert bc.critical and bc.value.ca
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.issuer == cert.subject
    assert pki_ca.is_root and pki_ca.chain == ()


def test_intermediate_has_aki_of_parent_and_leaf_chain(pki_ca: CertificateAuthority) -> None:
    inter = CertificateAuthority.create("intermediate", parent=pki_ca)
    aki = inter.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = pki_ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert inter.cert.issuer == pki_ca.cert.subject
    leaf = inter.issue_client("someone", emails=["a@direct.example.org"])
    assert leaf.chain == (inter.cert,)
    assert leaf.chain_pem == inter.cert_pem
    assert inter.root is pki_ca


def test_client_cert_passes_cryptography_client_verifier(pki_ca: CertificateAuthority) -> None:
    inter = CertificateAuthority.create("intermediate", parent=pki_ca)
    issued = inter.issue_client(
        "dr smith", practice_id="practice-a", organization="Practice A", emails=["dr.smith@direct.a.org"]
    )
    verifier = PolicyBuilder().store(Store([pki_ca.cert])).build_client_verifier()
    verified = verifier.verify(issued.cert, list(issued.chain))
    assert verified.subjects == [x509.RFC822Name("dr.smith@direct.a.org")]
    subject = issued.cert.subject
    assert subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == "practice-a"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Practice A"
    eku = issued.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH] and not eku.critical
    assert not issued.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_client_cert_without_names_gets_uri_san(pki_ca: CertificateAuthority) -> None:
    issued = pki_ca.issue_client("Practice A client")
    san = issued.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        CLIENT_URI_PREFIX + "Practice%20A%20client"
    ]
    verifier = PolicyBuilder().store(Store([pki_ca.cert])).build_client_verifier()
    assert verifier.verify(issued.cert, []).subjects is not None


def test_untrusted_client_rejected_by_verifier(pki_ca: CertificateAuthority) -> None:
    other = CertificateAuthority.create("other")
    issued = other.issue_client("x", emails=["x@y.org"])
    verifier = PolicyBuilder().store(Store([pki_ca.cert])).build_client_verifier()
    with pytest.raises(VerificationError):
        verifier.verify(issued.cert, [])


def test_server_cert_names_and_rsa_key_usage(pki_ca: CertificateAuthority) -> None:
    issued = pki_ca.issue_server(["localhost", "127.0.0.1"], key_type="rsa")
    san = issued.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    ku = issued.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment
    assert isinstance(issued.key, rsa.RSAPrivateKey)
    verifier = PolicyBuilder().store(Store([pki_ca.cert])).build_server_verifier(x509.DNSName("localhost"))
    assert len(verifier.verify(issued.cert, [])) == 2


def test_explicit_validity_window(pki_ca: CertificateAuthority) -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    issued = pki_ca.issue_client("old", not_before=start, not_after=start + timedelta(days=2))
    assert issued.cert.not_valid_before_utc == start
    assert issued.cert.not_valid_after_utc == start + timedelta(days=2)
    with pytest.raises(ValueError, match="not_after"):
        pki_ca.issue_client("bad", not_before=start, not_after=start)


def test_crl_lists_revoked_serials(pki_ca: CertificateAuthority) -> None:
    revoked = pki_ca.issue_client("revoked")
    kept = pki_ca.issue_client("kept")
    crl = pki_ca.crl([revoked.cert])
    assert crl.get_revoked_certificate_by_serial_number(revoked.cert.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(kept.cert.serial_number) is None
    assert crl.is_signature_valid(cast(CertificateIssuerPublicKeyTypes, pki_ca.cert.public_key()))
    with pytest.raises(ValueError, match="not issued by this CA"):
        CertificateAuthority.create("other").crl([revoked.cert])


def test_write_pem_and_p12_modes_and_contents(tmp_path: Path, pki_ca: CertificateAuthority) -> None:
    inter = CertificateAuthority.create("intermediate", parent=pki_ca)
    issued = inter.issue_client("c", emails=["c@d.org"])
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "c.key"
    key_path.write_bytes(b"old")
    key_path.chmod(0o644)
    issued.write_pem(cert_path, key_path)
    assert _mode(key_path) == 0o600
    certs = x509.load_pem_x509_certificates(cert_path.read_bytes())
    assert certs == [issued.cert, inter.cert]
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert key.public_key() == issued.cert.public_key()
    assert b"BEGIN PRIVATE KEY" in issued.key_pem
    issued.write_pem(cert_path, key_path, include_chain=False)
    assert x509.load_pem_x509_certificates(cert_path.read_bytes()) == [issued.cert]

    p12 = tmp_path / "c.p12"
    issued.write_p12(p12, b"s3cret")
    assert _mode(p12) == 0o600
    loaded = pkcs12.load_pkcs12(p12.read_bytes(), b"s3cret")
    assert loaded.cert is not None and loaded.cert.certificate == issued.cert
    assert [c.certificate for c in loaded.additional_certs] == [inter.cert]
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(p12.read_bytes(), b"wrong")
    assert (
        len(issued.fingerprint_sha256) == 64
        and issued.fingerprint_sha256 == issued.fingerprint_sha256.lower()
    )


def test_demo_pki_files(demo_pki: DemoPki) -> None:
    assert set(demo_pki.practices) == {"practice-a", "practice-b"}
    for practice in demo_pki.practices.values():
        for key_file in (practice.key, practice.p12, practice.p12_password_file):
            assert _mode(key_file) == 0o600
        password = practice.p12_password_file.read_bytes().rstrip(b"\n")
        loaded = pkcs12.load_pkcs12(practice.p12.read_bytes(), password)
        assert loaded.cert is not None
        assert loaded.cert.certificate.fingerprint(hashes.SHA256()).hex() == practice.fingerprint_sha256
    assert _mode(demo_pki.server_key) == 0o600
    ca = x509.load_pem_x509_certificate(demo_pki.ca_cert.read_bytes())
    expired = x509.load_pem_x509_certificate(demo_pki.expired_client_cert.read_bytes())
    assert expired.issuer == ca.subject
    assert expired.not_valid_after_utc < datetime.now(UTC)
    untrusted = x509.load_pem_x509_certificate(demo_pki.untrusted_client_cert.read_bytes())
    assert untrusted.issuer != ca.subject
    crl = x509.load_pem_x509_crl(demo_pki.crl.read_bytes())
    assert len(crl) == 0 and crl.is_signature_valid(cast(CertificateIssuerPublicKeyTypes, ca.public_key()))


def test_demo_pki_loads_into_ssl_contexts(demo_pki: DemoPki) -> None:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(demo_pki.server_cert, demo_pki.server_key)
    server.load_verify_locations(demo_pki.ca_cert)
    server.load_verify_locations(demo_pki.crl)
    practice = demo_pki.practices["practice-a"]
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_cert_chain(practice.cert, practice.key)
    assert server.cert_store_stats()["crl"] == 1
