"""``xdr-edge serve``: run the XDR edge endpoint until Ctrl-C or SIGTERM.

Thin: the options become :func:`xdr_edge.receiver.settings.load_receiver_settings` overrides (a ``--config``
TOML file supplies the rest), :func:`~xdr_edge.receiver.settings.build_server` assembles the parts, and this
module only prints where it listens and waits for a signal to stop.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from xdr_edge.cli.common import handle_errors, serve_until_signalled
from xdr_edge.receiver.settings import BuiltServer, ReceiverOptions, build_server, load_receiver_settings

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("serve")
@click.option("--config", "config_file", type=_FILE, help="TOML settings file; flags override its values.")
@click.option("--host", help="Address to listen on [default: 127.0.0.1].")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port to listen on (0: any free port) [default: 8443]."
)
@click.option("--cert", type=_FILE, help="Server certificate, PEM (chain allowed).")
@click.option("--key", type=_FILE, help="Server private key, PEM.")
@click.option("--client-ca", type=_FILE, help="CA bundle that client certificates must chain to.")
@click.option(
    "--crl", "crls", multiple=True, type=_FILE, help="CRL (PEM) checked in the TLS handshake; repeat."
)
@click.option(
    "--registry",
    envvar="XDR_EDGE_REGISTRY",
    help="Certificate registry: a path, sqlite:///abs/path.db or postgresql://... [env XDR_EDGE_REGISTRY].",
)
@click.option(
    "--inbox", type=click.Path(file_okay=False, path_type=Path), help="Directory for received submissions."
)
@click.option(
    "--receiver-name",
    help="This receiver's name: its working area in the inbox, in the index and in logs [default: host name].",
)
@click.option("--threads", type=click.IntRange(1, 1000), help="Worker threads [default: 10].")
@click.option(
    "--max-request-bytes", type=click.IntRange(1), help="Largest request accepted [default: 2 GiB]."
)
@click.option(
    "--max-envelope-bytes",
    type=click.IntRange(1024),
    help="Largest SOAP envelope (MTOM root part, or plain-SOAP body) accepted [default: 50 MiB].",
)
@click.option(
    "--max-xml-nodes",
    type=click.IntRange(100),
    help="Most elements, attributes and namespace declarations in an envelope [default: 200000].",
)
@click.option(
    "--max-requests-per-practice",
    type=click.IntRange(1),
    help="Requests one practice may have in progress at once; more get 503 [default: half the threads].",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds for the request line and all headers to arrive; slower clients get 408 [default: 5].",
)
@click.option(
    "--timeout",
    "socket_timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a silent client is given before it is dropped [default: 60].",
)
@click.option("--hook", help="Python callable 'package.module:function' given each stored submission.")
@click.option(
    "--behind-proxy",
    is_flag=True,
    default=None,
    help="Plain HTTP behind a TLS-terminating proxy that forwards the verified client certificate.",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    help="Proxy address or network whose forwarded certificates are trusted; repeat.",
)
@click.option(
    "--proxy-cert-header", help="Header carrying the URL-escaped client PEM [default: X-SSL-Client-Cert]."
)
@click.option(
    "--proxy-verify-header", help="Header carrying the proxy's verdict [default: X-SSL-Client-Verify]."
)
@click.option("--path", help="Accept POSTs only on this path (e.g. /xdr) [default: any path].")
@click.option(
    "--intermediates",
    type=_FILE,
    help="PEM bundle of intermediate CAs client certificates may chain through (besides --client-ca's).",
)
@click.option(
    "--understand-header",
    "understood_headers",
    multiple=True,
    metavar="QNAME",
    help="Header block accepted even when marked mustUnderstand (wsse:Security or {ns}local); repeat.",
)
@click.option(
    "--linger",
    "linger_seconds",
    type=click.FloatRange(min=0, min_open=True),
    help="After refusing a request early, seconds to discard what the client still sends [default: 5].",
)
@click.option(
    "-q", "--quiet", is_flag=True, help="No per-request log lines (they are on by default; never PHI)."
)
@handle_errors
def serve(config_file: Path | None, quiet: bool, **flags: object) -> None:
    """Receive ITI-41 submissions: mutual TLS, certificate -> practice, sender binding, inbox."""
    if not quiet:
        # An operator expects one line per request (practice, sender, message id, outcome, duration) without
        # asking for -v; the records go to the root handler that `xdr-edge` configured.
        receiver_log = logging.getLogger("xdr_edge.receiver")
        if receiver_log.getEffectiveLevel() > logging.INFO:
            receiver_log.setLevel(logging.INFO)
    server_config, options = load_receiver_settings(config_file, overrides=flags)
    built = build_server(server_config, options)

    def start() -> None:
        built.server.start()
        _announce(built, options)

    def stop() -> None:
        built.server.stop()
        built.close()

    serve_until_signalled(start, stop, stopping="stopping: finishing requests in progress")


def _announce(built: BuiltServer, options: ReceiverOptions) -> None:
    mode = (
        f"plain HTTP behind proxy {', '.join(options.trusted_proxies)}"
        if options.behind_proxy
        else "mutual TLS"
    )
    base = built.server.origin
    where = base + options.path if options.path else base + "/ (any path)"
    click.echo(f"xdr-edge receiver listening on {where} ({mode})")
    click.echo(f"  receiver: {built.inbox.receiver}")
    click.echo(f"  registry: {built.registry.location}")
    click.echo(f"  inbox:    {built.inbox.root}")
    click.echo(f"  health:   {base}/healthz")
    recovered = built.recovered
    if recovered.removed:
        click.echo(
            f"  removed {recovered.removed} leftover(s) of interrupted writes from this receiver's work area"
        )
    if recovered.completed:
        click.echo(f"  moved {recovered.completed} submission(s) recorded before an interruption into place")


COMMANDS = [serve]
