"""The registry's own tables, part two: what a certificate is checked against, trust anchors, CRLs and the mapping
rules that name a practice from a certificate's contents, and the audit log every change writes to.
:class:`TrustTables` is one half of :class:`~.store.SqlStore` (the other is
:class:`~.practice_tables.PracticeTables`); it is used through that class, never alone.
"""

from __future__ import annotations

__all__ = ["TrustTables"]

import json
from datetime import datetime
from typing import Any

from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.registry.database import Access, Database, Row, decode_optional_time, decode_time, encode_time
from xdr_edge.registry.migrations import NO_KEY, write_audit
from xdr_edge.registry.records import (
    AuditEntry,
    AuditEvent,
    CrlRecord,
    JsonValue,
    MappingKind,
    MappingRule,
    TrustAnchor,
)


def _mapping_rule(row: Row) -> MappingRule:
    return MappingRule(row["position"], MappingKind(row["kind"]), row["attribute"], row["issuer_fingerprint"])


def _json(text: str) -> dict[str, JsonValue]:
    value: Any = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


class TrustTables:
    """Trust anchors, CRLs, mapping rules and the audit log over :attr:`database` (the methods of
    :class:`~.store.RegistryStore` about them)."""

    database: Database

    # -- trust anchors --------------------------------------------------------------------------------

    def add_trust_anchor(self, anchor: TrustAnchor, at: datetime, event: AuditEvent) -> bool:
        with self.database.transaction(Access.CHANGE) as conn:
            cursor = conn.execute(
                "INSERT INTO trust_anchors (fingerprint_sha256, subject, pem, added_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (fingerprint_sha256) DO NOTHING",
                (anchor.fingerprint_sha256, anchor.subject, anchor.pem, encode_time(at)),
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

    # -- CRLs -----------------------------------------------------------------------------------------

    def put_crl(self, crl: CrlRecord, at: datetime, event: AuditEvent) -> bool:
        """Keep the newest CRL per (issuer, issuer key id); an older one than what is loaded for that key is
        refused (a replayed CRL must not bring back a revoked certificate)."""
        key_id = NO_KEY if crl.issuer_key_id is None else crl.issuer_key_id
        with self.database.transaction(Access.CHANGE) as conn:
            row = conn.execute(
                "SELECT this_update FROM crls WHERE issuer = ? AND issuer_key_id = ?", (crl.issuer, key_id)
            ).fetchone()
            if row is not None:
                loaded = decode_time(row["this_update"])
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
                    encode_time(crl.this_update),
                    None if crl.next_update is None else encode_time(crl.next_update),
                    crl.der,
                    encode_time(at),
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
                decode_time(row["this_update"]),
                decode_optional_time(row["next_update"]),
                bytes(row["der"]),
                issuer_key_id=None if row["issuer_key_id"] == NO_KEY else row["issuer_key_id"],
            )
            for row in rows
        ]

    # -- mapping rules --------------------------------------------------------------------------------

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
                (kind.value, attribute, issuer_fingerprint, encode_time(at)),
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
                row["id"],
                decode_time(row["at"]),
                row["actor"],
                row["action"],
                row["subject"],
                _json(row["detail"]),
            )
            for row in rows
        ]
