"""``xdr-edge certs ...``: make a demo PKI, and inspect a certificate (and what the registry maps it to).

Thin: :func:`xdr_edge.devtools.pki.write_demo_pki`, :func:`xdr_edge.certs.describe_certificate` and
:meth:`xdr_edge.registry.Registry.identify` plus printing. Never prints or reads key material beyond what
``write_demo_pki`` writes to files of mode 0600.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from xdr_edge.certs import CertificateInfo, describe_certificate, load_certificates
from xdr_edge.cli.common import EXIT_FAILURE, echo_json, handle_errors
from xdr_edge.devtools.pki import DEFAULT_DEMO_PRACTICES, DemoPki, write_demo_pki
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.registry import Identification, open_registry


@click.group("certs")
def certs() -> None:
    """Certificates: a demo PKI for trying things out, and inspection of certificate files."""


def _parse_practice(text: str) -> tuple[str, tuple[str, ...]]:
    practice_id, sep, addresses = text.partition("=")
    parts = tuple(a.strip() for a in addresses.split(",") if a.strip())
    if not sep or not practice_id.strip() or not parts:
        raise click.BadParameter(f"expected ID=ADDRESS[,ADDRESS...], got {text!r}", param_hint="--practice")
    return practice_id.strip(), parts


def _written_files(pki: DemoPki) -> list[tuple[str, Path]]:
    """Every file ``write_demo_pki`` wrote, with what it is, in a stable order."""
    rows: list[tuple[str, Path]] = [
        ("CA certificate (trust anchor for both sides)", pki.ca_cert),
        ("HISP server certificate", pki.server_cert),
        ("HISP server key", pki.server_key),
    ]
    for practice in pki.practices.values():
        label = f"practice {practice.id} ({', '.join(practice.addresses)})"
        rows += [
            (f"{label} certificate", practice.cert),
            (f"{label} key", practice.key),
            (f"{label} PKCS#12", practice.p12),
            (f"{label} PKCS#12 password", practice.p12_password_file),
        ]
    rows += [
        ("untrusted CA certificate", pki.untrusted_ca_cert),
        ("client certificate from the untrusted CA", pki.untrusted_client_cert),
        ("its key", pki.untrusted_client_key),
        ("expired client certificate", pki.expired_client_cert),
        ("its key", pki.expired_client_key),
        ("CRL of the CA (empty)", pki.crl),
    ]
    return rows


@certs.command("demo-pki")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--practice",
    "practice_specs",
    multiple=True,
    metavar="ID=ADDR[,ADDR]",
    help="A practice and its Direct addresses; repeat (default: practice-a and practice-b).",
)
@click.option(
    "--hostname",
    "hostnames",
    multiple=True,
    help="Server certificate host name; repeat (default localhost, 127.0.0.1).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing demo PKI in DIRECTORY.")
@handle_errors
def demo_pki(
    directory: Path, practice_specs: tuple[str, ...], hostnames: tuple[str, ...], force: bool
) -> None:
    """Write a demo PKI (CA, HISP server, practices' client certificates as PEM and PKCS#12, an untrusted and
    an expired client certificate, a CRL) into DIRECTORY. For tests and demos only: the CA key is not kept."""
    if (directory / "ca.pem").exists() and not force:
        raise ConfigurationError(
            f"{directory} already holds a PKI (ca.pem); use --force to replace it", location=str(directory)
        )
    practices = tuple(_parse_practice(s) for s in practice_specs) or DEFAULT_DEMO_PRACTICES
    pki = write_demo_pki(directory, practices=practices, hostnames=hostnames or ("localhost", "127.0.0.1"))
    click.echo(f"demo PKI written to {pki.directory} (keys mode 0600; the CA key was not written):")
    rows = _written_files(pki)
    width = max(len(label) for label, _ in rows)
    for label, path in rows:
        click.echo(f"  {label:<{width}}  {path}")


def _validity(info: CertificateInfo, now: datetime) -> str:
    span = f"{info.not_before:%Y-%m-%d %H:%M} to {info.not_after:%Y-%m-%d %H:%M} UTC"
    if info.not_after < now:
        return f"{span} (EXPIRED)"
    if info.not_before > now:
        return f"{span} (NOT YET VALID)"
    return f"{span} ({(info.not_after - now).days} days left)"


def _print_info(info: CertificateInfo, heading: str, now: datetime) -> None:
    click.echo(heading)
    rows = [
        ("subject", info.subject),
        ("issuer", info.issuer),
        ("serial", info.serial),
        ("validity", _validity(info, now)),
        ("SHA-256", info.fingerprint_sha256),
        ("SAN e-mail", ", ".join(info.san_emails)),
        ("SAN DNS", ", ".join(info.san_dns)),
        ("SAN URI", ", ".join(info.san_uris)),
        ("key usage", ", ".join(info.key_usage)),
        ("extended usage", ", ".join(info.extended_key_usage)),
        ("CA", "yes" if info.is_ca else "no"),
    ]
    for name, value in rows:
        if value:
            click.echo(f"  {name + ':':<16}{value}")


def _print_identification(ident: Identification, url: str) -> None:
    if ident.accepted:
        assert ident.practice is not None
        click.echo(f"registry {url}: practice {ident.practice.id} ({ident.matched_by}: {ident.reason})")
        bindings = ", ".join(str(b) for b in ident.practice.bindings) or "none"
        click.echo(f"  bound addresses: {bindings}")
    else:
        mapped = f" (maps to practice {ident.practice_id})" if ident.practice_id else ""
        click.echo(f"registry {url}: NOT ACCEPTED{mapped}: {ident.reason}")


@certs.command("inspect")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--registry",
    "registry_url",
    metavar="URL",
    help="Also ask this certificate registry which practice the (first) certificate belongs to.",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@handle_errors
def inspect_cert(file: Path, registry_url: str | None, as_json: bool) -> None:
    """Subject, issuer, SANs, validity, SHA-256 fingerprint and key usages of every certificate in FILE (PEM
    or DER); with --registry, which practice the registry maps the first one to.

    Exit status 1 when the registry does not accept the certificate."""
    chain = load_certificates(file)
    now = datetime.now(UTC)
    infos = [describe_certificate(c) for c in chain]
    ident: Identification | None = None
    if registry_url is not None:
        ident = open_registry(registry_url).identify(chain[0], chain[1:], at=now)
    if as_json:
        data: dict[str, Any] = {
            "file": str(file),
            "certificates": [
                {**info.as_dict(), "expired": info.not_after < now, "not_yet_valid": info.not_before > now}
                for info in infos
            ],
            "registry": None if ident is None else {"url": registry_url, **ident.as_dict()},
        }
        echo_json(data)
    else:
        for number, info in enumerate(infos, start=1):
            heading = f"{file}" if len(infos) == 1 else f"{file} [{number} of {len(infos)}]"
            _print_info(info, heading, now)
        if ident is not None:
            assert registry_url is not None
            _print_identification(ident, registry_url)
    if ident is not None and not ident.accepted:
        sys.exit(EXIT_FAILURE)


COMMANDS = [certs]
