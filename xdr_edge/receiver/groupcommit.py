"""Group commit: the requests that want to finish a store at the same time share one commit.

Why: a submission is answered Success only once it is durable, and what makes it durable ends in steps that
every request of a receiver takes one at a time: the index transaction (SQLite takes one writer at a time, and
each commit syncs its journal) and the sync of the folder submissions are renamed into. Taken one request at a
time, eight concurrent requests waited for each other's commits (SQLite's busy handler even sleeps between
tries); taken together, they pay for one.

How (leader and followers, no thread of its own and no timer): a request hands its item to :meth:`GroupCommit.
commit` and waits. If no commit is running, it becomes the leader: it takes every item waiting at that moment
(its own included) and runs ``commit_batch`` on them outside the lock, while the requests arriving meanwhile
queue up for the next batch, which one of them leads when this one is done. An idle receiver commits each
request at once, a loaded one in batches as large as the load; nothing waits for a batch to fill.

``commit_batch`` returns one result per item, in order; an exception it raises is raised in every request of
the batch, each of which then settles its own item (the store asks the index what became of it).
"""

from __future__ import annotations

__all__ = ["GroupCommit"]

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Ticket(Generic[Item, Result]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """Runs ``commit_batch`` on the items of concurrent :meth:`commit` calls, as few times as possible.

    Thread-safe; the batches of one instance run one at a time, in the order their items arrived.
    """

    def __init__(self, commit_batch: Callable[[Sequence[Item]], Sequence[Result]]) -> None:
        self._commit_batch = commit_batch
        self._changed = threading.Condition()
        self._waiting: list[_Ticket[Item, Result]] = []
        self._running = False

    @property
    def waiting(self) -> int:
        """How many requests wait for the next batch (for monitoring and tests)."""
        with self._changed:
            return len(self._waiting)

    def commit(self, item: Item) -> Result:
        """``item``'s result from the batch it was committed in (or the exception that batch raised)."""
        ticket: _Ticket[Item, Result] = _Ticket(item)
        with self._changed:
            self._waiting.append(ticket)
            while not ticket.done and self._running:
                self._changed.wait()
            if ticket.done:
                return self._outcome(ticket)
            batch, self._waiting = self._waiting, []
            self._running = True
        try:
            self._run(batch)
        finally:
            with self._changed:
                self._running = False
                self._changed.notify_all()
        return self._outcome(ticket)

    def _run(self, batch: list[_Ticket[Item, Result]]) -> None:
        try:
            results = self._commit_batch([t.item for t in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"commit_batch returned {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # every request of the batch sees the failure and settles its own item
            for ticket in batch:
                ticket.error, ticket.done = exc, True
            return
        for ticket, result in zip(batch, results, strict=True):
            ticket.result, ticket.done = result, True

    @staticmethod
    def _outcome(ticket: _Ticket[Item, Result]) -> Result:
        if ticket.error is not None:
            raise ticket.error
        return ticket.result  # type: ignore[return-value]  # done without error: the batch's result
