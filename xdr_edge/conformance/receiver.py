"""The receiver catalogue: test an XDR edge endpoint (the HISP side) the way the ONC Edge Testing Tool's XDR
receiver tests do (ONC ETT XDR tests: 3add, 4a-4e, 5, 8, 9, 15a/b, 18, 19), and further (Direct Edge Protocols IG, XDR and XDM for Direct Messaging, SOAP 1.2 Part 1, our practice-binding rule).

Every message starts as a valid request built by our own composer and wire writer
(:func:`xdr_edge.compose.compose`, :func:`xdr_edge.wire.build_request`); a negative case then mutates the root
XML with lxml and frames it again with :class:`xdr_edge.mtom.MtomBody`, so exactly one thing is wrong in it.
Messages go out raw over the practice's TLS context (:mod:`xdr_edge.conformance.exchange`), so a peer that
fails to reject one is observed doing so.

How each kind of case decides (docs/conformance.md, "How a case decides"):

- valid messages: RegistryResponse Success and ``wsa:RelatesTo`` = our MessageID;
- SOAP-level errors: a SOAP Fault (any code) is required; the exact code/subcode of SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3 is a separate,
  optional ``-code`` case;
- metadata and document errors: RegistryResponse Failure with at least one Error; the errorCode is reported and
  only a code of a clearly wrong class (transient, duplicate, informational, empty) fails the case;
- refusals that are not metadata defects (unbound sender, missing sender, duplicate): Failure or a Sender fault;
- TLS: an untrusted or expired client certificate must be refused by the handshake itself (Direct Edge Protocols IG §1.1, ETT tests 6-9; our practice-binding rule);
  without any client certificate, the handshake or the request must be refused.
"""

from __future__ import annotations

__all__ = [
    "Mutation",
    "Prepared",
    "ReceiverContext",
    "ReceiverTarget",
    "receiver_catalogue",
    "run_receiver",
]

import dataclasses
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from xdr_edge.certs import load_identity
from xdr_edge.conformance.cases import CaseResult, CaseStatus, Report, TestCase, Verdict, run_cases, select
from xdr_edge.conformance.exchange import Exchange, ExchangeKind, post, tls_context
from xdr_edge.conformance.samples import (
    sample_ccda,
    sample_pdf,
)
from xdr_edge.practice import ClientCredential
from xdr_edge.protocol import ns
from xdr_edge.protocol.codes import (
    ALREADY_STORED,
    DUPLICATE_IN_REGISTRY,
    INFORMATIONAL,
    METADATA_ERRORS,
    MISSING_DOCUMENT,
    MISSING_DOCUMENT_METADATA,
    NON_IDENTICAL_HASH,
    NON_IDENTICAL_SIZE,
    REPOSITORY_ERROR,
    REPOSITORY_METADATA_ERROR,
    TRANSIENT,
)
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.model import (
    DirectAddress,
    Document,
    MetadataLevel,
    Submission,
)
from xdr_edge.protocol.mtom import (
    MtomBody,
    MtomPart,
)
from xdr_edge.protocol.soap import FINAL_DESTINATION_DELIVERY
from xdr_edge.protocol.wire import (
    build_plain_request,
    build_request,
)
from xdr_edge.protocol.xml import (
    parse,
    qname,
)
from xdr_edge.tls import client_ssl_context

Mutation = Callable[[etree._Element, list[MtomPart]], list[MtomPart]]

_SOAP12_NS = ns.SOAP
_SOAP_2005_03 = (
    "http://www.w3.org/2005/03/soap-envelope"  # ETT negative_bad_soap_body.xml (ONC ETT XDR tests, 4b)
)


@dataclass(frozen=True)
class ReceiverTarget:
    """The endpoint under test and the material the catalogue uses.

    ``bound_from`` must be bound to the practice of ``credential``; ``unbound_from`` must not be.
    ``untrusted``/``expired`` are ``(cert, key)`` PEM paths; without them those TLS cases are skipped.
    """

    endpoint: str
    ca_bundle: Path
    credential: ClientCredential
    bound_from: DirectAddress
    unbound_from: DirectAddress
    recipients: tuple[DirectAddress, ...]
    untrusted: tuple[Path, Path] | None = None
    expired: tuple[Path, Path] | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.recipients:
            raise ValueError("the receiver catalogue needs at least one recipient address (--to)")


