"""``xdr-edge registry ...`` (xdr_edge.cli.registrycmds) with click's CliRunner against a real database (a SQLite
file, and a PostgreSQL schema: the same commands on both engines) and certificates from a demo PKI: every
command, its output, its exit status, and the audit trail it leaves."""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import hashes, serialization

from xdr_edge.cli import main
from xdr_edge.devtools.pki import DemoPki, write_demo_pki
from xdr_edge.minting import CertificateAuthority
from xdr_edge.registry import open_registry
from xdr_edge.registry.verify import public_key_id

ADDRESS = "dr.smith@direct.practice-a.org"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPki:
    return write_demo_pki(tmp_path_factory.mktemp("pki"))


def run(db: str | Path, *args: str, env_only: bool = False) -> Result:
    """Invoke ``xdr-edge registry <args>``; the database by ``--registry`` or, with ``env_only``, by env."""
    command, *rest = args
    argv = ["registry", command, *rest] if env_only else ["registry", command, "--registry", str(db), *rest]
    return CliRunner().invoke(main, argv, env={"XDR_EDGE_REGISTRY": str(db)} if env_only else {})


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def db(registry_url: str, pki: DemoPki) -> str:
    """A registry (on each engine) with the demo CA trusted and practice-a enrolled and bound."""
    path = registry_url
    ok(run(path, "init"))
    ok(run(path, "add-anchor", str(pki.ca_cert)))
    ok(run(path, "add-practice", "practice-a", "--name", "Practice A"))
    ok(run(path, "enroll", "practice-a", str(pki.practices["practice-a"].cert)))
    ok(run(path, "bind", "practice-a", ADDRESS))
    return path


def test_init_creates_then_reports_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    assert "created" in ok(run(path, "init"))
    assert path.is_file()
    assert "up to date" in ok(run(path, "init", env_only=True))


def test_registry_url_comes_from_the_environment(db: str) -> None:
    data = json.loads(ok(run(db, "list", "--json", env_only=True)))
    assert [p["id"] for p in data["practices"]] == ["practice-a"]


def test_missing_registry_option_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["registry", "list"], env={"XDR_EDGE_REGISTRY": ""})
    assert result.exit_code == 2
    assert "--registry" in result.output


def test_list_and_show(db: str, pki: DemoPki) -> None:
    text = ok(run(db, "list"))
    assert "practice-a" in text and ADDRESS in text and "1 certificate(s)" in text
    assert "xdr-edge demo CA" in text
    data = json.loads(ok(run(db, "list", "--json")))
    (practice,) = data["practices"]
    assert practice["bindings"] == [ADDRESS]
    assert practice["certificates"][0]["fingerprint_sha256"] == pki.practices["practice-a"].fingerprint_sha256
    assert len(data["trust_anchors"]) == 1
    shown = json.loads(ok(run(db, "show", "practice-a", "--json")))
    assert shown["name"] == "Practice A" and shown["active"] is True
    assert "Practice A" in ok(run(db, "show", "practice-a"))


def test_show_unknown_practice_names_the_known_ones(db: str) -> None:
    result = run(db, "show", "practice-z")
    assert result.exit_code == 2
    assert "practice-z" in result.output and "practice-a" in result.output


def test_check_allowed_and_refused(db: str, pki: DemoPki) -> None:
    cert = str(pki.practices["practice-a"].cert)
    allowed = run(db, "check", cert, ADDRESS)
    assert allowed.exit_code == 0
    assert allowed.output.startswith("ALLOWED")
    refused = run(db, "check", cert, "dr.jones@direct.practice-b.org")
    assert refused.exit_code == 1
    assert "REFUSED" in refused.output and "not bound" in refused.output
    data = json.loads(run(db, "check", cert, "dr.jones@direct.practice-b.org", "--json").output)
    assert data["allowed"] is False and data["practice_id"] == "practice-a"


@pytest.mark.parametrize(
    ("which", "reason"),
    [("untrusted", ""), ("expired", "expired"), ("unenrolled", "not enrolled")],
)
def test_check_refuses_certificates_the_receiver_would_refuse(
    db: str, pki: DemoPki, which: str, reason: str
) -> None:
    cert = {
        "untrusted": pki.untrusted_client_cert,
        "expired": pki.expired_client_cert,
        "unenrolled": pki.practices["practice-b"].cert,
    }[which]
    result = run(db, "check", str(cert), ADDRESS)
    assert result.exit_code == 1
    assert result.output.startswith("REFUSED")
    assert reason in result.output


def test_unbind_then_check_refuses(db: str, pki: DemoPki) -> None:
    assert "unbound" in ok(run(db, "unbind", "practice-a", ADDRESS))
    assert run(db, "check", str(pki.practices["practice-a"].cert), ADDRESS).exit_code == 1
    assert run(db, "unbind", "practice-a", ADDRESS).exit_code == 2  # not bound any more


