"""``xdr-edge registry ...``: administer the receiver's certificate registry.

Thin: each command is one :class:`~xdr_edge.registry.Registry` call plus printing. Every change is recorded in
the registry's audit log with the OS user as the actor. ``--registry`` (or ``XDR_EDGE_REGISTRY``) names the
database: a path, ``sqlite:relative.db``, ``sqlite:///abs/path.db`` or ``postgresql://user@host/dbname``.
``--json`` prints data for scripts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from xdr_edge.certs import load_certificates
from xdr_edge.cli.common import EXIT_FAILURE, audit_actor, echo_json, handle_errors, registry_option
from xdr_edge.practice import Practice
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.registry import CertificateRecord, MappingKind, Registry, open_registry

F = TypeVar("F", bound=Callable[..., Any])
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(func)


def _open(url: str) -> Registry:
    return open_registry(url)


def _practice_dict(practice: Practice, certificates: list[CertificateRecord] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": practice.id,
        "name": practice.name,
        "active": practice.active,
        "bindings": [str(b) for b in practice.bindings],
    }
    if certificates is not None:
        data["certificates"] = [c.as_dict() for c in certificates]
    return data


def _cert_line(record: CertificateRecord) -> str:
    state = (
        f"REVOKED {record.revoked_at:%Y-%m-%d} ({record.revoked_reason})" if record.revoked_at else "valid"
    )
    return f"{record.fingerprint_sha256}  {record.subject}  until {record.not_after:%Y-%m-%d}  {state}"


@click.group("registry")
def registry() -> None:
    """Practices, their client certificates, bound Direct addresses, trust anchors, CRLs, mapping rules."""


@registry.command("init")
@registry_option
@handle_errors
def init(registry_url: str) -> None:
    """Create the registry database, or bring its schema up to date."""
    reg = _open(registry_url)
    created = reg.init(actor=audit_actor())
    click.echo(f"{'created' if created else 'up to date'}: {reg.location}")


@registry.command("add-practice")
@registry_option
@click.argument("practice_id")
@click.option("--name", default="", help="Display name.")
@click.option(
    "--inactive", is_flag=True, help="Add it inactive (its certificates are refused until activated)."
)
@handle_errors
def add_practice(registry_url: str, practice_id: str, name: str, inactive: bool) -> None:
    """Add a practice, keyed by the integrator's own id for it."""
    practice = _open(registry_url).add_practice(practice_id, name, actor=audit_actor(), active=not inactive)
    click.echo(f"added practice {practice.id}{' (inactive)' if not practice.active else ''}")


@registry.command("enroll")
@registry_option
@click.argument("practice_id")
@click.argument("cert_file", type=_FILE)
@click.option(
    "--ahead-of-anchor",
    is_flag=True,
    help="Pin it although it does not chain to a trust anchor yet (its CA is to be added later).",
)
@handle_errors
def enroll(registry_url: str, practice_id: str, cert_file: Path, ahead_of_anchor: bool) -> None:
    """Pin a client certificate (PEM or DER; intermediate CAs may follow it in the file) to a practice by its
    SHA-256 fingerprint. It must chain to a trust anchor (add-anchor), unless --ahead-of-anchor."""
    leaf, *chain = load_certificates(cert_file)
    record = _open(registry_url).enroll(
        practice_id, leaf, actor=audit_actor(), chain=chain, ahead_of_anchor=ahead_of_anchor
    )
    click.echo(f"enrolled for {record.practice_id}: {_cert_line(record)}")
    if ahead_of_anchor:
        click.echo("note: refused until a trust anchor it chains to is added (add-anchor)", err=True)


@registry.command("unenroll")
@registry_option
@click.argument("certificate")
@handle_errors
def unenroll(registry_url: str, certificate: str) -> None:
    """Remove a certificate's pin: it is refused from the next request on, unless a mapping rule maps it.
    CERTIFICATE is a SHA-256 fingerprint or a certificate file. A revoked certificate stays (and stays refused)."""
    path = Path(certificate)
    target: Any = load_certificates(path)[0] if path.is_file() else certificate
    record = _open(registry_url).unenroll(target, actor=audit_actor())
    click.echo(f"unenrolled from {record.practice_id}: {record.fingerprint_sha256}  {record.subject}")


@registry.command("deactivate")
@registry_option
@click.argument("practice_id")
@handle_errors
def deactivate(registry_url: str, practice_id: str) -> None:
    """Refuse every request of a practice from the next one on (its certificates and bindings are kept)."""
    _set_active(registry_url, practice_id, False)


@registry.command("activate")
@registry_option
@click.argument("practice_id")
@handle_errors
def activate(registry_url: str, practice_id: str) -> None:
    """Accept a deactivated practice's requests again."""
    _set_active(registry_url, practice_id, True)


