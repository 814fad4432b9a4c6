"""Handing drops to workers fairly across practices, and pausing them while the HISP (or a practice) cannot take
them.

One queue per practice. A free worker takes the next drop of the practice that has the fewest drops in flight
(ties: the one served longest ago), so a practice with ten thousand drops waiting does not make another practice's
single drop wait behind them. When more than one practice sends, one practice holds at most ``workers - 1``
workers: a practice whose HISP answers slowly, or not at all until a timeout, always leaves a worker to the others.

Pauses are circuit breakers (:class:`Gate`), one for the endpoint, which every practice sends to, and one per
practice. An answer saying the HISP is not taking requests (no connection, 503, 429, a gateway page, busy)
*trips* the endpoint's gate: no drop of any practice is handed out until the pause ends; then exactly one drop goes
as a probe, and only its answer decides: the HISP answered (anything but another outage answer) and every drop
goes again, or it did not and the gate opens again for a longer pause. The pause grows with each consecutive
outage answer (exponential, with jitter: ``backoff``), and is never shorter than the ``Retry-After`` the HISP asked
for (RFC 9110 §10.2.3), up to :data:`RETRY_AFTER_LIMIT`. A practice's gate works the same for trouble of that
practice alone (its certificate refused or expired; a Receiver fault). So a HISP that is down for hours sees one
probe per pause, not one request per waiting drop.

A drop of a paused practice that is already older than the give-up age is handed out anyway, marked ``expire``,
so that a drop is failed when its time is up even while no attempt is made.
"""

from __future__ import annotations

__all__ = ["ENDPOINT", "RETRY_AFTER_LIMIT", "FairQueue", "Gate", "Job", "practice_gate"]

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

#: The gate every practice passes: the one endpoint they all send to.
ENDPOINT = "endpoint"
#: The longest pause a Retry-After header can ask for that is honoured (seconds): past it, a HISP's
#: misconfigured header would stall every drop until it gives up.
RETRY_AFTER_LIMIT = 3600.0


def practice_gate(practice: str) -> str:
    return f"practice:{practice}"


@dataclass(frozen=True)
class Job:
    drop_id: str
    practice: str
    expire: bool = False


@dataclass
class Gate:
    """One circuit breaker: closed (``failures == 0``), open (``until`` in the future), or half-open (the pause
    is over, ``failures > 0``): one probe at a time (``probe``, the drop id) until an answer closes or trips it."""

    until: float = 0.0
    failures: int = 0
    probe: str | None = None

    def blocks(self, now: float) -> bool:
        return self.until > now or (self.failures > 0 and self.probe is not None)


@dataclass
class _Lane:
    queue: deque[tuple[str, float]] = field(default_factory=deque)  # (drop id, age origin)
    in_flight: int = 0
    served: int = 0  # order of the last take: lower = longer ago


class FairQueue:
    """Thread-safe. ``take`` blocks until a drop is ready or the queue is closed.

    ``backoff(n)`` is the pause after the n-th consecutive outage answer (the outbox's retry settings)."""

    def __init__(
        self,
        *,
        per_practice_limit: int,
        give_up_after: float,
        backoff: Callable[[int], float],
        clock: Callable[[], float] = time.time,
    ) -> None:
        if per_practice_limit < 1:
            raise ValueError("per_practice_limit must be at least 1")
        self._limit = per_practice_limit
        self._give_up_after = give_up_after
        self._clock = clock
        self._backoff = backoff
        self._lanes: dict[str, _Lane] = {}
        self._gates: dict[str, Gate] = {}
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

    def _gates_of(self, practice: str) -> Iterable[Gate]:
        for key in (ENDPOINT, practice_gate(practice)):
            gate = self._gates.get(key)
            if gate is not None:
                yield gate

    def _next(self) -> tuple[Job | None, float | None]:
        now = self._clock()
        best: tuple[int, int, str] | None = None
        wake: float | None = None
        for practice, lane in self._lanes.items():
            if not lane.queue or lane.in_flight >= self._limit:
                continue
            blocking = [g for g in self._gates_of(practice) if g.blocks(now)]
            if blocking:
                drop_id, since = lane.queue[0]
                if now - since >= self._give_up_after:
                    lane.queue.popleft()
                    return self._start(practice, lane, drop_id, expire=True), None
                for gate in blocking:
                    if gate.until > now:
                        wake = gate.until if wake is None else min(wake, gate.until)
                continue
            key = (lane.in_flight, lane.served, practice)
            if best is None or key < best:
                best = key
        if best is None:
            return None, wake
        lane = self._lanes[best[2]]
        drop_id, _ = lane.queue.popleft()
        for gate in self._gates_of(best[2]):
            if gate.failures > 0:  # half-open: this drop is its one probe
                gate.probe = drop_id
        return self._start(best[2], lane, drop_id, expire=False), None

    def _start(self, practice: str, lane: _Lane, drop_id: str, *, expire: bool) -> Job:
        lane.in_flight += 1
        lane.served = next(self._order)
        return Job(drop_id, practice, expire)

    def done(self, job: Job) -> None:
        """The worker finished with ``job`` (whatever became of the drop). A probe that neither tripped nor
        cleared its gate (a bad drop: the HISP was never asked) frees the gate for another probe."""
        with self._cond:
            lane = self._lanes[job.practice]
            lane.in_flight -= 1
            self._known.discard(job.drop_id)
            for gate in self._gates_of(job.practice):
                if gate.probe == job.drop_id:
                    gate.probe = None
            if not lane.queue and lane.in_flight == 0:
                del self._lanes[job.practice]
            self._cond.notify_all()

    def trip(self, key: str, job: Job, *, retry_after: float | None = None) -> float:
        """``job`` met trouble that gate ``key`` guards (:data:`ENDPOINT` or :func:`practice_gate`): pause it.
        The pause grows when the answer came from the gate's probe or found the gate closed; an answer to a
        request that was already under way when the gate tripped only lengthens the pause to a Retry-After.
        Returns when the pause ends (the moment the drop that met it is due again)."""
        with self._cond:
            now = self._clock()
            gate = self._gates.setdefault(key, Gate())
            asked = min(max(retry_after or 0.0, 0.0), RETRY_AFTER_LIMIT)
            if gate.failures == 0 or gate.probe == job.drop_id:
                gate.failures += 1
                gate.until = max(gate.until, now + max(self._backoff(gate.failures), asked))
                gate.probe = None
            else:
                gate.until = max(gate.until, now + asked)
            self._cond.notify_all()
            return gate.until

    def clear(self, key: str) -> None:
        """Gate ``key`` answered (the HISP took a request, or the practice could send): close it at once."""
        with self._cond:
            if self._gates.pop(key, None) is not None:
                self._cond.notify_all()

    def paused_until(self, key: str) -> float:
        """When gate ``key``'s current pause ends (0 when it is not paused)."""
        with self._cond:
            gate = self._gates.get(key)
            return gate.until if gate is not None else 0.0

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
