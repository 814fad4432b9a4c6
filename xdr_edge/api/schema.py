"""The calls of the JSON API as data: one table, from which the OpenAPI document is built and requests are checked.

One table (:data:`CALLS`) says, per call, who may make it (which authentication flavours), whether it acts on an
account (then an application must name ``auth.accountId``), how large its body may be, the request body's fields
and the answer's. The served OpenAPI document (:mod:`.openapi`) is generated from it, and requests are checked
against the same schemas (:mod:`.validation`) and the same flags (:mod:`.app`), so the document cannot drift from
what the API enforces.

Free text goes into XML (SubmissionSet title and comments, document names become DocumentEntry titles) and into
the audit log: it is limited to the characters XML 1.0 allows (§2.2 ``Char``), and single-line fields to
printable ones, so that a value the API accepted can always be sent.
"""

from __future__ import annotations

__all__ = [
    "API_PREFIX",
    "AUTH",
    "CALLS",
    "COMPONENTS",
    "DEFAULT_MAX_BODY_BYTES",
    "CallSpec",
    "Schema",
    "body_limit",
    "body_schema",
    "ref",
    "request_schema",
]

from dataclasses import dataclass, field
from typing import Any

from xdr_edge.api.auth import Flavour
from xdr_edge.api.passwords import MAX_PASSWORD_LENGTH, MIN_LOGIN_PASSWORD_LENGTH

API_PREFIX = "/api/v1"

APPLICATION_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,63}$"
#: What an application chooses for a login; the login signs in as ``<applicationId>.<that>`` (:mod:`.calls`).
LOGIN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{2,63}$"
#: The full login id an individual signs in with.
LOGIN_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}\.[A-Za-z0-9][A-Za-z0-9._@+-]{2,63}$"
#: One line of text: no control characters, nothing XML 1.0 cannot carry (surrogates, U+FFFE, U+FFFF).
_PRINTABLE = r"^[^\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]*$"
#: Text that may span lines: XML 1.0 characters (tab, line feed and carriage return, no other control character).
_XML_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]*$"
_PRINTABLE_MESSAGE = "must be printable text (no control characters)"
#: A media type's essence (RFC 9110 §8.3.1), no parameters: what XDS mimeType holds.
_MEDIA_TYPE = r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$"

#: The body limit of every call but those with their own (:attr:`CallSpec.max_body_bytes`).
DEFAULT_MAX_BODY_BYTES = 64 * 1024

#: A JSON Schema (OpenAPI 3.0 dialect) as a dict.
Schema = dict[str, Any]


def _string(description: str, *, max_length: int = 256, min_length: int = 1, **extra: Any) -> Schema:
    """A string of any characters (passwords, base64, PEM); :func:`_text` for text."""
    return {
        "type": "string",
        "minLength": min_length,
        "maxLength": max_length,
        "description": description,
        **extra,
    }


def _text(description: str, *, max_length: int = 256, lines: bool = False) -> Schema:
    """Free text: printable on one line, or XML 1.0 characters with ``lines``."""
    schema = _string(description, max_length=max_length, pattern=_XML_TEXT if lines else _PRINTABLE)
    schema["x-pattern-message"] = (
        "must be text XML can carry (no control characters but tab and line breaks)"
        if lines
        else _PRINTABLE_MESSAGE
    )
    return schema


def _key(description: str) -> Schema:
    """An identifier of the integrator's own (accountId, userId): printable."""
    return _text(description, max_length=128)


_ACCOUNT_ID: Schema = {
    **_key("the application's own key for the practice the call acts on"),
    "pattern": ACCOUNT_ID_PATTERN,
    "x-pattern-message": "1-64 letters, digits and ._:@+- starting with a letter or digit",
}
_APPLICATION_PROPERTIES: dict[str, Schema] = {
    "applicationId": _string("the application's id", max_length=32),
    "applicationPassword": _string("the application's password", max_length=MAX_PASSWORD_LENGTH),
    "accountId": _ACCOUNT_ID,
    "userId": _key("the application's own key for the user acting (recorded, never interpreted)"),
}
_INDIVIDUAL_PROPERTIES: dict[str, Schema] = {
    "loginId": _string(
        "the login's id, <applicationId>.<login> as LoginSave answered it; case-insensitive", max_length=97
    ),
    "loginPassword": _string("the login's password", max_length=MAX_PASSWORD_LENGTH),
    "accountId": {**_ACCOUNT_ID, "description": "optional; if given, the login's own account"},
}

