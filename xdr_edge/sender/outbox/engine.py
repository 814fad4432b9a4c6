"""The folder-drop sender: claims drops from ``incoming/``, sends each as an ITI-41 submission with its practice's
certificate through one shared :class:`~xdr_edge.sender.client.XdrClient`, and ends each in ``sent/`` or ``failed/``.

A run: take the runner lock, recover what a crash left (:mod:`.recovery`), then loop until stopped: claim settled
drops (:mod:`.arrivals`), queue the drops that are due (claimed, or waiting and due for a retry), and let N worker
threads take them fairly across practices (:mod:`.scheduler`). Per drop a worker reads it (:mod:`.drop`), records
its uniqueIds in the journal before the first attempt, sends it, and judges the outcome (:mod:`.verdict`): sent,
failed (:mod:`.finishing`), or waiting for a retry with backoff until the give-up age.

Claiming is a rename (atomic) preceded by its intent in the journal; so after ``kill -9`` at any moment the next
run knows, for every drop, where it is and what may have happened to it. :meth:`Outbox.stop` (SIGTERM, Ctrl-C)
stops claiming and lets the workers finish the drops they hold; the others stay claimed or waiting for the next run.
"""

from __future__ import annotations

__all__ = ["Outbox", "RunSummary"]

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xdr_edge.protocol.errors import (
    CertificateError,
    ConfigurationError,
    LocalProtocolError,
    NotBound,
    ValidationFailed,
    XdrError,
)
from xdr_edge.sender.client import RetryPolicy, SendResult, XdrClient
from xdr_edge.sender.config import OutboxSettings, SenderConfig
from xdr_edge.sender.outbox.arrivals import Arrival, Settling, find_arrivals
from xdr_edge.sender.outbox.claiming import BATCH, claim
from xdr_edge.sender.outbox.drop import DropRequest, SubmissionRecord, compose_drop, read_drop
from xdr_edge.sender.outbox.events import DropEvent, Progress
from xdr_edge.sender.outbox.finishing import Finisher
from xdr_edge.sender.outbox.journal import ACTIVE, WORKABLE, DropRow, Journal, State
from xdr_edge.sender.outbox.layout import OutboxLayout, RunnerLock
from xdr_edge.sender.outbox.recovery import Recovered, recover
from xdr_edge.sender.outbox.scheduler import FairQueue, Job
from xdr_edge.sender.outbox.verdict import BAD_DROP, Judgement, Step, judge

log = logging.getLogger("xdr_edge.sender.outbox")

#: The client's own retries stay short (a dropped keep-alive connection, a one-off reset): the outbox retries
#: for hours on its own schedule, and a worker should not sleep long inside one send.
CLIENT_RETRY = RetryPolicy(max_attempts=2, base_delay=0.5, max_delay=2.0)
#: A drop whose handling failed unexpectedly (a bug, a disk error) is parked this long before the next try.
_PARK_SECONDS = 60.0


@dataclass(frozen=True)
class RunSummary:
    """What one run did. ``waiting`` and ``claimed`` count what is left in the outbox when it ended."""

    sent: int
    failed: int
    waiting: int
    claimed: int
    stopped: bool
    recovered: Recovered = field(default_factory=Recovered)


