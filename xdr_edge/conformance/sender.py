"""The sender catalogue: what an edge sent, judged after a run of the recording endpoint (:mod:`.recording`).

The cases check the HTTP Content-Type and MIME parts (XOP 1.0 §4.1, ITI TF-2b 3.41.5), SOAP and WS-Addressing
(ITI TF-2x V.3.2, WS-Addressing 1.0; MessageIDs unique across sends, ETT MT 19/48), the Direct address block
("XDR and XDM for Direct Messaging" §4.1, ETT MT 49), metadata for the declared level (ITI TF-3 4.3.1), hash and
size against the bytes, the client certificate, and, given the bindings (:mod:`.bindings`: the receiver's registry
or ``--practice`` pairs), that every sender address is bound to the practice of the certificate that carried it
(our practice-binding rule). Documents are never logged or printed (PHI).
"""

from __future__ import annotations

__all__ = ["SENDER_CASES", "SenderContext", "judge_recorded", "run_sender", "sender_catalogue"]

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from lxml import etree

from xdr_edge.conformance.bindings import SenderBindings
from xdr_edge.conformance.cases import CaseResult, CaseStatus, Report, TestCase, Verdict, run_cases
from xdr_edge.conformance.lenient import ACTION, MESSAGE_ID, TO
from xdr_edge.conformance.recording import (
    ConnectionAttempt,
    RecordingEndpoint,
    RequestAnalysis,
    SenderEndpointConfig,
)
from xdr_edge.protocol import ns
from xdr_edge.protocol.codes import MISSING_DOCUMENT, MISSING_DOCUMENT_METADATA
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.findings import Finding
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.model import DirectAddress
from xdr_edge.protocol.soap import LevelPlacement

_MU = f"{{{ns.SOAP}}}mustUnderstand"


@dataclass(frozen=True)
class SenderContext:
    """Everything the sender cases judge: the analysed requests, or the connection attempts (ETT 7 mode), and the
    bindings the sender must keep (None: not given, the ``practice-binding`` case is skipped)."""

    analyses: tuple[RequestAnalysis, ...]
    attempts: tuple[ConnectionAttempt, ...] = ()
    bad_server_cert: bool = False
    expect: int | None = None
    bindings: SenderBindings | None = None


Check = Callable[[RequestAnalysis], list[str]]


def _per_request(check: Check, *, needs_envelope: bool = True) -> Callable[[SenderContext], Verdict]:
    """Run ``check`` on every request; the case passes when no request has a problem."""

    def run(ctx: SenderContext) -> Verdict:
        if ctx.bad_server_cert:
            return Verdict.skip("--bad-server-cert run: no request is expected to arrive")
        if not ctx.analyses:
            return Verdict.fail("no request recorded", "the sender sent nothing that reached the endpoint")
        problems: list[str] = []
        for analysis in ctx.analyses:
            if needs_envelope and analysis.envelope is None:
                problems.append(f"request {analysis.record.index}: unreadable: {analysis.envelope_error}")
                continue
            problems += [f"request {analysis.record.index}: {p}" for p in check(analysis)]
        n = len(ctx.analyses)
        if problems:
            extra = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            return Verdict.fail(problems[0] + extra, "; ".join(problems))
        return Verdict.ok(f"{n} request(s), all conform")

    return run


def _header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name.lower()), None)


def _bracketed(value: str | None) -> bool:
    return value is not None and len(value) > 2 and value.startswith("<") and value.endswith(">")


def _check_content_type(a: RequestAnalysis) -> list[str]:
    return list(a.content_type_problems)


def _root_index(a: RequestAnalysis) -> int:
    for i, headers in enumerate(a.part_headers):
        if a.start is not None and _header(headers, "Content-ID") == f"<{a.start}>":
            return i
    return 0


