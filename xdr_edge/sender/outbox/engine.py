"""The folder-drop sender: claims drops from ``incoming/``, sends each as an ITI-41 submission with its practice's
certificate through one shared :class:`~xdr_edge.sender.client.XdrClient`, and ends each in ``sent/`` or ``failed/``.

A run: take the runner lock, recover what a crash left (:mod:`.recovery`), then loop until stopped: claim settled
drops (:mod:`.arrivals`), queue the drops that are due (claimed, or waiting and due for a retry), and let N worker
threads take them fairly across practices (:mod:`.scheduler`). Per drop a worker reads it (:mod:`.drop`), records
its uniqueIds in the journal before the first attempt, sends it, and judges the outcome (:mod:`.verdict`): sent,
failed (:mod:`.finishing`), or waiting for a retry until the give-up age. An answer saying the HISP (or the
practice) cannot take requests pauses every drop behind it (:class:`~.scheduler.FairQueue`'s gates): one probe
per pause, the pause growing while the outage lasts.

The client makes one attempt per send (:data:`CLIENT_RETRY`): every attempt is the outbox's own, recorded in the
journal, paced by its pauses, and a stop never waits for the client's retries.

Claiming is a rename (atomic) preceded by its intent in the journal; so after ``kill -9`` at any moment the next
run knows, for every drop, where it is and what may have happened to it. :meth:`Outbox.stop` (SIGTERM, Ctrl-C)
stops claiming and lets the workers finish the drops they hold; the others stay claimed or waiting for the next run.
"""

from __future__ import annotations

__all__ = ["CLIENT_RETRY", "PARK_LIMIT", "Outbox", "RunSummary"]

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
from xdr_edge.sender.outbox.layout import NETWORK_FILESYSTEMS, OutboxLayout, RunnerLock, filesystem_type
from xdr_edge.sender.outbox.recovery import Recovered, finish_retry, recover
from xdr_edge.sender.outbox.scheduler import ENDPOINT, FairQueue, Job, practice_gate
from xdr_edge.sender.outbox.verdict import BAD_DROP, INTERNAL_ERROR, Judgement, Pause, Step, judge, tally

log = logging.getLogger("xdr_edge.sender.outbox")

#: One attempt per send: the outbox retries on its own schedule, records every attempt, pauses for outages and
#: honours Retry-After; retries inside the client would knock on a HISP that is down, hide attempts from the
#: journal and make a stop wait for them.
CLIENT_RETRY = RetryPolicy(max_attempts=1)
#: A drop whose handling failed unexpectedly (a bug, a disk error) is parked and tried again with the retry
#: backoff; after this many parks (or at the give-up age) it fails with the outcome InternalError.
PARK_LIMIT = 5
#: How often a running outbox forgets old finished drops (and at every start).
_PRUNE_EVERY = 3600.0
_PRUNE_BATCH = 1000  # drops forgotten per transaction, so a long backlog never holds the journal at length
#: A drop that cannot be claimed (EACCES, EBUSY on a share) is reported once, then again after this long.
_CLAIM_WARNING_EVERY = 600.0


@dataclass(frozen=True)
class RunSummary:
    """What one run did. ``waiting`` and ``claimed`` count what is left in the outbox when it ended;
    ``left_in_incoming`` the drops a ``--once`` run found but could not claim; ``stuck`` the drops that failed
    unexpectedly and could not even be moved to ``failed/`` (they stay claimed for the next run)."""

    sent: int
    failed: int
    waiting: int
    claimed: int
    stopped: bool
    recovered: Recovered = field(default_factory=Recovered)
    left_in_incoming: int = 0
    stuck: int = 0

    @property
    def all_sent(self) -> bool:
        """Every drop this run had to do was sent: what ``--once`` exits 0 for."""
        return not (self.failed or self.recovered.orphans or self.left_in_incoming or self.stuck)


