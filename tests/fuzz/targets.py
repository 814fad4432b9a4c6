"""The fuzz targets: one per reader of what a peer (or a capture) hands us, and the receiver's WSGI app.

Each target takes the fuzzer's bytes, runs one entry point and checks what the oracle cannot know on its own
(the app's status and reply, spool files left behind). Inputs that carry a Content-Type use the ``pack`` entity
form (``Content-Type: ...``, blank line, body; :func:`~tests.fuzz.corpus.split_entity`), so a mutation can reach
the media type parameters as well as the body.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tests.fuzz.api_corpus import (
    JSON,
    app_inputs,
    form_bodies,
    form_content_type,
    json_bodies,
    json_strings,
    split_call,
)
from tests.fuzz.api_values import ValueMutator, value_mutator, value_seeds
from tests.fuzz.api_world import ApiWorld
from tests.fuzz.corpus import Corpus, entity, regression_inputs, split_entity
from tests.fuzz.oracle import NOTHING, OUR_ERRORS, Crash, Oracle
from tests.fuzz.world import ReceiverWorld
from tests.fuzz.xml_values import XmlValueMutator, xml_value_seeds
from xdr_edge.api.bodies import parse_json_object
from xdr_edge.api.forms import FormUpload
from xdr_edge.api.messaging import MessageCalls
from xdr_edge.api.refusals import CODES, Refusal
from xdr_edge.api.schema import AUTH, CALLS, DEFAULT_MAX_BODY_BYTES, request_schema
from xdr_edge.api.validation import check
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

    @cached_property
    def api_world(self) -> ApiWorld:
        return ApiWorld(self.directory / "api")

    @cached_property
    def xml_mutator(self) -> XmlValueMutator:
        return XmlValueMutator(self.corpus.requests)

    @cached_property
    def value_mutator(self) -> ValueMutator:
        return value_mutator(self.api_world)

    def close(self) -> None:
        if "api_world" in self.__dict__:
            self.api_world.close()
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
    seeds: Callable[[Harness], list[bytes]]
    allowed: tuple[type[Exception], ...] = OUR_ERRORS

    def check(self, harness: Harness, data: bytes) -> None:
        """One input through the oracle: raises :class:`~tests.fuzz.oracle.Crash` for a defect."""
        harness.oracle.check(lambda d: self.run(harness, d), data, allowed=self.allowed)

    def seed_inputs(self, harness: Harness) -> list[bytes]:
        return self.seeds(harness) + [p.read_bytes() for p in regression_inputs(self.name)]


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


def _app_values(h: Harness, data: bytes) -> None:
    """The ``app`` target's checks on a valid request whose envelope's values the input edits (xml_values.py),
    and one more: nothing is written beside the inbox, whatever a value names. A crash lists the edits."""
    request, edits = h.xml_mutator.input_for(data)
    before = _beside_the_inbox(h)
    try:
        _app(h, request)
        after = _beside_the_inbox(h)
        if after != before:
            raise Crash(f"a request left files beside the inbox: {sorted(after ^ before)}")
    except Crash as exc:
        raise Crash(f"{exc}\nthe edits: {edits}") from exc


def _beside_the_inbox(h: Harness) -> set[str]:
    """What the harness's directory and the edge's hold, but the inbox and the registry's own files."""
    edge = h.world.edge.directory
    names = {f"edge/{n}" for n in os.listdir(edge) if n != "inbox" and not n.startswith("registry.db")}
    return names | {n for n in os.listdir(h.directory) if n != "edge"}


def _json_seeds(h: Harness) -> list[tuple[bytes, bytes]]:
    return [(call.encode("ascii"), body) for call, body in json_bodies(h.api_world)]


def _request_entities(h: Harness) -> list[bytes]:
    return [r.entity for r in h.corpus.requests]


# -- the JSON API's targets --------------------------------------------------------------------------------

#: The longest refusal message we write; anything longer quotes what the caller sent.
_MESSAGE_LIMIT = 400
_SCHEMAS = {name: request_schema(spec) for name, spec in CALLS.items()}
_FORM_SCHEMA = request_schema(CALLS["MessageSend"], without_documents=True)
_CALL_NAMES = list(CALLS)


def _spec_named(name: str) -> str:
    """The call an input names, or one chosen by its name's bytes (so every mutation still reaches a schema)."""
    return name if name in CALLS else _CALL_NAMES[sum(name.encode("latin-1", "replace")) % len(CALLS)]


