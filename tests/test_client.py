"""XdrClient over real mutual TLS on loopback: certificates made by xdr_edge.devtools.pki, the real
receiver of a lab (xdr_edge.devtools.lab) or a scripted WSGI app on the same cheroot server (xdr_edge.receiver.server)."""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from lxml import etree

from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.devtools.pki import DemoPki, write_demo_pki
from xdr_edge.minting import CertificateAuthority
from xdr_edge.practice import Binding, ClientCredential, Practice
from xdr_edge.protocol import ns
from xdr_edge.protocol.classify import Outcome
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import (
    CertificateError,
    ConfigurationError,
    LocalProtocolError,
    NotBound,
    ValidationFailed,
)
from xdr_edge.protocol.findings import Severity
from xdr_edge.protocol.model import Author, MetadataLevel, Organization, Person, Submission
from xdr_edge.protocol.mtom import MtomLimits
from xdr_edge.protocol.response import RegistryErrorEntry, RegistryResponse
from xdr_edge.protocol.soap import Fault
from xdr_edge.protocol.wire import IncomingRequest, ReplyBytes, build_reply, build_request, parse_request
from xdr_edge.receiver.app import ReceiverConfig, XdrEdgeApp
from xdr_edge.receiver.server import ServerConfig, XdrServer
from xdr_edge.sender.client import RetryPolicy, SendResult, XdrClient

A_FROM = "dr.smith@direct.practice-a.org"
B_FROM = "dr.jones@direct.practice-b.org"
TO = "records@direct.hospital.example"
FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


# ----------------------------------------------------------------------------------------------------------
# What the server saw: one record per request, taken from the WSGI environ and the parsed request.


@dataclass(frozen=True)
class Seen:
    message_id: str
    fingerprint: str
    remote_port: str
    submission_set_unique_id: str | None
    document_unique_ids: tuple[str, ...]


@dataclass
class Recorder:
    """Thread-safe list of what the server saw; also releases stalled requests."""

    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def add(self, item: Seen) -> int:
        with self.lock:
            self.seen.append(item)
            return len(self.seen)

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.seen)


def _fingerprint(environ: dict[str, Any]) -> str:
    pem = environ.get("SSL_CLIENT_CERT") or ""
    if not pem:
        return ""
    return x509.load_pem_x509_certificate(pem.encode("ascii")).fingerprint(hashes.SHA256()).hex()


def _read_body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    data: bytes = environ["wsgi.input"].read(length)
    return data


def _parse(environ: dict[str, Any], body: bytes, spool: Path) -> IncomingRequest:
    return parse_request(environ.get("CONTENT_TYPE", ""), io.BytesIO(body), spool_dir=spool)


def _record(recorder: Recorder, environ: dict[str, Any], request: IncomingRequest) -> int:
    submission = request.submission
    return recorder.add(
        Seen(
            message_id=request.envelope.message_id or "",
            fingerprint=_fingerprint(environ),
            remote_port=str(environ.get("REMOTE_PORT", "")),
            submission_set_unique_id=submission.submission_set.unique_id if submission else None,
            document_unique_ids=tuple(e.unique_id for e in submission.document_entries) if submission else (),
        )
    )


def recording(
    recorder: Recorder, spool: Path, *, stall_first: bool = False
) -> Callable[[ReceiverConfig], WsgiApp]:
    """An ``app_factory`` for start_lab: the real XdrEdgeApp, with every request recorded first.

    ``stall_first``: the first request is processed (stored) by the real app, but its answer is held back until
    ``recorder.release`` is set (by the next request, or by the test), so the client's read times out after the
    HISP has stored the submission."""

    def factory(config: ReceiverConfig) -> WsgiApp:
        real = XdrEdgeApp(config)

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            body = _read_body(environ)
            with _parse(environ, body, spool) as request:
                number = _record(recorder, environ, request)
            environ["wsgi.input"] = io.BytesIO(body)
            answer = list(real(environ, start_response))
            if stall_first and number == 1:
                recorder.release.wait(30)
            elif stall_first:
                recorder.release.set()
            return answer

        return app

    return factory


# ----------------------------------------------------------------------------------------------------------
# Scripted servers: a WSGI app answering each request with the next scripted reply.

Script = Callable[[IncomingRequest], ReplyBytes]


def soap(outcome: RegistryResponse | Fault) -> Script:
    return lambda request: build_reply(outcome, relates_to=request.envelope.message_id, mtom=request.mtom)


def raw(status: int, content_type: str, body: bytes) -> Script:
    return lambda request: ReplyBytes(status, content_type, body)


class ScriptedApp:
    def __init__(self, scripts: list[Script], spool: Path) -> None:
        self.scripts = scripts
        self.recorder = Recorder()
        self.spool = spool

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = _read_body(environ)
        with _parse(environ, body, self.spool) as request:
            number = _record(self.recorder, environ, request)
            reply = self.scripts[min(number, len(self.scripts)) - 1](request)
        start_response(
            f"{reply.status} Scripted",
            [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body)))],
        )
        return [reply.body]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPki:
    return write_demo_pki(tmp_path_factory.mktemp("pki"))


def practices_of(pki: DemoPki) -> dict[str, Practice]:
    return {
        pid: Practice(
            id=pid,
            bindings=tuple(Binding.parse(a) for a in demo.addresses),
            credential=ClientCredential(cert=demo.cert, key=demo.key),
        )
        for pid, demo in pki.practices.items()
    }


