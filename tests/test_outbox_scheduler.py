"""The fair queue: who gets the next free worker, the per-practice cap, the pauses of the endpoint and of a
practice (one probe at a time, growing while the outage lasts, at least what Retry-After asked), and give-up while
paused."""

from __future__ import annotations

import threading

import pytest

from xdr_edge.sender.outbox.scheduler import ENDPOINT, RETRY_AFTER_LIMIT, FairQueue, Job, practice_gate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _doubling(failures: int) -> float:
    """10 s, 20 s, 40 s ...: the pause after the n-th consecutive outage answer (no jitter, for the test)."""
    return float(10 * 2 ** (failures - 1))


def _queue(limit: int = 3, give_up: float = 3600.0, clock: Clock | None = None) -> FairQueue:
    return FairQueue(
        per_practice_limit=limit, give_up_after=give_up, backoff=_doubling, clock=clock or Clock()
    )


def _take(queue: FairQueue) -> Job:
    job = queue.take(timeout=0)
    assert job is not None
    return job


def test_a_practice_with_a_backlog_does_not_starve_another() -> None:
    queue = _queue(limit=3)
    for n in range(100):
        queue.put(f"a{n}", "practice-a", 1000.0)
    queue.put("b0", "practice-b", 1000.0)
    queue.put("b1", "practice-b", 1000.0)
    taken = [queue.take(timeout=0) for _ in range(4)]
    assert [j.practice for j in taken if j] == ["practice-a", "practice-b", "practice-a", "practice-b"]
    assert [j.drop_id for j in taken if j] == [
        "a0",
        "b0",
        "a1",
        "b1",
    ]  # first in, first out within a practice


def test_the_practice_with_fewer_drops_in_flight_goes_first() -> None:
    queue = _queue(limit=3)
    for n in range(5):
        queue.put(f"a{n}", "practice-a", 1000.0)
    first = queue.take(timeout=0)
    second = queue.take(timeout=0)
    assert first is not None and second is not None and second.practice == "practice-a"
    queue.put("b0", "practice-b", 1000.0)  # arrives while practice-a holds two workers
    third = queue.take(timeout=0)
    assert third is not None and third.drop_id == "b0"


def test_one_practice_never_holds_more_than_its_cap() -> None:
    queue = _queue(limit=2)
    for n in range(5):
        queue.put(f"a{n}", "practice-a", 1000.0)
    held = [queue.take(timeout=0), queue.take(timeout=0)]
    assert all(held)
    assert queue.take(timeout=0.05) is None  # a third worker stays free for other practices
    queue.put("b0", "practice-b", 1000.0)
    job = queue.take(timeout=0)
    assert job is not None and job.practice == "practice-b"
    first = held[0]
    assert first is not None
    queue.done(first)
    again = queue.take(timeout=0)
    assert again is not None and again.drop_id == "a2"


def test_a_drop_is_queued_once_until_done() -> None:
    queue = _queue()
    assert queue.put("a0", "practice-a", 1000.0)
    assert not queue.put("a0", "practice-a", 1000.0)
    job = queue.take(timeout=0)
    assert job is not None and queue.knows("a0")
    assert not queue.put("a0", "practice-a", 1000.0)  # in flight
    queue.done(job)
    assert not queue.knows("a0") and queue.put("a0", "practice-a", 1000.0)


def test_a_paused_practice_waits_until_the_pause_ends_and_others_go_on() -> None:
    clock = Clock()
    queue = _queue(clock=clock)
    queue.put("a0", "practice-a", clock.now)
    queue.put("a1", "practice-a", clock.now)
    queue.put("b0", "practice-b", clock.now)
    first = _take(queue)
    assert first.drop_id == "a0"
    assert queue.trip(practice_gate("practice-a"), first) == clock.now + 10  # its certificate refused, say
    queue.done(first)
    assert _take(queue).practice == "practice-b"
    assert queue.take(timeout=0.05) is None
    clock.now += 11
    job = _take(queue)
    assert job.drop_id == "a1" and not job.expire


