"""The receiver end to end: a real cheroot server on loopback with mutual TLS, a PKI made
for the test (``xdr_edge.devtools.lab``), real requests over real sockets, and the inbox on disk.

One lab serves the whole module: tests that change registry state do it with certificates of their own, and
every submission has fresh uniqueIds, so tests do not see each other's results. Invalid requests are made by
building a valid one (compose + wire.build_request) and mutating the root XML with lxml before framing it again
with :class:`~xdr_edge.protocol.mtom.MtomBody`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import io
import json
import logging
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from xdr_edge.certs import load_identity
from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.minting import CertificateAuthority
from xdr_edge.practice import ClientCredential
from xdr_edge.protocol import ns
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.model import Document, MetadataLevel, Submission
from xdr_edge.protocol.mtom import MtomBody, MtomLimits
from xdr_edge.protocol.response import RegistryResponse
from xdr_edge.protocol.soap import header_qname
from xdr_edge.protocol.wire import (
    OutgoingRequest,
    ParsedResponse,
    build_plain_request,
    build_request,
    parse_response,
    soap_content_type,
)
from xdr_edge.receiver.app import PeerIdentitySource, ReceiverConfig, XdrEdgeApp
from xdr_edge.receiver.server import ServerConfig, XdrServer
from xdr_edge.receiver.store import Inbox, StoredSubmission
from xdr_edge.tls import client_ssl_context

SENDER_A = "dr.smith@direct.practice-a.org"
SENDER_B = "dr.jones@direct.practice-b.org"
RECIPIENT = "inbox@direct.hisp.example"
LIMIT = 3 * 1024 * 1024  # the module lab's request size limit
HOOK_FAIL_TITLE = "make the hook fail"

# ----------------------------------------------------------------------------------------------------------
# Fixtures


@dataclass
class HookLog:
    """What the lab's hook saw. The hook raises for a submission titled ``HOOK_FAIL_TITLE``."""

    calls: list[StoredSubmission] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, stored: StoredSubmission) -> None:
        with self.lock:
            self.calls.append(stored)
        if _title_of(stored) == HOOK_FAIL_TITLE:
            raise RuntimeError("downstream system unavailable")

    def for_uid(self, unique_id: str) -> list[StoredSubmission]:
        with self.lock:
            return [s for s in self.calls if s.summary.get("submission_set_unique_id") == unique_id]


def _title_of(stored: StoredSubmission) -> str | None:
    root = etree.parse(str(stored.directory / "metadata.xml")).getroot()
    for package in root.iter(f"{{{ns.RIM}}}RegistryPackage"):
        for name in package.findall(f"{{{ns.RIM}}}Name/{{{ns.RIM}}}LocalizedString"):
            return name.get("value")
    return None


@dataclass
class Env:
    lab: Lab
    hook: HookLog
    ccda: Path
    pdf: Path

    def context(self, practice_id: str = "practice-a") -> ssl.SSLContext:
        credential = self.lab.practices[practice_id].credential
        assert credential is not None
        return client_ssl_context(load_identity(credential), self.lab.ca_bundle)

    def context_for(self, cert: Path, key: Path) -> ssl.SSLContext:
        return client_ssl_context(load_identity(ClientCredential(cert=cert, key=key)), self.lab.ca_bundle)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("lab")
    hook = HookLog()

    def factory(config: ReceiverConfig) -> XdrEdgeApp:
        return XdrEdgeApp(dataclasses.replace(config, limits=MtomLimits(max_total_bytes=LIMIT)))

    docs = directory / "docs"
    docs.mkdir()
    ccda, pdf = docs / "ccd.xml", docs / "referral.pdf"
    ccda.write_bytes(sample_ccda())
    pdf.write_bytes(sample_pdf())
    lab = start_lab(directory, hook=hook, app_factory=factory)
    try:
        yield Env(lab, hook, ccda, pdf)
    finally:
        lab.stop()


# ----------------------------------------------------------------------------------------------------------
# Sending helpers


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def parsed(self) -> ParsedResponse:
        return parse_response(self.content_type, self.body)

    def registry_response(self) -> RegistryResponse:
        rr = self.parsed().registry_response
        assert rr is not None, f"no RegistryResponse in HTTP {self.status}: {self.body[:500]!r}"
        return rr

    def error_codes(self) -> list[str]:
        return [e.error_code for e in self.registry_response().errors if e.severity.value == "Error"]


def post(
    env: Env,
    body: bytes,
    headers: dict[str, str],
    *,
    context: ssl.SSLContext | None = None,
    path: str = "/xdr",
    port: int | None = None,
) -> Reply:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port or env.lab.server.port, context=context or env.context(), timeout=30
    )
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        connection.close()


def send(env: Env, request: OutgoingRequest, **kwargs: Any) -> Reply:
    return post(env, b"".join(request.body), request.headers(), **kwargs)


def make_submission(
    env: Env,
    *,
    sender: str = SENDER_A,
    level: MetadataLevel = MetadataLevel.MINIMAL,
    documents: list[Path | Document] | None = None,
    title: str | None = None,
) -> Submission:
    return compose(
        documents if documents is not None else [env.ccda],
        sender=sender,
        recipients=[RECIPIENT],
        level=level,
        title=title,
    )


def request_for(env: Env, submission: Submission) -> OutgoingRequest:
    return build_request(submission, endpoint=env.lab.endpoint)


def reframe(
    request: OutgoingRequest, mutate: Callable[[etree._Element], None], *, drop_parts: bool = False
) -> MtomBody:
    """The request's MTOM body with its root XML changed by ``mutate`` (and its document parts kept unless
    ``drop_parts``)."""
    root = etree.fromstring(request.body.root)
    mutate(root)
    parts = () if drop_parts else request.body.parts
    return MtomBody(etree.tostring(root), parts)


def send_body(env: Env, body: MtomBody, **kwargs: Any) -> Reply:
    headers = {"Content-Type": body.content_type, "Content-Length": str(len(body))}
    return post(env, b"".join(body), headers, **kwargs)


