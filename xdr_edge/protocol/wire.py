"""Whole ITI-41 messages on the wire: a Submission to request bytes and back, a RegistryResponse or fault to
response bytes and back. This module only composes the format modules (metadata, soap, mtom, response, validate);
it is the one place where they meet, and both the client and the receiver use it.

Pure: byte streams in, byte iterables out. No sockets, no logging of content.
"""

from __future__ import annotations

__all__ = [
    "SALVAGE_BYTES",
    "IncomingRequest",
    "OutgoingRequest",
    "ParsedResponse",
    "ReplyBytes",
    "build_plain_request",
    "build_reply",
    "build_request",
    "interpret_request",
    "message_id_of_unread",
    "new_message_id",
    "parse_request",
    "parse_response",
    "read_bounded",
    "request_envelope",
    "soap_content_type",
]

import dataclasses
import io
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, cast

from xdr_edge.protocol import ns
from xdr_edge.protocol.codes import METADATA_ERROR, MISSING_DOCUMENT, MISSING_DOCUMENT_METADATA
from xdr_edge.protocol.errors import LimitExceeded, RemoteProtocolError
from xdr_edge.protocol.findings import Finding, Severity
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.metadata import MetadataTemplates, read_submit_objects, write_submit_objects
from xdr_edge.protocol.model import Document, MetadataLevel, Submission
from xdr_edge.protocol.mtom import (
    MtomBody,
    MtomLimits,
    MtomPackage,
    MtomPart,
    new_content_id,
    read_mtom,
    root_part_prefix,
)
from xdr_edge.protocol.response import RegistryResponse, read_registry_response, write_registry_response
from xdr_edge.protocol.soap import (
    DocumentRef,
    Fault,
    LevelPlacement,
    RequestEnvelope,
    RequestEnvelopeWriter,
    ResponseEnvelope,
    build_fault_envelope,
    build_request_envelope,
    build_response_envelope,
    fault_action,
    fault_http_status,
    message_id_in_prefix,
    read_request_envelope,
    read_response_envelope,
)
from xdr_edge.protocol.validate import check_documents, validate
from xdr_edge.protocol.xml import DEFAULT_XML_BUDGET, XmlBudget


def new_message_id() -> str:
    """A fresh WS-Addressing MessageID (``urn:uuid:``, ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding); every send, including a retry, gets one."""
    return f"urn:uuid:{uuid.uuid4()}"


@dataclass(frozen=True)
class OutgoingRequest:
    """A request ready to send: its MessageID, the exact Content-Type header and the streaming MTOM body."""

    message_id: str
    endpoint: str
    submission: Submission
    body: MtomBody

    @property
    def content_type(self) -> str:
        return self.body.content_type

    def headers(self) -> dict[str, str]:
        return {"Content-Type": self.content_type, "Content-Length": str(len(self.body))}

    def write_entity(self, out: IO[bytes]) -> int:
        """Write one MIME entity (the Content-Type header line, a blank line, the body exactly as sent).
        Returns the body length."""
        out.write(f"Content-Type: {self.content_type}\r\n\r\n".encode("ascii"))
        return self.body.write_to(out)


def build_request(
    submission: Submission,
    *,
    endpoint: str,
    message_id: str | None = None,
    placement: LevelPlacement = LevelPlacement.TOP_LEVEL,
    writer: RequestEnvelopeWriter | None = None,
    text_checked: bool = False,
    templates: MetadataTemplates | None = None,
) -> OutgoingRequest:
    """Build the MTOM request for ``submission``. Each document becomes one MIME part whose bytes are re-checked
    against the entry's declared hash and size while streaming (:class:`~xdr_edge.protocol.mtom.MtomPart`).

    ``writer`` renders the envelope; a sender passes the one it keeps (building one parses the WSDL), one-off
    callers leave it out. ``text_checked``: the caller ran :func:`~xdr_edge.protocol.metadata.check_xml_text`
    on ``submission`` already; ``templates``: the sender's :class:`~xdr_edge.protocol.metadata.MetadataTemplates`
    (both: see :func:`~xdr_edge.protocol.metadata.write_submit_objects`)."""
    message_id = message_id or new_message_id()
    refs: list[DocumentRef] = []
    parts: list[MtomPart] = []
    for entry in submission.document_entries:
        if entry.document is None:
            continue
        cid = new_content_id()
        refs.append(DocumentRef(entry_id=entry.entry_id, content_id=cid))
        parts.append(
            MtomPart(
                content_id=cid,
                content_type=entry.mime_type or "application/octet-stream",
                document=entry.document,
                expected_sha1=entry.hash,
                expected_size=entry.size,
            )
        )
    root = request_envelope(
        submission,
        endpoint=endpoint,
        message_id=message_id,
        documents=refs,
        placement=placement,
        writer=writer,
        text_checked=text_checked,
        templates=templates,
    )
    return OutgoingRequest(
        message_id=message_id, endpoint=endpoint, submission=submission, body=MtomBody(root, parts)
    )