@pytest.fixture
def scripted(pki: DemoPki, tmp_path: Path) -> Iterator[Callable[..., tuple[ScriptedApp, XdrServer]]]:
    servers: list[XdrServer] = []

    def start(
        *scripts: Script, cert: Path | None = None, key: Path | None = None
    ) -> tuple[ScriptedApp, XdrServer]:
        spool = tmp_path / f"spool{len(servers)}"
        spool.mkdir()
        app = ScriptedApp(list(scripts), spool)
        config = ServerConfig(
            host="127.0.0.1",
            port=0,
            cert=cert or pki.server_cert,
            key=key or pki.server_key,
            client_ca=pki.ca_cert,
            threads=2,
            socket_timeout=10,
        )
        server = XdrServer(app, config).start()
        servers.append(server)
        return app, server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("docs") / "ccd.xml"
    path.write_bytes(sample_ccda())
    return path


def submission(
    document: Path, sender: str = A_FROM, level: MetadataLevel = MetadataLevel.MINIMAL
) -> Submission:
    return compose([document], sender=sender, recipients=[TO], level=level)


def client_for(server_url: str, pki: DemoPki, **kwargs: Any) -> XdrClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("timeout", (5.0, 10.0))
    return XdrClient(endpoint=server_url, ca_bundle=pki.ca_cert, practices=practices_of(pki), **kwargs)


# ----------------------------------------------------------------------------------------------------------
# Round trips against the real receiver of a lab


def test_two_practices_concurrently_each_request_carries_only_its_own_certificate(
    tmp_path: Path, document: Path
) -> None:
    recorder = Recorder()
    spool = tmp_path / "spool"
    spool.mkdir()
    with start_lab(tmp_path / "lab", threads=8, app_factory=recording(recorder, spool)) as lab:
        expected = {pid: demo.fingerprint_sha256 for pid, demo in lab.pki.practices.items()}
        assert len(set(expected.values())) == 2
        jobs = [("practice-a", A_FROM), ("practice-b", B_FROM)] * 8
        with XdrClient(
            endpoint=lab.endpoint, ca_bundle=lab.ca_bundle, practices=lab.practices, retry=FAST
        ) as client:

            def send(job: tuple[str, str]) -> SendResult:
                return client.send(submission(document, job[1]), practice=job[0])

            with ThreadPoolExecutor(max_workers=8) as pool:
                results = list(pool.map(send, jobs))
    assert [r.outcome for r in results] == [Outcome.SUCCESS] * 16, [r.message for r in results if not r.ok]
    practice_of = {r.message_id: r.practice_id for r in results}
    assert recorder.count == 16
    for seen in recorder.seen:
        assert seen.fingerprint == expected[practice_of[seen.message_id]]
    assert {practice_of[s.message_id] for s in recorder.seen} == {"practice-a", "practice-b"}
    assert len({r.submission_set_unique_id for r in results}) == 16


def test_sender_not_bound_is_refused_before_anything_is_sent(tmp_path: Path, document: Path) -> None:
    recorder = Recorder()
    spool = tmp_path / "spool"
    spool.mkdir()
    with start_lab(tmp_path / "lab", app_factory=recording(recorder, spool)) as lab:
        with XdrClient(endpoint=lab.endpoint, ca_bundle=lab.ca_bundle, practices=lab.practices) as client:
            with pytest.raises(NotBound) as caught:
                client.send(submission(document, B_FROM), practice="practice-a")
    message = str(caught.value)
    assert B_FROM in message
    assert "'practice-a'" in message
    assert "CN=practice-a edge client" in message
    assert "nothing was sent" in message
    assert recorder.count == 0


def _with_text(document: Path, where: str, text: str) -> Submission:
    """A composed submission with ``text`` in one field a library caller fills in."""
    if where == "title":
        return compose([document], sender=A_FROM, recipients=[TO], title=text)
    if where == "patient":
        return compose([document], sender=A_FROM, recipients=[TO], patient_id=f"{text}^^^&1.2.3.4&ISO")
    if where == "author":
        author = Author(person=Person.of(family=text, given="Ann"), institutions=(Organization.of("Clinic"),))
        return compose([document], sender=A_FROM, recipients=[TO], author=author)
    sub = compose([document], sender=A_FROM, recipients=[TO])
    entry = sub.document_entries[0]
    address = f"PID-11|1 Main St^^{text}^MA^02101"  # the patient's address, as a sourcePatientInfo line
    changed = dataclasses.replace(entry, source_patient_info=(*entry.source_patient_info, address))
    return dataclasses.replace(sub, document_entries=(changed,))


