"""The receiver cases that need more than one exchange, or a TLS handshake of their own: a duplicate submission
(ITI TF-3 4.2.4, ebRS 3.0), a DocumentEntry uniqueId reused for other bytes, and the mutual-TLS cases (ETT 8/18,
9/19; Direct Edge Protocols IG §1.1). Single-message cases are judged by :mod:`.judges`; properties of every
answer by :mod:`.replies`.
"""

from __future__ import annotations

__all__ = ["document_unique_id_reused", "duplicate", "tls_mutual", "tls_no_certificate", "tls_refused"]

import dataclasses
from collections.abc import Callable
from pathlib import Path

from xdr_edge.conformance.cases import Verdict
from xdr_edge.conformance.exchange import ExchangeKind, tls_context
from xdr_edge.conformance.judges import code_note, judge_failure, wrong_class
from xdr_edge.conformance.messages import valid
from xdr_edge.conformance.receiver_context import ReceiverContext, ReceiverTarget
from xdr_edge.protocol.codes import DUPLICATE_IN_REGISTRY, NON_IDENTICAL_HASH


def duplicate(ctx: ReceiverContext) -> Verdict:
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


def document_unique_id_reused(ctx: ReceiverContext) -> Verdict:
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


def tls_mutual(ctx: ReceiverContext) -> Verdict:
    ex = ctx.exchange("valid-minimal", valid())
    if ex.kind in (ExchangeKind.REFUSED, ExchangeKind.ERROR, ExchangeKind.SERVER_UNTRUSTED):
        return Verdict.fail(ex.describe(), "mutual TLS with the practice's certificate did not complete")
    return Verdict.ok(f"handshake completed; {ex.describe()}")


def tls_refused(
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


def tls_no_certificate(ctx: ReceiverContext) -> Verdict:
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
