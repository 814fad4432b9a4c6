"""Certificate registry: one suite for both engines (real SQLite files in tmp_path, a real PostgreSQL server in a
schema per test), real certificates from xdr_edge.minting. Tests of SQLite's own files (URLs, the version 1
layout, WAL) use ``sqlite_registry``; every other test runs once per engine through ``registry``."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.concurrency import run_together
from xdr_edge.certs import parse_certificates
from xdr_edge.minting import CertificateAuthority
from xdr_edge.practice import Practice
from xdr_edge.protocol.errors import CertificateError, ConfigurationError, StoreError
from xdr_edge.protocol.model import DirectAddress
from xdr_edge.registry import (
    NOT_ENROLLED,
    SCHEMA_VERSION,
    Access,
    Database,
    IndexedDocument,
    IndexedSubmission,
    MappingKind,
    Registry,
    SqliteDatabase,
    SqliteStore,
    SqlStore,
    SubmissionIndex,
    normalize_fingerprint,
    open_database,
    open_registry,
    parse_registry_url,
    verify_client_certificate,
)
from xdr_edge.registry.migrations import MIGRATIONS
from xdr_edge.registry.records import AuditEvent
from xdr_edge.registry.verify import public_key_id

ACTOR = "alice-admin"


@pytest.fixture(scope="module")
def root() -> CertificateAuthority:
    return CertificateAuthority.create("Test Practices Root")


@pytest.fixture(scope="module")
def other_root() -> CertificateAuthority:
    return CertificateAuthority.create("Untrusted Root")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "registry.db"


def _populated(url: str, root: CertificateAuthority) -> Registry:
    reg = open_registry(url)
    assert reg.init(actor=ACTOR) is True
    reg.add_trust_anchor(root.cert, actor=ACTOR)
    reg.add_practice("p-100", "Riverside Clinic", actor=ACTOR)
    reg.add_practice("p-200", "Hilltop Family Practice", actor=ACTOR)
    return reg


@pytest.fixture
def registry(registry_url: str, root: CertificateAuthority) -> Iterator[Registry]:
    """A registry with a trust anchor and two practices, on SQLite and on PostgreSQL."""
    with _populated(registry_url, root) as reg:
        yield reg


@pytest.fixture
def sqlite_registry(db_path: Path, root: CertificateAuthority) -> Registry:
    return _populated(str(db_path), root)


def _audit_actions(reg: Registry) -> list[str]:
    return [entry.action for entry in reversed(reg.audit_log(1000))]


# -- identification ------------------------------------------------------------------------------------


def test_enrolled_certificate_identifies_its_practice_by_fingerprint(
    registry: Registry, root: CertificateAuthority
) -> None:
    issued = root.issue_client("riverside edge", emails=["intake@riverside.example"])
    record = registry.enroll("p-100", issued.cert_pem, actor=ACTOR)
    assert record.fingerprint_sha256 == issued.fingerprint_sha256
    assert record.practice_id == "p-100"

    ident = registry.identify(issued.cert)
    assert ident.accepted
    assert ident.practice is not None and ident.practice.id == "p-100"
    assert ident.matched_by == "fingerprint"
    assert ident.fingerprint == issued.fingerprint_sha256
    assert "CN=riverside edge" in ident.subject
    json.dumps(ident.as_dict())  # printable by the CLI's --json


def test_enrolling_again_is_a_no_op_and_another_practice_is_refused(
    registry: Registry, root: CertificateAuthority
) -> None:
    issued = root.issue_client("riverside edge")
    registry.enroll("p-100", issued.cert, actor=ACTOR)
    before = len(registry.audit_log(1000))
    registry.enroll("p-100", issued.cert, actor=ACTOR)
    assert len(registry.audit_log(1000)) == before
    with pytest.raises(ConfigurationError, match="already enrolled to practice 'p-100'"):
        registry.enroll("p-200", issued.cert, actor=ACTOR)
    with pytest.raises(ConfigurationError, match="no practice 'p-999'"):
        registry.enroll("p-999", root.issue_client("x").cert, actor=ACTOR)


def test_trusted_but_not_enrolled_maps_to_no_practice(registry: Registry, root: CertificateAuthority) -> None:
    issued = root.issue_client("stranger", practice_id="p-100")
    ident = registry.identify(issued.cert)  # no mapping rules configured: only pins count
    assert not ident.accepted
    assert ident.reason == NOT_ENROLLED


def test_subject_uid_rule_maps_to_the_named_practice(registry: Registry, root: CertificateAuthority) -> None:
    registry.add_mapping_rule("subject-attribute", attribute="uid", actor=ACTOR)
    assert registry.mapping_rules()[0].attribute == "UID"
    issued = root.issue_client("hilltop edge", practice_id="p-200")
    ident = registry.identify(issued.cert)
    assert ident.practice is not None and ident.practice.id == "p-200"
    assert ident.matched_by == "subject-attribute:UID"
    unknown = registry.identify(root.issue_client("ghost", practice_id="p-404").cert)
    assert unknown.reason == NOT_ENROLLED


def test_san_email_rule_uses_exact_address_bindings(registry: Registry, root: CertificateAuthority) -> None:
    registry.bind("p-100", "intake@riverside.example", actor=ACTOR)
    registry.add_mapping_rule(MappingKind.SAN_EMAIL, actor=ACTOR)
    cert = root.issue_client("riverside", emails=["intake@riverside.example"]).cert
    ident = registry.identify(cert)
    assert ident.practice_id == "p-100" and ident.matched_by == "san-email"
    other = root.issue_client("riverside 2", emails=["billing@riverside.example"]).cert
    assert registry.identify(other).reason == NOT_ENROLLED


def test_san_email_domain_and_san_dns_rules_use_domain_bindings(
    registry: Registry, root: CertificateAuthority
) -> None:
    registry.bind("p-200", "@direct.hilltop.example", actor=ACTOR)
    registry.add_mapping_rule("san-email-domain", actor=ACTOR)
    by_mail = registry.identify(root.issue_client("h1", emails=["dr.who@direct.hilltop.example"]).cert)
    assert by_mail.practice_id == "p-200" and by_mail.matched_by == "san-email-domain"

    by_dns_cert = root.issue_client("h2", dns=["direct.hilltop.example"]).cert
    assert registry.identify(by_dns_cert).reason == NOT_ENROLLED
    registry.add_mapping_rule("san-dns", actor=ACTOR)
    by_dns = registry.identify(by_dns_cert)
    assert by_dns.practice_id == "p-200" and by_dns.matched_by == "san-dns"


def test_rules_are_tried_in_order_and_ambiguity_is_rejected(
    registry: Registry, root: CertificateAuthority
) -> None:
    registry.bind("p-100", "a@one.example", actor=ACTOR)
    registry.bind("p-200", "b@two.example", actor=ACTOR)
    registry.add_mapping_rule("subject-attribute", attribute="UID", actor=ACTOR)
    registry.add_mapping_rule("san-email", actor=ACTOR)
    first_wins = registry.identify(root.issue_client("c", practice_id="p-200", emails=["a@one.example"]).cert)
    assert first_wins.practice_id == "p-200" and first_wins.matched_by == "subject-attribute:UID"

    both = registry.identify(root.issue_client("c", emails=["a@one.example", "b@two.example"]).cert)
    assert not both.accepted
    assert "several practices" in both.reason and "'p-100'" in both.reason and "'p-200'" in both.reason


def test_rule_limited_to_an_issuer_ignores_other_anchors(
    registry: Registry, root: CertificateAuthority
) -> None:
    second = CertificateAuthority.create("Second Root")
    registry.add_trust_anchor(second.cert_pem, actor=ACTOR)
    registry.add_mapping_rule(
        "subject-attribute", attribute="UID", issuer_fingerprint=_fp(second.cert).upper(), actor=ACTOR
    )
    assert registry.identify(root.issue_client("c", practice_id="p-100").cert).reason == NOT_ENROLLED
    assert registry.identify(second.issue_client("c", practice_id="p-100").cert).practice_id == "p-100"
    with pytest.raises(ConfigurationError, match="no trust anchor"):
        registry.add_mapping_rule("san-dns", issuer_fingerprint="ab" * 32, actor=ACTOR)


def test_intermediate_ca_chain_is_verified_with_the_sent_intermediates(
    registry: Registry, root: CertificateAuthority
) -> None:
    intermediate = CertificateAuthority.create("Practices Issuing CA", parent=root)
    issued = intermediate.issue_client("via intermediate")
    registry.enroll("p-100", issued.cert, actor=ACTOR, chain=issued.chain)
    assert registry.identify(issued.cert, issued.chain).practice_id == "p-100"
    missing = registry.identify(issued.cert)
    assert not missing.accepted and "not issued by a trusted CA" in missing.reason


# -- rejections ------------------------------------------------------------------------------------


def test_untrusted_issuer_is_rejected_even_when_enrolled(
    registry: Registry, other_root: CertificateAuthority
) -> None:
    issued = other_root.issue_client("impostor", practice_id="p-100")
    registry.enroll("p-100", issued.cert, actor=ACTOR, ahead_of_anchor=True)
    ident = registry.identify(issued.cert)
    assert not ident.accepted
    assert ident.reason.startswith("not issued by a trusted CA")
    assert "CN=Untrusted Root" in ident.reason


def test_expired_and_not_yet_valid_certificates_are_rejected(
    registry: Registry, root: CertificateAuthority
) -> None:
    now = datetime.now(UTC)
    expired = root.issue_client(
        "old", not_before=now - timedelta(days=400), not_after=now - timedelta(days=30)
    )
    registry.enroll("p-100", expired.cert, actor=ACTOR)
    ident = registry.identify(expired.cert)
    assert not ident.accepted
    assert ident.reason.startswith(f"certificate expired on {expired.cert.not_valid_after_utc:%Y-%m-%d}")

    future = root.issue_client("new", not_before=now + timedelta(days=2), not_after=now + timedelta(days=30))
    registry.enroll("p-100", future.cert, actor=ACTOR)
    assert registry.identify(future.cert).reason.startswith("certificate not valid before")
    assert registry.identify(future.cert, at=now + timedelta(days=3)).practice_id == "p-100"


def test_non_client_certificate_is_rejected(registry: Registry, root: CertificateAuthority) -> None:
    server = root.issue_server(["edge.example"])
    registry.enroll("p-100", server.cert, actor=ACTOR)
    ident = registry.identify(server.cert)
    assert not ident.accepted and "clientAuth" in ident.reason


def test_revoked_flag_rejects_at_once(registry: Registry, root: CertificateAuthority) -> None:
    issued = root.issue_client("riverside edge")
    registry.enroll("p-100", issued.cert, actor=ACTOR)
    fingerprint_as_pasted = ":".join(f"{b:02X}" for b in issued.cert.fingerprint(hashes.SHA256()))
    record = registry.revoke(fingerprint_as_pasted, "key compromise", actor=ACTOR)
    assert record.revoked and record.revoked_reason == "key compromise"
    ident = registry.identify(issued.cert)
    assert not ident.accepted
    assert ident.reason.startswith("certificate revoked on ") and ident.reason.endswith("(key compromise)")
    with pytest.raises(ConfigurationError, match="revoked"):
        registry.enroll("p-100", issued.cert, actor=ACTOR)


def test_revoking_a_rule_mapped_certificate_blocks_it(registry: Registry, root: CertificateAuthority) -> None:
    registry.add_mapping_rule("subject-attribute", attribute="UID", actor=ACTOR)
    issued = root.issue_client("lost laptop", practice_id="p-100")
    assert registry.identify(issued.cert).accepted
    with pytest.raises(ConfigurationError, match="no certificate with fingerprint"):
        registry.revoke(issued.fingerprint_sha256, "lost", actor=ACTOR)
    record = registry.revoke(issued.cert, "lost", actor=ACTOR)
    assert record.practice_id is None and record.revoked
    assert not registry.identify(issued.cert).accepted


def test_crl_revocation_and_expired_crl(registry: Registry, root: CertificateAuthority) -> None:
    revoked = root.issue_client("revoked one")
    kept = root.issue_client("kept one")
    registry.enroll("p-100", revoked.cert, actor=ACTOR)
    registry.enroll("p-100", kept.cert, actor=ACTOR)
    crl = root.crl([revoked.cert], next_update_days=7)
    loaded = registry.load_crl(crl.public_bytes(Encoding.PEM), actor=ACTOR)
    assert loaded.issuer == "CN=Test Practices Root"

    ident = registry.identify(revoked.cert)
    assert not ident.accepted
    assert "revoked on" in ident.reason and "(no reason given)" in ident.reason
    assert registry.identify(kept.cert).accepted

    later = datetime.now(UTC) + timedelta(days=30)
    stale = registry.identify(kept.cert, at=later)
    assert not stale.accepted
    assert stale.reason.startswith("revocation status unknown: the CRL of CN=Test Practices Root expired on")


def test_crl_of_an_intermediate_is_checked_against_the_chain(
    registry: Registry, root: CertificateAuthority
) -> None:
    intermediate = CertificateAuthority.create("Issuing CA", parent=root)
    issued = intermediate.issue_client("behind intermediate")
    registry.enroll("p-100", issued.cert, actor=ACTOR, chain=issued.chain)
    registry.load_crl(intermediate.crl([issued.cert]).public_bytes(Encoding.DER), actor=ACTOR)
    ident = registry.identify(issued.cert, issued.chain)
    assert not ident.accepted and "CN=behind intermediate revoked on" in ident.reason

    registry.load_crl(root.crl([intermediate.cert]), actor=ACTOR)
    other = intermediate.issue_client("sibling")
    registry.enroll("p-100", other.cert, actor=ACTOR, chain=other.chain)
    sibling = registry.identify(other.cert, other.chain)
    assert not sibling.accepted and "issuing CA CN=Issuing CA revoked on" in sibling.reason


def test_crl_with_a_forged_signature_is_refused(registry: Registry, root: CertificateAuthority) -> None:
    forger = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.cert.subject)
        .last_update(now)
        .next_update(now + timedelta(days=1))
        .sign(forger, hashes.SHA256())
    )
    with pytest.raises(CertificateError, match="not signed by the trust anchor"):
        registry.load_crl(forged, actor=ACTOR)
    assert registry.crls() == []


def test_two_trusted_cas_with_one_name_each_keep_their_own_crl(
    registry: Registry, root: CertificateAuthority
) -> None:
    """A CA re-keyed under its old name, both anchors trusted during the rollover: CRLs are kept per
    (issuer, key id), so loading one CA's CRL does not displace the other's, and each CA's certificates are
    checked against its own CRL."""
    twin = CertificateAuthority.create("Test Practices Root")
    assert twin.cert.subject == root.cert.subject and public_key_id(twin.cert) != public_key_id(root.cert)
    registry.add_trust_anchor(twin.cert, actor=ACTOR)
    root_revoked, root_kept = root.issue_client("root revoked"), root.issue_client("root kept")
    twin_revoked, twin_kept = twin.issue_client("twin revoked"), twin.issue_client("twin kept")
    for issued, practice in (
        (root_revoked, "p-100"),
        (root_kept, "p-100"),
        (twin_revoked, "p-200"),
        (twin_kept, "p-200"),
    ):
        registry.enroll(practice, issued.cert, actor=ACTOR)

    first = registry.load_crl(root.crl([root_revoked.cert]), actor=ACTOR)
    second = registry.load_crl(twin.crl([twin_revoked.cert]), actor=ACTOR)
    assert first.issuer == second.issuer == "CN=Test Practices Root"
    assert first.issuer_key_id == public_key_id(root.cert)
    assert second.issuer_key_id == public_key_id(twin.cert)
    assert {c.issuer_key_id for c in registry.crls()} == {first.issuer_key_id, second.issuer_key_id}

    for refused in (root_revoked, twin_revoked):
        ident = registry.identify(refused.cert)
        assert not ident.accepted and f"{refused.cert.subject.rfc4514_string()} revoked on" in ident.reason
    for accepted, practice in ((root_kept, "p-100"), (twin_kept, "p-200")):
        ident = registry.identify(accepted.cert)
        assert ident.accepted, ident.reason
        assert ident.practice is not None and ident.practice.id == practice
    crl_loads = [e for e in registry.audit_log(100) if e.action == "crl.load"]
    assert {e.detail["issuer_key_id"] for e in crl_loads} == {first.issuer_key_id, second.issuer_key_id}


def test_a_namesake_ca_without_a_crl_of_its_own_is_refused_as_unknown(
    registry: Registry, root: CertificateAuthority
) -> None:
    """Fails closed: a CRL of the name is loaded but none is signed by this CA's key, so its revocation
    status is unknown (an intermediate's CRL slot is per name, where the wrong key could displace the right
    one); the reason says which CRL to load."""
    twin = CertificateAuthority.create("Test Practices Root")
    registry.add_trust_anchor(twin.cert, actor=ACTOR)
    issued = twin.issue_client("twin edge")
    registry.enroll("p-100", issued.cert, actor=ACTOR)
    registry.load_crl(root.crl(), actor=ACTOR)
    ident = registry.identify(issued.cert)
    assert not ident.accepted
    assert ident.reason == (
        "revocation status unknown: a CRL of CN=Test Practices Root is loaded but none is signed by this "
        f"CA's key (key id {public_key_id(twin.cert)[:16]}); load the CRL this CA issued"
    )
    registry.load_crl(twin.crl(), actor=ACTOR)
    assert registry.identify(issued.cert).accepted


def test_verify_treats_a_badly_signed_crl_as_unknown(root: CertificateAuthority) -> None:
    """verify.py alone: a CRL of an intermediate that does not verify means revocation status unknown."""
    intermediate = CertificateAuthority.create("Issuing CA", parent=root)
    issued = intermediate.issue_client("leaf")
    now = datetime.now(UTC)
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(intermediate.cert.subject)
        .last_update(now - timedelta(minutes=1))
        .next_update(now + timedelta(days=1))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    verdict = verify_client_certificate(issued.cert, issued.chain, anchors=[root.cert], crls=[forged])
    assert not verdict.ok and verdict.reason.startswith("revocation status unknown")
    good = verify_client_certificate(
        issued.cert, issued.chain, anchors=[root.cert], crls=[intermediate.crl()]
    )
    assert good.ok and [c.subject for c in good.chain][-1] == root.cert.subject


def test_older_crl_does_not_replace_a_newer_one(registry: Registry, root: CertificateAuthority) -> None:
    now = datetime.now(UTC)

    def crl_at(moment: datetime) -> x509.CertificateRevocationList:
        return (
            x509.CertificateRevocationListBuilder()
            .issuer_name(root.cert.subject)
            .last_update(moment)
            .next_update(moment + timedelta(days=7))
            .sign(root.key, hashes.SHA256())
        )

    registry.load_crl(crl_at(now), actor=ACTOR)
    with pytest.raises(ConfigurationError, match="older than the one already loaded"):
        registry.load_crl(crl_at(now - timedelta(days=1)), actor=ACTOR)
    assert registry.crls()[0].this_update == now.replace(microsecond=0)


def test_replay_protection_is_per_issuer_key(registry: Registry, root: CertificateAuthority) -> None:
    """An older CRL of a namesake CA's key is not a replay of the other key's newer one: both are kept."""
    twin = CertificateAuthority.create("Test Practices Root")
    registry.add_trust_anchor(twin.cert, actor=ACTOR)
    now = datetime.now(UTC).replace(microsecond=0)

    def crl_of(ca: CertificateAuthority, moment: datetime) -> x509.CertificateRevocationList:
        return (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.cert.subject)
            .last_update(moment)
            .next_update(moment + timedelta(days=7))
            .sign(ca.key, hashes.SHA256())
        )

    registry.load_crl(crl_of(root, now), actor=ACTOR)
    registry.load_crl(crl_of(twin, now - timedelta(days=1)), actor=ACTOR)
    with pytest.raises(ConfigurationError, match=r"\(key [0-9a-f]{16}\) issued .* older than the one"):
        registry.load_crl(crl_of(twin, now - timedelta(days=2)), actor=ACTOR)
    registry.load_crl(crl_of(twin, now), actor=ACTOR)  # newer replaces older, per key
    assert sorted((c.issuer_key_id, c.this_update) for c in registry.crls()) == sorted(
        [(public_key_id(root.cert), now), (public_key_id(twin.cert), now)]
    )


def test_inactive_practice_is_rejected_and_reactivated(
    registry: Registry, root: CertificateAuthority
) -> None:
    issued = root.issue_client("riverside edge")
    registry.enroll("p-100", issued.cert, actor=ACTOR)
    registry.bind("p-100", "intake@riverside.example", actor=ACTOR)
    assert registry.set_active("p-100", False, actor=ACTOR) is True
    assert registry.set_active("p-100", False, actor=ACTOR) is False
    ident = registry.identify(issued.cert)
    assert not ident.accepted
    assert ident.reason == "practice 'p-100' is inactive" and ident.practice_id == "p-100"
    practice = registry.practice("p-100")
    assert practice is not None
    decision = registry.authorize_sender(practice, DirectAddress("intake@riverside.example"))
    assert not decision.allowed and "inactive" in decision.reason
    registry.set_active("p-100", True, actor=ACTOR)
    assert registry.identify(issued.cert).accepted


# -- guard rails: what may be an anchor, what may be enrolled, and taking things away -------------------


def test_a_certificate_that_is_not_a_ca_cannot_be_a_trust_anchor(
    registry: Registry, root: CertificateAuthority
) -> None:
    leaf = root.issue_client("riverside edge")
    before = _audit_actions(registry)
    with pytest.raises(
        CertificateError, match=r"CN=riverside edge cannot be a trust anchor: .*not a CA"
    ) as caught:
        registry.add_trust_anchor(leaf.cert, actor=ACTOR)
    assert caught.value.code == "not-a-ca"
    no_cert_sign = _self_signed_ca("Signs nothing", key_cert_sign=False)
    with pytest.raises(CertificateError, match="keyCertSign"):
        registry.add_trust_anchor(no_cert_sign, actor=ACTOR)
    assert _audit_actions(registry) == before
    intermediate = CertificateAuthority.create("Issuing CA", parent=root)
    assert registry.add_trust_anchor(intermediate.cert, actor=ACTOR).subject == "CN=Issuing CA"


def test_enrolling_a_certificate_no_anchor_vouches_for_is_refused_unless_pinned_ahead(
    registry: Registry, other_root: CertificateAuthority
) -> None:
    issued = other_root.issue_client("next year's partner")
    with pytest.raises(
        CertificateError, match=r"does not chain to a trust anchor .*issuer CN=Untrusted Root"
    ) as caught:
        registry.enroll("p-100", issued.cert, actor=ACTOR)
    assert caught.value.code == "certificate-not-anchored"
    assert registry.certificate(issued.fingerprint_sha256) is None
    record = registry.enroll("p-100", issued.cert, actor=ACTOR, ahead_of_anchor=True)
    assert record.practice_id == "p-100"
    (entry,) = [e for e in registry.audit_log(5) if e.action == "certificate.enroll"]
    assert entry.detail["ahead_of_anchor"] is True and entry.detail["anchor"] is None
    assert not registry.identify(issued.cert).accepted  # pinned, but no anchor yet
    registry.add_trust_anchor(other_root.cert, actor=ACTOR)
    assert registry.identify(issued.cert).practice_id == "p-100"


def test_a_certificate_behind_an_intermediate_is_enrolled_with_its_chain(
    registry: Registry, root: CertificateAuthority
) -> None:
    intermediate = CertificateAuthority.create("Practices Issuing CA", parent=root)
    issued = intermediate.issue_client("via intermediate")
    with pytest.raises(CertificateError, match="give its intermediate CAs"):
        registry.enroll("p-100", issued.cert, actor=ACTOR)
    record = registry.enroll("p-100", issued.cert_pem + issued.chain_pem, actor=ACTOR)  # a file as shipped
    assert record.fingerprint_sha256 == issued.fingerprint_sha256
    (entry,) = [e for e in registry.audit_log(5) if e.action == "certificate.enroll"]
    assert entry.detail["anchor"] == "CN=Test Practices Root"


def test_removing_a_trust_anchor_refuses_its_certificates(
    registry: Registry, root: CertificateAuthority
) -> None:
    issued = root.issue_client("riverside edge")
    registry.enroll("p-100", issued.cert, actor=ACTOR)
    assert registry.identify(issued.cert).accepted
    fingerprint = registry.trust_anchors()[0].fingerprint_sha256
    rule = registry.add_mapping_rule("san-dns", issuer_fingerprint=fingerprint, actor=ACTOR)
    with pytest.raises(
        ConfigurationError, match=rf"named by mapping rule\(s\) {rule.position}; remove them first"
    ):
        registry.remove_trust_anchor(fingerprint, actor=ACTOR)
    registry.remove_mapping_rule(rule.position, actor=ACTOR)
    removed = registry.remove_trust_anchor(fingerprint.upper(), actor="carol")
    assert removed.subject == "CN=Test Practices Root"
    assert registry.trust_anchors() == []
    ident = registry.identify(issued.cert)
    assert not ident.accepted and ident.reason.startswith("not issued by a trusted CA")
    newest = registry.audit_log(1)[0]
    assert (newest.action, newest.actor, newest.subject) == ("trust-anchor.remove", "carol", fingerprint)
    assert newest.detail == {"subject": "CN=Test Practices Root"}
    with pytest.raises(ConfigurationError, match="no trust anchor with fingerprint"):
        registry.remove_trust_anchor(fingerprint, actor=ACTOR)


def test_unenrolling_removes_the_pin_but_keeps_a_revocation(
    registry: Registry, root: CertificateAuthority
) -> None:
    issued = root.issue_client("riverside edge")
    registry.enroll("p-100", issued.cert, actor=ACTOR)
    removed = registry.unenroll(issued.cert, actor=ACTOR)
    assert removed.practice_id == "p-100" and registry.certificate(issued.fingerprint_sha256) is None
    assert registry.identify(issued.cert).reason == NOT_ENROLLED
    newest = registry.audit_log(1)[0]
    assert newest.action == "certificate.unenroll" and newest.detail["practice_id"] == "p-100"
    with pytest.raises(ConfigurationError, match="is enrolled"):
        registry.unenroll(issued.fingerprint_sha256, actor=ACTOR)

    revoked = root.issue_client("lost laptop")
    registry.enroll("p-100", revoked.cert, actor=ACTOR)
    registry.revoke(revoked.fingerprint_sha256, "lost", actor=ACTOR)
    with pytest.raises(ConfigurationError, match="record is kept so that it stays refused"):
        registry.unenroll(revoked.fingerprint_sha256, actor=ACTOR)
    assert registry.identify(revoked.cert).reason.startswith("certificate revoked on")


def test_removing_a_mapping_rule_keeps_the_others_in_place(
    registry: Registry, root: CertificateAuthority
) -> None:
    registry.add_mapping_rule("san-email", actor=ACTOR)
    second = registry.add_mapping_rule("subject-attribute", attribute="UID", actor=ACTOR)
    third = registry.add_mapping_rule("san-dns", actor=ACTOR)
    issued = root.issue_client("by uid", practice_id="p-100")
    assert registry.identify(issued.cert).matched_by == "subject-attribute:UID"
    assert registry.remove_mapping_rule(second.position, actor=ACTOR).attribute == "UID"
    assert [r.position for r in registry.mapping_rules()] == [1, third.position]
    assert registry.identify(issued.cert).reason == NOT_ENROLLED
    assert registry.audit_log(1)[0].detail == {"rule": "subject-attribute:UID"}
    with pytest.raises(ConfigurationError, match=r"no mapping rule at position 2 \(rules: 1, 3\)"):
        registry.remove_mapping_rule(2, actor=ACTOR)


def _self_signed_ca(name: str, *, key_cert_sign: bool) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )


# -- bindings --------------------------------------------------------------------------------------


def test_an_address_belongs_to_one_practice(registry: Registry) -> None:
    registry.bind("p-100", "mailto:intake@Riverside.example", actor=ACTOR)
    with pytest.raises(ConfigurationError, match=r"intake@riverside\.example of practice 'p-100'"):
        registry.bind("p-200", "intake@riverside.example", actor=ACTOR)
    with pytest.raises(ConfigurationError, match="practice 'p-100'"):
        registry.bind("p-200", "INTAKE@riverside.example", actor=ACTOR)
    # a domain covering an address another practice owns is the same conflict, both ways round
    with pytest.raises(ConfigurationError, match="practice 'p-100'"):
        registry.bind("p-200", "riverside.example", actor=ACTOR)
    registry.bind("p-200", "@hilltop.example", actor=ACTOR)
    with pytest.raises(ConfigurationError, match=r"@hilltop\.example of practice 'p-200'"):
        registry.bind("p-100", "frontdesk@hilltop.example", actor=ACTOR)
    # binding the same thing to the same practice again changes nothing
    assert registry.bind("p-100", "intake@riverside.example", actor=ACTOR).address is not None
    practice = registry.practice("p-100")
    assert practice is not None and [str(b) for b in practice.bindings] == ["intake@riverside.example"]


def test_bind_rejects_bad_input(registry: Registry) -> None:
    with pytest.raises(ConfigurationError, match="not a Direct"):
        registry.bind("p-100", "not an address@", actor=ACTOR)
    with pytest.raises(ConfigurationError, match="not a Direct domain"):
        registry.bind("p-100", "bad_domain!", actor=ACTOR)
    with pytest.raises(ConfigurationError, match="no practice 'p-999'"):
        registry.bind("p-999", "x@y.example", actor=ACTOR)
    with pytest.raises(ConfigurationError, match="actor must not be empty"):
        registry.bind("p-100", "x@y.example", actor=" ")


def test_domain_binding_covers_its_addresses(registry: Registry, root: CertificateAuthority) -> None:
    registry.bind("p-200", "direct.hilltop.example", actor=ACTOR)
    practice = registry.practice("p-200")
    assert practice is not None
    assert registry.authorize_sender(practice, DirectAddress("anyone@direct.hilltop.example")).allowed
    assert registry.authorize_sender(practice, "mailto:Dr.Who@DIRECT.hilltop.example").allowed
    refused = registry.authorize_sender(practice, DirectAddress("anyone@other.example"))
    assert not refused.allowed
    assert refused.reason == "sender anyone@other.example is not bound to practice 'p-200'"


def test_check_combines_identification_and_binding(registry: Registry, root: CertificateAuthority) -> None:
    a = root.issue_client("practice a")
    registry.enroll("p-100", a.cert, actor=ACTOR)
    registry.bind("p-100", "intake@riverside.example", actor=ACTOR)
    registry.bind("p-200", "intake@hilltop.example", actor=ACTOR)
    ok = registry.check(a.cert, "intake@riverside.example")
    assert ok.allowed and ok.practice_id == "p-100" and ok.fingerprint == a.fingerprint_sha256
    # practice A's certificate with practice B's sender address
    cross = registry.check(a.cert, DirectAddress("intake@hilltop.example"))
    assert not cross.allowed and "not bound to practice 'p-100'" in cross.reason
    stranger = registry.check(root.issue_client("nobody").cert, "intake@riverside.example")
    assert not stranger.allowed and stranger.reason == NOT_ENROLLED
    json.dumps(ok.as_dict())


def test_unbind(registry: Registry) -> None:
    registry.bind("p-100", "intake@riverside.example", actor=ACTOR)
    registry.bind("p-100", "@riverside.example", actor=ACTOR)
    registry.unbind("p-100", "intake@riverside.example", actor=ACTOR)
    practice = registry.practice("p-100")
    assert practice is not None and [str(b) for b in practice.bindings] == ["@riverside.example"]
    with pytest.raises(ConfigurationError, match="is not bound to practice 'p-200'"):
        registry.unbind("p-200", "@riverside.example", actor=ACTOR)
    registry.unbind("p-100", "riverside.example", actor=ACTOR)
    registry.bind("p-200", "@riverside.example", actor=ACTOR)  # free again
    assert [p.id for p in registry.practices() if p.bindings] == ["p-200"]


# -- audit -----------------------------------------------------------------------------------------


def test_every_change_is_audited_with_actor_action_and_detail(
    registry: Registry, root: CertificateAuthority
) -> None:
    issued = root.issue_client("riverside edge")
    registry.enroll("p-100", issued.cert, actor="bob")
    registry.bind("p-100", "intake@riverside.example", actor="bob")
    registry.unbind("p-100", "intake@riverside.example", actor="bob")
    registry.set_active("p-200", False, actor="bob")
    registry.add_mapping_rule("san-email", actor="bob")
    registry.load_crl(root.crl(), actor="bob")
    registry.revoke(issued.fingerprint_sha256, "superseded", actor="carol")

    assert _audit_actions(registry) == [
        "registry.init",
        "trust-anchor.add",
        "practice.add",
        "practice.add",
        "certificate.enroll",
        "binding.add",
        "binding.remove",
        "practice.deactivate",
        "mapping-rule.add",
        "crl.load",
        "certificate.revoke",
    ]
    newest = registry.audit_log(3)
    assert [e.action for e in newest] == ["certificate.revoke", "crl.load", "mapping-rule.add"]
    revoke, _, rule = newest
    assert revoke.actor == "carol" and revoke.subject == issued.fingerprint_sha256
    assert revoke.detail["reason"] == "superseded" and revoke.detail["practice_id"] == "p-100"
    assert rule.actor == "bob" and rule.detail["kind"] == "san-email" and rule.detail["position"] == 1
    enroll = next(e for e in registry.audit_log(100) if e.action == "certificate.enroll")
    assert enroll.detail["practice_id"] == "p-100" and enroll.detail["subject"] == "CN=riverside edge"
    binding = next(e for e in registry.audit_log(100) if e.action == "binding.add")
    assert binding.subject == "p-100" and binding.detail == {"binding": "intake@riverside.example"}
    json.dumps([e.as_dict() for e in registry.audit_log(100)])


def test_a_refused_change_writes_no_audit_row(registry: Registry) -> None:
    registry.bind("p-100", "intake@riverside.example", actor=ACTOR)
    before = _audit_actions(registry)
    with pytest.raises(ConfigurationError):
        registry.bind("p-200", "intake@riverside.example", actor=ACTOR)
    with pytest.raises(ConfigurationError, match="already exists"):
        registry.add_practice("p-100", "again", actor=ACTOR)
    assert _audit_actions(registry) == before


# -- storage: URLs, migrations -------------------------------------------------------------------


def test_registry_urls(tmp_path: Path) -> None:
    assert parse_registry_url("sqlite:///var/lib/xdr/registry.db") == Path("/var/lib/xdr/registry.db")
    # SQLAlchemy's absolute form (four slashes) names the same file, not "//var/...".
    assert str(parse_registry_url("sqlite:////var/lib/xdr/registry.db")) == "/var/lib/xdr/registry.db"
    assert parse_registry_url("sqlite:registry.db") == Path("registry.db")
    assert parse_registry_url("data/registry.db") == Path("data/registry.db")
    with pytest.raises(ConfigurationError, match="unsupported registry backend 'mysql'; use sqlite:"):
        open_registry("mysql://db.example/registry")
    with pytest.raises(ConfigurationError, match="has a host part"):
        parse_registry_url("sqlite://host/registry.db")
    with pytest.raises(ConfigurationError, match="in-memory"):
        parse_registry_url("sqlite::memory:")

    reg = open_registry(f"sqlite:///{(tmp_path / 'via-url.db').as_posix().lstrip('/')}")
    with pytest.raises(ConfigurationError, match="does not exist; create it with `xdr-edge registry init`"):
        reg.practices()
    reg.init(actor=ACTOR)
    assert (tmp_path / "via-url.db").exists()
    assert reg.practices() == []


def _schema_and_data(
    path: Path,
) -> tuple[list[tuple[str, str]], list[tuple[object, ...]], list[tuple[object, ...]]]:
    with sqlite3.connect(path) as conn:
        schema = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
        version = conn.execute("SELECT * FROM schema_version").fetchall()
        audit = conn.execute("SELECT * FROM audit ORDER BY id").fetchall()
    return schema, version, audit


def test_reopening_a_current_database_changes_nothing(db_path: Path, sqlite_registry: Registry) -> None:
    registry = sqlite_registry
    registry.bind("p-100", "intake@riverside.example", actor=ACTOR)
    before = _schema_and_data(db_path)
    assert before[1] == [(1, SCHEMA_VERSION)]
    reopened = open_registry(f"sqlite:{db_path}")
    assert reopened.init(actor=ACTOR) is False  # already initialised: no new audit row
    assert _schema_and_data(db_path) == before
    practice = reopened.practice("p-100")
    assert practice is not None and practice.name == "Riverside Clinic" and len(practice.bindings) == 1
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_database_from_a_newer_version_is_refused(registry_url: str, registry: Registry) -> None:
    database = open_database(registry_url)
    with database.transaction(Access.CHANGE) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 98,))
    database.close()
    with pytest.raises(
        ConfigurationError,
        match=rf"schema version {SCHEMA_VERSION + 98}, newer than the {SCHEMA_VERSION} this",
    ):
        open_registry(registry_url)
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 98}, this xdr-edge uses"):
        registry.ping()  # a receiver already running turns unhealthy instead of misreading it


def _version_1_database(path: Path, anchors: list[CertificateAuthority]) -> None:
    """A registry as xdr-edge with schema version 1 made it: the v1 statements, then rows written the way
    its SqliteStore wrote them (CRLs keyed by issuer name only)."""
    now = datetime.now(UTC).isoformat()
    with sqlite3.connect(path) as conn:
        for statement in MIGRATIONS[0]:
            assert isinstance(statement, str)
            conn.execute(SqliteDatabase(path).render(statement))
        conn.execute("INSERT INTO schema_version (id, version) VALUES (1, 1)")
        for ca in anchors:
            conn.execute(
                "INSERT INTO trust_anchors (fingerprint_sha256, subject, pem, added_at) VALUES (?, ?, ?, ?)",
                (
                    normalize_fingerprint(ca.cert.fingerprint(hashes.SHA256()).hex()),
                    ca.cert.subject.rfc4514_string(),
                    ca.cert_pem.decode("ascii"),
                    now,
                ),
            )


def _insert_v1_crl(path: Path, crl: x509.CertificateRevocationList) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO crls (issuer, this_update, next_update, der, loaded_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (issuer) DO UPDATE SET this_update = excluded.this_update, "
            "next_update = excluded.next_update, der = excluded.der, loaded_at = excluded.loaded_at",
            (
                crl.issuer.rfc4514_string(),
                crl.last_update_utc.isoformat(),
                None if crl.next_update_utc is None else crl.next_update_utc.isoformat(),
                crl.public_bytes(Encoding.DER),
                datetime.now(UTC).isoformat(),
            ),
        )


def test_a_version_1_database_is_migrated_and_its_crls_keep_taking_effect(
    db_path: Path, root: CertificateAuthority
) -> None:
    """Schema version 2 re-keys CRLs by (issuer, key id); the data step finds the key id of the anchor that
    signed each v1 CRL, and an intermediate's CRL (no anchor of that name) keeps "no key id"."""
    intermediate = CertificateAuthority.create("Issuing CA", parent=root)
    revoked = root.issue_client("revoked under v1")
    kept = root.issue_client("kept under v1")
    behind = intermediate.issue_client("revoked behind intermediate")
    _version_1_database(db_path, [root])
    root_crl = root.crl([revoked.cert])
    _insert_v1_crl(db_path, root_crl)
    _insert_v1_crl(db_path, intermediate.crl([behind.cert]))

    store = SqliteStore(db_path)  # opening migrates
    assert store.schema_version() == SCHEMA_VERSION >= 4
    reg = Registry(store)
    by_issuer = {c.issuer: c for c in reg.crls()}
    assert by_issuer["CN=Test Practices Root"].issuer_key_id == public_key_id(root.cert)
    assert by_issuer["CN=Test Practices Root"].der == root_crl.public_bytes(Encoding.DER)
    assert by_issuer["CN=Issuing CA"].issuer_key_id is None
    assert by_issuer["CN=Issuing CA"].key_label == "key n/a (issuer not a trust anchor)"
    (migrated,) = [e for e in reg.audit_log(10) if e.action == "crl.migrate"]
    assert migrated.subject == "CN=Test Practices Root" and migrated.detail["schema_version"] == 2

    reg.add_practice("p-100", "Riverside Clinic", actor=ACTOR)
    for issued in (revoked, kept, behind):
        reg.enroll("p-100", issued.cert, actor=ACTOR, chain=issued.chain)
    ident = reg.identify(revoked.cert)
    assert not ident.accepted and "CN=revoked under v1 revoked on" in ident.reason
    assert reg.identify(kept.cert).accepted
    behind_ident = reg.identify(behind.cert, behind.chain)
    assert not behind_ident.accepted and "revoked on" in behind_ident.reason

    # The migrated row is the one of that key: an older CRL of the key is a replay, a namesake's CRL is not.
    with pytest.raises(ConfigurationError, match="older than the one already loaded"):
        reg.load_crl(
            x509.CertificateRevocationListBuilder()
            .issuer_name(root.cert.subject)
            .last_update(root_crl.last_update_utc - timedelta(days=1))
            .next_update(root_crl.last_update_utc + timedelta(days=1))
            .sign(root.key, hashes.SHA256()),
            actor=ACTOR,
        )
    twin = CertificateAuthority.create("Test Practices Root")
    reg.add_trust_anchor(twin.cert, actor=ACTOR)
    reg.load_crl(twin.crl(), actor=ACTOR)
    assert len(reg.crls()) == 3
    assert not reg.identify(revoked.cert).accepted

    reopened = _schema_and_data(db_path)
    assert SqliteStore(db_path).schema_version() == SCHEMA_VERSION
    assert _schema_and_data(db_path) == reopened  # migrated once; opening again changes nothing


