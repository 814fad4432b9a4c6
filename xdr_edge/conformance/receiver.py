"""The receiver catalogue: test an XDR edge endpoint (the HISP side) the way the ONC Edge Testing Tool's XDR
receiver tests do (ETT 3add, 4a-4e, 5, 8, 9, 15a/b, 18, 19), and further (the Direct Edge Protocols IG, "XDR and
XDM for Direct Messaging", SOAP 1.2 Part 1, our practice-binding rule).

The catalogue is a table (:data:`RECEIVER_CASES`): each row names its id, title, whether it is required, its
source, what it expects, and either the request it sends with the judge of the answer, or a runner for cases
that need several exchanges or a TLS handshake of their own. Messages go out raw over the practice's TLS context
(:mod:`.exchange`), so a peer that fails to reject one is observed doing so. What the messages are:
:mod:`.messages`; how one answer is judged: :mod:`.judges`.
"""

from __future__ import annotations

__all__ = [
    "RECEIVER_CASES",
    "ReceiverCase",
    "ReceiverContext",
    "ReceiverTarget",
    "receiver_catalogue",
    "run_receiver",
]

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from xdr_edge.conformance.cases import CaseResult, Report, TestCase, Verdict, run_cases, select
from xdr_edge.conformance.exchange import Exchange, ExchangeKind, tls_context
from xdr_edge.conformance.judges import (
    code_note,
    judge_failure,
    judge_fault,
    judge_fault_code,
    judge_registry_answer,
    judge_success,
    not_answered,
    wrong_class,
)
from xdr_edge.conformance.messages import (
    UNREACHABLE_RECIPIENT,
    body_wrong_namespace,
    delivery_request,
    delivery_request_unreachable,
    drop_associations,
    drop_attribute,
    drop_creation_time,
    drop_document,
    drop_external_identifier,
    drop_second_entry,
    header_unqualified,
    mutated,
    no_address_block,
    no_sender_anywhere,
    plain_soap_request,
    remove_wsa,
    several_recipients,
    soap11,
    unbound_sender,
    unknown_action,
    unreadable_delivery_request,
    valid,
    wrong_hash,
    wrong_size,
)
from xdr_edge.conformance.receiver_context import Prepared, ReceiverContext, ReceiverTarget
from xdr_edge.protocol import ns
from xdr_edge.protocol.codes import (
    DUPLICATE_IN_REGISTRY,
    METADATA_ERRORS,
    MISSING_DOCUMENT,
    MISSING_DOCUMENT_METADATA,
    NON_IDENTICAL_HASH,
    NON_IDENTICAL_SIZE,
    REPOSITORY_ERROR,
    REPOSITORY_METADATA_ERROR,
)
from xdr_edge.protocol.model import MetadataLevel


@dataclass(frozen=True)
class ReceiverCase:
    """One row of the receiver catalogue.

    A case either sends one request (``send``) and judges the answer (``judge``), or runs itself (``run``: several
    exchanges, or a TLS handshake). ``shares`` names the case whose request this one judges again (sent once).
    """

    id: str
    title: str
    required: bool
    source: str
    expect: str
    send: Callable[[ReceiverContext], Prepared] | None = None
    judge: Callable[[Exchange], Verdict] | None = None
    run: Callable[[ReceiverContext], Verdict] | None = None
    shares: str | None = None

    def __post_init__(self) -> None:
        if (self.run is None) == (self.send is None or self.judge is None):
            raise ValueError(f"receiver case {self.id!r}: give send and judge, or run")

    def test_case(self) -> TestCase[ReceiverContext]:
        if self.run is not None:
            return TestCase(self.id, self.title, self.required, self.source, self.expect, self.run)
        send, judge, key = self.send, self.judge, self.shares or self.id
        assert send is not None and judge is not None  # checked in __post_init__
        return TestCase(
            self.id,
            self.title,
            self.required,
            self.source,
            self.expect,
            lambda ctx: judge(ctx.exchange(key, send)),
        )