class Outbox:
    """The folder-drop sender for one outbox folder; :meth:`run` in the foreground or on a thread.

    ``client`` may be an :class:`XdrClient` the caller already has (an integration engine's); otherwise one is made
    from ``config`` (:data:`CLIENT_RETRY`) and closed at the end of the run. A caller's client keeps its own retry
    policy: its retries happen inside one of the outbox's attempts. ``on_event`` receives a :class:`DropEvent`
    whenever a drop is sent, fails or is set to wait (on a worker thread: keep it short).
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
        self.config = config
        self.settings = settings or config.outbox
        self.layout = OutboxLayout(Path(directory), self.settings.state_dir)
        self._client = client
        self._on_event = on_event
        self._clock = clock
        self._rng = rng or random.Random()
        self._pacing = RetryPolicy(
            max_attempts=1,
            base_delay=self.settings.retry_base_seconds,
            max_delay=self.settings.retry_max_seconds,
            jitter="equal",
        )
        # Every configured practice's folder in incoming/ is a practice folder (never a drop itself); the outbox
        # makes those of the practices with outbox defaults, whose single files it sends.
        self._practice_folders = frozenset(config.practices)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # counts, pause reasons, the random generator
        self._journal_lock = threading.Lock()  # the journal's life: progress() never meets a closed one
        self._sent = self._failed = 0
        self._pause_reasons: dict[str, str] = {}
        self._stuck: set[str] = set()
        self._unclaimable: set[str] = set()
        self._claim_warned: dict[str, float] = {}
        self._lost: str | None = None
        self._started_at = clock()
        self._total: int | None = None
        self._journal: Journal | None = None
        self._queue: FairQueue | None = None
        self._finisher: Finisher | None = None
        self._settling = Settling(self.settings.settle_seconds)

    # -- control ----------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; the workers finish the drops they hold and :meth:`run` returns. Safe from a signal
        handler and from any thread; a stop asked for while no run is going ends the next run at once."""
        self._stop.set()
        self._wake.set()

    def progress(self) -> Progress:
        with self._lock:
            sent, failed = self._sent, self._failed
        queue = self._queue
        with self._journal_lock:
            journal = self._journal
            waiting = journal.count((State.WAITING,)) if journal is not None else 0
            claimed = (
                journal.count((State.CLAIMED, State.SENDING, State.FINISHING)) if journal is not None else 0
            )
        return Progress(
            started_at=self._started_at,
            now=self._clock(),
            sent=sent,
            failed=failed,
            waiting=waiting,
            in_flight=queue.in_flight() if queue is not None else 0,
            claimed=claimed,
            total=self._total,
        )

    def run(self, *, once: bool = False) -> RunSummary:
        """Run until :meth:`stop`; with ``once``, only until every drop there was at the start (and every drop
        the journal had not finished) is sent or failed."""
        try:
            folders = tuple(sorted(self.config.outbox_defaults))
            self.layout.create(folders)
            with RunnerLock(self.layout, clock=self._clock, on_lost=self._lock_lost):
                self._warn_if_journal_on_a_share()
                journal = Journal(self.layout.journal_path, clock=self._clock)
                try:
                    self._check_journal_belongs_here(journal)
                    journal.set_meta("practice_folders", sorted(self._practice_folders))
                    recovered = recover(self.layout, journal, clock=self._clock)
                    self._prune(journal)
                    client = self._client or XdrClient.from_config(
                        self.config,
                        retry=CLIENT_RETRY,
                        connections_per_practice=max(4, self.settings.workers),
                    )
                    try:
                        summary = self._run(journal, client, recovered, once)
                    finally:
                        if self._client is None:
                            client.close()
                finally:
                    with self._journal_lock:
                        self._journal = None
                        journal.close()
            if self._lost is not None:
                raise ConfigurationError(self._lost, code="outbox-busy", location=str(self.layout.lock_path))
            return summary
        finally:
            self._stop.clear()  # a stop ends this run, not the next one
            self._lost = None

    def _lock_lost(self, message: str) -> None:
        self._lost = message
        self.stop()

    def _warn_if_journal_on_a_share(self) -> None:
        kind = filesystem_type(self.layout.journal_dir)
        if kind in NETWORK_FILESYSTEMS:
            log.warning(
                "the outbox journal %s is on a network filesystem (%s): SQLite cannot guarantee it there; set "
                "[outbox] state_dir to a folder on a local disk",
                self.layout.journal_path,
                kind,
            )

    def _check_journal_belongs_here(self, journal: Journal) -> None:
        """A ``state_dir`` shared by two outbox folders would mix their journals: refused."""
        here = str(self.layout.root.resolve())
        known = journal.meta("outbox")
        if known is not None and known != here:
            raise ConfigurationError(
                f"the outbox journal {journal.path} belongs to the outbox {known}, not to {here}: give each outbox "
                "its own state_dir",
                code="outbox-journal-elsewhere",
                location=str(journal.path),
            )
        if known is None:
            journal.set_meta("outbox", here)

    def _run(self, journal: Journal, client: XdrClient, recovered: Recovered, once: bool) -> RunSummary:
        workers = self.settings.workers
        several = workers > 1 and len(self.config.practices) > 1
        queue = FairQueue(
            per_practice_limit=workers - 1 if several else workers,
            give_up_after=self.settings.give_up_after_seconds,
            backoff=self._backoff,
            clock=self._clock,
        )
        with self._journal_lock:
            self._journal = journal
        self._queue = queue
        self._finisher = Finisher(self.layout, journal, self._emit, self._clock)
        self._started_at = self._clock()
        self._settling = Settling(self.settings.settle_seconds)
        with self._lock:
            self._sent = self._failed = 0
            self._stuck.clear()
            self._unclaimable.clear()
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
            if self._stop.is_set():
                # Said at once, so that whoever asked (Ctrl-C, SIGTERM) knows it was heard while the drops in
                # flight are finished, which may take as long as a send.
                log.warning("outbox stopping: finishing the drops in flight, claiming no more")
        finally:
            queue.close()
            for thread in threads:
                thread.join()
            self._queue = None
        left_in_incoming = 0
        if once:  # what `--once` could not claim and is still there (a scan of incoming/ only then)
            present = {a.name for a in find_arrivals(self.layout.incoming, self._practice_folders)}
            with self._lock:
                left_in_incoming = len(self._unclaimable & present)
        with self._lock:
            return RunSummary(
                sent=self._sent,
                failed=self._failed,
                waiting=journal.count((State.WAITING,)),
                claimed=journal.count((State.CLAIMED, State.SENDING, State.FINISHING, State.RETRYING)),
                stopped=self._stop.is_set(),
                recovered=recovered,
                left_in_incoming=left_in_incoming,
                stuck=len(self._stuck),
            )

    def _loop(self, journal: Journal, queue: FairQueue, initial: set[str] | None, once: bool) -> None:
        """Scan ``incoming/`` every poll; queue waiting drops when they fall due; with ``once``, end when nothing
        is left. A worker finishing a drop wakes the loop only to check that (no rescan: cheap per drop)."""
        next_scan = 0.0
        next_due: float | None = None
        next_prune = self._clock() + _PRUNE_EVERY
        everything = True  # the first pass queues every workable drop (recovery); later ones only the due
        while not self._stop.is_set():
            self._wake.clear()
            now = self._clock()
            if now >= next_scan:
                self._finish_retries(journal)
                self._claim(journal, queue, initial)
                self._schedule(journal, queue, everything=everything)
                everything = False
                next_scan = now + self.settings.poll_seconds
            elif next_due is not None and now >= next_due:
                self._schedule(journal, queue, everything=False)
            if now >= next_prune:
                self._prune(journal)
                next_prune = now + _PRUNE_EVERY
            if once and not initial and queue.pending() == 0 and not self._unfinished(journal):
                return
            next_due = journal.next_due(after=now)
            deadline = next_scan if next_due is None else min(next_scan, next_due)
            self._wake.wait(max(0.0, deadline - self._clock()))

    def _unfinished(self, journal: Journal) -> int:
        """Drops not finished yet, less those stuck for this run (they wait for the next one)."""
        with self._lock:
            stuck = len(self._stuck)
        return max(0, journal.count(ACTIVE) - stuck)

    def _backoff(self, retries: int) -> float:
        """The pause before retry number ``retries`` (also a gate's n-th pause): exponential from
        ``retry_base_seconds`` to ``retry_max_seconds``, half of it random, so that many drops waiting on one
        outage spread out and a pause is never close to nothing."""
        with self._lock:
            return self._pacing.delay(retries, self._rng)

    def _prune(self, journal: Journal) -> None:
        cutoff = self._clock() - self.settings.keep_finished_seconds
        forgotten = journal.prune(
            finished_before=cutoff,
            still_there=lambda f: (self.layout.root / f).is_dir(),
            batch=_PRUNE_BATCH,
            stop=self._stop.is_set,
        )
        if forgotten:
            days = self.settings.keep_finished_seconds / 86400
            log.info("outbox journal: forgot %d drops finished more than %g days ago", forgotten, days)

    def _finish_retries(self, journal: Journal) -> None:
        """Complete the `outbox retry` moves left half-done (a retry command killed in the middle)."""
        for row in journal.rows((State.RETRYING,)):
            if self._stop.is_set():
                return
            try:
                finish_retry(self.layout, journal, row, self._clock())
            except (XdrError, OSError) as exc:
                log.warning("drop %s: could not complete its retry: %s", row.id, exc)

    # -- claiming ---------------------------------------------------------------------------------------------

    def _claim(self, journal: Journal, queue: FairQueue, only: set[str] | None) -> None:
        """Claim the settled drops of ``incoming/`` (with ``only``, of those names), a batch at a time."""
        arrivals = find_arrivals(self.layout.incoming, self._practice_folders)
        present = {a.name for a in arrivals}
        self._settling.forget(present)
        for name in [n for n in self._claim_warned if n not in present]:
            del self._claim_warned[name]
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
        claims = claim(self.layout, journal, batch, self._clock)
        for item in claims.claimed:
            queue.put(item.drop_id, item.practice or "", item.since)
        now = time.monotonic()
        for arrival, exc in claims.failed:
            with self._lock:
                self._unclaimable.add(arrival.name)
            last = self._claim_warned.get(arrival.name)
            if last is None or now - last >= _CLAIM_WARNING_EVERY:
                self._claim_warned[arrival.name] = now
                log.warning(
                    "a drop in incoming/ cannot be claimed (%s); it stays there%s",
                    exc.strerror or type(exc).__name__,
                    "" if last is None else " (still)",
                )

    def _schedule(self, journal: Journal, queue: FairQueue, *, everything: bool) -> None:
        """Queue the drops that are due. Claimed drops are queued when claimed, so after the first pass only the
        drops with a time set are looked at: waiting ones, parked ones, and those `outbox retry` put back."""
        with self._lock:
            stuck = set(self._stuck)
        for drop_id, practice, since in journal.due(WORKABLE, self._clock(), timed_only=not everything):
            if drop_id not in stuck:
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
        """An unexpected error (a bug, a disk failure): the drop keeps its place and is tried again later, with the
        retry backoff; after :data:`PARK_LIMIT` parks, or at the give-up age, it fails as InternalError."""
        log.error("drop %s: unexpected %s", job.drop_id, type(exc).__name__)
        log.debug("drop %s: unexpected error", job.drop_id, exc_info=True)
        journal = self._journal
        if journal is None:
            return
        try:
            row = journal.get(job.drop_id)
            if row is None or row.state not in (*WORKABLE, State.SENDING):
                return
            parks = row.parks + 1
            now = self._clock()
            if row.state is not State.FINISHING and (
                parks >= PARK_LIMIT or now - row.since >= self.settings.give_up_after_seconds
            ):
                self._fail_unexpected(row, exc, parks)
                return
            later = now + self._backoff(parks)
            reason = f"unexpected {type(exc).__name__} ({parks} of {PARK_LIMIT}); tried again later"
            if row.state is State.SENDING:  # a request may have left
                journal.change(
                    row.id,
                    expect=(State.SENDING,),
                    detail="internal-error",
                    state=State.WAITING,
                    next_at=later,
                    maybe_stored=True,
                    parks=parks,
                    last_code="internal-error",
                    last_error=reason,
                    last_error_at=now,
                )
            else:
                journal.change(
                    row.id,
                    expect=(row.state,),
                    detail="internal-error",
                    next_at=later,
                    parks=parks,
                    last_code="internal-error",
                    last_error=reason,
                    last_error_at=now,
                )
            log.error("drop %s: parked; tried again in %.1f s", job.drop_id, later - now)
        except Exception:
            log.error("drop %s: could not be parked; it waits for the next run", job.drop_id)
            log.debug("drop %s: could not park", job.drop_id, exc_info=True)
            with self._lock:
                self._stuck.add(job.drop_id)

    def _fail_unexpected(self, row: DropRow, exc: Exception, parks: int) -> None:
        """Parked too often: failed as InternalError (a drop whose end was already decided, ``finishing``, keeps
        being retried: only its writes fail, and there is nothing else to decide)."""
        finisher = self._finisher
        assert finisher is not None
        finisher.finish(
            row,
            step=Step.FAILED,
            outcome=INTERNAL_ERROR,
            code="internal-error",
            message=(
                f"the outbox could not handle this drop: an unexpected {type(exc).__name__}, {parks} times "
                "(its log says more)"
            ),
            maybe_stored=row.state is State.SENDING,
        )

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
            request = self._read(row)
            record = SubmissionRecord.from_json(row.submission) if row.submission is not None else None
            submission, record = compose_drop(request, record, renew=not row.ever_sent)
        except (XdrError, OSError, ValueError) as exc:
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
        # what the row says if nothing leaves after all: no first attempt then
        unsent = replace(sending, first_attempt_at=row.first_attempt_at)
        try:
            result = client.send(
                submission, practice=request.practice, keep_raw_response=True, maybe_stored=row.maybe_stored
            )
        except (CertificateError, ConfigurationError) as exc:
            # The practice cannot send (certificate expired or unreadable, practice inactive): not the drop's
            # fault. It waits, and so does the practice; the client re-reads renewed certificate files.
            log.warning("practice %s cannot send: %s", request.practice, exc.code)
            verdict = Judgement(Step.WAIT, "NotSent", exc.code, str(exc), pause=Pause.PRACTICE)
            self._wait(
                unsent, request, None, verdict, self._pause(job, request.practice, verdict, sent=False)
            )
            return
        except (XdrError, OSError, ValueError) as exc:
            self._refuse(unsent, request, record, exc)
            return
        verdict = judge(result)
        until = self._pause(job, request.practice, verdict, sent=True)
        if verdict.step is Step.WAIT:
            self._wait(sending, request, result, verdict, until)
            return
        finisher.finish(
            sending,
            step=verdict.step,
            outcome=verdict.outcome,
            code=verdict.code,
            message=verdict.message,
            result=result,
            request=request,
            record=record,
            maybe_stored=verdict.maybe_stored,
        )

    def _read(self, row: DropRow) -> DropRequest:
        folder = row.name.split("/", 1)[0] if "/" in row.name else None
        return read_drop(
            self.layout.claimed_dir(row.id), kind=row.kind, practice_folder=folder, config=self.config
        )

    def _pause(self, job: Job, practice: str, verdict: Judgement, *, sent: bool) -> float | None:
        """Open or close the gates an answer tells about (:mod:`.scheduler`); returns when the pause it started
        ends, if it started one (the drop is due again then). ``sent``: the HISP was asked (an answer of any
        kind, or none): then whether the endpoint takes requests is known."""
        queue = self._queue
        if queue is None:
            return None
        keys = {Pause.ENDPOINT: ENDPOINT, Pause.PRACTICE: practice_gate(practice)}
        if sent and verdict.pause is not Pause.ENDPOINT:
            queue.clear(ENDPOINT)
        if verdict.pause is None:
            queue.clear(keys[Pause.PRACTICE])
            return None
        key = keys[verdict.pause]
        with self._lock:
            self._pause_reasons[key] = verdict.message
        return queue.trip(key, job, retry_after=verdict.retry_after)

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
        elif isinstance(exc, OSError):
            where = getattr(exc, "filename", None)
            message = f"the drop cannot be read: {exc.strerror or exc}" + (f" ({where})" if where else "")
            problems = [{"code": "unreadable", "message": message, "location": where}]
            code = "unreadable"
        else:  # ValueError: a value no file or field can hold, found while reading or composing
            message = f"the drop cannot be sent as it is: {exc}"
            problems = [{"code": "bad-drop", "message": message, "location": None}]
            code = "bad-drop"
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
        self,
        row: DropRow,
        request: DropRequest,
        result: SendResult | None,
        verdict: Judgement,
        until: float | None,
    ) -> None:
        """A transient failure: wait (until the pause it started ends, or with the drop's own backoff) and retry,
        or give up once the drop is old enough."""
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
                maybe_stored=verdict.maybe_stored,
            )
            return
        retries = row.retries + 1
        next_at = until if until is not None else now + self._backoff(retries)
        attempts, message_ids = tally(row, result)
        journal.change(
            row.id,
            expect=(State.SENDING,),
            detail=verdict.code,
            state=State.WAITING,
            next_at=next_at,
            retries=retries,
            attempts=attempts,
            message_ids=list(message_ids),
            first_attempt_at=row.first_attempt_at,
            maybe_stored=row.maybe_stored or verdict.maybe_stored,
            last_outcome=verdict.outcome,
            last_code=verdict.code,
            last_error=verdict.message,
            last_error_at=now,
        )
        self._emit(
            DropEvent.for_drop(
                row,
                practice=request.practice,
                state=Step.WAIT.value,
                outcome=verdict.outcome,
                code=verdict.code,
                message=verdict.message,
                attempts=attempts + row.interrupted,
                message_id=message_ids[-1] if message_ids else None,
                http_status=result.http_status if result is not None else None,
                now=now,
                next_attempt_at=next_at,
            )
        )

    def _give_up(self, row: DropRow, practice: str) -> None:
        """A drop of a paused practice (or endpoint) that reached the give-up age without another attempt."""
        finisher = self._finisher
        assert finisher is not None
        with self._lock:
            reason = (
                self._pause_reasons.get(practice_gate(practice))
                or self._pause_reasons.get(ENDPOINT)
                or row.last_error
                or "the HISP was not reachable"
            )
        try:
            request: DropRequest | None = self._read(row)  # for result.json: from, to and documents
        except (XdrError, OSError, ValueError):
            request = None
        age = _duration(self._clock() - row.since)
        finisher.finish(
            row,
            step=Step.FAILED,
            outcome=row.last_outcome or "NotSent",
            code=row.last_code or "gave-up",
            message=f"gave up after {age} without delivery: the practice's HISP was not taking requests ({reason})",
            request=request,
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


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
