"""The group commit of the inbox (xdr_edge.receiver.groupcommit): requests arriving while a commit runs share
the next one; an idle one is committed at once; a failed batch fails each of its requests and no other."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from tests.concurrency import run_together
from xdr_edge.receiver.groupcommit import GroupCommit


class Recorder:
    """A commit that records its batches and can be held until released (a slow disk)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.fail_on: set[int] = set()

    def __call__(self, items: Sequence[int]) -> list[str]:
        with self.lock:
            self.batches.append(list(items))
        self.started.set()
        assert self.release.wait(30)
        if self.fail_on & set(items):
            raise OSError("the disk failed")
        return [f"done {item}" for item in items]


def _wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_an_idle_commit_runs_each_request_at_once() -> None:
    recorder = Recorder()
    commits = GroupCommit(recorder)
    assert [commits.commit(n) for n in range(3)] == ["done 0", "done 1", "done 2"]
    assert recorder.batches == [[0], [1], [2]]


def test_requests_arriving_during_a_commit_share_the_next_one() -> None:
    recorder = Recorder()
    recorder.release.clear()
    commits = GroupCommit(recorder)
    first = threading.Thread(target=commits.commit, args=(100,))
    first.start()
    assert recorder.started.wait(10)  # the first request leads a commit that is held

    def arrive(n: int) -> tuple[int, str]:
        return n, commits.commit(n)

    waiting = threading.Thread(target=lambda: results.extend(run_together(12, arrive)))
    results: list[tuple[int, str]] = []
    waiting.start()
    _wait_until(lambda: commits.waiting == 12)  # all twelve queued behind the held commit
    recorder.release.set()
    first.join(30)
    waiting.join(30)
    assert sorted(results) == [(n, f"done {n}") for n in range(12)]
    assert recorder.batches[0] == [100]
    assert sorted(recorder.batches[1]) == list(range(12))  # one commit for the twelve
    assert len(recorder.batches) == 2


def test_a_failed_batch_fails_each_of_its_requests_and_no_later_one() -> None:
    recorder = Recorder()
    recorder.release.clear()
    recorder.fail_on = {1}
    commits = GroupCommit(recorder)
    outcomes: dict[int, str] = {}

    def commit(n: int) -> None:
        try:
            outcomes[n] = commits.commit(n)
        except OSError as exc:
            outcomes[n] = f"failed: {exc}"

    leader = threading.Thread(target=commit, args=(0,))
    leader.start()
    assert recorder.started.wait(10)
    followers = [threading.Thread(target=commit, args=(n,)) for n in (1, 2)]
    for thread in followers:
        thread.start()
    _wait_until(lambda: commits.waiting == 2)
    recorder.release.set()
    for thread in (leader, *followers):
        thread.join(30)
    assert outcomes == {0: "done 0", 1: "failed: the disk failed", 2: "failed: the disk failed"}
    assert commits.commit(3) == "done 3"  # the next batch is not affected


def test_a_commit_that_answers_for_the_wrong_number_of_items_fails_loudly() -> None:
    commits: GroupCommit[int, str] = GroupCommit(lambda items: [])
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        commits.commit(1)
