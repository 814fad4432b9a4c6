"""``xdr-edge send``: compose a submission from files and send it with one practice's client certificate.

Thin (STYLE "Habits"): the practice comes from a sender configuration file (``--config`` + ``--practice``) or
from options naming the endpoint, the HISP's CA bundle and one credential; everything else is
:class:`~xdr_edge.cli.wirecmds.ContentOptions` (shared with ``pack``) and
:meth:`xdr_edge.sender.client.XdrClient.send`. Pre-flight problems (an unbound or uncovered sender, an expired
certificate, invalid metadata) stop before any network I/O, with exit status 2.

No password is ever taken from the command line (it would show in ``ps`` and shell history): a PKCS#12
password comes from an environment variable or a file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import click

from xdr_edge.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_TRANSPORT, echo_json, handle_errors
from xdr_edge.cli.wirecmds import ContentOptions, check_output_path, metadata_options
from xdr_edge.practice import Binding, ClientCredential, Practice
from xdr_edge.protocol.classify import Outcome
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.protocol.model import DirectAddress, MetadataLevel
from xdr_edge.sender.client import RetryPolicy, SendResult, XdrClient
from xdr_edge.sender.config import load_sender_config

#: ``xdr-edge send`` exit status per outcome (docs/sending.md "Exit statuses").
EXIT_STATUS: dict[Outcome, int] = {
    Outcome.SUCCESS: EXIT_OK,
    Outcome.PARTIAL_SUCCESS: EXIT_OK,
    Outcome.FAILURE: EXIT_FAILURE,
    Outcome.FAULT: EXIT_FAILURE,
    Outcome.TRANSPORT_ERROR: EXIT_TRANSPORT,
    Outcome.OUTCOME_UNKNOWN: EXIT_TRANSPORT,
}

DEFAULT_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
AD_HOC_PRACTICE_ID = "cli"

_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)


@dataclass(frozen=True)
class _Target:
    """Where and as whom to send: endpoint, CA bundle, the practice, and the configured defaults."""

    endpoint: str
    ca_bundle: Path
    practice: Practice
    level: MetadataLevel
    timeout: float


@dataclass(frozen=True)
class _AdHoc:
    endpoint: str | None
    ca: Path | None
    cert: Path | None
    key: Path | None
    p12: Path | None
    p12_password_env: str | None
    p12_password_file: Path | None

    def given(self) -> list[str]:
        names = ("endpoint", "ca", "cert", "key", "p12", "p12_password_env", "p12_password_file")
        return ["--" + n.replace("_", "-") for n in names if getattr(self, n) is not None]


def _from_config(config: Path, practice_id: str | None, ad_hoc: _AdHoc) -> _Target:
    if ad_hoc.given():
        raise click.UsageError(
            f"--config cannot be combined with {', '.join(ad_hoc.given())}: the configuration file names the "
            "endpoint, the CA bundle and the practice's credential"
        )
    if not practice_id:
        raise click.UsageError("--config needs --practice ID (which practice's certificate to send with)")
    loaded = load_sender_config(config)
    return _Target(
        endpoint=loaded.endpoint,
        ca_bundle=loaded.ca_bundle,
        practice=loaded.practice(practice_id),
        level=loaded.metadata_level,
        timeout=loaded.timeout_seconds,
    )


def _credential(ad_hoc: _AdHoc) -> ClientCredential:
    pem = ad_hoc.cert is not None or ad_hoc.key is not None
    if pem and ad_hoc.p12 is not None:
        raise click.UsageError("give either --cert and --key, or --p12, not both")
    if pem:
        if ad_hoc.cert is None or ad_hoc.key is None:
            raise click.UsageError("--cert and --key must be given together")
        if ad_hoc.p12_password_env or ad_hoc.p12_password_file:
            raise click.UsageError("--p12-password-env/--p12-password-file only go with --p12")
        return ClientCredential(cert=ad_hoc.cert, key=ad_hoc.key)
    if ad_hoc.p12 is None:
        raise click.UsageError("the client certificate is missing: give --cert and --key, or --p12")
    if ad_hoc.p12_password_env and ad_hoc.p12_password_file:
        raise click.UsageError("give either --p12-password-env or --p12-password-file, not both")
    return ClientCredential(
        p12=ad_hoc.p12, p12_password_env=ad_hoc.p12_password_env, p12_password_file=ad_hoc.p12_password_file
    )


def _from_options(ad_hoc: _AdHoc, practice_id: str | None, sender: str) -> _Target:
    """The practice built from the options: id ``cli``, bound to the ``--from`` address (the user asserts the
    binding; the certificate-coverage check of the pre-flight still applies)."""
    if practice_id:
        raise click.UsageError(
            "--practice needs --config (with --endpoint the practice is the one on the command line)"
        )
    if ad_hoc.endpoint is None or ad_hoc.ca is None:
        raise click.UsageError(
            "give either --config FILE --practice ID, or --endpoint URL --ca FILE with a credential"
        )
    try:
        address = DirectAddress.parse(sender)
    except ValueError as exc:
        raise ConfigurationError(f"--from: {exc}", location="--from") from None
    practice = Practice(
        id=AD_HOC_PRACTICE_ID,
        name="practice given on the command line",
        bindings=(Binding(address=address),),
        credential=_credential(ad_hoc),
    )
    return _Target(ad_hoc.endpoint, ad_hoc.ca, practice, MetadataLevel.MINIMAL, DEFAULT_TIMEOUT)


def _print_result(result: SendResult) -> None:
    """The outcome for a person: what happened first, then the identifiers needed to follow it up."""
    click.echo(result.message)
    rows = [
        ("outcome", result.outcome.value + (" (already delivered)" if result.already_delivered else "")),
        ("practice", result.practice_id),
        ("endpoint", result.endpoint),
        ("message id", result.message_id),
        ("submission set", result.submission_set_unique_id),
        ("documents", ", ".join(result.document_unique_ids)),
        ("HTTP status", "-" if result.http_status is None else str(result.http_status)),
        (
            "elapsed",
            f"{result.elapsed_seconds:.2f} s, {result.attempts} attempt(s), {result.bytes_sent} bytes sent",
        ),
    ]
    if result.fault is not None:
        sub = f" / {result.fault.subcode}" if result.fault.subcode else ""
        rows.append(("fault", f"{result.fault.code}{sub}: {result.fault.reason}"))
    for name, value in rows:
        click.echo(f"  {name + ':':<16}{value}")
    if result.errors:
        click.echo("  errors:")
        for error in result.errors:
            where = f" [{error.location}]" if error.location else ""
            click.echo(f"    {error.severity.value} {error.error_code}: {error.code_context}{where}")


def _save_response(result: SendResult, path: Path) -> str | None:
    """Write the response as one MIME entity (Content-Type line, blank line, body), readable by ``inspect``.

    Returns a warning instead of raising when the file cannot be written: by now the submission was sent and
    may be stored, so its outcome must still be printed, and the exit status must be the outcome's, not the
    "nothing was sent" of a bad option (the path itself was checked before sending)."""
    if result.raw_response is None:
        click.echo(f"no response was received; {path} not written", err=True)
        return None
    content_type = result.response_content_type or "application/octet-stream"
    tmp = path.with_name(path.name + ".part")
    try:
        with tmp.open("wb") as out:
            out.write(f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace"))
            out.write(result.raw_response)
        tmp.replace(path)
    except OSError as exc:
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
        return f"warning: the response could not be saved to {path}: {exc.strerror or exc}"
    click.echo(f"response saved to {path}", err=True)
    return None


@click.command("send")
@metadata_options
@click.option("--config", "config", type=_PATH, help="Sender configuration (TOML); use with --practice.")
@click.option("--practice", "practice_id", help="Practice id in the configuration file.")
@click.option("--endpoint", help="HISP XDR endpoint (https://...), instead of --config.")
@click.option("--ca", type=_PATH, help="CA bundle that issued the HISP's server certificate (PEM).")
@click.option("--cert", type=_PATH, help="Client certificate (PEM, chain allowed).")
@click.option("--key", type=_PATH, help="Client private key (PEM, unencrypted, mode 0600).")
@click.option("--p12", type=_PATH, help="Client certificate and key as one PKCS#12 file.")
@click.option("--p12-password-env", metavar="VAR", help="Environment variable holding the PKCS#12 password.")
@click.option("--p12-password-file", type=_PATH, help="File holding the PKCS#12 password (one line).")
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    default=2,
    show_default=True,
    help="Extra attempts after a connect failure, HTTP 503, a connection closed mid-upload or an unknown "
    "outcome.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help=f"Seconds to wait for the response (default: the config file's, else {DEFAULT_TIMEOUT:g}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the SendResult as JSON.")
@click.option(
    "--save-response",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the raw response in this file (its directory must exist; checked before sending).",
)
@handle_errors
def send(
    content: ContentOptions,
    config: Path | None,
    practice_id: str | None,
    endpoint: str | None,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    p12: Path | None,
    p12_password_env: str | None,
    p12_password_file: Path | None,
    retries: int,
    timeout: float | None,
    as_json: bool,
    save_response: Path | None,
) -> None:
    """Send FILE... to a HISP's XDR edge with one practice's client certificate.

    \b
    Either  --config FILE --practice ID
    or      --endpoint URL --ca FILE (--cert FILE --key FILE | --p12 FILE [--p12-password-env VAR |
            --p12-password-file FILE])

    Exit status: 0 success or partial success, 1 failure or fault from the HISP, 2 bad input or configuration
    (nothing sent), 3 transport error or outcome unknown.
    """
    if save_response is not None:
        check_output_path(
            save_response, option="--save-response", inputs=content.files, nothing="nothing was sent"
        )
    ad_hoc = _AdHoc(endpoint, ca, cert, key, p12, p12_password_env, p12_password_file)
    if config is not None:
        target = _from_config(config, practice_id, ad_hoc)
    else:
        target = _from_options(ad_hoc, practice_id, content.sender)
    submission = content.compose(target.level)
    with (
        XdrClient(
            endpoint=target.endpoint,
            ca_bundle=target.ca_bundle,
            practices=[target.practice],
            timeout=(CONNECT_TIMEOUT, timeout or target.timeout),
            retry=RetryPolicy(max_attempts=retries + 1),
            placement=content.placement,
        ) as client,
        content.explaining(),
    ):
        result = client.send(
            submission, practice=target.practice, keep_raw_response=save_response is not None
        )
    warning = _save_response(result, save_response) if save_response is not None else None
    if as_json:
        echo_json(result.as_dict())
    else:
        _print_result(result)
    if warning is not None:
        click.echo(warning, err=True)
    status = EXIT_STATUS[result.outcome]
    if status != EXIT_OK:
        sys.exit(status)


COMMANDS = [send]