def test_domain_binding_and_conflict(db: str) -> None:
    ok(run(db, "add-practice", "practice-b"))
    assert "bound @direct.practice-b.org" in ok(run(db, "bind", "practice-b", "direct.practice-b.org"))
    conflict = run(db, "bind", "practice-b", ADDRESS)  # already practice-a's
    assert conflict.exit_code == 2
    assert "practice-a" in conflict.output


def test_revoke_by_fingerprint_and_by_file(db: str, pki: DemoPki) -> None:
    practice = pki.practices["practice-a"]
    text = ok(run(db, "revoke", practice.fingerprint_sha256, "--reason", "key compromise"))
    assert "REVOKED" in text and "key compromise" in text
    result = run(db, "check", str(practice.cert), ADDRESS)
    assert result.exit_code == 1 and "revoked" in result.output
    # a certificate never enrolled can be blocked by file
    ok(run(db, "revoke", str(pki.practices["practice-b"].cert), "--reason", "lost laptop"))
    record = open_registry(str(db)).certificate(pki.practices["practice-b"].fingerprint_sha256)
    assert record is not None and record.revoked and record.practice_id is None


def test_load_crl_revokes_listed_certificates(db: str, pki: DemoPki, tmp_path: Path) -> None:
    issued = pki.ca.issue_client("crl-victim", emails=(ADDRESS,))
    cert = tmp_path / "victim.pem"
    issued.write_pem(cert, tmp_path / "victim.key")
    ok(run(db, "enroll", "practice-a", str(cert)))
    assert run(db, "check", str(cert), ADDRESS).exit_code == 0

    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.ca.crl([issued.cert]).public_bytes(serialization.Encoding.PEM))
    key_id = public_key_id(pki.ca.cert)
    loaded = ok(run(db, "load-crl", str(crl)))
    assert f"CRL loaded for {pki.ca.cert.subject.rfc4514_string()}, key {key_id[:16]} (issued" in loaded
    result = run(db, "check", str(cert), ADDRESS)
    assert result.exit_code == 1
    assert "revoked" in result.output.lower()

    listed = ok(run(db, "list"))
    assert "CRLs (1):" in listed and f"  key {key_id[:16]}  issued " in listed
    (entry,) = json.loads(ok(run(db, "list", "--json")))["crls"]
    assert entry["issuer_key_id"] == key_id


def test_add_rule_maps_unpinned_certificates(db: str, pki: DemoPki, tmp_path: Path) -> None:
    issued = pki.ca.issue_client("by-uid", practice_id="practice-a")
    cert = tmp_path / "uid.pem"
    issued.write_pem(cert, tmp_path / "uid.key")
    assert run(db, "check", str(cert), ADDRESS).exit_code == 1  # not enrolled, no rule yet
    assert "subject-attribute:UID" in ok(run(db, "add-rule", "subject-attribute", "--attribute", "UID"))
    result = run(db, "check", str(cert), ADDRESS)
    assert result.exit_code == 0, result.output
    rules = json.loads(ok(run(db, "list", "--json")))["mapping_rules"]
    assert [r["kind"] for r in rules] == ["subject-attribute"]


def test_add_rule_without_issuer_warns_when_several_anchors_are_trusted(db: str, tmp_path: Path) -> None:
    """With one anchor the rule is plain; with two, every CA may name any practice: the operator is told."""
    assert "warning" not in ok(run(db, "add-rule", "san-email"))
    other = CertificateAuthority.create("Another CA")
    anchor = tmp_path / "other-ca.pem"
    anchor.write_bytes(other.cert.public_bytes(serialization.Encoding.PEM))
    ok(run(db, "add-anchor", str(anchor)))
    result = run(db, "add-rule", "san-dns")
    assert result.exit_code == 0
    assert "warning: this rule applies to certificates from all 2 trust anchors" in result.output
    assert "--issuer" in result.output
    fingerprint = other.cert.fingerprint(hashes.SHA256()).hex()
    assert "warning" not in ok(run(db, "add-rule", "san-email-domain", "--issuer", fingerprint))


def test_add_rule_rejects_unknown_kind(db: str) -> None:
    result = run(db, "add-rule", "telepathy")
    assert result.exit_code == 2


