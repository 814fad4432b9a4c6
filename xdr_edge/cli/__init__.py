"""The ``xdr-edge`` command. Thin: every command parses options, calls the library and prints the result.

Commands live in small modules by topic (``wirecmds``: pack/inspect, ``sendcmd``, ``servecmd``, ``registrycmds``,
``certscmds``, ``conformancecmds``, ``democmd``, ``apicmds``, ``outboxcmds``), each listing its commands in ``COMMANDS``, and are
named here with the module that defines them and their one-line summary. A command's module (and with it the
heavy stack: zeep, lxml, cryptography, the server) is imported only when that command runs or shows its own
help: ``xdr-edge --version`` and ``xdr-edge --help`` import click and nothing else of weight. Adding a command:
its module, and one row in :data:`_COMMANDS` (``tests/test_cli_common.py`` checks the rows against the
modules). Exit statuses are shared by all commands (:mod:`xdr_edge.cli.common`).
"""

from __future__ import annotations

__all__ = ["main"]

import importlib
import logging

import click

from xdr_edge._version import __version__

#: Command name -> (module in xdr_edge.cli, the first paragraph of the command's help: its summary in
#: ``xdr-edge --help``).
_COMMANDS: dict[str, tuple[str, str]] = {
    "api": (
        "apicmds",
        "The JSON API for integration engines: serve it, administer applications, print its OpenAPI document.",
    ),
    "certs": (
        "certscmds",
        "Certificates: a demo PKI for trying things out, and inspection of certificate files.",
    ),
    "conformance": (
        "conformancecmds",
        "Edge conformance suite: test an XDR endpoint (receiver) or an XDR sender against the standards and "
        "the ONC Edge Testing Tool's tests.",
    ),
    "demo": (
        "democmd",
        "Run a HISP edge and two practices on loopback: sends, refusals, and where the files went.",
    ),
    "inspect": (
        "wirecmds",
        "Read a stored message (request or response; MTOM, plain SOAP or a raw HTTP capture): print every finding.",
    ),
    "outbox": (
        "outboxcmds",
        "The batch folder-drop sender: drops written into DIR/incoming/ are sent and end in sent/ or failed/.",
    ),
    "pack": (
        "wirecmds",
        "Write one MIME entity: the Content-Type header, a blank line, then the body exactly as sent.",
    ),
    "registry": (
        "registrycmds",
        "Practices, their client certificates, bound Direct addresses, trust anchors, CRLs, mapping rules.",
    ),
    "send": ("sendcmd", "Send FILE... to a HISP's XDR edge with one practice's client certificate."),
    "serve": (
        "servecmd",
        "Receive ITI-41 submissions: mutual TLS, certificate -> practice, sender binding, inbox.",
    ),
}


class _Commands(click.Group):
    """A group whose commands are imported when used (see the module docstring)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(f"xdr_edge.cli.{entry[0]}")
        return next((c for c in getattr(module, "COMMANDS", ()) if c.name == cmd_name), None)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list with the summaries of :data:`_COMMANDS`, as click would print it from the commands
        themselves, without importing them."""
        limit = formatter.width - 6 - max(len(name) for name in _COMMANDS)
        rows = [
            (name, click.Command(name, help=_COMMANDS[name][1]).get_short_help_str(limit))
            for name in sorted(_COMMANDS)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.version_option(__version__, prog_name="xdr-edge")
@click.option(
    "-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug; never PHI)."
)
def main(verbose: int) -> None:
    """XDR/SOAP Direct edge connector: send, receive and test IHE ITI-41 over mutual TLS."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # zeep's transport logs whole envelopes at DEBUG (PHI): keep it quiet whatever -v says.
    logging.getLogger("zeep").setLevel(logging.WARNING)
