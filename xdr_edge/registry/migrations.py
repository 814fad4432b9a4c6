"""The registry database's schema, as migrations: ``MIGRATIONS[n - 1]`` takes a database from version ``n - 1`` to
``n``, in one transaction (:func:`migrate`), on SQLite and PostgreSQL alike. Append new steps; never edit a
released one (databases in the field were made by it). Also the audit row, which every migration data step and
every change writes in its own transaction.

How to add a table or a column (it then works on both engines):

1. Append a tuple of steps to :data:`MIGRATIONS`. A step is portable SQL: ``TEXT`` for strings and for
   timestamps (ISO 8601, UTC), ``INTEGER``/``BIGINT`` for numbers, 0/1 ``INTEGER`` for booleans with a
   ``CHECK``, ``{serial}`` for a generated integer primary key, ``{blob}`` for bytes; a case-insensitive
   uniqueness is a ``CREATE UNIQUE INDEX ... (lower(column))``, not a collation. (The words in braces are
   filled in per engine from :data:`.database.DDL_WORDS`, so a literal brace is written ``{{``.) A step that
   SQL cannot express is a Python callable taking the migrating :class:`.database.Connection`.
2. Write the queries once with ``?`` placeholders in a module of the registry (:mod:`.practice_tables`,
   :mod:`.trust_tables`, :mod:`.submissions`, :mod:`.accounts`, or a new one beside them), inside
   ``database.transaction(Access.CHANGE)`` for an audited change (calling :func:`write_audit` in it) or
   ``Access.READ`` / ``connection()`` for reads; a generated id comes from ``conn.insert(sql, params, column)``.
   Compare text case-insensitively with ``lower(column) = lower(?)`` (SQLite's ``LIKE`` ignores ASCII case,
   PostgreSQL's does not: lower both sides there too). A column indexed by ``lower(column)`` is only found
   through that index by a query on ``lower(column)``: look it up that way, and compare the exact text in
   Python where it matters (``column = ?`` reads the whole table on either engine). A ``SELECT`` whose rows
   a concurrent transaction must not change before this one ends takes ``conn.for_update`` or
   ``conn.for_share`` at its end (PostgreSQL row locks; empty on SQLite, whose writer holds the database).
3. Run the registry test suite: it runs against SQLite and, where PostgreSQL is installed, PostgreSQL.
"""

from __future__ import annotations

__all__ = [
    "MIGRATIONS",
    "NO_KEY",
    "SCHEMA_VERSION",
    "MigrationStep",
    "migrate",
    "schema_version",
    "write_audit",
]

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeAlias

from cryptography import x509

from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.registry.database import Connection, Database
from xdr_edge.registry.records import AuditEvent, JsonValue, MappingKind
from xdr_edge.registry.verify import crl_signer_key_id

_KINDS = ", ".join(f"'{kind.value}'" for kind in MappingKind)

#: One step of a migration: an SQL statement, or a Python data step run on the migrating connection (inside
#: the migration's transaction) for what SQL alone cannot compute.
MigrationStep: TypeAlias = str | Callable[[Connection], None]

#: The key id of a CRL whose issuer is not a trust anchor (see :class:`CrlRecord`). A real value, not NULL:
#: NULLs in a primary key are distinct in SQLite (two rows of one name would both be kept) and not allowed
#: at all in other databases.
NO_KEY = ""

MIGRATION_ACTOR = "xdr-edge schema migration"


def write_audit(conn: Connection, event: AuditEvent) -> None:
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


