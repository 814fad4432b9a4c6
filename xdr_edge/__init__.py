"""xdr-edge: an XDR/SOAP Direct edge connector (IHE ITI-41 over mutual TLS), sender and receiver.

The public API is re-exported here; submodules hold the details:
:mod:`~xdr_edge.model` (typed submission), :mod:`~xdr_edge.compose` (defaults), :mod:`~xdr_edge.validate`,
:mod:`~xdr_edge.wire` (whole messages), :mod:`~xdr_edge.client` (sending), :mod:`~xdr_edge.registry` and
:mod:`~xdr_edge.receiver` (receiving), :mod:`~xdr_edge.conformance`.
"""

from __future__ import annotations

from xdr_edge._version import __version__
from xdr_edge.client import Outcome, RetryPolicy, SendResult, XdrClient
from xdr_edge.compose import XdsDefaults, compose
from xdr_edge.errors import (
    CertificateError,
    ConfigurationError,
    LimitExceeded,
    LocalProtocolError,
    NotBound,
    RemoteProtocolError,
    TransportError,
    ValidationFailed,
    XdrError,
)
from xdr_edge.findings import Finding, Severity
from xdr_edge.model import (
    Association,
    Author,
    Code,
    DirectAddress,
    Document,
    DocumentEntry,
    Dtm,
    MetadataLevel,
    Organization,
    Patient,
    Person,
    Recipient,
    Submission,
    SubmissionSet,
    Telecom,
)
from xdr_edge.practice import Binding, ClientCredential, Practice
from xdr_edge.validate import check_documents, validate
from xdr_edge.wire import build_request, parse_request, parse_response

__all__ = [
    "Association",
    "Author",
    "Binding",
    "CertificateError",
    "ClientCredential",
    "Code",
    "ConfigurationError",
    "DirectAddress",
    "Document",
    "DocumentEntry",
    "Dtm",
    "Finding",
    "LimitExceeded",
    "LocalProtocolError",
    "MetadataLevel",
    "NotBound",
    "Organization",
    "Outcome",
    "Patient",
    "Person",
    "Practice",
    "Recipient",
    "RemoteProtocolError",
    "RetryPolicy",
    "SendResult",
    "Severity",
    "Submission",
    "SubmissionSet",
    "Telecom",
    "TransportError",
    "ValidationFailed",
    "XdrClient",
    "XdrError",
    "XdsDefaults",
    "__version__",
    "build_request",
    "check_documents",
    "compose",
    "parse_request",
    "parse_response",
    "validate",
]
