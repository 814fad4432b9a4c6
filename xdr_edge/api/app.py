"""The JSON API as a WSGI application: routing, request bodies, admission, refusals as JSON, one log line per call.

Why plain WSGI and not a framework: every call is the same shape (POST a JSON object to ``/api/v1/<Call>``,
answer a JSON object), so routing is one table lookup (:data:`.schema.CALLS`); what a framework would add
(request parsing, validation, error pages) has to be ours anyway: bodies read within limits, a multipart upload
refused after its first part, schema checks that never echo a value, and one error shape for everything. It
runs on the receiver's cheroot server (:class:`~xdr_edge.receiver.server.XdrServer`) unchanged.

Order for each call: a slot for the client address (429 when it has too many calls in progress) -> the body
(JSON within the call's limit, or the first part of a multipart MessageSend), against a total deadline while the
caller is unknown (:mod:`.bodies`) -> the ``auth`` object's shape -> authentication (:mod:`.auth`; 401 or 429)
-> is this flavour allowed for the call (403), does it name the account the call needs (400) -> a slot for the
application and for the account (429) -> the rest of the body against the call's schema (400) -> the call
itself. A registry database that fails at any step is 503, never 500.

Why the slots: the server has a fixed number of worker threads, and a call holds one for as long as its body
takes to arrive and its send takes to finish. Without limits, one client address (a stranger trickling bodies)
or one integrator (slow uploads, a HISP that does not answer) could take every worker from everyone else. The
counters are the receiver's per-practice ones (:class:`~xdr_edge.receiver.admission.PracticeSlots`), keyed by
address, application and account.

The log line names the call, the flavour, the application or login, accountId, userId, outcome, status, client
address and duration; never a password, a key, a document or a patient. For refused credentials the identity is
logged as presented only when it has the form of an identity (a password typed into the id field is not).
"""

from __future__ import annotations

__all__ = ["ApiApp", "ApiOptions"]

import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from xdr_edge.api.auth import Authenticator, Flavour, Principal
from xdr_edge.api.bodies import parse_json_object, read_limited
from xdr_edge.api.calls import AccountCalls
from xdr_edge.api.forms import FormUpload, UploadSpool
from xdr_edge.api.messaging import MessageCalls, SendRequest
from xdr_edge.api.openapi import openapi_document
from xdr_edge.api.refusals import Refusal
from xdr_edge.api.schema import (
    API_PREFIX,
    APPLICATION_ID_PATTERN,
    AUTH,
    CALLS,
    DEFAULT_MAX_BODY_BYTES,
    LOGIN_ID_PATTERN,
    CallSpec,
    body_limit,
    request_schema,
)
from xdr_edge.api.validation import check
from xdr_edge.logsafe import log_internal_error, log_safe
from xdr_edge.protocol.errors import STOP_REQUESTS, ConfigurationError, StoreError
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.model import Document
from xdr_edge.receiver.admission import PracticeSlots
from xdr_edge.receiver.deadlines import BODY_DEADLINE_KEY
from xdr_edge.receiver.wsgi import content_length, status_line

log = logging.getLogger("xdr_edge.api")

StartResponse = Callable[..., Any]
_BUSY_RETRY_SECONDS = 1


@dataclass(frozen=True)
class ApiOptions:
    """Limits and places of the API besides its server.

    ``body_timeout``: seconds for the part of a request read before its caller is known (a JSON body, the
    request part of a form). ``max_requests_per_*``: calls in progress at once per client address, per
    application and per account (None: no limit).
    """

    spool: UploadSpool  # this process's private directory for multipart uploads while they are sent
    max_json_bytes: int = 32 * 1024 * 1024
    max_documents: int = 100
    body_timeout: float = 60.0
    max_requests_per_address: int | None = None
    max_requests_per_application: int | None = None
    max_requests_per_account: int | None = None


@dataclass
class _Call:
    """One call in progress: what its log line says, and the admission slots it holds until it ends."""

    request_id: str
    held: contextlib.ExitStack
    # our server's total deadline for the body, while the caller is unknown (receiver/deadlines.py)
    deadline: Callable[[float | None], None] | None = None
    started: float = field(default_factory=time.monotonic)
    call: str = "-"
    principal: Principal | None = None
    claimed: tuple[str, str] = ("-", "-")  # (applicationId, loginId) as presented, for refused credentials
    outcome: str = "-"
    status: int = 0


