"""The fuzz targets: one per reader of what a peer (or a capture) hands us, and the receiver's WSGI app.

Each target takes the fuzzer's bytes, runs one entry point and checks what the oracle cannot know on its own
(the app's status and reply, spool files left behind). Inputs that carry a Content-Type use the ``pack`` entity
form (``Content-Type: ...``, blank line, body; :func:`~tests.fuzz.corpus.split_entity`), so a mutation can reach
the media type parameters as well as the body.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tests.fuzz.corpus import Corpus, entity, regression_inputs, split_entity
from tests.fuzz.oracle import NOTHING, OUR_ERRORS, Crash, Oracle
from tests.fuzz.world import ReceiverWorld
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.protocol import xml
from xdr_edge.protocol.cda import read_cda_header
from xdr_edge.protocol.inspection import inspect_stream
from xdr_edge.protocol.metadata import read_submit_objects
from xdr_edge.protocol.mtom import MtomLimits, read_mtom
from xdr_edge.protocol.response import read_registry_response
from xdr_edge.protocol.soap import read_request_envelope
from xdr_edge.protocol.wire import parse_request, parse_response

MTOM = "multipart/related"
SOAP = "application/soap+xml"

#: Limits the request readers run with: the defaults, but a small root part and total, so the fuzzer's inputs
#: (at most a few hundred KiB) can reach them.
FUZZ_LIMITS = MtomLimits(max_parts=20, max_total_bytes=4 * 1024 * 1024, max_root_bytes=1024 * 1024)


class Harness:
    """What the targets of one process share: a temporary directory, the in-process edge, the corpus."""

    def __init__(self, directory: Path | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="xdr-fuzz-") if directory is None else None
        self.directory: Path = Path(self._tmp.name) if self._tmp is not None else Path(str(directory))
        self.spool = self.directory / "spool"
        self.spool.mkdir(exist_ok=True)
        self.oracle = Oracle()

    @cached_property
    def world(self) -> ReceiverWorld:
        return ReceiverWorld(self.directory / "edge")

    @cached_property
    def corpus(self) -> Corpus:
        return Corpus(self.world)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def check_spool_empty(self, directory: Path) -> None:
        left = os.listdir(directory)
        if left:
            for name in left:
                (directory / name).unlink()
            raise Crash(f"{len(left)} spool file(s) left behind in {directory.name}: {left[:3]}")


@dataclass(frozen=True)
class Target:
    name: str
    about: str
    run: Callable[[Harness, bytes], None]
    seeds: Callable[[Corpus], list[bytes]]
    allowed: tuple[type[Exception], ...] = OUR_ERRORS

    def check(self, harness: Harness, data: bytes) -> None:
        """One input through the oracle: raises :class:`~tests.fuzz.oracle.Crash` for a defect."""
        harness.oracle.check(lambda d: self.run(harness, d), data, allowed=self.allowed)

    def seed_inputs(self, harness: Harness) -> list[bytes]:
        return self.seeds(harness.corpus) + [p.read_bytes() for p in regression_inputs(self.name)]


# -- the targets -----------------------------------------------------------------------------------------------


def _mtom(h: Harness, data: bytes) -> None:
    content_type, body = split_entity(data, MTOM)
    try:
        with read_mtom(content_type, io.BytesIO(body), limits=FUZZ_LIMITS, spool_dir=h.spool) as package:
            for part in package.parts.values():
                part.document().digest()
    finally:
        h.check_spool_empty(h.spool)


def _soap_request(h: Harness, data: bytes) -> None:
    read_request_envelope(data)


def _reply(h: Harness, data: bytes) -> None:
    content_type, body = split_entity(data, SOAP)
    parse_response(content_type, body)


def _metadata(h: Harness, data: bytes) -> None:
    read_submit_objects(xml.parse(data, what="metadata"))


def _cda(h: Harness, data: bytes) -> None:
    read_cda_header(data)


def _registry_response(h: Harness, data: bytes) -> None:
    read_registry_response(xml.parse(data, what="RegistryResponse"))


def _inspect(h: Harness, data: bytes) -> None:
    result = inspect_stream(io.BytesIO(data), limits=FUZZ_LIMITS)
    result.as_dict()


def _parse_request(h: Harness, data: bytes) -> None:
    content_type, body = split_entity(data, MTOM)
    try:
        with parse_request(content_type, io.BytesIO(body), limits=FUZZ_LIMITS, spool_dir=h.spool) as request:
            if request.submission is not None:
                for entry in request.submission.document_entries:
                    if entry.document is not None:
                        entry.document.digest()
    finally:
        h.check_spool_empty(h.spool)


#: SOAP 1.2 Part 2 §7.5.2.2 (Table 23): these fault codes go with HTTP 500, and are the peer's doing.
_PEER_FAULTS_WITH_500 = frozenset({"VersionMismatch", "MustUnderstand"})


def _app(h: Harness, data: bytes) -> None:
    content_type, body = split_entity(data, MTOM)
    world = h.world
    reply = world.post(content_type, body)
    try:
        parsed = parse_response(reply.content_type, reply.body)
    except Exception as exc:
        raise Crash(f"the app answered {reply.status} with a reply our own reader refuses: {exc}") from exc
    fault = parsed.fault
    if reply.status >= 500 and not (
        reply.status == 500 and fault is not None and fault.code in _PEER_FAULTS_WITH_500
    ):
        what = f"fault {fault.code}: {fault.reason}" if fault is not None else "no fault"
        raise Crash(f"the app answered {reply.status} to a request ({what})")
    texts = [fault.reason] if fault is not None else []
    if parsed.registry_response is not None:
        for error in parsed.registry_response.errors:
            texts += [error.code_context, error.location or ""]
    if any(len(t) > xml.REPLY_TEXT_LIMIT for t in texts):
        raise Crash(f"a reply text is longer than {xml.REPLY_TEXT_LIMIT} characters")
    h.check_spool_empty(world.spool_dir)


def _request_entities(c: Corpus) -> list[bytes]:
    return [r.entity for r in c.requests]


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("mtom", "MTOM reader (read_mtom)", _mtom, _request_entities),
        Target(
            "soap-request",
            "SOAP request reader (read_request_envelope)",
            _soap_request,
            lambda c: [r.root for r in c.requests],
        ),
        Target("reply", "reply reader (parse_response)", _reply, lambda c: [d for _, d in c.replies]),
        Target("metadata", "metadata reader (read_submit_objects)", _metadata, lambda c: list(c.metadata)),
        Target("cda", "C-CDA header reader (read_cda_header)", _cda, lambda c: [sample_ccda()]),
        Target(
            "registry-response",
            "RegistryResponse reader (read_registry_response)",
            _registry_response,
            lambda c: c.registry_responses(),
        ),
        Target(
            "inspect",
            "capture reader and inspect_stream (must never raise)",
            _inspect,
            lambda c: c.captures(),
            allowed=NOTHING,
        ),
        Target("parse-request", "whole request reader (parse_request)", _parse_request, _request_entities),
        Target(
            "app",
            "receiver WSGI app, in-process, enrolled client certificate",
            _app,
            lambda c: _request_entities(c) + [entity(SOAP, r.root) for r in c.requests[:2]],
        ),
    )
}
