"""``xdr-edge conformance receiver|sender|list``: run the edge conformance catalogues (docs/conformance.md).

Thin: options -> :mod:`xdr_edge.conformance` -> a table on the terminal, optional JUnit XML and JSON files.
Exit status 0 only when every required case passed, 1 otherwise, 2 for bad options (nothing was run).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from xdr_edge.certs import load_certificates
from xdr_edge.cli.common import handle_errors
from xdr_edge.cli.wirecmds import check_output_path
from xdr_edge.conformance.bindings import DeclaredBindings, RegistryBindings, SenderBindings
from xdr_edge.conformance.cases import CaseResult, Report, TestCase, select
from xdr_edge.conformance.receiver import ReceiverTarget, receiver_catalogue, run_receiver
from xdr_edge.conformance.recording import Respond, SenderEndpointConfig
from xdr_edge.conformance.report import (
    catalogue_markdown,
    catalogue_table,
    format_table,
    write_json,
    write_junit,
)
from xdr_edge.conformance.sender import run_sender, sender_catalogue
from xdr_edge.practice import ClientCredential
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.protocol.model import DirectAddress
from xdr_edge.registry import open_registry, parse_registry_url

F = TypeVar("F", bound=Callable[..., Any])
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_OUT = click.Path(dir_okay=False, writable=True, path_type=Path)


def _address(value: str, option: str) -> DirectAddress:
    try:
        return DirectAddress.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from exc


def _pair(cert: Path | None, key: Path | None, name: str) -> tuple[Path, Path] | None:
    if (cert is None) != (key is None):
        raise click.UsageError(f"--{name}-cert and --{name}-key go together")
    return (cert, key) if cert is not None and key is not None else None


def _credential(
    cert: Path | None, key: Path | None, p12: Path | None, p12_env: str | None
) -> ClientCredential:
    if p12 is not None:
        if cert is not None or key is not None:
            raise click.UsageError("give either --cert/--key or --p12, not both")
        return ClientCredential(p12=p12, p12_password_env=p12_env)
    if cert is None or key is None:
        raise click.UsageError("the practice's client certificate is needed: --cert and --key, or --p12")
    return ClientCredential(cert=cert, key=key)


def _progress(result: CaseResult) -> None:
    mark = {"PASS": ".", "FAIL": "F", "SKIP": "s"}[result.status.value]
    click.echo(mark, nl=False, err=True)


def _finish(report: Report, junit: Path | None, json_file: Path | None) -> None:
    click.echo("", err=True)
    width = min(max(shutil.get_terminal_size((110, 24)).columns, 80), 160)
    click.echo(format_table(report, width=width))
    if junit is not None:
        write_junit(report, junit)
        click.echo(f"JUnit XML written to {junit}")
    if json_file is not None:
        write_json(report, json_file)
        click.echo(f"JSON written to {json_file}")
    sys.exit(report.exit_status)


def _check_reports(junit: Path | None, json_file: Path | None) -> None:
    """Refuse report paths that cannot be written before the run: found only afterwards, they cost the whole
    run (every send to the endpoint, or the wait for a sender) and its results."""
    if junit is not None:
        check_output_path(junit, option="--junit", nothing="nothing was run")
    if json_file is not None:
        check_output_path(json_file, option="--json", nothing="nothing was run")


def _report_options(func: F) -> F:
    func = click.option("--json", "json_file", type=_OUT, help="Also write the results as JSON to FILE.")(
        func
    )
    return click.option("--junit", type=_OUT, help="Also write JUnit XML to FILE (for CI systems).")(func)


@click.group("conformance")
def conformance() -> None:
    """Edge conformance suite: test an XDR endpoint (receiver) or an XDR sender against the standards and the ONC Edge Testing Tool's tests."""


@conformance.command("receiver")
@click.argument("endpoint")
@click.option(
    "--ca", "ca_bundle", type=_FILE, required=True, help="CA bundle that issued the endpoint's certificate."
)
@click.option("--cert", type=_FILE, help="The practice's client certificate (PEM).")
@click.option("--key", type=_FILE, help="The practice's client key (PEM).")
@click.option("--p12", type=_FILE, help="The practice's client certificate and key as PKCS#12.")
@click.option("--p12-password-env", metavar="VAR", help="Environment variable holding the PKCS#12 password.")
@click.option(
    "--from", "bound_from", required=True, help="A sender address bound to the certificate's practice."
)
@click.option("--unbound-from", required=True, help="A sender address NOT bound to that practice.")
@click.option("--to", "recipients", multiple=True, required=True, help="Recipient Direct address; repeat.")
@click.option(
    "--untrusted-cert", type=_FILE, help="Client certificate from a CA the endpoint must not trust."
)
@click.option("--untrusted-key", type=_FILE, help="Its key.")
@click.option("--expired-cert", type=_FILE, help="An expired client certificate (otherwise trusted).")
@click.option("--expired-key", type=_FILE, help="Its key.")
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=30.0, show_default=True, help="Seconds per request."
)
@click.option(
    "--only",
    multiple=True,
    metavar="ID",
    help="Run only these cases: an id, or its leading dash-separated part (tls, metadata, soap-version); repeat.",
)
@_report_options
@handle_errors
def receiver(
    endpoint: str,
    ca_bundle: Path,
    cert: Path | None,
    key: Path | None,
    p12: Path | None,
    p12_password_env: str | None,
    bound_from: str,
    unbound_from: str,
    recipients: tuple[str, ...],
    untrusted_cert: Path | None,
    untrusted_key: Path | None,
    expired_cert: Path | None,
    expired_key: Path | None,
    timeout: float,
    only: tuple[str, ...],
    junit: Path | None,
    json_file: Path | None,
) -> None:
    """Run the receiver catalogue against ENDPOINT (an https:// XDR endpoint) with a practice's certificate."""
    _check_reports(junit, json_file)
    if not endpoint.lower().startswith("https://"):
        raise click.BadParameter(
            "must be an https:// URL (the XDR edge uses mutual TLS)", param_hint="ENDPOINT"
        )
    target = ReceiverTarget(
        endpoint=endpoint,
        ca_bundle=ca_bundle,
        credential=_credential(cert, key, p12, p12_password_env),
        bound_from=_address(bound_from, "--from"),
        unbound_from=_address(unbound_from, "--unbound-from"),
        recipients=tuple(_address(r, "--to") for r in recipients),
        untrusted=_pair(untrusted_cert, untrusted_key, "untrusted"),
        expired=_pair(expired_cert, expired_key, "expired"),
        timeout=timeout,
    )
    try:
        select(receiver_catalogue(), only)
    except KeyError as exc:
        raise click.BadParameter(f"unknown case id(s): {exc.args[0]}", param_hint="--only") from None
    _finish(run_receiver(target, only=only, on_result=_progress), junit, json_file)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise click.BadParameter("expected HOST:PORT, e.g. 127.0.0.1:9443", param_hint="--listen")
    return host.strip("[]"), int(port)