def _reply_form(ctx: ReceiverContext) -> Verdict:
    ex = ctx.exchange("valid-minimal", valid())
    problem = not_answered(ex)
    if problem is not None:
        return problem
    notes = []
    action = ex.response.envelope.action if ex.response is not None else None
    if action != ns.ACTION_PNR_RESPONSE:
        notes.append(f"wsa:Action is {action!r}, expected {ns.ACTION_PNR_RESPONSE}")
    if not ex.content_type.lower().startswith("multipart/related"):
        notes.append(
            f"reply to an MTOM request is {ex.content_type.split(';')[0]!r}, not MTOM (ITI TF-2x V.3.6)"
        )
    observed = f"Action {action}, {ex.content_type.split(';')[0] or 'no Content-Type'}"
    return Verdict.check(not notes, observed, "; ".join(notes))


def _duplicate(ctx: ReceiverContext) -> Verdict:
    submission = ctx.submission()
    first = ctx.send(ctx.frame(submission))
    second = ctx.send(ctx.frame(submission))  # a retry: new MessageID, same uniqueIds
    observed = f"first: {first.describe()}; second: {second.describe()}"
    if first.kind is not ExchangeKind.SUCCESS:
        return Verdict.fail(observed, "the first submission was not accepted, so nothing can be a duplicate")
    if second.kind in (ExchangeKind.SUCCESS, ExchangeKind.PARTIAL):
        return Verdict.fail(
            observed,
            "the same SubmissionSet and DocumentEntry uniqueIds were accepted twice (ITI TF-3 4.2.4, ebRS 3.0)",
        )
    if second.kind is ExchangeKind.FAULT:
        return Verdict.ok(observed)
    if second.kind is not ExchangeKind.FAILURE:
        return Verdict.fail(observed, "the second answer is neither a Failure nor a fault")
    wrong = wrong_class(second.error_codes, allowed_duplicates=True)
    if wrong:
        return Verdict.fail(
            observed, f"errorCode {', '.join(wrong)} would make a sender retry or give up wrongly"
        )
    return Verdict.ok(observed, code_note(second.error_codes, (DUPLICATE_IN_REGISTRY,)))


def _document_unique_id_reused(ctx: ReceiverContext) -> Verdict:
    """A new SubmissionSet whose DocumentEntry reuses an accepted entry's uniqueId with other bytes (ITI TF-3 4.2.4, ebRS 3.0)."""
    first_submission = ctx.submission(("ccda",))
    first = ctx.send(ctx.frame(first_submission))
    reused_uid = first_submission.document_entries[0].unique_id
    other = ctx.submission(("pdf",))
    entry = dataclasses.replace(other.document_entries[0], unique_id=reused_uid)
    second = ctx.send(ctx.frame(dataclasses.replace(other, document_entries=(entry,))))
    observed = f"first: {first.describe()}; second: {second.describe()}"
    if first.kind is not ExchangeKind.SUCCESS:
        return Verdict.fail(observed, "the first submission was not accepted")
    if second.kind in (ExchangeKind.SUCCESS, ExchangeKind.PARTIAL):
        return Verdict.fail(
            observed,
            f"DocumentEntry uniqueId {reused_uid} was accepted again for different bytes (ITI TF-3 4.2.4, ebRS 3.0)",
        )
    verdict = judge_failure((NON_IDENTICAL_HASH,), allow_fault=True)(second)
    return Verdict(verdict.status, observed, verdict.detail)


def _tls_mutual(ctx: ReceiverContext) -> Verdict:
    ex = ctx.exchange("valid-minimal", valid())
    if ex.kind in (ExchangeKind.REFUSED, ExchangeKind.ERROR, ExchangeKind.SERVER_UNTRUSTED):
        return Verdict.fail(ex.describe(), "mutual TLS with the practice's certificate did not complete")
    return Verdict.ok(f"handshake completed; {ex.describe()}")


