"""The OpenAPI 3.0 document of the JSON API (``GET /api/v1/openapi.json``, ``xdr-edge api openapi``), built from
the table of calls (:data:`.schema.CALLS`) for a server's limits.

Per call it publishes what the API enforces from the same table: the authentication flavours as a ``oneOf`` of
the ``auth`` objects the call takes (application authentication with ``accountId`` required for the calls that
act on an account), the JSON body limit, the number of documents, and the multipart form of MessageSend.
"""

from __future__ import annotations

__all__ = ["openapi_document"]

from xdr_edge._version import __version__
from xdr_edge.api.auth import Flavour
from xdr_edge.api.schema import (
    API_PREFIX,
    CALLS,
    COMPONENTS,
    DEFAULT_MAX_BODY_BYTES,
    CallSpec,
    Schema,
    body_limit,
    body_schema,
    ref,
)

#: Refusals every call may answer besides its own (docs/api.md lists them all with their codes).
_STATUSES = (
    "refused: 400 bad input, 401 unknown identity or wrong password, 403 not allowed, 404 not found (an "
    "accountId the application does not own is not found), 408 body too slow, 409 conflict, 413 too large, "
    "422 sender not bound, 429 wait (Retry-After), 503 unavailable"
)


def _auth_for(spec: CallSpec) -> Schema:
    """The ``auth`` alternatives this call accepts, as published."""
    options = []
    if Flavour.APPLICATION in spec.flavours:
        options.append(ref("AccountApplicationAuth" if spec.needs_account else "ApplicationAuth"))
    if Flavour.INDIVIDUAL in spec.flavours:
        options.append(ref("IndividualAuth"))
    return options[0] if len(options) == 1 else {"oneOf": options}


def _operation(spec: CallSpec, *, max_documents: int, max_json_bytes: int) -> Schema:
    body = body_schema(spec, _auth_for(spec), max_documents=max_documents, with_documents=True)
    content: Schema = {"application/json": {"schema": body}}
    if spec.multipart:
        content["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "required": ["request", "document"],
                "properties": {
                    "request": {
                        "type": "string",
                        "description": f"the JSON body without `documents` (at most {DEFAULT_MAX_BODY_BYTES} "
                        "bytes); must be the first part",
                    },
                    "document": {
                        "type": "array",
                        "maxItems": max_documents,
                        "items": {"type": "string", "format": "binary"},
                        "description": "one part per document; the part's Content-Type is its media type "
                        "(guessed when absent or application/octet-stream), its filename names it",
                    },
                },
            },
            "encoding": {"request": {"contentType": "application/json"}},
        }
    flavours = " or ".join(sorted(f.value for f in spec.flavours))
    account = (
        " Application authentication must name auth.accountId (an accountId the application does not own: "
        "404 account-not-found)."
        if spec.needs_account and Flavour.APPLICATION in spec.flavours
        else ""
    )
    return {
        "operationId": spec.name,
        "summary": spec.summary,
        "description": f"Authentication: {flavours}.{account} JSON body: at most "
        f"{body_limit(spec, max_json_bytes)} bytes.",
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": {
                "description": "done",
                "content": {"application/json": {"schema": {"type": "object", "properties": spec.answer}}},
            },
            "default": {"$ref": "#/components/responses/Error"},
        },
    }


def openapi_document(*, max_documents: int = 100, max_json_bytes: int = 32 * 1024 * 1024) -> Schema:
    """The OpenAPI 3.0 description of every call (served at ``/api/v1/openapi.json``), for a server with these
    limits."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "xdr-edge JSON API",
            "version": __version__,
            "description": (
                "Send Direct XDR messages and manage practices, certificates, addresses and logins. Every call "
                "is a POST of a JSON object carrying an `auth` object (application or individual "
                "authentication); refusals answer an `Error` with a stable `code`. JSON null is never a value: "
                "leave a field out instead."
            ),
        },
        "paths": {
            f"{API_PREFIX}/{name}": {
                "post": _operation(spec, max_documents=max_documents, max_json_bytes=max_json_bytes)
            }
            for name, spec in CALLS.items()
        },
        "components": {
            "schemas": COMPONENTS,
            "responses": {
                "Error": {
                    "description": _STATUSES,
                    "content": {"application/json": {"schema": ref("Error")}},
                }
            },
        },
    }
