"""The JSON API's data in the registry database: integrators' applications, which application owns which practice
(under the application's own key for it, its ``accountId``), individual logins of one practice, and the record
of every message sent through the API.

Why here and not in :mod:`xdr_edge.api`: it is rows of the same database as the registry the receiver uses (a
practice created through the API is the practice the receiver identifies), written with the same transactions
and audit rows, and a server-database backend ports both together. Why a Protocol of its own
(:class:`AccountStore`) and not more methods on :class:`~xdr_edge.registry.store.RegistryStore`: the receiver's
decisions and the registry commands never need these; keeping them apart keeps the receiver's interface small,
and one store implements both over the same database (:class:`SqlAccountStore` is a
:class:`~xdr_edge.registry.store.SqlStore` with these methods, on SQLite or PostgreSQL alike).

Passwords are stored only as the encoded slow hashes the API computes (this module never sees a password).
Records carry no PHI: a message record has addresses, counts, sizes, identifiers and the outcome, never
document content, titles or patient data.
"""

from __future__ import annotations

__all__ = [
    "AccountRecord",
    "AccountStore",
    "ApplicationRecord",
    "LoginRecord",
    "MessageRecord",
    "SqlAccountStore",
    "SqliteAccountStore",
    "open_accounts",
]

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from xdr_edge.practice import Practice
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.registry.database import (
    Access,
    Row,
    SqliteDatabase,
    decode_optional_time,
    decode_time,
    encode_time,
    open_database,
)
from xdr_edge.registry.migrations import write_audit
from xdr_edge.registry.records import AuditEvent, JsonValue
from xdr_edge.registry.store import SqlStore


@dataclass(frozen=True)
class ApplicationRecord:
    """An integrator's application: its id (chosen by the operator), name and password hash."""

    id: str
    name: str
    password_hash: str = field(repr=False)
    active: bool
    created_at: datetime
    password_changed_at: datetime

    def as_dict(self) -> dict[str, JsonValue]:
        """What an operator may see: never the hash."""
        return {
            "id": self.id,
            "name": self.name,
            "active": self.active,
            "created_at": self.created_at.isoformat(),
            "password_changed_at": self.password_changed_at.isoformat(),
        }


@dataclass(frozen=True)
class AccountRecord:
    """A practice owned by an application, known to it as ``account_id`` (its own key, not ours)."""

    application_id: str
    account_id: str
    practice_id: str
    created_at: datetime


@dataclass(frozen=True)
class LoginRecord:
    """An individual login of one practice; ``login_id`` is unique across all practices (lower case)."""

    login_id: str
    practice_id: str
    user_id: str | None
    password_hash: str = field(repr=False)
    active: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MessageRecord:
    """One MessageSend: who asked, from and to which addresses, and (once known) the outcome.

    ``outcome`` is None while the message is being sent (or when the API stopped in the middle of sending:
    the outcome is then unknown). ``detail`` is the send result without PHI (identifiers, status, errors);
    while the message is being sent, the sending process's lease on it (renewed while it lives).
    """

    id: str
    practice_id: str
    application_id: str | None
    login_id: str | None
    user_id: str | None
    sender: str
    recipients: tuple[str, ...]
    document_count: int
    total_bytes: int
    created_at: datetime
    outcome: str | None = None
    detail: dict[str, JsonValue] = field(default_factory=dict)
    finished_at: datetime | None = None