def test_an_outage_pauses_every_practice_and_lets_one_probe_through_per_pause() -> None:
    """The endpoint's gate: while it is open nothing goes; then exactly one drop (whichever practice) probes,
    and its answer alone decides. The pause grows with each failed probe."""
    clock = Clock()
    queue = _queue(limit=5, clock=clock)
    for n in range(5):
        queue.put(f"a{n}", "practice-a", clock.now)
        queue.put(f"b{n}", "practice-b", clock.now)
    first, second = _take(queue), _take(queue)
    assert queue.trip(ENDPOINT, first) == clock.now + 10  # no connection
    # an answer to a request that was under way already does not lengthen the pause, nor count as a probe's
    assert queue.trip(ENDPOINT, second) == clock.now + 10
    queue.done(first)
    queue.done(second)
    assert queue.take(timeout=0.02) is None
    clock.now += 10
    probe = _take(queue)
    assert queue.take(timeout=0.02) is None  # one probe at a time
    assert queue.trip(ENDPOINT, probe) == clock.now + 20  # still down: a longer pause
    queue.done(probe)
    clock.now += 20
    probe = _take(queue)
    assert queue.take(timeout=0.02) is None
    queue.clear(ENDPOINT)  # the HISP answered
    queue.done(probe)
    assert {_take(queue).practice for _ in range(4)} == {"practice-a", "practice-b"}


def test_a_probe_that_never_reached_the_hisp_lets_another_one_go() -> None:
    clock = Clock()
    queue = _queue(clock=clock)
    queue.put("a0", "practice-a", clock.now)
    queue.put("bad", "practice-a", clock.now)
    queue.put("a2", "practice-a", clock.now)
    queue.trip(ENDPOINT, _take(queue))
    clock.now += 10
    probe = _take(queue)
    assert probe.drop_id == "bad" and queue.take(timeout=0.02) is None
    queue.done(probe)  # a bad drop: failed without asking the HISP; it tells nothing
    assert _take(queue).drop_id == "a2"


def test_a_pause_is_never_shorter_than_the_retry_after_asked_for_nor_longer_than_the_limit() -> None:
    clock = Clock()
    queue = _queue(clock=clock)
    for n in range(3):
        queue.put(f"a{n}", "practice-a", clock.now)
    first = _take(queue)
    assert queue.trip(ENDPOINT, first, retry_after=120) == clock.now + 120  # 503 with Retry-After: 120
    queue.done(first)
    clock.now += 120
    probe = _take(queue)
    assert queue.trip(ENDPOINT, probe, retry_after=10**9) == clock.now + RETRY_AFTER_LIMIT
    assert queue.paused_until(ENDPOINT) == clock.now + RETRY_AFTER_LIMIT


def test_clear_ends_a_pause_at_once() -> None:
    clock = Clock()
    queue = _queue(clock=clock)
    queue.put("a0", "practice-a", clock.now)
    queue.put("a1", "practice-a", clock.now)
    queue.trip(practice_gate("practice-a"), _take(queue))
    assert queue.take(timeout=0.02) is None
    queue.clear(practice_gate("practice-a"))
    assert _take(queue).drop_id == "a1"


def test_a_drop_past_the_give_up_age_is_handed_out_to_expire_even_while_paused() -> None:
    clock = Clock()
    queue = _queue(give_up=600, clock=clock)
    queue.put("first", "practice-a", clock.now)
    queue.trip(ENDPOINT, _take(queue), retry_after=300)
    queue.put("old", "practice-a", clock.now - 700)
    queue.put("young", "practice-a", clock.now - 10)
    job = queue.take(timeout=0)
    assert job == Job("old", "practice-a", expire=True)
    assert queue.take(timeout=0.02) is None  # the young one waits for the pause to end


def test_take_wakes_when_a_drop_arrives_and_close_releases_every_worker() -> None:
    queue = _queue()
    got: list[Job | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.take()))
    worker.start()
    queue.put("a0", "practice-a", 1000.0)
    worker.join(timeout=10)
    assert got and got[0] is not None and got[0].drop_id == "a0"
    waiting = [threading.Thread(target=lambda: got.append(queue.take())) for _ in range(3)]
    for thread in waiting:
        thread.start()
    queue.close()
    for thread in waiting:
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert got[1:] == [None, None, None]


def test_the_cap_must_leave_at_least_one_worker() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FairQueue(per_practice_limit=0, give_up_after=1.0, backoff=_doubling)
