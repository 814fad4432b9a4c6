"""Each practice's share of the workers (xdr_edge.receiver.admission): the counter itself, from many threads.
The 503 a busy practice gets from the real server is in tests/test_hostile.py."""

from __future__ import annotations

import threading
import time

import pytest

from xdr_edge.receiver.admission import PracticeSlots


def test_a_practice_gets_at_most_its_limit_and_others_are_not_affected() -> None:
    slots = PracticeSlots(2)
    assert slots.try_acquire("a") and slots.try_acquire("a")
    assert not slots.try_acquire("a")
    assert slots.try_acquire("b")
    slots.release("a")
    assert slots.in_progress("a") == 1 and slots.try_acquire("a")
    with slots.holding("c") as first, slots.holding("c") as second, slots.holding("c") as third:
        assert (first, second, third) == (True, True, False)
    assert slots.in_progress("c") == 0  # a refused slot is not given back twice


def test_no_limit_admits_everything() -> None:
    slots = PracticeSlots(None)
    assert all(slots.try_acquire("a") for _ in range(1000))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_the_limit_is_a_positive_whole_number(bad: object) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PracticeSlots(bad)  # type: ignore[arg-type]


def test_concurrent_requests_never_exceed_the_limit() -> None:
    """Sixteen threads, each holding a slot for a millisecond at a time: never more than three at once, and
    every slot given back."""
    slots = PracticeSlots(3)
    current, highest, admitted_total = [0], [0], [0]
    lock = threading.Lock()
    start = threading.Barrier(16)

    def request() -> None:
        start.wait()
        for _ in range(50):
            with slots.holding("a") as admitted:
                if not admitted:
                    continue
                with lock:
                    current[0] += 1
                    admitted_total[0] += 1
                    highest[0] = max(highest[0], current[0])
                time.sleep(0.001)
                with lock:
                    current[0] -= 1

    threads = [threading.Thread(target=request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 2 <= highest[0] <= 3 and admitted_total[0] >= 50
    assert slots.in_progress("a") == 0
