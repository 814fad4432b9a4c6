"""Run actions in threads released at the same moment (a barrier), and collect what each returned."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_together(count: int, action: Callable[[int], T], *, timeout: float = 120.0) -> list[T]:
    """``action(0) ... action(count - 1)``, each in its own thread, all released together; their results in
    completion order. An exception in an action fails the caller (it is re-raised here)."""
    barrier = threading.Barrier(count)
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        barrier.wait()
        try:
            outcome = action(n)
        except BaseException as exc:  # re-raised in the caller's thread below
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if errors:
        raise errors[0]
    if len(results) != count:
        raise AssertionError(f"only {len(results)} of {count} actions finished within {timeout:g} s")
    return results