#: The shape every ``auth`` object is checked against before authentication: either flavour's fields. Which
#: flavour a call allows, and whether it needs ``accountId``, is per call (the published ``oneOf`` of
#: :func:`openapi_document`, enforced from the same :class:`CallSpec`).
AUTH: Schema = {
    "type": "object",
    "additionalProperties": False,
    "description": (
        "Application authentication (applicationId + applicationPassword, with accountId and userId naming "
        "the application's own account and user) or individual authentication (loginId + loginPassword of "
        "one account's login). Never both."
    ),
    "properties": {**_APPLICATION_PROPERTIES, **_INDIVIDUAL_PROPERTIES},
}


def _auth(required: list[str], description: str, properties: dict[str, Schema]) -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "description": description,
        "properties": properties,
    }


APPLICATION_AUTH = _auth(
    ["applicationId", "applicationPassword"],
    "Application authentication: the application acts on its own account accountId, if any.",
    _APPLICATION_PROPERTIES,
)
ACCOUNT_APPLICATION_AUTH = _auth(
    ["applicationId", "applicationPassword", "accountId"],
    "Application authentication naming the application's account the call acts on.",
    _APPLICATION_PROPERTIES,
)
INDIVIDUAL_AUTH = _auth(
    ["loginId", "loginPassword"],
    "Individual authentication: one account's login, acting on that account only.",
    _INDIVIDUAL_PROPERTIES,
)

_ADDRESS = _text("a Direct address (user@domain)", max_length=254)
_BINDING = _text("a Direct address (user@domain), or a whole domain (@domain)", max_length=254)
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
            "enum": [
                "Success",
                "PartialSuccess",
                "Failure",
                "Fault",
                "TransportError",
                "OutcomeUnknown",
                "NotSent",
            ],
            "description": "NotSent: refused before anything left this server (result.error says why)",
        },
        "ok": {"type": "boolean"},
        "result": {"type": "object", "description": "the send result: identifiers, HTTP status, errors"},
        "recorded": {
            "type": "boolean",
            "description": "present and false when the message was sent but its outcome could not be recorded "
            "(MessageStatus will not know it): do not send it again",
        },
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
        "mimeType": {
            **_string(
                "media type (type/subtype, no parameters); guessed from the content when absent",
                max_length=255,
            ),
            "pattern": _MEDIA_TYPE,
            "x-pattern-message": "a media type such as application/pdf (type/subtype, no parameters)",
        },
        "name": _text(
            "a file name (helps guess the media type; the document's title without one)", max_length=255
        ),
    },
}
METADATA: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "level": {"type": "string", "enum": ["minimal", "xds"], "description": "XDR metadata level"},
        "patientId": _text("patient id as CX: ID^^^&OID&ISO (overrides a C-CDA header)", max_length=256),
        "title": _text("SubmissionSet title (e.g. the mail Subject)", max_length=256),
        "comments": _text("SubmissionSet comments", max_length=1024, lines=True),
        "finalDeliveryNotification": {"type": "boolean"},
    },
}


@dataclass(frozen=True)
class CallSpec:
    """One call: its name (the URL's last segment), who may make it, its fields and its answer.

    ``needs_account``: it acts on one account, so application authentication must name ``auth.accountId``.
    ``max_body_bytes``: the largest JSON body it takes (``None``: the server's ``max_json_bytes``, for the
    call that carries documents); everything else is small, and is read before the caller is authenticated.
    ``documents``: documents may come as base64 in JSON (``documents``) or, with ``multipart``, as file parts.
    """

    name: str
    summary: str
    flavours: frozenset[Flavour]
    needs_account: bool
    fields: dict[str, Schema] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    answer: dict[str, Schema] = field(default_factory=dict)
    multipart: bool = False
    max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES
    documents: bool = False


_BOTH = frozenset(Flavour)
_APPLICATION = frozenset({Flavour.APPLICATION})