class AccountStore(Protocol):
    """What the JSON API needs from storage besides :class:`~xdr_edge.registry.store.RegistryStore`.

    Mutating methods that change who may do what (applications, ownership, logins, practice names) take the
    :class:`AuditEvent` and write it in the same transaction as the change. Message records are not audited:
    they are a record themselves.
    """

    def add_application(self, application: ApplicationRecord, event: AuditEvent) -> None: ...

    def set_application_password(
        self, application_id: str, password_hash: str, at: datetime, event: AuditEvent
    ) -> bool: ...

    def set_application_active(self, application_id: str, active: bool, event: AuditEvent) -> bool: ...

    def application(self, application_id: str) -> ApplicationRecord | None: ...

    def applications(self) -> list[ApplicationRecord]: ...

    def create_account(
        self, account: AccountRecord, practice: Practice, practice_event: AuditEvent, owner_event: AuditEvent
    ) -> None:
        """Create ``practice`` and record ``account`` as its owner, in one transaction."""
        ...

    def account(self, application_id: str, account_id: str) -> AccountRecord | None: ...

    def account_of_practice(self, practice_id: str) -> AccountRecord | None: ...

    def accounts(self, application_id: str, *, after: str | None, limit: int) -> list[AccountRecord]:
        """The application's accounts ordered by ``account_id``, those after ``after`` (a page)."""
        ...

    def rename_practice(self, practice_id: str, name: str, event: AuditEvent) -> bool: ...

    def save_login(self, login: LoginRecord, event: AuditEvent) -> bool:
        """Create the login, or replace its password, user and state; True when it was created.

        A ``login_id`` that belongs to another practice is refused (``login-taken``)."""
        ...

    def login(self, login_id: str) -> LoginRecord | None: ...

    def logins(self, practice_id: str) -> list[LoginRecord]: ...

    def add_message(self, record: MessageRecord) -> None: ...

    def finish_message(
        self, message_id: str, outcome: str, detail: dict[str, JsonValue], at: datetime
    ) -> None: ...

    def renew_message(self, message_id: str, detail: dict[str, JsonValue]) -> bool:
        """Replace the detail of a message still being sent (the API's lease on it); False once it has an
        outcome (or is unknown)."""
        ...

    def message(self, message_id: str) -> MessageRecord | None: ...


def _application(row: Row) -> ApplicationRecord:
    return ApplicationRecord(
        id=row["id"],
        name=row["name"],
        password_hash=row["password_hash"],
        active=bool(row["active"]),
        created_at=decode_time(row["created_at"]),
        password_changed_at=decode_time(row["password_changed_at"]),
    )


def _account(row: Row) -> AccountRecord:
    return AccountRecord(
        row["application_id"], row["account_id"], row["practice_id"], decode_time(row["created_at"])
    )


def _login(row: Row) -> LoginRecord:
    return LoginRecord(
        login_id=row["login_id"],
        practice_id=row["practice_id"],
        user_id=row["user_id"],
        password_hash=row["password_hash"],
        active=bool(row["active"]),
        created_at=decode_time(row["created_at"]),
        updated_at=decode_time(row["updated_at"]),
    )


def _message(row: Row) -> MessageRecord:
    detail: Any = json.loads(row["detail"]) if row["detail"] else {}
    return MessageRecord(
        id=row["id"],
        practice_id=row["practice_id"],
        application_id=row["application_id"],
        login_id=row["login_id"],
        user_id=row["user_id"],
        sender=row["sender"],
        recipients=tuple(json.loads(row["recipients"])),
        document_count=int(row["document_count"]),
        total_bytes=int(row["total_bytes"]),
        created_at=decode_time(row["created_at"]),
        outcome=row["outcome"],
        detail=detail if isinstance(detail, dict) else {},
        finished_at=decode_optional_time(row["finished_at"]),
    )


