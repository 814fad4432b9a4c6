"""The calls of the JSON API as data, and the OpenAPI 3.0 document built from them.

One table (:data:`CALLS`) says, per call, who may make it (which authentication flavours), whether it acts on an
account, the request body's fields and the answer's. The served OpenAPI document (``GET /api/v1/openapi.json``)
is generated from it, and requests are checked against the same schemas (:mod:`.validation`), so the document
cannot drift from what the API enforces.
"""

from __future__ import annotations

__all__ = ["API_PREFIX", "CALLS", "CallSpec", "openapi_document", "request_schema"]

from dataclasses import dataclass, field
from typing import Any

from xdr_edge._version import __version__
from xdr_edge.api.auth import Flavour

API_PREFIX = "/api/v1"

APPLICATION_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,63}$"
LOGIN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{2,63}$"
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

Schema = dict[str, Any]


def _string(description: str, *, max_length: int = 256, min_length: int = 1, **extra: Any) -> Schema:
    return {
        "type": "string",
        "minLength": min_length,
        "maxLength": max_length,
        "description": description,
        **extra,
    }


def _key(description: str) -> Schema:
    """An identifier of the integrator's own (accountId, userId): printable, no surrounding spaces."""
    schema = _string(description, max_length=128, pattern=_PRINTABLE)
    schema["x-pattern-message"] = "must be printable"
    return schema


AUTH: Schema = {
    "type": "object",
    "additionalProperties": False,
    "description": (
        "Application authentication (applicationId + applicationPassword, with accountId and userId naming "
        "the application's own account and user) or individual authentication (loginId + loginPassword of "
        "one account's login). Never both."
    ),
    "properties": {
        "applicationId": _string("the application's id", max_length=32),
        "applicationPassword": _string("the application's password", max_length=1024),
        "loginId": _string("an individual login's id", max_length=64),
        "loginPassword": _string("the login's password", max_length=1024),
        "accountId": {
            **_key("the application's own key for the practice the call acts on"),
            "pattern": ACCOUNT_ID_PATTERN,
            "x-pattern-message": "1-64 letters, digits and ._:@+- starting with a letter or digit",
        },
        "userId": _key("the application's own key for the user acting (recorded, never interpreted)"),
    },
}

_ADDRESS = _string("a Direct address (user@domain)", max_length=254)
_BINDING = _string("a Direct address (user@domain), or a whole domain (@domain)", max_length=254)
_TIME = {"type": "string", "format": "date-time"}

CERTIFICATE: Schema = {
    "type": "object",
    "properties": {
        "fingerprint": {"type": "string", "description": "SHA-256 of the DER certificate, lower-case hex"},
        "subject": {"type": "string"},
        "issuer": {"type": "string"},
        "serial": {"type": "string"},
        "notBefore": _TIME,
        "notAfter": _TIME,
        "revoked": {"type": "boolean"},
        "revokedAt": _TIME,
        "revokedReason": {"type": "string"},
        "canSend": {"type": "boolean", "description": "the API holds this certificate's key for MessageSend"},
    },
}
LOGIN: Schema = {
    "type": "object",
    "properties": {
        "loginId": {"type": "string"},
        "userId": {"type": "string"},
        "active": {"type": "boolean"},
        "createdAt": _TIME,
        "updatedAt": _TIME,
    },
}
PRACTICE: Schema = {
    "type": "object",
    "properties": {
        "accountId": {"type": "string"},
        "name": {"type": "string"},
        "active": {"type": "boolean"},
        "addresses": {"type": "array", "items": {"type": "string"}},
        "certificates": {"type": "array", "items": {"$ref": "#/components/schemas/Certificate"}},
        "logins": {"type": "array", "items": {"$ref": "#/components/schemas/Login"}},
    },
}
MESSAGE: Schema = {
    "type": "object",
    "properties": {
        "messageId": {"type": "string"},
        "accountId": {"type": "string"},
        "from": {"type": "string"},
        "to": {"type": "array", "items": {"type": "string"}},
        "documents": {"type": "integer"},
        "bytes": {"type": "integer"},
        "state": {"type": "string", "enum": ["sending", "done", "interrupted"]},
        "outcome": {
            "type": "string",
            "enum": ["Success", "PartialSuccess", "Failure", "Fault", "TransportError", "OutcomeUnknown"],
        },
        "ok": {"type": "boolean"},
        "result": {"type": "object", "description": "the send result: identifiers, HTTP status, errors"},
        "createdAt": _TIME,
        "finishedAt": _TIME,
    },
}
ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable"},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "the request field at fault"},
            },
        },
        "requestId": {"type": "string"},
    },
}