def soap_content_type(action: str) -> str:
    """The Content-Type of a simple (not MTOM) SOAP 1.2 message carrying ``action``."""
    return f'application/soap+xml; charset=UTF-8; action="{action}"'


def request_envelope(
    submission: Submission,
    *,
    endpoint: str,
    message_id: str,
    documents: Sequence[DocumentRef],
    placement: LevelPlacement = LevelPlacement.TOP_LEVEL,
    writer: RequestEnvelopeWriter | None = None,
    text_checked: bool = False,
    templates: MetadataTemplates | None = None,
) -> bytes:
    """The ITI-41 envelope of ``submission`` (metadata, WS-A, the address block with everything it carries,
    metadata-level) with ``documents`` as its ``xdsb:Document`` slots: the one place a Submission becomes one.
    ``text_checked`` and ``templates`` as for :func:`build_request`."""
    return build_request_envelope(
        submit_objects=write_submit_objects(submission, text_checked=text_checked, templates=templates),
        documents=documents,
        to=endpoint,
        message_id=message_id,
        direct_from=submission.direct_from,
        direct_to=submission.direct_to,
        level=submission.level,
        placement=placement,
        final_destination_delivery=submission.final_destination_delivery,
        writer=writer,
        adopt=True,  # the metadata tree was made for this envelope alone
    )


def build_plain_request(
    submission: Submission, *, endpoint: str, message_id: str | None = None
) -> tuple[str, str, bytes]:
    """The simple-SOAP form (ITI TF-2x V.3.6, inline base64: documents as inline base64): ``(message_id, content_type,
    body)``. Holds every document in memory, so it serves tests and conformance cases; senders use
    :func:`build_request` (MTOM, streamed)."""
    message_id = message_id or new_message_id()
    refs = [
        DocumentRef(e.entry_id, inline=e.document.read_all())
        for e in submission.document_entries
        if e.document is not None
    ]
    xml = request_envelope(submission, endpoint=endpoint, message_id=message_id, documents=refs)
    return message_id, soap_content_type(ns.ACTION_PNR), xml


@dataclass
class IncomingRequest:
    """A parsed request: the envelope, the submission with its (spooled) documents, and every finding.

    Owns the spooled parts until :meth:`close`; the receiver's store detaches the ones it keeps.
    """

    envelope: RequestEnvelope
    submission: Submission | None
    findings: list[Finding]
    mtom: bool
    package: MtomPackage | None = None
    declared_level: MetadataLevel | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.is_error]

    def close(self) -> None:
        if not self._closed and self.package is not None:
            self.package.close()
        self._closed = True

    def __enter__(self) -> IncomingRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_READ_PIECE = 1024 * 1024


def read_bounded(stream: BinaryIO, limit: int) -> bytes:
    """A whole simple-SOAP message (the SOAP envelope), refused with :class:`LimitExceeded` beyond ``limit``
    bytes.

    Read a piece at a time into one growing buffer, which ``getvalue`` hands over without a copy: one read of
    the whole body would hold it twice while its pieces are joined (100 MB for a 50 MB envelope)."""
    buffer = io.BytesIO()
    while True:
        piece = stream.read(min(_READ_PIECE, limit + 1 - buffer.tell()))
        if not piece:
            return buffer.getvalue()
        buffer.write(piece)
        if buffer.tell() > limit:
            raise LimitExceeded(
                f"the SOAP envelope (the request body) exceeds the limit of {limit} bytes",
                location="HTTP body",
            )


def _finding(
    code: str, location: str, message: str, rule: str, severity: Severity = Severity.ERROR
) -> Finding:
    return Finding(code=code, severity=severity, location=location, message=message, rule=rule)