def _check_root_part(a: RequestAnalysis) -> list[str]:
    if not a.mtom:
        return ["not an MTOM request"]
    if a.mime_problem:
        return [a.mime_problem]
    if not a.part_headers:
        return ["no MIME parts"]
    headers = a.part_headers[_root_index(a)]
    problems = []
    root_type: MediaType | None = None
    try:
        media = MediaType.parse(_header(headers, "Content-Type") or "")
        root_type = media.param_media_type("type") if media.matches("application/xop+xml") else None
    except RemoteProtocolError:
        pass
    if root_type is None or not root_type.matches("application/soap+xml"):
        problems.append(
            f"root part Content-Type {_header(headers, 'Content-Type')!r}; expected "
            'application/xop+xml; type="application/soap+xml" (XOP 1.0 §4.1)'
        )
    if not _bracketed(_header(headers, "Content-ID")):
        problems.append("root part Content-ID missing or not wrapped in < >")
    if _header(headers, "Content-Transfer-Encoding") is None:
        problems.append("root part has no Content-Transfer-Encoding")
    return problems


def _check_document_parts(a: RequestAnalysis) -> list[str]:
    if not a.mtom:
        return ["not an MTOM request (documents inline)"]
    if a.mime_problem:
        return [a.mime_problem]
    problems = []
    root = _root_index(a)
    ids: list[str] = []
    for i, headers in enumerate(a.part_headers):
        if i == root:
            continue
        cid = _header(headers, "Content-ID")
        if not _bracketed(cid):
            problems.append(f"MIME part {i + 1}: Content-ID {cid!r} missing or not wrapped in < >")
        else:
            assert cid is not None
            ids.append(cid[1:-1])
        if _header(headers, "Content-Transfer-Encoding") is None:
            problems.append(f"MIME part {i + 1}: no Content-Transfer-Encoding (DTS 432)")
    refs = Counter(unquote(h) for h in a.included)
    for cid, n in refs.items():
        if n > 1:
            problems.append(f"part <{cid}> referenced by {n} xop:Include elements (DTS 432)")
        if cid not in ids:
            problems.append(f"xop:Include cid:{cid} names no MIME part")
    for cid in ids:
        if cid not in refs:
            problems.append(f"MIME part <{cid}> is not referenced by any xop:Include")
    return problems


def _check_soap(a: RequestAnalysis) -> list[str]:
    """A readable SOAP 1.2 ITI-41 envelope, and no WS-Addressing header the reader had to read past other than
    MessageID, Action and To (the ``wsa-message-id``, ``wsa-action`` and ``wsa-to`` cases report those)."""
    if a.envelope is None:
        return [f"not a readable ITI-41 SOAP 1.2 request: {a.envelope_error}"]
    return [p for where, p in a.header_problems.items() if not where.startswith((MESSAGE_ID, ACTION, TO))]


def _wsa_elements(a: RequestAnalysis, local: str) -> list[etree._Element]:
    if a.root is None:
        return []
    header = a.root.find(f"{{{ns.SOAP}}}Header")
    return [] if header is None else header.findall(f"{{{ns.WSA}}}{local}")


def _must_understand(element: etree._Element) -> bool:
    return (element.get(_MU) or "").strip() in ("true", "1")


def _check_action(a: RequestAnalysis) -> list[str]:
    actions = _wsa_elements(a, "Action")
    if len(actions) != 1:
        return [f"{len(actions)} wsa:Action headers, expected exactly 1"]
    problems = []
    if (actions[0].text or "") != ns.ACTION_PNR:
        problems.append(f"wsa:Action is {actions[0].text!r}, expected {ns.ACTION_PNR} without whitespace")
    if not _must_understand(actions[0]):
        problems.append('wsa:Action lacks S:mustUnderstand="true" (ONC XDR checklist XD 2, IHE_WSA101)')
    # The header is right, yet the reader stopped on it: the Content-Type states another action.
    if not problems:
        problems += [p for where, p in a.header_problems.items() if where.startswith(ACTION)]
    return problems


