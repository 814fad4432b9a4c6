"""The fair queue: who gets the next free worker, the per-practice cap, pauses, and give-up while paused."""

from __future__ import annotations

import threading

import pytest

from xdr_edge.sender.outbox.scheduler import FairQueue, Job


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _queue(limit: int = 3, give_up: float = 3600.0, clock: Clock | None = None) -> FairQueue:
    return FairQueue(per_practice_limit=limit, give_up_after=give_up, clock=clock or Clock())


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
    queue.put("b0", "practice-b", clock.now)
    queue.hold("practice-a", clock.now + 30)
    job = queue.take(timeout=0)
    assert job is not None and job.practice == "practice-b"
    assert queue.take(timeout=0.05) is None
    clock.now += 31
    job = queue.take(timeout=0)
    assert job is not None and job.drop_id == "a0" and not job.expire


def test_release_ends_a_pause_at_once() -> None:
    clock = Clock()
    queue = _queue(clock=clock)
    queue.put("a0", "practice-a", clock.now)
    queue.hold("practice-a", clock.now + 300)
    assert queue.take(timeout=0.02) is None
    queue.release("practice-a")
    job = queue.take(timeout=0)
    assert job is not None and job.drop_id == "a0"


def test_a_drop_past_the_give_up_age_is_handed_out_to_expire_even_while_paused() -> None:
    clock = Clock()
    queue = _queue(give_up=600, clock=clock)
    queue.put("old", "practice-a", clock.now - 700)
    queue.put("young", "practice-a", clock.now - 10)
    queue.hold("practice-a", clock.now + 300)
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
        FairQueue(per_practice_limit=0, give_up_after=1.0)
