"""Shared CLI plumbing: exit statuses, error printing without tracebacks, JSON output, the ``--registry``
option and the audit actor of the administration commands, and running a server until a signal stops it."""

from __future__ import annotations

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILURE",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_TRANSPORT",
    "audit_actor",
    "echo_json",
    "handle_errors",
    "registry_option",
    "serve_until_signalled",
]

import functools
import getpass
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, ParamSpec, TypeVar

import click

from xdr_edge.logsafe import log_internal_error
from xdr_edge.protocol.errors import (
    STOP_REQUESTS,
    CertificateError,
    TransportError,
    ValidationFailed,
    XdrError,
)

EXIT_OK = 0
EXIT_FAILURE = 1  # the peer said Failure / fault, or inspected content has errors
EXIT_BAD_INPUT = 2  # bad input or configuration: nothing was sent
EXIT_TRANSPORT = 3  # transport error or outcome unknown
EXIT_INTERNAL = 4  # a bug in xdr-edge: reported in one line; -vv logs the traceback
EXIT_BROKEN_PIPE = 141  # stdout was closed by the reader (`| head`): 128 + SIGPIPE, as a shell reports it

log = logging.getLogger("xdr_edge.cli")

P = ParamSpec("P")
R = TypeVar("R")


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into one clear line on stderr and the documented exit status; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            result = func(*args, **kwargs)
            sys.stdout.flush()  # a reader that went away shows up here (below), not in click's own handler
            return result
        except ValidationFailed as exc:
            click.echo(f"error: {exc.message}", err=True)
            for finding in exc.findings:
                click.echo(f"  {finding}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except TransportError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_TRANSPORT)
        except (CertificateError, XdrError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except BrokenPipeError:
            # Whoever read our output stopped reading (`| head`). Not "bad input, nothing was sent" (2): a send
            # may have happened. Quiet, with the status a shell gives a process killed by SIGPIPE; stdout is
            # pointed at /dev/null so that the interpreter's final flush does not raise again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(EXIT_BROKEN_PIPE)
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            click.echo(f"error: {exc.strerror or exc}{where}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except click.exceptions.ClickException:
            raise  # usage errors: click prints them itself (exit 2)
        except STOP_REQUESTS:
            raise
        except BaseException as exc:
            # Not one of ours: a bug (or a panic inside a library, which is not an Exception). One line for the
            # user; the traceback only with -vv, since messages from deep inside a library can quote document
            # content or a password.
            log_internal_error(log, exc, "unexpected error", level=logging.DEBUG)
            click.echo(
                f"error: internal error ({type(exc).__name__}); this is a bug in xdr-edge. "
                "Run again with -vv to see the traceback.",
                err=True,
            )
            sys.exit(EXIT_INTERNAL)

    return wrapper


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


F = TypeVar("F", bound=Callable[..., Any])


def audit_actor() -> str:
    """Who made a change, for the registry's audit log: the OS user running the command."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown-user"


def registry_option(func: F) -> F:
    """``--registry URL`` (or ``XDR_EDGE_REGISTRY``), required: the registry database the command acts on."""
    option = click.option(
        "--registry",
        "registry_url",
        envvar="XDR_EDGE_REGISTRY",
        required=True,
        metavar="URL",
        help="Registry database: a path, sqlite:///abs/path.db or postgresql://user@host/db [env XDR_EDGE_REGISTRY].",
    )
    return option(func)


def serve_until_signalled(start: Callable[[], None], stop: Callable[[], None], *, stopping: str) -> None:
    """Run ``start`` (which starts a server on its own threads and says where it listens), wait for Ctrl-C
    (SIGINT) or SIGTERM, then ``stop`` it; the previous signal handlers are restored afterwards.

    Waits in short slices so that the handler runs promptly on any platform; ``stop`` runs whatever happened,
    even when ``start`` failed half-way."""
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        start()
        click.echo("Ctrl-C or SIGTERM stops it.")
        while not stopped.wait(0.5):
            pass
        click.echo(stopping)
    finally:
        stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("stopped")
