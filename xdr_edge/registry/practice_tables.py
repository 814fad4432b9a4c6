"""The registry's own tables, part one: practices, the addresses and domains bound to them, and the certificates
enrolled to them (or revoked). :class:`PracticeTables` is one half of :class:`~.store.SqlStore` (the other is
:class:`~.trust_tables.TrustTables`); it is used through that class, never alone.

Integrity rules that must hold under concurrent writers, "an address belongs to one practice" and "a
certificate is enrolled to one practice", are checked inside the writing transaction (a ``CHANGE``: changes run
one at a time on either engine), and every change writes its audit row in that same transaction.

An address binding is unique whatever the case of its local part (two practices must not own ``Alice@x`` and
``alice@x``), which the schema enforces with a unique index on ``lower(address)``. Every lookup of an address
goes through that index (``lower(address) = lower(?)``) and then compares the exact text where the rule needs
it: a receiver asks who owns an address on every request with a SAN e-mail mapping rule, and ``address = ?``
reads the whole table.
"""

from __future__ import annotations

__all__ = ["PracticeTables"]

from collections.abc import Sequence
from datetime import datetime

from xdr_edge.practice import Binding, Practice
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.protocol.model import DirectAddress
from xdr_edge.registry.database import (
    Access,
    Connection,
    Database,
    Row,
    decode_optional_time,
    decode_time,
    encode_time,
)
from xdr_edge.registry.migrations import write_audit
from xdr_edge.registry.records import AuditEvent, CertificateRecord, JsonValue

_INSERT_CERTIFICATE = (
    "INSERT INTO certificates (fingerprint_sha256, practice_id, subject, issuer, serial, not_before, "
    "not_after, pem, enrolled_at, revoked_at, revoked_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _binding(address: str | None, domain: str | None) -> Binding:
    if address is not None:
        return Binding(address=DirectAddress(address))
    return Binding(domain=domain)


def _binding_columns(binding: Binding) -> tuple[str | None, str | None]:
    return (str(binding.address) if binding.address is not None else None, binding.domain)


def _certificate(row: Row) -> CertificateRecord:
    return CertificateRecord(
        fingerprint_sha256=row["fingerprint_sha256"],
        practice_id=row["practice_id"],
        subject=row["subject"],
        issuer=row["issuer"],
        serial=row["serial"],
        not_before=decode_time(row["not_before"]),
        not_after=decode_time(row["not_after"]),
        pem=row["pem"],
        enrolled_at=decode_time(row["enrolled_at"]),
        revoked_at=decode_optional_time(row["revoked_at"]),
        revoked_reason=row["revoked_reason"],
    )


class PracticeTables:
    """Practices, bindings and certificates over :attr:`database` (the methods of
    :class:`~.store.RegistryStore` about them)."""

    database: Database

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
                (practice.id, practice.name, int(practice.active), encode_time(created_at)),
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
                (practice_id, address, domain, encode_time(at)),
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

    def remove_binding(self, practice_id: str, binding: Binding, event: AuditEvent) -> Binding | None:
        """Remove the practice's binding of this domain, or of this address whatever the case of its local
        part (it is the same address for ownership, as when binding); the binding removed, as it was stored,
        or None. The audit row names what was removed."""
        with self.database.transaction(Access.CHANGE) as conn:
            if binding.address is not None:
                row = conn.one(
                    "SELECT id, address FROM bindings WHERE lower(address) = lower(?) AND practice_id = ?",
                    (str(binding.address), practice_id),
                )
            else:
                row = conn.one(
                    "SELECT id, address FROM bindings WHERE domain = ? AND practice_id = ?",
                    (binding.domain, practice_id),
                )
            if row is None:
                return None
            conn.execute("DELETE FROM bindings WHERE id = ?", (row["id"],))
            removed = binding if row["address"] is None else Binding(address=DirectAddress(row["address"]))
            if removed != binding:
                detail: dict[str, JsonValue] = {
                    **event.detail,
                    "binding": str(removed),
                    "requested": str(binding),
                }
                event = AuditEvent(event.at, event.actor, event.action, event.subject, detail)
            write_audit(conn, event)
            return removed

    def address_owner(self, address: DirectAddress) -> str | None:
        """The practice an exact address binding gives this address to (local part compared exactly).

        Looked up through the unique index on ``lower(address)``, which holds at most one row for any
        spelling of the address; its exact text is compared here."""
        with self.database.connection() as conn:
            row = conn.one(
                "SELECT practice_id, address FROM bindings WHERE lower(address) = lower(?)", (str(address),)
            )
        if row is None or row["address"] != str(address):
            return None
        return str(row["practice_id"])

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
                    (encode_time(at), reason, fingerprint),
                )
            write_audit(conn, event)
            return True


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _certificate_values(record: CertificateRecord) -> tuple[str | None, ...]:
    return (
        record.fingerprint_sha256,
        record.practice_id,
        record.subject,
        record.issuer,
        record.serial,
        encode_time(record.not_before),
        encode_time(record.not_after),
        record.pem,
        encode_time(record.enrolled_at),
        None if record.revoked_at is None else encode_time(record.revoked_at),
        record.revoked_reason,
    )
