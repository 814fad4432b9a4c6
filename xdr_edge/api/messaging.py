"""``MessageSend`` and ``MessageStatus``: sending documents for a practice with its own certificate, and reading
back what happened.

Order of a send, each step able to stop it before anything leaves the machine:

1. the practice is the login's own, or the application's ``auth.accountId``; it must be active;
2. the sender address must be bound to that practice in the registry (our practice-binding rule): else 422,
   before any document is read from a multipart upload;
3. the practice needs a sending credential: an enrolled, unrevoked, currently valid certificate whose key the
   API holds (:mod:`.credentials`); the newest-expiring one is used;
4. compose the submission (a declared media type is kept, :attr:`~xdr_edge.protocol.model.Document.mime_type`);
5. record the message (no PHI: addresses, counts, sizes), send through the shared :class:`XdrClient`, whose
   pre-flight (binding, certificate coverage, metadata) runs once, then one TLS session per practice, retries
   with the same uniqueIds; record the typed outcome and answer it.

Whatever stops a send after it was recorded and before a byte left (the client's pre-flight, an unreadable
credential, a bug) is recorded as ``NotSent``: :meth:`XdrClient.send` raises only before anything was sent,
and reports everything on the wire in its result. Library error codes never reach the caller as such: each
is answered with one of the API's documented codes.

Once the HISP has answered, the answer is the caller's whatever happens to our record of it: when the
outcome cannot be recorded (the database went away), the call still answers it, marked ``"recorded": false``,
so that the caller does not send the documents again.

While a message is being sent its record carries a *lease*: the time until which the sending API process
vouches for it, renewed every :data:`RENEW_FRACTION` of its length by that process. ``MessageStatus``, in any
process sharing the database, says ``sending`` while the lease holds and ``interrupted`` once it has run out
(the process stopped mid-send: the outcome is unknown, the HISP may have the message).
"""

from __future__ import annotations

__all__ = ["DEFAULT_LEASE_SECONDS", "MessageCalls", "SendRequest"]

import base64
import binascii
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from xdr_edge.api.auth import Principal
from xdr_edge.api.calls import AccountCalls, Target
from xdr_edge.api.refusals import Refusal
from xdr_edge.practice import ClientCredential, Practice
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import (
    CertificateError,
    LocalProtocolError,
    NotBound,
    ValidationFailed,
    XdrError,
)
from xdr_edge.protocol.model import DirectAddress, Document, MetadataLevel, Submission
from xdr_edge.registry.accounts import MessageRecord
from xdr_edge.registry.records import JsonValue
from xdr_edge.sender.client import SendResult, XdrClient

log = logging.getLogger("xdr_edge.api")

#: How long a sending process vouches for a message it is sending, renewed well before it runs out.
DEFAULT_LEASE_SECONDS = 90.0
RENEW_FRACTION = 1 / 3
_LEASE = "lease_until"


@dataclass(frozen=True)
class SendRequest:
    """A checked MessageSend before its documents: who, for which practice, from and to whom."""

    principal: Principal
    target: Target
    practice: Practice
    sender: DirectAddress
    recipients: tuple[DirectAddress, ...]
    body: dict[str, Any]


def _address(text: str, field: str) -> DirectAddress:
    try:
        return DirectAddress.parse(text)
    except ValueError:
        raise Refusal(
            400, "invalid-field", f"{field}: not a Direct address (user@domain)", field=field
        ) from None


def _not_sent(exc: XdrError) -> Refusal:
    """How a send the client refused before sending is answered: the API's own codes, no library text that
    could name files or repeat values."""
    if isinstance(exc, NotBound):
        if exc.code == "sender-not-in-certificate":
            return Refusal(
                422,
                "sender-not-in-certificate",
                "from: the account's sending certificate does not name this address or its domain; nothing "
                "was sent",
                field="from",
            )
        return Refusal(
            422, "sender-not-bound", "from: not bound to this account; nothing was sent", field="from"
        )
    if isinstance(exc, ValidationFailed):
        first = next((f for f in exc.findings if f.is_error), None)
        where = f": {first.code} at {first.location}" if first is not None else ""
        return Refusal(
            400,
            "validation-failed",
            f"the message's metadata is not valid{where}; nothing was sent",
            field="metadata",
        )
    if isinstance(exc, CertificateError):
        return Refusal(
            409,
            "certificate-unusable",
            "the account's sending certificate cannot be used (expired, not yet valid or unreadable); nothing "
            "was sent",
        )
    if isinstance(exc, LocalProtocolError):
        return Refusal(
            400,
            "invalid-message",
            f"the message could not be built ({exc.code}); nothing was sent",
            field="documents",
        )
    return Refusal(409, "not-sent", "the message could not be sent; nothing left this server")


