"""The receiver catalogue: test an XDR edge endpoint (the HISP side) the way the ONC Edge Testing Tool's XDR
receiver tests do (ETT 3add, 4a-4e, 5, 8, 9, 15a/b, 18, 19), and further (the Direct Edge Protocols IG, "XDR and
XDM for Direct Messaging", SOAP 1.2 Part 1 and 2, WS-Addressing 1.0, our practice-binding rule).

The catalogue is a table (:data:`RECEIVER_CASES`): each row names its id, title, whether it is required, its
source, what it expects, and either the request it sends with the judge of the answer, or a runner for cases
that need several exchanges, a TLS handshake of their own, or every answer of the run. Messages go out raw over
the practice's TLS context (:mod:`.exchange`), so a peer that fails to reject one is observed doing so. What the
messages are: :mod:`.messages`; how one answer is judged: :mod:`.judges`; the cases of several exchanges:
:mod:`.scenarios`; what every answer must carry (RelatesTo, Action, media type, ...): :mod:`.replies`.
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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xdr_edge.conformance.cases import CaseResult, Report, TestCase, Verdict, run_cases, select
from xdr_edge.conformance.exchange import Exchange
from xdr_edge.conformance.judges import (
    judge_failure,
    judge_fault,
    judge_fault_code,
    judge_registry_answer,
    judge_success,
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
from xdr_edge.conformance.receiver_context import Answer, Prepared, ReceiverContext, ReceiverTarget
from xdr_edge.conformance.replies import (
    AnswerCheck,
    Probe,
    check_action_must_understand,
    check_fault_action,
    check_http_status,
    check_media_type,
    check_mtom_form,
    check_relates_to,
    check_response_action,
    every_answer,
    is_answer,
    is_answer_to_mtom,
    is_fault_to_intact_envelope,
    is_registry_response,
    relates_to_applies,
)
from xdr_edge.conformance.scenarios import (
    document_unique_id_reused,
    duplicate,
    tls_mutual,
    tls_no_certificate,
    tls_refused,
)
from xdr_edge.protocol import ns
from xdr_edge.protocol.codes import (
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
    exchanges, a TLS handshake, or every answer of the run). ``shares`` names the case whose request this one
    judges again (sent once).
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
        case_id, run, send, judge, key = self.id, self.run, self.send, self.judge, self.shares or self.id

        def run_case(ctx: ReceiverContext) -> Verdict:
            ctx.current_case = case_id  # every answer this case gets is logged under its id
            if run is not None:
                return run(ctx)
            assert send is not None and judge is not None  # checked in __post_init__
            return judge(ctx.exchange(key, send))

        return TestCase(self.id, self.title, self.required, self.source, self.expect, run_case)


_SUCCESS = "RegistryResponse Success"
_FAULT = "SOAP Fault (any code)"
_FAILURE = "RegistryResponse Failure (errorCode reported)"
_REJECT = "RegistryResponse Failure or SOAP Sender fault"
_XDS = MetadataLevel.XDS
_MH = "wsa:MessageAddressingHeaderRequired"

# Messages several rows send (a ``-code`` row shares its parent's exchange; the reply cases probe with them).
_VALID = valid()
_HEADER_UNQUALIFIED = mutated(header_unqualified, envelope_intact=False)
_BODY_WRONG_NAMESPACE = mutated(body_wrong_namespace, envelope_intact=False)
_SOAP11 = mutated(soap11, envelope_intact=False)
_NO_ACTION = mutated(remove_wsa("Action"))
_NO_MESSAGE_ID = mutated(remove_wsa("MessageID"))
_UNKNOWN_ACTION = mutated(unknown_action)
_NO_DE_UNIQUE_ID = mutated(drop_external_identifier(ns.DE_UNIQUE_ID))

#: What the ``reply-*`` cases make sure the run has answers to: a Success, a Failure and a fault whose request
#: MessageID was readable (sent only when a partial run, ``--only reply``, has not sent them already).
_PROBES: tuple[Probe, ...] = (
    ("valid-minimal", _VALID),
    ("metadata-de-unique-id", _NO_DE_UNIQUE_ID),
    ("wsa-action-unknown", _UNKNOWN_ACTION),
)


def _every(
    check: AnswerCheck, applies: Callable[[Answer], bool], what: str
) -> Callable[[ReceiverContext], Verdict]:
    return every_answer(check, applies=applies, what=what, probes=_PROBES)


#: Every receiver case, in the order they run (valid first, then SOAP, metadata, documents, TLS).
RECEIVER_CASES: tuple[ReceiverCase, ...] = (
    ReceiverCase(
        id="valid-minimal",
        title="valid C-CDA, minimal metadata",
        required=True,
        source="ETT 3add",
        expect=_SUCCESS,
        send=_VALID,
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
        source="ITI TF-2b 3.41 (documents of any mimeType), XDR and XDM for Direct Messaging",
        expect=_SUCCESS,
        send=valid(("pdf",)),
        judge=judge_success,
    ),
    ReceiverCase(
        id="valid-documents",
        title="valid, two documents (C-CDA + PDF)",
        required=True,
        source="ITI TF-2b 3.41 (one or more documents per submission)",
        expect=_SUCCESS,
        send=valid(("ccda", "pdf")),
        judge=judge_success,
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
        send=_HEADER_UNQUALIFIED,
        judge=judge_fault,
    ),
    ReceiverCase(
        id="soap-header-namespace-code",
        title="... the fault code is Sender",
        required=False,
        source="SOAP 1.2 Part 1 §5.4.6 (Sender)",
        expect="SOAP Fault Sender",
        send=_HEADER_UNQUALIFIED,
        judge=judge_fault_code("Sender"),
        shares="soap-header-namespace",
    ),
    ReceiverCase(
        id="soap-body-namespace",
        title="S:Body in the 2005/03 namespace",
        required=True,
        source="ETT 4b / 15b",
        expect=_FAULT,
        send=_BODY_WRONG_NAMESPACE,
        judge=judge_fault,
    ),
    ReceiverCase(
        id="soap-body-namespace-code",
        title="... the fault code is Sender",
        required=False,
        source="SOAP 1.2 Part 1 §5.4.6 (Sender)",
        expect="SOAP Fault Sender",
        send=_BODY_WRONG_NAMESPACE,
        judge=judge_fault_code("Sender"),
        shares="soap-body-namespace",
    ),
    ReceiverCase(
        id="soap-version",
        title="SOAP 1.1 envelope",
        required=True,
        source="ITI TF-2x V.3 (SOAP 1.2 only), SOAP 1.2 Part 1 §5.4",
        expect=_FAULT,
        send=_SOAP11,
        judge=judge_fault,
    ),
    ReceiverCase(
        id="soap-version-code",
        title="... the fault code is VersionMismatch",
        required=False,
        source="SOAP 1.2 Part 1 §5.4.6 (VersionMismatch)",
        expect="SOAP Fault VersionMismatch",
        send=_SOAP11,
        judge=judge_fault_code("VersionMismatch"),
        shares="soap-version",
    ),
    ReceiverCase(
        id="wsa-action-missing",
        title="no wsa:Action",
        required=True,
        source="WS-Addressing 1.0 Core §3.1 (Action is required), ITI TF-2x V.3.2, SOAP 1.2 Part 1 §5.4",
        expect=_FAULT,
        send=_NO_ACTION,
        judge=judge_fault,
    ),
    ReceiverCase(
        id="wsa-action-missing-code",
        title=f"... Sender / {_MH}",
        required=False,
        source="WS-Addressing 1.0 SOAP Binding §6.4 (MessageAddressingHeaderRequired)",
        expect=f"SOAP Fault Sender / {_MH}",
        send=_NO_ACTION,
        judge=judge_fault_code("Sender", _MH),
        shares="wsa-action-missing",
    ),
    ReceiverCase(
        id="wsa-message-id-missing",
        title="no wsa:MessageID",
        required=True,
        source="ITI TF-2x V.3.2 (ONC XDR checklist DTS 425), SOAP 1.2 Part 1 §5.4",
        expect=_FAULT,
        send=_NO_MESSAGE_ID,
        judge=judge_fault,
    ),
    ReceiverCase(
        id="wsa-message-id-missing-code",
        title=f"... Sender / {_MH}",
        required=False,
        source="WS-Addressing 1.0 SOAP Binding §6.4 (MessageAddressingHeaderRequired)",
        expect=f"SOAP Fault Sender / {_MH}",
        send=_NO_MESSAGE_ID,
        judge=judge_fault_code("Sender", _MH),
        shares="wsa-message-id-missing",
    ),
    ReceiverCase(
        id="wsa-action-unknown",
        title="wsa:Action of another transaction",
        required=True,
        source="WS-Addressing 1.0 SOAP Binding §6.4, SOAP 1.2 Part 1 §5.4",
        expect=_FAULT,
        send=_UNKNOWN_ACTION,
        judge=judge_fault,
    ),
    ReceiverCase(
        id="wsa-action-unknown-code",
        title="... Sender / wsa:ActionNotSupported",
        required=False,
        source="WS-Addressing 1.0 SOAP Binding §6.4 (ActionNotSupported)",
        expect="SOAP Fault Sender / wsa:ActionNotSupported",
        send=_UNKNOWN_ACTION,
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
        send=_NO_DE_UNIQUE_ID,
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
        expect="first Success; second Failure (or a fault), not Success",
        run=duplicate,
    ),
    ReceiverCase(
        id="document-unique-id-reused",
        title="a new SubmissionSet reusing an accepted DocumentEntry uniqueId for other bytes",
        required=False,
        source="ITI TF-3 4.2.4, ebRS 3.0 (XDSNonIdenticalHash, ONC XDR checklist DTS 239)",
        expect="second submission refused (Failure or fault)",
        run=document_unique_id_reused,
    ),
    ReceiverCase(
        id="tls-mutual",
        title="mutual TLS with the practice's certificate",
        required=True,
        source="ETT 8 / 18",
        expect="handshake completes, HTTP answer",
        run=tls_mutual,
    ),
    ReceiverCase(
        id="tls-untrusted-ca",
        title="client certificate from an untrusted CA",
        required=True,
        source="ETT 9 / 19",
        expect="TLS handshake refused",
        run=tls_refused(lambda t: t.untrusted, "untrusted"),
    ),
    ReceiverCase(
        id="tls-expired",
        title="expired client certificate",
        required=True,
        source="ETT 9 (expired material), our practice-binding rule",
        expect="TLS handshake refused",
        run=tls_refused(lambda t: t.expired, "expired"),
    ),
    ReceiverCase(
        id="tls-no-certificate",
        title="no client certificate at all",
        required=True,
        source="Direct Edge Protocols IG §1.1, ETT tests 6-9",
        expect="TLS handshake or request refused",
        run=tls_no_certificate,
    ),
    # Properties of every answer, judged once over all answers of the run (see .replies), so a receiver that
    # gets one wrong fails one case naming every answer that has it, and the cases above judge what they send.
    ReceiverCase(
        id="reply-relates-to",
        title="wsa:RelatesTo on every answer: Success, PartialSuccess, Failure and faults",
        required=True,
        source="WS-Addressing 1.0 Core §3.4, ITI TF-2x V.3.2",
        expect="wsa:RelatesTo = the request's MessageID on every RegistryResponse, and on every fault to a "
        "request whose MessageID was readable",
        run=_every(check_relates_to, relates_to_applies, "answers that must name our MessageID"),
    ),
    ReceiverCase(
        id="reply-action",
        title="wsa:Action on every RegistryResponse, Success or Failure",
        required=True,
        source="ITI TF-2b 3.41.5 (ITI-41 WSDL output action), ITI TF-2x V.3.2, WS-Addressing 1.0 Core §3.1",
        expect=f"wsa:Action = {ns.ACTION_PNR_RESPONSE}",
        run=_every(check_response_action, is_registry_response, "RegistryResponse answers"),
    ),
    ReceiverCase(
        id="reply-content-type",
        title="HTTP Content-Type of every answer",
        required=True,
        source="RFC 3902, SOAP 1.2 Part 2 §7, W3C SOAP 1.2 MTOM §3, XOP 1.0 §4.1",
        expect='application/soap+xml, or multipart/related; type="application/xop+xml"; '
        'start-info="application/soap+xml"; boundary',
        run=_every(check_media_type, is_answer, "SOAP answers"),
    ),
    ReceiverCase(
        id="reply-fault-action",
        title="wsa:Action on every fault to a readable SOAP 1.2 envelope",
        required=False,
        source="WS-Addressing 1.0 SOAP Binding §6, WS-Addressing 1.0 Core §3.1",
        expect=f"wsa:Action = {ns.ACTION_WSA_FAULT} on WS-Addressing faults (a wsa: subcode); "
        f"{ns.ACTION_FAULT} (or {ns.ACTION_WSA_FAULT}) on other faults",
        run=_every(check_fault_action, is_fault_to_intact_envelope, "faults"),
    ),
    ReceiverCase(
        id="reply-mtom",
        title="MTOM answer to every MTOM request, faults included",
        required=False,
        source="ITI TF-2x V.3.6, ITI TF-2b 3.41.5, W3C MTOM/XOP",
        expect="multipart/related answer to an MTOM request",
        run=_every(check_mtom_form, is_answer_to_mtom, "answers to MTOM requests"),
    ),
    ReceiverCase(
        id="reply-http-status",
        title="HTTP status of every answer",
        required=False,
        source="SOAP 1.2 Part 2 §7.5.2.2 (Table 23)",
        expect="200 for a RegistryResponse; 400 for a Sender fault, 500 for other faults",
        run=_every(check_http_status, is_answer, "SOAP answers"),
    ),
    ReceiverCase(
        id="reply-action-must-understand",
        title="mustUnderstand on the response wsa:Action",
        required=False,
        source="ITI TF-2x V.3.2 (IHE_WSA101), SOAP 1.2 Part 1 §5.2.3",
        expect='wsa:Action S:mustUnderstand="true" on every RegistryResponse',
        run=_every(check_action_must_understand, is_registry_response, "RegistryResponse answers"),
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