#: Fields whose values are credentials: no answer holds them, not even to the caller who sent them.
_CREDENTIAL_FIELDS = frozenset(
    {"applicationPassword", "loginPassword", "password", "privateKey", "pkcs12", "pkcs12Password"}
)


def _sent_objects(body: bytes) -> list[object]:
    """What a request carried as JSON: its body, or each part of a form that parses as JSON (the request part)."""
    candidates = [body, *(part.split(b"\r\n--", 1)[0] for part in body.split(b"\r\n\r\n")[1:])]
    found: list[object] = []
    for candidate in candidates:
        try:
            found.append(json.loads(candidate))
        except ValueError:
            continue
    return found


def _own_values(value: object, key: str | None = None) -> list[str]:
    """The strings the caller sent outside credential fields, and its field names. Answers repeat some by
    design (a recipient, a practice's name, an unknown field's name), whatever they hold: a fuzzer that splices
    a seed's password into a recipient gets it back, and that is the caller's own text, not a leak. A
    credential field's value is never excused."""
    if key in _CREDENTIAL_FIELDS:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):  # field names too: a refusal names an unknown field
        return [str(k) for k in value] + [text for k, v in value.items() for text in _own_values(v, str(k))]
    if isinstance(value, list):
        return [text for item in value for text in _own_values(item, key)]
    return []


def _check_error(
    status: int,
    code: str,
    message: str,
    field: str | None,
    *,
    sent: object = None,
    secrets: tuple[str, ...] = (),
) -> None:
    """The API's contract for a refusal: a 4xx with a registered code, a short printable message of ours that
    repeats no submitted value (it could be a password or a key), a printable field name."""
    if not 400 <= status < 500:
        raise Crash(f"refused with {status} {code}: {message}")
    if code not in CODES:
        raise Crash(f"unregistered refusal code {code!r}")
    if len(message) > _MESSAGE_LIMIT or not message.isprintable():
        raise Crash(f"{code}: the message is not a short line of ours: {message[:200]!r}")
    if field is not None and (len(field) > 200 or not field.isprintable()):
        raise Crash(f"{code}: the field is not a printable name: {field[:200]!r}")
    values, keys = json_strings(sent)
    quoted = [
        s
        for s in (*values, *secrets)
        if len(s) >= 8 and s in message and not any(s in k for k in keys) and not _our_words(s, message)
    ]
    if quoted:
        raise Crash(f"{code}: the message repeats a submitted value: {message!r}")


def _our_words(value: str, message: str) -> bool:
    """Whether a submitted value is plain lower-case words that the message holds as whole words of its own
    ("certificate", "another practice"): the message says them whatever was sent, so they are not quoted."""
    return (
        re.fullmatch(r"[a-z]+(?: [a-z]+)*", value) is not None
        and re.search(rf"\b{re.escape(value)}\b", message) is not None
    )


def _check_refusal(refusal: Refusal, sent: object = None) -> None:
    _check_error(refusal.status, refusal.code, refusal.message, refusal.field, sent=sent)


def _api_json(h: Harness, data: bytes) -> None:
    """One body through what reads it before its handler: the structure budget and parser, the ``auth`` shape,
    the call's schema (and the form's request part's), the base64 documents."""
    name, raw = split_call(data)
    spec = CALLS[_spec_named(name)]
    body: object = None
    try:
        body = parse_json_object(raw)
        auth = body.get("auth")
        if auth is not None:
            check(auth, AUTH, "auth")
        check(body, _SCHEMAS[spec.name])
        if spec.documents:
            MessageCalls.json_documents(body)
    except Refusal as refusal:
        _check_refusal(refusal, body)
    if spec.multipart and isinstance(body, dict):
        try:
            check({k: v for k, v in body.items() if k != "documents"}, _FORM_SCHEMA)
        except Refusal as refusal:
            _check_refusal(refusal, body)


def _api_form(h: Harness, data: bytes) -> None:
    """A MessageSend form through :class:`FormUpload`: the request part handed over before any document, each
    document spooled whole, nothing left in the spool afterwards."""
    content_type, body = split_entity(data, form_content_type())
    spool = h.spool / "api-form"
    spool.mkdir(exist_ok=True)
    handed: list[dict[str, object]] = []

    def on_request(request: dict[str, object]) -> None:
        check(request, _FORM_SCHEMA)
        handed.append(request)

    try:
        with FormUpload(
            io.BytesIO(body),
            content_type,
            spool=spool,
            max_request_bytes=DEFAULT_MAX_BODY_BYTES,
            max_documents=5,
            on_request=on_request,
        ) as upload:
            request, documents = upload.read()
            if handed != [request]:
                raise Crash("the request part was not handed over exactly once before the documents")
            for document in documents:
                if document.path.stat().st_size != document.size or document.size == 0:
                    raise Crash(
                        f"a spooled document holds {document.path.stat().st_size} bytes, not {document.size}"
                    )
    except Refusal as refusal:
        _check_refusal(refusal, handed[0] if handed else None)
    finally:
        h.check_spool_empty(spool)