def _attach_documents(
    envelope: RequestEnvelope, package: MtomPackage | None
) -> tuple[dict[str, Document], list[Finding]]:
    """Pair each ``xdsb:Document`` with its bytes; report orphan parts and unresolvable references (ITI TF-2b 3.41.5, W3C MTOM/XOP).

    A part referenced twice never gets here: the envelope reader refuses it with a Sender fault (DTS 432)."""
    documents: dict[str, Document] = {}
    findings: list[Finding] = []
    used: set[str] = set()
    for ref in envelope.documents:
        where = f"S:Body/xdsb:Document[@id='{ref.entry_id}']"
        if ref.entry_id in documents:
            findings.append(
                _finding(METADATA_ERROR, where, "two Document elements have the same id", "doc-dup-id")
            )
            continue
        if ref.inline is not None:
            documents[ref.entry_id] = Document.from_bytes(ref.inline, name=ref.entry_id)
            continue
        assert ref.content_id is not None  # DocumentRef holds exactly one of inline and content_id
        if package is None:
            findings.append(
                _finding(
                    MISSING_DOCUMENT,
                    where,
                    f"xop:Include references cid:{ref.content_id}, but the message is plain SOAP, not an MTOM "
                    "package: there is no MIME part to resolve it (ITI TF-2b 3.41.5, W3C MTOM/XOP)",
                    "xop-not-mtom",
                )
            )
            continue
        part = package.parts.get(ref.content_id)  # the root part is never among them
        if part is None:
            findings.append(
                _finding(
                    MISSING_DOCUMENT,
                    where,
                    f"xop:Include references cid:{ref.content_id}, which is not a part of this package",
                    "xop-unresolved",
                )
            )
            continue
        used.add(ref.content_id)
        documents[ref.entry_id] = part.document()
    if package is not None:
        for cid in package.parts:
            if cid not in used:
                findings.append(
                    _finding(
                        MISSING_DOCUMENT_METADATA,
                        f"MIME part <{cid}>",
                        "MIME part is not referenced by any xdsb:Document",
                        "part-orphan",
                    )
                )
    return documents, findings


def _level_findings(submission: Submission, declared: MetadataLevel | None) -> list[Finding]:
    """Profile validation. With no ``metadata-level`` header the level is XDS (XDR and XDM for Direct Messaging §6.1.1), but ONC XDR checklist DTS 435
    allows the header to be absent for minimal metadata, so minimal rules decide errors and XDS-only gaps are
    reported as warnings."""
    if declared is not None:
        return validate(submission, declared)
    hard = validate(submission, MetadataLevel.MINIMAL)
    keys = {(f.rule, f.location) for f in hard}
    soft = [
        dataclasses.replace(f, severity=Severity.WARNING)
        for f in validate(submission, MetadataLevel.XDS)
        if (f.rule, f.location) not in keys and f.is_error
    ]
    return hard + soft


def parse_request(
    content_type: str,
    stream: BinaryIO,
    *,
    limits: MtomLimits | None = None,
    spool_dir: Path | None = None,
    content_length: int | None = None,
    understood_headers: Collection[str] = frozenset(),
    xml_budget: XmlBudget = DEFAULT_XML_BUDGET,
) -> IncomingRequest:
    """Read a request (MTOM or plain SOAP with inline base64). SOAP-level problems raise
    :class:`RemoteProtocolError` (answer with a fault); metadata and document problems become findings (answer
    with a RegistryResponse Failure). ``understood_headers``: see :func:`xdr_edge.protocol.soap.read_request_envelope`.

    Memory: the SOAP envelope (the root part, or the whole plain-SOAP body) is held whole, up to
    ``limits.max_root_bytes``; documents are spooled to files. The envelope's tree is bounded by ``xml_budget``."""
    limits = limits or MtomLimits()
    body = _RecordedBody(stream, content_length)
    try:
        media = MediaType.parse(content_type)
        package: MtomPackage | None = None
        if media.matches("multipart/related"):
            package = read_mtom(
                content_type,
                cast(BinaryIO, body),  # read_mtom only calls read()
                limits=limits,
                spool_dir=spool_dir,
                content_length=content_length,
            )
            root = package.root
        elif media.essence in _PLAIN_SOAP_TYPES:
            root = read_bounded(cast(BinaryIO, body), limits.max_root_bytes)
        else:
            raise RemoteProtocolError(
                f"unsupported Content-Type {media.essence!r}: expected multipart/related (MTOM) or "
                "application/soap+xml",
                code="bad-content-type",
                location="HTTP Content-Type",
                fault_code="Sender",
            )
    except RemoteProtocolError as exc:
        if exc.relates_to is None:
            exc.relates_to = _message_id_in_body(content_type, body.first_bytes())
        raise
    return interpret_request(
        root, package, understood_headers=understood_headers, media_type=media, xml_budget=xml_budget
    )


#: What a plain (not MTOM) SOAP request may be labelled: SOAP 1.2's own type (RFC 3902), and the XML types some
#: stacks use (a SOAP 1.1 envelope in them gets a VersionMismatch fault, SOAP 1.2 Part 1 §5.4.7).
_PLAIN_SOAP_TYPES = frozenset({"application/soap+xml", "text/xml", "application/xml"})

