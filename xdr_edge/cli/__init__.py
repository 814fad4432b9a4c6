"""The ``xdr-edge`` command. Thin: every command parses options, calls the library and prints the result.

Commands live in small modules by topic (``wirecmds``: pack/inspect, ``sendcmd``, ``servecmd``, ``registrycmds``,
``certscmds``, ``conformancecmds``, ``democmd``, ``apicmds``) and are registered here, so that adding one does not touch the
others. Exit statuses are shared by all commands (:mod:`xdr_edge.cli.common`). May import any part of xdr_edge; heavy
``certscmds``, ``conformancecmds``, ``democmd``, ``outboxcmds``) and are registered here, so that adding one does
not touch the others. Exit statuses are shared by all commands (:mod:`xdr_edge.cli.common`). May import any part of xdr_edge; heavy
libraries are imported by the command that needs them.
"""

from __future__ import annotations

__all__ = ["main"]

import importlib
import logging

import click

from xdr_edge._version import __version__

_COMMAND_MODULES = (
    "wirecmds",
    "sendcmd",
    "servecmd",
    "registrycmds",
    "certscmds",
    "conformancecmds",
    "democmd",
    "apicmds",
    "outboxcmds",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
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


def _register() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"xdr_edge.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"xdr_edge.cli.{name}":
                continue  # a command module not written yet
            raise
        for command in getattr(module, "COMMANDS", ()):
            main.add_command(command)


_register()