@pytest.mark.parametrize(
    ("where", "text", "field", "character"),
    [
        ("title", "Discharge\x01summary", "submission_set.title", "character 10 is U+0001"),
        ("patient", "MRN\ud800", "submission_set.patient_id.cx", "character 4 is U+D800"),
        ("author", "Sm\x0bith", "submission_set.authors[0].person.xcn", "U+000B"),
        ("address", "Spring\x1ffield", "document_entries[0].source_patient_info[", "U+001F"),
    ],
    ids=["control-in-title", "lone-surrogate-in-patient-id", "control-in-author", "control-in-address"],
)
def test_text_xml_cannot_carry_is_refused_naming_the_field_before_anything_is_sent(
    tmp_path: Path, document: Path, where: str, text: str, field: str, character: str
) -> None:
    """lxml refuses such text with a bare ValueError (a lone surrogate: a UnicodeEncodeError when serialising):
    a library caller gets a LocalProtocolError that names the field and the character, not the text (it may be
    a patient's name), and the HISP never sees a byte."""
    sub = _with_text(document, where, text)
    recorder = Recorder()
    spool = tmp_path / "spool"
    spool.mkdir()
    with start_lab(tmp_path / "lab", app_factory=recording(recorder, spool)) as lab:
        with XdrClient(endpoint=lab.endpoint, ca_bundle=lab.ca_bundle, practices=lab.practices) as client:
            with pytest.raises(LocalProtocolError) as in_preflight:
                client.preflight(sub, "practice-a")
            with pytest.raises(LocalProtocolError) as caught:
                client.send(sub, practice="practice-a")
        assert recorder.count == 0
        assert not lab.inbox.contains(sub.submission_set.unique_id)
    for error in (in_preflight.value, caught.value):
        assert error.code == "text-not-xml"
        assert error.location is not None and error.location.startswith(field)
        assert character in error.message
        assert f"nothing was sent to {lab.endpoint}" in error.message
        assert text not in str(error)  # the text itself may be PHI
    with pytest.raises(LocalProtocolError, match="U\\+") as built:  # any writer of the request refuses it too
        build_request(sub, endpoint=lab.endpoint)
    assert built.value.code == "text-not-xml" and built.value.location == caught.value.location


def test_sender_outside_the_certificate_san_is_refused(tmp_path: Path, pki: DemoPki, document: Path) -> None:
    # bound to the practice, but the certificate names only dr.smith: covered_by_certificate refuses it
    prac = practices_of(pki)["practice-a"]
    widened = Practice(id=prac.id, bindings=(Binding(domain="other.example"),), credential=prac.credential)
    with XdrClient(endpoint="https://127.0.0.1:9/xdr", ca_bundle=pki.ca_cert, practices=[widened]) as client:
        with pytest.raises(NotBound) as caught:
            client.preflight(submission(document, "someone@other.example"), "practice-a")
    assert caught.value.code == "sender-not-in-certificate"
    assert "someone@other.example" in str(caught.value) and "CN=practice-a edge client" in str(caught.value)


def test_unknown_practice_and_plain_http_endpoint_are_configuration_errors(
    pki: DemoPki, document: Path
) -> None:
    with pytest.raises(ConfigurationError, match="not https"):
        XdrClient(endpoint="http://127.0.0.1:9/xdr", ca_bundle=pki.ca_cert)
    with XdrClient(
        endpoint="https://127.0.0.1:9/xdr", ca_bundle=pki.ca_cert, practices=practices_of(pki)
    ) as client:
        with pytest.raises(ConfigurationError, match=r"unknown practice 'nope'.*practice-a, practice-b"):
            client.send(submission(document), practice="nope")


def test_expired_client_certificate_is_refused_in_preflight(pki: DemoPki, document: Path) -> None:
    expired = Practice(
        id="practice-a",
        bindings=(Binding.parse(A_FROM),),
        credential=ClientCredential(cert=pki.expired_client_cert, key=pki.expired_client_key),
    )
    endpoint = "https://127.0.0.1:9/xdr"
    with XdrClient(endpoint=endpoint, ca_bundle=pki.ca_cert, practices=[expired]) as client:
        with pytest.raises(CertificateError) as caught:
            client.send(submission(document), practice="practice-a")
    text = str(caught.value)
    assert text.startswith("certificate expired")
    assert "CN=practice-a (expired)" in text
    assert endpoint in text
    assert caught.value.code == "client-certificate-expired"


def _send_through_stalling_lab(
    tmp_path: Path, sub: Submission, retry: RetryPolicy, **client_options: Any
) -> tuple[SendResult, Recorder, bool]:
    """Send ``sub`` to a lab whose first answer is held back until the client's read times out (the HISP has
    stored it by then); returns the result, what the server recorded, and whether the inbox holds it."""
    recorder = Recorder()
    spool = tmp_path / "spool"
    spool.mkdir()
    with start_lab(tmp_path / "lab", app_factory=recording(recorder, spool, stall_first=True)) as lab:
        try:
            with XdrClient(
                endpoint=lab.endpoint,
                ca_bundle=lab.ca_bundle,
                practices=lab.practices,
                # generous: an attempt that is answered must not be cut short on a loaded machine
                timeout=(5.0, 2.5),
                retry=retry,
                **client_options,
            ) as client:
                result = client.send(sub, practice="practice-a")
        finally:
            recorder.release.set()
        stored = lab.inbox.contains(sub.submission_set.unique_id)
    return result, recorder, stored


@pytest.mark.slow
def test_stall_after_body_gives_outcome_unknown_without_retries(tmp_path: Path, document: Path) -> None:
    result, _, _ = _send_through_stalling_lab(tmp_path, submission(document), RetryPolicy(max_attempts=1))
    assert result.outcome is Outcome.OUTCOME_UNKNOWN
    assert "no response" in result.message and "may or may not have stored it" in result.message
    assert result.attempts == 1 and result.http_status is None and not result.ok


