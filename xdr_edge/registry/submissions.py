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
"""

from __future__ import annotations

__all__ = ["ConflictKind", "IndexConflict", "IndexedDocument", "IndexedSubmission", "SubmissionIndex"]

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from xdr_edge.protocol.errors import StoreError
from xdr_edge.registry.database import RETRY, Access, Connection, Database, Row

_ATTEMPTS = 5  # a deadlock or serialization failure on PostgreSQL is retried this often


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
        document): accepted, and the row stays with the submission that recorded it first. Rows are inserted
        in one order (the SubmissionSet, then documents by uniqueId), so two recordings sharing keys wait for
        each other instead of deadlocking.
        """
        return self.record_many([(submission, documents)])[0]

    def record_many(
        self, items: Sequence[tuple[IndexedSubmission, Sequence[IndexedDocument]]]
    ) -> list[IndexConflict | None]:
        """:meth:`record` for several submissions in one transaction (one commit, one sync of the database's
        journal), each in a savepoint of its own: one that conflicts is rolled back alone, and its conflict is
        its result. Two items with the same uniqueId: the first is recorded, the second conflicts with it. A
        transaction the database aborts (deadlock, serialization) is run again whole; an error raised is
        every item's (none of them is recorded, or, when the commit itself failed, perhaps all of them)."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self.database.transaction(Access.RECORD) as conn:
                    return [
                        self._record_in_savepoint(conn, number, submission, documents)
                        for number, (submission, documents) in enumerate(items)
                    ]
            except StoreError as exc:
                if exc.code != RETRY or attempt == _ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

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

    @staticmethod
    def _record(
        conn: Connection, submission: IndexedSubmission, documents: Sequence[IndexedDocument]
    ) -> IndexConflict | None:
        practice = submission.practice_id
        inserted = conn.execute(
            "INSERT INTO inbox_submissions (unique_id, practice_id, receiver, staged_as, path, stored_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (unique_id) DO NOTHING",
            (
                submission.unique_id,
                practice,
                submission.receiver,
                submission.staged_as,
                submission.path,
                submission.stored_at.isoformat(),
            ),
        ).rowcount
        if not inserted:
            held = conn.one(
                "SELECT practice_id FROM inbox_submissions WHERE unique_id = ?", (submission.unique_id,)
            )
            holder = None if held is None else held["practice_id"]
            kind = ConflictKind.DUPLICATE if holder == practice else ConflictKind.SUBMISSION_ELSEWHERE
            return IndexConflict(kind, submission.unique_id, holder)
        for document in sorted(documents, key=lambda d: d.unique_id):
            inserted = conn.execute(
                "INSERT INTO inbox_documents (unique_id, sha1, size, practice_id, submission_id) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (unique_id) DO NOTHING",
                (document.unique_id, document.sha1, document.size, practice, submission.unique_id),
            ).rowcount
            if inserted:
                continue
            held = conn.one(
                "SELECT sha1, size, practice_id FROM inbox_documents WHERE unique_id = ?",
                (document.unique_id,),
            )
            if held is None or (held["sha1"] == document.sha1 and int(held["size"]) == document.size):
                continue  # the same bytes again: nothing differs, nothing can be lost
            holder = held["practice_id"]
            if holder != practice:
                kind = ConflictKind.DOCUMENT_ELSEWHERE
            elif held["sha1"] != document.sha1:
                kind = ConflictKind.DOCUMENT_HASH
            else:
                kind = ConflictKind.DOCUMENT_SIZE
            raise _Abort(IndexConflict(kind, document.unique_id, holder))
        return None

    def relocate(self, unique_id: str, staged_as: str, path: str) -> None:
        """Record that the submission's directory got another name (the one chosen was taken meanwhile)."""
        with self.database.transaction(Access.RECORD) as conn:
            conn.execute(
                "UPDATE inbox_submissions SET path = ? WHERE unique_id = ? AND staged_as = ?",
                (path, unique_id, staged_as),
            )

    def forget(self, unique_id: str, staged_as: str) -> bool:
        """Undo :meth:`record` (its document rows go with it): only when moving the files into place failed."""
        with self.database.transaction(Access.RECORD) as conn:
            return bool(
                conn.execute(
                    "DELETE FROM inbox_submissions WHERE unique_id = ? AND staged_as = ?",
                    (unique_id, staged_as),
                ).rowcount
            )

    def staged(self, receiver: str, staged_as: str) -> IndexedSubmission | None:
        """The submission recorded from ``receiver``'s staging directory ``staged_as``, if it was recorded."""
        with self.database.connection() as conn:
            row = conn.one(
                "SELECT unique_id, practice_id, receiver, staged_as, path, stored_at FROM inbox_submissions "
                "WHERE staged_as = ? AND receiver = ?",
                (staged_as, receiver),
            )
        return None if row is None else _submission(row)

    def submission(self, unique_id: str) -> IndexedSubmission | None:
        with self.database.connection() as conn:
            row = conn.one(
                "SELECT unique_id, practice_id, receiver, staged_as, path, stored_at FROM inbox_submissions "
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


def _submission(row: Row) -> IndexedSubmission:
    return IndexedSubmission(
        unique_id=row["unique_id"],
        practice_id=row["practice_id"],
        receiver=row["receiver"],
        staged_as=row["staged_as"],
        path=row["path"],
        stored_at=datetime.fromisoformat(row["stored_at"]),
    )