DOCUMENT: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": ["content"],
    "properties": {
        "content": {
            "type": "string",
            "format": "byte",
            "minLength": 1,
            "description": "the document's bytes, base64 (use the multipart form for large documents)",
        },
        "mimeType": _string("media type; guessed from the content when absent", max_length=128),
        "name": _string("a file name (not sent; helps guess the media type)", max_length=255),
    },
}
METADATA: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "level": {"type": "string", "enum": ["minimal", "xds"], "description": "XDR metadata level"},
        "patientId": _string("patient id as CX: ID^^^&OID&ISO (overrides a C-CDA header)", max_length=256),
        "title": _string("SubmissionSet title (e.g. the mail Subject)", max_length=256),
        "comments": _string("SubmissionSet comments", max_length=1024),
        "finalDeliveryNotification": {"type": "boolean"},
    },
}


@dataclass(frozen=True)
class CallSpec:
    """One call: its name (the URL's last segment), who may make it, its fields and its answer."""

    name: str
    summary: str
    flavours: frozenset[Flavour]
    needs_account: bool
    fields: dict[str, Schema] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    answer: dict[str, Schema] = field(default_factory=dict)
    multipart: bool = False


_BOTH = frozenset(Flavour)
_APPLICATION = frozenset({Flavour.APPLICATION})


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


CALLS: dict[str, CallSpec] = {
    spec.name: spec
    for spec in (
        CallSpec(
            "PingWithAuth",
            "Check credentials: answers who was authenticated.",
            _BOTH,
            needs_account=False,
            answer={
                "flavour": {"type": "string", "enum": ["application", "individual"]},
                "applicationId": {"type": "string"},
                "loginId": {"type": "string"},
                "accountId": {"type": "string"},
                "userId": {"type": "string"},
            },
        ),
        CallSpec(
            "PracticeSave",
            "Create the practice auth.accountId names, or update its name and state.",
            _APPLICATION,
            needs_account=True,
            fields={
                "name": _string("the practice's display name", max_length=200),
                "active": {"type": "boolean", "description": "false stops sending and receiving for it"},
            },
            required=("name",),
            answer={"practice": _ref("Practice"), "created": {"type": "boolean"}},
        ),
        CallSpec(
            "PracticeGet",
            "The practice auth.accountId names: addresses, certificates, logins.",
            _APPLICATION,
            needs_account=True,
            answer={"practice": _ref("Practice")},
        ),
        CallSpec(
            "PracticeList",
            "The application's practices, by accountId, a page at a time.",
            _APPLICATION,
            needs_account=False,
            fields={
                "after": _string("the last accountId of the previous page", max_length=64),
                "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "default 100"},
            },
            answer={
                "practices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "accountId": {"type": "string"},
                            "name": {"type": "string"},
                            "active": {"type": "boolean"},
                        },
                    },
                },
                "next": {
                    "type": "string",
                    "description": "pass as `after` for the next page; absent at the end",
                },
            },
        ),
        CallSpec(
            "CertificateEnroll",
            "Enrol a client certificate for the practice; with its key, the API can also send with it.",
            _APPLICATION,
            needs_account=True,
            fields={
                "certificate": _string("PEM certificate (leaf first, chain may follow)", max_length=65536),
                "privateKey": _string("unencrypted PEM private key of the certificate", max_length=65536),
                "pkcs12": _string("base64 PKCS#12 with certificate and key", max_length=200000),
                "pkcs12Password": _string("the PKCS#12 password", max_length=1024),
            },
            answer={"certificate": _ref("Certificate"), "created": {"type": "boolean"}},
        ),
        CallSpec(
            "CertificateRevoke",
            "Revoke one of the practice's certificates (refused by the receiver at once; its key is deleted).",
            _APPLICATION,
            needs_account=True,
            fields={
                "fingerprint": _string("SHA-256 fingerprint (hex, colons allowed)", max_length=128),
                "reason": _string("why (recorded in the audit log)", max_length=200),
            },
            required=("fingerprint",),
            answer={"certificate": _ref("Certificate")},
        ),
        CallSpec(
            "AddressBind",
            "Bind a Direct address (or a whole domain) to the practice: it may send from it.",
            _APPLICATION,
            needs_account=True,
            fields={"address": _BINDING},
            required=("address",),
            answer={"address": {"type": "string"}, "created": {"type": "boolean"}},
        ),
        CallSpec(
            "AddressUnbind",
            "Remove a binding of the practice.",
            _APPLICATION,
            needs_account=True,
            fields={"address": _BINDING},
            required=("address",),
            answer={"address": {"type": "string"}},
        ),
        CallSpec(
            "LoginSave",
            "Create or reset an individual login of the practice.",
            _APPLICATION,
            needs_account=True,
            fields={
                "login": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["loginId"],
                    "properties": {
                        "loginId": {
                            **_string("unique across all practices; case-insensitive", max_length=64),
                            "pattern": LOGIN_ID_PATTERN,
                            "x-pattern-message": "3-64 letters, digits and ._@+- starting with a letter or digit",
                        },
                        "password": _string(
                            "at least 12 characters; absent: one is generated and answered once",
                            min_length=12,
                            max_length=1024,
                        ),
                        "userId": _key("the application's key for the person using this login"),
                        "active": {"type": "boolean", "description": "false disables the login"},
                    },
                }
            },
            required=("login",),
            answer={
                "login": _ref("Login"),
                "created": {"type": "boolean"},
                "loginPassword": {"type": "string", "description": "only when generated; shown once"},
            },
        ),
        CallSpec(
            "MessageSend",
            "Send documents from one of the practice's addresses, with the practice's certificate.",
            _BOTH,
            needs_account=True,
            fields={
                "from": _ADDRESS,
                "to": {"type": "array", "minItems": 1, "maxItems": 100, "items": _ADDRESS},
                "documents": {"type": "array", "minItems": 1, "maxItems": 100, "items": _ref("Document")},
                "metadata": _ref("Metadata"),
            },
            required=("from", "to"),
            answer={"message": _ref("Message")},
            multipart=True,
        ),
        CallSpec(
            "MessageStatus",
            "The outcome of a message sent for the same practice.",
            _BOTH,
            needs_account=True,
            fields={"messageId": _string("as MessageSend answered it", max_length=64)},
            required=("messageId",),
            answer={"message": _ref("Message")},
        ),
    )
}