def _check_to(a: RequestAnalysis) -> list[str]:
    to = _wsa_elements(a, "To")
    if len(to) != 1:
        return [f"{len(to)} wsa:To headers, expected 1 (DTS 413)"]
    if not (to[0].text or "").strip().startswith("http"):
        return [f"wsa:To {to[0].text!r} is not the endpoint URL"]
    return []


def _check_reply_to(a: RequestAnalysis) -> list[str]:
    reply = _wsa_elements(a, "ReplyTo")
    if len(reply) != 1:
        return ["no wsa:ReplyTo (ONC XDR checklist XD 3 requires it; DTS 419 makes it optional)"]
    problems = []
    address = reply[0].find(f"{{{ns.WSA}}}Address")
    if address is None or (address.text or "").strip() != ns.WSA_ANONYMOUS:
        problems.append("wsa:ReplyTo/wsa:Address is not the anonymous URI")
    if not _must_understand(reply[0]):
        problems.append('wsa:ReplyTo lacks S:mustUnderstand="true" (DTS 420)')
    return problems


def _check_address_block(a: RequestAnalysis) -> list[str]:
    env = a.envelope
    assert env is not None
    if not env.has_address_block:
        return ["no direct:addressBlock (ETT MT 49)"]
    problems = []
    if env.direct_from is None:
        problems.append("addressBlock has no direct:from")
    if not env.direct_to:
        problems.append("addressBlock has no direct:to")
    # an address that is not one, or a delivery-notification request that is neither true nor false
    return problems + _errors(a, lambda f: f.rule in _ADDRESS_BLOCK_RULES)


def _check_level(a: RequestAnalysis) -> list[str]:
    env = a.envelope
    assert env is not None
    if env.level is None:
        return [
            "no direct:metadata-level (receivers then assume XDS, XDR and XDM for Direct Messaging §6.1.1)"
        ]
    if env.level_placement is LevelPlacement.IN_BLOCK:
        return [
            "direct:metadata-level only inside the addressBlock; ETT/NIST read it at the top level (XDR and XDM for Direct Messaging §6.1.1)"
        ]
    return []


_DOCUMENT_CODES = frozenset({MISSING_DOCUMENT, MISSING_DOCUMENT_METADATA})


_HASH_RULES = frozenset({"de-hash-mismatch", "de-size-mismatch"})


_SENDER_RULES = frozenset({"sender-mismatch", "sender-unknown"})


_ADDRESS_BLOCK_RULES = frozenset({"direct-bad-address", "direct-bad-delivery-request"})


def _errors(a: RequestAnalysis, keep: Callable[[Finding], bool]) -> list[str]:
    return [f"{f.code} at {f.location}: {f.message}" for f in a.findings if f.is_error and keep(f)]


def _check_metadata(a: RequestAnalysis) -> list[str]:
    return _errors(
        a,
        lambda f: (
            f.code not in _DOCUMENT_CODES and f.rule not in _HASH_RULES | _SENDER_RULES | _ADDRESS_BLOCK_RULES
        ),
    )


def _check_documents(a: RequestAnalysis) -> list[str]:
    return _errors(a, lambda f: f.code in _DOCUMENT_CODES)


def _check_hash_size(a: RequestAnalysis) -> list[str]:
    return _errors(a, lambda f: f.rule in _HASH_RULES)


def _check_sender(a: RequestAnalysis) -> list[str]:
    env = a.envelope
    assert env is not None
    if not a.senders_in_metadata:
        return ["no SubmissionSet authorTelecommunication with the sender's Direct address (DTS 433)"]
    if env.direct_from is not None and str(env.direct_from) not in a.senders_in_metadata:
        return [f"direct:from {env.direct_from} differs from authorTelecommunication (DTS 433)"]
    return []