#: How much of a refused request is read to find its MessageID (the SOAP header comes first and is small).
SALVAGE_BYTES = 64 * 1024


class _RecordedBody:
    """A request body that keeps its first :data:`SALVAGE_BYTES` bytes as they are read, so that a refusal can
    still name the request it answers (:func:`message_id_of_unread`)."""

    def __init__(self, stream: BinaryIO | IO[bytes], content_length: int | None) -> None:
        self._stream = stream
        self._remaining = content_length
        self._head = bytearray()

    def read(self, size: int = -1) -> bytes:
        if self._remaining is not None:
            size = self._remaining if size < 0 else min(size, self._remaining)
        data = self._stream.read(size)
        if self._remaining is not None:
            self._remaining -= len(data)
        if len(self._head) < SALVAGE_BYTES:
            self._head += data[: SALVAGE_BYTES - len(self._head)]
        return data

    def first_bytes(self) -> bytes:
        """The first :data:`SALVAGE_BYTES` of the body (fewer when it is shorter): what was read, topped up from
        the stream now, never beyond the Content-Length. A failing stream ends the top-up quietly: the refusal
        being answered is what matters."""
        try:
            while len(self._head) < SALVAGE_BYTES and self._remaining != 0:
                if not self.read(SALVAGE_BYTES - len(self._head)):
                    break
        except OSError:
            pass
        return bytes(self._head)


def _message_id_in_body(content_type: str, head: bytes) -> str | None:
    """The MessageID in the first bytes of a request body (MTOM: of its root part), or None."""
    media = MediaType.parse_or_none(content_type)
    if media is not None and media.matches("multipart/related"):
        root = root_part_prefix(content_type, head)
        return message_id_in_prefix(root) if root else None
    return message_id_in_prefix(head)


def message_id_of_unread(
    content_type: str, stream: BinaryIO | IO[bytes], *, content_length: int | None
) -> str | None:
    """The MessageID of a request refused before its body was read (too large, say), from at most
    :data:`SALVAGE_BYTES` of the body, so that the fault carries ``wsa:RelatesTo`` (WS-Addressing 1.0 Core §3.4)."""
    return _message_id_in_body(content_type, _RecordedBody(stream, content_length).first_bytes())


def interpret_request(
    root: bytes,
    package: MtomPackage | None,
    *,
    understood_headers: Collection[str] = frozenset(),
    media_type: MediaType | None = None,
    check_actions: bool = True,
    xml_budget: XmlBudget = DEFAULT_XML_BUDGET,
) -> IncomingRequest:
    """Interpret an already-read root part (and its MTOM package, if any); closes the package on error.

    ``media_type`` is the request's Content-Type: every SOAP 1.2 ``action`` it (or the MTOM package) states must
    be the envelope's ``wsa:Action`` unless ``check_actions`` is False (for a reader that replaced the
    envelope's Action itself)."""
    try:
        envelope = read_request_envelope(root, understood_headers=understood_headers, budget=xml_budget)
        if package is not None:
            declared = package.declared_actions
        elif media_type is not None and (media_type.param("action") or "").strip():
            declared = (("Content-Type action parameter", media_type.param("action") or ""),)
        else:
            declared = ()
        if check_actions:
            _check_declared_actions(envelope, declared)
        return _build_incoming(envelope, package)
    except BaseException as exc:
        if package is not None:
            package.close()
        if isinstance(exc, RemoteProtocolError) and exc.relates_to is None:
            exc.relates_to = message_id_in_prefix(root[:SALVAGE_BYTES])
        raise


def _check_declared_actions(envelope: RequestEnvelope, declared: Sequence[tuple[str, str]]) -> None:
    """An ``action`` stated by the media type (RFC 3902; the SOAP Action feature, SOAP 1.2 Part 2 §6.5) must be
    the envelope's ``wsa:Action``: a mismatch is a Sender fault, ``wsa:InvalidAddressingHeader`` /
    ``wsa:ActionMismatch`` (WS-Addressing 1.0 SOAP Binding §6.4.1). URIs compare as strings (RFC 3986 §6.2.1)."""
    for where, action in declared:
        if action.strip() != envelope.action:
            error = RemoteProtocolError(
                f"the {where} is {action.strip()[:200]!r}, but S:Header/wsa:Action is "
                f"{envelope.action[:200]!r}; they must be the same (WS-Addressing 1.0 SOAP Binding §6.4.1)",
                code="ws-addressing",
                location="S:Header/wsa:Action",
                fault_code="Sender",
                fault_subcode="wsa:InvalidAddressingHeader",
                fault_subsubcode="wsa:ActionMismatch",
            )
            error.relates_to = envelope.message_id
            raise error