def _tls_refused(
    material: Callable[[ReceiverTarget], tuple[Path, Path] | None], what: str
) -> Callable[[ReceiverContext], Verdict]:
    def run(ctx: ReceiverContext) -> Verdict:
        pair = material(ctx.target)
        if pair is None:
            return Verdict.skip(f"no {what} certificate given (--{what}-cert/--{what}-key)")
        context = tls_context(ctx.target.ca_bundle, pair[0], pair[1])
        ex = ctx.send(ctx.frame(ctx.submission()), context=context)
        if ex.kind is ExchangeKind.REFUSED:
            return Verdict.ok(ex.describe())
        if ex.kind is ExchangeKind.SERVER_UNTRUSTED:
            return Verdict.fail(ex.describe(), "the endpoint's server certificate is not issued by --ca")
        if ex.kind is ExchangeKind.ERROR:
            return Verdict.fail(ex.describe())
        accepted = ex.kind in (ExchangeKind.SUCCESS, ExchangeKind.PARTIAL)
        return Verdict.fail(
            ex.describe(),
            f"the TLS handshake with an {what} client certificate completed and the endpoint "
            + ("accepted the submission" if accepted else "answered over HTTP")
            + "; it must be refused in the handshake (Direct Edge Protocols IG §1.1, ETT tests 6-9; our practice-binding rule; ETT 9/19)",
        )

    return run


def _tls_no_certificate(ctx: ReceiverContext) -> Verdict:
    context = tls_context(ctx.target.ca_bundle)
    ex = ctx.send(ctx.frame(ctx.submission()), context=context)
    if ex.kind is ExchangeKind.REFUSED:
        return Verdict.ok(ex.describe())
    if ex.kind is ExchangeKind.SERVER_UNTRUSTED:
        return Verdict.fail(ex.describe(), "the endpoint's server certificate is not issued by --ca")
    if ex.kind in (ExchangeKind.SUCCESS, ExchangeKind.PARTIAL):
        return Verdict.fail(
            ex.describe(),
            "a submission without any client certificate was accepted (Direct Edge Protocols IG §1.1, ETT tests 6-9)",
        )
    if ex.kind is ExchangeKind.ERROR:
        return Verdict.fail(ex.describe())
    return Verdict.ok(ex.describe(), "handshake allowed, request refused (a handshake refusal is preferred)")


_SUCCESS = "RegistryResponse Success, wsa:RelatesTo = request MessageID"
_FAULT = "SOAP Fault (any code)"
_FAILURE = "RegistryResponse Failure (errorCode reported)"
_REJECT = "RegistryResponse Failure or SOAP Sender fault"
_XDS = MetadataLevel.XDS
_MH = "wsa:MessageAddressingHeaderRequired"