def ref(name: str) -> Schema:
    """A reference to one of :data:`COMPONENTS`."""
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
                "name": _text("the practice's display name", max_length=200),
                "active": {"type": "boolean", "description": "false stops sending and receiving for it"},
            },
            required=("name",),
            answer={"practice": ref("Practice"), "created": {"type": "boolean"}},
        ),
        CallSpec(
            "PracticeGet",
            "The practice auth.accountId names: addresses, certificates, logins.",
            _APPLICATION,
            needs_account=True,
            answer={"practice": ref("Practice")},
        ),
        CallSpec(
            "PracticeList",
            "The application's practices, by accountId, a page at a time.",
            _APPLICATION,
            needs_account=False,
            fields={
                "after": _text("the last accountId of the previous page", max_length=64),
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
            "Enrol a client certificate of the practice with its private key (proof that the practice holds "
            "it); the API can then send with it. Give certificate and privateKey, or pkcs12.",
            _APPLICATION,
            needs_account=True,
            fields={
                "certificate": _string("PEM certificate (leaf first, chain may follow)", max_length=65536),
                "privateKey": _string("unencrypted PEM private key of the certificate", max_length=65536),
                "pkcs12": _string("base64 PKCS#12 with certificate and key", max_length=200000),
                "pkcs12Password": _string("the PKCS#12 password", max_length=MAX_PASSWORD_LENGTH),
            },
            answer={"certificate": ref("Certificate"), "created": {"type": "boolean"}},
            max_body_bytes=512 * 1024,
        ),
        CallSpec(
            "CertificateRevoke",
            "Revoke one of the practice's certificates (refused by the receiver at once; its key is deleted).",
            _APPLICATION,
            needs_account=True,
            fields={
                "fingerprint": _string("SHA-256 fingerprint (hex, colons allowed)", max_length=128),
                "reason": _text("why (recorded in the audit log)", max_length=200),
            },
            required=("fingerprint",),
            answer={"certificate": ref("Certificate")},
        ),
        CallSpec(
            "AddressBind",
            "Bind a Direct address (or a whole domain) to the practice: it may send from it. One of the "
            "practice's certificates with a kept key must name the address or its domain.",
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
                            **_string(
                                "the login's name within the application (the login signs in as "
                                "<applicationId>.<loginId>); case-insensitive",
                                max_length=64,
                            ),
                            "pattern": LOGIN_NAME_PATTERN,
                            "x-pattern-message": "3-64 letters, digits and ._@+- starting with a letter or digit",
                        },
                        "password": _string(
                            f"at least {MIN_LOGIN_PASSWORD_LENGTH} characters; absent: one is generated and "
                            "answered once",
                            min_length=MIN_LOGIN_PASSWORD_LENGTH,
                            max_length=MAX_PASSWORD_LENGTH,
                        ),
                        "userId": _key("the application's key for the person using this login"),
                        "active": {"type": "boolean", "description": "false disables the login"},
                    },
                }
            },
            required=("login",),
            answer={
                "login": ref("Login"),
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
                "metadata": ref("Metadata"),
            },
            required=("from", "to"),
            answer={"message": ref("Message")},
            multipart=True,
            max_body_bytes=None,
            documents=True,
        ),
        CallSpec(
            "MessageStatus",
            "The outcome of a message sent for the same practice.",
            _BOTH,
            needs_account=True,
            fields={"messageId": _text("as MessageSend answered it", max_length=64)},
            required=("messageId",),
            answer={"message": ref("Message")},
        ),
    )
}

COMPONENTS: dict[str, Schema] = {
    "ApplicationAuth": APPLICATION_AUTH,
    "AccountApplicationAuth": ACCOUNT_APPLICATION_AUTH,
    "IndividualAuth": INDIVIDUAL_AUTH,
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


def body_schema(spec: CallSpec, auth: Schema, *, max_documents: int, with_documents: bool) -> Schema:
    """The JSON body of a call (``with_documents``: the base64 ``documents`` too, then required)."""
    properties: dict[str, Schema] = {"auth": auth, **spec.fields}
    required = ["auth", *spec.required]
    if spec.documents and with_documents:
        properties["documents"] = {
            "type": "array",
            "minItems": 1,
            "maxItems": max_documents,
            "items": ref("Document"),
        }
        required.append("documents")
    return {"type": "object", "additionalProperties": False, "required": required, "properties": properties}


def request_schema(spec: CallSpec, *, max_documents: int = 100, without_documents: bool = False) -> Schema:
    """The whole body a call takes (``auth`` and its fields), references resolved, for :mod:`.validation`.

    ``without_documents``: the ``request`` part of a multipart MessageSend, whose documents are file parts.
    ``auth`` is checked for its shape only (either flavour); flavour and accountId rules are the call's.
    """
    return _resolve(
        body_schema(spec, AUTH, max_documents=max_documents, with_documents=not without_documents)
    )


def body_limit(spec: CallSpec, max_json_bytes: int) -> int:
    """The largest JSON body ``spec`` takes on a server whose document-carrying limit is ``max_json_bytes``."""
    return max_json_bytes if spec.max_body_bytes is None else spec.max_body_bytes