def test_migrated_and_new_databases_have_the_same_schema(tmp_path: Path, root: CertificateAuthority) -> None:
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    _version_1_database(old, [root])
    SqliteStore(old)
    open_registry(str(new)).init(actor=ACTOR)
    assert _schema_and_data(old)[0] == _schema_and_data(new)[0]


def test_a_foreign_sqlite_database_is_not_taken_over(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(ConfigurationError, match="not an xdr-edge registry"):
        open_registry(str(other))
    with sqlite3.connect(other) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
    assert names == ["customers"]


def test_certificate_and_fingerprint_inputs(root: CertificateAuthority) -> None:
    issued = root.issue_client("x")
    assert parse_certificates(issued.cert.public_bytes(Encoding.DER))[0] == issued.cert
    both = parse_certificates(issued.cert_pem + root.cert_pem)
    assert [c.subject for c in both] == [issued.cert.subject, root.cert.subject]
    with pytest.raises(CertificateError, match="not a PEM or DER"):
        parse_certificates(b"garbage")
    assert normalize_fingerprint(issued.fingerprint_sha256.upper()) == issued.fingerprint_sha256
    with pytest.raises(ConfigurationError, match="not a SHA-256 fingerprint"):
        normalize_fingerprint("abc")


# -- concurrency -----------------------------------------------------------------------------------


def test_concurrent_identify_while_the_cli_writes(registry: Registry, root: CertificateAuthority) -> None:
    """Receiver threads identify and authorize while another thread writes (WAL, one connection per call)."""
    certs = {}
    for pid, address in (("p-100", "intake@riverside.example"), ("p-200", "intake@hilltop.example")):
        issued = root.issue_client(f"edge {pid}")
        registry.enroll(pid, issued.cert, actor=ACTOR)
        registry.bind(pid, address, actor=ACTOR)
        certs[pid] = (issued.cert, address)
    errors: list[BaseException] = []
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()
    start = threading.Barrier(5)

    def reader(pid: str) -> None:
        cert, address = certs[pid]
        start.wait()
        try:
            for _ in range(15):
                decision = registry.check(cert, address)
                with lock:
                    results.append((decision.practice_id or "", decision.allowed))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    def writer() -> None:
        start.wait()
        try:
            for n in range(15):
                registry.add_practice(f"w-{n}", f"Writer practice {n}", actor="cli")
                registry.bind(f"w-{n}", f"@w{n}.example", actor="cli")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(pid,)) for pid in ("p-100", "p-200", "p-100", "p-200")]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 60
    assert all(allowed for _, allowed in results)
    assert {pid for pid, _ in results} == {"p-100", "p-200"}
    assert len(registry.practices()) == 17
    assert _audit_actions(registry).count("binding.add") == 17


