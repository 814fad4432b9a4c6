"""Storage of the certificate registry: the ``RegistryStore`` interface and its SQL implementation.

This is the module of :mod:`xdr_edge.registry` that reads and writes the registry's tables. The SQL is written
once and runs on SQLite and PostgreSQL alike: what differs between them (connections, how a transaction
begins, placeholders, a few DDL words) is :mod:`.database`; the schema and its migrations are
:mod:`.migrations`. It decides nothing about trust (that is :mod:`.verify` and :mod:`.registry`).
Integrity rules that must hold under concurrent writers, "an address belongs to one practice" and "a
certificate is enrolled to one practice", are checked inside the writing transaction (a ``CHANGE``: changes
run one at a time on either engine), and every change writes its audit row in that same transaction, so a
change is never recorded without its audit row or the other way round.

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

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from xdr_edge.practice import Binding, Practice
from xdr_edge.protocol.errors import ConfigurationError, StoreError
from xdr_edge.protocol.model import DirectAddress
from xdr_edge.registry.database import (
    Access,
    Connection,
    Database,
    Row,
    SqliteDatabase,
    is_postgresql_url,
    parse_registry_url,
)
from xdr_edge.registry.migrations import NO_KEY, SCHEMA_VERSION, migrate, schema_version, write_audit
from xdr_edge.registry.records import (
    AuditEntry,
    AuditEvent,
    CertificateRecord,
    CrlRecord,
    JsonValue,
    MappingKind,
    MappingRule,
    TrustAnchor,
)


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

    def remove_binding(self, practice_id: str, binding: Binding, event: AuditEvent) -> bool: ...

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


_INSERT_CERTIFICATE = (
    "INSERT INTO certificates (fingerprint_sha256, practice_id, subject, issuer, serial, not_before, "
    "not_after, pem, enrolled_at, revoked_at, revoked_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _ts(moment: datetime) -> str:
    return moment.isoformat()


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _opt_dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _binding(address: str | None, domain: str | None) -> Binding:
    if address is not None:
        return Binding(address=DirectAddress(address))
    return Binding(domain=domain)


def _binding_columns(binding: Binding) -> tuple[str | None, str | None]:
    return (str(binding.address) if binding.address is not None else None, binding.domain)


def _mapping_rule(row: Row) -> MappingRule:
    return MappingRule(row["position"], MappingKind(row["kind"]), row["attribute"], row["issuer_fingerprint"])


def _certificate(row: Row) -> CertificateRecord:
    return CertificateRecord(
        fingerprint_sha256=row["fingerprint_sha256"],
        practice_id=row["practice_id"],
        subject=row["subject"],
        issuer=row["issuer"],
        serial=row["serial"],
        not_before=_dt(row["not_before"]),
        not_after=_dt(row["not_after"]),
        pem=row["pem"],
        enrolled_at=_dt(row["enrolled_at"]),
        revoked_at=_opt_dt(row["revoked_at"]),
        revoked_reason=row["revoked_reason"],
    )


class SqlStore:
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

    # -- practices ------------------------------------------------------------------------------------

    def add_practice(self, practice: Practice, created_at: datetime, event: AuditEvent) -> None:
        with self.database.transaction(Access.CHANGE) as conn:
            existing = conn.execute("SELECT name FROM practices WHERE id = ?", (practice.id,)).fetchone()
            if existing is not None:
                raise ConfigurationError(
                    f"practice {practice.id!r} already exists (named {existing['name']!r})",
                    code="practice-exists",
                    location=practice.id,
                )
            conn.execute(
                "INSERT INTO practices (id, name, active, created_at) VALUES (?, ?, ?, ?)",
                (practice.id, practice.name, int(practice.active), _ts(created_at)),
            )
            write_audit(conn, event)

    def set_active(self, practice_id: str, active: bool, event: AuditEvent) -> bool:
        with self.database.transaction(Access.CHANGE) as conn:
            row = conn.execute("SELECT active FROM practices WHERE id = ?", (practice_id,)).fetchone()
            if row is None:
                raise ConfigurationError(
                    f"no practice {practice_id!r} in the registry",
                    code="unknown-practice",
                    location=practice_id,
                )
            if bool(row["active"]) == active:
                return False
            conn.execute("UPDATE practices SET active = ? WHERE id = ?", (int(active), practice_id))
            write_audit(conn, event)
            return True

    def _bindings_of(self, conn: Connection, practice_ids: Sequence[str]) -> dict[str, list[Binding]]:
        result: dict[str, list[Binding]] = {pid: [] for pid in practice_ids}
        rows = conn.execute("SELECT practice_id, address, domain FROM bindings ORDER BY id").fetchall()
        for row in rows:
            if row["practice_id"] in result:
                result[row["practice_id"]].append(_binding(row["address"], row["domain"]))
        return result

    def practice(self, practice_id: str) -> Practice | None:
        with self.database.transaction(Access.READ) as conn:
            row = conn.execute(
                "SELECT id, name, active FROM practices WHERE id = ?", (practice_id,)
            ).fetchone()
            if row is None:
                return None
            bindings = conn.execute(
                "SELECT address, domain FROM bindings WHERE practice_id = ? ORDER BY id", (practice_id,)
            ).fetchall()
        return Practice(
            id=row["id"],
            name=row["name"],
            active=bool(row["active"]),
            bindings=tuple(_binding(b["address"], b["domain"]) for b in bindings),
        )

    def practices(self) -> list[Practice]:
        with self.database.transaction(Access.READ) as conn:
            # ordered here, not by the database's collation (PostgreSQL's may differ from SQLite's bytes)
            rows = sorted(conn.all("SELECT id, name, active FROM practices"), key=lambda row: str(row["id"]))
            bindings = self._bindings_of(conn, [row["id"] for row in rows])
        return [
            Practice(
                id=row["id"],
                name=row["name"],
                active=bool(row["active"]),
                bindings=tuple(bindings[row["id"]]),
            )
            for row in rows
        ]

    # -- bindings -----------------------------------------------------------------------------------

    def _binding_conflicts(self, conn: Connection, practice_id: str, binding: Binding) -> list[str]:
        """Bindings of *other* practices that would cover an address this binding covers."""
        if binding.address is not None:
            rows = conn.execute(
                "SELECT practice_id, address, domain FROM bindings WHERE practice_id <> ? "
                "AND (lower(address) = lower(?) OR domain = ?)",
                (practice_id, str(binding.address), binding.address.domain),
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT practice_id, address, domain FROM bindings WHERE practice_id <> ? "
                "AND (domain = ? OR lower(address) LIKE ? ESCAPE '\\')",
                (practice_id, binding.domain, "%@" + _like_escape(binding.domain or "")),
            ).fetchall()
        return [f"{_binding(r['address'], r['domain'])} of practice {r['practice_id']!r}" for r in rows]

    def add_binding(self, practice_id: str, binding: Binding, at: datetime, event: AuditEvent) -> bool:
        address, domain = _binding_columns(binding)
        with self.database.transaction(Access.CHANGE) as conn:
            if conn.execute("SELECT 1 FROM practices WHERE id = ?", (practice_id,)).fetchone() is None:
                raise ConfigurationError(
                    f"no practice {practice_id!r} in the registry",
                    code="unknown-practice",
                    location=practice_id,
                )
            conflicts = self._binding_conflicts(conn, practice_id, binding)
            if conflicts:
                raise ConfigurationError(
                    f"cannot bind {binding} to practice {practice_id!r}: an address belongs to one practice, "
                    f"and it is already covered by {', '.join(conflicts)}",
                    code="binding-conflict",
                    location=str(binding),
                )
            if self._already_bound(conn, practice_id, binding):
                return False
            conn.execute(
                "INSERT INTO bindings (practice_id, address, domain, created_at) VALUES (?, ?, ?, ?)",
                (practice_id, address, domain, _ts(at)),
            )
            write_audit(conn, event)
            return True

    @staticmethod
    def _already_bound(conn: Connection, practice_id: str, binding: Binding) -> bool:
        if binding.address is None:
            row = conn.execute(
                "SELECT 1 FROM bindings WHERE practice_id = ? AND domain = ?", (practice_id, binding.domain)
            ).fetchone()
            return row is not None
        row = conn.execute(
            "SELECT address FROM bindings WHERE practice_id = ? AND lower(address) = lower(?)",
            (practice_id, str(binding.address)),
        ).fetchone()
        if row is None:
            return False
        if row["address"] != str(binding.address):
            raise ConfigurationError(
                f"practice {practice_id!r} already has {row['address']!r}; {str(binding.address)!r} differs "
                "only in the case of its local part, which counts as the same address for ownership",
                code="binding-case-conflict",
                location=str(binding.address),
            )
        return True

    def remove_binding(self, practice_id: str, binding: Binding, event: AuditEvent) -> bool:
        address, domain = _binding_columns(binding)
        with self.database.transaction(Access.CHANGE) as conn:
            if address is not None:
                cursor = conn.execute(
                    "DELETE FROM bindings WHERE practice_id = ? AND address = ?",
                    (practice_id, address),
                )
            else:
                cursor = conn.execute(
                    "DELETE FROM bindings WHERE practice_id = ? AND domain = ?", (practice_id, domain)
                )
            if cursor.rowcount == 0:
                return False
            write_audit(conn, event)
            return True

    def address_owner(self, address: DirectAddress) -> str | None:
        """The practice an exact address binding gives this address to (local part compared exactly)."""
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT practice_id FROM bindings WHERE address = ?", (str(address),)
            ).fetchone()
        return None if row is None else str(row["practice_id"])

    def domain_owner(self, domain: str) -> str | None:
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT practice_id FROM bindings WHERE domain = ?", (domain.lower(),)
            ).fetchone()
        return None if row is None else str(row["practice_id"])

    # -- certificates --------------------------------------------------------------------------------

    def enroll(self, record: CertificateRecord, event: AuditEvent) -> bool:
        with self.database.transaction(Access.CHANGE) as conn:
            if conn.execute("SELECT 1 FROM practices WHERE id = ?", (record.practice_id,)).fetchone() is None:
                raise ConfigurationError(
                    f"no practice {record.practice_id!r} in the registry",
                    code="unknown-practice",
                    location=record.practice_id,
                )
            row = conn.execute(
                "SELECT * FROM certificates WHERE fingerprint_sha256 = ?", (record.fingerprint_sha256,)
            ).fetchone()
            if row is not None:
                return self._check_reenroll(_certificate(row), record)
            conn.execute(
                _INSERT_CERTIFICATE,
                _certificate_values(record),
            )
            write_audit(conn, event)
            return True

    @staticmethod
    def _check_reenroll(existing: CertificateRecord, record: CertificateRecord) -> bool:
        where = f"certificate {record.subject} ({record.fingerprint_sha256})"
        if existing.revoked_at is not None:
            raise ConfigurationError(
                f"{where} was revoked on {existing.revoked_at:%Y-%m-%d} ({existing.revoked_reason}); "
                "a revoked certificate cannot be enrolled again",
                code="certificate-revoked",
                location=record.fingerprint_sha256,
            )
        if existing.practice_id != record.practice_id:
            raise ConfigurationError(
                f"{where} is already enrolled to practice {existing.practice_id!r}",
                code="certificate-enrolled-elsewhere",
                location=record.fingerprint_sha256,
            )
        return False

    def remove_certificate(self, fingerprint: str, event: AuditEvent) -> CertificateRecord | None:
        with self.database.transaction(Access.CHANGE) as conn:
            row = conn.execute(
                "SELECT * FROM certificates WHERE fingerprint_sha256 = ?", (fingerprint,)
            ).fetchone()
            if row is None or row["practice_id"] is None:
                return None
            record = _certificate(row)
            if record.revoked_at is not None:
                raise ConfigurationError(
                    f"certificate {record.subject} ({fingerprint}) was revoked on {record.revoked_at:%Y-%m-%d} "
                    f"({record.revoked_reason}); its record is kept so that it stays refused",
                    location=fingerprint,
                )
            conn.execute("DELETE FROM certificates WHERE fingerprint_sha256 = ?", (fingerprint,))
            write_audit(conn, event)
            return record

    def certificate(self, fingerprint: str) -> CertificateRecord | None:
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT * FROM certificates WHERE fingerprint_sha256 = ?", (fingerprint,)
            ).fetchone()
        return None if row is None else _certificate(row)

    def certificates(self, practice_id: str | None = None) -> list[CertificateRecord]:
        with self.database.connection() as conn:
            if practice_id is None:
                rows = conn.execute(
                    "SELECT * FROM certificates ORDER BY enrolled_at, fingerprint_sha256"
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM certificates WHERE practice_id = ? "
                    "ORDER BY enrolled_at, fingerprint_sha256",
                    (practice_id,),
                ).fetchall()
        return [_certificate(row) for row in rows]

    def revoke(
        self,
        fingerprint: str,
        at: datetime,
        reason: str,
        event: AuditEvent,
        *,
        block: CertificateRecord | None,
    ) -> bool:
        """Mark a certificate revoked; with ``block``, an unknown certificate is recorded as revoked too."""
        with self.database.transaction(Access.CHANGE) as conn:
            row = conn.execute(
                "SELECT revoked_at FROM certificates WHERE fingerprint_sha256 = ?", (fingerprint,)
            ).fetchone()
            if row is None:
                if block is None:
                    raise ConfigurationError(
                        f"no certificate with fingerprint {fingerprint} in the registry; pass the "
                        "certificate itself to block one that was never enrolled",
                        location=fingerprint,
                    )
                conn.execute(
                    _INSERT_CERTIFICATE,
                    _certificate_values(block),
                )
            elif row["revoked_at"] is not None:
                return False
            else:
                conn.execute(
                    "UPDATE certificates SET revoked_at = ?, revoked_reason = ? WHERE fingerprint_sha256 = ?",
                    (_ts(at), reason, fingerprint),
                )
            write_audit(conn, event)
            return True

    # -- trust anchors, CRLs, mapping rules -----------------------------------------------------------

    def add_trust_anchor(self, anchor: TrustAnchor, at: datetime, event: AuditEvent) -> bool:
        with self.database.transaction(Access.CHANGE) as conn:
            cursor = conn.execute(
                "INSERT INTO trust_anchors (fingerprint_sha256, subject, pem, added_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (fingerprint_sha256) DO NOTHING",
                (anchor.fingerprint_sha256, anchor.subject, anchor.pem, _ts(at)),
            )
            if cursor.rowcount == 0:
                return False
            write_audit(conn, event)
            return True

    def remove_trust_anchor(self, fingerprint: str, event: AuditEvent) -> TrustAnchor | None:
        with self.database.transaction(Access.CHANGE) as conn:
            row = conn.execute(
                "SELECT fingerprint_sha256, subject, pem FROM trust_anchors WHERE fingerprint_sha256 = ?",
                (fingerprint,),
            ).fetchone()
            if row is None:
                return None
            rules = [
                str(r["position"])
                for r in conn.all(
                    "SELECT position FROM mapping_rules WHERE issuer_fingerprint = ? ORDER BY position",
                    (fingerprint,),
                )
            ]
            if rules:
                raise ConfigurationError(
                    f"trust anchor {row['subject']} is named by mapping rule(s) {', '.join(rules)}; remove "
                    "them first (registry remove-rule)",
                    location=fingerprint,
                )
            conn.execute("DELETE FROM trust_anchors WHERE fingerprint_sha256 = ?", (fingerprint,))
            write_audit(conn, event)
            return TrustAnchor(row["fingerprint_sha256"], row["subject"], row["pem"])

    def trust_anchors(self) -> list[TrustAnchor]:
        with self.database.connection() as conn:
            rows = conn.execute(
                "SELECT fingerprint_sha256, subject, pem FROM trust_anchors "
                "ORDER BY added_at, fingerprint_sha256"
            ).fetchall()
        return [TrustAnchor(row["fingerprint_sha256"], row["subject"], row["pem"]) for row in rows]

    def put_crl(self, crl: CrlRecord, at: datetime, event: AuditEvent) -> bool:
        """Keep the newest CRL per (issuer, issuer key id); an older one than what is loaded for that key is
        refused (a replayed CRL must not bring back a revoked certificate)."""
        key_id = NO_KEY if crl.issuer_key_id is None else crl.issuer_key_id
        with self.database.transaction(Access.CHANGE) as conn:
            row = conn.execute(
                "SELECT this_update FROM crls WHERE issuer = ? AND issuer_key_id = ?", (crl.issuer, key_id)
            ).fetchone()
            if row is not None:
                loaded = _dt(row["this_update"])
                if crl.this_update < loaded:
                    raise ConfigurationError(
                        f"the CRL of {crl.issuer} ({crl.key_label}) issued {crl.this_update:%Y-%m-%d %H:%M} "
                        f"is older than the one already loaded (issued {loaded:%Y-%m-%d %H:%M}); not replaced",
                        location=crl.issuer,
                    )
            conn.execute(
                "INSERT INTO crls (issuer, issuer_key_id, this_update, next_update, der, loaded_at) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (issuer, issuer_key_id) DO UPDATE SET this_update = excluded.this_update, "
                "next_update = excluded.next_update, der = excluded.der, loaded_at = excluded.loaded_at",
                (
                    crl.issuer,
                    key_id,
                    _ts(crl.this_update),
                    None if crl.next_update is None else _ts(crl.next_update),
                    crl.der,
                    _ts(at),
                ),
            )
            write_audit(conn, event)
            return True

    def crls(self) -> list[CrlRecord]:
        with self.database.connection() as conn:
            rows = conn.execute(
                "SELECT issuer, issuer_key_id, this_update, next_update, der FROM crls "
                "ORDER BY issuer, issuer_key_id"
            ).fetchall()
        return [
            CrlRecord(
                row["issuer"],
                _dt(row["this_update"]),
                _opt_dt(row["next_update"]),
                bytes(row["der"]),
                issuer_key_id=None if row["issuer_key_id"] == NO_KEY else row["issuer_key_id"],
            )
            for row in rows
        ]

    def add_mapping_rule(
        self,
        kind: MappingKind,
        attribute: str | None,
        issuer_fingerprint: str | None,
        at: datetime,
        event: AuditEvent,
    ) -> MappingRule:
        with self.database.transaction(Access.CHANGE) as conn:
            if issuer_fingerprint is not None and (
                conn.execute(
                    "SELECT 1 FROM trust_anchors WHERE fingerprint_sha256 = ?", (issuer_fingerprint,)
                ).fetchone()
                is None
            ):
                raise ConfigurationError(
                    f"no trust anchor with fingerprint {issuer_fingerprint}; add the issuing CA first",
                    location=issuer_fingerprint,
                )
            position = conn.insert(
                "INSERT INTO mapping_rules (kind, attribute, issuer_fingerprint, created_at) "
                "VALUES (?, ?, ?, ?)",
                (kind.value, attribute, issuer_fingerprint, _ts(at)),
                "position",
            )
            detail: dict[str, JsonValue] = {**event.detail, "position": position}
            write_audit(conn, AuditEvent(event.at, event.actor, event.action, event.subject, detail))
            return MappingRule(position, kind, attribute, issuer_fingerprint)

    def remove_mapping_rule(self, position: int, event: AuditEvent) -> MappingRule | None:
        with self.database.transaction(Access.CHANGE) as conn:
            row = conn.execute(
                "SELECT position, kind, attribute, issuer_fingerprint FROM mapping_rules WHERE position = ?",
                (position,),
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM mapping_rules WHERE position = ?", (position,))
            write_audit(conn, event)
            return _mapping_rule(row)

    def mapping_rules(self) -> list[MappingRule]:
        with self.database.connection() as conn:
            rows = conn.execute(
                "SELECT position, kind, attribute, issuer_fingerprint FROM mapping_rules ORDER BY position"
            ).fetchall()
        return [_mapping_rule(row) for row in rows]

    # -- audit ---------------------------------------------------------------------------------------

    def audit_log(self, limit: int) -> list[AuditEntry]:
        """The ``limit`` most recent changes, newest first."""
        with self.database.connection() as conn:
            rows = conn.execute(
                "SELECT id, at, actor, action, subject, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [
            AuditEntry(
                row["id"], _dt(row["at"]), row["actor"], row["action"], row["subject"], _json(row["detail"])
            )
            for row in rows
        ]


class SqliteStore(SqlStore):
    """The registry in one SQLite file, the embedded default: ``SqlStore(SqliteDatabase(path))``."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000) -> None:
        database = SqliteDatabase(path, busy_timeout_ms=busy_timeout_ms)
        self.path = database.path
        super().__init__(database)


def _json(text: str) -> dict[str, JsonValue]:
    value: Any = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _certificate_values(record: CertificateRecord) -> tuple[str | None, ...]:
    return (
        record.fingerprint_sha256,
        record.practice_id,
        record.subject,
        record.issuer,
        record.serial,
        _ts(record.not_before),
        _ts(record.not_after),
        record.pem,
        _ts(record.enrolled_at),
        None if record.revoked_at is None else _ts(record.revoked_at),
        record.revoked_reason,
    )
