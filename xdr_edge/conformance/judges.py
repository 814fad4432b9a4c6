"""How a receiver case decides from one exchange (docs/conformance.md, "How a case decides").

- valid messages: RegistryResponse Success (``wsa:RelatesTo``, the response Action and the media type are
  properties of every answer, judged once for all answers by :mod:`.replies`);
- SOAP-level errors: a SOAP Fault (any code); the exact code or subcode is a separate, optional ``-code`` case;
- metadata and document errors: RegistryResponse Failure with at least one Error; the errorCode is reported and
  only a code of a clearly wrong class (transient, duplicate, informational, empty) fails the case;
- refusals that are not metadata defects (unbound sender, missing sender, duplicate): Failure or a Sender fault.
"""

from __future__ import annotations

__all__ = [
    "code_note",
    "first_context",
    "join_notes",
    "judge_failure",
    "judge_fault",
    "judge_fault_code",
    "judge_registry_answer",
    "judge_success",
    "not_answered",
    "wrong_class",
]

from collections.abc import Callable, Sequence

from xdr_edge.conformance.cases import CaseStatus, Verdict
from xdr_edge.conformance.exchange import Exchange, ExchangeKind
from xdr_edge.protocol.codes import ALREADY_STORED, INFORMATIONAL, TRANSIENT


def not_answered(ex: Exchange) -> Verdict | None:
    """A FAIL for exchanges that never produced an HTTP answer (every case but the TLS ones needs one)."""
    if ex.kind is ExchangeKind.SERVER_UNTRUSTED:
        return Verdict.fail(
            ex.describe(), "the endpoint's server certificate is not issued by the --ca bundle"
        )
    if ex.kind in (ExchangeKind.REFUSED, ExchangeKind.ERROR):
        return Verdict.fail(ex.describe(), "no HTTP answer to judge")
    return None


def judge_success(ex: Exchange) -> Verdict:
    """Success: the endpoint accepted a valid message (ETT 3add, 5). How the answer is formed (RelatesTo, Action)
    is not judged here but by the ``reply-*`` cases, so one wrong header is reported once, not per valid case."""
    problem = not_answered(ex)
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
    return Verdict.ok(ex.describe())


def judge_fault(ex: Exchange) -> Verdict:
    """A SOAP Fault, of any code (SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3: SOAP-level errors are faults, not RegistryResponses)."""
    problem = not_answered(ex)
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


def wrong_class(codes: Sequence[str], allowed_duplicates: bool = False) -> list[str]:
    wrong = set(TRANSIENT | INFORMATIONAL)
    if not allowed_duplicates:
        wrong |= ALREADY_STORED
    return [c for c in codes if c in wrong or not c.strip()]


def code_note(codes: Sequence[str], recommended: Sequence[str]) -> str:
    if not recommended or any(c in recommended for c in codes):
        return ""
    return (
        f"recommended errorCode: {' or '.join(recommended)} (ITI TF-3 4.2.4, ebRS 3.0); reported, not failed"
    )


def judge_registry_answer(ex: Exchange) -> Verdict:
    """A RegistryResponse, whatever its status: a destination that cannot be reached is a delivery problem,
    reported later as a negative delivery status notification or now as a Failure, never as a SOAP error."""
    problem = not_answered(ex)
    if problem is not None:
        return problem
    if ex.kind in (ExchangeKind.SUCCESS, ExchangeKind.PARTIAL):
        return Verdict.ok(ex.describe(), "accepted; the delivery status notification is the HISP's to send")
    if ex.kind is ExchangeKind.FAILURE:
        return Verdict.ok(ex.describe(), join_notes("refused now with a Failure", first_context(ex)))
    return Verdict.fail(
        ex.describe(),
        "an unreachable destination must be answered with a RegistryResponse (Success, then a negative "
        "delivery notification, or Failure), not a fault or a non-SOAP answer",
    )


def judge_failure(recommended: Sequence[str], *, allow_fault: bool = False) -> Callable[[Exchange], Verdict]:
    """RegistryResponse Failure with at least one Error whose code is not of a clearly wrong class; with
    ``allow_fault`` a SOAP ``Sender`` fault is accepted too (refusals that are not metadata defects, our practice-binding rule)."""

    def judge(ex: Exchange) -> Verdict:
        problem = not_answered(ex)
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
        wrong = wrong_class(ex.error_codes)
        if wrong:
            return Verdict.fail(
                ex.describe(),
                f"errorCode {', '.join(wrong)} tells the sender something else (retry later, already delivered "
                "or accepted); see docs/conformance.md",
            )
        return Verdict.ok(
            ex.describe(), join_notes(code_note(ex.error_codes, recommended), first_context(ex))
        )

    return judge


def first_context(ex: Exchange) -> str:
    """The first RegistryError's codeContext, shortened: what the peer said was wrong."""
    rr = ex.response.registry_response if ex.response is not None else None
    if rr is None or not rr.errors:
        return ""
    text = " ".join(rr.errors[0].code_context.split())
    return f"codeContext: {text[:160]}" + ("..." if len(text) > 160 else "")


def join_notes(*parts: str) -> str:
    return "; ".join(p for p in parts if p)