def _claimed(value: object, pattern: str) -> str:
    """An identity as presented, for the log: itself when it has the form of one, else ``?`` (it may be a
    password typed into the wrong field)."""
    if value is None:
        return "-"
    return value if isinstance(value, str) and re.match(pattern, value.lower()) else "?"


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
        self._document = json.dumps(
            openapi_document(max_documents=options.max_documents, max_json_bytes=options.max_json_bytes),
            indent=1,
        ).encode("utf-8")
        self._schemas = {
            name: request_schema(spec, max_documents=options.max_documents) for name, spec in CALLS.items()
        }
        self._form_schema = request_schema(CALLS["MessageSend"], without_documents=True)
        self._addresses = PracticeSlots(options.max_requests_per_address)
        self._applications = PracticeSlots(options.max_requests_per_application)
        self._accounts = PracticeSlots(options.max_requests_per_account)
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

    def close(self) -> None:
        """Stop the message leases and remove this process's spool directory."""
        self.messages.close()
        self.options.spool.close()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with contextlib.ExitStack() as held:
            call = _Call(uuid.uuid4().hex[:16], held)
            close = False
            extra: list[tuple[str, str]] = []
            try:
                status, answer, content_type = self._route(environ, call)
            except Refusal as refusal:
                status, content_type = refusal.status, "application/json"
                answer = json.dumps({"error": refusal.body(), "requestId": call.request_id}).encode("utf-8")
                call.outcome = refusal.code
                close = not environ.get("xdr_edge.api.body_read", False)
                if refusal.retry_after is not None:
                    extra.append(("Retry-After", str(refusal.retry_after)))
            except STOP_REQUESTS:
                raise
            except BaseException as exc:
                # the last line of defence: a JSON 500, never a traceback to the caller
                log_internal_error(
                    log, exc, "internal error in call=%s request_id=%s", call.call, call.request_id
                )
                status, content_type, close = 500, "application/json", True
                error = {"code": "internal-error", "message": "internal error; see the server log"}
                answer = json.dumps({"error": error, "requestId": call.request_id}).encode("utf-8")
                call.outcome = "internal-error"
        call.status = status
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(answer))),
            ("Cache-Control", "no-store"),
            ("X-Request-Id", call.request_id),
            *extra,
        ]
        if close:
            headers.append(("Connection", "close"))
        start_response(status_line(status), headers)
        self._log(call, environ)
        return [answer]

    def _log(self, call: _Call, environ: dict[str, Any]) -> None:
        p = call.principal
        application, login = (p.application_id or "-", p.login_id or "-") if p is not None else call.claimed
        log.info(
            "api call=%s request_id=%s flavour=%s application=%s login=%s account=%s user=%s outcome=%s "
            "status=%d client=%s duration_ms=%d",
            log_safe(call.call),
            call.request_id,
            p.flavour.value if p is not None else "-",
            log_safe(application),
            log_safe(login),
            log_safe(p.account_id or "-") if p is not None else "-",
            log_safe(p.user_id or "-") if p is not None else "-",
            call.outcome,
            call.status,
            log_safe(str(environ.get("REMOTE_ADDR", "-"))),
            (time.monotonic() - call.started) * 1000,
        )

    # -- routing ---------------------------------------------------------------------------------------

    def _route(self, environ: dict[str, Any], call: _Call) -> tuple[int, bytes, str]:
        path = str(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD", "")
        if path == f"{API_PREFIX}/openapi.json":
            call.call = "openapi.json"
            if method not in ("GET", "HEAD"):
                raise Refusal(405, "method-not-allowed", "GET the OpenAPI document")
            call.outcome = "ok"
            environ["xdr_edge.api.body_read"] = True
            return 200, self._document, "application/json"
        name = path.removeprefix(f"{API_PREFIX}/") if path.startswith(f"{API_PREFIX}/") else None
        spec = CALLS.get(name or "")
        if spec is None:
            raise Refusal(404, "unknown-call", f"no such call; see {API_PREFIX}/openapi.json")
        call.call = spec.name
        if method != "POST":
            raise Refusal(405, "method-not-allowed", f"{spec.name} is called with POST")
        self._take(
            call, self._addresses, str(environ.get("REMOTE_ADDR", "")), "client-busy", "this client address"
        )
        deadline = environ.get(BODY_DEADLINE_KEY)
        if callable(deadline):
            call.deadline = deadline
            deadline(self.options.body_timeout)  # until the caller is known
        try:
            answer = self._answer(environ, spec, call)
        except StoreError:
            log.exception("registry database error in call=%s", spec.name)
            raise Refusal(
                503, "store-unavailable", "the registry database is unavailable; retry later", retry_after=5
            ) from None
        except ConfigurationError as exc:
            # a registry rule the call did not translate: the registry's text may name other practices
            log.info("call=%s refused by the registry: %s", spec.name, exc)
            raise Refusal(409, "registry-refused", "the registry refused this change") from None
        call.outcome = "ok"
        return 200, json.dumps(answer).encode("utf-8"), "application/json"

    def _answer(self, environ: dict[str, Any], spec: CallSpec, call: _Call) -> dict[str, Any]:
        """The call's answer, from a JSON body or a multipart form."""
        # An unreadable Content-Type is as unsupported as another one (415), not an internal error.
        media = MediaType.parse_or_none(environ.get("CONTENT_TYPE"))
        if media is not None and media.matches("multipart/form-data") and spec.multipart:
            return self._send_form(environ, spec, call)
        if media is None or not media.matches("application/json"):
            kinds = "application/json" + (" or multipart/form-data" if spec.multipart else "")
            raise Refusal(415, "unsupported-media-type", f"send {kinds}", field="Content-Type")
        raw = read_limited(
            environ["wsgi.input"], content_length(environ), body_limit(spec, self.options.max_json_bytes)
        )
        environ["xdr_edge.api.body_read"] = True
        body = parse_json_object(raw)
        del raw
        principal = self._admit(spec, body, environ, call)
        check(body, self._schemas[spec.name])
        return self._handlers[spec.name](principal, body)

    def _admit(self, spec: CallSpec, body: dict[str, Any], environ: dict[str, Any], call: _Call) -> Principal:
        """Authenticate the body's ``auth``, check that this flavour may make this call and names the account
        it needs, and take the application's and the account's slots."""
        auth = body.get("auth")
        if auth is None:
            raise Refusal(401, "missing-credentials", "no auth object in the request", field="auth")
        check(auth, AUTH, "auth")
        call.claimed = (
            _claimed(auth.get("applicationId"), APPLICATION_ID_PATTERN),
            _claimed(auth.get("loginId"), LOGIN_ID_PATTERN),
        )
        principal = self.authenticator.authenticate(auth, str(environ.get("REMOTE_ADDR", "")))
        call.principal = principal
        if principal.flavour not in spec.flavours:
            raise Refusal(
                403,
                "flavour-not-allowed",
                f"{spec.name} needs application authentication (applicationId and applicationPassword)",
                field="auth",
            )
        self.accounts.check_named_account(principal, auth)
        if spec.needs_account and principal.flavour is Flavour.APPLICATION and principal.account_id is None:
            raise Refusal(
                400, "missing-field", f"auth.accountId is required for {spec.name}", field="auth.accountId"
            )
        assert principal.application_id is not None
        self._take(call, self._applications, principal.application_id, "application-busy", "this application")
        account = principal.practice_id or (
            f"{principal.application_id}.{principal.account_id}" if principal.account_id is not None else None
        )
        if account is not None:
            self._take(call, self._accounts, account, "account-busy", "this account")
        return principal

    @staticmethod
    def _take(call: _Call, slots: PracticeSlots, key: str, code: str, whose: str) -> None:
        """A slot of ``slots`` for ``key`` until the call ends, or 429 ``code``."""
        if not slots.try_acquire(key):
            raise Refusal(
                429,
                code,
                f"{whose} already has {slots.limit} calls in progress; retry when one has finished",
                retry_after=_BUSY_RETRY_SECONDS,
            )
        call.held.callback(slots.release, key)

    # -- MessageSend -----------------------------------------------------------------------------------

    def _send_json(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """MessageSend with base64 documents in the JSON body."""
        request = self.messages.prepare(principal, body)
        return self.messages.send(request, self.messages.json_documents(body))

    def _send_form(self, environ: dict[str, Any], spec: CallSpec, call: _Call) -> dict[str, Any]:
        """MessageSend as a streamed multipart form: admitted on its request part, documents spooled after."""
        prepared: list[SendRequest] = []

        def on_request(body: dict[str, Any]) -> None:
            principal = self._admit(spec, body, environ, call)
            if call.deadline is not None:
                call.deadline(None)  # the caller is known: documents go at the server's pacing from now
            check(body, self._form_schema)
            prepared.append(self.messages.prepare(principal, body))

        with FormUpload(
            environ["wsgi.input"],
            str(environ.get("CONTENT_TYPE", "")),
            spool=self.options.spool.directory,
            max_request_bytes=DEFAULT_MAX_BODY_BYTES,
            max_documents=self.options.max_documents,
            on_request=on_request,
        ) as form:
            _, uploaded = form.read()
            environ["xdr_edge.api.body_read"] = True
            documents = [Document(path=u.path, name=u.name, mime_type=u.mime_type) for u in uploaded]
            return self.messages.send(prepared[0], documents)