COMPONENTS: dict[str, Schema] = {
    "Auth": AUTH,
    "Error": ERROR,
    "Practice": PRACTICE,
    "Certificate": CERTIFICATE,
    "Login": LOGIN,
    "Message": MESSAGE,
    "Document": DOCUMENT,
    "Metadata": METADATA,
}


def _resolve(schema: Schema) -> Schema:
    """The schema with ``$ref`` to our components replaced by the component (for checking requests)."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _resolve(COMPONENTS[ref.rsplit("/", 1)[1]])
    out: Schema = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _resolve(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = _resolve(value)
        else:
            out[key] = value
    return out


def request_schema(spec: CallSpec, *, without_documents: bool = False) -> Schema:
    """The whole body a call takes (``auth`` and its fields), references resolved, for :mod:`.validation`.

    ``without_documents``: the ``request`` part of a multipart MessageSend, whose documents are file parts.
    """
    properties = {"auth": AUTH, **spec.fields}
    required = ["auth", *spec.required]
    if without_documents:
        properties.pop("documents", None)
    elif spec.name == "MessageSend":
        required.append("documents")
    return _resolve(
        {"type": "object", "additionalProperties": False, "required": required, "properties": properties}
    )


def _operation(spec: CallSpec) -> Schema:
    body = {
        "type": "object",
        "additionalProperties": False,
        "required": ["auth", *spec.required, *(["documents"] if spec.name == "MessageSend" else [])],
        "properties": {"auth": _ref("Auth"), **spec.fields},
    }
    content: Schema = {"application/json": {"schema": body}}
    if spec.multipart:
        content["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "required": ["request", "document"],
                "properties": {
                    "request": {
                        "type": "string",
                        "description": "the JSON body without `documents`; must be the first part",
                    },
                    "document": {"type": "array", "items": {"type": "string", "format": "binary"}},
                },
            },
            "encoding": {"request": {"contentType": "application/json"}},
        }
    flavours = " or ".join(sorted(f.value for f in spec.flavours))
    return {
        "operationId": spec.name,
        "summary": spec.summary,
        "description": f"Authentication: {flavours}.",
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": {
                "description": "done",
                "content": {"application/json": {"schema": {"type": "object", "properties": spec.answer}}},
            },
            "default": {"$ref": "#/components/responses/Error"},
        },
    }


def openapi_document() -> Schema:
    """The OpenAPI 3.0 description of every call (served at ``/api/v1/openapi.json``)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "xdr-edge JSON API",
            "version": __version__,
            "description": (
                "Send Direct XDR messages and manage practices, certificates, addresses and logins. Every call "
                "is a POST of a JSON object carrying an `auth` object (application or individual "
                "authentication); refusals answer an `Error` with a stable `code`."
            ),
        },
        "paths": {f"{API_PREFIX}/{name}": {"post": _operation(spec)} for name, spec in CALLS.items()},
        "components": {
            "schemas": COMPONENTS,
            "responses": {
                "Error": {
                    "description": "refused: 400 bad input, 401 unknown identity or wrong password, 403 not "
                    "allowed, 404 not found, 409 conflict, 413 too large, 422 sender not bound, 429 wait",
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
            },
        },
    }
