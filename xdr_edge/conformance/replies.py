"""How every answer of a receiver is formed, judged across the whole run (the ``reply-*`` cases).

A property every answer must have (``wsa:RelatesTo`` naming our MessageID, the response ``wsa:Action``, a SOAP 1.2
media type, the MTOM form, the HTTP status) is not judged by each case about its own answer: a receiver that gets
it wrong would then fail a dozen unrelated cases with one message, and a receiver that gets it wrong only on
Failure answers or only on faults would pass. Instead each property is one case that reads the log of every
answer this run received (:meth:`.receiver_context.ReceiverContext.answers`) and names, once, which answers lack
it; the per-message cases judge only what their message is about.

When the run has not produced an answer of each kind yet (``--only reply``), a case first sends the catalogue's
own probes for a Success, a Failure and a fault (given by the catalogue, shared with the cases that send them).

Answers that are not SOAP at all are left to the case that sent them (it fails, naming the answer).
"""

from __future__ import annotations

__all__ = [
    "AnswerCheck",
    "Probe",
    "check_action_must_understand",
    "check_fault_action",
    "check_http_status",
    "check_media_type",
    "check_mtom_form",
    "check_relates_to",
    "check_response_action",
    "every_answer",
    "is_answer",
    "is_answer_to_mtom",
    "is_fault_to_intact_envelope",
    "is_registry_response",
    "relates_to_applies",
]

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from xdr_edge.conformance.cases import Verdict
from xdr_edge.conformance.exchange import ExchangeKind
from xdr_edge.conformance.receiver_context import Answer, Prepared, ReceiverContext
from xdr_edge.conformance.wireform import reply_content_type_problems
from xdr_edge.protocol import ns
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.soap import Fault, fault_http_status

#: A message the catalogue sends under a case id: ``(case id, how to build it)``.
Probe = tuple[str, Callable[[ReceiverContext], Prepared]]

#: A check of one answer: None when it conforms, else ``(problem, example)``; answers with the same problem are
#: reported together, with the first example ("" when the problem says it all).
AnswerCheck = Callable[[Answer], tuple[str, str] | None]

_REGISTRY_RESPONSES = (ExchangeKind.SUCCESS, ExchangeKind.PARTIAL, ExchangeKind.FAILURE)
_SOAP_ANSWERS = (*_REGISTRY_RESPONSES, ExchangeKind.FAULT)
_FAULT_ACTIONS = (ns.ACTION_WSA_FAULT, ns.ACTION_FAULT)
_MU = f"{{{ns.SOAP}}}mustUnderstand"


@dataclass
class _Problem:
    """The answers that share one problem, by kind of answer (``Failure`` -> the cases that got one)."""

    example: str
    cases: dict[str, list[str]] = field(default_factory=dict)

    def add(self, answer: Answer) -> None:
        self.cases.setdefault(answer.exchange.kind.value, []).append(answer.case_id)

    def __len__(self) -> int:
        return sum(len(ids) for ids in self.cases.values())

    def describe(self, problem: str) -> str:
        """``no wsa:RelatesTo on 3 answer(s): Failure to a, b; Fault to c (e.g. ...)``."""
        where = "; ".join(f"{kind} to {', '.join(ids)}" for kind, ids in self.cases.items())
        return f"{problem} on {len(self)} answer(s): {where}" + (
            f" (e.g. {self.example})" if self.example else ""
        )


def every_answer(
    check: AnswerCheck,
    *,
    applies: Callable[[Answer], bool],
    what: str,
    probes: Sequence[Probe],
) -> Callable[[ReceiverContext], Verdict]:
    """A case that runs ``check`` on every logged answer ``applies`` selects (``what`` names them: "RegistryResponse
    answers") and fails once, listing per problem the answers that have it."""

    def run(ctx: ReceiverContext) -> Verdict:
        for case_id, build in probes:
            ctx.exchange(case_id, build)
        judged = [a for a in ctx.answers() if a.exchange.kind in _SOAP_ANSWERS and applies(a)]
        if not judged:
            return Verdict.skip(f"no {what} to judge this run (the cases that sent requests say why)")
        problems: dict[str, _Problem] = {}
        for answer in judged:
            found = check(answer)
            if found is not None:
                problems.setdefault(found[0], _Problem(found[1])).add(answer)
        if not problems:
            return Verdict.ok(f"all {len(judged)} {what} conform")
        bad = sum(len(p) for p in problems.values())
        first = next(iter(problems))
        observed = f"{bad} of {len(judged)} {what}: {first}" + (
            f" (+{len(problems) - 1} other problem(s))" if len(problems) > 1 else ""
        )
        detail = " | ".join(p.describe(problem) for problem, p in problems.items())
        return Verdict.fail(observed, detail)

    return run


# -- the checks ------------------------------------------------------------------------------------------------


def check_relates_to(answer: Answer) -> tuple[str, str] | None:
    """WS-Addressing 1.0 Core §3.4, ITI TF-2x V.3.2: a reply, fault or not, relates to the request's MessageID."""
    ex = answer.exchange
    if ex.relates_to == ex.message_id:
        return None
    if not ex.relates_to:
        return "no wsa:RelatesTo", ""
    return (
        "wsa:RelatesTo names another message",
        f"{answer.case_id}: RelatesTo {ex.relates_to} for MessageID {ex.message_id}",
    )