class SqlAccountStore(SqlStore):
    """The registry's store with the API's tables: one object serves as both
    :class:`~xdr_edge.registry.store.RegistryStore` (give it to :class:`~xdr_edge.registry.Registry`) and
    :class:`AccountStore`, over the same database (SQLite or PostgreSQL) and the same connection rules.
    Changes that are audited run as ``CHANGE`` transactions (one at a time, as every registry change);
    message records, written for every MessageSend, as ``RECORD`` transactions (concurrently)."""

    # -- applications ----------------------------------------------------------------------------------

    def add_application(self, application: ApplicationRecord, event: AuditEvent) -> None:
        with self.database.transaction(Access.CHANGE) as conn:
            if conn.execute("SELECT 1 FROM api_applications WHERE id = ?", (application.id,)).fetchone():
                raise ConfigurationError(
                    f"application {application.id!r} already exists",
                    code="application-exists",
                    location=application.id,
                )
            conn.execute(
                "INSERT INTO api_applications (id, name, password_hash, active, created_at, "
                "password_changed_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    application.id,
                    application.name,
                    application.password_hash,
                    int(application.active),
                    encode_time(application.created_at),
                    encode_time(application.password_changed_at),
                ),
            )
            write_audit(conn, event)

    def set_application_password(
        self, application_id: str, password_hash: str, at: datetime, event: AuditEvent
    ) -> bool:
        with self.database.transaction(Access.CHANGE) as conn:
            cursor = conn.execute(
                "UPDATE api_applications SET password_hash = ?, password_changed_at = ? WHERE id = ?",
                (password_hash, encode_time(at), application_id),
            )
            if cursor.rowcount == 0:
                return False
            write_audit(conn, event)
            return True

    def set_application_active(self, application_id: str, active: bool, event: AuditEvent) -> bool:
        with self.database.transaction(Access.CHANGE) as conn:
            cursor = conn.execute(
                "UPDATE api_applications SET active = ? WHERE id = ? AND active <> ?",
                (int(active), application_id, int(active)),
            )
            if cursor.rowcount == 0:
                return False
            write_audit(conn, event)
            return True

    def application(self, application_id: str) -> ApplicationRecord | None:
        with self.database.connection() as conn:
            row = conn.execute("SELECT * FROM api_applications WHERE id = ?", (application_id,)).fetchone()
        return None if row is None else _application(row)

    def applications(self) -> list[ApplicationRecord]:
        with self.database.connection() as conn:
            rows = conn.execute("SELECT * FROM api_applications ORDER BY id").fetchall()
        return [_application(row) for row in rows]

    # -- accounts (practice ownership) ---------------------------------------------------------------------

    def create_account(
        self, account: AccountRecord, practice: Practice, practice_event: AuditEvent, owner_event: AuditEvent
    ) -> None:
        with self.database.transaction(Access.CHANGE) as conn:
            if conn.execute("SELECT 1 FROM practices WHERE id = ?", (practice.id,)).fetchone() is not None:
                raise ConfigurationError(
                    f"practice {practice.id!r} already exists", code="practice-exists", location=practice.id
                )
            conn.execute(
                "INSERT INTO practices (id, name, active, created_at) VALUES (?, ?, ?, ?)",
                (practice.id, practice.name, int(practice.active), encode_time(account.created_at)),
            )
            conn.execute(
                "INSERT INTO api_accounts (practice_id, application_id, account_id, created_at) "
                "VALUES (?, ?, ?, ?)",
                (practice.id, account.application_id, account.account_id, encode_time(account.created_at)),
            )
            write_audit(conn, practice_event)
            write_audit(conn, owner_event)

    def account(self, application_id: str, account_id: str) -> AccountRecord | None:
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT * FROM api_accounts WHERE application_id = ? AND account_id = ?",
                (application_id, account_id),
            ).fetchone()
        return None if row is None else _account(row)

    def account_of_practice(self, practice_id: str) -> AccountRecord | None:
        with self.database.connection() as conn:
            row = conn.execute("SELECT * FROM api_accounts WHERE practice_id = ?", (practice_id,)).fetchone()
        return None if row is None else _account(row)

    def accounts(self, application_id: str, *, after: str | None, limit: int) -> list[AccountRecord]:
        with self.database.connection() as conn:
            rows = conn.execute(
                "SELECT * FROM api_accounts WHERE application_id = ? AND account_id > ? "
                "ORDER BY account_id LIMIT ?",
                (application_id, after or "", max(0, limit)),
            ).fetchall()
        return [_account(row) for row in rows]

    def rename_practice(self, practice_id: str, name: str, event: AuditEvent) -> bool:
        with self.database.transaction(Access.CHANGE) as conn:
            cursor = conn.execute(
                "UPDATE practices SET name = ? WHERE id = ? AND name <> ?", (name, practice_id, name)
            )
            if cursor.rowcount == 0:
                return False
            write_audit(conn, event)
            return True

    # -- logins --------------------------------------------------------------------------------------------

    def save_login(self, login: LoginRecord, event: AuditEvent) -> bool:
        with self.database.transaction(Access.CHANGE) as conn:
            row = conn.execute(
                "SELECT practice_id FROM api_logins WHERE login_id = ?", (login.login_id,)
            ).fetchone()
            if row is not None and row["practice_id"] != login.practice_id:
                raise ConfigurationError(
                    f"login {login.login_id!r} belongs to another practice",
                    code="login-taken",
                    location=login.login_id,
                )
            if row is None:
                conn.execute(
                    "INSERT INTO api_logins (login_id, practice_id, user_id, password_hash, active, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        login.login_id,
                        login.practice_id,
                        login.user_id,
                        login.password_hash,
                        int(login.active),
                        encode_time(login.created_at),
                        encode_time(login.updated_at),
                    ),
                )
            else:
                conn.execute(
                    "UPDATE api_logins SET user_id = ?, password_hash = ?, active = ?, updated_at = ? "
                    "WHERE login_id = ?",
                    (
                        login.user_id,
                        login.password_hash,
                        int(login.active),
                        encode_time(login.updated_at),
                        login.login_id,
                    ),
                )
            write_audit(conn, event)
            return row is None

    def login(self, login_id: str) -> LoginRecord | None:
        with self.database.connection() as conn:
            row = conn.execute("SELECT * FROM api_logins WHERE login_id = ?", (login_id,)).fetchone()
        return None if row is None else _login(row)

    def logins(self, practice_id: str) -> list[LoginRecord]:
        with self.database.connection() as conn:
            rows = conn.execute(
                "SELECT * FROM api_logins WHERE practice_id = ? ORDER BY login_id", (practice_id,)
            ).fetchall()
        return [_login(row) for row in rows]

    # -- messages ------------------------------------------------------------------------------------------

    def add_message(self, record: MessageRecord) -> None:
        with self.database.transaction(Access.RECORD) as conn:
            conn.execute(
                "INSERT INTO api_messages (id, practice_id, application_id, login_id, user_id, sender, "
                "recipients, document_count, total_bytes, outcome, detail, created_at, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.practice_id,
                    record.application_id,
                    record.login_id,
                    record.user_id,
                    record.sender,
                    json.dumps(list(record.recipients)),
                    record.document_count,
                    record.total_bytes,
                    record.outcome,
                    json.dumps(record.detail, sort_keys=True) if record.detail else None,
                    encode_time(record.created_at),
                    None if record.finished_at is None else encode_time(record.finished_at),
                ),
            )

    def finish_message(
        self, message_id: str, outcome: str, detail: dict[str, JsonValue], at: datetime
    ) -> None:
        with self.database.transaction(Access.RECORD) as conn:
            conn.execute(
                "UPDATE api_messages SET outcome = ?, detail = ?, finished_at = ? WHERE id = ?",
                (outcome, json.dumps(detail, sort_keys=True), encode_time(at), message_id),
            )

    def renew_message(self, message_id: str, detail: dict[str, JsonValue]) -> bool:
        with self.database.transaction(Access.RECORD) as conn:
            cursor = conn.execute(
                "UPDATE api_messages SET detail = ? WHERE id = ? AND outcome IS NULL",
                (json.dumps(detail, sort_keys=True), message_id),
            )
            return cursor.rowcount > 0

    def message(self, message_id: str) -> MessageRecord | None:
        with self.database.connection() as conn:
            row = conn.execute("SELECT * FROM api_messages WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else _message(row)


class SqliteAccountStore(SqlAccountStore):
    """:class:`SqlAccountStore` on one SQLite file."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000) -> None:
        database = SqliteDatabase(path, busy_timeout_ms=busy_timeout_ms)
        self.path = database.path
        super().__init__(database)


def open_accounts(url: str, *, max_connections: int = 4) -> SqlAccountStore:
    """The registry database a URL names (as :func:`~xdr_edge.registry.open_registry`), with the API's tables.

    The database must exist (``xdr-edge registry init``); opening it brings its schema up to date.
    """
    store = SqlAccountStore(open_database(url, max_connections=max_connections))
    store.ping()  # a missing or uninitialized database fails here, saying how to create it
    return store
