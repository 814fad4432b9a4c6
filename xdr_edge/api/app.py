"""The JSON API as a WSGI application: routing, request bodies, refusals as JSON, one log line per call.

Why plain WSGI and not a framework: every call is the same shape (POST a JSON object to ``/api/v1/<Call>``,
answer a JSON object), so routing is one table lookup (:data:`.schema.CALLS`); what a framework would add
(request parsing, validation, error pages) has to be ours anyway: bodies read within limits, a multipart upload
refused after its first part, schema checks that never echo a value, and one error shape for everything. It
runs on the receiver's cheroot server (:class:`~xdr_edge.receiver.server.XdrServer`) unchanged.

Order for each call: the body (JSON, or the first part of a multipart MessageSend) -> the ``auth`` object's shape
-> authentication (:mod:`.auth`; 401 or 429) -> is this flavour allowed for the call (403) -> the rest of the
body against the call's schema (400) -> the call itself. The log line names the call, the flavour, the
application or login, accountId, userId, outcome, status, client address and duration; never a password, a
key, a document or a patient.
"""

from __future__ import annotations

__all__ = ["ApiApp", "ApiOptions"]

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xdr_edge.api.auth import Authenticator, Principal
from xdr_edge.api.calls import AccountCalls
from xdr_edge.api.forms import FormUpload
from xdr_edge.api.messaging import MessageCalls, SendRequest
from xdr_edge.api.refusals import Refusal
from xdr_edge.api.schema import API_PREFIX, AUTH, CALLS, CallSpec, openapi_document, request_schema
from xdr_edge.api.validation import check
from xdr_edge.protocol.errors import ConfigurationError, StoreError
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.model import Document
from xdr_edge.receiver.app import _log_safe

log = logging.getLogger("xdr_edge.api")

StartResponse = Callable[..., Any]
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_PIECE = 64 * 1024


@dataclass(frozen=True)
class ApiOptions:
    """Limits and places of the API besides its server."""

    spool: Path  # private directory for multipart uploads while they are sent
    max_json_bytes: int = 32 * 1024 * 1024
    max_documents: int = 100


@dataclass
class _CallLog:
    request_id: str
    started: float = field(default_factory=time.monotonic)
    call: str = "-"
    principal: Principal | None = None
    claimed: tuple[str, str] = ("-", "-")  # (applicationId, loginId) as presented, for refused credentials
    outcome: str = "-"
    status: int = 0


