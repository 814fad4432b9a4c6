"""What counts as a crash when a reader is fed an input, checked the same way by the fuzzer, by the corpus
replay in the test suite and by ``python -m tests.fuzz replay``.

A crash is any of:

- an exception outside our error hierarchy (``XdrError`` and its subclasses are how a reader says "the peer
  sent something invalid"; a target that must never raise allows none at all);
- a failed check of the target itself (a 5xx from the receiver to a defect of the request, a reply our own
  reader cannot read, a spool file left behind), raised as :class:`Crash`;
- an input under 1 MB that takes more than a second (re-run up to twice, so a scheduling hiccup on a loaded
  machine is not a crash: all three runs must be slow);
- a peak RSS that grows by more than a small multiple of the input (plus a fixed allowance for the
  interpreter's own first-time costs): the resident-set high-water mark only moves when a new peak is reached,
  so what one input costs beyond every earlier peak is what it made us hold.
"""

from __future__ import annotations

import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from xdr_edge.protocol.errors import XdrError

MAX_SECONDS = 1.0
SLOW_INPUT_BOUND = 1024 * 1024  # inputs at least this big may take longer than MAX_SECONDS
MEMORY_ALLOWANCE = 64 * 1024 * 1024  # bytes of peak-RSS growth any input may cause
MEMORY_MULTIPLE = 16  # ... plus this many times its size


class Crash(AssertionError):
    """A target's input exposed a defect (see the module docstring)."""


@dataclass(frozen=True)
class Oracle:
    """Runs one input through a target and raises :class:`Crash` for a defect. ``clock`` and ``peak_rss`` are
    injectable so the oracle's own rules can be tested without waiting or allocating."""

    clock: Callable[[], float] = time.perf_counter
    peak_rss: Callable[[], int] = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def check(
        self, run: Callable[[bytes], None], data: bytes, *, allowed: tuple[type[Exception], ...]
    ) -> None:
        peak_before = self.peak_rss()
        elapsed = self._timed(run, data, allowed)
        grown = self.peak_rss() - peak_before
        if grown > MEMORY_ALLOWANCE + MEMORY_MULTIPLE * len(data):
            raise Crash(
                f"peak RSS grew by {grown // 1024} KiB for an input of {len(data)} bytes "
                f"(allowed: {MEMORY_ALLOWANCE // 1024} KiB + {MEMORY_MULTIPLE} x the input)"
            )
        if len(data) < SLOW_INPUT_BOUND and elapsed > MAX_SECONDS:
            again = min(self._timed(run, data, allowed) for _ in range(2))
            if again > MAX_SECONDS:
                raise Crash(
                    f"an input of {len(data)} bytes took {elapsed:.2f} s, then {again:.2f} s at best "
                    f"(more than {MAX_SECONDS} s)"
                )

    def _timed(
        self, run: Callable[[bytes], None], data: bytes, allowed: tuple[type[Exception], ...]
    ) -> float:
        start = self.clock()
        try:
            run(data)
        except Crash:
            raise
        except allowed:
            pass
        except Exception as exc:
            where = "".join(traceback.format_exception(exc))[-3000:]  # CI logs show where, not only what
            raise Crash(f"{type(exc).__name__} escaped: {exc!s:.300}\n{where}") from exc
        return self.clock() - start


#: What a reader may raise: our hierarchy. ``inspect_stream`` promises more (nothing at all).
OUR_ERRORS: tuple[type[Exception], ...] = (XdrError,)
NOTHING: tuple[type[Exception], ...] = ()