@dataclass(frozen=True)
class Prepared:
    """A request ready to send: Content-Type, body bytes, its MessageID (None when a case removed it)."""

    content_type: str
    body: bytes
    message_id: str | None
    submission: Submission


@dataclass
class ReceiverContext:
    """What the cases share during one run: the target, the practice's TLS context and the exchanges already
    made (a ``-code`` case reads the exchange of its parent case instead of sending again)."""

    target: ReceiverTarget
    _exchanges: dict[str, Exchange] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.context = client_ssl_context(load_identity(self.target.credential), self.target.ca_bundle)
        self.ccda = sample_ccda()
        self.pdf = sample_pdf()

    # -- building --------------------------------------------------------------------------------------------

    def documents(self, kinds: Sequence[str]) -> list[Document]:
        data = {"ccda": (self.ccda, "ccd.xml"), "pdf": (self.pdf, "referral.pdf")}
        return [Document.from_bytes(data[k][0], name=data[k][1]) for k in kinds]

    def submission(
        self,
        kinds: Sequence[str] = ("ccda",),
        *,
        level: MetadataLevel = MetadataLevel.MINIMAL,
        sender: DirectAddress | None = None,
        recipients: Sequence[DirectAddress] | None = None,
    ) -> Submission:
        """A fresh valid submission (new uniqueIds every time, so no case looks like a duplicate of another)."""
        return compose(
            self.documents(kinds),
            sender=sender or self.target.bound_from,
            recipients=list(recipients or self.target.recipients[:1]),
            level=level,
        )

    def frame(self, submission: Submission, mutate: Mutation | None = None) -> Prepared:
        """Build the MTOM request for ``submission``; ``mutate`` may change the root XML and the part list."""
        request = build_request(submission, endpoint=self.target.endpoint)
        body = request.body
        if mutate is None:
            return Prepared(body.content_type, b"".join(body), request.message_id, submission)
        root = parse(body.root, what="request envelope")
        parts = mutate(root, list(body.parts))
        message_id = _text_of(root, ns.WSA, "MessageID")
        xml = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
        framed = MtomBody(xml, parts, root_content_id=body.root_content_id)
        return Prepared(framed.content_type, b"".join(framed), message_id, submission)

    def plain_soap(self, submission: Submission) -> Prepared:
        """The non-MTOM form (ITI TF-2x V.3.6, inline base64): base64 text inside ``xdsb:Document``."""
        message_id, content_type, xml = build_plain_request(submission, endpoint=self.target.endpoint)
        return Prepared(content_type, xml, message_id, submission)

    # -- sending ---------------------------------------------------------------------------------------------

    def send(self, prepared: Prepared, *, context: ssl.SSLContext | None = None) -> Exchange:
        return post(
            self.target.endpoint,
            context or self.context,
            prepared.content_type,
            prepared.body,
            message_id=prepared.message_id,
            timeout=self.target.timeout,
        )

    def exchange(self, key: str, build: Callable[[ReceiverContext], Prepared]) -> Exchange:
        """Send what ``build`` makes, once per run and ``key``."""
        if key not in self._exchanges:
            self._exchanges[key] = self.send(build(self))
        return self._exchanges[key]


# --------------------------------------------------------------------------------------------------------------
# XML helpers for mutations


def _q(namespace: str, local: str) -> str:
    return f"{{{namespace}}}{local}"


def _all(root: etree._Element, namespace: str, local: str) -> list[etree._Element]:
    return list(root.iter(_q(namespace, local)))


def _text_of(root: etree._Element, namespace: str, local: str) -> str | None:
    found = _all(root, namespace, local)
    return (found[0].text or "").strip() if found else None


def _remove(element: etree._Element) -> None:
    parent = element.getparent()
    if parent is None:
        raise ValueError("cannot remove the root element")
    parent.remove(element)


def _header(root: etree._Element) -> etree._Element:
    header = root.find(_q(_SOAP12_NS, "Header"))
    if header is None:
        raise ValueError("the request built by wire.build_request has no S:Header")
    return header


def _extrinsic(root: etree._Element, entry_id: str = "Document01") -> etree._Element:
    for element in _all(root, ns.RIM, "ExtrinsicObject"):
        if element.get("id") == entry_id:
            return element
    raise ValueError(f"no ExtrinsicObject {entry_id!r} in the request")


def _external_identifier(root: etree._Element, scheme: str) -> etree._Element:
    for element in _all(root, ns.RIM, "ExternalIdentifier"):
        if element.get("identificationScheme") == scheme:
            return element
    raise ValueError(f"no ExternalIdentifier with scheme {scheme}")