def _message_id_present(a: RequestAnalysis) -> list[str]:
    """A usable MessageID; when the reader had to read past it, its reason (missing, empty, not a URI, twice)."""
    problem = next((p for where, p in a.header_problems.items() if where.startswith(MESSAGE_ID)), None)
    if problem is not None:
        return [problem]
    return [] if a.message_id else ["no wsa:MessageID"]


def _message_ids_unique(ctx: SenderContext) -> Verdict:
    base = _per_request(_message_id_present)(ctx)
    if base.status is not CaseStatus.PASS:
        return base
    counts = Counter(a.message_id for a in ctx.analyses)
    reused = sorted(str(m) for m, n in counts.items() if n > 1)
    if reused:
        return Verdict.fail(
            f"{len(reused)} MessageID(s) reused across {len(ctx.analyses)} sends",
            "reused: " + ", ".join(reused) + " (each send needs a new MessageID: ETT MT 19/48)",
        )
    return Verdict.ok(f"{len(ctx.analyses)} request(s), {len(counts)} distinct MessageIDs")


def _client_certificate(ctx: SenderContext) -> Verdict:
    if ctx.bad_server_cert:
        return Verdict.skip("--bad-server-cert run: the handshake is expected to fail")
    if not ctx.analyses:
        return Verdict.fail("no request recorded", "no sender completed mutual TLS with this endpoint")
    missing = [a.record.index for a in ctx.analyses if not a.record.client_verified]
    if missing:
        return Verdict.fail(f"requests without a verified client certificate: {missing}")
    subjects = sorted({a.record.client_subject or "?" for a in ctx.analyses})
    return Verdict.ok(f"verified client certificate on every request: {', '.join(subjects)}")


def _bad_server_cert(ctx: SenderContext) -> Verdict:
    if not ctx.bad_server_cert:
        return Verdict.skip("run with --bad-server-cert to test this (ETT 7)")
    if not ctx.attempts:
        return Verdict.fail("no connection attempt", "the sender never connected")
    leaked = [a for a in ctx.attempts if a.application_bytes]
    if leaked:
        return Verdict.fail(
            leaked[0].detail, "the sender sent application data to a server whose certificate it cannot trust"
        )
    return Verdict.ok(f"{len(ctx.attempts)} connection(s), no application data: {ctx.attempts[0].detail}")


def _senders(a: RequestAnalysis) -> list[tuple[str, DirectAddress]]:
    """Every sender address the request claims, where it claims it (the receiver checks the same ones)."""
    found: list[tuple[str, DirectAddress]] = []
    if a.envelope is not None and a.envelope.direct_from is not None:
        found.append(("direct:from", a.envelope.direct_from))
    for text in a.senders_in_metadata:
        try:
            address = DirectAddress.parse(text)
        except ValueError:
            continue  # a malformed address is the metadata case's to report
        if all(address != known for _, known in found):
            found.append(("authorTelecommunication", address))
    return found


def _practice_binding(ctx: SenderContext) -> Verdict:
    """Our practice-binding rule from the sending side: the sender addresses of each request are bound to the
    practice of the client certificate it came with (a sender using practice B's certificate for practice A's
    address is refused by a careful receiver, or worse, accepted by a careless one)."""
    if ctx.bad_server_cert:
        return Verdict.skip("--bad-server-cert run: no request is expected to arrive")
    if ctx.bindings is None:
        return Verdict.skip(
            "no bindings given (--registry URL, or --practice CERT_OR_FINGERPRINT ADDRESS_OR_DOMAIN): without "
            "them nobody can tell which practice an address belongs to"
        )
    if not ctx.analyses:
        return Verdict.fail("no request recorded", "the sender sent nothing that reached the endpoint")
    problems: list[str] = []
    judged = 0
    for a in ctx.analyses:
        cert = a.record.client_certificate
        senders = _senders(a)
        if cert is None or not senders:
            continue  # tls-client-certificate, direct-address-block and author-telecommunication report these
        judged += 1
        found = ctx.bindings.problems(cert, senders, at=a.record.received_at)
        problems += [f"request {a.record.index}: {p}" for p in found]
    if not judged:
        return Verdict.skip(
            "no request came with both a client certificate and a sender address (see tls-client-certificate, "
            "direct-address-block and author-telecommunication)"
        )
    if problems:
        extra = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return Verdict.fail(problems[0] + extra, "; ".join(problems))
    return Verdict.ok(
        f"{judged} request(s): every sender address bound to the certificate's practice "
        f"({ctx.bindings.describe()})"
    )