def relates_to_applies(answer: Answer) -> bool:
    """Every RegistryResponse to a request that had a MessageID (the receiver read the request as ITI-41), and
    every fault to a request whose MessageID it could read (an intact SOAP 1.2 envelope)."""
    if answer.exchange.message_id is None:
        return False
    return answer.exchange.kind in _REGISTRY_RESPONSES or answer.correlatable


def _action(answer: Answer) -> str | None:
    response = answer.exchange.response
    return response.envelope.action if response is not None else None


def check_response_action(answer: Answer) -> tuple[str, str] | None:
    """ITI TF-2b 3.41.5 (the ITI-41 WSDL's output action), ITI TF-2x V.3.2: a RegistryResponse is the
    ``...-bResponse`` message."""
    action = _action(answer)
    if action == ns.ACTION_PNR_RESPONSE:
        return None
    problem = "no wsa:Action" if not action else f"wsa:Action is {action!r}"
    return f"{problem}, not {ns.ACTION_PNR_RESPONSE}", ""


def check_fault_action(answer: Answer) -> tuple[str, str] | None:
    """WS-Addressing 1.0 SOAP Binding §6: WS-Addressing faults (subcode ``wsa:MessageAddressingHeaderRequired``,
    ``wsa:InvalidAddressingHeader``, ``wsa:ActionNotSupported``, ...) carry ``.../addressing/fault``; other SOAP
    faults carry ``.../addressing/soap/fault``, or ``.../addressing/fault`` as many stacks label every fault
    (WS-Addressing 1.0 Core §3.1: every message has an [action])."""
    action = _action(answer)
    response = answer.exchange.response
    fault = response.fault if response is not None else None
    if fault is not None and fault.is_addressing_fault and action == ns.ACTION_FAULT:
        return (
            f"a WS-Addressing fault with wsa:Action {ns.ACTION_FAULT}, not {ns.ACTION_WSA_FAULT}",
            f"{answer.case_id}: {fault.subcode}",
        )
    if action in _FAULT_ACTIONS:
        return None
    if not action:
        return "a fault without wsa:Action", ""
    if action == ns.ACTION_PNR_RESPONSE:
        return "a fault labelled as the ITI-41 response (wsa:Action ...-bResponse)", ""
    return f"fault wsa:Action is {action!r}", ""


def check_media_type(answer: Answer) -> tuple[str, str] | None:
    """RFC 3902, SOAP 1.2 Part 2 §7, W3C SOAP 1.2 MTOM §3: see :mod:`.wireform`."""
    problems = reply_content_type_problems(answer.exchange.content_type)
    return (problems[0], "") if problems else None


def check_mtom_form(answer: Answer) -> tuple[str, str] | None:
    """ITI TF-2x V.3.6, ITI TF-2b 3.41.5: an MTOM request is answered in MTOM."""
    content_type = answer.exchange.content_type
    media = MediaType.parse_or_none(content_type)
    if media is not None and media.matches("multipart/related"):
        return None
    shown = media.essence if media is not None else repr(content_type) if content_type.strip() else None
    return f"{shown or 'no Content-Type'} answer to an MTOM request", ""


def check_http_status(answer: Answer) -> tuple[str, str] | None:
    """SOAP 1.2 Part 2 §7.5.1 and §7.5.2.2 (Table 23): a RegistryResponse travels with 200, a fault with 400
    when its code is Sender and 500 otherwise (VersionMismatch, MustUnderstand, Receiver)."""
    ex = answer.exchange
    response = ex.response
    if ex.kind is ExchangeKind.FAULT and response is not None and response.fault is not None:
        fault: Fault = response.fault
        wanted = fault_http_status(fault)
        if ex.http_status != wanted:
            return f"HTTP {ex.http_status} for a {fault.code} fault (expected {wanted})", ""
        return None
    if ex.http_status != 200:
        return f"HTTP {ex.http_status} for a RegistryResponse (expected 200)", ""
    return None


def check_action_must_understand(answer: Answer) -> tuple[str, str] | None:
    """The response ``wsa:Action`` marked ``S:mustUnderstand="true"`` as the request's is (ITI TF-2x V.3.2,
    IHE_WSA101; SOAP 1.2 Part 1 §5.2.3), as NIST's and the Direct reference implementation's responses are."""
    response = answer.exchange.response
    body = response.envelope.body if response is not None else None
    soap_body = body.getparent() if body is not None else None
    envelope = soap_body.getparent() if soap_body is not None else None
    if envelope is None:
        return "a RegistryResponse outside a SOAP envelope", ""
    action = envelope.find(f"{{{ns.SOAP}}}Header/{{{ns.WSA}}}Action")
    if action is None:
        return "no wsa:Action", ""
    if (action.get(_MU) or "").strip() not in ("true", "1"):
        return 'wsa:Action without S:mustUnderstand="true"', ""
    return None


def is_registry_response(answer: Answer) -> bool:
    return answer.exchange.kind in _REGISTRY_RESPONSES


def is_fault_to_intact_envelope(answer: Answer) -> bool:
    """A fault to a request whose envelope was SOAP 1.2 with Header and Body in place: the receiver read its
    WS-Addressing headers, so its fault is a WS-Addressing message too."""
    return answer.exchange.kind is ExchangeKind.FAULT and answer.envelope_intact


def is_answer(answer: Answer) -> bool:
    return True


def is_answer_to_mtom(answer: Answer) -> bool:
    return answer.request_mtom