def test_reading_block_is_one_snapshot_and_refuses_writes(registry_url: str, registry: Registry) -> None:
    """identify() and check() decide inside one reading() block: one connection, one state of the registry
    (a change committed meanwhile by another process is seen by the next decision, not half-way)."""
    store = SqlStore(open_database(registry_url))
    other_process = open_registry(registry_url)
    with store.reading():
        assert store.practice("p-300") is None
        other_process.add_practice("p-300", "Lakeside", actor="cli")
        assert store.practice("p-300") is None  # same snapshot
        assert [p.id for p in store.practices()] == ["p-100", "p-200"]
        with store.reading():  # nested: joins the outer block
            assert store.practice("p-300") is None
        with pytest.raises(StoreError, match="inside a read-only reading"):
            store.add_practice(
                Practice(id="p-400", name="x"),
                datetime.now(UTC),
                AuditEvent(datetime.now(UTC), "t", "practice.add", "p-400", {}),
            )
    practice = store.practice("p-300")
    assert practice is not None and practice.name == "Lakeside"
    assert store.practice("p-400") is None


def _fp(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


# -- both engines: one schema, concurrent processes --------------------------------------------------------


def test_version_1_bindings_survive_the_version_3_rebuild(db_path: Path) -> None:
    """Version 3 rebuilds the bindings table (case-insensitive uniqueness by lower(), not a collation): rows
    keep their order, an address still belongs to one practice whatever its case, lookups stay exact."""
    _version_1_database(db_path, [])
    now = datetime.now(UTC).isoformat()
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO practices (id, name, active, created_at) VALUES ('p-1', 'One', 1, ?)", (now,)
        )
        for address, domain in (("Intake@riverside.example", None), (None, "hilltop.example")):
            conn.execute(
                "INSERT INTO bindings (practice_id, address, domain, created_at) VALUES ('p-1', ?, ?, ?)",
                (address, domain, now),
            )
    with open_registry(str(db_path)) as reg:
        practice = reg.practice("p-1")
        assert practice is not None
        assert [str(b) for b in practice.bindings] == ["Intake@riverside.example", "@hilltop.example"]
        reg.add_practice("p-2", "Two", actor=ACTOR)
        with pytest.raises(ConfigurationError, match="practice 'p-1'"):
            reg.bind("p-2", "intake@riverside.example", actor=ACTOR)
        assert reg.authorize_sender(practice, "Intake@riverside.example").allowed
        with pytest.raises(ConfigurationError, match="differs only in the case"):
            reg.bind("p-1", "INTAKE@riverside.example", actor=ACTOR)


