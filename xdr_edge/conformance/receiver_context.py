"""What the receiver cases share while they run: the endpoint under test and its material (:class:`ReceiverTarget`),
the requests they build (:class:`Prepared`), and :class:`ReceiverContext`, which builds valid submissions with our
own composer and wire writer, frames mutated ones, sends them raw, remembers exchanges several cases judge, and logs
every answer made to the practice's own requests (:class:`Answer`) for the cases that judge how *every* answer is
formed (``reply-*``: RelatesTo, Action, media type; WS-Addressing 1.0 Core §3.4, SOAP 1.2 Part 2 §7)."""

from __future__ import annotations

__all__ = ["Answer", "Mutation", "Prepared", "ReceiverContext", "ReceiverTarget"]

import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from xdr_edge.certs import load_identity
from xdr_edge.conformance.exchange import Exchange, post
from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.practice import ClientCredential
from xdr_edge.protocol import ns
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.model import DirectAddress, Document, MetadataLevel, Submission
from xdr_edge.protocol.mtom import MtomBody, MtomPart
from xdr_edge.protocol.wire import build_plain_request, build_request
from xdr_edge.protocol.xml import parse, qname
from xdr_edge.tls import client_ssl_context

Mutation = Callable[[etree._Element, list[MtomPart]], list[MtomPart]]


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
    """A request ready to send: Content-Type, body bytes, its MessageID (None when a case removed it).

    ``envelope_intact`` is False when the defect breaks the SOAP 1.2 envelope itself (Header or Body out of the
    envelope namespace, a SOAP 1.1 envelope): a receiver then rejects the envelope before it reads any header
    block (SOAP 1.2 Part 1 §5), so its fault cannot be expected to name our MessageID or to use WS-Addressing.
    """

    content_type: str
    body: bytes
    message_id: str | None
    submission: Submission
    envelope_intact: bool = True

    @property
    def mtom(self) -> bool:
        media = MediaType.parse_or_none(self.content_type)
        return media is not None and media.matches("multipart/related")

    @property
    def correlatable(self) -> bool:
        """A conformant receiver can read our MessageID, so every answer must name it in ``wsa:RelatesTo``."""
        return self.message_id is not None and self.envelope_intact


@dataclass(frozen=True)
class Answer:
    """One exchange made with the practice's own certificate during a run, and what its request was.

    ``case_id`` is the case that sent it (a ``-code`` case shares its parent's). The ``reply-*`` cases judge
    these together, so a property every answer must have is reported once, as one cause, instead of failing
    every case whose answer lacks it.
    """

    case_id: str
    exchange: Exchange
    request_mtom: bool
    correlatable: bool
    envelope_intact: bool


@dataclass
class ReceiverContext:
    """What the cases share during one run: the target, the practice's TLS context, the exchanges already
    made (a ``-code`` case reads the exchange of its parent case instead of sending again) and the log of every
    answer to the practice's own requests. ``current_case`` is set by the catalogue before each case runs.

    One context per run, used by one thread: the cases of a run are sequential.
    """

    target: ReceiverTarget
    current_case: str = ""
    _exchanges: dict[str, Exchange] = field(default_factory=dict, repr=False)
    _answers: list[Answer] = field(default_factory=list, repr=False)

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

    def frame(
        self, submission: Submission, mutate: Mutation | None = None, *, envelope_intact: bool = True
    ) -> Prepared:
        """Build the MTOM request for ``submission``; ``mutate`` may change the root XML and the part list
        (``envelope_intact=False`` when it breaks the SOAP envelope itself, see :class:`Prepared`)."""
        request = build_request(submission, endpoint=self.target.endpoint)
        body = request.body
        if mutate is None:
            return Prepared(body.content_type, b"".join(body), request.message_id, submission)
        root = parse(body.root, what="request envelope")
        parts = mutate(root, list(body.parts))
        found = root.find(f".//{qname(ns.WSA, 'MessageID')}")
        message_id = (found.text or "").strip() if found is not None else None
        xml = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
        framed = MtomBody(xml, parts, root_content_id=body.root_content_id)
        return Prepared(framed.content_type, b"".join(framed), message_id, submission, envelope_intact)

    def plain_soap(self, submission: Submission) -> Prepared:
        """The non-MTOM form (ITI TF-2x V.3.6, inline base64): base64 text inside ``xdsb:Document``."""
        message_id, content_type, xml = build_plain_request(submission, endpoint=self.target.endpoint)
        return Prepared(content_type, xml, message_id, submission)

    # -- sending ---------------------------------------------------------------------------------------------

    def send(
        self, prepared: Prepared, *, context: ssl.SSLContext | None = None, case_id: str | None = None
    ) -> Exchange:
        """POST ``prepared``; with the practice's own context (no ``context``) the answer joins the log under
        ``case_id`` (default: the running case). Other contexts are the TLS cases' own handshakes: their
        answers, if any, are judged by those cases alone."""
        exchange = post(
            self.target.endpoint,
            context or self.context,
            prepared.content_type,
            prepared.body,
            message_id=prepared.message_id,
            timeout=self.target.timeout,
        )
        if context is None:
            self._answers.append(
                Answer(
                    case_id or self.current_case or "?",
                    exchange,
                    prepared.mtom,
                    prepared.correlatable,
                    prepared.envelope_intact,
                )
            )
        return exchange

    def exchange(self, key: str, build: Callable[[ReceiverContext], Prepared]) -> Exchange:
        """Send what ``build`` makes, once per run and ``key``."""
        if key not in self._exchanges:
            self._exchanges[key] = self.send(build(self), case_id=key)
        return self._exchanges[key]

    def answers(self) -> tuple[Answer, ...]:
        """Every answer to the practice's own requests so far, in the order they came."""
        return tuple(self._answers)
