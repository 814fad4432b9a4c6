"""The conformance catalogue's data model: a test case, its verdict, its result, and a run of many cases.

A catalogue is plain data (:class:`TestCase` values in a tuple), so it can be listed, documented and filtered
without running anything; each case carries the callable that runs it against a context (the receiver
catalogue's context talks to an endpoint, the sender catalogue's context holds what a sender sent).

Pure: no sockets here; timing uses the monotonic clock only to report durations.
"""

from __future__ import annotations

__all__ = [
    "CaseResult",
    "CaseStatus",
    "Report",
    "TestCase",
    "Verdict",
    "run_cases",
]

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Generic, TypeVar

C = TypeVar("C")


class CaseStatus(str, Enum):
    """PASS and FAIL are verdicts; SKIP means the case could not run (material not given, mode not chosen)."""

    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Verdict:
    """What one run of a case found: the status, what was observed (short), and a detail line (the reason)."""

    status: CaseStatus
    observed: str
    detail: str = ""

    @classmethod
    def ok(cls, observed: str, detail: str = "") -> Verdict:
        return cls(CaseStatus.PASS, observed, detail)

    @classmethod
    def fail(cls, observed: str, detail: str = "") -> Verdict:
        return cls(CaseStatus.FAIL, observed, detail)

    @classmethod
    def skip(cls, reason: str) -> Verdict:
        return cls(CaseStatus.SKIP, "not run", reason)

    @classmethod
    def check(cls, passed: bool, observed: str, detail: str = "") -> Verdict:
        return cls(CaseStatus.PASS if passed else CaseStatus.FAIL, observed, detail)


@dataclass(frozen=True)
class TestCase(Generic[C]):
    """One conformance case.

    ``source`` says where the requirement comes from (``ETT 4a``, ``SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3``, ``xdr-edge``); ``required``
    decides the exit status (docs/conformance.md explains how it was chosen); ``expectation`` is the sentence
    printed next to what was observed.
    """

    __test__ = False  # not a pytest test class, whatever its name says

    id: str
    title: str
    required: bool
    source: str
    expectation: str
    run: Callable[[C], Verdict] = field(repr=False, compare=False)


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case: the verdict with the case's expectation and how long it took."""

    case: TestCase[Any]
    status: CaseStatus
    expected: str
    observed: str
    detail: str
    duration: float

    @property
    def passed(self) -> bool:
        return self.status is CaseStatus.PASS

    @property
    def failed(self) -> bool:
        return self.status is CaseStatus.FAIL

    @property
    def skipped(self) -> bool:
        return self.status is CaseStatus.SKIP

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.case.id,
            "title": self.case.title,
            "required": self.case.required,
            "source": self.case.source,
            "status": self.status.value,
            "expected": self.expected,
            "observed": self.observed,
            "detail": self.detail,
            "duration_seconds": round(self.duration, 3),
        }


@dataclass(frozen=True)
class Report:
    """A finished run: which catalogue (``receiver`` or ``sender``), against what, and every result."""

    mode: str
    target: str
    results: tuple[CaseResult, ...]
    started: datetime
    duration: float

    @property
    def required_failures(self) -> tuple[CaseResult, ...]:
        return tuple(r for r in self.results if r.failed and r.case.required)

    @property
    def required_skipped(self) -> tuple[CaseResult, ...]:
        """Required cases that could not be judged (their material was not given): the verdict names them, so a
        pass never hides that the central rules were not tried."""
        return tuple(r for r in self.results if r.skipped and r.case.required)

    @property
    def ok(self) -> bool:
        """True when every required case passed (a skipped required case is not a failure: its material was
        not given, and the report says so)."""
        return not self.required_failures

    @property
    def exit_status(self) -> int:
        """0 when every required case passed, else 1 (the CLI uses 2 for bad options)."""
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        return {
            "total": len(self.results),
            "passed": sum(r.passed for r in self.results),
            "failed": sum(r.failed for r in self.results),
            "skipped": sum(r.skipped for r in self.results),
            "required_failed": len(self.required_failures),
            "required_skipped": len(self.required_skipped),
        }

    def result(self, case_id: str) -> CaseResult:
        for result in self.results:
            if result.case.id == case_id:
                return result
        raise KeyError(case_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "target": self.target,
            "started": self.started.isoformat(timespec="seconds"),
            "duration_seconds": round(self.duration, 3),
            "ok": self.ok,
            "counts": self.counts(),
            "results": [r.as_dict() for r in self.results],
        }


def run_cases(
    cases: Iterable[TestCase[C]],
    context: C,
    *,
    mode: str,
    target: str,
    on_result: Callable[[CaseResult], None] | None = None,
) -> Report:
    """Run each case in order against ``context``. A case that raises is a FAIL naming the exception (a suite
    must report a broken peer, never crash on one); the exception text is the detail."""
    started = datetime.now(UTC)
    begin = time.monotonic()
    results: list[CaseResult] = []
    for case in cases:
        t0 = time.monotonic()
        try:
            verdict = case.run(context)
        except Exception as exc:  # a peer's unexpected behaviour must become a result, not a traceback
            verdict = Verdict.fail("error while running the case", f"{type(exc).__name__}: {exc}")
        result = CaseResult(
            case=case,
            status=verdict.status,
            expected=case.expectation,
            observed=verdict.observed,
            detail=verdict.detail,
            duration=time.monotonic() - t0,
        )
        results.append(result)
        if on_result is not None:
            on_result(result)
    return Report(mode, target, tuple(results), started, time.monotonic() - begin)


def select(cases: Sequence[TestCase[C]], ids: Sequence[str]) -> tuple[TestCase[C], ...]:
    """The cases whose id is in ``ids`` or starts with one of them followed by ``-`` (in catalogue order)."""
    if not ids:
        return tuple(cases)
    known = {c.id for c in cases}
    unknown = [i for i in ids if i not in known and not any(k.startswith(i + "-") for k in known)]
    if unknown:
        raise KeyError(", ".join(unknown))
    return tuple(c for c in cases if any(c.id == i or c.id.startswith(i + "-") for i in ids))