def _api(h: Harness, data: bytes) -> None:
    """The whole API app: every answer is JSON, 200 or a refusal as the contract says; never a 5xx."""
    world = h.api_world
    name, rest = split_call(data)
    content_type, body = split_entity(rest, JSON)
    reply = world.post(f"/api/v1/{name}", content_type, body)
    try:
        answer = json.loads(reply.body)
    except ValueError as exc:
        raise Crash(f"the API answered {reply.status} with a body that is not JSON") from exc
    if not reply.content_type.startswith("application/json") or not isinstance(answer, dict):
        raise Crash(f"the API answered {reply.status} {reply.content_type} without a JSON object")
    sent = _sent_objects(body)
    world.note_own_values(value for item in sent for value in _own_values(item))
    text = reply.body.decode("utf-8", "replace")
    if any(secret in text for secret in world.unexcused_secrets):
        raise Crash(f"the API's answer ({reply.status}) contains a password or a key")
    if reply.status != 200:
        error = answer.get("error")
        if not isinstance(error, dict) or not isinstance(answer.get("requestId"), str):
            raise Crash(f"the API answered {reply.status} without an error object and requestId: {answer}")
        _check_error(
            reply.status, str(error.get("code")), str(error.get("message")), error.get("field"), sent=sent
        )
    h.check_spool_empty(world.spool_dir)


def _api_values(h: Harness, data: bytes) -> None:
    """The ``api`` target's checks on a well-formed request whose values the input chooses (api_values.py). A
    crash names the request: the same bytes choose another one in a world with other keys."""
    request = h.value_mutator.input_for(data)
    try:
        _api(h, request)
    except Crash as exc:
        raise Crash(f"{exc}\nthe request: {request[:2000]!r}") from exc


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("mtom", "MTOM reader (read_mtom)", _mtom, _request_entities),
        Target(
            "soap-request",
            "SOAP request reader (read_request_envelope)",
            _soap_request,
            lambda h: [r.root for r in h.corpus.requests],
        ),
        Target("reply", "reply reader (parse_response)", _reply, lambda h: [d for _, d in h.corpus.replies]),
        Target(
            "metadata", "metadata reader (read_submit_objects)", _metadata, lambda h: list(h.corpus.metadata)
        ),
        Target("cda", "C-CDA header reader (read_cda_header)", _cda, lambda h: [sample_ccda()]),
        Target(
            "registry-response",
            "RegistryResponse reader (read_registry_response)",
            _registry_response,
            lambda h: h.corpus.registry_responses(),
        ),
        Target(
            "inspect",
            "capture reader and inspect_stream (must never raise)",
            _inspect,
            lambda h: h.corpus.captures(),
            allowed=NOTHING,
        ),
        Target("parse-request", "whole request reader (parse_request)", _parse_request, _request_entities),
        Target(
            "app",
            "receiver WSGI app, in-process, enrolled client certificate",
            _app,
            lambda h: _request_entities(h) + [entity(SOAP, r.root) for r in h.corpus.requests[:2]],
        ),
        Target(
            "app-values",
            "receiver WSGI app, valid requests whose envelope values are edited (structure-aware)",
            _app_values,
            lambda h: xml_value_seeds(h.xml_mutator),
        ),
        Target(
            "api-json",
            "JSON API body reader and schema checks (parse_json_object, check)",
            _api_json,
            lambda h: [call + b"\n" + body for call, body in _json_seeds(h)],
        ),
        Target("api-form", "JSON API multipart form reader (FormUpload)", _api_form, lambda h: form_bodies()),
        Target(
            "api",
            "JSON API WSGI app, in-process, an application with a sending account",
            _api,
            lambda h: app_inputs(h.api_world),
        ),
        Target(
            "api-values",
            "JSON API WSGI app, well-formed requests with hostile values (structure-aware)",
            _api_values,
            lambda h: value_seeds(h.value_mutator),
        ),
    )
}