@pytest.mark.slow
def test_stalled_request_is_retried_with_new_message_id_and_same_unique_ids(
    tmp_path: Path, document: Path
) -> None:
    sub = submission(document)
    result, recorder, stored = _send_through_stalling_lab(tmp_path, sub, FAST)
    assert result.outcome is Outcome.SUCCESS
    assert result.already_delivered is True
    assert "already delivered" in result.message
    assert result.attempts == 2
    assert stored
    first, second = recorder.seen
    assert first.message_id != second.message_id
    assert list(result.message_ids) == [first.message_id, second.message_id]
    assert first.submission_set_unique_id == second.submission_set_unique_id == sub.submission_set.unique_id
    assert first.document_unique_ids == second.document_unique_ids == (sub.document_entries[0].unique_id,)
    assert result.errors and result.errors[0].error_code == "XDSDuplicateUniqueIdInRegistry"


@pytest.mark.parametrize(
    ("change", "found_by"),
    [
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "SHA-1 while streaming"),
        (lambda data: data + b"<!-- appended -->", "size at build_request"),
    ],
    ids=["same-size", "grown"],
)
@pytest.mark.slow
def test_document_changed_between_retries_keeps_the_earlier_outcome(
    tmp_path: Path, change: Callable[[bytes], bytes], found_by: str
) -> None:
    """Attempt 1 is stored by the HISP but its answer never comes (outcome unknown); the file then changes on
    disk before attempt 2. The change must not be raised as "nothing was sent": attempt 1's outcome stands."""
    path = tmp_path / "ccd.xml"
    original = sample_ccda()
    path.write_bytes(original)
    changed = change(original)
    assert changed != original

    def rewrite(_pause: float) -> None:  # the client's pause between attempt 1 and attempt 2
        path.write_bytes(changed)

    sub = submission(path)
    result, recorder, stored = _send_through_stalling_lab(tmp_path, sub, FAST, sleep=rewrite)
    assert stored, found_by
    assert recorder.count == 1  # attempt 2 never delivered a complete request
    assert result.outcome is Outcome.OUTCOME_UNKNOWN and not result.ok
    assert result.message.startswith("no response from https://127.0.0.1:")
    assert "then the document ccd.xml changed on disk, so it was not re-sent" in result.message
    assert result.attempts == 1 and list(result.message_ids) == [recorder.seen[0].message_id]
    assert result.bytes_sent > len(original)


def test_document_changed_before_the_first_attempt_is_raised(pki: DemoPki, tmp_path: Path) -> None:
    path = tmp_path / "ccd.xml"
    path.write_bytes(sample_ccda())
    sub = submission(path)
    path.write_bytes(sample_ccda() + b"\n")
    with client_for("https://127.0.0.1:9/xdr", pki) as client:
        with pytest.raises(LocalProtocolError) as caught:
            client.send(sub, practice="practice-a")
    assert caught.value.code == "document-changed"


def test_retry_policy_and_timeout_are_validated_naming_parameter_and_value(pki: DemoPki) -> None:
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: RetryPolicy(max_attempts=0), "max_attempts"),
        (lambda: RetryPolicy(base_delay=-1), "base_delay"),
        (lambda: RetryPolicy(max_delay=float("nan")), "max_delay"),
        (lambda: client_for("https://127.0.0.1:9/xdr", pki, timeout=(10, 0)), "timeout"),
        (lambda: client_for("https://127.0.0.1:9/xdr", pki, timeout=(-1.0, 5.0)), "timeout"),
    ]
    for build, name in cases:
        with pytest.raises(ConfigurationError) as caught:
            build()
        message = str(caught.value)
        assert name in message, message
    with pytest.raises(ConfigurationError, match=r"max_attempts .* not 0"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigurationError, match=r"base_delay .* not -1"):
        RetryPolicy(base_delay=-1)
    with pytest.raises(ConfigurationError, match=r"read timeout .* not 0 \(timeout=\(10, 0\)\)"):
        client_for("https://127.0.0.1:9/xdr", pki, timeout=(10, 0))
    assert RetryPolicy(max_attempts=1, base_delay=0).max_attempts == 1


def test_duplicate_on_first_attempt_is_a_failure_not_already_delivered(
    tmp_path: Path, document: Path
) -> None:
    sub = submission(document)
    with start_lab(tmp_path / "lab") as lab:
        with XdrClient(
            endpoint=lab.endpoint, ca_bundle=lab.ca_bundle, practices=lab.practices, retry=FAST
        ) as client:
            first = client.send(sub, practice="practice-a")
            again = client.send(sub, practice="practice-a")
    assert first.outcome is Outcome.SUCCESS
    assert again.outcome is Outcome.FAILURE and not again.already_delivered
    assert again.errors[0].error_code == "XDSDuplicateUniqueIdInRegistry"


def _reissue(lab: Lab) -> str:
    """A new certificate for practice-a, enrolled at the HISP, written over the practice's files."""
    demo = lab.pki.practices["practice-a"]
    issued = lab.pki.ca.issue_client("practice-a renewed", practice_id="practice-a", emails=demo.addresses)
    lab.registry.enroll("practice-a", issued.cert_pem, actor="test")
    issued.write_pem(demo.cert, demo.key)
    return issued.fingerprint_sha256


def test_replaced_certificate_file_is_used_by_the_next_send(tmp_path: Path, document: Path) -> None:
    recorder = Recorder()
    spool = tmp_path / "spool"
    spool.mkdir()
    with start_lab(tmp_path / "lab", app_factory=recording(recorder, spool)) as lab:
        old = lab.pki.practices["practice-a"].fingerprint_sha256
        with XdrClient(
            endpoint=lab.endpoint, ca_bundle=lab.ca_bundle, practices=lab.practices, retry=FAST
        ) as client:
            before = client.send(submission(document), practice="practice-a")
            new = _reissue(lab)
            after = client.send(submission(document), practice="practice-a")
    assert before.ok and after.ok
    assert new != old
    assert [s.fingerprint for s in recorder.seen] == [old, new]


