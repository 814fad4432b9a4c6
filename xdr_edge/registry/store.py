"""Storage of the certificate registry: the ``RegistryStore`` interface and its SQL implementation.

This is the module of :mod:`xdr_edge.registry` that reads and writes the registry's tables. The SQL is written
once and runs on SQLite and PostgreSQL alike: what differs between them (connections, how a transaction
begins, placeholders, a few DDL words) is :mod:`.database`; the schema and its migrations are
:mod:`.migrations`. It decides nothing about trust (that is :mod:`.verify` and :mod:`.registry`).
:class:`SqlStore` is assembled from two halves, one per kind of table: who is who (practices, their bindings
and certificates: :mod:`.practice_tables`) and what certificates are checked against (trust anchors, CRLs,
mapping rules, and the audit log: :mod:`.trust_tables`); this module opens, migrates and checks the database.
Every change writes its audit row in the transaction that makes it, so a change is never recorded without
its audit row or the other way round.

Nothing read is kept between calls: every decision reads the database afresh, so a change made by any process
(the CLI, another receiver of a cluster) counts from the next request on. A cache added later must be
invalidated by something the database itself says changed, never by time alone.
"""

from __future__ import annotations

__all__ = [
    "RegistryStore",
    "SqlStore",
    "SqliteStore",
    "is_postgresql_url",
    "parse_registry_url",
]

from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Protocol

from xdr_edge.practice import Binding, Practice
from xdr_edge.protocol.errors import StoreError
from xdr_edge.protocol.model import DirectAddress
from xdr_edge.registry.database import (
    Access,
    Database,
    SqliteDatabase,
    is_postgresql_url,
    parse_registry_url,
)
from xdr_edge.registry.migrations import SCHEMA_VERSION, migrate, schema_version, write_audit
from xdr_edge.registry.practice_tables import PracticeTables
from xdr_edge.registry.records import (
    AuditEntry,
    AuditEvent,
    CertificateRecord,
    CrlRecord,
    MappingKind,
    MappingRule,
    TrustAnchor,
)
from xdr_edge.registry.trust_tables import TrustTables


class RegistryStore(Protocol):
    """What :class:`~xdr_edge.registry.Registry` needs from storage; a server database implements this too.

    Every mutating method takes the :class:`AuditEvent` describing the change and writes it atomically with
    the change. Methods that find nothing to change return ``False`` (or ``None``) and write no audit row.
    """

    @property
    def location(self) -> str: ...

    def reading(self) -> AbstractContextManager[None]:
        """A block whose reads (on this thread) share one consistent snapshot; no writes inside it."""
        ...

    def initialize(self, event: AuditEvent) -> bool: ...

    def ping(self) -> None:
        """Raise :class:`StoreError` unless the database answers with the schema this code knows."""
        ...

    def close(self) -> None: ...

    def add_practice(self, practice: Practice, created_at: datetime, event: AuditEvent) -> None: ...

    def set_active(self, practice_id: str, active: bool, event: AuditEvent) -> bool: ...

    def practice(self, practice_id: str) -> Practice | None: ...

    def practices(self) -> list[Practice]: ...

    def add_binding(self, practice_id: str, binding: Binding, at: datetime, event: AuditEvent) -> bool: ...

    def remove_binding(self, practice_id: str, binding: Binding, event: AuditEvent) -> Binding | None:
        """Remove a binding (an address whatever the case of its local part); the one removed, or None."""
        ...

    def address_owner(self, address: DirectAddress) -> str | None: ...

    def domain_owner(self, domain: str) -> str | None: ...

    def enroll(self, record: CertificateRecord, event: AuditEvent) -> bool: ...

    def remove_certificate(self, fingerprint: str, event: AuditEvent) -> CertificateRecord | None:
        """Remove an enrolled, unrevoked certificate; None when there is none (a revoked one is refused)."""
        ...

    def certificate(self, fingerprint: str) -> CertificateRecord | None: ...

    def certificates(self, practice_id: str | None = None) -> list[CertificateRecord]: ...

    def revoke(
        self,
        fingerprint: str,
        at: datetime,
        reason: str,
        event: AuditEvent,
        *,
        block: CertificateRecord | None,
    ) -> bool: ...

    def add_trust_anchor(self, anchor: TrustAnchor, at: datetime, event: AuditEvent) -> bool: ...

    def remove_trust_anchor(self, fingerprint: str, event: AuditEvent) -> TrustAnchor | None:
        """Remove an anchor; None when there is none. Refused while a mapping rule is limited to it."""
        ...

    def trust_anchors(self) -> list[TrustAnchor]: ...

    def put_crl(self, crl: CrlRecord, at: datetime, event: AuditEvent) -> bool:
        """Keep ``crl`` per (``issuer``, ``issuer_key_id``); refuse one older than what that key has."""
        ...

    def crls(self) -> list[CrlRecord]: ...

    def add_mapping_rule(
        self,
        kind: MappingKind,
        attribute: str | None,
        issuer_fingerprint: str | None,
        at: datetime,
        event: AuditEvent,
    ) -> MappingRule: ...

    def remove_mapping_rule(self, position: int, event: AuditEvent) -> MappingRule | None: ...

    def mapping_rules(self) -> list[MappingRule]: ...

    def audit_log(self, limit: int) -> list[AuditEntry]: ...


class SqlStore(PracticeTables, TrustTables):
    """The :class:`RegistryStore` over a :class:`~.database.Database` (SQLite or PostgreSQL); schema migrated
    when opened.

    Opening an SQLite file that does not exist yet is allowed (so ``registry init`` can create it); every
    other operation on a missing file, or on a PostgreSQL database without a registry, says how to create it.
    A database made by a newer xdr-edge is refused rather than misread.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        if database.exists() and schema_version(database) > 0:
            migrate(database)

    @property
    def location(self) -> str:
        return self.database.location

    def reading(self) -> AbstractContextManager[None]:
        """Serve every read of this thread from one connection and one snapshot until the block ends
        (:meth:`.database.Database.reading`)."""
        return self.database.reading()

    def close(self) -> None:
        self.database.close()

    def ping(self) -> None:
        version = self.database.ping()
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"registry database {self.location} has schema version {version}, this xdr-edge uses "
                f"{SCHEMA_VERSION}",
                location=self.location,
            )

    def schema_version(self) -> int:
        return schema_version(self.database)

    def initialize(self, event: AuditEvent) -> bool:
        created = migrate(self.database, create=True)
        if created:
            with self.database.transaction(Access.CHANGE) as conn:
                write_audit(conn, event)
        return created


class SqliteStore(SqlStore):
    """The registry in one SQLite file, the embedded default: ``SqlStore(SqliteDatabase(path))``."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000) -> None:
        database = SqliteDatabase(path, busy_timeout_ms=busy_timeout_ms)
        self.path = database.path
        super().__init__(database)
