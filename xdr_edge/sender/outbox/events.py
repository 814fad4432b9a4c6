"""What a run tells its caller: one event per drop that was sent, failed or set to wait, and a progress snapshot.

Events carry the drop's name for a person watching (the terminal display, ``error.txt``); :meth:`DropEvent.fields`
is the form for logs, without the name or the message: practice systems often put patient names in file names,
and messages can quote metadata values.
"""

from __future__ import annotations

__all__ = ["DropEvent", "Progress", "iso"]

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xdr_edge.sender.outbox.journal import DropRow


def iso(moment: float | None) -> str | None:
    """A time as ISO 8601 UTC to the second (``2026-12-06T06:01:49Z``), the form of every time the outbox writes."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class DropEvent:
    drop_id: str
    name: str
    practice: str | None
    state: str  # "sent", "failed" or "waiting"
    outcome: str
    code: str
    message: str
    attempts: int
    message_id: str | None
    submission_set_unique_id: str | None
    http_status: int | None
    age_seconds: float
    next_attempt_at: float | None = None

    @classmethod
    def for_drop(
        cls,
        row: DropRow,
        *,
        practice: str | None,
        state: str,
        outcome: str,
        code: str,
        message: str,
        attempts: int,
        message_id: str | None,
        http_status: int | None,
        now: float,
        next_attempt_at: float | None = None,
    ) -> DropEvent:
        """The event of the drop ``row`` (its id, name, SubmissionSet uniqueId and age come from the row)."""
        return cls(
            drop_id=row.id,
            name=row.name,
            practice=practice,
            state=state,
            outcome=outcome,
            code=code,
            message=message,
            attempts=attempts,
            message_id=message_id,
            submission_set_unique_id=(row.submission or {}).get("submission_set_unique_id"),
            http_status=http_status,
            age_seconds=now - row.claimed_at,
            next_attempt_at=next_attempt_at,
        )

    def fields(self) -> dict[str, Any]:
        """The PHI-free form: identifiers, outcome, codes, counts and times."""
        return {
            "drop_id": self.drop_id,
            "practice": self.practice,
            "state": self.state,
            "outcome": self.outcome,
            "code": self.code,
            "attempts": self.attempts,
            "message_id": self.message_id,
            "submission_set_unique_id": self.submission_set_unique_id,
            "http_status": self.http_status,
            "age_ms": int(self.age_seconds * 1000),
            "next_attempt_at": iso(self.next_attempt_at),
        }


@dataclass(frozen=True)
class Progress:
    """A run at one moment: drops finished in this run, and what the outbox holds now."""

    started_at: float
    now: float
    sent: int  # in this run
    failed: int  # in this run
    waiting: int  # in the outbox now
    in_flight: int
    claimed: int  # claimed and not yet finished, in the outbox now
    total: int | None  # for --once: what there was to do when the run started

    @property
    def done(self) -> int:
        return self.sent + self.failed

    @property
    def rate(self) -> float:
        elapsed = self.now - self.started_at
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        if self.total is None or self.rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)
