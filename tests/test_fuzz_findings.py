"""Every input that once broke a reader, through the product's own entry points: the receiver's WSGI app (with an
enrolled client certificate, in-process) answers a 4xx Sender fault or a RegistryResponse Failure, never a 5xx;
``inspect_stream`` returns findings and never raises.

Two sets: the fuzzer's original inputs in ``../shared/fuzz-findings`` (skipped when absent), and our own
synthetic inputs for the same defects, committed in ``tests/fuzz/regressions`` (so a plain clone covers them).
Timing is not asserted here: the fuzz harness's oracle (``python -m tests.fuzz``, run by CI) fails any input
under 1 MB that takes over a second, and replays these same inputs as seeds; benchmarks/bench_readers.py
measures how the readers scale.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.corpus import Corpus, regression_inputs, split_entity
from tests.fuzz.world import ReceiverWorld
from tests.panics import PANIC_TEXT, panics
from tests.reference import fuzz_finding
from tests.watchdog import must_finish_within
from xdr_edge.protocol import xml
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.inspection import Inspection, inspect_stream
from xdr_edge.protocol.metadata import read_submit_objects
from xdr_edge.protocol.wire import ParsedResponse, parse_request, parse_response
from xdr_edge.protocol.xml import REPLY_TEXT_LIMIT


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReceiverWorld]:
    yield ReceiverWorld(tmp_path_factory.mktemp("fuzz-findings") / "edge")


def _post(world: ReceiverWorld, data: bytes) -> tuple[int, ParsedResponse]:
    content_type, body = split_entity(data, "multipart/related")
    reply = world.post(content_type, body)
    return reply.status, parse_response(reply.content_type, reply.body)


def _assert_refused_as_the_peers_defect(status: int, parsed: ParsedResponse) -> list[str]:
    """A 400 Sender fault, or a 200 Failure; the texts of the reply, which must be short."""
    if parsed.fault is not None:
        assert (status, parsed.fault.code) == (400, "Sender"), parsed.fault
        texts = [parsed.fault.reason]
    else:
        assert status == 200
        assert parsed.registry_response is not None and parsed.registry_response.is_failure
        texts = [e.code_context for e in parsed.registry_response.errors]
        texts += [e.location or "" for e in parsed.registry_response.errors]
    assert all(len(t) <= REPLY_TEXT_LIMIT for t in texts)
    return texts


# ----------------------------------------------------------------------------------------------------------
# The fuzzer's inputs (../shared/fuzz-findings)


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("wsgi_500_fault_reason_ctrlchar.mime", "<a\\x01>"),
        ("wsgi_500_unreferenced_part_cid_ctrlchar.mime", "MIME part <\\x01>"),
        ("wsgi_500_xop_href_pct_ctrlchar.mime", "cid:\\x01"),
    ],
)
def test_shared_requests_that_made_the_app_answer_500(world: ReceiverWorld, name: str, shown: str) -> None:
    """The peer's control character is quoted escaped (``\\x01``) in the fault reason or RegistryError, promptly
    (a hang detector: each takes milliseconds)."""
    data = fuzz_finding(name)
    with must_finish_within(10, f"answering {name}"):
        texts = _assert_refused_as_the_peers_defect(*_post(world, data))
    assert any(shown in text for text in texts), texts


def _inspected(data: bytes) -> Inspection:
    result = inspect_stream(io.BytesIO(data))
    assert result.kind == "unknown" and result.has_errors, result.as_dict()
    return result


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("inspect_bad_content_type.txt", "Content-Type"),
        ("inspect_registryresponse_wrong_ns.xml", "Body"),
        ("inspect_slow_crlf_restorer_spaces.txt", "message"),  # the MIME body ends before any part
        ("inspect_slow_250KB.bin.gz", "Content-Type"),
    ],
)
def test_shared_inputs_that_broke_inspect(name: str, where: str) -> None:
    """Findings, not an exception; each names where the message is wrong, promptly (a hang detector: 250 KB of
    blanks took 87 s before the line-end restorer was made linear; milliseconds now)."""
    data = fuzz_finding(name)
    with must_finish_within(10, f"inspecting {name}"):
        result = _inspected(data)
    assert any(f.is_error and f.location.startswith(where) for f in result.findings), result.as_dict()


# ----------------------------------------------------------------------------------------------------------
# Our own inputs for the same defects (tests/fuzz/regressions)

_OURS = Path(__file__).resolve().parent / "fuzz" / "regressions"


@pytest.mark.parametrize("path", regression_inputs("app"), ids=lambda p: p.name)
def test_committed_app_regressions(world: ReceiverWorld, path: Path) -> None:
    texts = _assert_refused_as_the_peers_defect(*_post(world, path.read_bytes()))
    if "control-character" in path.name:
        assert any("\\x" in text for text in texts), texts  # the control characters, shown escaped


@pytest.mark.parametrize("path", regression_inputs("metadata"), ids=lambda p: p.name)
def test_committed_metadata_regressions(path: Path) -> None:
    """A size slot that ``str.isdigit`` calls digits but ``int()`` refuses ("²", 5000 digits) is a finding."""
    read = read_submit_objects(xml.parse(path.read_bytes()))
    assert "size-format" in [f.rule for f in read.findings if f.is_error]


def test_a_size_slot_int_refuses_is_a_failure_not_a_500(world: ReceiverWorld) -> None:
    status, parsed = _post(world, (_OURS / "app" / "size-slot-superscript-digit.mime").read_bytes())
    texts = _assert_refused_as_the_peers_defect(status, parsed)
    assert "size '²' is not a non-negative integer" in texts


@pytest.mark.parametrize("path", regression_inputs("inspect"), ids=lambda p: p.name)
def test_committed_inspect_regressions(path: Path) -> None:
    _inspected(path.read_bytes())


def test_a_malformed_content_type_is_a_finding_of_inspect() -> None:
    result = _inspected((_OURS / "inspect" / "malformed-content-type.txt").read_bytes())
    assert [(f.code, f.location) for f in result.findings] == [("env:Sender", "Content-Type")]


@pytest.mark.parametrize(
    "name", ["registry-response-in-no-namespace.xml", "registry-response-in-another-namespace.xml"]
)
def test_a_registry_response_outside_the_ebrs_namespace_is_unknown(name: str) -> None:
    """Dispatch is on namespace and local name (ITI TF-3 4.2.4, ebRS 3.0); a comment in the Body is not the message."""
    result = _inspected((_OURS / "inspect" / name).read_bytes())
    [finding] = [f for f in result.findings if f.is_error]
    assert finding.message.startswith("unexpected message element") and "RegistryResponse" in finding.message


@pytest.mark.parametrize("blanks", [b" ", b"\t ", b" \r"])
def test_a_long_run_of_blanks_in_a_bare_lf_capture_is_read(blanks: bytes) -> None:
    """2 MB of blanks without a line end (250 KB took 87 s before the line-end restorer was made linear, so 2 MB
    would take over an hour; a tenth of a second now, see benchmarks/bench_readers.py): read whole, and the MIME
    reader says the body holds no part."""
    head = b'Content-Type: multipart/related; boundary=zz; type="application/xop+xml"\n\n'
    with must_finish_within(30, "restoring the line ends of 2 MB of blanks"):
        result = _inspected(head + blanks * (2_000_000 // len(blanks)))
    assert [f.rule for f in result.findings] == ["capture-line-ends", "mtom-truncated"]


# ----------------------------------------------------------------------------------------------------------
# Peers get short neutral reasons of our own


@pytest.mark.parametrize(
    "body",
    [
        b"<a>" * 300 + b"</a>" * 300,
        b"<S:Envelope xmlns:S='http://www.w3.org/2003/05/soap-envelope'>" + b"x" * 3,
    ],
)
def test_xml_a_peer_sends_that_does_not_parse_is_refused_in_our_words(
    world: ReceiverWorld, body: bytes
) -> None:
    """libxml2's own messages ("Excessive depth in document: 256 use XML_PARSE_HUGE option") never reach a
    peer: the fault reason says what is wrong in our words, with where."""
    reply = world.post("application/soap+xml", body)
    parsed = parse_response(reply.content_type, reply.body)
    assert parsed.fault is not None and (reply.status, parsed.fault.code) == (400, "Sender")
    reason = parsed.fault.reason
    assert reason.startswith("SOAP envelope ") and "line 1, column" in reason, reason
    for word in ("XML_PARSE", "HUGE", "libxml", "Excessive", "Premature", "try "):
        assert word not in reason, reason


def test_a_refused_envelope_with_an_undeclared_prefix_is_a_400_not_a_500(world: ReceiverWorld) -> None:
    """Found by fuzzing the merged tree: reading the MessageID of a refused request from its first bytes met
    ``<rim:Value/>`` (a prefix no declaration binds) and lxml raised ValueError. Reading stops there now, and
    the MessageID before it still correlates the fault (wsa:RelatesTo)."""
    data = (_OURS / "app" / "undeclared-prefix-in-refused-envelope.txt").read_bytes()
    content_type, body = split_entity(data, "application/soap+xml")
    reply = world.post(content_type, body)
    parsed = parse_response(reply.content_type, reply.body)
    _assert_refused_as_the_peers_defect(reply.status, parsed)
    assert parsed.envelope.relates_to == "urn:uuid:7c2b9e1a-4d3f-4a8b-9c0d-1e2f3a4b5c6d"
    assert parsed.fault is not None and "namespace prefix is not declared" in parsed.fault.reason


@pytest.mark.parametrize("path", regression_inputs("parse-request"), ids=lambda p: p.name)
def test_committed_parse_request_regressions(path: Path) -> None:
    content_type, body = split_entity(path.read_bytes(), "multipart/related")
    with pytest.raises(RemoteProtocolError) as err:
        parse_request(content_type, io.BytesIO(body))
    assert err.value.fault_code == "Sender"


def test_a_part_header_that_is_not_utf8_is_named_in_our_words(world: ReceiverWorld) -> None:
    """The fault quoted the multipart package's own text ("Segment header failed to decode"); it now says what
    is wrong, in our words, and which part."""
    status, parsed = _post(world, (_OURS / "app" / "part-header-not-utf-8.mime").read_bytes())
    assert status == 400 and parsed.fault is not None
    assert (
        parsed.fault.reason
        == "malformed MIME multipart body: a header line is not UTF-8 text (at MIME part 2)"
    )


def test_a_panic_while_handling_is_a_receiver_fault_and_the_next_request_is_stored(
    world: ReceiverWorld, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The receiver's last line of defence catches what is not an ``Exception`` too (only a request to stop
    the process passes): a panic costs one request a Receiver fault, not the connection without an answer."""
    requests = {r.name: r for r in Corpus(world).requests}

    monkeypatch.setattr("xdr_edge.receiver.app.parse_request", panics)
    status, parsed = _post(world, requests["plain-soap"].entity)
    assert status == 500 and parsed.fault is not None and parsed.fault.code == "Receiver", parsed
    assert "Panic inside a library" in caplog.text and PANIC_TEXT not in caplog.text, caplog.text
    monkeypatch.undo()
    status, parsed = _post(world, requests["minimal-pdf"].entity)
    assert status == 200 and parsed.registry_response is not None, parsed
    assert not parsed.registry_response.is_failure, parsed.registry_response
