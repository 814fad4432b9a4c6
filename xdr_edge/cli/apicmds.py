"""``xdr-edge api ...``: the JSON API for integration engines (docs/api.md).

Thin: ``serve`` reads the settings (:func:`xdr_edge.api.settings.load_api_settings`), refuses an SQLite registry
database other users may read (it holds the password hashes), assembles the app on the receiver's cheroot
server and waits for a signal; ``add-application``, ``reset-application-password``,
``disable-application``, ``enable-application`` and ``applications`` administer integrators' applications in the
registry database (:mod:`xdr_edge.api.applications`), audited with the OS user as the actor; ``openapi`` prints
the OpenAPI document. A generated password is printed once, on stdout, and never stored in clear.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from xdr_edge.api.applications import add_application, reset_application_password, set_application_active
from xdr_edge.api.openapi import openapi_document
from xdr_edge.api.settings import build_api, check_registry_private, load_api_settings
from xdr_edge.cli.common import audit_actor, echo_json, handle_errors, registry_option, serve_until_signalled
from xdr_edge.registry.accounts import open_accounts

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("api")
def api() -> None:
    """The JSON API for integration engines: serve it, administer applications, print its OpenAPI document."""


@api.command("serve")
@click.option("--config", "config_file", type=_FILE, required=True, help="TOML settings file (docs/api.md).")
@click.option("--host", help="Address to listen on (overrides server.host).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port to listen on (overrides server.port).")
@click.option(
    "-q", "--quiet", is_flag=True, help="No per-call log lines (they are on by default; never secrets)."
)
@handle_errors
def serve(config_file: Path, host: str | None, port: int | None, quiet: bool) -> None:
    """Serve the JSON API over HTTPS until Ctrl-C or SIGTERM."""
    if not quiet:
        api_log = logging.getLogger("xdr_edge.api")
        if api_log.getEffectiveLevel() > logging.INFO:
            api_log.setLevel(logging.INFO)
    server_config, settings = load_api_settings(config_file, overrides={"host": host, "port": port})
    check_registry_private(settings.registry)
    built = build_api(server_config, settings)

    def start() -> None:
        built.server.start()
        click.echo(f"xdr-edge API listening on {built.url}/ (OpenAPI: {built.url}/openapi.json)")
        click.echo(f"  registry: {built.store.location}")
        click.echo(f"  sending:  {settings.endpoint or 'not configured (MessageSend answers 503)'}")
        swept = built.app.options.spool.swept
        if swept:
            click.echo(f"  removed {swept} spooled upload(s) left by API processes that stopped")

    serve_until_signalled(start, built.stop, stopping="stopping: finishing calls in progress")


@api.command("add-application")
@click.argument("application_id")
@click.option("--name", default="", help="A display name (default: the id).")
@registry_option
@handle_errors
def add_application_cmd(application_id: str, name: str, registry_url: str) -> None:
    """Create an application and print its generated password (shown this once)."""
    password = add_application(open_accounts(registry_url), application_id, name, actor=audit_actor())
    click.echo(f"application {application_id} created; its password (shown once, store it now):", err=True)
    click.echo(password)


@api.command("reset-application-password")
@click.argument("application_id")
@registry_option
@handle_errors
def reset_password_cmd(application_id: str, registry_url: str) -> None:
    """Replace an application's password with a new generated one (shown this once)."""
    password = reset_application_password(open_accounts(registry_url), application_id, actor=audit_actor())
    click.echo(
        f"new password of application {application_id} (shown once; the old one no longer works):", err=True
    )
    click.echo(password)


@api.command("disable-application")
@click.argument("application_id")
@registry_option
@handle_errors
def disable_cmd(application_id: str, registry_url: str) -> None:
    """Refuse an application's calls from now on (its practices stay)."""
    _set_active(registry_url, application_id, False)


@api.command("enable-application")
@click.argument("application_id")
@registry_option
@handle_errors
def enable_cmd(application_id: str, registry_url: str) -> None:
    """Accept a disabled application's calls again."""
    _set_active(registry_url, application_id, True)


def _set_active(registry_url: str, application_id: str, active: bool) -> None:
    state = "enabled" if active else "disabled"
    changed = set_application_active(open_accounts(registry_url), application_id, active, actor=audit_actor())
    click.echo(f"application {application_id} {state if changed else 'was already ' + state}")


@api.command("applications")
@registry_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@handle_errors
def applications_cmd(registry_url: str, as_json: bool) -> None:
    """List the applications (never their passwords)."""
    records = open_accounts(registry_url).applications()
    if as_json:
        echo_json([r.as_dict() for r in records])
        return
    for r in records:
        state = "active" if r.active else "DISABLED"
        click.echo(f"{r.id}  {r.name}  {state}  password set {r.password_changed_at:%Y-%m-%d}")


@api.command("openapi")
@handle_errors
def openapi_cmd() -> None:
    """Print the API's OpenAPI document (as served at /api/v1/openapi.json)."""
    click.echo(json.dumps(openapi_document(), indent=2))


COMMANDS = [api]