def _slot(parent: etree._Element, name: str) -> etree._Element:
    for element in parent.findall(_q(ns.RIM, "Slot")):
        if element.get("name") == name:
            return element
    raise ValueError(f"no Slot {name!r}")


def _slot_value(parent: etree._Element, name: str) -> etree._Element:
    value = _slot(parent, name).find(f"{_q(ns.RIM, 'ValueList')}/{_q(ns.RIM, 'Value')}")
    if value is None:
        raise ValueError(f"Slot {name!r} has no Value")
    return value


def _remove_wsa(local: str) -> Mutation:
    def mutate(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
        for element in _all(_header(root), ns.WSA, local):
            _remove(element)
        return parts

    return mutate


def _header_unqualified(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    """ETT 4a (``negative_bad_soap.xml``): ``Header`` not in the SOAP namespace."""
    _header(root).tag = "Header"
    return parts


def _body_wrong_namespace(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    """ETT 4b (``negative_bad_soap_body.xml``): ``Body`` in the 2005/03 draft namespace."""
    body = root.find(_q(_SOAP12_NS, "Body"))
    assert body is not None
    body.tag = _q(_SOAP_2005_03, "Body")
    return parts


def _soap11(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    """Every SOAP 1.2 element and attribute moved to the SOAP 1.1 namespace (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding: not allowed)."""
    for element in root.iter(etree.Element):  # elements only, no comments or PIs
        qn = etree.QName(element)
        if qn.namespace == _SOAP12_NS:
            element.tag = _q(ns.SOAP11, qn.localname)
        for name in list(element.attrib):
            aq = etree.QName(name)
            if aq.namespace == _SOAP12_NS:
                value = element.attrib.pop(name)
                element.set(_q(ns.SOAP11, aq.localname), value)
    return parts


def _unknown_action(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    for element in _all(_header(root), ns.WSA, "Action"):
        element.text = "urn:ihe:iti:2007:RegistryStoredQuery"
    return parts


def _no_sender_anywhere(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    """ETT 4c plus the XDR and XDM for Direct Messaging §4.1 rule: no addressBlock and no SubmissionSet authorTelecommunication."""
    for element in _all(_header(root), ns.DIRECT, "addressBlock"):
        _remove(element)
    for element in _all(root, ns.RIM, "Classification"):
        if element.get("classificationScheme") == ns.SS_AUTHOR:
            _remove(element)
    return parts


def _no_address_block(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    for element in _all(_header(root), ns.DIRECT, "addressBlock"):
        _remove(element)
    return parts


def _drop_external_identifier(scheme: str) -> Mutation:
    def mutate(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
        _remove(_external_identifier(root, scheme))
        return parts

    return mutate


def _drop_attribute(name: str) -> Mutation:
    def mutate(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
        del _extrinsic(root).attrib[name]
        return parts

    return mutate


def _drop_creation_time(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    _remove(_slot(_extrinsic(root), "creationTime"))
    return parts


def _drop_associations(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    """ETT 4e (``negative_missing_association.xml``): no HasMember association."""
    for element in _all(root, ns.RIM, "Association"):
        _remove(element)
    return parts


def _wrong_hash(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    value = _slot_value(_extrinsic(root), "hash")
    value.text = "0" * 40 if (value.text or "").strip() != "0" * 40 else "1" * 40
    return parts


def _wrong_size(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    value = _slot_value(_extrinsic(root), "size")
    value.text = str(int((value.text or "0").strip()) + 1)
    return parts


def _drop_second_entry(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    """A Document (and MIME part) whose ExtrinsicObject and association are gone: XDSMissingDocumentMetadata."""
    _remove(_extrinsic(root, "Document02"))
    for element in _all(root, ns.RIM, "Association"):
        if element.get("targetObject") == "Document02":
            _remove(element)
    return parts


def _drop_document(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    """The ExtrinsicObject stays; its xdsb:Document and MIME part go: XDSMissingDocument."""
    removed: set[str] = set()
    for element in _all(root, ns.XDSB, "Document"):
        if element.get("id") == "Document01":
            for include in element.iter(_q(ns.XOP, "Include")):
                removed.add((include.get("href") or "")[4:])
            _remove(element)
    return [p for p in parts if p.content_id not in removed]


# --------------------------------------------------------------------------------------------------------------
# Message builders (each returns a fresh request)


def _valid(
    kinds: Sequence[str] = ("ccda",), level: MetadataLevel = MetadataLevel.MINIMAL
) -> Callable[[ReceiverContext], Prepared]:
    return lambda ctx: ctx.frame(ctx.submission(kinds, level=level))


def _mutated(
    mutate: Mutation, kinds: Sequence[str] = ("ccda",), level: MetadataLevel = MetadataLevel.MINIMAL
) -> Callable[[ReceiverContext], Prepared]:
    return lambda ctx: ctx.frame(ctx.submission(kinds, level=level), mutate)


def _several_recipients(ctx: ReceiverContext) -> Prepared:
    recipients = list(ctx.target.recipients)
    if len(recipients) < 2:
        first = recipients[0]
        recipients.append(DirectAddress.parse(f"conformance.second@{first.domain}"))
    return ctx.frame(ctx.submission(recipients=recipients))


def _delivery_request(ctx: ReceiverContext) -> Prepared:
    """ETT MT 30: a valid message whose address block asks for final-destination delivery (XDR and XDM for Direct Messaging §4.1)."""
    return ctx.frame(dataclasses.replace(ctx.submission(), final_destination_delivery=True))


#: A recipient no HISP can reach: the ``.invalid`` top-level domain never resolves (RFC 2606).
UNREACHABLE_RECIPIENT = "conformance.nobody@destination.invalid"


def _delivery_request_unreachable(ctx: ReceiverContext) -> Prepared:
    """ETT MT 31: a valid address block asking for delivery notification, to a destination that cannot exist."""
    recipients = [DirectAddress.parse(UNREACHABLE_RECIPIENT)]
    return ctx.frame(
        dataclasses.replace(ctx.submission(recipients=recipients), final_destination_delivery=True)
    )


def _unreadable_delivery_request(root: etree._Element, parts: list[MtomPart]) -> list[MtomPart]:
    for block in _all(_header(root), ns.DIRECT, "addressBlock"):
        etree.SubElement(block, qname(ns.DIRECT, FINAL_DESTINATION_DELIVERY)).text = "perhaps"
    return parts


def _unbound(ctx: ReceiverContext) -> Prepared:
    return ctx.frame(ctx.submission(sender=ctx.target.unbound_from))


def _plain(ctx: ReceiverContext) -> Prepared:
    return ctx.plain_soap(ctx.submission())


# --------------------------------------------------------------------------------------------------------------
# Judging exchanges


def _not_answered(ex: Exchange) -> Verdict | None:
    """A FAIL for exchanges that never produced an HTTP answer (every case but the TLS ones needs one)."""
    if ex.kind is ExchangeKind.SERVER_UNTRUSTED:
        return Verdict.fail(
            ex.describe(), "the endpoint's server certificate is not issued by the --ca bundle"
        )
    if ex.kind in (ExchangeKind.REFUSED, ExchangeKind.ERROR):
        return Verdict.fail(ex.describe(), "no HTTP answer to judge")
    return None


def judge_success(ex: Exchange) -> Verdict:
    """Success, and RelatesTo = our MessageID (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding: the reply correlates to the request)."""
    problem = _not_answered(ex)
    if problem is not None:
        return problem
    if ex.kind is not ExchangeKind.SUCCESS:
        reason = "a valid message was not accepted"
        rr = ex.response.registry_response if ex.response is not None else None
        if rr is not None and rr.errors:
            reason += f": {rr.errors[0].error_code}: {rr.errors[0].code_context}"
        elif ex.response is not None and ex.response.fault is not None:
            reason += f": {ex.response.fault.reason}"
        elif ex.problem:
            reason += f": {ex.problem}"
        return Verdict.fail(ex.describe(), reason)
    if ex.relates_to != ex.message_id:
        return Verdict.fail(
            ex.describe() + f", RelatesTo {ex.relates_to!r}",
            f"wsa:RelatesTo must be the request's MessageID {ex.message_id} (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding)",
        )
    return Verdict.ok(ex.describe() + ", RelatesTo matches")


def judge_fault(ex: Exchange) -> Verdict:
    """A SOAP Fault, of any code (SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3: SOAP-level errors are faults, not RegistryResponses)."""
    problem = _not_answered(ex)
    if problem is not None:
        return problem
    if ex.kind is ExchangeKind.FAULT:
        return Verdict.ok(ex.describe())
    if ex.kind in (ExchangeKind.SUCCESS, ExchangeKind.PARTIAL):
        return Verdict.fail(ex.describe(), "the endpoint accepted a message it must reject with a SOAP Fault")
    if ex.kind is ExchangeKind.FAILURE:
        return Verdict.fail(
            ex.describe(),
            "rejected with a RegistryResponse Failure; a SOAP-level error must be answered with a SOAP Fault "
            "(SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3)",
        )
    return Verdict.fail(ex.describe(), "the answer is not a SOAP Fault")


def judge_fault_code(code: str, subcode: str | None = None) -> Callable[[Exchange], Verdict]:
    def judge(ex: Exchange) -> Verdict:
        first = judge_fault(ex)
        if first.status is not CaseStatus.PASS:
            return first
        assert ex.response is not None and ex.response.fault is not None
        fault = ex.response.fault
        if fault.code != code:
            return Verdict.fail(
                ex.describe(), f"the fault code should be {code} (SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3)"
            )
        if subcode is not None and fault.subcode != subcode:
            return Verdict.fail(
                ex.describe(), f"the fault subcode should be {subcode} (SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3)"
            )
        return Verdict.ok(ex.describe())

    return judge


def _wrong_class(codes: Sequence[str], allowed_duplicates: bool = False) -> list[str]:
    wrong = set(TRANSIENT | INFORMATIONAL)
    if not allowed_duplicates:
        wrong |= ALREADY_STORED
    return [c for c in codes if c in wrong or not c.strip()]


def _code_note(codes: Sequence[str], recommended: Sequence[str]) -> str:
    if not recommended or any(c in recommended for c in codes):
        return ""
    return (
        f"recommended errorCode: {' or '.join(recommended)} (ITI TF-3 4.2.4, ebRS 3.0); reported, not failed"
    )


def judge_registry_answer(ex: Exchange) -> Verdict:
    """A RegistryResponse, whatever its status: a destination that cannot be reached is a delivery problem,
    reported later as a negative delivery status notification or now as a Failure, never as a SOAP error."""
    problem = _not_answered(ex)
    if problem is not None:
        return problem
    if ex.kind in (ExchangeKind.SUCCESS, ExchangeKind.PARTIAL):
        return Verdict.ok(ex.describe(), "accepted; the delivery status notification is the HISP's to send")
    if ex.kind is ExchangeKind.FAILURE:
        return Verdict.ok(ex.describe(), _join("refused now with a Failure", _first_context(ex)))
    return Verdict.fail(
        ex.describe(),
        "an unreachable destination must be answered with a RegistryResponse (Success, then a negative "
        "delivery notification, or Failure), not a fault or a non-SOAP answer",
    )


def judge_failure(recommended: Sequence[str], *, allow_fault: bool = False) -> Callable[[Exchange], Verdict]:
    """RegistryResponse Failure with at least one Error whose code is not of a clearly wrong class; with
    ``allow_fault`` a SOAP ``Sender`` fault is accepted too (refusals that are not metadata defects, our practice-binding rule)."""

    def judge(ex: Exchange) -> Verdict:
        problem = _not_answered(ex)
        if problem is not None:
            return problem
        if ex.kind in (ExchangeKind.SUCCESS, ExchangeKind.PARTIAL):
            return Verdict.fail(ex.describe(), "the endpoint accepted a submission it must refuse")
        if ex.kind is ExchangeKind.FAULT:
            assert ex.response is not None and ex.response.fault is not None
            if allow_fault and ex.response.fault.code == "Sender":
                return Verdict.ok(
                    ex.describe(), "refused with a SOAP Sender fault (our practice-binding rule)"
                )
            if allow_fault:
                return Verdict.fail(
                    ex.describe(),
                    "a refusal must be a RegistryResponse Failure or a SOAP Sender fault (our practice-binding rule)",
                )
            return Verdict.fail(
                ex.describe(),
                "a metadata or document error must be answered with a RegistryResponse Failure (SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3)",
            )
        if ex.kind is not ExchangeKind.FAILURE:
            return Verdict.fail(ex.describe(), "the answer is neither a RegistryResponse Failure nor a fault")
        if not ex.error_codes:
            return Verdict.fail(
                ex.describe(), "Failure without any Error-severity RegistryError (ITI TF-3 4.2.4, ebRS 3.0)"
            )
        wrong = _wrong_class(ex.error_codes)
        if wrong:
            return Verdict.fail(
                ex.describe(),
                f"errorCode {', '.join(wrong)} tells the sender something else (retry later, already delivered "
                "or accepted); see docs/conformance.md",
            )
        return Verdict.ok(ex.describe(), _join(_code_note(ex.error_codes, recommended), _first_context(ex)))

    return judge


def _first_context(ex: Exchange) -> str:
    """The first RegistryError's codeContext, shortened: what the peer said was wrong."""
    rr = ex.response.registry_response if ex.response is not None else None
    if rr is None or not rr.errors:
        return ""
    text = " ".join(rr.errors[0].code_context.split())
    return f"codeContext: {text[:160]}" + ("..." if len(text) > 160 else "")


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _case(
    id: str,
    title: str,
    required: bool,
    source: str,
    expectation: str,
    build: Callable[[ReceiverContext], Prepared],
    judge: Callable[[Exchange], Verdict],
    *,
    key: str | None = None,
) -> TestCase[ReceiverContext]:
    """A case that sends one request (shared under ``key`` with other cases) and judges the answer."""
    memo = key or id
    return TestCase(id, title, required, source, expectation, lambda ctx: judge(ctx.exchange(memo, build)))


# --------------------------------------------------------------------------------------------------------------
# Cases that need more than one exchange


def _reply_form(ctx: ReceiverContext) -> Verdict:
    ex = ctx.exchange("valid-minimal", _valid())
    problem = _not_answered(ex)
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
    wrong = _wrong_class(second.error_codes, allowed_duplicates=True)
    if wrong:
        return Verdict.fail(
            observed, f"errorCode {', '.join(wrong)} would make a sender retry or give up wrongly"
        )
    return Verdict.ok(observed, _code_note(second.error_codes, (DUPLICATE_IN_REGISTRY,)))


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
    ex = ctx.exchange("valid-minimal", _valid())
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


# --------------------------------------------------------------------------------------------------------------
# The catalogue


def receiver_catalogue() -> tuple[TestCase[ReceiverContext], ...]:
    """Every receiver case, in the order they run (valid first, then SOAP, metadata, documents, TLS)."""
    success = "RegistryResponse Success, wsa:RelatesTo = request MessageID"
    fault = "SOAP Fault (any code)"
    failure = "RegistryResponse Failure (errorCode reported)"
    reject = "RegistryResponse Failure or SOAP Sender fault"
    xds = MetadataLevel.XDS
    mh = "wsa:MessageAddressingHeaderRequired"
    return (
        _case(
            "valid-minimal",
            "valid C-CDA, minimal metadata",
            True,
            "ETT 3add",
            success,
            _valid(),
            judge_success,
        ),
        _case(
            "valid-full",
            "valid C-CDA, full (XDS) metadata",
            True,
            "ETT 5",
            success,
            _valid(("ccda",), xds),
            judge_success,
        ),
        _case(
            "valid-recipients",
            "valid, several direct:to recipients",
            True,
            "XDR and XDM for Direct Messaging §4.1",
            success,
            _several_recipients,
            judge_success,
        ),
        _case(
            "delivery-notification-request",
            "address block asks for final-destination delivery (X-DIRECT-FINAL-DESTINATION-DELIVERY)",
            True,
            "ETT MT 30, XDR and XDM for Direct Messaging §4.1",
            success,
            _delivery_request,
            judge_success,
        ),
        _case(
            "delivery-notification-unreachable",
            f"delivery notification asked for, recipient {UNREACHABLE_RECIPIENT}",
            True,
            "ETT MT 31, XDR and XDM for Direct Messaging §4.1",
            "a RegistryResponse (Success, or Failure naming the recipient), not a fault",
            _delivery_request_unreachable,
            judge_registry_answer,
        ),
        _case(
            "delivery-notification-unreadable",
            "X-DIRECT-FINAL-DESTINATION-DELIVERY is neither true nor false",
            False,
            "Delivery Notification IG §1.3",
            reject,
            _mutated(_unreadable_delivery_request),
            judge_failure(METADATA_ERRORS, allow_fault=True),
        ),
        _case(
            "valid-pdf",
            "valid PDF, minimal metadata",
            True,
            "xdr-edge",
            success,
            _valid(("pdf",)),
            judge_success,
        ),
        _case(
            "valid-documents",
            "valid, two documents (C-CDA + PDF)",
            True,
            "xdr-edge",
            success,
            _valid(("ccda", "pdf")),
            judge_success,
        ),
        TestCase(
            "valid-reply-form",
            "reply Action ...-bResponse, MTOM reply to MTOM request",
            False,
            "ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding; ITI TF-2b 3.41.5, W3C MTOM/XOP",
            "Action ...-bResponse and a multipart/related reply",
            _reply_form,
        ),
        _case(
            "valid-no-address-block",
            "no addressBlock, sender in authorTelecommunication",
            False,
            "XDR and XDM for Direct Messaging §4.1 (DTS 427)",
            success,
            _mutated(_no_address_block),
            judge_success,
        ),
        _case(
            "plain-soap-inline",
            "simple SOAP with inline base64 (no MTOM)",
            False,
            "ITI TF-2b 3.41.5, non-MTOM form",
            success,
            _plain,
            judge_success,
        ),
        _case(
            "soap-header-namespace",
            "S:Header not namespace-qualified",
            True,
            "ETT 4a / 15a",
            fault,
            _mutated(_header_unqualified),
            judge_fault,
        ),
        _case(
            "soap-header-namespace-code",
            "... fault code is Sender",
            False,
            "SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3",
            "SOAP Fault Sender",
            _mutated(_header_unqualified),
            judge_fault_code("Sender"),
            key="soap-header-namespace",
        ),
        _case(
            "soap-body-namespace",
            "S:Body in the 2005/03 namespace",
            True,
            "ETT 4b / 15b",
            fault,
            _mutated(_body_wrong_namespace),
            judge_fault,
        ),
        _case(
            "soap-body-namespace-code",
            "... fault code is Sender",
            False,
            "SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3",
            "SOAP Fault Sender",
            _mutated(_body_wrong_namespace),
            judge_fault_code("Sender"),
            key="soap-body-namespace",
        ),
        _case(
            "soap-version",
            "SOAP 1.1 envelope",
            True,
            "ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding; SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3",
            fault,
            _mutated(_soap11),
            judge_fault,
        ),
        _case(
            "soap-version-code",
            "... fault code is VersionMismatch",
            False,
            "SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3 (SOAP 1.2 §5.4.6)",
            "SOAP Fault VersionMismatch",
            _mutated(_soap11),
            judge_fault_code("VersionMismatch"),
            key="soap-version",
        ),
        _case(
            "wsa-action-missing",
            "no wsa:Action",
            True,
            "ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding; SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3",
            fault,
            _mutated(_remove_wsa("Action")),
            judge_fault,
        ),
        _case(
            "wsa-action-missing-code",
            f"... Sender / {mh}",
            False,
            "SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3 (WS-A SOAP binding §6.4)",
            f"SOAP Fault Sender / {mh}",
            _mutated(_remove_wsa("Action")),
            judge_fault_code("Sender", mh),
            key="wsa-action-missing",
        ),
        _case(
            "wsa-message-id-missing",
            "no wsa:MessageID",
            True,
            "ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding (DTS 425), SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3",
            fault,
            _mutated(_remove_wsa("MessageID")),
            judge_fault,
        ),
        _case(
            "wsa-message-id-missing-code",
            f"... Sender / {mh}",
            False,
            "SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3 (WS-A SOAP binding §6.4)",
            f"SOAP Fault Sender / {mh}",
            _mutated(_remove_wsa("MessageID")),
            judge_fault_code("Sender", mh),
            key="wsa-message-id-missing",
        ),
        _case(
            "wsa-action-unknown",
            "wsa:Action of another transaction",
            True,
            "SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3",
            fault,
            _mutated(_unknown_action),
            judge_fault,
        ),
        _case(
            "wsa-action-unknown-code",
            "... Sender / wsa:ActionNotSupported",
            False,
            "SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3",
            "SOAP Fault Sender / wsa:ActionNotSupported",
            _mutated(_unknown_action),
            judge_fault_code("Sender", "wsa:ActionNotSupported"),
            key="wsa-action-unknown",
        ),
        _case(
            "address-block-missing",
            "no addressBlock and no authorTelecommunication",
            True,
            "ETT 4c, XDR and XDM for Direct Messaging §4.1",
            reject,
            _mutated(_no_sender_anywhere),
            judge_failure(METADATA_ERRORS, allow_fault=True),
        ),
        _case(
            "metadata-de-unique-id",
            "DocumentEntry uniqueId missing",
            True,
            "ETT 4d (1)",
            failure,
            _mutated(_drop_external_identifier(ns.DE_UNIQUE_ID)),
            judge_failure(METADATA_ERRORS),
        ),
        _case(
            "metadata-ss-source-id",
            "SubmissionSet sourceId missing",
            True,
            "ETT 4d (2)",
            failure,
            _mutated(_drop_external_identifier(ns.SS_SOURCE_ID)),
            judge_failure(METADATA_ERRORS),
        ),
        _case(
            "metadata-mime-type",
            "DocumentEntry mimeType missing",
            True,
            "ETT 4d (3)",
            failure,
            _mutated(_drop_attribute("mimeType")),
            judge_failure(METADATA_ERRORS),
        ),
        _case(
            "metadata-entry-id",
            "ExtrinsicObject id missing",
            True,
            "ETT 4d (4)",
            failure,
            _mutated(_drop_attribute("id")),
            judge_failure((*METADATA_ERRORS, MISSING_DOCUMENT_METADATA)),
        ),
        _case(
            "metadata-creation-time",
            "creationTime missing at the XDS level",
            True,
            "ETT 4d (5)",
            failure,
            _mutated(_drop_creation_time, ("ccda",), xds),
            judge_failure(METADATA_ERRORS),
        ),
        _case(
            "association-missing",
            "no HasMember association",
            True,
            "ETT 4e",
            failure,
            _mutated(_drop_associations),
            judge_failure(METADATA_ERRORS),
        ),
        _case(
            "hash-mismatch",
            "declared hash differs from the bytes",
            True,
            "ITI TF-3 4.2.4, ebRS 3.0; NIST XDS toolkit validators",
            failure,
            _mutated(_wrong_hash),
            judge_failure((REPOSITORY_METADATA_ERROR, NON_IDENTICAL_HASH)),
        ),
        _case(
            "size-mismatch",
            "declared size differs from the bytes",
            True,
            "ITI TF-3 4.2.4, ebRS 3.0; NIST XDS toolkit validators",
            failure,
            _mutated(_wrong_size),
            judge_failure((REPOSITORY_METADATA_ERROR, NON_IDENTICAL_SIZE)),
        ),
        _case(
            "document-without-metadata",
            "a Document and MIME part with no DocumentEntry",
            True,
            "ITI TF-3 4.2.4, NIST repository checks",
            failure,
            _mutated(_drop_second_entry, ("ccda", "pdf")),
            judge_failure((MISSING_DOCUMENT_METADATA,)),
        ),
        _case(
            "metadata-without-document",
            "a DocumentEntry with no Document or MIME part",
            True,
            "ITI TF-3 4.2.4, NIST repository checks",
            failure,
            _mutated(_drop_document),
            judge_failure((MISSING_DOCUMENT,)),
        ),
        _case(
            "unbound-sender",
            "direct:from not bound to the certificate's practice",
            True,
            "our practice-binding rule",
            reject,
            _unbound,
            judge_failure((REPOSITORY_ERROR,), allow_fault=True),
        ),
        TestCase(
            "duplicate-submission",
            "the same uniqueIds submitted twice",
            True,
            "ITI TF-3 4.2.4, ebRS 3.0",
            "first Success; second Failure (or fault), not Success",
            _duplicate,
        ),
        TestCase(
            "document-unique-id-reused",
            "a new SubmissionSet reusing an accepted DocumentEntry uniqueId for other bytes",
            False,
            "ITI TF-3 4.2.4, ebRS 3.0 (XDSNonIdenticalHash, ONC XDR checklist DTS 239)",
            "second submission refused (Failure or fault)",
            _document_unique_id_reused,
        ),
        TestCase(
            "tls-mutual",
            "mutual TLS with the practice's certificate",
            True,
            "ETT 8 / 18",
            "handshake completes, HTTP answer",
            _tls_mutual,
        ),
        TestCase(
            "tls-untrusted-ca",
            "client certificate from an untrusted CA",
            True,
            "ETT 9 / 19",
            "TLS handshake refused",
            _tls_refused(lambda t: t.untrusted, "untrusted"),
        ),
        TestCase(
            "tls-expired",
            "expired client certificate",
            True,
            "ETT 9 (expired material), our practice-binding rule",
            "TLS handshake refused",
            _tls_refused(lambda t: t.expired, "expired"),
        ),
        TestCase(
            "tls-no-certificate",
            "no client certificate at all",
            True,
            "Direct Edge Protocols IG §1.1, ETT tests 6-9",
            "TLS handshake or request refused",
            _tls_no_certificate,
        ),
    )


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