def test_concurrent_changes_from_two_processes_keep_an_address_with_one_practice(
    registry_url: str, registry: Registry
) -> None:
    """Two administrators (two connections, as two processes would have) bind an address and its whole domain
    to two practices at the same moment: the checks run inside serialized changes, so one of them is refused
    every time (PostgreSQL: the change lock; SQLite: BEGIN IMMEDIATE)."""
    with open_registry(registry_url) as first, open_registry(registry_url) as second:
        for n in range(8):
            targets = [(first, "p-100", f"intake@d{n}.example"), (second, "p-200", f"d{n}.example")]

            def bind(i: int, targets: list[tuple[Registry, str, str]] = targets) -> str:
                reg, practice, target = targets[i]
                try:
                    reg.bind(practice, target, actor=ACTOR)
                except ConfigurationError as exc:
                    return "refused" if "belongs to one practice" in exc.message else str(exc)
                return "bound"

            outcomes = run_together(2, bind)
            assert sorted(outcomes) == ["bound", "refused"], outcomes
    owners = {str(b): p.id for p in registry.practices() for b in p.bindings}
    assert len(owners) == 8


def test_processes_opening_a_new_database_together_create_it_once(registry_url: str) -> None:
    """Receivers of a cluster starting at the same moment: one creates the schema, the others find it."""

    def start(_: int) -> bool:
        with open_registry(registry_url) as reg:
            return reg.init(actor=ACTOR)

    created = run_together(4, start)
    assert sorted(created) == [False, False, False, True]
    with open_registry(registry_url) as reg:
        assert [e.action for e in reg.audit_log(10)] == ["registry.init"]
        assert SqlStore(open_database(registry_url)).schema_version() == SCHEMA_VERSION