def _set_active(registry_url: str, practice_id: str, active: bool) -> None:
    state = "active" if active else "inactive"
    changed = _open(registry_url).set_active(practice_id, active, actor=audit_actor())
    click.echo(f"{practice_id} is now {state}" if changed else f"{practice_id} was already {state}")


@registry.command("bind")
@registry_option
@click.argument("practice_id")
@click.argument("address_or_domain")
@handle_errors
def bind(registry_url: str, practice_id: str, address_or_domain: str) -> None:
    """Bind a Direct address (user@domain) or a whole domain (domain or @domain) to a practice."""
    binding = _open(registry_url).bind(practice_id, address_or_domain, actor=audit_actor())
    click.echo(f"bound {binding} to {practice_id}")


@registry.command("unbind")
@registry_option
@click.argument("practice_id")
@click.argument("address_or_domain")
@handle_errors
def unbind(registry_url: str, practice_id: str, address_or_domain: str) -> None:
    """Remove a binding; the practice may no longer send as that address or domain (effective at once)."""
    binding = _open(registry_url).unbind(practice_id, address_or_domain, actor=audit_actor())
    click.echo(f"unbound {binding} from {practice_id}")


@registry.command("revoke")
@registry_option
@click.argument("certificate")
@click.option("--reason", required=True, help="Why (recorded in the audit log and shown in refusals).")
@handle_errors
def revoke(registry_url: str, certificate: str, reason: str) -> None:
    """Refuse a certificate from now on. CERTIFICATE is a SHA-256 fingerprint or a certificate file (which
    also blocks a certificate that was never enrolled)."""
    path = Path(certificate)
    target: Any = load_certificates(path)[0] if path.is_file() else certificate
    record = _open(registry_url).revoke(target, reason, actor=audit_actor())
    click.echo(f"revoked: {_cert_line(record)}")


@registry.command("add-anchor")
@registry_option
@click.argument("ca_file", type=_FILE)
@handle_errors
def add_anchor(registry_url: str, ca_file: Path) -> None:
    """Trust a CA certificate for client certificates."""
    anchor = _open(registry_url).add_trust_anchor(load_certificates(ca_file)[0], actor=audit_actor())
    click.echo(f"trust anchor added: {anchor.fingerprint_sha256}  {anchor.subject}")


@registry.command("remove-anchor")
@registry_option
@click.argument("fingerprint")
@handle_errors
def remove_anchor(registry_url: str, fingerprint: str) -> None:
    """Stop trusting a CA (by SHA-256 fingerprint, as `list` shows it): certificates it issued are refused from
    the next request on, enrolled or not."""
    reg = _open(registry_url)
    anchor = reg.remove_trust_anchor(fingerprint, actor=audit_actor())
    click.echo(f"trust anchor removed: {anchor.fingerprint_sha256}  {anchor.subject}")
    orphans = [c for c in reg.certificates() if c.issuer == anchor.subject and not c.revoked]
    if orphans:
        click.echo(
            f"note: {len(orphans)} enrolled certificate(s) issued by {anchor.subject} are refused from now on",
            err=True,
        )


@registry.command("load-crl")
@registry_option
@click.argument("crl_file", type=_FILE)
@handle_errors
def load_crl(registry_url: str, crl_file: Path) -> None:
    """Load (or replace with a newer) CRL of a client-certificate issuer; revoked certificates are refused.

    Kept per issuer name and signing key, so two trusted CAs of one name keep their own CRLs.
    """
    record = _open(registry_url).load_crl(crl_file.read_bytes(), actor=audit_actor())
    until = f", next update {record.next_update:%Y-%m-%d %H:%M}Z" if record.next_update else ""
    click.echo(
        f"CRL loaded for {record.issuer}, {record.key_label} "
        f"(issued {record.this_update:%Y-%m-%d %H:%M}Z{until})"
    )


@registry.command("add-rule")
@registry_option
@click.argument("kind", type=click.Choice([k.value for k in MappingKind]))
@click.option(
    "--attribute", help="Subject attribute for subject-attribute rules (UID, CN, OU, ... or an OID)."
)
@click.option(
    "--issuer", "issuer_fingerprint", help="Only for certificates chaining to this trust anchor (SHA-256)."
)
@handle_errors
def add_rule(registry_url: str, kind: str, attribute: str | None, issuer_fingerprint: str | None) -> None:
    """Map trusted but unpinned certificates to practices by a subject attribute or SAN (tried in order)."""
    reg = _open(registry_url)
    rule = reg.add_mapping_rule(
        kind, attribute=attribute, issuer_fingerprint=issuer_fingerprint, actor=audit_actor()
    )
    click.echo(f"mapping rule {rule.position} added: {rule.describe()}")
    anchors = reg.trust_anchors()
    if issuer_fingerprint is None and len(anchors) > 1:
        # Without --issuer, every trusted CA may name any practice in a certificate it issues.
        click.echo(
            f"warning: this rule applies to certificates from all {len(anchors)} trust anchors: any of them can "
            "issue a certificate that names any practice; restrict it with --issuer unless they are all yours",
            err=True,
        )


