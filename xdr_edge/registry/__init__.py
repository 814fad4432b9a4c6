"""The certificate registry of the receiving side: which practice a client certificate belongs to, and which Direct
addresses that practice may send from (our practice-binding rule, docs/receiver.md).

Practices (:class:`~xdr_edge.practice.Practice`), their enrolled certificates, address and domain
bindings, trust anchors, CRLs (one per issuing CA name and key) and mapping rules, stored in SQLite by
default or in PostgreSQL (``open_registry(url)`` selects the backend), with every change audited.
:meth:`Registry.identify` and :meth:`Registry.authorize_sender` are the two decisions the receiver makes for
each request. The same database holds the inbox index (:mod:`.submissions`), so receivers sharing it agree on
which uniqueIds are stored. Engines: :mod:`.database` (SQLite) and :mod:`.postgres`; the schema and its
migrations: :mod:`.migrations`; registry storage: :mod:`.store` (over :mod:`.practice_tables` and
:mod:`.trust_tables`); chain and CRL checks: :mod:`.verify`.

May import: :mod:`xdr_edge.protocol` and the shared modules; never the sender, the receiver or devtools.
"""

from __future__ import annotations

__all__ = [
    "NOT_ENROLLED",
    "SCHEMA_VERSION",
    "Access",
    "AuditEntry",
    "CertificateRecord",
    "ChainVerdict",
    "ConflictKind",
    "CrlRecord",
    "Database",
    "Decision",
    "Identification",
    "IndexConflict",
    "IndexedDocument",
    "IndexedSubmission",
    "MappingKind",
    "MappingRule",
    "Registry",
    "RegistryStore",
    "SqlStore",
    "SqliteDatabase",
    "SqliteStore",
    "SubmissionIndex",
    "TrustAnchor",
    "is_postgresql_url",
    "normalize_fingerprint",
    "open_database",
    "open_registry",
    "parse_registry_url",
    "verify_client_certificate",
]

from xdr_edge.registry.database import (
    Access,
    Database,
    SqliteDatabase,
    is_postgresql_url,
    open_database,
    parse_registry_url,
)
from xdr_edge.registry.migrations import SCHEMA_VERSION
from xdr_edge.registry.records import (
    AuditEntry,
    CertificateRecord,
    CrlRecord,
    Decision,
    Identification,
    MappingKind,
    MappingRule,
    TrustAnchor,
    normalize_fingerprint,
)
from xdr_edge.registry.registry import NOT_ENROLLED, Registry, open_registry
from xdr_edge.registry.store import RegistryStore, SqliteStore, SqlStore
from xdr_edge.registry.submissions import (
    ConflictKind,
    IndexConflict,
    IndexedDocument,
    IndexedSubmission,
    SubmissionIndex,
)
from xdr_edge.registry.verify import ChainVerdict, verify_client_certificate
