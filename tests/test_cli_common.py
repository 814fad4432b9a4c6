"""The CLI's error boundary: our errors become one line and a documented exit status; a bug becomes one line
(exit 4) with the traceback only at -vv; click's own usage errors keep their exit status 2."""

from __future__ import annotations

import logging
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from tests.panics import PANIC_TEXT, Panic
from xdr_edge.cli.common import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_INTERNAL, EXIT_TRANSPORT, handle_errors
from xdr_edge.protocol.errors import ConfigurationError, TransportError


def _command(exc: BaseException) -> click.Command:
    @click.command()
    @handle_errors
    def failing() -> None:
        raise exc

    return failing


def test_our_errors_map_to_documented_statuses() -> None:
    runner = CliRunner()
    result = runner.invoke(_command(ConfigurationError("bad key", location="x.toml")))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "error: bad key (at x.toml)" in result.output
    result = runner.invoke(_command(TransportError("connection refused")))
    assert result.exit_code == EXIT_TRANSPORT


def test_a_bug_is_one_line_without_traceback_or_message_text() -> None:
    result = CliRunner().invoke(_command(KeyError("patient Testpatient")))
    assert result.exit_code == EXIT_INTERNAL
    assert "internal error (KeyError)" in result.output
    assert "Traceback" not in result.output
    assert "Testpatient" not in result.output  # library messages may quote content: not shown by default


def test_traceback_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="xdr_edge.cli"):
        CliRunner().invoke(_command(RuntimeError("boom")))
    traced = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert traced and all(r.levelno == logging.DEBUG for r in traced)


def test_click_usage_errors_pass_through() -> None:
    result = CliRunner().invoke(_command(click.UsageError("missing --to")))
    assert result.exit_code == 2
    assert "missing --to" in result.output


def test_a_reader_that_stops_reading_gets_the_sigpipe_status_not_bad_input() -> None:
    """`xdr-edge ... | head`: not "error: Broken pipe" with exit 2 ("nothing was sent"), which after a send would
    be false; quiet, with 141 as a shell reports a process ended by SIGPIPE."""
    process = subprocess.Popen(
        [sys.executable, "-m", "xdr_edge", "conformance", "list", "--markdown"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the child (still importing) writes anything
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == EXIT_BROKEN_PIPE
    assert b"error" not in stderr.lower() and b"Traceback" not in stderr


# -- the command table: every command is found where the table says, its summary is its own ---------------


def test_the_command_table_matches_the_command_modules() -> None:
    """``xdr-edge --help`` prints the table's summaries without importing the commands: each must be the
    command's own (the first paragraph of its help), and every command a module defines must be in it."""
    import importlib
    import pkgutil

    import xdr_edge.cli as cli

    context = click.Context(cli.main)
    for name, (module, summary) in cli._COMMANDS.items():
        command = cli.main.get_command(context, name)
        assert command is not None, f"{name} is not in xdr_edge.cli.{module}.COMMANDS"
        assert command.short_help is None and (command.help or "").split("\n\n")[0] == summary, name
    defined = {
        command.name
        for info in pkgutil.iter_modules(cli.__path__)
        for command in getattr(importlib.import_module(f"xdr_edge.cli.{info.name}"), "COMMANDS", ())
    }
    assert defined == set(cli._COMMANDS)


@pytest.mark.parametrize("argument", ["--version", "--help"])
def test_version_and_help_import_no_command_and_none_of_the_heavy_stack(argument: str) -> None:
    """What makes every call of the command slow is importing zeep, lxml, cryptography, urllib3, the server:
    only the command that needs them imports them. (Its time: ``python -m benchmarks startup``.)"""
    probe = (
        "import sys\n"
        "from xdr_edge.cli import main\n"
        "try:\n"
        f"    main([{argument!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('zeep', 'lxml', 'cryptography', 'urllib3', 'cheroot', 'multipart', 'xdr_edge.cli.sendcmd')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
    assert ("xdr-edge, version" in result.stdout) == (argument == "--version")


def test_a_panic_inside_a_library_is_one_line_too(caplog: pytest.LogCaptureFixture) -> None:
    """cryptography panicked on a PKCS#12 password holding a NUL, with the password's bytes in its text: a
    panic is not an ``Exception``, and it printed a traceback with that text. Now one line, and at -vv its type
    and frames without its text."""
    with caplog.at_level(logging.DEBUG, logger="xdr_edge.cli"):
        result = CliRunner().invoke(_command(Panic(PANIC_TEXT)))
    assert result.exit_code == EXIT_INTERNAL
    assert "internal error (Panic)" in result.output
    assert "Traceback" not in result.output and "NulError" not in result.output
    assert "Panic inside a library" in caplog.text and "NulError" not in caplog.text, caplog.text