def _build_incoming(envelope: RequestEnvelope, package: MtomPackage | None) -> IncomingRequest:
    findings = list(envelope.findings)
    if envelope.submit_objects is None:
        raise RemoteProtocolError(
            "ProvideAndRegisterDocumentSetRequest has no lcm:SubmitObjectsRequest",
            code="no-submit-objects",
            location="S:Body/xdsb:ProvideAndRegisterDocumentSetRequest",
            fault_code="Sender",
        )
    meta = read_submit_objects(envelope.submit_objects)
    findings += meta.findings
    documents, doc_findings = _attach_documents(envelope, package)
    findings += doc_findings
    known = {e.entry_id for e in meta.document_entries}
    for entry_id in documents:
        if entry_id not in known:
            findings.append(
                _finding(
                    MISSING_DOCUMENT_METADATA,
                    f"S:Body/xdsb:Document[@id='{entry_id}']",
                    "Document has no DocumentEntry (ExtrinsicObject) with this id",
                    "doc-no-metadata",
                )
            )
    submission: Submission | None = None
    if meta.submission_set is not None:
        entries = tuple(
            dataclasses.replace(e, document=documents.get(e.entry_id)) for e in meta.document_entries
        )
        submission = Submission(
            submission_set=meta.submission_set,
            document_entries=entries,
            associations=meta.associations,
            level=envelope.level or MetadataLevel.XDS,
            direct_from=envelope.direct_from,
            direct_to=tuple(envelope.direct_to),
            final_destination_delivery=envelope.final_destination_delivery,
        )
        findings += _level_findings(submission, envelope.level)
        findings += check_documents(submission)
    return IncomingRequest(
        envelope=envelope,
        submission=submission,
        findings=_dedupe(findings),
        mtom=package is not None,
        package=package,
        declared_level=envelope.level,
    )


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str, str]] = set()
    out: list[Finding] = []
    for f in findings:
        key = (f.code, f.location, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


@dataclass(frozen=True)
class ReplyBytes:
    """A response ready to write: HTTP status, Content-Type and body bytes (responses are small)."""

    status: int
    content_type: str
    body: bytes


def build_reply(
    outcome: RegistryResponse | Fault, *, relates_to: str | None, mtom: bool, message_id: str | None = None
) -> ReplyBytes:
    """The answer to a request: an MTOM package when the request was MTOM (ITI TF-2x V.3.6), else plain SOAP."""
    message_id = message_id or new_message_id()
    if isinstance(outcome, Fault):
        xml = build_fault_envelope(outcome, relates_to=relates_to, message_id=message_id)
        status = fault_http_status(outcome)
        action = fault_action(outcome)
    else:
        xml = build_response_envelope(
            write_registry_response(outcome), relates_to=relates_to or "", message_id=message_id
        )
        status = 200
        action = ns.ACTION_PNR_RESPONSE
    if not mtom:
        return ReplyBytes(status, soap_content_type(action), xml)
    body = MtomBody(xml, [], action=action)
    return ReplyBytes(status, body.content_type, b"".join(body))


@dataclass(frozen=True)
class ParsedResponse:
    """A response read back: envelope headers, and either a RegistryResponse or a fault, with findings."""

    envelope: ResponseEnvelope
    registry_response: RegistryResponse | None
    fault: Fault | None
    findings: list[Finding]


def parse_response(content_type: str, body: bytes) -> ParsedResponse:
    """Read a response (MTOM or plain SOAP, or a bare RegistryResponse). Raises RemoteProtocolError when the
    bytes are not a SOAP response at all (an HTML error page, an empty body)."""
    media = MediaType.parse(content_type or "application/soap+xml")
    if not body.strip():
        raise RemoteProtocolError("the response body is empty", code="empty-response", location="HTTP body")
    root = body
    if media.matches("multipart/related"):
        with read_mtom(content_type, io.BytesIO(body), limits=MtomLimits()) as package:
            root = package.root
    elif media.essence not in _PLAIN_SOAP_TYPES:
        raise RemoteProtocolError(
            f"the response is not SOAP (Content-Type {media.essence!r})",
            code="not-soap",
            location="HTTP Content-Type",
        )
    envelope = read_response_envelope(root)
    findings: list[Finding] = []
    registry_response: RegistryResponse | None = None
    if envelope.body is not None:
        registry_response, findings = read_registry_response(envelope.body)
    return ParsedResponse(envelope, registry_response, envelope.fault, findings)
