"""The seed corpus, made by our own code: ``pack`` outputs (our composer and MTOM writer), the one-defect
requests of the conformance suite (:mod:`xdr_edge.conformance.messages`), our replies, our metadata, and the
same messages as raw HTTP captures (bare LF, NIST-style blank before each line end, chunked, Content-Length).
Plus the committed regression inputs of ``tests/fuzz/regressions/<target>/`` (each one a defect once found).

Repeatable: identifiers, boundaries and times that are random in production come from a generator seeded
with a fixed value while the corpus is made, so the same code makes the same bytes and a fuzz run with a fixed
seed explores the same inputs.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

from tests.fuzz.world import BOUND_SENDER, PRACTICE, RECIPIENT, UNBOUND_SENDER, ReceiverWorld
from xdr_edge.conformance import messages
from xdr_edge.conformance.receiver_context import Mutation, ReceiverContext, ReceiverTarget
from xdr_edge.protocol import ns
from xdr_edge.protocol.codes import METADATA_ERROR, MISSING_DOCUMENT, REPOSITORY_ERROR
from xdr_edge.protocol.findings import Severity
from xdr_edge.protocol.metadata import write_submit_objects
from xdr_edge.protocol.model import DirectAddress, MetadataLevel
from xdr_edge.protocol.response import RegistryErrorEntry, RegistryResponse, write_registry_response
from xdr_edge.protocol.soap import Fault
from xdr_edge.protocol.wire import build_reply
from xdr_edge.protocol.xml import tostring

REGRESSIONS = Path(__file__).resolve().parent / "regressions"
_SUBMISSION_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@contextlib.contextmanager
def repeatable(seed: int) -> Iterator[None]:
    """uuid4 (MessageIDs, Content-IDs, uniqueIds) and MIME boundaries drawn from ``random.Random(seed)``."""
    rng = random.Random(seed)

    def uuid4() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    def token_hex(nbytes: int | None = None) -> str:
        return rng.randbytes(nbytes or 32).hex()

    with mock.patch.object(uuid, "uuid4", uuid4), mock.patch.object(secrets, "token_hex", token_hex):
        yield


def entity(content_type: str, body: bytes) -> bytes:
    """What ``xdr-edge pack`` writes: the Content-Type line, a blank line, the body."""
    return b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body


def split_entity(data: bytes, default_type: str) -> tuple[str, bytes]:
    """The inverse of :func:`entity`, forgiving: without a leading ``Content-Type:`` line the whole input is the
    body of ``default_type``; so a mutation can change the Content-Type, the body or where one ends."""
    end = data.find(b"\n")
    if end < 0 or data[:13].lower() != b"content-type:":
        return default_type, data
    rest = data[end + 1 :]
    rest = rest[2:] if rest.startswith(b"\r\n") else rest[1:] if rest.startswith(b"\n") else rest
    return data[13:end].decode("latin-1").strip(), rest


@dataclass(frozen=True)
class Request:
    name: str
    content_type: str
    body: bytes
    root: bytes  # the SOAP envelope (the MTOM root part, or the whole plain request)

    @property
    def entity(self) -> bytes:
        return entity(self.content_type, self.body)


_MUTATIONS: dict[str, tuple[Mutation, tuple[str, ...], MetadataLevel]] = {
    "no-action": (messages.remove_wsa("Action"), ("ccda",), MetadataLevel.MINIMAL),
    "no-message-id": (messages.remove_wsa("MessageID"), ("ccda",), MetadataLevel.MINIMAL),
    "header-unqualified": (messages.header_unqualified, ("ccda",), MetadataLevel.MINIMAL),
    "body-wrong-namespace": (messages.body_wrong_namespace, ("ccda",), MetadataLevel.MINIMAL),
    "soap11": (messages.soap11, ("ccda",), MetadataLevel.MINIMAL),
    "unknown-action": (messages.unknown_action, ("ccda",), MetadataLevel.MINIMAL),
    "no-sender": (messages.no_sender_anywhere, ("ccda",), MetadataLevel.MINIMAL),
    "no-address-block": (messages.no_address_block, ("ccda",), MetadataLevel.MINIMAL),
    "no-de-unique-id": (messages.drop_external_identifier(ns.DE_UNIQUE_ID), ("ccda",), MetadataLevel.MINIMAL),
    "no-source-id": (messages.drop_external_identifier(ns.SS_SOURCE_ID), ("ccda",), MetadataLevel.MINIMAL),
    "no-mime-type": (messages.drop_attribute("mimeType"), ("ccda",), MetadataLevel.MINIMAL),
    "no-id": (messages.drop_attribute("id"), ("ccda",), MetadataLevel.MINIMAL),
    "no-creation-time": (messages.drop_creation_time, ("ccda",), MetadataLevel.XDS),
    "no-associations": (messages.drop_associations, ("ccda",), MetadataLevel.MINIMAL),
    "wrong-hash": (messages.wrong_hash, ("ccda",), MetadataLevel.MINIMAL),
    "wrong-size": (messages.wrong_size, ("ccda",), MetadataLevel.MINIMAL),
    "orphan-part": (messages.drop_second_entry, ("ccda", "pdf"), MetadataLevel.MINIMAL),
    "no-document": (messages.drop_document, ("ccda",), MetadataLevel.MINIMAL),
    "unreadable-delivery": (messages.unreadable_delivery_request, ("ccda",), MetadataLevel.MINIMAL),
}


class Corpus:
    """Every seed, made once per process. The requests are built by the conformance suite's own request builder
    (:class:`~xdr_edge.conformance.receiver_context.ReceiverContext`), which wants the practice credential of a
    :class:`ReceiverWorld` (it builds a TLS context; nothing is sent)."""

    def __init__(self, world: ReceiverWorld, seed: int = 15) -> None:
        self._world = world
        with repeatable(seed):
            self.requests = self._requests()
            self.replies = self._replies()
            self.metadata = self._metadata()

    def _context(self) -> ReceiverContext:
        practice = self._world.edge.practices[PRACTICE]
        assert practice.credential is not None
        target = ReceiverTarget(
            endpoint="https://hisp.invalid/xdr",
            ca_bundle=self._world.edge.pki.ca_cert,
            credential=practice.credential,
            bound_from=DirectAddress.parse(BOUND_SENDER),
            unbound_from=DirectAddress.parse(UNBOUND_SENDER),
            recipients=(DirectAddress.parse(RECIPIENT),),
        )
        return ReceiverContext(target)

    def _requests(self) -> list[Request]:
        ctx = self._context()
        out: list[Request] = []
        with mock.patch("xdr_edge.protocol.compose.datetime", _FixedClock):
            plain = ctx.plain_soap(ctx.submission())
            out.append(Request("plain-soap", plain.content_type, plain.body, plain.body))
            valid = (
                ("minimal-ccda", ctx.submission(("ccda",))),
                ("xds-ccda", ctx.submission(("ccda",), level=MetadataLevel.XDS)),
                ("minimal-pdf", ctx.submission(("pdf",))),
                ("ccda-and-pdf", ctx.submission(("ccda", "pdf"))),
                ("unbound-sender", ctx.submission(sender=ctx.target.unbound_from)),
            )
            for name, sub in valid:
                prepared = ctx.frame(sub)
                out.append(Request(name, prepared.content_type, prepared.body, _root_of(prepared.body)))
            for name, (mutation, kinds, level) in _MUTATIONS.items():
                prepared = ctx.frame(ctx.submission(kinds, level=level), mutation)
                out.append(Request(name, prepared.content_type, prepared.body, _root_of(prepared.body)))
        return out

    def _replies(self) -> list[tuple[str, bytes]]:
        """Our replies as entities: RegistryResponses of each status and faults of each kind, MTOM and plain."""
        relates = "urn:uuid:5d1c2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5"
        outcomes: list[RegistryResponse | Fault] = [
            RegistryResponse.success(),
            RegistryResponse.success(
                [RegistryErrorEntry(METADATA_ERROR, "a warning", Severity.WARNING, "here")]
            ),
            RegistryResponse.failure(
                [RegistryErrorEntry(MISSING_DOCUMENT, "no part", location="xop:Include")]
            ),
            RegistryResponse.partial([RegistryErrorEntry(REPOSITORY_ERROR, "one not processed")]),
            Fault("Sender", "the request is not well-formed"),
            Fault("Sender", "no Action", "wsa:MessageAddressingHeaderRequired", "S:Header/wsa:Action"),
            Fault("Sender", "unknown action", "wsa:ActionNotSupported", "urn:example:action"),
            Fault("MustUnderstand", "not understood", None, "{urn:example:h}Block"),
            Fault("VersionMismatch", "SOAP 1.1"),
            Fault("Receiver", "internal error"),
        ]
        out: list[tuple[str, bytes]] = []
        for i, outcome in enumerate(outcomes):
            for mtom in (False, True):
                reply = build_reply(outcome, relates_to=relates, mtom=mtom)
                out.append(
                    (f"reply-{i}-{'mtom' if mtom else 'plain'}", entity(reply.content_type, reply.body))
                )
        return out

    def _metadata(self) -> list[bytes]:
        ctx = self._context()
        with mock.patch("xdr_edge.protocol.compose.datetime", _FixedClock):
            subs = [
                ctx.submission(("ccda",), level=MetadataLevel.MINIMAL),
                ctx.submission(("ccda", "pdf"), level=MetadataLevel.XDS),
            ]
        return [tostring(write_submit_objects(s)) for s in subs]

    # -- per target ------------------------------------------------------------------------------------------

    def registry_responses(self) -> list[bytes]:
        return [
            tostring(write_registry_response(r))
            for r in (
                RegistryResponse.success(),
                RegistryResponse.failure([RegistryErrorEntry(METADATA_ERROR, "bad", location="x")]),
                RegistryResponse.partial([RegistryErrorEntry(REPOSITORY_ERROR, "w", Severity.WARNING)]),
            )
        ]

    def captures(self) -> list[bytes]:
        """The requests and replies as ``inspect`` meets them: pack files, raw HTTP captures (CRLF, bare LF,
        NIST's blank before each line end, chunked, with Content-Length), bare XML."""
        out: list[bytes] = []
        for request in self.requests[:6]:
            out.append(request.entity)
            head = f"POST /xdr HTTP/1.1\r\nHost: hisp.invalid\r\nContent-Type: {request.content_type}\r\n"
            with_length = (
                head.encode() + f"Content-Length: {len(request.body)}\r\n\r\n".encode() + request.body
            )
            out.append(with_length)
            out.append(with_length.replace(b"\r\n", b"\n"))
            out.append(with_length.replace(b"\r\n", b" \n"))
            out.append(head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(request.body, 1500))
        out += [data for _, data in self._replies_as_captures()]
        out += self.metadata + self.registry_responses()
        out.append(self.requests[0].root)
        return out

    def _replies_as_captures(self) -> list[tuple[str, bytes]]:
        out = []
        for name, data in self.replies[:6]:
            content_type, body = split_entity(data, "application/soap+xml")
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
            out.append((name, head.encode() + body))
        return out


class _FixedClock(datetime):
    """``datetime`` whose ``now`` is fixed: the SubmissionSet submissionTime of a seed does not change."""

    @classmethod
    def now(cls, tz: object = None) -> _FixedClock:
        return cls.fromtimestamp(_SUBMISSION_TIME.timestamp(), UTC)


def _root_of(body: bytes) -> bytes:
    """The root part of an MTOM body we wrote: after the first part's headers, up to the next boundary."""
    start = body.find(b"\r\n\r\n") + 4
    return body[start : body.find(b"\r\n--", start)]


def _chunked(body: bytes, size: int) -> bytes:
    pieces = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)
    ]
    return b"".join(pieces) + b"0\r\n\r\n"


def regression_inputs(target: str) -> list[Path]:
    """The committed regression inputs of ``target`` (each was a crash, or stands for one)."""
    directory = REGRESSIONS / target
    return sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []
