"""The ebRS ``RegistryResponse``: its writer (the receiver's answer) and its reader (the sender's outcome).

Owns the mapping between the wire element (ITI TF-3 4.2.4, ebRS 3.0) and :class:`RegistryResponse`, a typed value with the
status URN and its ``RegistryError`` entries. Pure: elements in, elements out; no SOAP envelope
(``soap.py``), no transport. The reader is lenient because real peers are not: the Direct RI answers with a
``RegistryResponseType`` root and ``severity="Error"`` instead of the URN, NIST once sent ``errorCode=""``;
such deviations become findings next to the value instead of exceptions, so a sender can still tell Success
from Failure and report what was odd.
"""

from __future__ import annotations

__all__ = [
    "RESPONSE_FINDING_CODE",
    "RegistryErrorEntry",
    "RegistryResponse",
    "read_registry_response",
    "write_registry_response",
]

from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from xdr_edge.protocol import ns
from xdr_edge.protocol.errors import LocalProtocolError, RemoteProtocolError
from xdr_edge.protocol.findings import Finding, Severity
from xdr_edge.protocol.xml import qname, reply_text

#: The ``Finding.code`` of problems found in a peer's RegistryResponse. Nobody answers a response, so there is
#: no XDS errorCode to carry; the code only groups these findings for callers and ``--json`` output.
RESPONSE_FINDING_CODE = "RegistryResponseInconsistent"

_STATUSES = (ns.STATUS_SUCCESS, ns.STATUS_FAILURE, ns.STATUS_PARTIAL)
_SEVERITY_BY_URN = {ns.SEVERITY_ERROR: Severity.ERROR, ns.SEVERITY_WARNING: Severity.WARNING}
_RANK = {Severity.WARNING: 0, Severity.ERROR: 1}


def _rs(local: str) -> str:
    return qname(ns.RS, local)


@dataclass(frozen=True)
class RegistryErrorEntry:
    """One ``rs:RegistryError``: an XDS ``errorCode``, the ``codeContext`` a person reads, severity, location.

    ``location`` is free text (ITI TF-3 4.2.4, ebRS 3.0: NIST puts stack traces and validator names there); we put the
    element path of the finding that caused the entry.
    """

    error_code: str
    code_context: str
    severity: Severity = Severity.ERROR
    location: str | None = None

    @classmethod
    def from_finding(cls, finding: Finding) -> RegistryErrorEntry:
        return cls(finding.code, finding.message, finding.severity, finding.location or None)

    def as_dict(self) -> dict[str, str | None]:
        return {
            "error_code": self.error_code,
            "code_context": self.code_context,
            "severity": self.severity.value,
            "location": self.location,
        }

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


@dataclass(frozen=True)
class RegistryResponse:
    """A RegistryResponse as a value: the status URN, its error/warning entries and the optional requestId.

    ``status`` stays a string (not an enum) so that a peer's unknown status can be held and reported; the
    constructors below only build the three statuses of ITI TF-3 4.2.4, ebRS 3.0, consistently.
    """

    status: str
    errors: tuple[RegistryErrorEntry, ...] = ()
    request_id: str | None = None

    @classmethod
    def success(cls, warnings: Iterable[RegistryErrorEntry] = ()) -> RegistryResponse:
        """Success, optionally with warnings; an Error-severity entry would contradict the status (ITI TF-3 4.2.4, ebRS 3.0)."""
        entries = tuple(warnings)
        if any(e.is_error for e in entries):
            raise LocalProtocolError(
                "a Success RegistryResponse may carry warnings only; got an Error-severity entry",
                location="rs:RegistryResponse/rs:RegistryErrorList",
            )
        return cls(ns.STATUS_SUCCESS, entries)

    @classmethod
    def failure(cls, errors: Iterable[RegistryErrorEntry]) -> RegistryResponse:
        """Failure; ITI TF-3 §4.2.4 (ITI TF-3 4.2.4, ebRS 3.0) requires at least one Error-severity entry."""
        entries = tuple(errors)
        if not any(e.is_error for e in entries):
            raise LocalProtocolError(
                "a Failure RegistryResponse needs at least one Error-severity RegistryError",
                location="rs:RegistryResponse/rs:RegistryErrorList",
            )
        return cls(ns.STATUS_FAILURE, entries)

    @classmethod
    def partial(cls, errors: Iterable[RegistryErrorEntry]) -> RegistryResponse:
        """PartialSuccess: an XDR recipient processed part of the submission; the entries say what was not
        (``Partial...NotProcessed`` codes, ITI TF-3 4.2.4, ebRS 3.0), so at least one is required."""
        entries = tuple(errors)
        if not entries:
            raise LocalProtocolError(
                "a PartialSuccess RegistryResponse must say what was not processed (no entries given)",
                location="rs:RegistryResponse/rs:RegistryErrorList",
            )
        return cls(ns.STATUS_PARTIAL, entries)

    @classmethod
    def from_findings(cls, findings: Iterable[Finding]) -> RegistryResponse:
        """The receiver's answer to validation: Failure when any finding is an error, else Success with every
        warning as a Warning entry (SOAP 1.2 Part 1 §5.4, ITI TF-2x V.3: metadata problems are a Failure, not a SOAP fault)."""
        entries = tuple(RegistryErrorEntry.from_finding(f) for f in findings)
        if any(e.is_error for e in entries):
            return cls(ns.STATUS_FAILURE, entries)
        return cls(ns.STATUS_SUCCESS, entries)

    @property
    def is_success(self) -> bool:
        return self.status == ns.STATUS_SUCCESS

    @property
    def is_partial(self) -> bool:
        return self.status == ns.STATUS_PARTIAL

    @property
    def is_failure(self) -> bool:
        return self.status == ns.STATUS_FAILURE

    @property
    def highest_severity(self) -> Severity | None:
        """The most severe entry's severity; None without entries (then no RegistryErrorList is written)."""
        if not self.errors:
            return None
        return max((e.severity for e in self.errors), key=_RANK.__getitem__)


def write_registry_response(resp: RegistryResponse) -> etree._Element:
    """``rs:RegistryResponse`` per ebRS 3.0 rs.xsd (ITI TF-3 4.2.4, ebRS 3.0): status, optional requestId, and a
    RegistryErrorList whose ``highestSeverity`` is computed, never copied (the RI gets it wrong)."""
    root = etree.Element(_rs("RegistryResponse"), nsmap={"rs": ns.RS})
    root.set("status", resp.status)
    if resp.request_id is not None:
        root.set("requestId", resp.request_id)
    highest = resp.highest_severity
    if highest is not None:
        error_list = etree.SubElement(root, _rs("RegistryErrorList"))
        error_list.set("highestSeverity", highest.urn)
        for entry in resp.errors:
            error = etree.SubElement(error_list, _rs("RegistryError"))
            error.set("errorCode", entry.error_code)
            # codeContext and location may quote what the peer sent (a Content-ID, a cid: URL): XML-safe, short
            error.set("codeContext", reply_text(entry.code_context))
            error.set("severity", entry.severity.urn)
            if entry.location is not None:
                error.set("location", reply_text(entry.location))
    return root


class _Findings:
    """Collects reader findings with one code, so each rule is one line at its call site."""

    def __init__(self) -> None:
        self.items: list[Finding] = []

    def add(self, severity: Severity, location: str, message: str, rule: str) -> None:
        self.items.append(Finding(RESPONSE_FINDING_CODE, severity, location, message, rule))


def _check_root(element: etree._Element, found: _Findings) -> str:
    """Accept ``rs:RegistryResponse``, and the Direct RI's ``rs:RegistryResponseType`` root with a warning."""
    tag = etree.QName(element)
    if tag.namespace == ns.RS and tag.localname == "RegistryResponse":
        return "rs:RegistryResponse"
    if tag.namespace == ns.RS and tag.localname == "RegistryResponseType":
        found.add(
            Severity.WARNING,
            "rs:RegistryResponseType",
            "the root element is rs:RegistryResponseType (a type name, as the Direct RI sends it); "
            "rs.xsd defines the element rs:RegistryResponse",
            "rs-root-type-name",
        )
        return "rs:RegistryResponseType"
    raise RemoteProtocolError(
        f"expected rs:RegistryResponse ({ns.RS}), found {{{tag.namespace}}}{tag.localname}",
        code="not-a-registry-response",
        location=tag.localname,
    )