class Outbox:
    """The folder-drop sender for one outbox folder; :meth:`run` in the foreground or on a thread.

    ``client`` may be an :class:`XdrClient` the caller already has (an integration engine's); otherwise one is made
    from ``config`` and closed at the end of the run. ``on_event`` receives a :class:`DropEvent` whenever a drop is
    sent, fails or is set to wait (on a worker thread: keep it short).
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        config: SenderConfig,
        client: XdrClient | None = None,
        settings: OutboxSettings | None = None,
        on_event: Callable[[DropEvent], None] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.layout = OutboxLayout(Path(directory))
        self.config = config
        self.settings = settings or config.outbox
        self._client = client
        self._on_event = on_event
        self._clock = clock
        self._rng = rng or random.Random()
        # Every configured practice's folder in incoming/ is a practice folder (never a drop itself); the outbox
        # makes those of the practices with outbox defaults, whose single files it sends.
        self._practice_folders = frozenset(config.practices)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._sent = self._failed = 0
        self._outages: dict[str, str] = {}
        self._started_at = clock()
        self._total: int | None = None
        self._journal: Journal | None = None
        self._queue: FairQueue | None = None
        self._finisher: Finisher | None = None
        self._settling = Settling(self.settings.settle_seconds)

    # -- control ----------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; the workers finish the drops they hold and :meth:`run` returns. Safe from a signal
        handler and from any thread."""
        self._stop.set()
        self._wake.set()

    def progress(self) -> Progress:
        journal, queue = self._journal, self._queue
        with self._lock:
            sent, failed = self._sent, self._failed
        return Progress(
            started_at=self._started_at,
            now=self._clock(),
            sent=sent,
            failed=failed,
            waiting=journal.count((State.WAITING,)) if journal is not None else 0,
            in_flight=queue.in_flight() if queue is not None else 0,
            claimed=journal.count((State.CLAIMED, State.SENDING, State.FINISHING))
            if journal is not None
            else 0,
            total=self._total,
        )

    def run(self, *, once: bool = False) -> RunSummary:
        """Run until :meth:`stop`; with ``once``, only until every drop there was at the start (and every drop
        the journal had not finished) is sent or failed."""
        self.layout.create(tuple(sorted(self.config.outbox_defaults)))
        with RunnerLock(self.layout):
            journal = Journal(self.layout.journal_path)
            try:
                journal.set_meta("practice_folders", sorted(self._practice_folders))
                recovered = recover(self.layout, journal, clock=self._clock)
                client = self._client or XdrClient.from_config(
                    self.config, retry=CLIENT_RETRY, connections_per_practice=max(4, self.settings.workers)
                )
                try:
                    return self._run(journal, client, recovered, once)
                finally:
                    if self._client is None:
                        client.close()
            finally:
                self._journal = None
                journal.close()

    def _run(self, journal: Journal, client: XdrClient, recovered: Recovered, once: bool) -> RunSummary:
        workers = self.settings.workers
        several = workers > 1 and len(self.config.practices) > 1
        queue = FairQueue(
            per_practice_limit=workers - 1 if several else workers,
            give_up_after=self.settings.give_up_after_seconds,
            clock=self._clock,
        )
        self._journal, self._queue = journal, queue
        self._finisher = Finisher(self.layout, journal, self._emit, self._clock)
        self._started_at = self._clock()
        self._settling = Settling(self.settings.settle_seconds)
        with self._lock:
            self._sent = self._failed = 0
        initial: set[str] | None = None
        if once:
            initial = {a.name for a in find_arrivals(self.layout.incoming, self._practice_folders)}
            self._total = len(initial) + journal.count(ACTIVE)
        threads = [
            threading.Thread(target=self._work, args=(client,), name=f"xdr-edge-outbox-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in threads:
            thread.start()
        log.info(
            "outbox run dir=%s workers=%d once=%s recovered=%d",
            self.layout.root,
            workers,
            once,
            recovered.total,
        )
        try:
            self._loop(journal, queue, initial, once)
        finally:
            queue.close()
            for thread in threads:
                thread.join()
            self._queue = None
        with self._lock:
            return RunSummary(
                sent=self._sent,
                failed=self._failed,
                waiting=journal.count((State.WAITING,)),
                claimed=journal.count((State.CLAIMED, State.SENDING, State.FINISHING)),
                stopped=self._stop.is_set(),
                recovered=recovered,
            )

    def _loop(self, journal: Journal, queue: FairQueue, initial: set[str] | None, once: bool) -> None:
        """Scan ``incoming/`` every poll; queue waiting drops when they fall due; with ``once``, end when nothing
        is left. A worker finishing a drop wakes the loop only to check that (no rescan: cheap per drop)."""
        next_scan = 0.0
        next_due: float | None = None
        everything = True  # the first pass queues every workable drop (recovery); later ones only the due
        while not self._stop.is_set():
            self._wake.clear()
            now = self._clock()
            if now >= next_scan:
                self._claim(journal, queue, initial)
                self._schedule(journal, queue, everything=everything)
                everything = False
                next_scan = now + self.settings.poll_seconds
            elif next_due is not None and now >= next_due:
                self._schedule(journal, queue, everything=False)
            if once and not initial and queue.pending() == 0 and not journal.count(ACTIVE):
                return
            next_due = journal.next_due(after=now)
            deadline = next_scan if next_due is None else min(next_scan, next_due)
            self._wake.wait(max(0.0, deadline - self._clock()))

    # -- claiming ---------------------------------------------------------------------------------------------

    def _claim(self, journal: Journal, queue: FairQueue, only: set[str] | None) -> None:
        """Claim the settled drops of ``incoming/`` (with ``only``, of those names), a batch at a time."""
        arrivals = find_arrivals(self.layout.incoming, self._practice_folders)
        present = {a.name for a in arrivals}
        self._settling.forget(present)
        if only is not None:
            only &= present  # gone meanwhile: nothing left to wait for
        now = time.monotonic()
        batch: list[Arrival] = []
        for arrival in arrivals:
            if self._stop.is_set():
                break
            if only is not None and arrival.name not in only:
                continue
            if not self._settling.settled(arrival, now):
                continue  # new, or still changing: looked at again at the next poll
            batch.append(arrival)
            if only is not None:
                only.discard(arrival.name)
            if len(batch) == BATCH:
                self._claim_batch(journal, queue, batch)
                batch = []
        if batch:
            self._claim_batch(journal, queue, batch)

    def _claim_batch(self, journal: Journal, queue: FairQueue, batch: list[Arrival]) -> None:
        for item in claim(self.layout, journal, batch, self._clock):
            queue.put(item.drop_id, item.practice or "", item.since)

    def _schedule(self, journal: Journal, queue: FairQueue, *, everything: bool) -> None:
        """Queue the drops that are due. Claimed drops are queued when claimed, so after the first pass only the
        drops with a time set are looked at: waiting ones, parked ones, and those `outbox retry` put back."""
        for drop_id, practice, since in journal.due(WORKABLE, self._clock(), timed_only=not everything):
            queue.put(drop_id, practice or "", since)

    # -- working ----------------------------------------------------------------------------------------------

    def _work(self, client: XdrClient) -> None:
        queue = self._queue
        assert queue is not None
        while (job := queue.take()) is not None:
            try:
                self._process(job, client)
            except Exception as exc:
                self._park(job, exc)
            finally:
                queue.done(job)
                self._wake.set()

    def _park(self, job: Job, exc: Exception) -> None:
        """An unexpected error (a bug, a disk failure): the drop keeps its place and is tried again later."""
        log.error(
            "drop %s: unexpected %s; tried again in %.0f s", job.drop_id, type(exc).__name__, _PARK_SECONDS
        )
        log.debug("drop %s: unexpected error", job.drop_id, exc_info=True)
        journal = self._journal
        if journal is None:
            return
        row = journal.get(job.drop_id)
        if row is None:
            return
        later = self._clock() + _PARK_SECONDS
        try:
            if row.state is State.SENDING:  # a request may have left
                journal.change(
                    row.id,
                    expect=(State.SENDING,),
                    detail="internal-error",
                    state=State.WAITING,
                    next_at=later,
                    maybe_stored=True,
                )
            elif row.state in WORKABLE:
                journal.change(row.id, expect=(row.state,), detail="internal-error", next_at=later)
        except XdrError:
            log.debug("drop %s: could not park", job.drop_id, exc_info=True)

    def _process(self, job: Job, client: XdrClient) -> None:
        journal, finisher = self._journal, self._finisher
        assert journal is not None and finisher is not None
        row = journal.get(job.drop_id)
        if row is None or row.state not in WORKABLE:
            return
        if row.state is State.FINISHING:
            finisher.complete(row)
            return
        if job.expire:
            self._give_up(row, job.practice)
            return
        request: DropRequest | None = None
        try:
            folder = row.name.split("/", 1)[0] if "/" in row.name else None
            request = read_drop(
                self.layout.claimed_dir(row.id), kind=row.kind, practice_folder=folder, config=self.config
            )
            record = SubmissionRecord.from_json(row.submission) if row.submission is not None else None
            submission, record = compose_drop(request, record, renew=not row.ever_sent)
        except (XdrError, OSError) as exc:
            self._refuse(row, request, None, exc)
            return
        now = self._clock()
        journal.change(
            row.id,
            expect=(State.CLAIMED, State.WAITING),
            detail="attempt",
            state=State.SENDING,
            practice=request.practice,
            submission=record.as_json(),
            first_attempt_at=row.first_attempt_at or now,
        )
        sending = journal.get(row.id)
        assert sending is not None
        try:
            result = client.send(
                submission, practice=request.practice, keep_raw_response=True, maybe_stored=row.maybe_stored
            )
        except (CertificateError, ConfigurationError) as exc:
            # The practice cannot send (certificate expired or unreadable, practice inactive): not the drop's
            # fault. It waits; the client re-reads renewed certificate files on the next send.
            log.warning("practice %s cannot send: %s", request.practice, exc.code)
            self._wait(
                sending, request, None, Judgement(Step.WAIT, "NotSent", exc.code, str(exc), outage=True)
            )
            return
        except (XdrError, OSError) as exc:
            self._refuse(sending, request, record, exc)
            return
        verdict = judge(result)
        if verdict.step is Step.WAIT:
            self._wait(sending, request, result, verdict)
            return
        if self._queue is not None:
            self._queue.release(request.practice)
        finisher.finish(
            sending,
            step=verdict.step,
            outcome=verdict.outcome,
            code=verdict.code,
            message=verdict.message,
            result=result,
            request=request,
            record=record,
        )

    def _refuse(
        self, row: DropRow, request: DropRequest | None, record: SubmissionRecord | None, exc: Exception
    ) -> None:
        """A bad drop: failed at once, with every reason."""
        finisher = self._finisher
        assert finisher is not None
        if isinstance(exc, ValidationFailed):
            problems: list[dict[str, Any]] = [f.as_dict() for f in exc.findings]
            code, message = exc.code, f"the drop's metadata is not valid: {exc.message}"
        elif isinstance(exc, XdrError):
            problems = [exc.as_dict()]
            code, message = exc.code, str(exc)
            if isinstance(exc, LocalProtocolError) and exc.code == "document-changed" and row.ever_sent:
                message += "; it was not sent again, and an earlier attempt may have been delivered"
        else:
            assert isinstance(exc, OSError)
            where = getattr(exc, "filename", None)
            message = f"the drop cannot be read: {exc.strerror or exc}" + (f" ({where})" if where else "")
            problems = [{"code": "unreadable", "message": message, "location": where}]
            code = "unreadable"
        if isinstance(exc, NotBound):
            message = f"the sender is not allowed for this practice: {exc}"
        finisher.finish(
            row,
            step=Step.FAILED,
            outcome=BAD_DROP,
            code=code,
            message=message,
            request=request,
            record=record,
            problems=problems,
        )

    def _wait(
        self, row: DropRow, request: DropRequest, result: SendResult | None, verdict: Judgement
    ) -> None:
        """A transient failure: wait and retry with backoff, or give up once the drop is old enough."""
        journal, finisher = self._journal, self._finisher
        assert journal is not None and finisher is not None
        now = self._clock()
        if now - row.since >= self.settings.give_up_after_seconds:
            finisher.finish(
                row,
                step=Step.FAILED,
                outcome=verdict.outcome,
                code=verdict.code,
                message=f"gave up after {_duration(now - row.since)} without delivery; last: {verdict.message}",
                result=result,
                request=request,
                gave_up=True,
            )
            return
        retries = row.retries + 1
        with self._lock:
            pause = backoff(retries, self.settings, self._rng)
        next_at = now + pause
        message_ids = [*row.message_ids, *(result.message_ids if result is not None else ())]
        attempts = row.attempts + (result.attempts if result is not None else 0)
        journal.change(
            row.id,
            expect=(State.SENDING,),
            detail=verdict.code,
            state=State.WAITING,
            next_at=next_at,
            retries=retries,
            attempts=attempts,
            message_ids=message_ids,
            maybe_stored=row.maybe_stored or verdict.maybe_stored,
            last_outcome=verdict.outcome,
            last_error=verdict.message,
            last_error_at=now,
        )
        if verdict.outage and self._queue is not None:
            self._queue.hold(request.practice, next_at)
            with self._lock:
                self._outages[request.practice] = verdict.message
        self._emit(
            DropEvent(
                drop_id=row.id,
                name=row.name,
                practice=request.practice,
                state=Step.WAIT.value,
                outcome=verdict.outcome,
                code=verdict.code,
                message=verdict.message,
                attempts=attempts + row.interrupted,
                message_id=message_ids[-1] if message_ids else None,
                submission_set_unique_id=(row.submission or {}).get("submission_set_unique_id"),
                http_status=result.http_status if result is not None else None,
                age_seconds=now - row.claimed_at,
                next_attempt_at=next_at,
            )
        )

    def _give_up(self, row: DropRow, practice: str) -> None:
        """A drop of a paused practice that reached the give-up age without another attempt."""
        finisher = self._finisher
        assert finisher is not None
        with self._lock:
            reason = self._outages.get(practice) or row.last_error or "the HISP was not reachable"
        age = _duration(self._clock() - row.since)
        finisher.finish(
            row,
            step=Step.FAILED,
            outcome=row.last_outcome or "NotSent",
            code="gave-up",
            message=f"gave up after {age} without delivery: the practice's HISP was not taking requests ({reason})",
            gave_up=True,
        )

    def _emit(self, event: DropEvent) -> None:
        with self._lock:
            if event.state == Step.SENT.value:
                self._sent += 1
            elif event.state == Step.FAILED.value:
                self._failed += 1
        log.info("drop %s", " ".join(f"{k}={v}" for k, v in event.fields().items() if v is not None))
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception as exc:
                log.error("the outbox event handler failed: %s", type(exc).__name__)


def backoff(retries: int, settings: OutboxSettings, rng: random.Random) -> float:
    """Seconds to wait before retry number ``retries``: exponential, with "equal jitter" (half of the step fixed,
    half random), so that many drops waiting on one outage spread out, and a pause is never close to nothing."""
    step = min(settings.retry_max_seconds, settings.retry_base_seconds * 2.0 ** min(retries - 1, 60))
    return step / 2 + rng.uniform(0, step / 2)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
