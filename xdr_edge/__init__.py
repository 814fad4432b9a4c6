"""xdr-edge: an XDR/SOAP Direct edge connector (IHE ITI-41 over mutual TLS), sender and receiver.

The public API is re-exported here; submodules hold the details:
:mod:`~xdr_edge.model` (typed submission), :mod:`~xdr_edge.compose` (defaults), :mod:`~xdr_edge.validate`,
:mod:`~xdr_edge.wire` (whole messages), :mod:`~xdr_edge.client` (sending), :mod:`~xdr_edge.registry` and
:mod:`~xdr_edge.receiver` (receiving), :mod:`~xdr_edge.conformance`.

Re-exports load on first use (PEP 562), so that importing one submodule (``xdr_edge.mtom``) does not pull in
TLS, zeep and the client: a benchmark child process or a hook stays small.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from xdr_edge._version import __version__

if TYPE_CHECKING:
    from xdr_edge.client import (
        Outcome,
        RetryPolicy,
        SendResult,
        XdrClient,
    )
    from xdr_edge.compose import (
        XdsDefaults,
        compose,
    )
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
    from xdr_edge.findings import (
        Finding,
        Severity,
    )
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
    from xdr_edge.practice import (
        Binding,
        ClientCredential,
        Practice,
    )
    from xdr_edge.validate import (
        check_documents,
        validate,
    )
    from xdr_edge.wire import (
        build_request,
        parse_request,
        parse_response,
    )

_EXPORTS: dict[str, str] = {
    "Outcome": "xdr_edge.client",
    "RetryPolicy": "xdr_edge.client",
    "SendResult": "xdr_edge.client",
    "XdrClient": "xdr_edge.client",
    "XdsDefaults": "xdr_edge.compose",
    "compose": "xdr_edge.compose",
    "CertificateError": "xdr_edge.errors",
    "ConfigurationError": "xdr_edge.errors",
    "LimitExceeded": "xdr_edge.errors",
    "LocalProtocolError": "xdr_edge.errors",
    "NotBound": "xdr_edge.errors",
    "RemoteProtocolError": "xdr_edge.errors",
    "TransportError": "xdr_edge.errors",
    "ValidationFailed": "xdr_edge.errors",
    "XdrError": "xdr_edge.errors",
    "Finding": "xdr_edge.findings",
    "Severity": "xdr_edge.findings",
    "Association": "xdr_edge.model",
    "Author": "xdr_edge.model",
    "Code": "xdr_edge.model",
    "DirectAddress": "xdr_edge.model",
    "Document": "xdr_edge.model",
    "DocumentEntry": "xdr_edge.model",
    "Dtm": "xdr_edge.model",
    "MetadataLevel": "xdr_edge.model",
    "Organization": "xdr_edge.model",
    "Patient": "xdr_edge.model",
    "Person": "xdr_edge.model",
    "Recipient": "xdr_edge.model",
    "Submission": "xdr_edge.model",
    "SubmissionSet": "xdr_edge.model",
    "Telecom": "xdr_edge.model",
    "Binding": "xdr_edge.practice",
    "ClientCredential": "xdr_edge.practice",
    "Practice": "xdr_edge.practice",
    "check_documents": "xdr_edge.validate",
    "validate": "xdr_edge.validate",
    "build_request": "xdr_edge.wire",
    "parse_request": "xdr_edge.wire",
    "parse_response": "xdr_edge.wire",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xdr_edge' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