def _bindings(
    registry_url: str | None, practices: tuple[tuple[str, str], ...], client_ca: Path
) -> SenderBindings | None:
    """The bindings the sender must keep: the receiver's registry, or ``--practice`` pairs (or none)."""
    if registry_url is not None and practices:
        raise click.UsageError("give the bindings either as --registry or as --practice pairs, not both")
    if registry_url is not None:
        if not parse_registry_url(registry_url).is_file():
            raise ConfigurationError(
                f"registry {registry_url} does not exist (the receiver's registry, made by 'xdr-edge registry init')",
                location="--registry",
            )
        return RegistryBindings(open_registry(registry_url), tuple(load_certificates(client_ca)))
    if practices:
        return DeclaredBindings.parse(practices)
    return None


@conformance.command("sender")
@click.option("--listen", required=True, metavar="HOST:PORT", help="Where the recording endpoint listens.")
@click.option("--cert", type=_FILE, required=True, help="The endpoint's server certificate (PEM).")
@click.option("--key", type=_FILE, required=True, help="The endpoint's server key (PEM).")
@click.option(
    "--client-ca", type=_FILE, required=True, help="CA bundle the sender's client certificate must chain to."
)
@click.option(
    "--respond",
    type=click.Choice([r.value for r in Respond]),
    default=Respond.SUCCESS.value,
    show_default=True,
    help="How to answer each request (stall: never answer within the sender's timeout).",
)
@click.option(
    "--bad-server-cert",
    is_flag=True,
    help="Present a server certificate from an untrusted CA (ETT 7): the sender must hang up without data.",
)
@click.option(
    "--registry",
    "registry_url",
    metavar="URL",
    help="The receiver's certificate registry: each request's sender addresses must be bound to the practice "
    "its client certificate maps to.",
)
@click.option(
    "--practice",
    "practices",
    nargs=2,
    multiple=True,
    metavar="CERT_OR_FINGERPRINT ADDRESS_OR_DOMAIN",
    help="Instead of --registry: a certificate file or SHA-256 fingerprint and an address or domain bound to its "
    "practice; repeat for each binding.",
)
@click.option(
    "--expect", type=click.IntRange(min=1), default=1, show_default=True, help="Messages to wait for."
)
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True, help="Seconds to wait."
)
@_report_options
@handle_errors
def sender(
    listen: str,
    cert: Path,
    key: Path,
    client_ca: Path,
    respond: str,
    bad_server_cert: bool,
    registry_url: str | None,
    practices: tuple[tuple[str, str], ...],
    expect: int,
    timeout: float,
    junit: Path | None,
    json_file: Path | None,
) -> None:
    """Run a recording XDR endpoint, wait for a sender's messages, and judge them with the sender catalogue."""
    _check_reports(junit, json_file)
    host, port = _listen(listen)
    bindings = _bindings(registry_url, practices, client_ca)
    config = SenderEndpointConfig(
        cert=cert,
        key=key,
        client_ca=client_ca,
        host=host,
        port=port,
        respond=Respond(respond),
        bad_server_cert=bad_server_cert,
    )

    def ready(url: str) -> None:
        what = "connection(s)" if bad_server_cert else "message(s)"
        click.echo(f"listening on {url}; waiting for {expect} {what} (up to {timeout:g} s) ...", err=True)

    _finish(
        run_sender(
            config, expect=expect, timeout=timeout, bindings=bindings, on_ready=ready, on_result=_progress
        ),
        junit,
        json_file,
    )


@conformance.command("list")
@click.option("--mode", type=click.Choice(["receiver", "sender", "all"]), default="all", show_default=True)
@click.option("--markdown", is_flag=True, help="Print Markdown tables (as in docs/conformance.md).")
@handle_errors
def list_cases(mode: str, markdown: bool) -> None:
    """Print the catalogue: id, required, source (ETT test / standard section), case and expectation."""
    catalogues: list[tuple[str, Sequence[TestCase[Any]]]] = [
        ("receiver", receiver_catalogue()),
        ("sender", sender_catalogue()),
    ]
    for name, cases in catalogues:
        if mode not in (name, "all"):
            continue
        if markdown:
            click.echo(f"### {name.capitalize()} catalogue\n\n{catalogue_markdown(cases)}\n")
        else:
            click.echo(f"{name} catalogue ({len(cases)} cases)\n{catalogue_table(cases)}\n")


COMMANDS = [conformance]