def test_a_shared_postgresql_database_keeps_other_tables_and_refuses_a_foreign_registry(
    postgres_url: str,
) -> None:
    database = open_database(postgres_url)
    with database.transaction(Access.CHANGE) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with open_registry(postgres_url) as reg:
        assert reg.init(actor=ACTOR) is True  # another application's table is no obstacle ...
    with database.connection() as conn:
        assert "customers" in database.table_names(conn)
        conn.execute("DROP TABLE schema_version")
    with pytest.raises(
        ConfigurationError, match=r"not an xdr-edge registry: it has tables \(.*audit, bindings"
    ):
        open_registry(postgres_url).init(actor=ACTOR)  # ... but a half-known one of ours is not taken over
    database.close()


def test_an_uninitialized_postgresql_database_says_how_to_create_the_registry(postgres_url: str) -> None:
    with open_registry(postgres_url) as reg:
        with pytest.raises(ConfigurationError, match="holds no xdr-edge registry; create it with"):
            reg.practices()
        with pytest.raises(ConfigurationError, match="holds no xdr-edge registry"):
            reg.ping()


def test_a_postgresql_password_is_never_shown(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://xdr:s3cret-pw@/registry?host={tmp_path}&port=5999&password=other-s3cret"
    database = open_database(url)
    assert "s3cret" not in database.location
    assert database.location.startswith("postgresql://xdr@/registry?host=")
    with pytest.raises(StoreError) as info:
        with open_registry(database) as reg:
            reg.practices()  # nothing listens on that socket
    assert info.value.code == "store-unavailable"
    assert "s3cret" not in str(info.value) and "unavailable" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://xdr@db.example/xdr?sslpassword=s3cret-key-pw",  # the client key's passphrase
        "postgresql://xdr@db.example/xdr?sslmode=verify-full&password=s3cret-pw",
        "postgresql://xdr:s3cret-pw@db.example:5432,standby.example:5432/xdr?target_session_attrs=read-write",
    ],
)
def test_no_password_of_a_postgresql_url_shows_in_its_location(url: str) -> None:
    pytest.importorskip("psycopg")
    database = open_database(url)
    assert "s3cret" not in database.location
    assert database.location.startswith("postgresql://xdr@")
    database.close()


