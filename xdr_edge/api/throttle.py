"""Slowing down password guessing: after a few failures, a key (an identity as presented, an identity from one
client address, a client address) must wait before its next attempt, twice as long after each further failure.

Why a wait answered at once (HTTP 429 with ``Retry-After``) rather than a sleep before answering: a sleeping
request holds one of the server's few worker threads, so an attacker with many connections would stall every
caller; a refusal costs nothing, and while the wait lasts the password is not even checked, so guessing is
limited to one attempt per wait. Failures are counted for the identity *as presented*, whether it exists or
not, so the answers for an unknown identity and for a known one with a wrong password stay identical.

An attempt is counted *before* its password is checked (:meth:`FailureThrottle.failed` reserves it) and given
back when it succeeds (:meth:`FailureThrottle.release`, or :meth:`FailureThrottle.succeeded` to forget the key):
counting only after the slow check let forty simultaneous guesses all pass a check that allows four.

State lives in the object (one per running API, shared by its threads under a lock), bounded in size: the
oldest entries are forgotten first. Several API processes each keep their own counts.
"""

from __future__ import annotations

__all__ = ["FailureThrottle"]

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Failures:
    count: int
    last: float


class FailureThrottle:
    """Counts failures per key; :meth:`wait` says how long the key must still wait before trying again.

    The first ``free`` failures cost nothing; failure ``free + k`` (k >= 1) imposes ``base * 2**(k-1)``
    seconds, at most ``cap``. Counts are forgotten ``window`` seconds after the last failure, and at once on
    :meth:`succeeded`.
    """

    def __init__(
        self,
        *,
        free: int,
        base: float,
        cap: float,
        window: float = 900.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self.base = base
        self.cap = cap
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Failures] = OrderedDict()

    def _delay(self, count: int) -> float:
        if count <= self.free:
            return 0.0
        return float(min(self.cap, self.base * 2 ** (count - self.free - 1)))

    def wait(self, key: str) -> float:
        """Seconds before ``key`` may try again; 0 when it may try now."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return 0.0
            if now - entry.last > self.window:
                del self._entries[key]
                return 0.0
            return max(0.0, entry.last + self._delay(entry.count) - now)

    def count(self, key: str) -> int:
        """The failures (and attempts in progress) counted for ``key`` within the window."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            return 0 if entry is None or now - entry.last > self.window else entry.count

    def failed(self, key: str) -> None:
        """Count one failure of ``key`` (or reserve one for an attempt about to be checked)."""
        now = self._clock()
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None or now - entry.last > self.window:
                entry = _Failures(0, now)
            entry.count += 1
            entry.last = now
            self._entries[key] = entry  # most recent last
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)

    def release(self, key: str) -> None:
        """Give back one reservation of :meth:`failed` (the attempt did not fail); the time of the last
        failure stays, so a wait already imposed by earlier failures is not shortened."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry.count -= 1
            if entry.count <= 0:
                del self._entries[key]

    def succeeded(self, key: str) -> None:
        """Forget every failure of ``key``."""
        with self._lock:
            self._entries.pop(key, None)