def test_threads_sharing_a_client_never_open_more_connections_than_allowed(
    tmp_path: Path, document: Path
) -> None:
    """Eight threads, three connections for the practice: the threads take turns on three kept connections
    (the receiver sees three client ports at most), none is opened and closed per message."""
    recorder = Recorder()
    spool = tmp_path / "spool"
    spool.mkdir()
    with start_lab(tmp_path / "lab", threads=8, app_factory=recording(recorder, spool)) as lab:
        with XdrClient(
            endpoint=lab.endpoint,
            ca_bundle=lab.ca_bundle,
            practices=lab.practices,
            retry=FAST,
            connections_per_practice=3,
        ) as client:
            with ThreadPoolExecutor(max_workers=8) as pool:
                results = list(
                    pool.map(
                        lambda _: client.send(submission(document, A_FROM), practice="practice-a"), range(24)
                    )
                )
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    assert recorder.count == 24
    assert 1 <= len({seen.remote_port for seen in recorder.seen}) <= 3


def test_connections_per_practice_must_be_a_positive_whole_number(pki: DemoPki) -> None:
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigurationError, match="connections_per_practice"):
            client_for("https://127.0.0.1:9/xdr", pki, connections_per_practice=bad)


def test_connections_are_reused_within_a_practice_and_never_across(tmp_path: Path, document: Path) -> None:
    recorder = Recorder()
    spool = tmp_path / "spool"
    spool.mkdir()
    with start_lab(tmp_path / "lab", app_factory=recording(recorder, spool)) as lab:
        with XdrClient(
            endpoint=lab.endpoint, ca_bundle=lab.ca_bundle, practices=lab.practices, retry=FAST
        ) as client:
            results = [
                client.send(submission(document, A_FROM), practice="practice-a"),
                client.send(submission(document, A_FROM), practice="practice-a"),
                client.send(submission(document, B_FROM), practice="practice-b"),
                client.send(submission(document, A_FROM), practice="practice-a"),
            ]
    assert all(r.ok for r in results)
    a1, a2, b1, a3 = recorder.seen
    assert a1.remote_port == a2.remote_port == a3.remote_port  # one TLS connection for practice A
    assert b1.remote_port != a1.remote_port  # B never rides on A's connection
    assert b1.fingerprint != a1.fingerprint == a3.fingerprint


def test_one_log_line_per_send_without_phi_or_keys(
    tmp_path: Path, document: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with start_lab(tmp_path / "lab") as lab:
        key_text = lab.pki.practices["practice-a"].key.read_text()
        with XdrClient(
            endpoint=lab.endpoint, ca_bundle=lab.ca_bundle, practices=lab.practices, retry=FAST
        ) as client:
            result = client.send(submission(document, level=MetadataLevel.XDS), practice="practice-a")
    assert result.ok
    lines = [r.getMessage() for r in caplog.records if r.name == "xdr_edge.sender.client"]
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("send practice=practice-a ")
    assert f"message_id={result.message_id}" in line
    assert "outcome=Success" in line and "http_status=200" in line
    assert re.search(r"duration_ms=\d+", line)
    assert f"bytes={result.bytes_sent}" in line and result.bytes_sent > len(sample_ccda())
    everything = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert "Testpatient" not in everything
    assert "ClinicalDocument" not in everything
    assert "PRIVATE KEY" not in everything
    key_body = "".join(key_text.splitlines()[1:-1])
    assert key_body[:40] not in everything


# ----------------------------------------------------------------------------------------------------------
# TLS failures


def test_untrusted_server_certificate(
    pki: DemoPki, scripted: Callable[..., tuple[ScriptedApp, XdrServer]], tmp_path: Path, document: Path
) -> None:
    other = CertificateAuthority.create("some other CA")
    other.issue_server(["localhost", "127.0.0.1"]).write_pem(tmp_path / "s.pem", tmp_path / "s.key")
    app, server = scripted(soap(RegistryResponse.success()), cert=tmp_path / "s.pem", key=tmp_path / "s.key")
    with client_for(server.url, pki) as client:
        result = client.send(submission(document), practice="practice-a")
    assert result.outcome is Outcome.TRANSPORT_ERROR
    assert result.message.startswith("server certificate not trusted")
    assert server.url in result.message
    assert result.attempts == 1
    assert app.recorder.count == 0


def test_server_that_rejects_our_client_certificate(pki: DemoPki, tmp_path: Path, document: Path) -> None:
    other = CertificateAuthority.create("a CA that did not issue ours")
    (tmp_path / "other-ca.pem").write_bytes(other.cert_pem)
    app = ScriptedApp([soap(RegistryResponse.success())], tmp_path)
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        cert=pki.server_cert,
        key=pki.server_key,
        client_ca=tmp_path / "other-ca.pem",
        threads=2,
        socket_timeout=10,
    )
    with XdrServer(app, config) as server, client_for(server.url, pki) as client:
        result = client.send(submission(document), practice="practice-a")
    assert result.outcome is Outcome.TRANSPORT_ERROR
    assert result.message.startswith("our client certificate was rejected")
    assert "CN=practice-a edge client" in result.message and server.url in result.message
    assert result.attempts == 1
    assert app.recorder.count == 0


