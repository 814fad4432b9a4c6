"""The certificate registry of the receiving side (issue #4 item 1, Direct Edge Protocols IG §1.1, ETT tests 6-9; our practice-binding rule).

Practices (:class:`~xdr_edge.practice.Practice`), their enrolled certificates, address and domain
bindings, trust anchors, CRLs (one per issuing CA name and key) and mapping rules, stored in SQLite by
default (``open_registry(url)`` selects the backend), with every change audited. :meth:`Registry.identify`
and :meth:`Registry.authorize_sender` are the two decisions the receiver makes for each request.
"""

from __future__ import annotations

__all__ = [
    "NOT_ENROLLED",
    "SCHEMA_VERSION",
    "AuditEntry",
    "CertificateRecord",
    "ChainVerdict",
    "CrlRecord",
    "Decision",
    "Identification",
    "MappingKind",
    "MappingRule",
    "Registry",
    "RegistryStore",
    "SqliteStore",
    "TrustAnchor",
    "normalize_fingerprint",
    "open_registry",
    "parse_registry_url",
    "verify_client_certificate",
]

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
from xdr_edge.registry.store import RegistryStore, SqliteStore, parse_registry_url
from xdr_edge.registry.verify import ChainVerdict, verify_client_certificate
