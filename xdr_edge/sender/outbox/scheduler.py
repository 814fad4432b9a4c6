"""Handing drops to workers fairly across practices.

One queue per practice. A free worker takes the next drop of the practice that has the fewest drops in flight
(ties: the one served longest ago), so a practice with ten thousand drops waiting does not make another practice's
single drop wait behind them. When more than one practice sends, one practice holds at most ``workers - 1``
workers: a practice whose HISP answers slowly, or not at all until a timeout, always leaves a worker to the others.

A practice can be paused (``hold``) until a moment: after an answer saying the HISP is not taking requests (no
connection, 503), its other drops are not sent into the outage one after the other; the drop that met it is
retried first when the pause ends. A paused practice's drop that is already older than the give-up age is handed
out anyway, marked ``expire``, so that a drop is failed when its time is up even while no attempt is made.
"""

from __future__ import annotations

__all__ = ["FairQueue", "Job"]

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Job:
    drop_id: str
    practice: str
    expire: bool = False


@dataclass
class _Lane:
    queue: deque[tuple[str, float]] = field(default_factory=deque)  # (drop id, age origin)
    in_flight: int = 0
    served: int = 0  # order of the last take: lower = longer ago
    held_until: float = 0.0


class FairQueue:
    """Thread-safe. ``take`` blocks until a drop is ready or the queue is closed."""

    def __init__(
        self,
        *,
        per_practice_limit: int,
        give_up_after: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if per_practice_limit < 1:
            raise ValueError("per_practice_limit must be at least 1")
        self._limit = per_practice_limit
        self._give_up_after = give_up_after
        self._clock = clock
        self._lanes: dict[str, _Lane] = {}
        self._known: set[str] = set()
        self._order = itertools.count(1)
        self._closed = False
        self._cond = threading.Condition()

    def put(self, drop_id: str, practice: str, since: float) -> bool:
        """Queue a drop; False when it is already queued or in flight."""
        with self._cond:
            if drop_id in self._known or self._closed:
                return False
            self._known.add(drop_id)
            self._lanes.setdefault(practice, _Lane()).queue.append((drop_id, since))
            self._cond.notify()
            return True

    def knows(self, drop_id: str) -> bool:
        with self._cond:
            return drop_id in self._known

    def take(self, timeout: float | None = None) -> Job | None:
        """The next job, or None when closed or when ``timeout`` passed without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                job, wake = self._next()
                if job is not None:
                    return job
                wait = None if wake is None else max(0.0, wake - self._clock())
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
            return None

    def _next(self) -> tuple[Job | None, float | None]:
        now = self._clock()
        best: tuple[int, int, str] | None = None
        wake: float | None = None
        for practice, lane in self._lanes.items():
            if not lane.queue or lane.in_flight >= self._limit:
                continue
            if lane.held_until > now:
                drop_id, since = lane.queue[0]
                if now - since >= self._give_up_after:
                    lane.queue.popleft()
                    return self._start(practice, lane, drop_id, expire=True), None
                wake = lane.held_until if wake is None else min(wake, lane.held_until)
                continue
            key = (lane.in_flight, lane.served, practice)
            if best is None or key < best:
                best = key
        if best is None:
            return None, wake
        lane = self._lanes[best[2]]
        drop_id, _ = lane.queue.popleft()
        return self._start(best[2], lane, drop_id, expire=False), None

    def _start(self, practice: str, lane: _Lane, drop_id: str, *, expire: bool) -> Job:
        lane.in_flight += 1
        lane.served = next(self._order)
        return Job(drop_id, practice, expire)

    def done(self, job: Job) -> None:
        """The worker finished with ``job`` (whatever became of the drop)."""
        with self._cond:
            lane = self._lanes[job.practice]
            lane.in_flight -= 1
            self._known.discard(job.drop_id)
            if not lane.queue and lane.in_flight == 0 and lane.held_until <= self._clock():
                del self._lanes[job.practice]
            self._cond.notify_all()

    def hold(self, practice: str, until: float) -> None:
        """Pause ``practice`` until ``until`` (a later pause wins)."""
        with self._cond:
            lane = self._lanes.setdefault(practice, _Lane())
            lane.held_until = max(lane.held_until, until)

    def release(self, practice: str) -> None:
        """End a pause early: the practice's HISP answered."""
        with self._cond:
            lane = self._lanes.get(practice)
            if lane is not None and lane.held_until:
                lane.held_until = 0.0
                self._cond.notify_all()

    def held_until(self, practice: str) -> float:
        with self._cond:
            lane = self._lanes.get(practice)
            return lane.held_until if lane is not None else 0.0

    def pending(self) -> int:
        """Drops queued or in flight."""
        with self._cond:
            return len(self._known)

    def in_flight(self) -> int:
        with self._cond:
            return sum(lane.in_flight for lane in self._lanes.values())

    def close(self) -> None:
        """No more jobs: every ``take`` returns None (workers finish the job they have, then stop)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
