"""A watchdog for regression tests of superlinear time: the input is sized so that the quadratic code it guards
against would take minutes (ten times the budget or more) while the linear code takes a fraction of a second, and
the budget is generous enough for a loaded machine. It detects a hang coming back, it measures nothing: speed
targets live in ``benchmarks/``."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import pytest


@contextmanager
def must_finish_within(seconds: float, what: str) -> Iterator[None]:
    """Fail the test when the block runs longer than ``seconds`` (SIGALRM: the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        pytest.fail(f"{what} took more than {seconds:.0f} s: superlinear time is back")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
