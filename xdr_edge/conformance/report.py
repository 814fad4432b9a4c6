"""Reports of a conformance run: a table for people, JUnit XML for CI systems, JSON for programs; and the
catalogue itself as a table or Markdown (``xdr-edge conformance list``, docs/conformance.md).

Pure formatting: strings in, strings out; the writers only write the file they are given.
"""

from __future__ import annotations

__all__ = [
    "catalogue_markdown",
    "catalogue_table",
    "format_table",
    "junit_xml",
    "write_json",
    "write_junit",
]

import json
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from xdr_edge.conformance.cases import CaseStatus, Report, TestCase


def _wrap(first: str, text: str, width: int, indent: int) -> list[str]:
    """``text`` wrapped to ``width`` columns after ``indent`` spaces, ``first`` leading its first line and its
    width of blanks the others: nothing is ever cut, and a word (a URN, a case id) is never split, so a long
    observation simply takes more lines."""
    pieces = textwrap.wrap(
        text, max(width - len(first), 20), break_long_words=False, break_on_hyphens=False
    ) or [""]
    pad = " " * indent
    return [f"{pad}{first if i == 0 else ' ' * len(first)}{piece}" for i, piece in enumerate(pieces)]


def format_table(report: Report, *, width: int = 110, details: bool = True) -> str:
    """The terminal table. Per case: id, R(equired)/o(ptional), PASS/FAIL/SKIP and the expectation; then ``->``
    what was observed, ``why:`` the reason for every case that did not pass, and ``source:`` the rule it checks
    (ETT test, IHE ITI TF section, SOAP 1.2 / WS-Addressing rule). Long texts are wrapped, never cut; on a
    narrow terminal the texts go under the id instead of beside it."""
    id_w = max([len(r.case.id) for r in report.results] + [2])
    indent = id_w + 15
    if width - indent < 60:
        indent = 4
    rest = max(width - indent, 40)
    lines = [f"{report.mode} conformance: {report.target}", ""]
    lines.append(f"{'id'.ljust(id_w)}  req  result  expected -> observed")
    lines.append(f"{'-' * id_w}  ---  ------  {'-' * max(min(width - id_w - 15, 60), 8)}")
    for r in report.results:
        req = "R" if r.case.required else "o"
        head = f"{r.case.id.ljust(id_w)}   {req}   {r.status.value:<6}  "
        expected = _wrap("", r.expected, rest, indent)
        if indent == len(head):
            lines += [head + expected[0][indent:], *expected[1:]]
        else:
            lines += [head.rstrip(), *expected]
        lines += _wrap("-> ", r.observed, rest, indent)
        if details and r.detail and not r.passed and r.detail != r.observed:
            lines += _wrap("why: ", r.detail, rest, indent)
        lines += _wrap("source: ", r.case.source, rest, indent)
    c = report.counts()
    if not report.ok:
        verdict = "FAILED required: " + ", ".join(r.case.id for r in report.required_failures)
    elif report.required_skipped:
        verdict = "OK, but required case(s) not judged: " + "; ".join(
            f"{r.case.id} ({r.detail or r.observed})" for r in report.required_skipped
        )
    else:
        verdict = "OK: every required case passed"
    lines += [
        "",
        f"{c['total']} cases: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped "
        f"in {report.duration:.1f} s",
        verdict,
    ]
    return "\n".join(lines)


def junit_xml(report: Report) -> bytes:
    """JUnit XML: one ``testsuite`` with a ``testcase`` per case; ``failure`` for FAIL (optional cases too,
    their ``type`` says ``optional``), ``skipped`` for SKIP; ``system-out`` holds expected and observed."""
    c = report.counts()
    suite = ET.Element(
        "testsuite",
        {
            "name": f"xdr-edge conformance {report.mode}",
            "tests": str(c["total"]),
            "failures": str(c["failed"]),
            "errors": "0",
            "skipped": str(c["skipped"]),
            "time": f"{report.duration:.3f}",
            "timestamp": report.started.isoformat(timespec="seconds"),
            "hostname": report.target,
        },
    )
    for r in report.results:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": f"conformance.{report.mode}",
                "name": f"{r.case.id}: {r.case.title}",
                "time": f"{r.duration:.3f}",
            },
        )
        if r.status is CaseStatus.FAIL:
            failure = ET.SubElement(
                case,
                "failure",
                {"message": r.detail or r.observed, "type": "required" if r.case.required else "optional"},
            )
            failure.text = (
                f"expected: {r.expected}\nobserved: {r.observed}\n{r.detail}\nsource: {r.case.source}"
            )
        elif r.status is CaseStatus.SKIP:
            ET.SubElement(case, "skipped", {"message": r.detail})
        out = ET.SubElement(case, "system-out")
        out.text = (
            f"source: {r.case.source}\nrequired: {r.case.required}\nexpected: {r.expected}\n"
            f"observed: {r.observed}\n{r.detail}"
        ).rstrip()
    ET.indent(suite)
    data: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return data


def _write(path: Path, data: bytes) -> None:
    """Write through a sibling temporary file and rename, so a CI system never reads half a report."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_junit(report: Report, path: Path) -> None:
    _write(path, junit_xml(report))


def write_json(report: Report, path: Path) -> None:
    _write(path, json.dumps(report.as_dict(), indent=2).encode("utf-8") + b"\n")


def _rows(cases: Sequence[TestCase[Any]]) -> list[tuple[str, str, str, str, str]]:
    return [(c.id, "R" if c.required else "o", c.source, c.title, c.expectation) for c in cases]


def catalogue_table(cases: Sequence[TestCase[Any]]) -> str:
    """The catalogue as a plain text table (``xdr-edge conformance list``)."""
    rows = [("id", "req", "source", "title", "expected"), *_rows(cases)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)).rstrip()
        for row in rows
    )


def catalogue_markdown(cases: Sequence[TestCase[Any]]) -> str:
    """The catalogue as a Markdown table (pasted into docs/conformance.md by ``conformance list --markdown``)."""
    lines = ["| id | required | source | case | expected |", "|---|---|---|---|---|"]
    for cid, req, source, title, expected in _rows(cases):
        cells = [f"`{cid}`", "yes" if req == "R" else "no", source, title, expected]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
