"""The edge conformance suite: catalogues of test cases for an XDR receiver (the HISP side) and for
an XDR sender (the edge), their runners and their reports (terminal table, JUnit XML, JSON).

See docs/conformance.md for how to run both modes, the case list and how required cases were chosen.

May import: :mod:`xdr_edge.protocol`, the shared modules, :mod:`xdr_edge.receiver` (the recording endpoint
runs on the receiver's server) and :mod:`xdr_edge.registry` (the sender catalogue judges sender addresses by the
receiver's own registry decisions); never devtools.
"""

from __future__ import annotations

from xdr_edge.conformance.cases import CaseResult, CaseStatus, Report, TestCase, Verdict, run_cases
from xdr_edge.conformance.receiver import ReceiverContext, ReceiverTarget, receiver_catalogue, run_receiver

__all__ = [
    "CaseResult",
    "CaseStatus",
    "ReceiverContext",
    "ReceiverTarget",
    "Report",
    "TestCase",
    "Verdict",
    "receiver_catalogue",
    "run_cases",
    "run_receiver",
]