def _read_severity(value: str | None, where: str, found: _Findings) -> Severity:
    if value is None:
        return Severity.ERROR  # rs.xsd default
    text = value.strip()
    if text in _SEVERITY_BY_URN:
        return _SEVERITY_BY_URN[text]
    for severity in Severity:
        if text.lower() == severity.value.lower():
            found.add(
                Severity.WARNING,
                f"{where}/@severity",
                f"severity {text!r} is not a URN; expected {severity.urn}",
                "rs-severity-not-urn",
            )
            return severity
    found.add(
        Severity.ERROR,
        f"{where}/@severity",
        f"unknown severity {text!r}: expected {ns.SEVERITY_ERROR} or {ns.SEVERITY_WARNING}; read as Error",
        "rs-severity-unknown",
    )
    return Severity.ERROR


def _read_error(element: etree._Element, where: str, found: _Findings) -> RegistryErrorEntry:
    code = (element.get("errorCode") or "").strip()
    if not code:
        found.add(
            Severity.ERROR, f"{where}/@errorCode", "errorCode is missing or empty", "rs-error-code-empty"
        )
    context = element.get("codeContext")
    if context is None:
        found.add(
            Severity.WARNING, f"{where}/@codeContext", "codeContext is missing", "rs-code-context-missing"
        )
        context = (element.text or "").strip()
    severity = _read_severity(element.get("severity"), where, found)
    return RegistryErrorEntry(code, context, severity, element.get("location"))


def _read_errors(root: etree._Element, root_name: str, found: _Findings) -> tuple[RegistryErrorEntry, ...]:
    error_list = root.find(_rs("RegistryErrorList"))
    if error_list is None:
        return ()
    list_where = f"{root_name}/rs:RegistryErrorList"
    entries = tuple(
        _read_error(el, f"{list_where}/rs:RegistryError[{i}]", found)
        for i, el in enumerate(error_list.iterfind(_rs("RegistryError")), start=1)
    )
    if not entries:
        found.add(
            Severity.WARNING, list_where, "RegistryErrorList has no RegistryError", "rs-error-list-empty"
        )
    declared = error_list.get("highestSeverity")
    if declared is not None and entries:
        highest = max((e.severity for e in entries), key=_RANK.__getitem__)
        if declared.strip() != highest.urn:
            found.add(
                Severity.WARNING,
                f"{list_where}/@highestSeverity",
                f"highestSeverity {declared.strip()[:80]!r} disagrees with the entries "
                f"(the highest is {highest.urn})",
                "rs-highest-severity-mismatch",
            )
    return entries


def _check_status(status: str, entries: tuple[RegistryErrorEntry, ...], where: str, found: _Findings) -> None:
    has_error = any(e.is_error for e in entries)
    if status not in _STATUSES:
        found.add(
            Severity.ERROR,
            f"{where}/@status",
            f"unknown status {status!r}: expected one of {', '.join(_STATUSES)}",
            "rs-status-unknown",
        )
    elif status == ns.STATUS_FAILURE and not has_error:
        found.add(
            Severity.WARNING,
            where,
            "status is Failure but no RegistryError has severity Error (ITI TF-3 §4.2.4)",
            "rs-failure-without-error",
        )
    elif status == ns.STATUS_SUCCESS and has_error:
        found.add(
            Severity.WARNING,
            where,
            "status is Success but a RegistryError has severity Error (ITI TF-3 §4.2.4)",
            "rs-success-with-error",
        )


def read_registry_response(element: etree._Element) -> tuple[RegistryResponse, list[Finding]]:
    """Read a peer's RegistryResponse, holding what it says and reporting the ITI TF-3 4.2.4, ebRS 3.0 consistency problems.

    The status is taken as written (a Failure without errors is still a Failure: the sender must not assume
    delivery); findings tell the operator what the peer got wrong. Raises :class:`RemoteProtocolError` only
    when the element is not a RegistryResponse at all.
    """
    found = _Findings()
    root_name = _check_root(element, found)
    status = (element.get("status") or "").strip()
    if not status:
        found.add(Severity.ERROR, f"{root_name}/@status", "status is missing", "rs-status-missing")
    entries = _read_errors(element, root_name, found)
    if status:
        _check_status(status, entries, root_name, found)
    return RegistryResponse(status, entries, element.get("requestId")), found.items
