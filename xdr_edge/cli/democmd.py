"""``xdr-edge demo``: the whole system on loopback in one command."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from xdr_edge.cli.common import EXIT_FAILURE, handle_errors
from xdr_edge.devtools.demo import run_demo


@click.command("demo")
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the PKI, registry, inbox and documents in this folder instead of a temporary one.",
)
@handle_errors
def demo(keep: Path | None) -> None:
    """Run a HISP edge and two practices on loopback: sends, refusals, and where the files went."""
    steps, _ = run_demo(keep=keep, echo=click.echo)
    if not all(step.passed for step in steps):
        click.echo("some demo steps did not behave as expected", err=True)
        sys.exit(EXIT_FAILURE)


COMMANDS = [demo]
