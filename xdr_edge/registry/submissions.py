"""The inbox index: which SubmissionSet and DocumentEntry uniqueIds are stored, and which practice sent each.

It lives in the registry database, so every receiver sharing that database (a cluster on PostgreSQL, or
several receivers of one host on one SQLite file) sees the same index: a uniqueId stored through one receiver
is a duplicate on every other. Whether a copy is the first is decided by the database's primary keys inside
one transaction, not by a lock of ours: two copies arriving at two receivers at the same moment both try to
insert the same key, the database lets one commit and the other finds the row (on PostgreSQL the second
insert waits for the first transaction's outcome).

uniqueIds are OIDs, unique worldwide (ITI TF-3 4.2.3), so a uniqueId belongs to the practice that sent it
first. The inbox (:class:`xdr_edge.receiver.store.Inbox`) turns an :class:`IndexConflict` into the answer:
XDSDuplicateUniqueIdInRegistry for the same practice's SubmissionSet again, XDSNonIdenticalHash/Size for the
same practice's DocumentEntry with other bytes (ITI TF-3 4.2.4), XDSRepositoryError for another practice's.

A row is written only for a submission whose files are complete in its receiver's staging area, and the
row is the commit point: the inbox moves the staging directory into place after it (see the inbox for the
order of steps and what its start-up recovery does with each state).

A DocumentEntry uniqueId has one row (its bytes' SHA-1 and size, the practice holding it) and a link to every
stored submission carrying it: a document forwarded or re-registered with the same bytes stays indexed as long
as one of those submissions is stored, whichever of them is undone.
"""

from __future__ import annotations