def test_an_unreadable_postgresql_url_is_a_configuration_error_that_hides_the_password() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(ConfigurationError, match="not a PostgreSQL connection URL") as info:
        open_database("postgresql://xdr:s3cret-pw@[::1/xdr")  # an IPv6 host without its closing bracket
    assert "s3cret" not in str(info.value)


# -- lookups through indexes ----------------------------------------------------------------------------


def _plan_scans(database: Database, sql: str, params: tuple[object, ...], table: str) -> list[str]:
    """The steps of the database's plan for ``sql`` that read the whole of ``table`` (none: an index is used).
    PostgreSQL is told to avoid sequential scans, so it plans one only when no index can serve the query
    (on a table this small it would otherwise scan anyway)."""
    with database.transaction(Access.READ) as conn:
        if database.dialect == "sqlite":
            details = [str(row["detail"]) for row in conn.all(f"EXPLAIN QUERY PLAN {sql}", params)]
            return [d for d in details if d.startswith("SCAN") and table in d.split()]
        conn.execute("SET LOCAL enable_seqscan = off")
        (row,) = conn.all(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = row["QUERY PLAN"]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        scans: list[str] = []
        pending = [plan[0]["Plan"]]
        while pending:
            node = pending.pop()
            if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") == table:
                scans.append(json.dumps(node))
            pending.extend(node.get("Plans", []))
        return scans


def test_who_owns_an_address_or_a_domain_is_found_through_an_index(
    registry_url: str, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver with a SAN e-mail or domain rule asks who owns an address on every request: the lookup must
    go through an index (the unique one on lower(address), or on domain), not read every binding (50,000
    bindings: 2 ms a request on SQLite). Checked on the plan of every statement the lookups run."""
    registry.bind("p-100", "Intake@riverside.example", actor=ACTOR)
    registry.bind("p-200", "hilltop.example", actor=ACTOR)
    store = SqlStore(open_database(registry_url))
    with store.database.connection() as conn:
        engine = type(conn)
    original = engine.execute
    ran: list[tuple[str, tuple[object, ...]]] = []

    def execute(conn: Any, sql: str, params: Any = ()) -> Any:
        ran.append((sql, tuple(params)))
        return original(conn, sql, params)

    monkeypatch.setattr(engine, "execute", execute)
    assert store.address_owner(DirectAddress("Intake@riverside.example")) == "p-100"
    assert store.address_owner(DirectAddress("intake@riverside.example")) is None  # local part exact
    assert store.address_owner(DirectAddress("nobody@riverside.example")) is None
    assert store.domain_owner("hilltop.example") == "p-200"
    monkeypatch.undo()
    lookups = [(sql, params) for sql, params in ran if "bindings" in sql]
    assert len(lookups) == 4
    for sql, params in lookups:
        assert _plan_scans(store.database, sql, params, "bindings") == [], sql
    store.close()


# -- waits are bounded -----------------------------------------------------------------------------------


def test_a_change_waits_for_another_change_at_most_the_lock_timeout(
    registry_url: str, registry: Registry
) -> None:
    """Changes run one at a time (PostgreSQL: the change lock; SQLite: the write lock). One held open (an
    administrator's session that hangs) makes another wait only as long as the lock timeout, then "busy"
    (UNAVAILABLE), instead of without end; when it is gone, the change goes through."""
    waiting = Registry(SqlStore(open_database(registry_url, lock_timeout=0.5)))
    holder = open_database(registry_url)
    outcome: list[object] = []

    def change() -> None:
        try:
            outcome.append(waiting.add_practice("p-300", "Third", actor=ACTOR))
        except StoreError as exc:
            outcome.append(exc)

    try:
        with holder.transaction(Access.CHANGE):
            thread = threading.Thread(target=change, daemon=True)
            thread.start()
            thread.join(60)
            assert not thread.is_alive(), "the change still waits for the other one"
        (error,) = outcome
        assert isinstance(error, StoreError) and error.code == "store-unavailable", error
        waiting.add_practice("p-300", "Third", actor=ACTOR)
        assert [p.id for p in registry.practices()] == ["p-100", "p-200", "p-300"]
    finally:
        waiting.close()
        holder.close()


# -- unbinding -------------------------------------------------------------------------------------------


def test_an_address_is_unbound_whatever_the_case_of_its_local_part(registry: Registry) -> None:
    """``bind`` treats Intake@x and intake@x as one address (one owner), so ``unbind`` does too; it removes the
    binding as stored, says so, and the audit row names both."""
    registry.bind("p-100", "Intake@riverside.example", actor=ACTOR)
    with pytest.raises(ConfigurationError, match="is not bound to practice 'p-200'"):
        registry.unbind("p-200", "intake@riverside.example", actor=ACTOR)
    removed = registry.unbind("p-100", "intake@RIVERSIDE.example", actor="bob")
    assert str(removed) == "Intake@riverside.example"
    practice = registry.practice("p-100")
    assert practice is not None and practice.bindings == ()
    entry = registry.audit_log(1)[0]
    assert (entry.actor, entry.action, entry.subject) == ("bob", "binding.remove", "p-100")
    assert entry.detail == {"binding": "Intake@riverside.example", "requested": "intake@riverside.example"}
    registry.bind("p-200", "intake@riverside.example", actor=ACTOR)  # the address is free again
    with pytest.raises(ConfigurationError, match="is not bound to practice 'p-100'"):
        registry.unbind("p-100", "intake@riverside.example", actor=ACTOR)


# -- the inbox index's schema ------------------------------------------------------------------------------


def test_version_4_inbox_rows_are_linked_to_their_submission_by_version_5(registry_url: str) -> None:
    """A database at version 4 with stored submissions: version 5 links each document to the submission
    that recorded it, so undoing that submission still removes the document, and one recorded again is
    kept as long as a stored submission carries it."""
    database = open_database(registry_url)
    database.prepare()
    with database.schema_transaction(create=True) as conn:
        for steps in MIGRATIONS[:4]:
            for step in steps:
                if isinstance(step, str):
                    conn.execute(database.render(step))
                else:
                    step(conn)
        conn.execute("INSERT INTO schema_version (id, version) VALUES (1, 4)")
        for uid in ("2.25.1", "2.25.2"):
            conn.execute(
                "INSERT INTO inbox_submissions (unique_id, practice_id, receiver, staged_as, path, stored_at) "
                "VALUES (?, 'p-1', 'rx-1', ?, ?, '2026-01-01T00:00:00+00:00')",
                (uid, f"stage-{uid}", f"2026-01-01/{uid}"),
            )
            conn.execute(
                "INSERT INTO inbox_documents (unique_id, sha1, size, practice_id, submission_id) "
                "VALUES (?, ?, 10, 'p-1', ?)",
                (f"{uid}.1", "a" * 40, uid),
            )
    database.close()
    with open_registry(registry_url):  # opening migrates
        assert SqlStore(open_database(registry_url)).schema_version() == SCHEMA_VERSION
    index = SubmissionIndex(open_database(registry_url))
    try:
        document = IndexedDocument("2.25.1.1", "a" * 40, 10)
        uid = "2.25.3"
        stored = IndexedSubmission(uid, "p-1", "rx-1", f"stage-{uid}", f"2026-01-02/{uid}", datetime.now(UTC))
        assert index.record(stored, [document]) is None  # 2.25.3 carries 2.25.1's document too
        assert index.forget("2.25.1", "stage-2.25.1")
        assert index.document("2.25.1.1") == document
        assert index.forget("2.25.2", "stage-2.25.2")
        assert index.document("2.25.2.1") is None
    finally:
        index.database.close()