def test_add_anchor_refuses_a_non_certificate(db: str, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    result = run(db, "add-anchor", str(junk))
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output


def test_audit_records_actor_and_actions(db: str) -> None:
    entries = json.loads(ok(run(db, "audit", "--json")))
    actions = [e["action"] for e in entries]
    assert actions[:4] == ["binding.add", "certificate.enroll", "practice.add", "trust-anchor.add"]
    assert {e["actor"] for e in entries} == {getpass.getuser()}
    text = ok(run(db, "audit", "--limit", "1"))
    assert text.count("\n") == 1 and "binding.add" in text


def test_commands_on_a_missing_database_fail_cleanly(tmp_path: Path) -> None:
    result = run(tmp_path / "absent.db", "list")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_add_anchor_refuses_a_certificate_that_is_not_a_ca(db: str, pki: DemoPki) -> None:
    result = run(db, "add-anchor", str(pki.practices["practice-b"].cert))
    assert result.exit_code == 2
    assert "cannot be a trust anchor" in result.output and "not a CA" in result.output
    assert "Traceback" not in result.output


def test_enroll_refuses_an_unanchored_certificate_unless_pinned_ahead(db: str, tmp_path: Path) -> None:
    elsewhere = CertificateAuthority.create("Partner CA")
    issued = elsewhere.issue_client("partner edge", emails=(ADDRESS,))
    cert = tmp_path / "partner.pem"
    issued.write_pem(cert, tmp_path / "partner.key")
    refused = run(db, "enroll", "practice-a", str(cert))
    assert refused.exit_code == 2
    assert "does not chain to a trust anchor" in refused.output and "--ahead-of-anchor" in refused.output
    pinned = run(db, "enroll", "practice-a", str(cert), "--ahead-of-anchor")
    assert pinned.exit_code == 0, pinned.output
    assert "refused until a trust anchor it chains to is added" in pinned.output
    assert run(db, "check", str(cert), ADDRESS).exit_code == 1
    anchor = tmp_path / "partner-ca.pem"
    anchor.write_bytes(elsewhere.cert.public_bytes(serialization.Encoding.PEM))
    ok(run(db, "add-anchor", str(anchor)))
    assert run(db, "check", str(cert), ADDRESS).exit_code == 0


def test_unenroll_deactivate_and_activate(db: str, pki: DemoPki) -> None:
    practice = pki.practices["practice-a"]
    assert "practice-a is now inactive" in ok(run(db, "deactivate", "practice-a"))
    assert "already inactive" in ok(run(db, "deactivate", "practice-a"))
    refused = run(db, "check", str(practice.cert), ADDRESS)
    assert refused.exit_code == 1 and "inactive" in refused.output
    assert "practice-a is now active" in ok(run(db, "activate", "practice-a"))
    assert run(db, "check", str(practice.cert), ADDRESS).exit_code == 0

    text = ok(run(db, "unenroll", str(practice.cert)))
    assert f"unenrolled from practice-a: {practice.fingerprint_sha256}" in text
    assert run(db, "check", str(practice.cert), ADDRESS).exit_code == 1
    again = run(db, "unenroll", practice.fingerprint_sha256)
    assert again.exit_code == 2 and "is enrolled" in again.output
    actions = [e["action"] for e in json.loads(ok(run(db, "audit", "--json", "--limit", "4")))]
    assert actions == ["certificate.unenroll", "practice.activate", "practice.deactivate", "binding.add"]


def test_remove_rule_and_remove_anchor(db: str, pki: DemoPki) -> None:
    fingerprint = json.loads(ok(run(db, "list", "--json")))["trust_anchors"][0]["fingerprint_sha256"]
    ok(run(db, "add-rule", "san-email"))
    ok(run(db, "add-rule", "san-dns", "--issuer", fingerprint))
    blocked = run(db, "remove-anchor", fingerprint)
    assert blocked.exit_code == 2 and "remove them first" in blocked.output
    assert "mapping rule 2 removed: san-dns" in ok(run(db, "remove-rule", "2"))
    assert run(db, "remove-rule", "2").exit_code == 2
    text = ok(run(db, "remove-anchor", fingerprint))
    assert "trust anchor removed" in text and "1 enrolled certificate(s) issued by" in text
    result = run(db, "check", str(pki.practices["practice-a"].cert), ADDRESS)
    assert result.exit_code == 1 and "not issued by a trusted CA" in result.output
    data = json.loads(ok(run(db, "list", "--json")))
    assert data["trust_anchors"] == [] and [r["kind"] for r in data["mapping_rules"]] == ["san-email"]


def test_init_creates_the_database_readable_by_its_owner_only(tmp_path: Path) -> None:
    """The registry file holds API password hashes and the audit log: 0600 whatever the umask (022 here, which
    gave 0644), and so are SQLite's -wal and -shm files, which take the database file's mode."""
    path = tmp_path / "secret.db"
    previous = os.umask(0o022)
    try:
        ok(run(path, "init"))
        with sqlite3.connect(path) as conn:  # an open connection in WAL mode keeps -wal and -shm in place
            conn.execute(
                "INSERT INTO audit (at, actor, action, subject, detail) VALUES ('t', 'a', 'b', 'c', '{}')"
            )
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("secret.db*")}
    finally:
        os.umask(previous)
    assert modes == {"secret.db": 0o600, "secret.db-wal": 0o600, "secret.db-shm": 0o600}


def test_an_unreadable_postgresql_url_is_bad_input_and_never_shows_the_password() -> None:
    result = CliRunner().invoke(main, ["registry", "list", "--registry", "postgresql://xdr:s3cret@[::1/xdr"])
    assert result.exit_code == 2, result.output  # bad input, not an internal error
    assert "not a PostgreSQL connection URL" in result.output and "s3cret" not in result.output