@registry.command("remove-rule")
@registry_option
@click.argument("position", type=click.IntRange(1))
@handle_errors
def remove_rule(registry_url: str, position: int) -> None:
    """Remove the mapping rule at POSITION (as `list` shows it); the others keep their positions and order."""
    rule = _open(registry_url).remove_mapping_rule(position, actor=audit_actor())
    click.echo(f"mapping rule {rule.position} removed: {rule.describe()}")


@registry.command("list")
@registry_option
@_json_option
@handle_errors
def list_(registry_url: str, as_json: bool) -> None:
    """Practices with their bindings, then trust anchors, CRLs and mapping rules."""
    reg = _open(registry_url)
    practices = reg.practices()
    certificates = reg.certificates()
    if as_json:
        echo_json(
            {
                "practices": [
                    _practice_dict(p, [c for c in certificates if c.practice_id == p.id]) for p in practices
                ],
                "trust_anchors": [a.as_dict() for a in reg.trust_anchors()],
                "crls": [c.as_dict() for c in reg.crls()],
                "mapping_rules": [r.as_dict() for r in reg.mapping_rules()],
            }
        )
        return
    click.echo(f"practices ({len(practices)}):")
    for p in practices:
        count = sum(1 for c in certificates if c.practice_id == p.id and not c.revoked)
        state = "" if p.active else " [inactive]"
        bindings = ", ".join(str(b) for b in p.bindings) or "no bindings"
        click.echo(f"  {p.id}{state}  {p.name!r}  {count} certificate(s)  {bindings}")
    click.echo(f"trust anchors ({len(reg.trust_anchors())}):")
    for anchor in reg.trust_anchors():
        click.echo(f"  {anchor.fingerprint_sha256}  {anchor.subject}")
    click.echo(f"CRLs ({len(reg.crls())}):")
    for crl in reg.crls():
        click.echo(f"  {crl.issuer}  {crl.key_label}  issued {crl.this_update:%Y-%m-%d}")
    click.echo(f"mapping rules ({len(reg.mapping_rules())}):")
    for rule in reg.mapping_rules():
        click.echo(f"  {rule.position}. {rule.describe()}")


@registry.command("show")
@registry_option
@_json_option
@click.argument("practice_id")
@handle_errors
def show(registry_url: str, as_json: bool, practice_id: str) -> None:
    """One practice: bindings and certificates (fingerprint, subject, expiry, revocation)."""
    reg = _open(registry_url)
    practice = reg.practice(practice_id)
    if practice is None:
        known = ", ".join(p.id for p in reg.practices()) or "none"
        raise ConfigurationError(f"no practice {practice_id!r} in the registry (known: {known})")
    certificates = reg.certificates(practice_id)
    if as_json:
        echo_json(_practice_dict(practice, certificates))
        return
    click.echo(f"practice {practice.id}{'' if practice.active else ' [inactive]'}  {practice.name!r}")
    click.echo("bindings:")
    for binding in practice.bindings:
        click.echo(f"  {binding}")
    click.echo("certificates:")
    for record in certificates:
        click.echo(f"  {_cert_line(record)}")


@registry.command("check")
@registry_option
@_json_option
@click.argument("cert_file", type=_FILE)
@click.argument("address")
@handle_errors
def check(registry_url: str, as_json: bool, cert_file: Path, address: str) -> None:
    """Would the receiver accept CERT_FILE (leaf first, then intermediates) sending as ADDRESS? Prints the
    decision and the reason; exit status 0 when allowed, 1 when refused."""
    leaf, *chain = load_certificates(cert_file)
    decision = _open(registry_url).check(leaf, address, chain)
    if as_json:
        echo_json(decision.as_dict())
    else:
        click.echo(f"{'ALLOWED' if decision.allowed else 'REFUSED'}: {decision.reason}")
    if not decision.allowed:
        sys.exit(EXIT_FAILURE)


@registry.command("audit")
@registry_option
@_json_option
@click.option(
    "--limit", type=click.IntRange(1), default=50, show_default=True, help="How many recent changes."
)
@handle_errors
def audit(registry_url: str, as_json: bool, limit: int) -> None:
    """The most recent changes, newest first: when, who, what."""
    entries = _open(registry_url).audit_log(limit)
    if as_json:
        echo_json([e.as_dict() for e in entries])
        return
    for entry in entries:
        click.echo(f"{entry.at:%Y-%m-%d %H:%M:%S}Z  {entry.actor}  {entry.action}  {entry.subject}")


COMMANDS = [registry]