#: Every receiver case, in the order they run (valid first, then SOAP, metadata, documents, TLS).
RECEIVER_CASES: tuple[ReceiverCase, ...] = (
    ReceiverCase(
        id="valid-minimal",
        title="valid C-CDA, minimal metadata",
        required=True,
        source="ETT 3add",
        expect=_SUCCESS,
        send=valid(),
        judge=judge_success,
    ),
    ReceiverCase(
        id="valid-full",
        title="valid C-CDA, full (XDS) metadata",
        required=True,
        source="ETT 5",
        expect=_SUCCESS,
        send=valid(("ccda",), _XDS),
        judge=judge_success,
    ),
    ReceiverCase(
        id="valid-recipients",
        title="valid, several direct:to recipients",
        required=True,
        source="XDR and XDM for Direct Messaging §4.1",
        expect=_SUCCESS,
        send=several_recipients,
        judge=judge_success,
    ),
    ReceiverCase(
        id="delivery-notification-request",
        title="address block asks for final-destination delivery (X-DIRECT-FINAL-DESTINATION-DELIVERY)",
        required=True,
        source="ETT MT 30, XDR and XDM for Direct Messaging §4.1",
        expect=_SUCCESS,
        send=delivery_request,
        judge=judge_success,
    ),
    ReceiverCase(
        id="delivery-notification-unreachable",
        title=f"delivery notification asked for, recipient {UNREACHABLE_RECIPIENT}",
        required=True,
        source="ETT MT 31, XDR and XDM for Direct Messaging §4.1",
        expect="a RegistryResponse (Success, or Failure naming the recipient), not a fault",
        send=delivery_request_unreachable,
        judge=judge_registry_answer,
    ),
    ReceiverCase(
        id="delivery-notification-unreadable",
        title="X-DIRECT-FINAL-DESTINATION-DELIVERY is neither true nor false",
        required=False,
        source="Delivery Notification IG §1.3",
        expect=_REJECT,
        send=mutated(unreadable_delivery_request),
        judge=judge_failure(METADATA_ERRORS, allow_fault=True),
    ),
    ReceiverCase(
        id="valid-pdf",
        title="valid PDF, minimal metadata",
        required=True,
        source="xdr-edge",
        expect=_SUCCESS,
        send=valid(("pdf",)),
        judge=judge_success,
    ),
    ReceiverCase(
        id="valid-documents",
        title="valid, two documents (C-CDA + PDF)",
        required=True,
        source="xdr-edge",
        expect=_SUCCESS,
        send=valid(("ccda", "pdf")),
        judge=judge_success,
    ),
    ReceiverCase(
        id="valid-reply-form",
        title="reply Action ...-bResponse, MTOM reply to MTOM request",
        required=False,
        source="ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding; ITI TF-2b 3.41.5, W3C MTOM/XOP",
        expect="Action ...-bResponse and a multipart/related reply",
        run=_reply_form,
    ),
    ReceiverCase(
        id="valid-no-address-block",
        title="no addressBlock, sender in authorTelecommunication",
        required=False,
        source="XDR and XDM for Direct Messaging §4.1 (DTS 427)",
        expect=_SUCCESS,
        send=mutated(no_address_block),
        judge=judge_success,
    ),
    ReceiverCase(
        id="plain-soap-inline",
        title="simple SOAP with inline base64 (no MTOM)",
        required=False,
        source="ITI TF-2b 3.41.5, non-MTOM form",
        expect=_SUCCESS,
        send=plain_soap_request,
        judge=judge_success,
    ),
    ReceiverCase(
        id="soap-header-namespace",
        title="S:Header not namespace-qualified",
        required=True,
        source="ETT 4a / 15a",
        expect=_FAULT,
        send=mutated(header_unqualified),
        judge=judge_fault,
    ),
    ReceiverCase(
        id="soap-header-namespace-code",
        title="... _FAULT code is Sender",
        required=False,
        source="SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3",
        expect="SOAP Fault Sender",
        send=mutated(header_unqualified),
        judge=judge_fault_code("Sender"),
        shares="soap-header-namespace",
    ),
    ReceiverCase(
        id="soap-body-namespace",
        title="S:Body in the 2005/03 namespace",
        required=True,
        source="ETT 4b / 15b",
        expect=_FAULT,
        send=mutated(body_wrong_namespace),
        judge=judge_fault,
    ),
    ReceiverCase(
        id="soap-body-namespace-code",
        title="... _FAULT code is Sender",
        required=False,
        source="SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3",
        expect="SOAP Fault Sender",
        send=mutated(body_wrong_namespace),
        judge=judge_fault_code("Sender"),
        shares="soap-body-namespace",
    ),
    ReceiverCase(
        id="soap-version",
        title="SOAP 1.1 envelope",
        required=True,
        source="ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding; SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3",
        expect=_FAULT,
        send=mutated(soap11),
        judge=judge_fault,
    ),
    ReceiverCase(
        id="soap-version-code",
        title="... _FAULT code is VersionMismatch",
        required=False,
        source="SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3 (SOAP 1.2 §5.4.6)",
        expect="SOAP Fault VersionMismatch",
        send=mutated(soap11),
        judge=judge_fault_code("VersionMismatch"),
        shares="soap-version",
    ),
    ReceiverCase(
        id="wsa-action-missing",
        title="no wsa:Action",
        required=True,
        source="ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding; SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3",
        expect=_FAULT,
        send=mutated(remove_wsa("Action")),
        judge=judge_fault,
    ),
    ReceiverCase(
        id="wsa-action-missing-code",
        title=f"... Sender / {_MH}",
        required=False,
        source="SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3 (WS-A SOAP binding §6.4)",
        expect=f"SOAP Fault Sender / {_MH}",
        send=mutated(remove_wsa("Action")),
        judge=judge_fault_code("Sender", _MH),
        shares="wsa-action-missing",
    ),
    ReceiverCase(
        id="wsa-message-id-missing",
        title="no wsa:MessageID",
        required=True,
        source="ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding (DTS 425), SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3",
        expect=_FAULT,
        send=mutated(remove_wsa("MessageID")),
        judge=judge_fault,
    ),
    ReceiverCase(
        id="wsa-message-id-missing-code",
        title=f"... Sender / {_MH}",
        required=False,
        source="SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3 (WS-A SOAP binding §6.4)",
        expect=f"SOAP Fault Sender / {_MH}",
        send=mutated(remove_wsa("MessageID")),
        judge=judge_fault_code("Sender", _MH),
        shares="wsa-message-id-missing",
    ),
    ReceiverCase(
        id="wsa-action-unknown",
        title="wsa:Action of another transaction",
        required=True,
        source="SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3",
        expect=_FAULT,
        send=mutated(unknown_action),
        judge=judge_fault,
    ),
    ReceiverCase(
        id="wsa-action-unknown-code",
        title="... Sender / wsa:ActionNotSupported",
        required=False,
        source="SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3",
        expect="SOAP Fault Sender / wsa:ActionNotSupported",
        send=mutated(unknown_action),
        judge=judge_fault_code("Sender", "wsa:ActionNotSupported"),
        shares="wsa-action-unknown",
    ),
    ReceiverCase(
        id="address-block-missing",
        title="no addressBlock and no authorTelecommunication",
        required=True,
        source="ETT 4c, XDR and XDM for Direct Messaging §4.1",
        expect=_REJECT,
        send=mutated(no_sender_anywhere),
        judge=judge_failure(METADATA_ERRORS, allow_fault=True),
    ),
    ReceiverCase(
        id="metadata-de-unique-id",
        title="DocumentEntry uniqueId missing",
        required=True,
        source="ETT 4d (1)",
        expect=_FAILURE,
        send=mutated(drop_external_identifier(ns.DE_UNIQUE_ID)),
        judge=judge_failure(METADATA_ERRORS),
    ),
    ReceiverCase(
        id="metadata-ss-source-id",
        title="SubmissionSet sourceId missing",
        required=True,
        source="ETT 4d (2)",
        expect=_FAILURE,
        send=mutated(drop_external_identifier(ns.SS_SOURCE_ID)),
        judge=judge_failure(METADATA_ERRORS),
    ),
    ReceiverCase(
        id="metadata-mime-type",
        title="DocumentEntry mimeType missing",
        required=True,
        source="ETT 4d (3)",
        expect=_FAILURE,
        send=mutated(drop_attribute("mimeType")),
        judge=judge_failure(METADATA_ERRORS),
    ),
    ReceiverCase(
        id="metadata-entry-id",
        title="ExtrinsicObject id missing",
        required=True,
        source="ETT 4d (4)",
        expect=_FAILURE,
        send=mutated(drop_attribute("id")),
        judge=judge_failure((*METADATA_ERRORS, MISSING_DOCUMENT_METADATA)),
    ),
    ReceiverCase(
        id="metadata-creation-time",
        title="creationTime missing at the XDS level",
        required=True,
        source="ETT 4d (5)",
        expect=_FAILURE,
        send=mutated(drop_creation_time, ("ccda",), _XDS),
        judge=judge_failure(METADATA_ERRORS),
    ),
    ReceiverCase(
        id="association-missing",
        title="no HasMember association",
        required=True,
        source="ETT 4e",
        expect=_FAILURE,
        send=mutated(drop_associations),
        judge=judge_failure(METADATA_ERRORS),
    ),
    ReceiverCase(
        id="hash-mismatch",
        title="declared hash differs from the bytes",
        required=True,
        source="ITI TF-3 4.2.4, ebRS 3.0; NIST XDS toolkit validators",
        expect=_FAILURE,
        send=mutated(wrong_hash),
        judge=judge_failure((REPOSITORY_METADATA_ERROR, NON_IDENTICAL_HASH)),
    ),
    ReceiverCase(
        id="size-mismatch",
        title="declared size differs from the bytes",
        required=True,
        source="ITI TF-3 4.2.4, ebRS 3.0; NIST XDS toolkit validators",
        expect=_FAILURE,
        send=mutated(wrong_size),
        judge=judge_failure((REPOSITORY_METADATA_ERROR, NON_IDENTICAL_SIZE)),
    ),
    ReceiverCase(
        id="document-without-metadata",
        title="a Document and MIME part with no DocumentEntry",
        required=True,
        source="ITI TF-3 4.2.4, NIST repository checks",
        expect=_FAILURE,
        send=mutated(drop_second_entry, ("ccda", "pdf")),
        judge=judge_failure((MISSING_DOCUMENT_METADATA,)),
    ),
    ReceiverCase(
        id="metadata-without-document",
        title="a DocumentEntry with no Document or MIME part",
        required=True,
        source="ITI TF-3 4.2.4, NIST repository checks",
        expect=_FAILURE,
        send=mutated(drop_document),
        judge=judge_failure((MISSING_DOCUMENT,)),
    ),
    ReceiverCase(
        id="unbound-sender",
        title="direct:from not bound to the certificate's practice",
        required=True,
        source="our practice-binding rule",
        expect=_REJECT,
        send=unbound_sender,
        judge=judge_failure((REPOSITORY_ERROR,), allow_fault=True),
    ),
    ReceiverCase(
        id="duplicate-submission",
        title="the same uniqueIds submitted twice",
        required=True,
        source="ITI TF-3 4.2.4, ebRS 3.0",
        expect="first Success; second Failure (or _FAULT), not Success",
        run=_duplicate,
    ),
    ReceiverCase(
        id="document-unique-id-reused",
        title="a new SubmissionSet reusing an accepted DocumentEntry uniqueId for other bytes",
        required=False,
        source="ITI TF-3 4.2.4, ebRS 3.0 (XDSNonIdenticalHash, ONC XDR checklist DTS 239)",
        expect="second submission refused (Failure or _FAULT)",
        run=_document_unique_id_reused,
    ),
    ReceiverCase(
        id="tls-mutual",
        title="mutual TLS with the practice's certificate",
        required=True,
        source="ETT 8 / 18",
        expect="handshake completes, HTTP answer",
        run=_tls_mutual,
    ),
    ReceiverCase(
        id="tls-untrusted-ca",
        title="client certificate from an untrusted CA",
        required=True,
        source="ETT 9 / 19",
        expect="TLS handshake refused",
        run=_tls_refused(lambda t: t.untrusted, "untrusted"),
    ),
    ReceiverCase(
        id="tls-expired",
        title="expired client certificate",
        required=True,
        source="ETT 9 (expired material), our practice-binding rule",
        expect="TLS handshake refused",
        run=_tls_refused(lambda t: t.expired, "expired"),
    ),
    ReceiverCase(
        id="tls-no-certificate",
        title="no client certificate at all",
        required=True,
        source="Direct Edge Protocols IG §1.1, ETT tests 6-9",
        expect="TLS handshake or request refused",
        run=_tls_no_certificate,
    ),
)


def receiver_catalogue() -> tuple[TestCase[ReceiverContext], ...]:
    """Every receiver case as a runnable :class:`TestCase`, in table order."""
    return tuple(row.test_case() for row in RECEIVER_CASES)


def run_receiver(
    target: ReceiverTarget,
    *,
    only: Sequence[str] = (),
    on_result: Callable[[CaseResult], None] | None = None,
) -> Report:
    """Run the receiver catalogue (or the cases named in ``only``) against ``target``."""
    cases = select(receiver_catalogue(), only)
    context = ReceiverContext(target)
    return run_cases(cases, context, mode="receiver", target=target.endpoint, on_result=on_result)
