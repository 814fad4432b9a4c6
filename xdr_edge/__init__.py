"""xdr-edge: an XDR/SOAP Direct edge connector (IHE ITI-41 over mutual TLS), sender and receiver.

The public API is re-exported here. The parts: :mod:`xdr_edge.protocol` (the pure core: typed submission,
metadata, SOAP, MTOM, validation, whole messages), :mod:`xdr_edge.sender` (sending), :mod:`xdr_edge.receiver` and
:mod:`xdr_edge.registry` (receiving), :mod:`xdr_edge.conformance`, :mod:`xdr_edge.devtools`, :mod:`xdr_edge.cli`.

Re-exports load on first use (PEP 562), so that importing one module (``xdr_edge.protocol.mtom``) does not pull in
TLS, zeep and the client: a benchmark child process or a hook stays small.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from xdr_edge._version import __version__

if TYPE_CHECKING:
    from xdr_edge.practice import (
        Binding,
        ClientCredential,
        Practice,
    )
    from xdr_edge.protocol.classify import Outcome
    from xdr_edge.protocol.compose import (
        XdsDefaults,
        compose,
    )
    from xdr_edge.protocol.errors import (
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
    from xdr_edge.protocol.findings import (
        Finding,
        Severity,
    )
    from xdr_edge.protocol.model import (
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
    from xdr_edge.protocol.validate import (
        check_documents,
        validate,
    )
    from xdr_edge.protocol.wire import (
        build_request,
        parse_request,
        parse_response,
    )
    from xdr_edge.sender.client import (
        RetryPolicy,
        SendResult,
        XdrClient,
    )
    from xdr_edge.sender.config import SenderConfig, load_sender_config

_EXPORTS: dict[str, str] = {
    "Outcome": "xdr_edge.protocol.classify",
    "RetryPolicy": "xdr_edge.sender.client",
    "SendResult": "xdr_edge.sender.client",
    "XdrClient": "xdr_edge.sender.client",
    "SenderConfig": "xdr_edge.sender.config",
    "load_sender_config": "xdr_edge.sender.config",
    "XdsDefaults": "xdr_edge.protocol.compose",
    "compose": "xdr_edge.protocol.compose",
    "CertificateError": "xdr_edge.protocol.errors",
    "ConfigurationError": "xdr_edge.protocol.errors",
    "LimitExceeded": "xdr_edge.protocol.errors",
    "LocalProtocolError": "xdr_edge.protocol.errors",
    "NotBound": "xdr_edge.protocol.errors",
    "RemoteProtocolError": "xdr_edge.protocol.errors",
    "TransportError": "xdr_edge.protocol.errors",
    "ValidationFailed": "xdr_edge.protocol.errors",
    "XdrError": "xdr_edge.protocol.errors",
    "Finding": "xdr_edge.protocol.findings",
    "Severity": "xdr_edge.protocol.findings",
    "Association": "xdr_edge.protocol.model",
    "Author": "xdr_edge.protocol.model",
    "Code": "xdr_edge.protocol.model",
    "DirectAddress": "xdr_edge.protocol.model",
    "Document": "xdr_edge.protocol.model",
    "DocumentEntry": "xdr_edge.protocol.model",
    "Dtm": "xdr_edge.protocol.model",
    "MetadataLevel": "xdr_edge.protocol.model",
    "Organization": "xdr_edge.protocol.model",
    "Patient": "xdr_edge.protocol.model",
    "Person": "xdr_edge.protocol.model",
    "Recipient": "xdr_edge.protocol.model",
    "Submission": "xdr_edge.protocol.model",
    "SubmissionSet": "xdr_edge.protocol.model",
    "Telecom": "xdr_edge.protocol.model",
    "Binding": "xdr_edge.practice",
    "ClientCredential": "xdr_edge.practice",
    "Practice": "xdr_edge.practice",
    "check_documents": "xdr_edge.protocol.validate",
    "validate": "xdr_edge.protocol.validate",
    "build_request": "xdr_edge.protocol.wire",
    "parse_request": "xdr_edge.protocol.wire",
    "parse_response": "xdr_edge.protocol.wire",
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
    "SenderConfig",
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
    "load_sender_config",
    "parse_request",
    "parse_response",
    "validate",
]
