"""The registry's SQLite schema, as migrations: ``MIGRATIONS[n - 1]`` takes a database from version ``n - 1`` to
``n``, in one transaction (:meth:`.store.SqliteStore.migrate`). Append new steps; never edit a released one
(databases in the field were made by it). Also the audit row, which every migration data step and every
change writes in its own transaction.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "NO_KEY", "SCHEMA_VERSION", "MigrationStep", "write_audit"]

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeAlias

from cryptography import x509

from xdr_edge.registry.records import AuditEvent, JsonValue, MappingKind
from xdr_edge.registry.verify import crl_signer_key_id

_KINDS = ", ".join(f"'{kind.value}'" for kind in MappingKind)

#: One step of a migration: an SQL statement, or a Python data step run on the migrating connection (inside
#: the migration's transaction) for what SQL alone cannot compute.
MigrationStep: TypeAlias = str | Callable[[sqlite3.Connection], None]

#: The key id of a CRL whose issuer is not a trust anchor (see :class:`CrlRecord`). A real value, not NULL:
#: NULLs in a primary key are distinct in SQLite (two rows of one name would both be kept) and not allowed
#: at all in other databases.
NO_KEY = ""

MIGRATION_ACTOR = "xdr-edge schema migration"


def write_audit(conn: sqlite3.Connection, event: AuditEvent) -> None:
    conn.execute(
        "INSERT INTO audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
        (
            event.at.isoformat(),  # the same text as every other timestamp column
            event.actor,
            event.action,
            event.subject,
            json.dumps(dict(event.detail), sort_keys=True),
        ),
    )


def _attribute_v1_crls(conn: sqlite3.Connection) -> None:
    """Data step of schema version 2: give each CRL carried over from version 1 the key id of its signer.

    Why a Python step and not a lazy fill later: the key id needs a signature check, which SQL cannot do, and
    doing it here, in the migration's own transaction, means no database is ever at version 2 with rows
    still waiting for their key id: the rest of the code never meets a half-migrated row, and the work is
    done exactly once. Version 1 loaded a CRL of a trust anchor's name only if one of the anchors of that
    name verified it, so the check finds that anchor; a CRL whose name matched no anchor (an intermediate
    CA's) keeps the "not an anchor" key id, as a newly loaded one would. Each re-keyed row is audited.
    A server-database store migrating its own schema runs the same check (:func:`.verify.crl_signer_key_id`);
    the :class:`RegistryStore` interface itself only ever sees :class:`CrlRecord` values with the key id set.
    """
    anchors: list[x509.Certificate] = []
    for row in conn.execute("SELECT pem FROM trust_anchors ORDER BY added_at, fingerprint_sha256"):
        try:
            anchors.append(x509.load_pem_x509_certificate(str(row[0]).encode("ascii")))
        except ValueError:
            continue  # unreadable anchors cannot have signed anything we could check
    rows = conn.execute("SELECT issuer, der FROM crls WHERE issuer_key_id = ?", (NO_KEY,)).fetchall()
    for issuer, der in rows:
        try:
            key_id = crl_signer_key_id(x509.load_der_x509_crl(bytes(der)), anchors)
        except ValueError:
            key_id = None
        if key_id is None:
            continue
        conn.execute(
            "UPDATE crls SET issuer_key_id = ? WHERE issuer = ? AND issuer_key_id = ?",
            (key_id, issuer, NO_KEY),
        )
        detail: dict[str, JsonValue] = {"issuer_key_id": key_id, "schema_version": 2}
        write_audit(conn, AuditEvent(datetime.now(UTC), MIGRATION_ACTOR, "crl.migrate", issuer, detail))


#: Schema migrations, in order: ``MIGRATIONS[n - 1]`` takes a database from version ``n - 1`` to ``n``. Append
#: new steps; never edit a released one (databases in the field were made by it).
MIGRATIONS: tuple[tuple[MigrationStep, ...], ...] = (
    (
        """CREATE TABLE schema_version (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL
        )""",
        """CREATE TABLE practices (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE certificates (
            fingerprint_sha256 TEXT PRIMARY KEY,
            practice_id TEXT REFERENCES practices(id),
            subject TEXT NOT NULL,
            issuer TEXT NOT NULL,
            serial TEXT NOT NULL,
            not_before TEXT NOT NULL,
            not_after TEXT NOT NULL,
            pem TEXT NOT NULL,
            enrolled_at TEXT NOT NULL,
            revoked_at TEXT,
            revoked_reason TEXT
        )""",
        "CREATE INDEX certificates_practice ON certificates(practice_id)",
        # address is unique case-insensitively: two practices must not own "Alice@x" and "alice@x", whatever
        # the receiving domain does with local-part case (our practice-binding rule).
        """CREATE TABLE bindings (
            id INTEGER PRIMARY KEY,
            practice_id TEXT NOT NULL REFERENCES practices(id),
            address TEXT COLLATE NOCASE UNIQUE,
            domain TEXT UNIQUE,
            created_at TEXT NOT NULL,
            CHECK ((address IS NULL) <> (domain IS NULL))
        )""",
        "CREATE INDEX bindings_practice ON bindings(practice_id)",
        """CREATE TABLE trust_anchors (
            fingerprint_sha256 TEXT PRIMARY KEY,
            subject TEXT NOT NULL,
            pem TEXT NOT NULL,
            added_at TEXT NOT NULL
        )""",
        """CREATE TABLE crls (
            issuer TEXT PRIMARY KEY,
            this_update TEXT NOT NULL,
            next_update TEXT,
            der BLOB NOT NULL,
            loaded_at TEXT NOT NULL
        )""",
        f"""CREATE TABLE mapping_rules (
            position INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ({_KINDS})),
            attribute TEXT,
            issuer_fingerprint TEXT REFERENCES trust_anchors(fingerprint_sha256),
            created_at TEXT NOT NULL,
            CHECK ((kind = 'subject-attribute') = (attribute IS NOT NULL))
        )""",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            subject TEXT NOT NULL,
            detail TEXT NOT NULL
        )""",
    ),
    # Version 2: CRLs per (issuer name, issuer key id) instead of per name, so that two trusted CAs of one
    # name (a CA re-keyed under its old name, both anchors kept during the rollover) do not replace each
    # other's CRL. SQLite cannot change a primary key in place: the table is rebuilt, rows copied with the
    # placeholder key id, then the data step fills in the key id of the anchor that signed each.
    (
        """CREATE TABLE crls_v2 (
            issuer TEXT NOT NULL,
            issuer_key_id TEXT NOT NULL DEFAULT '',
            this_update TEXT NOT NULL,
            next_update TEXT,
            der BLOB NOT NULL,
            loaded_at TEXT NOT NULL,
            PRIMARY KEY (issuer, issuer_key_id)
        )""",
        "INSERT INTO crls_v2 (issuer, issuer_key_id, this_update, next_update, der, loaded_at) "
        "SELECT issuer, '', this_update, next_update, der, loaded_at FROM crls",
        "DROP TABLE crls",
        "ALTER TABLE crls_v2 RENAME TO crls",
        _attribute_v1_crls,
    ),
    # Version 3: the JSON API's data (xdr_edge.api), beside the registry it acts on. Integrators' applications
    # and their passwords (slow salted hashes only), which application owns which practice under which of its
    # own keys (accountId), individual logins of one practice, and the record of every message sent through
    # the API. Standard SQL only (a server database runs the same statements).
    (
        """CREATE TABLE api_applications (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
            created_at TEXT NOT NULL,
            password_changed_at TEXT NOT NULL
        )""",
        """CREATE TABLE api_accounts (
            practice_id TEXT PRIMARY KEY REFERENCES practices(id),
            application_id TEXT NOT NULL REFERENCES api_applications(id),
            account_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (application_id, account_id)
        )""",
        """CREATE TABLE api_logins (
            login_id TEXT PRIMARY KEY,
            practice_id TEXT NOT NULL REFERENCES practices(id),
            user_id TEXT,
            password_hash TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "CREATE INDEX api_logins_practice ON api_logins(practice_id)",
        """CREATE TABLE api_messages (
            id TEXT PRIMARY KEY,
            practice_id TEXT NOT NULL REFERENCES practices(id),
            application_id TEXT,
            login_id TEXT,
            user_id TEXT,
            sender TEXT NOT NULL,
            recipients TEXT NOT NULL,
            document_count INTEGER NOT NULL,
            total_bytes INTEGER NOT NULL,
            outcome TEXT,
            detail TEXT,
            created_at TEXT NOT NULL,
            finished_at TEXT
        )""",
        "CREATE INDEX api_messages_practice ON api_messages(practice_id, created_at)",
    ),
)


SCHEMA_VERSION = len(MIGRATIONS)