def _attribute_v1_crls(conn: Connection) -> None:
    """Data step of schema version 2: give each CRL carried over from version 1 the key id of its signer.

    Why a Python step and not a lazy fill later: the key id needs a signature check, which SQL cannot do, and
    doing it here, in the migration's own transaction, means no database is ever at version 2 with rows
    still waiting for their key id: the rest of the code never meets a half-migrated row, and the work is
    done exactly once. Version 1 loaded a CRL of a trust anchor's name only if one of the anchors of that
    name verified it, so the check finds that anchor; a CRL whose name matched no anchor (an intermediate
    CA's) keeps the "not an anchor" key id, as a newly loaded one would. Each re-keyed row is audited.
    (A PostgreSQL database is created at version 3 and later, so there the step finds no rows.)
    """
    anchors: list[x509.Certificate] = []
    for row in conn.all("SELECT pem FROM trust_anchors ORDER BY added_at, fingerprint_sha256"):
        try:
            anchors.append(x509.load_pem_x509_certificate(str(row["pem"]).encode("ascii")))
        except ValueError:
            continue  # unreadable anchors cannot have signed anything we could check
    rows = conn.all("SELECT issuer, der FROM crls WHERE issuer_key_id = ?", (NO_KEY,))
    for row in rows:
        issuer = str(row["issuer"])
        try:
            key_id = crl_signer_key_id(x509.load_der_x509_crl(bytes(row["der"])), anchors)
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
            id {rowid},
            practice_id TEXT NOT NULL REFERENCES practices(id),
            address TEXT {nocase} UNIQUE,
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
            der {blob} NOT NULL,
            loaded_at TEXT NOT NULL
        )""",
        f"""CREATE TABLE mapping_rules (
            position {{serial}},
            kind TEXT NOT NULL CHECK (kind IN ({_KINDS})),
            attribute TEXT,
            issuer_fingerprint TEXT REFERENCES trust_anchors(fingerprint_sha256),
            created_at TEXT NOT NULL,
            CHECK ((kind = 'subject-attribute') = (attribute IS NOT NULL))
        )""",
        """CREATE TABLE audit (
            id {serial},
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
            der {blob} NOT NULL,
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
    # the API. Standard SQL only (a server database runs the same statements). total_bytes: {bigint} renders as
    # this step's released SQLite text (INTEGER, 64-bit there) and as BIGINT on PostgreSQL (INTEGER has 32 bits).
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
            total_bytes {bigint} NOT NULL,
            outcome TEXT,
            detail TEXT,
            created_at TEXT NOT NULL,
            finished_at TEXT
        )""",
        "CREATE INDEX api_messages_practice ON api_messages(practice_id, created_at)",
    ),
    # Version 4: one schema on SQLite and PostgreSQL, and the inbox index in the registry database.
    # - bindings: "an address is unique whatever the case of its letters" becomes a unique index on
    #   lower(address). The NOCASE collation of version 1 exists only in SQLite, and it made every comparison
    #   of the column case-insensitive, so an exact comparison needed SQLite-only syntax. Rebuilt (SQLite cannot
    #   change a column's collation in place), rows copied in their order.
    # - inbox_submissions, inbox_documents: the SubmissionSet and DocumentEntry uniqueIds stored by every
    #   receiver sharing this database, with the practice that sent each (xdr_edge.registry.submissions).
    (
        """CREATE TABLE bindings_v4 (
            id {rowid},
            practice_id TEXT NOT NULL REFERENCES practices(id),
            address TEXT,
            domain TEXT UNIQUE,
            created_at TEXT NOT NULL,
            CHECK ((address IS NULL) <> (domain IS NULL))
        )""",
        "INSERT INTO bindings_v4 (practice_id, address, domain, created_at) "
        "SELECT practice_id, address, domain, created_at FROM bindings ORDER BY id",
        "DROP TABLE bindings",
        "ALTER TABLE bindings_v4 RENAME TO bindings",
        "CREATE UNIQUE INDEX bindings_address ON bindings (lower(address))",
        "CREATE INDEX bindings_practice ON bindings (practice_id)",
        # path: the submission's directory relative to the inbox root of `receiver` (one shared inbox, or each
        # receiver's own); staged_as: the name of its staging directory in that receiver's working area, which
        # is how that receiver's start-up recovery finds a submission recorded but not yet moved into place.
        """CREATE TABLE inbox_submissions (
            unique_id TEXT PRIMARY KEY,
            practice_id TEXT,
            receiver TEXT NOT NULL,
            staged_as TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            stored_at TEXT NOT NULL
        )""",
        """CREATE TABLE inbox_documents (
            unique_id TEXT PRIMARY KEY,
            sha1 TEXT NOT NULL,
            size BIGINT NOT NULL,
            practice_id TEXT,
            submission_id TEXT NOT NULL REFERENCES inbox_submissions(unique_id) ON DELETE CASCADE
        )""",
        "CREATE INDEX inbox_documents_submission ON inbox_documents (submission_id)",
    ),
    # Version 5: which stored submissions carry each DocumentEntry uniqueId. A document row belongs to the
    # submission that recorded it first, but a later submission may register the same document again (the
    # same bytes): undoing the first one (SubmissionIndex.forget) must then hand the row to a submission still
    # stored instead of deleting it with the first one, or the document would leave the index while its bytes
    # stay in an inbox, and another practice could then claim its uniqueId with other bytes. Rows recorded
    # before this version only know their first submission.
    (
        """CREATE TABLE inbox_submission_documents (
            submission_id TEXT NOT NULL REFERENCES inbox_submissions(unique_id) ON DELETE CASCADE,
            document_id TEXT NOT NULL REFERENCES inbox_documents(unique_id) ON DELETE CASCADE,
            PRIMARY KEY (submission_id, document_id)
        )""",
        "CREATE INDEX inbox_submission_documents_document ON inbox_submission_documents (document_id)",
        "INSERT INTO inbox_submission_documents (submission_id, document_id) "
        "SELECT submission_id, unique_id FROM inbox_documents",
    ),
)


SCHEMA_VERSION = len(MIGRATIONS)

#: The tables the migrations create: in a shared (server) database, only these mean "someone else's registry".
_OWN_TABLES = frozenset(
    {
        "schema_version",
        "practices",
        "certificates",
        "bindings",
        "trust_anchors",
        "crls",
        "mapping_rules",
        "audit",
        "api_applications",
        "api_accounts",
        "api_logins",
        "api_messages",
        "inbox_submissions",
        "inbox_documents",
        "inbox_submission_documents",
    }
)


def _current_version(database: Database, conn: Connection) -> int:
    tables = database.table_names(conn)
    if "schema_version" not in tables:
        foreign = tables & _OWN_TABLES if database.shared else tables
        if foreign:
            raise ConfigurationError(
                f"{database.location} is a database but not an xdr-edge registry: it has tables "
                f"({', '.join(sorted(foreign))}) and no schema_version",
                location=database.location,
            )
        return 0
    row = conn.one("SELECT version FROM schema_version WHERE id = 1")
    version = int(row["version"]) if row is not None else 0
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"registry database {database.location} has schema version {version}, newer than the "
            f"{SCHEMA_VERSION} this xdr-edge knows; upgrade xdr-edge (it will not downgrade or misread "
            "the database)",
            location=database.location,
        )
    return version


def schema_version(database: Database) -> int:
    """The database's schema version (0: no registry yet)."""
    with database.connection() as conn:
        return _current_version(database, conn)


def migrate(database: Database, *, create: bool = False) -> bool:
    """Bring the schema to :data:`SCHEMA_VERSION` in one transaction; True when anything was applied.

    Safe when several processes open the database at once (receivers of a cluster starting together): the
    migration is a ``CHANGE`` transaction, so they run one after the other and the later ones find the
    schema current. ``create`` allows an SQLite file that does not exist yet (``registry init``).
    """
    if create:
        database.prepare()
    with database.schema_transaction(create=create) as conn:
        current = _current_version(database, conn)
        for steps in MIGRATIONS[current:]:
            for step in steps:
                if isinstance(step, str):
                    conn.execute(database.render(step))
                else:
                    step(conn)
        if current < SCHEMA_VERSION:
            conn.execute(
                "INSERT INTO schema_version (id, version) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                (SCHEMA_VERSION,),
            )
    return current < SCHEMA_VERSION