def stored_dirs(inbox: Inbox, unique_id: str) -> list[Path]:
    """Final submission directories for ``unique_id`` (named by it, possibly with a suffix)."""
    safe = unique_id.replace("/", "_")
    return [
        p
        for p in inbox.root.glob("*/*")
        if p.is_dir() and p.name.startswith(safe) and p.parent.name[0] != "."
    ]


def assert_nothing_stored(env: Env, submission: Submission) -> None:
    uid = submission.submission_set.unique_id
    assert not env.lab.inbox.contains(uid)
    assert stored_dirs(env.lab.inbox, uid) == []
    assert list(env.lab.inbox.staging_dir.iterdir()) == []
    assert list(env.lab.inbox.spool_dir.iterdir()) == []


def find_one(root: etree._Element, path: str) -> etree._Element:
    found = root.xpath(path, namespaces=ns.NSMAP)
    assert isinstance(found, list) and found, f"{path} not in the request"
    element = found[0]
    assert isinstance(element, etree._Element)
    return element


def remove(root: etree._Element, path: str) -> None:
    found = root.xpath(path, namespaces=ns.NSMAP)
    assert isinstance(found, list) and found, f"{path} not in the request"
    for element in found:
        assert isinstance(element, etree._Element)
        parent = element.getparent()
        assert parent is not None
        parent.remove(element)


# ----------------------------------------------------------------------------------------------------------
# Valid submissions


def _assert_stored(
    env: Env, submission: Submission, originals: list[bytes], reply: Reply, request_id: str
) -> dict[str, Any]:
    assert reply.status == 200
    rr = reply.registry_response()
    assert rr.is_success, rr.errors
    uid = submission.submission_set.unique_id
    (directory,) = stored_dirs(env.lab.inbox, uid)
    summary: dict[str, Any] = json.loads((directory / "summary.json").read_text())
    assert summary["practice"] == "practice-a"
    assert summary["sender"] == SENDER_A
    assert summary["recipients"] == [RECIPIENT]
    assert summary["message_id"] == request_id
    assert summary["submission_set_unique_id"] == uid
    assert summary["document_unique_ids"] == [e.unique_id for e in submission.document_entries]
    assert summary["certificate_sha256"] == env.lab.pki.practices["practice-a"].fingerprint_sha256
    assert summary["received_at"]
    assert len(summary["documents"]) == len(originals)
    for record, original, entry in zip(
        summary["documents"], originals, submission.document_entries, strict=True
    ):
        stored = (directory / record["file"]).read_bytes()
        assert stored == original  # byte-exact
        assert record["sha1"] == hashlib.sha1(original).hexdigest() == entry.hash
        assert record["size"] == len(original)
        assert record["unique_id"] == entry.unique_id
    metadata = etree.parse(str(directory / "metadata.xml")).getroot()
    assert etree.QName(metadata).localname == "SubmitObjectsRequest"
    return summary


def test_valid_minimal_submission_is_stored_byte_exact(env: Env) -> None:
    submission = make_submission(env)
    request = request_for(env, submission)
    reply = send(env, request)
    summary = _assert_stored(env, submission, [sample_ccda()], reply, request.message_id)
    assert summary["metadata_level"] == "minimal"
    assert summary["mtom"] is True
    assert summary["final_destination_delivery"] is False
    assert reply.parsed().envelope.relates_to == request.message_id


def test_a_final_destination_delivery_request_travels_with_the_stored_submission(env: Env) -> None:
    """ETT MT 30: the request is accepted and the downstream HISP learns that the sender wants to be told."""
    submission = dataclasses.replace(make_submission(env), final_destination_delivery=True)
    request = request_for(env, submission)
    summary = _assert_stored(env, submission, [sample_ccda()], send(env, request), request.message_id)
    assert summary["final_destination_delivery"] is True
    (stored,) = env.hook.for_uid(submission.submission_set.unique_id)
    assert stored.summary["final_destination_delivery"] is True


def test_an_unreadable_delivery_request_is_a_failure_naming_it(env: Env) -> None:
    submission = make_submission(env)
    request = request_for(env, submission)

    def garble(root: etree._Element) -> None:
        block = find_one(root, "soap:Header/direct:addressBlock")
        etree.SubElement(block, f"{{{ns.DIRECT}}}X-DIRECT-FINAL-DESTINATION-DELIVERY").text = "perhaps"

    reply = send_body(env, reframe(request, garble))
    rr = reply.registry_response()
    assert not rr.is_success
    (error,) = rr.errors
    assert error.error_code == "XDSRepositoryMetadataError"
    assert "X-DIRECT-FINAL-DESTINATION-DELIVERY" in (error.location or "")
    assert "'perhaps'" in error.code_context
    assert_nothing_stored(env, submission)


def test_valid_full_submission_with_two_documents_is_stored_byte_exact(env: Env) -> None:
    submission = make_submission(env, level=MetadataLevel.XDS, documents=[env.ccda, env.pdf])
    request = request_for(env, submission)
    reply = send(env, request)
    summary = _assert_stored(env, submission, [sample_ccda(), sample_pdf()], reply, request.message_id)
    assert summary["metadata_level"] == "XDS"
    assert [Path(d["file"]).suffix for d in summary["documents"]] == [".xml", ".pdf"]


def test_mtom_request_gets_mtom_response_with_relates_to(env: Env) -> None:
    request = request_for(env, make_submission(env))
    reply = send(env, request)
    assert reply.content_type.startswith("multipart/related")
    assert 'type="application/xop+xml"' in reply.content_type
    parsed = reply.parsed()
    assert parsed.envelope.relates_to == request.message_id
    assert parsed.envelope.action == ns.ACTION_PNR_RESPONSE


def _plain_soap(env: Env, submission: Submission) -> tuple[str, bytes]:
    message_id, _, xml = build_plain_request(submission, endpoint=env.lab.endpoint)
    return message_id, xml


def _with_wsse_security(xml: bytes) -> bytes:
    """The envelope with a mandatory wsse:Security block, as RI- and CONNECT-style senders add."""
    block = (
        f'<wsse:Security xmlns:wsse="{ns.WSSE}" xmlns:s="{ns.SOAP}" s:mustUnderstand="true">'
        "<wsse:UsernameToken><wsse:Username>edge</wsse:Username></wsse:UsernameToken></wsse:Security>"
    ).encode()
    root = etree.fromstring(xml)
    header = root.find(f"{{{ns.SOAP}}}Header")
    assert header is not None
    header.append(etree.fromstring(block))
    return etree.tostring(root)