def test_endpoint_down_is_retried_then_reported_as_transport_error(pki: DemoPki, document: Path) -> None:
    app = ScriptedApp([], Path("."))
    server = XdrServer(
        app, ServerConfig(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert, port=0)
    )
    server.start()
    url = server.url
    server.stop()
    with client_for(url, pki) as client:
        result = client.send(submission(document), practice="practice-a")
    assert result.outcome is Outcome.TRANSPORT_ERROR
    assert result.message.startswith(f"could not connect to {url}") and "nothing was sent" in result.message
    assert result.attempts == 3 and len(set(result.message_ids)) == 3
    assert result.bytes_sent == 0


def test_a_server_that_never_completes_the_handshake_means_nothing_was_sent(
    pki: DemoPki, document: Path
) -> None:
    """A server whose workers are all busy accepts the TCP connection and never answers the ClientHello;
    urllib3 reports that as a read timeout. No request byte left, so this is "nothing was sent" (retried),
    never "the HISP may or may not have stored it"."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        url = f"https://127.0.0.1:{port}/xdr"
        with client_for(url, pki, timeout=(0.5, 10.0)) as client:
            result = client.send(submission(document), practice="practice-a")
    assert result.outcome is Outcome.TRANSPORT_ERROR, result.message
    assert "did not complete the connection within 0.5s" in result.message
    assert result.message.endswith("nothing was sent")
    assert result.bytes_sent == 0 and result.attempts == 3


def test_an_oversized_answer_is_read_up_to_the_cap_then_the_outcome_is_unknown(
    pki: DemoPki, scripted: Callable[..., tuple[ScriptedApp, XdrServer]], document: Path
) -> None:
    huge = b"<S:Envelope>" + b" " * (1024 * 1024)
    app, server = scripted(raw(200, "application/soap+xml", huge))
    with client_for(server.url, pki, max_response_bytes=64 * 1024) as client:
        result = client.send(submission(document), practice="practice-a", keep_raw_response=True)
    assert result.outcome is Outcome.OUTCOME_UNKNOWN
    assert "is larger than the 65536 bytes xdr-edge reads of a response" in result.message
    assert "may or may not have stored" in result.message
    assert result.attempts == 1 and app.recorder.count == 1  # not retried: the answer would be the same
    assert result.http_status == 200 and result.raw_response is None
    with client_for(server.url, pki, max_response_bytes=2 * 1024 * 1024) as client:
        within = client.send(submission(document), practice="practice-a")
    # read whole, then judged: an answer that is not SOAP at all
    assert within.message.startswith("HTTP 200") and "larger than" not in within.message
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigurationError, match="max_response_bytes"):
            client_for(server.url, pki, max_response_bytes=bad)


def test_an_empty_document_is_refused_before_anything_is_sent(
    pki: DemoPki, scripted: Callable[..., tuple[ScriptedApp, XdrServer]], tmp_path: Path
) -> None:
    empty = tmp_path / "scan.pdf"
    empty.write_bytes(b"")
    app, server = scripted(soap(RegistryResponse.success()))
    with client_for(server.url, pki) as client, pytest.raises(ValidationFailed) as caught:
        client.send(submission(empty), practice="practice-a")
    (finding,) = [f for f in caught.value.findings if f.is_error]
    assert finding.rule == "de-empty-document" and "(scan.pdf) is empty (0 bytes)" in finding.message
    assert app.recorder.count == 0


# ----------------------------------------------------------------------------------------------------------
# What the HISP answers


def _send(
    scripted: Callable[..., tuple[ScriptedApp, XdrServer]], pki: DemoPki, document: Path, *scripts: Script
) -> tuple[SendResult, ScriptedApp]:
    app, server = scripted(*scripts)
    with client_for(server.url, pki) as client:
        return client.send(submission(document), practice="practice-a", keep_raw_response=True), app


def test_html_502_page(
    pki: DemoPki, scripted: Callable[..., tuple[ScriptedApp, XdrServer]], document: Path
) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    result, app = _send(
        scripted, pki, document, raw(502, "text/html", page), soap(RegistryResponse.success())
    )
    assert result.outcome is Outcome.TRANSPORT_ERROR
    assert (
        "HTTP 502" in result.message
        and "not a SOAP response" in result.message
        and "text/html" in result.message
    )
    assert result.http_status == 502
    assert result.raw_response == page
    assert result.attempts == 1 and app.recorder.count == 1  # a gateway error may hide a stored request


def test_soap_fault(
    pki: DemoPki, scripted: Callable[..., tuple[ScriptedApp, XdrServer]], document: Path
) -> None:
    fault = Fault(
        "Sender", "the metadata-level header is not understood", subcode="{urn:example:hisp}BadLevel"
    )
    result, _ = _send(scripted, pki, document, soap(fault))
    assert result.outcome is Outcome.FAULT
    assert result.fault is not None and result.fault.code == "Sender"
    assert result.fault.reason == "the metadata-level header is not understood"
    assert "SOAP fault Sender" in result.message and "not understood" in result.message
    assert result.http_status == 400
    assert result.as_dict()["fault"]["reason"] == fault.reason


def test_failure_registry_response(
    pki: DemoPki, scripted: Callable[..., tuple[ScriptedApp, XdrServer]], document: Path
) -> None:
    errors = [
        RegistryErrorEntry(
            "XDSPatientIdDoesNotMatch", "patient id unknown to the HISP", location="DocumentEntry"
        ),
        RegistryErrorEntry("XDSRegistryMetadataError", "classCode not in the affinity domain"),
    ]
    result, _ = _send(scripted, pki, document, soap(RegistryResponse.failure(errors)))
    assert result.outcome is Outcome.FAILURE and not result.ok
    assert [e.error_code for e in result.errors] == ["XDSPatientIdDoesNotMatch", "XDSRegistryMetadataError"]
    assert result.message == "Failure: XDSPatientIdDoesNotMatch: patient id unknown to the HISP"
    assert result.attempts == 1 and not result.already_delivered
    assert result.as_dict()["errors"][1]["code_context"] == "classCode not in the affinity domain"


def test_partial_success(
    pki: DemoPki, scripted: Callable[..., tuple[ScriptedApp, XdrServer]], document: Path
) -> None:
    partial = RegistryResponse(
        status="urn:ihe:iti:2007:ResponseStatusType:PartialSuccess",
        errors=(RegistryErrorEntry("XDSRepositoryError", "one document was not stored"),),
    )
    result, _ = _send(scripted, pki, document, soap(partial))
    assert result.outcome is Outcome.PARTIAL_SUCCESS and result.ok


def test_empty_200_body(
    pki: DemoPki, scripted: Callable[..., tuple[ScriptedApp, XdrServer]], document: Path
) -> None:
    result, _ = _send(scripted, pki, document, raw(200, "application/soap+xml", b""))
    assert result.outcome is Outcome.OUTCOME_UNKNOWN
    assert "HTTP 200" in result.message and "the response body is empty" in result.message
    assert result.attempts == 1


def test_503_then_success_is_retried(
    pki: DemoPki, scripted: Callable[..., tuple[ScriptedApp, XdrServer]], document: Path
) -> None:
    busy = raw(503, "text/html", b"<html>maintenance</html>")
    result, app = _send(scripted, pki, document, busy, soap(RegistryResponse.success()))
    assert result.outcome is Outcome.SUCCESS and result.attempts == 2
    assert not result.already_delivered
    first, second = app.recorder.seen
    assert first.message_id != second.message_id
    assert first.submission_set_unique_id == second.submission_set_unique_id


def _duplicate(request: IncomingRequest) -> ReplyBytes:
    assert request.submission is not None
    uid = request.submission.submission_set.unique_id
    failure = RegistryResponse.failure(
        [
            RegistryErrorEntry(
                "XDSDuplicateUniqueIdInRegistry", f"SubmissionSet uniqueId {uid} was already received"
            )
        ]
    )
    return build_reply(failure, relates_to=request.envelope.message_id, mtom=request.mtom)


def test_duplicate_after_a_503_is_a_failure_not_already_delivered(
    pki: DemoPki, scripted: Callable[..., tuple[ScriptedApp, XdrServer]], document: Path
) -> None:
    # a 503 means "not processed": the duplicate cannot be our own earlier attempt
    result, app = _send(scripted, pki, document, raw(503, "text/plain", b"busy"), _duplicate)
    assert result.attempts == 2 and app.recorder.count == 2
    assert result.outcome is Outcome.FAILURE and not result.already_delivered
    assert result.errors[0].error_code == "XDSDuplicateUniqueIdInRegistry"


def test_relates_to_must_match_our_message_id(
    pki: DemoPki, scripted: Callable[..., tuple[ScriptedApp, XdrServer]], document: Path
) -> None:
    def wrong(request: IncomingRequest) -> ReplyBytes:
        return build_reply(RegistryResponse.success(), relates_to="urn:uuid:someone-else", mtom=request.mtom)

    result, _ = _send(scripted, pki, document, wrong)
    assert result.outcome is Outcome.OUTCOME_UNKNOWN
    assert "urn:uuid:someone-else" in result.message and result.message_id in result.message
    assert result.attempts == 3  # OutcomeUnknown is retried; the uniqueIds make that safe


def test_response_without_relates_to_is_accepted_with_a_warning(
    pki: DemoPki, scripted: Callable[..., tuple[ScriptedApp, XdrServer]], document: Path
) -> None:
    """Real HISPs omit wsa:RelatesTo: accepted, but the SendResult says so."""

    def no_relates_to(request: IncomingRequest) -> ReplyBytes:
        reply = build_reply(RegistryResponse.success(), relates_to=request.envelope.message_id, mtom=False)
        root = etree.fromstring(reply.body)
        for element in root.iter(f"{{{ns.WSA}}}RelatesTo"):
            element.getparent().remove(element)  # type: ignore[union-attr]
        return ReplyBytes(reply.status, reply.content_type, etree.tostring(root))

    result, _ = _send(scripted, pki, document, no_relates_to)
    assert result.outcome is Outcome.SUCCESS and result.attempts == 1
    assert [(f.code, f.severity) for f in result.response_findings] == [
        ("missing-relates-to", Severity.WARNING)
    ]
    assert result.as_dict()["response_findings"][0]["location"] == "S:Header/wsa:RelatesTo"
    result, _ = _send(scripted, pki, document, soap(RegistryResponse.success()))
    assert not [f for f in result.response_findings if f.code == "missing-relates-to"]


def test_plain_soap_and_mtom_responses_are_both_read(
    pki: DemoPki, scripted: Callable[..., tuple[ScriptedApp, XdrServer]], document: Path
) -> None:
    def plain(request: IncomingRequest) -> ReplyBytes:
        return build_reply(RegistryResponse.success(), relates_to=request.envelope.message_id, mtom=False)

    result, _ = _send(scripted, pki, document, plain)
    assert result.outcome is Outcome.SUCCESS
    assert (result.response_content_type or "").startswith("application/soap+xml")
    result, _ = _send(scripted, pki, document, soap(RegistryResponse.success()))
    assert result.outcome is Outcome.SUCCESS
    assert (result.response_content_type or "").startswith("multipart/related")


def test_redirect_is_not_followed(
    pki: DemoPki, scripted: Callable[..., tuple[ScriptedApp, XdrServer]], document: Path
) -> None:
    def moved(request: IncomingRequest) -> ReplyBytes:
        return ReplyBytes(307, "text/plain", b"moved")

    result, app = _send(scripted, pki, document, moved)
    assert result.outcome is Outcome.TRANSPORT_ERROR and "HTTP 307" in result.message
    assert app.recorder.count == 1


def test_retry_delay_has_jitter_within_the_cap() -> None:
    import random

    policy = RetryPolicy(base_delay=1.0, max_delay=3.0)
    rng = random.Random(7)
    delays = [policy.delay(n, rng) for n in (1, 2, 3, 4, 5) for _ in range(50)]
    assert all(0 <= d <= 3.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100


def test_certificate_not_yet_valid_is_refused(pki: DemoPki, tmp_path: Path, document: Path) -> None:
    future = datetime.now(UTC) + timedelta(days=2)
    issued = pki.ca.issue_client(
        "future", emails=(A_FROM,), not_before=future, not_after=future + timedelta(days=9)
    )
    issued.write_pem(tmp_path / "f.pem", tmp_path / "f.key")
    prac = Practice(
        id="f",
        bindings=(Binding.parse(A_FROM),),
        credential=ClientCredential(cert=tmp_path / "f.pem", key=tmp_path / "f.key"),
    )
    with XdrClient(endpoint="https://127.0.0.1:9/xdr", ca_bundle=pki.ca_cert, practices=[prac]) as client:
        with pytest.raises(CertificateError, match="not valid before"):
            client.preflight(submission(document), "f")


def test_the_loopback_example_in_docs_sending_md_runs(capsys: pytest.CaptureFixture[str]) -> None:
    doc = Path(__file__).resolve().parents[1] / "docs" / "sending.md"
    section = doc.read_text().split("### Try it on loopback", 1)[1]
    code = section.split("```python\n", 1)[1].split("\n```", 1)[0]
    exec(compile(code, f"{doc}:loopback example", "exec"), {"__name__": "docs_example"})
    assert capsys.readouterr().out.startswith("Success 200 urn:uuid:")


def test_a_request_over_the_hisp_size_limit_is_a_fault_read_not_a_broken_pipe(tmp_path: Path) -> None:
    """The real receiver refuses by Content-Length before reading; the client is still writing 8 MiB and must
    still read the 413 fault (the server's lingering close), once, without retrying a refusal."""
    limit = 1024 * 1024

    def small_limit(config: ReceiverConfig) -> XdrEdgeApp:
        return XdrEdgeApp(dataclasses.replace(config, limits=MtomLimits(max_total_bytes=limit)))

    big = tmp_path / "scan.pdf"
    big.write_bytes(b"%PDF-1.4\n" + b"\x00" * (8 * limit))
    with start_lab(tmp_path / "lab", app_factory=small_limit) as lab:
        with XdrClient(
            endpoint=lab.endpoint, ca_bundle=lab.ca_bundle, practices=lab.practices, retry=FAST
        ) as client:
            result = client.send(
                compose([big], sender=A_FROM, recipients=[TO], level=MetadataLevel.MINIMAL),
                practice="practice-a",
            )
    assert result.outcome is Outcome.FAULT, result.message
    assert result.http_status == 413 and result.attempts == 1
    assert result.fault is not None and "exceeds the limit" in result.fault.reason


@pytest.mark.slow
def test_a_hisp_that_hangs_up_mid_upload_is_reported_as_not_stored(tmp_path: Path) -> None:
    """The same refusal from a server that closes at once (no lingering close): the reset destroys its 413,
    and all the client knows is that the connection closed before the whole body was written. That proves the
    HISP has no complete request, so the message says "not stored", not "TLS handshake failed"."""
    limit = 1024 * 1024

    def small_limit(config: ReceiverConfig) -> XdrEdgeApp:
        return XdrEdgeApp(dataclasses.replace(config, limits=MtomLimits(max_total_bytes=limit)))

    big = tmp_path / "scan.pdf"
    big.write_bytes(b"%PDF-1.4\n" + b"\x00" * (48 * limit))  # far beyond what socket buffers absorb
    with start_lab(tmp_path / "lab", app_factory=small_limit) as lab:
        abrupt = dataclasses.replace(lab.server.config, port=0, linger_seconds=0.0)
        with XdrServer(lab.server.app, abrupt) as server:
            with XdrClient(
                endpoint=server.url, ca_bundle=lab.ca_bundle, practices=lab.practices, retry=FAST
            ) as client:
                submission = compose([big], sender=A_FROM, recipients=[TO], level=MetadataLevel.MINIMAL)
                result = client.send(submission, practice="practice-a")
    assert result.outcome is Outcome.TRANSPORT_ERROR, result.message
    assert "before the request was complete, so it was not stored" in result.message
    assert "handshake" not in result.message
    assert result.http_status is None
