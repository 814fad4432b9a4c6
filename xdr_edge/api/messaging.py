"""``MessageSend`` and ``MessageStatus``: sending documents for a practice with its own certificate, and reading
back what happened.

Order of a send, each step able to stop it before anything leaves the machine:

1. the practice is the login's own, or the application's ``auth.accountId``; it must be active;
2. the sender address must be bound to that practice in the registry (our practice-binding rule): else 422,
   before any document is read from a multipart upload;
3. the practice needs a sending credential: an enrolled, unrevoked, currently valid certificate whose key the
   API holds (:mod:`.credentials`); the newest-expiring one is used;
4. compose the submission and run :meth:`XdrClient.preflight` (binding, certificate coverage, metadata);
5. record the message (no PHI: addresses, counts, sizes), send through the shared :class:`XdrClient` (one TLS
   session per practice, retries with the same uniqueIds), record the typed outcome and answer it.

A message whose send was interrupted (the API stopped) keeps no outcome; ``MessageStatus`` then says
``interrupted`` and the caller can tell it from one still being sent.
"""

from __future__ import annotations

__all__ = ["MessageCalls", "SendRequest"]

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from xdr_edge.api.auth import Principal
from xdr_edge.api.calls import AccountCalls, Target
from xdr_edge.api.refusals import Refusal
from xdr_edge.practice import Practice
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import (
    CertificateError,
    ConfigurationError,
    LocalProtocolError,
    NotBound,
    ValidationFailed,
)
from xdr_edge.protocol.model import DirectAddress, Document, MetadataLevel
from xdr_edge.registry.accounts import MessageRecord
from xdr_edge.registry.records import JsonValue
from xdr_edge.sender.client import SendResult, XdrClient


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


class MessageCalls:
    """The two message calls over the account calls' tenancy; thread-safe."""

    def __init__(self, accounts: AccountCalls, client: XdrClient | None, *, level: MetadataLevel) -> None:
        self.accounts = accounts
        self.client = client
        self.level = level
        self.started_at = datetime.now(UTC)  # a record older than this without an outcome was interrupted

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
                f"from: {sender} is not bound to this account; bind it with AddressBind; nothing was sent",
                field="from",
            )
        credential = self._credential(target)
        sending = Practice(
            id=practice.id,
            name=practice.name,
            active=practice.active,
            bindings=practice.bindings,
            credential=credential,
        )
        return SendRequest(principal, target, sending, sender, recipients, body)

    def _credential(self, target: Target) -> Any:
        now = datetime.now(UTC)
        usable = [
            record
            for record in self.accounts.registry.certificates(target.practice_id)
            if not record.revoked
            and record.not_before <= now < record.not_after
            and self.accounts.vault.has(record.fingerprint_sha256)
        ]
        if not usable:
            raise Refusal(
                409,
                "no-sending-certificate",
                "this account has no valid certificate with its key to send with; enrol one with "
                "CertificateEnroll (certificate and privateKey, or pkcs12); nothing was sent",
            )
        best = max(usable, key=lambda r: r.not_after)
        return self.accounts.vault.credential(best.fingerprint_sha256)

    @staticmethod
    def json_documents(body: dict[str, Any]) -> list[Document]:
        documents = []
        for index, item in enumerate(body["documents"]):
            field = f"documents[{index}].content"
            try:
                data = base64.b64decode(item["content"], validate=True)
            except (binascii.Error, ValueError):
                raise Refusal(400, "invalid-field", f"{field}: not base64", field=field) from None
            if not data:
                raise Refusal(400, "invalid-field", f"{field}: empty document", field=field)
            documents.append(Document.from_bytes(data, name=item.get("name")))
        return documents

    def send(self, request: SendRequest, documents: Sequence[Document], total_bytes: int) -> dict[str, Any]:
        """Steps 4-5."""
        assert self.client is not None
        metadata = request.body.get("metadata") or {}
        level = MetadataLevel.parse(metadata["level"]) if "level" in metadata else self.level
        try:
            submission = compose(
                list(documents),
                sender=request.sender,
                recipients=list(request.recipients),
                level=level,
                patient_id=metadata.get("patientId"),
                title=metadata.get("title"),
                comments=metadata.get("comments"),
                final_destination_delivery=bool(metadata.get("finalDeliveryNotification", False)),
            )
            self.client.preflight(submission, request.practice)
        except NotBound as exc:
            raise Refusal(422, exc.code, f"from: {exc.message}", field="from") from None
        except ValidationFailed as exc:
            first = next((f for f in exc.findings if f.is_error), None)
            detail = f"{first.message} (at {first.location})" if first is not None else exc.message
            raise Refusal(
                400, "validation-failed", f"the message's metadata is not valid: {detail}", field="metadata"
            ) from None
        except LocalProtocolError as exc:
            raise Refusal(400, exc.code, exc.message, field="documents") from None
        except CertificateError as exc:
            raise Refusal(
                409,
                exc.code,
                "the account's sending certificate cannot be used (expired, not yet valid or unreadable)",
            ) from None
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
            total_bytes=total_bytes,
            created_at=datetime.now(UTC),
        )
        self.accounts.store.add_message(record)
        try:
            result = self.client.send(submission, practice=request.practice)
        except (ConfigurationError, CertificateError, LocalProtocolError) as exc:
            failed: dict[str, JsonValue] = {"error": exc.code}
            self.accounts.store.finish_message(record.id, "NotSent", failed, datetime.now(UTC))
            raise Refusal(409, exc.code, "the message could not be sent; nothing left this server") from None
        self.accounts.store.finish_message(
            record.id, result.outcome.value, _result_detail(result), datetime.now(UTC)
        )
        stored = self.accounts.store.message(record.id)
        assert stored is not None
        return {"message": self.view(stored, request.target.account_id)}

    # -- MessageStatus ---------------------------------------------------------------------------------

    def status(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        target = self.accounts.target(principal)
        record = self.accounts.store.message(body["messageId"])
        if record is None or record.practice_id != target.practice_id:
            raise Refusal(
                404, "message-not-found", "no message with this id for this account", field="messageId"
            )
        return {"message": self.view(record, target.account_id)}

    def view(self, record: MessageRecord, account_id: str) -> dict[str, Any]:
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
            view["state"] = "interrupted" if record.created_at < self.started_at else "sending"
        else:
            view["state"] = "done"
            view["outcome"] = record.outcome
            view["ok"] = record.outcome in ("Success", "PartialSuccess")
            view["result"] = record.detail
            if record.finished_at is not None:
                view["finishedAt"] = record.finished_at.isoformat()
        return view


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