def _expected_count(ctx: SenderContext) -> Verdict:
    have = len(ctx.attempts) if ctx.bad_server_cert else len(ctx.analyses)
    if ctx.expect is None:
        return Verdict.skip("no --expect given")
    return Verdict.check(
        have >= ctx.expect, f"{have} of {ctx.expect}", "" if have >= ctx.expect else "timed out"
    )


#: Every sender case, in report order.
SENDER_CASES: tuple[TestCase[SenderContext], ...] = (
    TestCase(
        id="expected-count",
        title="the expected number of messages arrived",
        required=True,
        source="ETT 1 / 2, MT 19 / 48 (the sender sends what the test asks for)",
        expectation="--expect N messages (or connections) before --timeout",
        run=_expected_count,
    ),
    TestCase(
        id="tls-client-certificate",
        title="mutual TLS: a client certificate trusted by --client-ca",
        required=True,
        source="ETT 6",
        expectation="every request came with a verified client certificate",
        run=_client_certificate,
    ),
    TestCase(
        id="tls-bad-server-certificate",
        title="server certificate from an untrusted CA",
        required=True,
        source="ETT 7 / 17",
        expectation="the sender hangs up without sending application data",
        run=_bad_server_cert,
    ),
    TestCase(
        id="http-content-type",
        title="MTOM HTTP Content-Type parameters",
        required=True,
        source="W3C SOAP 1.2 MTOM §3, XOP 1.0 §4.1, ITI TF-2b 3.41.5",
        expectation='multipart/related; type="application/xop+xml"; boundary; start=<...>; start-info',
        run=_per_request(_check_content_type, needs_envelope=False),
    ),
    TestCase(
        id="mtom-root-part",
        title="root part headers",
        required=True,
        source="XOP 1.0 §4",
        expectation='application/xop+xml; type="application/soap+xml", Content-ID <...>, Content-Transfer-Encoding',
        run=_per_request(_check_root_part, needs_envelope=False),
    ),
    TestCase(
        id="mtom-document-parts",
        title="document parts and xop:Include references",
        required=True,
        source="ITI TF-2b 3.41.5, RFC 2392, XOP 1.0 §3, DTS 432",
        expectation="Content-ID <...> and Content-Transfer-Encoding on each part; one xop:Include per part",
        run=_per_request(_check_document_parts),
    ),
    TestCase(
        id="soap-envelope",
        title="SOAP 1.2 ITI-41 envelope",
        required=True,
        source="ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding",
        expectation="readable SOAP 1.2 envelope with one Header and Body",
        run=_per_request(_check_soap, needs_envelope=False),
    ),
    TestCase(
        id="wsa-action",
        title="wsa:Action",
        required=True,
        source="ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding §6.4.1 (ONC XDR checklist XD 2)",
        expectation="exactly one, the PnR action, mustUnderstand true; any action of the Content-Type the same",
        run=_per_request(_check_action),
    ),
    TestCase(
        id="wsa-to",
        title="wsa:To",
        required=True,
        source="ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding (DTS 413)",
        expectation="present, the endpoint URL",
        run=_per_request(_check_to),
    ),
    TestCase(
        id="wsa-message-id",
        title="wsa:MessageID unique across sends",
        required=True,
        source="ETT MT 19 / 48, DTS 425",
        expectation="present in every request, never reused",
        run=_message_ids_unique,
    ),
    TestCase(
        id="wsa-reply-to",
        title="wsa:ReplyTo anonymous with mustUnderstand",
        required=False,
        source="ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding (XD 3 vs DTS 419)",
        expectation="ReplyTo/Address = anonymous, mustUnderstand true",
        run=_per_request(_check_reply_to),
    ),
    TestCase(
        id="direct-address-block",
        title="Direct addressBlock with from and to",
        required=True,
        source="ETT MT 49, XDR and XDM for Direct Messaging §4.1",
        expectation="direct:addressBlock with direct:from and direct:to",
        run=_per_request(_check_address_block),
    ),
    TestCase(
        id="direct-metadata-level",
        title="direct:metadata-level at the top level",
        required=False,
        source="XDR and XDM for Direct Messaging §6.1.1",
        expectation="top-level direct:metadata-level minimal|XDS",
        run=_per_request(_check_level),
    ),
    TestCase(
        id="metadata-valid",
        title="metadata valid for the declared level",
        required=True,
        source="ETT 1 / 2, ITI TF-3 4.3.1, XDR Limited Metadata",
        expectation="no metadata errors for the declared level",
        run=_per_request(_check_metadata),
    ),
    TestCase(
        id="author-telecommunication",
        title="sender in SubmissionSet authorTelecommunication",
        required=True,
        source="XDR and XDM for Direct Messaging §4.2, ITI TF-3 4.2.3.3 (DTS 433)",
        expectation="authorTelecommunication = direct:from",
        run=_per_request(_check_sender),
    ),
    TestCase(
        id="practice-binding",
        title="sender addresses bound to the practice of the client certificate",
        required=True,
        source="our practice-binding rule, Direct Edge Protocols IG §1.1, XDR and XDM for Direct Messaging §4.1, §4.2",
        expectation="direct:from and authorTelecommunication bound to the certificate's practice "
        "(--registry or --practice)",
        run=_practice_binding,
    ),
    TestCase(
        id="documents-attached",
        title="every DocumentEntry has its document and vice versa",
        required=True,
        source="ITI TF-3 4.2.4, NIST repository checks",
        expectation="no XDSMissingDocument / XDSMissingDocumentMetadata",
        run=_per_request(_check_documents),
    ),
    TestCase(
        id="hash-size",
        title="declared hash and size equal the bytes",
        required=True,
        source="NIST XDS toolkit validators",
        expectation="hash = SHA-1 and size = length of each part",
        run=_per_request(_check_hash_size),
    ),
)


