"""How many requests one practice may have in progress at once.

Why: the server has a fixed number of worker threads, and a request holds one for as long as its body takes to
arrive (a large upload at the minimum rate the server accepts can take hours). Without a per-practice limit,
one practice's certificate (a misbehaving integration retrying in a tight loop, or a stolen key) could take
every worker, and no other practice could deliver anything. Over its limit, a practice's request is answered
503 with ``Retry-After`` before its body is read: a busy answer every ITI-41 sender may retry (RFC 9110
§15.6.4), and our own client does.

Thread-safe; the counts live in the object, never in module state.
"""

from __future__ import annotations

__all__ = ["PracticeSlots"]

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class PracticeSlots:
    """A counter of requests in progress per practice, with a ceiling (``None``: no ceiling)."""

    def __init__(self, limit: int | None) -> None:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(
                f"the per-practice request limit must be a whole number of at least 1, not {limit!r}"
            )
        self.limit = limit
        self._lock = threading.Lock()
        self._in_progress: dict[str, int] = {}

    def in_progress(self, practice_id: str) -> int:
        with self._lock:
            return self._in_progress.get(practice_id, 0)

    def try_acquire(self, practice_id: str) -> bool:
        """Take a slot for ``practice_id``; False (and nothing taken) when it already has ``limit``."""
        with self._lock:
            current = self._in_progress.get(practice_id, 0)
            if self.limit is not None and current >= self.limit:
                return False
            self._in_progress[practice_id] = current + 1
            return True

    def release(self, practice_id: str) -> None:
        with self._lock:
            current = self._in_progress.get(practice_id, 0)
            if current <= 1:
                self._in_progress.pop(practice_id, None)
            else:
                self._in_progress[practice_id] = current - 1

    @contextmanager
    def holding(self, practice_id: str) -> Iterator[bool]:
        """``with slots.holding(pid) as admitted:`` takes a slot when one is free and gives it back at the end."""
        admitted = self.try_acquire(practice_id)
        try:
            yield admitted
        finally:
            if admitted:
                self.release(practice_id)