class MessageCalls:
    """The two message calls over the account calls' tenancy; thread-safe.

    Holds the leases of the messages this process is sending, renewed by one thread while any is in progress
    (:meth:`close` stops it)."""

    def __init__(
        self,
        accounts: AccountCalls,
        client: XdrClient | None,
        *,
        level: MetadataLevel,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.accounts = accounts
        self.client = client
        self.level = level
        self.lease_seconds = lease_seconds
        self._lock = threading.Lock()
        self._sending: set[str] = set()
        self._renewer: threading.Thread | None = None
        self._closed = threading.Event()

    # -- MessageSend -----------------------------------------------------------------------------------

    def prepare(self, principal: Principal, body: dict[str, Any]) -> SendRequest:
        """Steps 1-3: everything that can refuse the message before its documents are read."""
        if self.client is None:
            raise Refusal(
                503,
                "sending-not-configured",
                "this server has no [sender] endpoint configured; nothing was sent",
            )
        target = self.accounts.target(principal)
        practice = self.accounts.registry.practice(target.practice_id)
        if practice is None or not practice.active:
            raise Refusal(
                403, "account-inactive", "this account is inactive; nothing was sent", field="auth.accountId"
            )
        sender = _address(body["from"], "from")
        recipients = tuple(_address(text, f"to[{i}]") for i, text in enumerate(body["to"]))
        decision = self.accounts.registry.authorize_sender(practice, sender)
        if not decision.allowed:
            raise Refusal(
                422,
                "sender-not-bound",
                "from: not bound to this account; bind it with AddressBind; nothing was sent",
                field="from",
            )
        sending = Practice(
            id=practice.id,
            name=practice.name,
            active=practice.active,
            bindings=practice.bindings,
            credential=self._credential(target),
        )
        return SendRequest(principal, target, sending, sender, recipients, body)

    def _credential(self, target: Target) -> ClientCredential:
        usable = self.accounts.sending_certificates(target.practice_id)
        best = max(usable, key=lambda r: r.not_after) if usable else None
        credential = self.accounts.vault.credential(best.fingerprint_sha256) if best is not None else None
        if credential is None:
            raise Refusal(
                409,
                "no-sending-certificate",
                "this account has no valid certificate with its key to send with; enrol one with "
                "CertificateEnroll (certificate and privateKey, or pkcs12); nothing was sent",
            )
        return credential

    @staticmethod
    def json_documents(body: dict[str, Any]) -> list[Document]:
        """The base64 ``documents`` of a JSON MessageSend, with their declared names and media types."""
        documents = []
        for index, item in enumerate(body["documents"]):
            field = f"documents[{index}].content"
            try:
                data = base64.b64decode(item["content"], validate=True)
            except (binascii.Error, ValueError):
                raise Refusal(400, "invalid-field", f"{field}: not base64", field=field) from None
            if not data:
                raise Refusal(400, "invalid-field", f"{field}: empty document", field=field)
            mime_type = item.get("mimeType")
            documents.append(
                Document.from_bytes(
                    data, name=item.get("name"), mime_type=mime_type.lower() if mime_type else None
                )
            )
        return documents

    def _compose(self, request: SendRequest, documents: Sequence[Document]) -> Submission:
        metadata = request.body.get("metadata", {})
        level = MetadataLevel.parse(metadata["level"]) if "level" in metadata else self.level
        try:
            return compose(
                list(documents),
                sender=request.sender,
                recipients=list(request.recipients),
                level=level,
                patient_id=metadata.get("patientId"),
                title=metadata.get("title"),
                comments=metadata.get("comments"),
                final_destination_delivery=metadata.get("finalDeliveryNotification", False),
            )
        except LocalProtocolError as exc:
            raise _not_sent(exc) from None

    def send(self, request: SendRequest, documents: Sequence[Document]) -> dict[str, Any]:
        """Steps 4-5: compose, record, send once through the client, record and answer the outcome."""
        assert self.client is not None
        submission = self._compose(request, documents)
        principal = request.principal
        record = MessageRecord(
            id=uuid.uuid4().hex,
            practice_id=request.target.practice_id,
            application_id=principal.application_id,
            login_id=principal.login_id,
            user_id=principal.user_id,
            sender=str(request.sender),
            recipients=tuple(str(r) for r in request.recipients),
            document_count=len(documents),
            total_bytes=sum(entry.size or 0 for entry in submission.document_entries),
            created_at=datetime.now(UTC),
            detail=self._lease(),
        )
        self.accounts.store.add_message(record)
        self._hold(record.id)
        try:
            result = self.client.send(submission, practice=request.practice)
        except XdrError as exc:
            self._record_not_sent(record.id, exc.code)
            raise _not_sent(exc) from None
        except BaseException:
            self._record_not_sent(
                record.id, "internal-error"
            )  # raised before anything was sent (send's contract)
            raise
        finally:
            self._release(record.id)
        detail = _result_detail(result)
        finished = datetime.now(UTC)
        try:
            self.accounts.store.finish_message(record.id, result.outcome.value, detail, finished)
        except Exception:
            # The HISP answered: that answer is the caller's, or it would send the documents again.
            log.exception(
                "message_id=%s was sent (outcome %s) but could not be recorded",
                record.id,
                result.outcome.value,
            )
            done = replace(record, outcome=result.outcome.value, detail=detail, finished_at=finished)
            return {"message": {**self.view(done, request.target.account_id), "recorded": False}}
        stored = self.accounts.store.message(record.id)
        assert stored is not None
        return {"message": self.view(stored, request.target.account_id)}

    def _record_not_sent(self, message_id: str, code: str) -> None:
        failed: dict[str, JsonValue] = {"error": code}
        try:
            self.accounts.store.finish_message(message_id, "NotSent", failed, datetime.now(UTC))
        except Exception:
            log.exception("message_id=%s was not sent, and that could not be recorded", message_id)

    # -- leases ----------------------------------------------------------------------------------------

    def _lease(self) -> dict[str, JsonValue]:
        return {_LEASE: (datetime.now(UTC) + timedelta(seconds=self.lease_seconds)).isoformat()}

    def _hold(self, message_id: str) -> None:
        with self._lock:
            self._sending.add(message_id)
            if (self._renewer is None or not self._renewer.is_alive()) and not self._closed.is_set():
                self._renewer = threading.Thread(target=self._renew, name="xdr-edge-api-leases", daemon=True)
                self._renewer.start()

    def _release(self, message_id: str) -> None:
        with self._lock:
            self._sending.discard(message_id)

    def _renew(self) -> None:
        while not self._closed.wait(self.lease_seconds * RENEW_FRACTION):
            with self._lock:
                sending = sorted(self._sending)
                if not sending:
                    self._renewer = None
                    return
            for message_id in sending:
                try:
                    self.accounts.store.renew_message(message_id, self._lease())
                except Exception:
                    log.warning("could not renew the lease of message_id=%s", message_id, exc_info=True)

    def close(self) -> None:
        """Stop renewing leases (sends still in progress then look interrupted to others once theirs run
        out, as they would if this process had stopped)."""
        self._closed.set()
        with self._lock:
            renewer = self._renewer
        if renewer is not None:
            renewer.join(timeout=5)

    # -- MessageStatus ---------------------------------------------------------------------------------

    def status(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """MessageStatus: a message of the same account."""
        target = self.accounts.target(principal)
        record = self.accounts.store.message(body["messageId"])
        if record is None or record.practice_id != target.practice_id:
            raise Refusal(
                404, "message-not-found", "no message with this id for this account", field="messageId"
            )
        return {"message": self.view(record, target.account_id)}

    def view(self, record: MessageRecord, account_id: str) -> dict[str, Any]:
        """A message as the API shows it."""
        view: dict[str, Any] = {
            "messageId": record.id,
            "accountId": account_id,
            "from": record.sender,
            "to": list(record.recipients),
            "documents": record.document_count,
            "bytes": record.total_bytes,
            "createdAt": record.created_at.isoformat(),
        }
        if record.outcome is None:
            view["state"] = "sending" if self._leased(record) else "interrupted"
        else:
            view["state"] = "done"
            view["outcome"] = record.outcome
            view["ok"] = record.outcome in ("Success", "PartialSuccess")
            view["result"] = record.detail
            if record.finished_at is not None:
                view["finishedAt"] = record.finished_at.isoformat()
        return view

    def _leased(self, record: MessageRecord) -> bool:
        """Whether the process sending the message still vouches for it (records without a lease: as long as
        a lease would have lasted)."""
        until = record.detail.get(_LEASE)
        try:
            expires = datetime.fromisoformat(until) if isinstance(until, str) else None
        except ValueError:
            expires = None
        if expires is None:
            expires = record.created_at + timedelta(seconds=self.lease_seconds)
        return datetime.now(UTC) < expires


def _result_detail(result: SendResult) -> dict[str, JsonValue]:
    """What is kept of a send result: identifiers, status and the HISP's answer, no document content."""
    data = result.as_dict()
    keep = (
        "message",
        "message_id",
        "message_ids",
        "submission_set_unique_id",
        "document_unique_ids",
        "http_status",
        "attempts",
        "bytes_sent",
        "already_delivered",
        "errors",
        "fault",
        "elapsed_seconds",
    )
    return {key: data[key] for key in keep}