__all__ = ["ConflictKind", "IndexConflict", "IndexedDocument", "IndexedSubmission", "SubmissionIndex"]

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from xdr_edge.protocol.errors import StoreError
from xdr_edge.registry.database import (
    RETRY,
    Access,
    Connection,
    Database,
    Row,
    decode_time,
    encode_time,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A transaction that lost a deadlock or a serialization conflict on PostgreSQL, or that found a row it had
#: just collided with gone (undone by another receiver meanwhile), is run again, this often at most.
_ATTEMPTS = 5
_SUBMISSION_COLUMNS = "unique_id, practice_id, receiver, staged_as, path, stored_at"


class ConflictKind(StrEnum):
    """Why a submission could not be recorded."""

    DUPLICATE = "duplicate"  # the same practice's SubmissionSet uniqueId is already stored
    SUBMISSION_ELSEWHERE = "submission-elsewhere"  # another practice's SubmissionSet uniqueId
    DOCUMENT_ELSEWHERE = "document-elsewhere"  # another practice's DocumentEntry uniqueId, other bytes
    DOCUMENT_HASH = "document-hash"  # the same practice's DocumentEntry uniqueId with another SHA-1
    DOCUMENT_SIZE = "document-size"  # ... with the same SHA-1 but another size


@dataclass(frozen=True)
class IndexConflict:
    """A uniqueId already held; ``holder`` is the practice that holds it (for the log, never for the peer)."""

    kind: ConflictKind
    unique_id: str
    holder: str | None


@dataclass(frozen=True)
class IndexedDocument:
    """A DocumentEntry uniqueId with the SHA-1 (hex) and size of its bytes."""

    unique_id: str
    sha1: str
    size: int


@dataclass(frozen=True)
class IndexedSubmission:
    """One stored SubmissionSet: who sent it, which receiver stored it, where (relative to that inbox)."""

    unique_id: str
    practice_id: str | None
    receiver: str
    staged_as: str
    path: str
    stored_at: datetime


class _Abort(Exception):
    """Rolls back a recording transaction that found a conflict after inserting some of its rows."""

    def __init__(self, conflict: IndexConflict) -> None:
        super().__init__(conflict.kind.value)
        self.conflict = conflict


class _Vanished(Exception):
    """A row this transaction's insert collided with was gone when read: it was undone meanwhile (READ
    COMMITTED shows each statement the latest commits), so the transaction runs again and finds the key free."""


class SubmissionIndex:
    """The index over a registry database whose schema is current (:func:`.migrations.migrate`)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def record(
        self,
        submission: IndexedSubmission,
        documents: Sequence[IndexedDocument],
    ) -> IndexConflict | None:
        """Record a stored submission and its documents in one transaction; the conflict that prevents it, if
        any (then nothing is recorded).

        A DocumentEntry uniqueId already held with the same bytes is a re-registration (or a forwarded
        document): accepted, and linked to this submission too, while the row stays with the submission that
        recorded it first. Rows are inserted in one order (the SubmissionSet, then documents by uniqueId), so
        two recordings sharing keys wait for each other instead of deadlocking.
        """
        return self.record_many([(submission, documents)])[0]

    def record_many(
        self, items: Sequence[tuple[IndexedSubmission, Sequence[IndexedDocument]]]
    ) -> list[IndexConflict | None]:
        """:meth:`record` for several submissions in one transaction (one commit, one sync of the database's
        journal: the inbox's group commit), each in a savepoint of its own: one that conflicts is rolled back
        alone, and its conflict is its result. Two items with the same uniqueId: the first is recorded, the
        second conflicts with it. A transaction the database aborts (deadlock, serialization) or that meets a
        row undone meanwhile is run again whole; an error raised is every item's (none of them is recorded, or,
        when the commit itself failed, perhaps all of them)."""
        if not items:
            return []
        return self._retrying(
            f"recording {len(items)} submission(s), the first {items[0][0].unique_id}",
            lambda conn: [
                self._record_in_savepoint(conn, number, submission, documents)
                for number, (submission, documents) in enumerate(items)
            ],
        )

    @classmethod
    def _record_in_savepoint(
        cls,
        conn: Connection,
        number: int,
        submission: IndexedSubmission,
        documents: Sequence[IndexedDocument],
    ) -> IndexConflict | None:
        savepoint = f"record_{number}"
        conn.execute(f"SAVEPOINT {savepoint}")
        try:
            conflict = cls._record(conn, submission, documents)
        except _Abort as abort:
            conn.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
            conflict = abort.conflict
        conn.execute(f"RELEASE SAVEPOINT {savepoint}")
        return conflict

    def _retrying(self, what: str, work: Callable[[Connection], T]) -> T:
        """``work`` in one ``RECORD`` transaction, run again when it lost a deadlock or a serialization
        conflict (PostgreSQL) or met a row undone meanwhile; each retry is logged, as it shows contention."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self.database.transaction(Access.RECORD, track_commit=True) as conn:
                    return work(conn)
            except StoreError as exc:
                if exc.code != RETRY or attempt == _ATTEMPTS:
                    raise
                log.warning("%s: run again (%d of %d) after %s", what, attempt + 1, _ATTEMPTS, exc.message)
            except _Vanished as exc:
                if attempt == _ATTEMPTS:
                    raise StoreError(f"{what}: rows kept changing under it; retry later") from exc
                log.warning("%s: run again (%d of %d): %s", what, attempt + 1, _ATTEMPTS, exc)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    @staticmethod
    def _record(
        conn: Connection, submission: IndexedSubmission, documents: Sequence[IndexedDocument]
    ) -> IndexConflict | None:
        practice = submission.practice_id
        inserted = conn.execute(
            f"INSERT INTO inbox_submissions ({_SUBMISSION_COLUMNS}) "  # noqa: S608 - constant column list
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (unique_id) DO NOTHING",
            (
                submission.unique_id,
                practice,
                submission.receiver,
                submission.staged_as,
                submission.path,
                encode_time(submission.stored_at),
            ),
        ).rowcount
        if not inserted:
            held = conn.one(
                "SELECT practice_id FROM inbox_submissions WHERE unique_id = ?", (submission.unique_id,)
            )
            if held is None:
                raise _Vanished(f"SubmissionSet {submission.unique_id} was undone meanwhile")
            holder = held["practice_id"]
            kind = ConflictKind.DUPLICATE if holder == practice else ConflictKind.SUBMISSION_ELSEWHERE
            return IndexConflict(kind, submission.unique_id, holder)
        for document in sorted(documents, key=lambda d: d.unique_id):
            inserted = conn.execute(
                "INSERT INTO inbox_documents (unique_id, sha1, size, practice_id, submission_id) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (unique_id) DO NOTHING",
                (document.unique_id, document.sha1, document.size, practice, submission.unique_id),
            ).rowcount
            if not inserted:
                # Locked until this transaction ends: undoing the submission holding it (forget) waits for
                # this one, then finds this submission's link and hands the row over instead of deleting it.
                held = conn.one(
                    conn.locked(
                        "SELECT sha1, size, practice_id FROM inbox_documents WHERE unique_id = ?", shared=True
                    ),
                    (document.unique_id,),
                )
                if held is None:
                    raise _Vanished(f"DocumentEntry {document.unique_id} was undone meanwhile")
                if held["sha1"] != document.sha1 or int(held["size"]) != document.size:
                    raise _Abort(_document_conflict(document, held, practice))
                # the same bytes again: nothing differs, nothing can be lost; linked below like a new one
            conn.execute(
                "INSERT INTO inbox_submission_documents (submission_id, document_id) VALUES (?, ?) "
                "ON CONFLICT (submission_id, document_id) DO NOTHING",
                (submission.unique_id, document.unique_id),
            )
        return None

    def relocate(self, unique_id: str, staged_as: str, path: str) -> None:
        """Record that the submission's directory got another name (the one chosen was taken meanwhile)."""
        with self.database.transaction(Access.RECORD) as conn:
            conn.execute(
                "UPDATE inbox_submissions SET path = ? WHERE unique_id = ? AND staged_as = ?",
                (path, unique_id, staged_as),
            )

    def forget(self, unique_id: str, staged_as: str) -> bool:
        """Undo :meth:`record`: only when moving the files into place failed. False when that recording is not
        in the index (``staged_as`` names which recording may be undone).

        A document row this submission holds goes with it unless another stored submission carries the same
        document: then the row is handed to the earliest of those (and its practice). The rows are locked
        first, in uniqueId order as :meth:`record` takes them, so a recording that re-registers one of them
        at this moment is either seen here (and the row handed to it) or waits and then finds the row gone
        (and records it anew)."""
        return self._retrying(
            f"undoing submission {unique_id}", lambda conn: self._forget(conn, unique_id, staged_as)
        )

    @staticmethod
    def _forget(conn: Connection, unique_id: str, staged_as: str) -> bool:
        recorded = conn.one(
            conn.locked("SELECT unique_id FROM inbox_submissions WHERE unique_id = ? AND staged_as = ?"),
            (unique_id, staged_as),
        )
        if recorded is None:
            return False
        held = conn.all(
            conn.locked("SELECT unique_id FROM inbox_documents WHERE submission_id = ? ORDER BY unique_id"),
            (unique_id,),
        )
        for row in held:
            heir = conn.one(
                "SELECT s.unique_id, s.practice_id FROM inbox_submission_documents l "
                "JOIN inbox_submissions s ON s.unique_id = l.submission_id "
                "WHERE l.document_id = ? AND l.submission_id <> ? ORDER BY s.stored_at, s.unique_id LIMIT 1",
                (row["unique_id"], unique_id),
            )
            if heir is not None:
                conn.execute(
                    "UPDATE inbox_documents SET submission_id = ?, practice_id = ? WHERE unique_id = ?",
                    (heir["unique_id"], heir["practice_id"], row["unique_id"]),
                )
        # the links go with the submission, and so do the document rows no other submission carries
        conn.execute("DELETE FROM inbox_submissions WHERE unique_id = ?", (unique_id,))
        return True

    def committed(self, transaction_id: str) -> bool | None:
        """Whether the recording transaction a :class:`~xdr_edge.registry.database.CommitUnknown` named
        committed, was rolled back, or is not known yet (None)."""
        return self.database.transaction_committed(transaction_id)

    def staged(self, receiver: str, staged_as: str) -> IndexedSubmission | None:
        """The submission recorded from ``receiver``'s staging directory ``staged_as``, if it was recorded."""
        with self.database.connection() as conn:
            row = conn.one(
                f"SELECT {_SUBMISSION_COLUMNS} FROM inbox_submissions "  # noqa: S608 - constant column list
                "WHERE staged_as = ? AND receiver = ?",
                (staged_as, receiver),
            )
        return None if row is None else _submission(row)

    def submission(self, unique_id: str) -> IndexedSubmission | None:
        with self.database.connection() as conn:
            row = conn.one(
                f"SELECT {_SUBMISSION_COLUMNS} FROM inbox_submissions "  # noqa: S608 - constant column list
                "WHERE unique_id = ?",
                (unique_id,),
            )
        return None if row is None else _submission(row)

    def contains(self, unique_id: str) -> bool:
        """Whether a SubmissionSet with this uniqueId is stored, from any practice, through any receiver."""
        return self.submission(unique_id) is not None

    def document(self, unique_id: str) -> IndexedDocument | None:
        with self.database.connection() as conn:
            row = conn.one(
                "SELECT unique_id, sha1, size FROM inbox_documents WHERE unique_id = ?", (unique_id,)
            )
        return None if row is None else IndexedDocument(row["unique_id"], row["sha1"], int(row["size"]))


def _document_conflict(document: IndexedDocument, held: Row, practice: str | None) -> IndexConflict:
    """Why a DocumentEntry uniqueId held with other bytes cannot be recorded for ``practice``."""
    holder = held["practice_id"]
    if holder != practice:
        kind = ConflictKind.DOCUMENT_ELSEWHERE
    elif held["sha1"] != document.sha1:
        kind = ConflictKind.DOCUMENT_HASH
    else:
        kind = ConflictKind.DOCUMENT_SIZE
    return IndexConflict(kind, document.unique_id, holder)


def _submission(row: Row) -> IndexedSubmission:
    return IndexedSubmission(
        unique_id=row["unique_id"],
        practice_id=row["practice_id"],
        receiver=row["receiver"],
        staged_as=row["staged_as"],
        path=row["path"],
        stored_at=decode_time(row["stored_at"]),
    )