def _duplicate_keys_refused(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise Refusal(
                400, "invalid-json", f"the field {key!r} appears twice in one object", field=key[:64]
            )
        result[key] = value
    return result


class ApiApp:
    """WSGI callable; thread-safe (per-call state lives in the call)."""

    def __init__(
        self,
        authenticator: Authenticator,
        accounts: AccountCalls,
        messages: MessageCalls,
        options: ApiOptions,
    ) -> None:
        self.authenticator = authenticator
        self.accounts = accounts
        self.messages = messages
        self.options = options
        self._document = json.dumps(openapi_document(), indent=1).encode("utf-8")
        self._handlers: dict[str, Callable[[Principal, dict[str, Any]], dict[str, Any]]] = {
            "PingWithAuth": accounts.ping,
            "PracticeSave": accounts.practice_save,
            "PracticeGet": accounts.practice_get,
            "PracticeList": accounts.practice_list,
            "CertificateEnroll": accounts.certificate_enroll,
            "CertificateRevoke": accounts.certificate_revoke,
            "AddressBind": accounts.address_bind,
            "AddressUnbind": accounts.address_unbind,
            "LoginSave": accounts.login_save,
            "MessageSend": self._send_json,
            "MessageStatus": messages.status,
        }
        assert set(self._handlers) == set(CALLS)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        entry = _CallLog(uuid.uuid4().hex[:16])
        close = False
        extra: list[tuple[str, str]] = []
        try:
            status, answer, content_type = self._route(environ, entry)
        except Refusal as refusal:
            status, content_type = refusal.status, "application/json"
            answer = json.dumps({"error": refusal.body(), "requestId": entry.request_id}).encode("utf-8")
            entry.outcome = refusal.code
            close = not environ.get("xdr_edge.api.body_read", False)
            if refusal.retry_after is not None:
                extra.append(("Retry-After", str(refusal.retry_after)))
        except Exception:  # the last line of defence: a JSON 500, never a traceback to the caller
            log.exception("internal error in call=%s request_id=%s", entry.call, entry.request_id)
            status, content_type, close = 500, "application/json", True
            error = {"code": "internal-error", "message": "internal error; see the server log"}
            answer = json.dumps({"error": error, "requestId": entry.request_id}).encode("utf-8")
            entry.outcome = "internal-error"
        entry.status = status
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(answer))),
            ("Cache-Control", "no-store"),
            ("X-Request-Id", entry.request_id),
            *extra,
        ]
        if close:
            headers.append(("Connection", "close"))
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        self._log(entry, environ)
        return [answer]

    def _log(self, entry: _CallLog, environ: dict[str, Any]) -> None:
        p = entry.principal
        application, login = (p.application_id or "-", p.login_id or "-") if p is not None else entry.claimed
        log.info(
            "api call=%s request_id=%s flavour=%s application=%s login=%s account=%s user=%s outcome=%s "
            "status=%d client=%s duration_ms=%d",
            _log_safe(entry.call),
            entry.request_id,
            p.flavour.value if p is not None else "-",
            _log_safe(application),
            _log_safe(login),
            _log_safe(p.account_id or "-") if p is not None else "-",
            _log_safe(p.user_id or "-") if p is not None else "-",
            entry.outcome,
            entry.status,
            _log_safe(str(environ.get("REMOTE_ADDR", "-"))),
            (time.monotonic() - entry.started) * 1000,
        )

    # -- routing ---------------------------------------------------------------------------------------

    def _route(self, environ: dict[str, Any], entry: _CallLog) -> tuple[int, bytes, str]:
        path = str(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD", "")
        if path == f"{API_PREFIX}/openapi.json":
            entry.call = "openapi.json"
            if method not in ("GET", "HEAD"):
                raise Refusal(405, "method-not-allowed", "GET the OpenAPI document")
            entry.outcome = "ok"
            environ["xdr_edge.api.body_read"] = True
            return 200, self._document, "application/json"
        name = path.removeprefix(f"{API_PREFIX}/") if path.startswith(f"{API_PREFIX}/") else None
        spec = CALLS.get(name or "")
        if spec is None:
            raise Refusal(404, "unknown-call", f"no such call; see {API_PREFIX}/openapi.json")
        entry.call = spec.name
        if method != "POST":
            raise Refusal(405, "method-not-allowed", f"{spec.name} is called with POST")
        # An unreadable Content-Type is as unsupported as another one (415), not an internal error.
        media = MediaType.parse_or_none(environ.get("CONTENT_TYPE"))
        if media is not None and media.matches("multipart/form-data") and spec.multipart:
            answer = self._send_form(environ, spec, entry)
        elif media is not None and media.matches("application/json"):
            body = self._json_body(environ)
            principal = self._admit(spec, body, environ, entry)
            check(body, request_schema(spec))
            answer = self._dispatch(spec, principal, body)
        else:
            kinds = "application/json" + (" or multipart/form-data" if spec.multipart else "")
            raise Refusal(415, "unsupported-media-type", f"send {kinds}", field="Content-Type")
        entry.outcome = "ok"
        return 200, json.dumps(answer).encode("utf-8"), "application/json"

    def _dispatch(self, spec: CallSpec, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._handlers[spec.name](principal, body)
        except StoreError:
            log.exception("registry database error in call=%s", spec.name)
            raise Refusal(
                503, "store-unavailable", "the registry database is unavailable; retry later"
            ) from None
        except ConfigurationError as exc:
            # a registry rule the call did not translate: the registry's text may name other practices
            log.info("call=%s refused by the registry: %s", spec.name, exc)
            raise Refusal(409, "registry-refused", "the registry refused this change") from None

    def _admit(
        self, spec: CallSpec, body: dict[str, Any], environ: dict[str, Any], entry: _CallLog
    ) -> Principal:
        """Authenticate the body's ``auth`` and check that this flavour may make this call."""
        auth = body.get("auth")
        if auth is None:
            raise Refusal(401, "missing-credentials", "no auth object in the request", field="auth")
        check(auth, AUTH, "auth")
        entry.claimed = (str(auth.get("applicationId", "-")), str(auth.get("loginId", "-")))
        principal = self.authenticator.authenticate(auth, str(environ.get("REMOTE_ADDR", "")))
        entry.principal = principal
        if principal.flavour not in spec.flavours:
            raise Refusal(
                403,
                "flavour-not-allowed",
                f"{spec.name} needs application authentication (applicationId and applicationPassword)",
                field="auth",
            )
        self.accounts.check_named_account(principal, auth)
        return principal

    def _json_body(self, environ: dict[str, Any]) -> dict[str, Any]:
        limit = self.options.max_json_bytes
        length = _content_length(environ)
        if length is not None and length > limit:
            raise Refusal(
                413,
                "too-large",
                f"the JSON body exceeds {limit} bytes; send large documents as multipart/form-data",
            )
        stream = environ["wsgi.input"]
        pieces: list[bytes] = []
        size = 0
        while True:
            want = _PIECE if length is None else min(_PIECE, length - size)
            if want <= 0:
                break
            chunk = stream.read(want)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise Refusal(413, "too-large", f"the JSON body exceeds {limit} bytes")
            pieces.append(chunk)
        environ["xdr_edge.api.body_read"] = True
        try:
            body = json.loads(b"".join(pieces), object_pairs_hook=_duplicate_keys_refused)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Refusal(400, "invalid-json", "the body is not valid JSON") from None
        except RecursionError:
            raise Refusal(400, "invalid-json", "the body is nested too deeply") from None
        if not isinstance(body, dict):
            raise Refusal(400, "invalid-json", "the body must be a JSON object")
        return body

    # -- MessageSend -----------------------------------------------------------------------------------

    def _send_json(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        request = self.messages.prepare(principal, body)
        documents = self.messages.json_documents(body)
        total = sum(document.digest()[1] for document in documents)
        return self.messages.send(request, documents, total)

    def _send_form(self, environ: dict[str, Any], spec: CallSpec, entry: _CallLog) -> dict[str, Any]:
        prepared: list[SendRequest] = []

        def on_request(body: dict[str, Any]) -> None:
            principal = self._admit(spec, body, environ, entry)
            check(body, request_schema(spec, without_documents=True))
            prepared.append(self.messages.prepare(principal, body))

        with FormUpload(
            environ["wsgi.input"],
            str(environ.get("CONTENT_TYPE", "")),
            spool_root=self.options.spool,
            max_json_bytes=self.options.max_json_bytes,
            max_documents=self.options.max_documents,
            on_request=on_request,
        ) as form:
            _, uploaded = form.read()
            environ["xdr_edge.api.body_read"] = True
            documents = [Document(path=u.path, name=u.name) for u in uploaded]
            return self._dispatch_send(prepared[0], documents, sum(u.size for u in uploaded))

    def _dispatch_send(self, request: SendRequest, documents: list[Document], total: int) -> dict[str, Any]:
        try:
            return self.messages.send(request, documents, total)
        except StoreError:
            log.exception("registry database error in call=MessageSend")
            raise Refusal(
                503, "store-unavailable", "the registry database is unavailable; retry later"
            ) from None


def _content_length(environ: dict[str, Any]) -> int | None:
    value = environ.get("CONTENT_LENGTH")
    try:
        return int(value) if value else None
    except ValueError:
        return None
