"""Is this submission acceptable metadata? The profile rules as data (:mod:`.rules`) and the checks that run
them and everything else (formats, identifiers, associations, Direct addressing, documents against their
declared hash and size) in :mod:`.checks`. The sender runs :func:`check_outgoing` (:func:`validate`, and no
empty documents) as a pre-flight, the receiver :func:`validate` and :func:`check_documents` after reading the
peer's metadata. Pure; imports only from :mod:`xdr_edge.protocol`.
"""

from __future__ import annotations

__all__ = [
    "ASSOCIATION_LENGTH_RULES",
    "AUTHOR_LENGTH_RULES",
    "CODE_LENGTH_RULES",
    "DOCUMENT_ENTRY_LENGTH_RULES",
    "DOCUMENT_ENTRY_RULES",
    "SUBMISSION_SET_LENGTH_RULES",
    "SUBMISSION_SET_RULES",
    "LengthRule",
    "PresenceRule",
    "Requirement",
    "RimString",
    "check_documents",
    "check_outgoing",
    "raise_for_errors",
    "validate",
]

from xdr_edge.protocol.validate.checks import check_documents, check_outgoing, raise_for_errors, validate
from xdr_edge.protocol.validate.rules import (
    ASSOCIATION_LENGTH_RULES,
    AUTHOR_LENGTH_RULES,
    CODE_LENGTH_RULES,
    DOCUMENT_ENTRY_LENGTH_RULES,
    DOCUMENT_ENTRY_RULES,
    SUBMISSION_SET_LENGTH_RULES,
    SUBMISSION_SET_RULES,
    LengthRule,
    PresenceRule,
    Requirement,
    RimString,
)