def test_mandatory_wsse_security_is_a_fault_unless_the_operator_declares_it_understood(env: Env) -> None:
    headers = {"Content-Type": soap_content_type(ns.ACTION_PNR)}
    refused = make_submission(env)
    message_id, xml = _plain_soap(env, refused)
    reply = post(env, _with_wsse_security(xml), headers)
    fault = reply.parsed().fault
    assert fault is not None and fault.code == "MustUnderstand" and "wsse" in fault.reason
    assert reply.parsed().envelope.relates_to == message_id  # a fault correlates too
    assert_nothing_stored(env, refused)

    app = env.lab.server.app
    lenient = XdrEdgeApp(
        dataclasses.replace(app.config, understood_headers=frozenset({header_qname("wsse:Security")}))
    )
    accepted = make_submission(env)
    config = dataclasses.replace(env.lab.server.config, port=0)
    with XdrServer(lenient, config) as server:
        reply = post(env, _with_wsse_security(_plain_soap(env, accepted)[1]), headers, port=server.port)
    assert reply.registry_response().is_success
    assert len(stored_dirs(env.lab.inbox, accepted.submission_set.unique_id)) == 1


def test_a_message_id_that_could_forge_a_log_line_is_refused_and_logged_escaped(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    submission = make_submission(env)
    forged = "urn:uuid:x\nrequest practice=practice-b sender=forged outcome=stored status=200"

    def mutate(root: etree._Element) -> None:
        find_one(root, "soap:Header/wsa:MessageID").text = forged

    with caplog.at_level(logging.INFO, logger="xdr_edge.receiver"):
        reply = send_body(env, reframe(request_for(env, submission), mutate))
    fault = reply.parsed().fault
    assert fault is not None and fault.subcode == "wsa:InvalidAddressingHeader"
    assert_nothing_stored(env, submission)
    lines = [line for r in caplog.records for line in r.getMessage().splitlines()]
    assert not [line for line in lines if "sender=forged" in line]


def test_plain_soap_request_is_accepted_with_plain_soap_response(env: Env) -> None:
    submission = make_submission(env, documents=[env.ccda, env.pdf])
    message_id, xml = _plain_soap(env, submission)
    headers = {"Content-Type": soap_content_type(ns.ACTION_PNR)}
    reply = post(env, xml, headers)
    assert reply.status == 200
    assert reply.content_type.startswith("application/soap+xml")
    assert reply.registry_response().is_success
    assert reply.parsed().envelope.relates_to == message_id
    (directory,) = stored_dirs(env.lab.inbox, submission.submission_set.unique_id)
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["mtom"] is False
    stored = [(directory / d["file"]).read_bytes() for d in summary["documents"]]
    assert stored == [sample_ccda(), sample_pdf()]


# ----------------------------------------------------------------------------------------------------------
# Sender binding


def test_practice_a_certificate_with_practice_b_sender_is_refused(env: Env) -> None:
    submission = make_submission(env, sender=SENDER_B)
    reply = send(env, request_for(env, submission))
    assert reply.status == 200
    rr = reply.registry_response()
    assert rr.is_failure
    assert [e.error_code for e in rr.errors] == ["XDSRepositoryError"]
    assert SENDER_B in rr.errors[0].code_context
    assert_nothing_stored(env, submission)


def test_header_sender_bound_but_author_telecom_of_other_practice_is_refused(env: Env) -> None:
    submission = make_submission(env, sender=SENDER_B)
    submission = dataclasses.replace(submission, direct_from=make_submission(env).direct_from)
    reply = send(env, request_for(env, submission))
    rr = reply.registry_response()
    assert rr.is_failure
    assert rr.errors[0].error_code == "XDSRepositoryError"
    assert SENDER_B in rr.errors[0].code_context
    assert_nothing_stored(env, submission)


# ----------------------------------------------------------------------------------------------------------
# Client certificates


def _raw_exchange(env: Env, context: ssl.SSLContext, request: bytes) -> bytes:
    """Connect, send ``request`` and read the first reply bytes. With TLS 1.3 the server judges the client
    certificate after the client's side of the handshake; its verdict arrives with the first read."""
    with socket.create_connection(("127.0.0.1", env.lab.server.port), timeout=15) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(request)
            received = b""
            while chunk := tls.recv(65536):  # the server closes after a refusal
                received += chunk
            return received


_HEAD_ONLY = (
    b"POST /xdr HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/soap+xml\r\n"
    b"Content-Length: 50000000\r\n\r\n"
)


def _assert_handshake_refused(
    env: Env, caplog: pytest.LogCaptureFixture, cert: Path, key: Path, reason: str
) -> None:
    """Refused by the server's TLS layer, for ``reason``: not merely a connection that ended without an answer
    (which a crashing app would also give)."""
    context = env.context_for(cert, key)
    hooked = len(env.hook.calls)
    with caplog.at_level(logging.INFO, logger="xdr_edge.receiver.server"):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            reply = _raw_exchange(env, context, _HEAD_ONLY)
            if not reply:  # the server closed without a word: also a refusal, but make it one we can assert
                raise ConnectionResetError("closed")
        deadline = time.monotonic() + 15
        while not _records_with(caplog, "TLS handshake") and time.monotonic() < deadline:
            time.sleep(0.05)  # the server's worker logs the refusal as it closes the connection
    lines = [r.getMessage() for r in _records_with(caplog, "TLS handshake")]
    assert any("failed" in m and reason in m for m in lines), lines
    assert len(env.hook.calls) == hooked


def test_untrusted_ca_client_certificate_fails_the_handshake(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    pki = env.lab.pki
    _assert_handshake_refused(
        env, caplog, pki.untrusted_client_cert, pki.untrusted_client_key, "CERTIFICATE_VERIFY_FAILED"
    )


def test_expired_client_certificate_fails_the_handshake(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    pki = env.lab.pki
    _assert_handshake_refused(
        env, caplog, pki.expired_client_cert, pki.expired_client_key, "CERTIFICATE_VERIFY_FAILED"
    )


def _new_client(env: Env, tmp_path: Path, name: str) -> tuple[Path, Path, str]:
    issued = env.lab.pki.ca.issue_client(name, emails=(SENDER_A,))
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    issued.write_pem(cert, key)
    return cert, key, issued.fingerprint_sha256


@pytest.mark.slow
def test_trusted_but_not_enrolled_gets_403_before_the_body_is_read(env: Env, tmp_path: Path) -> None:
    cert, key, _ = _new_client(env, tmp_path, "not-enrolled")
    # Headers announce 50 MB but no body byte is sent: the answer can only come if the body is not read.
    reply = _raw_exchange(env, env.context_for(cert, key), _HEAD_ONLY)
    status_line, _, rest = reply.partition(b"\r\n")
    assert b" 403 " in status_line
    assert b"Connection: close" in rest
    assert b"not enrolled" in rest


def test_not_enrolled_client_sending_a_whole_body_still_reads_the_403(env: Env, tmp_path: Path) -> None:
    """A client that writes its whole (large) body before reading must get the refusal, not a reset."""
    cert, key, _ = _new_client(env, tmp_path, "not-enrolled-big")
    big = Document.from_bytes(b"%PDF-1.4\n" + b"z" * (LIMIT * 2), name="big.pdf")
    submission = make_submission(env, documents=[big])
    reply = send(env, request_for(env, submission), context=env.context_for(cert, key))
    assert reply.status == 403
    fault = reply.parsed().fault
    assert fault is not None and "not enrolled" in fault.reason
    assert_nothing_stored(env, submission)


@pytest.mark.slow
def test_lingering_after_a_refusal_is_bounded(env: Env, tmp_path: Path) -> None:
    """A refused client that keeps trickling body bytes cannot hold a server thread: after answering, the
    server discards for at most ``linger_seconds`` and then closes."""
    cert, key, _ = _new_client(env, tmp_path, "trickler")
    config = dataclasses.replace(env.lab.server.config, port=0, linger_seconds=1.0)
    with XdrServer(env.lab.server.app, config) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        with env.context_for(cert, key).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(_HEAD_ONLY)
            tls.settimeout(0.05)
            started = time.monotonic()
            received = b""
            while time.monotonic() - started < 60:
                try:
                    chunk = tls.recv(65536)
                except TimeoutError:
                    try:
                        tls.sendall(b"x" * 4096)  # one more body slice every 50 ms
                    except TimeoutError:
                        pass  # buffers full for a moment; keep reading
                    except OSError:
                        break
                    continue
                except (ssl.SSLError, ConnectionError):
                    break  # a reset after the close is fine: the answer was read before it
                if not chunk:
                    break
                received += chunk
            closed_after = time.monotonic() - started
    assert b" 403 " in received.partition(b"\r\n")[0]
    # Generous against a loaded machine: without the bound the trickle would keep it open for the socket
    # timeout (30 s) and beyond, since every write resets the idle timer.
    assert closed_after < 20, f"the server kept a refused connection open for {closed_after:.1f} s"


def test_a_certificate_from_an_intermediate_ca_is_identified_through_the_configured_intermediates(
    env: Env, tmp_path: Path
) -> None:
    """The client sends its chain and TLS accepts it, but the application only ever sees the leaf (Python's
    ssl before 3.13): the registry chains it through ReceiverConfig.intermediates to its trust anchor."""
    inter = CertificateAuthority.create("Practices Issuing CA", parent=env.lab.pki.ca)
    issued = inter.issue_client("edge.practice-a.issuing", emails=(SENDER_A,))
    cert, key = tmp_path / "via-inter.pem", tmp_path / "via-inter.key"
    issued.write_pem(cert, key, include_chain=True)
    env.lab.registry.enroll("practice-a", cert.read_bytes(), actor="test")

    without = make_submission(env)
    reply = send(env, request_for(env, without), context=env.context_for(cert, key))
    assert reply.status == 403  # the registry cannot reach an anchor from the leaf alone
    assert_nothing_stored(env, without)

    app = env.lab.server.app
    through = XdrEdgeApp(dataclasses.replace(app.config, intermediates=(inter.cert,)))
    accepted = make_submission(env)
    with XdrServer(through, dataclasses.replace(env.lab.server.config, port=0)) as server:
        reply = send(env, request_for(env, accepted), context=env.context_for(cert, key), port=server.port)
    assert reply.registry_response().is_success
    assert len(stored_dirs(env.lab.inbox, accepted.submission_set.unique_id)) == 1


def test_revoked_certificate_is_rejected(env: Env, tmp_path: Path) -> None:
    cert, key, fingerprint = _new_client(env, tmp_path, "to-be-revoked")
    env.lab.registry.enroll("practice-a", cert.read_bytes(), actor="test")
    context = env.context_for(cert, key)
    first = make_submission(env)
    assert send(env, request_for(env, first), context=context).registry_response().is_success

    env.lab.registry.revoke(fingerprint, "key compromise", actor="test")
    second = make_submission(env)
    reply = send(env, request_for(env, second), context=env.context_for(cert, key))
    assert reply.status == 403
    fault = reply.parsed().fault
    assert fault is not None and fault.code == "Sender"
    assert "revoked" in fault.reason
    assert_nothing_stored(env, second)


# ----------------------------------------------------------------------------------------------------------
# Invalid requests: each mutation of a valid request gives its fault or error code and stores nothing


def _bad_soap_header(root: etree._Element) -> None:
    """ETT negative_bad_soap.xml: the Header element is not namespace-qualified."""
    header = find_one(root, "/soap:Envelope/soap:Header")
    header.tag = "Header"


def _body_wrong_namespace(root: etree._Element) -> None:
    """ETT negative_bad_soap_body.xml: the Body in the 2005/03 draft namespace."""
    body = find_one(root, "/soap:Envelope/soap:Body")
    body.tag = "{http://www.w3.org/2005/03/soap-envelope}Body"


def _no_sender_anywhere(root: etree._Element) -> None:
    remove(root, "//direct:addressBlock")
    remove(root, "//rim:Slot[@name='authorTelecommunication']")


def _no_has_member(root: etree._Element) -> None:
    remove(root, f"//rim:Association[@associationType='{ns.HAS_MEMBER}']")


def _no_document_unique_id(root: etree._Element) -> None:
    remove(root, f"//rim:ExtrinsicObject/rim:ExternalIdentifier[@identificationScheme='{ns.DE_UNIQUE_ID}']")


def _no_source_id(root: etree._Element) -> None:
    remove(root, f"//rim:RegistryPackage/rim:ExternalIdentifier[@identificationScheme='{ns.SS_SOURCE_ID}']")


def _no_mime_type(root: etree._Element) -> None:
    del find_one(root, "//rim:ExtrinsicObject").attrib["mimeType"]


def _no_creation_time(root: etree._Element) -> None:
    remove(root, "//rim:ExtrinsicObject/rim:Slot[@name='creationTime']")


def _document_without_metadata(root: etree._Element) -> None:
    remove(root, "//rim:ExtrinsicObject")
    remove(root, f"//rim:Association[@associationType='{ns.HAS_MEMBER}']")


def _metadata_without_document(root: etree._Element) -> None:
    remove(root, "//xdsb:Document")


def _hash_mismatch(root: etree._Element) -> None:
    value = find_one(root, "//rim:ExtrinsicObject/rim:Slot[@name='hash']/rim:ValueList/rim:Value")
    value.text = "0" * 40


FAULTS = [
    pytest.param(_bad_soap_header, "Sender", id="malformed-soap-header"),
    pytest.param(_body_wrong_namespace, "Sender", id="body-wrong-namespace"),
]

XDS_ERRORS = [  # mutation, level, drop the MIME parts, expected errorCode, where the error must point
    pytest.param(
        _no_sender_anywhere,
        MetadataLevel.MINIMAL,
        False,
        "XDSRegistryMetadataError",
        "Slot[@name='authorTelecommunication']",
        id="no-sender",
    ),
    pytest.param(
        _no_has_member,
        MetadataLevel.MINIMAL,
        False,
        "XDSRegistryMetadataError",
        "ExtrinsicObject[@id='Document01']",
        id="no-has-member",
    ),
    pytest.param(
        _no_document_unique_id,
        MetadataLevel.MINIMAL,
        False,
        "XDSRegistryMetadataError",
        "ExternalIdentifier[uniqueId]",
        id="no-de-unique-id",
    ),
    pytest.param(
        _no_source_id,
        MetadataLevel.MINIMAL,
        False,
        "XDSRegistryMetadataError",
        "ExternalIdentifier[sourceId]",
        id="no-ss-source-id",
    ),
    pytest.param(
        _no_mime_type,
        MetadataLevel.MINIMAL,
        False,
        "XDSRegistryMetadataError",
        "@mimeType",
        id="no-mime-type",
    ),
    pytest.param(
        _no_creation_time,
        MetadataLevel.XDS,
        False,
        "XDSRegistryMetadataError",
        "Slot[@name='creationTime']",
        id="no-creation-time-xds",
    ),
    pytest.param(
        _document_without_metadata,
        MetadataLevel.MINIMAL,
        False,
        "XDSMissingDocumentMetadata",
        "xdsb:Document[@id='Document01']",
        id="document-without-metadata",
    ),
    pytest.param(
        _metadata_without_document,
        MetadataLevel.MINIMAL,
        True,
        "XDSMissingDocument",
        "ExtrinsicObject[@id='Document01']",
        id="metadata-without-document",
    ),
    pytest.param(
        _hash_mismatch,
        MetadataLevel.MINIMAL,
        False,
        "XDSRepositoryMetadataError",
        "Slot[@name='hash']",
        id="hash-mismatch",
    ),
]


@pytest.mark.parametrize(("mutate", "code"), FAULTS)
def test_soap_errors_give_a_fault_and_store_nothing(
    env: Env, mutate: Callable[[etree._Element], None], code: str
) -> None:
    submission = make_submission(env)
    request = request_for(env, submission)
    reply = send_body(env, reframe(request, mutate))
    assert reply.status == 400
    fault = reply.parsed().fault
    assert fault is not None
    assert fault.code == code
    assert_nothing_stored(env, submission)


@pytest.mark.parametrize(("mutate", "level", "drop_parts", "code", "where"), XDS_ERRORS)
def test_metadata_and_document_errors_give_failure_and_store_nothing(
    env: Env,
    mutate: Callable[[etree._Element], None],
    level: MetadataLevel,
    drop_parts: bool,
    code: str,
    where: str,
) -> None:
    control = reframe(request_for(env, make_submission(env, level=level)), lambda _: None)
    assert send_body(env, control).registry_response().is_success  # the same request unmutated is accepted
    submission = make_submission(env, level=level)
    request = request_for(env, submission)
    reply = send_body(env, reframe(request, mutate, drop_parts=drop_parts))
    assert reply.status == 200
    rr = reply.registry_response()
    assert rr.is_failure
    errors = [e for e in rr.errors if e.severity.value == "Error"]
    assert any(e.error_code == code and where in (e.location or "") for e in errors), errors
    assert_nothing_stored(env, submission)
    assert_nothing_stored(env, submission)


def test_creation_time_is_not_required_at_minimal_level(env: Env) -> None:
    """The control for the XDS-level case above: the same removal is accepted with minimal metadata."""
    submission = make_submission(env)
    reply = send_body(env, reframe(request_for(env, submission), _no_creation_time))
    assert reply.registry_response().is_success


# ----------------------------------------------------------------------------------------------------------
# Duplicates


def test_same_submission_set_unique_id_twice_is_stored_once(env: Env) -> None:
    submission = make_submission(env)
    first = send(env, request_for(env, submission))
    second = send(env, request_for(env, submission))  # a new MessageID, the same uniqueIds: a retry
    assert first.registry_response().is_success
    rr = second.registry_response()
    assert rr.is_failure
    assert [e.error_code for e in rr.errors] == ["XDSDuplicateUniqueIdInRegistry"]
    assert len(stored_dirs(env.lab.inbox, submission.submission_set.unique_id)) == 1


def test_concurrent_duplicates_are_stored_once(env: Env) -> None:
    submission = make_submission(env, documents=[env.ccda, env.pdf])
    requests = [request_for(env, submission) for _ in range(2)]
    barrier = threading.Barrier(2)
    replies: list[Reply] = []
    lock = threading.Lock()

    def run(request: OutgoingRequest) -> None:
        barrier.wait()
        reply = send(env, request)
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=run, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    def outcome(reply: Reply) -> str:
        return "ok" if reply.registry_response().is_success else reply.error_codes()[0]

    # the index decides at once which copy is first: the other is a duplicate, never "busy, retry"
    outcomes = sorted(outcome(r) for r in replies)
    assert outcomes == ["XDSDuplicateUniqueIdInRegistry", "ok"]
    assert len(stored_dirs(env.lab.inbox, submission.submission_set.unique_id)) == 1
    assert len(env.hook.for_uid(submission.submission_set.unique_id)) == 1
    # Whatever the race gave, a copy sent now, after the first is committed, is a duplicate.
    assert send(env, request_for(env, submission)).error_codes() == ["XDSDuplicateUniqueIdInRegistry"]


# ----------------------------------------------------------------------------------------------------------
# HTTP-level limits


def test_request_over_the_size_limit_gets_413_and_stores_nothing(env: Env) -> None:
    """The client writes its whole body before it reads (no ``Expect: 100-continue``), and the body is far
    larger than the socket buffers: it only sees the 413 because the server keeps reading and discarding
    after answering (a lingering close) instead of resetting the connection under the client's writes."""
    big = Document.from_bytes(b"%PDF-1.4\n" + b"x" * (LIMIT * 8), name="big.pdf")
    submission = make_submission(env, documents=[big])
    request = request_for(env, submission)
    reply = send(env, request)
    assert reply.status == 413
    fault = reply.parsed().fault
    assert fault is not None and fault.code == "Sender"
    assert reply.parsed().envelope.relates_to == request.message_id  # read from the body's first bytes only
    assert_nothing_stored(env, submission)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_trickling_in_below_the_minimum_rate_gets_408_and_stores_nothing(
    env: Env, chunked: bool
) -> None:
    """The socket timeout alone would let a byte a minute hold a worker for days; the average rate bounds it."""
    submission = make_submission(env)
    request = request_for(env, submission)
    body = b"".join(request.body)
    headers = dict(request.headers())
    if chunked:
        del headers["Content-Length"]
        headers["Transfer-Encoding"] = "chunked"
        body = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    strict = dataclasses.replace(
        env.lab.server.config, port=0, upload_grace_seconds=0.3, min_upload_bytes_per_second=100_000
    )
    with XdrServer(env.lab.server.app, strict) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        with env.context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(f"POST /xdr HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode())
            tls.settimeout(0.1)
            received, offset, started = b"", 0, time.monotonic()
            while time.monotonic() - started < 30 and not received.rstrip().endswith(b"Envelope>"):
                if offset < len(body):
                    tls.sendall(body[offset : offset + 512])  # about 5 KB/s
                    offset += 512
                try:
                    received += tls.recv(65536)
                except TimeoutError:
                    continue
                except (ssl.SSLError, ConnectionError):
                    break
    assert offset < len(body)  # refused before the body was complete
    assert received.startswith(b"HTTP/1.1 408 ")
    assert b"bytes/s" in received
    assert_nothing_stored(env, submission)


def test_chunked_request_over_the_size_limit_gets_413(env: Env) -> None:
    """Without a Content-Length the limit is enforced while reading."""
    big = Document.from_bytes(b"%PDF-1.4\n" + b"y" * (LIMIT * 8), name="big.pdf")
    submission = make_submission(env, documents=[big])
    request = request_for(env, submission)
    connection = http.client.HTTPSConnection(
        "127.0.0.1", env.lab.server.port, context=env.context(), timeout=30
    )
    try:
        connection.request(
            "POST",
            "/xdr",
            body=iter(request.body),
            headers={"Content-Type": request.content_type},
            encode_chunked=True,
        )
        response = connection.getresponse()
        status = response.status
        answer = parse_response(response.getheader("Content-Type", ""), response.read())
    except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
        pytest.fail("the server should answer 413, not drop the connection")
    finally:
        connection.close()
    assert status == 413
    assert answer.envelope.relates_to == request.message_id
    assert_nothing_stored(env, submission)


def _records_with(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


def _abort_upload(sock: socket.socket, head: bytes, body: bytes) -> None:
    """Send the head and half the body, then close with SO_LINGER 0: a TCP reset, what a crashed client or a
    dropped link looks like to the server."""
    sock.sendall(head + body[: len(body) // 2])
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _wait_for(caplog: pytest.LogCaptureFixture, text: str) -> None:
    """The server is threaded: the aborted request may finish after the next one; wait for its log line."""
    deadline = time.monotonic() + 15
    while not _records_with(caplog, text) and time.monotonic() < deadline:
        time.sleep(0.05)


def _assert_disconnect_logged_quietly(caplog: pytest.LogCaptureFixture, outcomes: tuple[str, ...]) -> None:
    # Only this test's aborted upload has one of these outcomes; other requests still finishing on the shared
    # lab's worker threads (from earlier tests) may log their own lines meanwhile.
    aborted = [
        r
        for r in caplog.records
        if r.getMessage().startswith("request ")
        and any(f"outcome={outcome}" in r.getMessage() for outcome in outcomes)
    ]
    assert len(aborted) == 1, [r.getMessage() for r in caplog.records]
    line = aborted[0]
    assert line.levelno == logging.INFO and line.exc_info is None
    assert "status=400" in line.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


def _upload_head(request: OutgoingRequest, body: bytes, extra: dict[str, str] | None = None) -> bytes:
    lines = [
        "POST /xdr HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Type: {request.content_type}",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in (extra or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _half_pdf_submission(env: Env) -> Submission:
    return make_submission(
        env, documents=[Document.from_bytes(b"%PDF-1.4\n" + b"z" * (LIMIT // 2), name="h.pdf")]
    )


def test_client_disconnect_mid_upload_over_tls_is_quiet_and_stores_nothing(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Over TLS a reset reads as a truncated body (Python's ssl suppresses ragged EOFs): a 400 nobody reads,
    one info line and no traceback (not even for the reply that can no longer be written), nothing stored, no
    spool file left, and the server goes on serving."""
    submission = _half_pdf_submission(env)
    request = request_for(env, submission)
    body = b"".join(request.body)
    with caplog.at_level(logging.INFO, logger="xdr_edge.receiver"):
        raw = socket.create_connection(("127.0.0.1", env.lab.server.port), timeout=15)
        _abort_upload(
            env.context().wrap_socket(raw, server_hostname="127.0.0.1"), _upload_head(request, body), body
        )
        assert send(env, request_for(env, make_submission(env))).registry_response().is_success
        _wait_for(caplog, "outcome=fault:mtom-truncated")
        _wait_for(caplog, "the peer closed the connection")
    _assert_disconnect_logged_quietly(caplog, ("fault:mtom-truncated", "client-disconnected"))
    assert_nothing_stored(env, submission)


def test_client_disconnect_mid_upload_over_plain_http_is_a_400_not_an_internal_error(
    env: Env, proxy_server: tuple[XdrServer, Inbox], caplog: pytest.LogCaptureFixture
) -> None:
    """Behind a proxy the reset surfaces as ConnectionResetError from wsgi.input: mapped at the app's boundary
    to one info line naming how many bytes arrived, a 400 with Connection: close, and nothing stored."""
    server, inbox = proxy_server
    submission = _half_pdf_submission(env)
    request = request_for(env, submission)
    body = b"".join(request.body)
    extra = {k: v for k, v in _proxy_headers(env, request).items() if k.startswith("X-SSL")}
    with caplog.at_level(logging.INFO, logger="xdr_edge.receiver"):
        _abort_upload(
            socket.create_connection(("127.0.0.1", server.port), timeout=15),
            _upload_head(request, body, extra),
            body,
        )
        _wait_for(caplog, "outcome=")
        following = request_for(env, make_submission(env))
        assert (
            _post_plain(server.port, b"".join(following.body), _proxy_headers(env, following)).status == 200
        )
    _assert_disconnect_logged_quietly(caplog, ("client-disconnected:after-",))
    uid = submission.submission_set.unique_id
    assert not inbox.contains(uid) and stored_dirs(inbox, uid) == []
    assert list(inbox.spool_dir.iterdir()) == []


def test_get_is_405(env: Env) -> None:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", env.lab.server.port, context=env.context(), timeout=30
    )
    try:
        connection.request("GET", "/xdr")
        response = connection.getresponse()
        assert response.status == 405
        assert b"POST" in response.read()
    finally:
        connection.close()


# ----------------------------------------------------------------------------------------------------------
# Hook


def test_hook_receives_the_stored_submission(env: Env) -> None:
    submission = make_submission(env)
    assert send(env, request_for(env, submission)).registry_response().is_success
    (stored,) = env.hook.for_uid(submission.submission_set.unique_id)
    assert stored.directory == stored_dirs(env.lab.inbox, submission.submission_set.unique_id)[0]
    assert [p.read_bytes() for p in stored.document_paths] == [sample_ccda()]
    assert stored.summary["practice"] == "practice-a"


def test_failing_hook_does_not_fail_the_request(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    submission = make_submission(env, title=HOOK_FAIL_TITLE)
    with caplog.at_level(logging.ERROR, logger="xdr_edge.receiver"):
        reply = send(env, request_for(env, submission))
    assert reply.registry_response().is_success
    assert len(env.hook.for_uid(submission.submission_set.unique_id)) == 1
    assert len(stored_dirs(env.lab.inbox, submission.submission_set.unique_id)) == 1
    assert any("hook failed" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------------------------------------
# Logs


def test_no_phi_in_logs(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    submission = make_submission(env, level=MetadataLevel.XDS, documents=[env.ccda])
    request = request_for(env, submission)
    with caplog.at_level(logging.DEBUG):
        reply = send(env, request)
        bad = send(env, request_for(env, make_submission(env, sender=SENDER_B)))
    assert reply.registry_response().is_success
    assert bad.registry_response().is_failure
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "Testpatient" not in text
    assert "TEST-0001" not in text
    assert "ClinicalDocument" not in text
    assert "%PDF" not in text
    # ... but the one structured line per request is there, naming what an operator needs.
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request ")]
    assert any(f"message_id={request.message_id}" in line and "outcome=stored" in line for line in lines)
    assert any("outcome=sender-not-bound" in line for line in lines)


# ----------------------------------------------------------------------------------------------------------
# Proxy mode (plain HTTP behind a TLS-terminating proxy)


def _forwarded(cert: Path) -> str:
    """What nginx's ``$ssl_client_escaped_cert`` holds: the PEM, URL-escaped."""
    return urllib.parse.quote(cert.read_text(), safe="")


@pytest.fixture(scope="module")
def proxy_server(env: Env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[XdrServer, Inbox]]:
    inbox = Inbox(tmp_path_factory.mktemp("proxy-inbox"), env.lab.inbox.index)
    config = ReceiverConfig(
        registry=env.lab.registry,
        inbox=inbox,
        identity_source=PeerIdentitySource.PROXY,
        trusted_proxies=("127.0.0.1",),
    )
    server = XdrServer(XdrEdgeApp(config), ServerConfig(port=0, plain_http=True, threads=2)).start()
    try:
        yield server, inbox
    finally:
        server.stop()


def _post_plain(port: int, body: bytes, headers: dict[str, str]) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/xdr", body=body, headers=headers)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def _proxy_headers(env: Env, request: OutgoingRequest, verify: str = "SUCCESS") -> dict[str, str]:
    cert = env.lab.practices["practice-a"].credential
    assert cert is not None and cert.cert is not None
    return {
        **request.headers(),
        "X-SSL-Client-Cert": _forwarded(cert.cert),
        "X-SSL-Client-Verify": verify,
    }


def test_proxy_mode_accepts_forwarded_certificate_from_trusted_proxy(
    env: Env, proxy_server: tuple[XdrServer, Inbox]
) -> None:
    server, inbox = proxy_server
    submission = make_submission(env)
    request = request_for(env, submission)
    reply = _post_plain(server.port, b"".join(request.body), _proxy_headers(env, request))
    assert reply.status == 200
    assert reply.registry_response().is_success
    assert inbox.contains(submission.submission_set.unique_id)
    (directory,) = stored_dirs(inbox, submission.submission_set.unique_id)
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["practice"] == "practice-a"


def test_proxy_mode_rejects_when_proxy_did_not_verify(
    env: Env, proxy_server: tuple[XdrServer, Inbox]
) -> None:
    server, inbox = proxy_server
    submission = make_submission(env)
    request = request_for(env, submission)
    reply = _post_plain(
        server.port, b"".join(request.body), _proxy_headers(env, request, verify="FAILED:expired")
    )
    assert reply.status == 403
    assert not inbox.contains(submission.submission_set.unique_id)


def test_proxy_mode_rejects_without_forwarded_certificate(
    env: Env, proxy_server: tuple[XdrServer, Inbox]
) -> None:
    server, inbox = proxy_server
    submission = make_submission(env)
    request = request_for(env, submission)
    headers = {**request.headers(), "X-SSL-Client-Verify": "SUCCESS"}
    reply = _post_plain(server.port, b"".join(request.body), headers)
    assert reply.status == 403
    assert not inbox.contains(submission.submission_set.unique_id)


def test_proxy_mode_rejects_a_peer_that_is_not_the_configured_proxy(env: Env, tmp_path: Path) -> None:
    """A real server whose only trusted proxy is another address: the loopback peer is refused."""
    inbox = Inbox(tmp_path / "inbox", env.lab.inbox.index)
    config = ReceiverConfig(
        registry=env.lab.registry,
        inbox=inbox,
        identity_source=PeerIdentitySource.PROXY,
        trusted_proxies=("10.9.9.9",),
    )
    submission = make_submission(env)
    request = request_for(env, submission)
    with XdrServer(XdrEdgeApp(config), ServerConfig(port=0, plain_http=True, threads=1)) as server:
        reply = _post_plain(server.port, b"".join(request.body), _proxy_headers(env, request))
    assert reply.status == 403
    fault = reply.parsed().fault
    assert fault is not None and "proxy" in fault.reason
    assert not inbox.contains(submission.submission_set.unique_id)


def _call_app(app: XdrEdgeApp, environ: dict[str, Any]) -> tuple[str, bytes]:
    captured: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured.append(status)

    body = b"".join(app(environ, start_response))
    return captured[0], body


def _environ(env: Env, request: OutgoingRequest, remote: str) -> dict[str, Any]:
    data = b"".join(request.body)
    headers = _proxy_headers(env, request)
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/xdr",
        "REMOTE_ADDR": remote,
        "CONTENT_TYPE": request.content_type,
        "CONTENT_LENGTH": str(len(data)),
        "HTTP_X_SSL_CLIENT_CERT": headers["X-SSL-Client-Cert"],
        "HTTP_X_SSL_CLIENT_VERIFY": headers["X-SSL-Client-Verify"],
        "wsgi.input": io.BytesIO(data),
    }


def test_proxy_mode_trusts_only_the_configured_proxy_address(env: Env, tmp_path: Path) -> None:
    """The WSGI app called directly with crafted peer addresses: the same forwarded headers are accepted from
    the configured proxy network and refused from any other address."""
    inbox = Inbox(tmp_path / "inbox", env.lab.inbox.index)
    app = XdrEdgeApp(
        ReceiverConfig(
            registry=env.lab.registry,
            inbox=inbox,
            identity_source=PeerIdentitySource.PROXY,
            trusted_proxies=("127.0.0.1", "192.168.7.0/24"),
        )
    )
    outside = make_submission(env)
    status, body = _call_app(app, _environ(env, request_for(env, outside), "10.9.9.9"))
    assert status.startswith("403")
    assert b"configured proxy" in body
    assert not inbox.contains(outside.submission_set.unique_id)

    inside = make_submission(env)
    status, body = _call_app(app, _environ(env, request_for(env, inside), "192.168.7.20"))
    assert status.startswith("200")
    assert inbox.contains(inside.submission_set.unique_id)


def test_tls_mode_ignores_forwarded_certificate_headers(env: Env, tmp_path: Path) -> None:
    """In TLS mode a client cannot claim an identity with proxy headers: only the TLS layer's variables count."""
    app = XdrEdgeApp(
        ReceiverConfig(registry=env.lab.registry, inbox=Inbox(tmp_path / "inbox", env.lab.inbox.index))
    )
    submission = make_submission(env)
    status, _ = _call_app(app, _environ(env, request_for(env, submission), "127.0.0.1"))
    assert status.startswith("403")


@pytest.mark.slow
def test_a_body_that_stops_arriving_gets_408_in_our_words(env: Env) -> None:
    """A socket timeout's own text ("timed out") says neither what stopped nor where: the fault says it."""
    submission = make_submission(env)
    request = request_for(env, submission)
    body = b"".join(request.body)
    head = "".join(f"{k}: {v}\r\n" for k, v in dict(request.headers()).items())
    patient = dataclasses.replace(
        env.lab.server.config,
        port=0,
        socket_timeout=1.0,
        upload_grace_seconds=60,
        min_upload_bytes_per_second=1,
    )
    with XdrServer(env.lab.server.app, patient) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        with env.context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(f"POST /xdr HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode() + body[:1000])
            received = b""
            while not received.rstrip().endswith(b"Envelope>"):
                chunk = tls.recv(65536)  # the 30 s socket timeout bounds the wait
                if not chunk:
                    break
                received += chunk
    assert received.startswith(b"HTTP/1.1 408 "), received[:80]
    assert b"the request body stopped arriving before it was complete" in received, received
    assert b"timed out" not in received
    assert_nothing_stored(env, submission)