def sender_catalogue() -> tuple[TestCase[SenderContext], ...]:
    """Every sender case, in report order."""
    return SENDER_CASES


def run_sender(
    config: SenderEndpointConfig,
    *,
    expect: int,
    timeout: float,
    bindings: SenderBindings | None = None,
    on_ready: Callable[[str], None] | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> Report:
    """Start the endpoint, wait for ``expect`` messages (or connections) or ``timeout`` seconds, judge, stop.
    ``bindings`` are the addresses each certificate may send from (the ``practice-binding`` case)."""
    with RecordingEndpoint(config) as endpoint:
        if on_ready is not None:
            on_ready(endpoint.url)
        endpoint.wait(expect, timeout)
        endpoint.stop()
        return judge_recorded(endpoint, expect=expect, bindings=bindings, on_result=on_result)


def judge_recorded(
    endpoint: RecordingEndpoint,
    *,
    expect: int | None = None,
    bindings: SenderBindings | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> Report:
    """Judge everything ``endpoint`` recorded so far with the sender catalogue."""
    analyses, attempts = endpoint.recorded()
    context = SenderContext(
        analyses=analyses,
        attempts=attempts,
        bad_server_cert=endpoint.config.bad_server_cert,
        expect=expect,
        bindings=bindings,
    )
    return run_cases(sender_catalogue(), context, mode="sender", target=endpoint.url, on_result=on_result)
