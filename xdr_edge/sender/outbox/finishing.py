"""Ending a drop in ``sent/<name>/`` or ``failed/<name>/``, so that a crash at any step is finished by the next run.

1. The drop's own files named like our outputs are set aside (``result.json`` -> ``result.previous.json``).
2. One journal transaction records the decision: state ``finishing``, the final place, result.json's content and
   the HISP's response. From here on everything is written from the journal, so a restart redoes it the same way.
3. response.mime, error.txt and result.json (last) are written into the claimed folder, each durably.
4. The claimed folder is renamed to its final place (both directories flushed).
5. The journal marks the drop ``sent`` or ``failed``.

A name already taken in ``sent/`` or ``failed/`` (a practice system reusing a name, a single file dropped twice) gets
``~<drop id prefix>`` appended: unique without listing the folder.
"""

from __future__ import annotations

__all__ = ["Finisher"]

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Any

from xdr_edge.durable import fsync_dir, remove_temporaries, rename_durably, write_atomic
from xdr_edge.sender.client import SendResult
from xdr_edge.sender.outbox.drop import DropRequest, SubmissionRecord
from xdr_edge.sender.outbox.events import DropEvent
from xdr_edge.sender.outbox.journal import DropRow, Journal, State
from xdr_edge.sender.outbox.layout import OUTPUT_NAMES, OutboxLayout, set_aside
from xdr_edge.sender.outbox.verdict import Step, error_text, response_entity, result_document, tally

log = logging.getLogger("xdr_edge.sender.outbox")

RESPONSE_NAME = "response.mime"


class Finisher:
    """Moves decided drops to their final place; used by the workers and by recovery."""

    def __init__(
        self,
        layout: OutboxLayout,
        journal: Journal,
        emit: Callable[[DropEvent], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.layout = layout
        self.journal = journal
        self.emit = emit
        self.clock = clock

    def finish(
        self,
        row: DropRow,
        *,
        step: Step,
        outcome: str,
        code: str,
        message: str,
        result: SendResult | None = None,
        request: DropRequest | None = None,
        record: SubmissionRecord | None = None,
        problems: Sequence[dict[str, Any]] = (),
        gave_up: bool = False,
        maybe_stored: bool = False,
    ) -> None:
        """Decide the drop's end (steps 1 and 2), then :meth:`complete` it. ``maybe_stored``: this drop's last
        attempt may have been stored (the row knows of earlier ones); result.json says ``maybe_delivered``."""
        root = self.layout.claimed_dir(row.id)
        if root.is_dir() and not root.is_symlink():
            for name in OUTPUT_NAMES:
                set_aside(root, name)
        if record is None and row.submission is not None:
            record = SubmissionRecord.from_json(row.submission)
        now = self.clock()
        attempts, message_ids = tally(row, result)
        raw = result.raw_response if result is not None else None
        document = result_document(
            drop=row.name,
            drop_id=row.id,
            state=step,
            outcome=outcome,
            code=code,
            message=message,
            practice=request.practice if request is not None else row.practice,
            sender=str(request.sender) if request is not None else None,
            recipients=[str(r) for r in request.recipients] if request is not None else [],
            documents=request.documents if request is not None else (),
            submission_set_unique_id=record.submission_set_unique_id if record is not None else None,
            document_unique_ids=record.document_unique_ids if record is not None else (),
            message_ids=message_ids,
            attempts=attempts + row.interrupted,
            result=result,
            problems=problems,
            gave_up=gave_up,
            response=RESPONSE_NAME if raw else None,
            received_at=row.claimed_at,
            first_attempt_at=row.first_attempt_at,
            finished_at=now,
            maybe_delivered=row.maybe_stored or maybe_stored,
        )
        with self.journal.transaction() as conn:
            final = self._choose_final(conn, step, row)
            self.journal.update(
                conn,
                row.id,
                expect=(State.CLAIMED, State.SENDING, State.WAITING),
                detail=code,
                now=now,
                state=State.FINISHING,
                final=final,
                result=document,
                response=raw or None,
                response_type=result.response_content_type if raw and result is not None else None,
                attempts=attempts,
                message_ids=list(message_ids),
                first_attempt_at=row.first_attempt_at,
                maybe_stored=row.maybe_stored or maybe_stored,
                last_outcome=outcome,
                **(
                    {"last_error": message, "last_error_at": now, "last_code": code}
                    if step is Step.FAILED
                    else {}
                ),
            )
        finishing = self.journal.get(row.id)
        assert finishing is not None
        self.complete(finishing)

    def _choose_final(self, conn: sqlite3.Connection, step: Step, row: DropRow) -> str:
        folder = "sent" if step is Step.SENT else "failed"
        base = PurePosixPath(row.name).name or row.id
        for candidate in (base, f"{base}~{row.id[:8]}", f"{base}~{row.id}"):
            final = f"{folder}/{candidate}"
            if not (self.layout.root / final).exists() and not self.journal.final_taken(conn, final):
                return final
        raise FileExistsError(f"no free name for drop {row.id} in {folder}/")

    def complete(self, row: DropRow) -> None:
        """Steps 3 to 5 for a drop in state ``finishing``; safe to repeat after a crash at any point."""
        assert row.final is not None and row.result is not None
        root = self.layout.claimed_dir(row.id)
        document = row.result
        final = row.final
        if root.is_dir() and not root.is_symlink():
            remove_temporaries(root)
            if row.response is not None:
                write_atomic(
                    root / RESPONSE_NAME,
                    response_entity(row.response_type, row.response),
                    flush_directory=False,
                )
            name = PurePosixPath(final).name
            if document["state"] == Step.FAILED.value:
                write_atomic(
                    root / "error.txt", error_text(document, name).encode("utf-8"), flush_directory=False
                )
            result = (json.dumps(document, indent=2) + "\n").encode("utf-8")
            write_atomic(root / "result.json", result, flush_directory=False)
            fsync_dir(root)  # the three names, before the folder moves
            final = self._move(row, root, final)
        elif not (self.layout.root / final).exists():
            log.error(
                "drop %s: its folder is gone from the working area; marked %s", row.id, document["state"]
            )
        done = State.SENT if document["state"] == Step.SENT.value else State.FAILED
        now = self.clock()
        self.journal.change(
            row.id,
            expect=(State.FINISHING,),
            detail=document["code"],
            state=done,
            final=final,
            finished_at=now,
            response=None,
            result=None,  # result.json is on disk now; the journal keeps a small row per finished drop
        )
        self.emit(
            DropEvent.for_drop(
                row,
                practice=document.get("practice"),
                state=done.value,
                outcome=document["outcome"],
                code=document["code"],
                message=document["message"],
                attempts=document["attempts"],
                message_id=document["message_id"],
                http_status=document["http_status"],
                now=now,
            )
        )

    def _move(self, row: DropRow, root: Any, final: str) -> str:
        """Rename into place; a name taken meanwhile (by someone else than the outbox) gets another."""
        for _ in range(3):
            try:
                rename_durably(root, self.layout.root / final)
                return final
            except FileExistsError:
                with self.journal.transaction() as conn:
                    step = Step(row.result["state"]) if row.result else Step.FAILED
                    final = self._choose_final(conn, step, row)
                    self.journal.update(conn, row.id, expect=(State.FINISHING,), final=final)
        raise FileExistsError(f"no free name for drop {row.id}")
