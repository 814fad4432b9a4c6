"""The cheroot server around the app (xdr_edge.receiver.server): TLS handshakes done in workers so a silent
peer cannot stall the accept thread, bounded request headers, our streaming chunked-body decoder, and a clear
error for a key that does not fit the certificate.

Real sockets and real TLS against the lab (``xdr_edge.devtools.lab``); the chunked decoder is also fed scripted bytes.
Servers with other settings are started on the lab's app, as tests/test_receiver.py does.
"""

from __future__ import annotations

import dataclasses
import http.client
import io
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from xdr_edge.certs import load_identity
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.practice import ClientCredential
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import CertificateError, LimitExceeded, RemoteProtocolError
from xdr_edge.protocol.model import MetadataLevel, Submission
from xdr_edge.protocol.wire import OutgoingRequest, ParsedResponse, build_request, parse_response
from xdr_edge.receiver.server import ServerConfig, XdrServer, _ChunkedBody
from xdr_edge.tls import client_ssl_context

SENDER = "dr.smith@direct.practice-a.org"
RECIPIENT = "inbox@direct.hisp.example"
MB = 1024 * 1024
SERVER_LOG = "xdr_edge.receiver.server"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    directory = tmp_path_factory.mktemp("lab")
    (directory / "ccd.xml").write_bytes(sample_ccda())
    started = start_lab(directory, threads=4)
    try:
        yield started
    finally:
        started.stop()


def _server(lab: Lab, **changes: object) -> XdrServer:
    """Another server on the lab's app and TLS material, with ``changes`` to its configuration."""
    config = dataclasses.replace(lab.server.config, port=0, **changes)  # type: ignore[arg-type]
    return XdrServer(lab.server.app, config)


def _context(lab: Lab, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    credential = lab.practices["practice-a"].credential
    assert credential is not None
    if cert is not None and key is not None:
        credential = ClientCredential(cert=cert, key=key)
    return client_ssl_context(load_identity(credential), lab.ca_bundle)


def _submission(lab: Lab, document: Path | None = None) -> Submission:
    return compose(
        [document or lab.directory / "ccd.xml"],
        sender=SENDER,
        recipients=[RECIPIENT],
        level=MetadataLevel.MINIMAL,
    )


def _request(lab: Lab, submission: Submission) -> OutgoingRequest:
    return build_request(submission, endpoint=lab.endpoint)


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def parsed(self) -> ParsedResponse:
        return parse_response(self.headers.get("content-type", ""), self.body)


def _exchange(
    connection: http.client.HTTPSConnection, body: bytes | Iterable[bytes], headers: dict[str, str]
) -> Reply:
    connection.request("POST", "/xdr", body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)


def _post(
    lab: Lab, port: int, body: bytes | Iterable[bytes], headers: dict[str, str], *, timeout: float = 30
) -> Reply:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=_context(lab), timeout=timeout)
    try:
        return _exchange(connection, body, headers)
    finally:
        connection.close()


def _chunked(pieces: Iterable[bytes], trailer: bytes = b"") -> Iterator[bytes]:
    """Frame each piece as one chunk (a piece may be a list of blocks sent as one big chunk)."""
    for piece in pieces:
        yield b"%x\r\n" % len(piece) + piece + b"\r\n"
    yield b"0\r\n" + trailer + b"\r\n"


def _chunked_headers(request: OutgoingRequest) -> dict[str, str]:
    return {"Content-Type": request.body.content_type, "Transfer-Encoding": "chunked"}


def _stored_documents(lab: Lab, unique_id: str) -> list[bytes]:
    safe = unique_id.replace("/", "_")
    found = [
        p
        for p in lab.inbox.root.glob("*/*")
        if p.is_dir() and p.name.startswith(safe) and p.parent.name[0] != "."
    ]
    assert len(found) == 1, f"expected one stored submission for {unique_id}, found {found}"
    return [p.read_bytes() for p in sorted((found[0] / "documents").iterdir())]


def _handshake_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == SERVER_LOG and "TLS handshake" in r.getMessage()]


def _wait_for(condition: Callable[[], object], seconds: float = 10.0) -> None:
    """Log lines come from a server thread, possibly just after the client saw the connection close."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        time.sleep(0.02)


# ----------------------------------------------------------------------------------------------------------
# TLS handshakes happen in workers, never in the accept thread


def test_silent_connections_do_not_hold_up_a_mutual_tls_request(lab: Lab) -> None:
    """More silent TCP connections than worker threads: a real client is still answered. Before the fix the
    accept thread shook hands with the first silent peer for the whole socket timeout."""
    threads = 2
    with _server(lab, threads=threads, handshake_timeout=60.0, socket_timeout=60.0) as server:
        silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(threads + 2)]
        try:
            time.sleep(0.2)  # let the server accept them all
            submission = _submission(lab)
            request = _request(lab, submission)
            # the bound is the client's timeout, far below the handshake timeout a blocked server would wait
            reply = _post(lab, server.port, b"".join(request.body), request.headers(), timeout=10)
        finally:
            for sock in silent:
                sock.close()
    assert reply.status == 200
    response = reply.parsed().registry_response
    assert response is not None and response.is_success
    assert lab.inbox.contains(submission.submission_set.unique_id)


@pytest.mark.slow
def test_a_silent_peer_is_dropped_after_the_handshake_timeout(lab: Lab) -> None:
    with _server(lab, handshake_timeout=0.5, socket_timeout=60.0) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as silent:
            try:
                assert silent.recv(100) == b""  # the server closed it; a TimeoutError here fails the test
            except ConnectionResetError:
                pass  # closed too


@pytest.mark.slow
def test_a_peer_stalling_mid_handshake_is_dropped_with_one_log_line(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    with _server(lab, handshake_timeout=0.5, socket_timeout=60.0) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as stalled:
            stalled.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
            try:
                assert stalled.recv(100) == b""
            except ConnectionResetError:
                pass
        _wait_for(lambda: _handshake_lines(caplog))
    lines = _handshake_lines(caplog)
    assert len(lines) == 1
    assert "no handshake within the handshake timeout" in lines[0].getMessage()
    assert lines[0].exc_info is None


def _refused(lab: Lab, port: int, context: ssl.SSLContext) -> bool:
    """True when the server refuses the TLS session (with TLS 1.3 the verdict arrives with the first read)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET /xdr HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                return tls.recv(100) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def test_failed_handshakes_are_one_quiet_line_each_and_the_server_keeps_serving(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    pki = lab.pki
    no_certificate = ssl.create_default_context(cafile=str(lab.ca_bundle))
    with _server(lab, threads=2) as server:
        assert _refused(lab, server.port, _context(lab, pki.untrusted_client_cert, pki.untrusted_client_key))
        assert _refused(lab, server.port, _context(lab, pki.expired_client_cert, pki.expired_client_key))
        assert _refused(lab, server.port, no_certificate)
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as plain:
            plain.sendall(b"GET /xdr HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = plain.recv(4096)
        with socket.create_connection(("127.0.0.1", server.port)):
            pass  # connects and leaves at once
        _wait_for(lambda: len(_handshake_lines(caplog)) >= 5)
        # every worker survived: more requests than threads, all answered
        submission = _submission(lab)
        request = _request(lab, submission)
        replies = [
            _post(lab, server.port, b"".join(r.body), r.headers())
            for r in (request, _request(lab, _submission(lab)), _request(lab, _submission(lab)))
        ]
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"only speaks HTTPS" in answer
    assert [r.status for r in replies] == [200, 200, 200]
    lines = _handshake_lines(caplog)
    assert len(lines) == 5
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in lines)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# ----------------------------------------------------------------------------------------------------------
# Request headers are bounded


def test_an_oversized_header_is_refused_and_the_server_keeps_serving(lab: Lab) -> None:
    status_line = b""
    with socket.create_connection(("127.0.0.1", lab.server.port), timeout=15) as raw:
        with _context(lab).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            try:
                tls.sendall(b"POST /xdr HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ")
                for _ in range(16):  # 1 MB in one header line
                    tls.sendall(b"a" * (64 * 1024))
                tls.sendall(b"\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\nx")
            except OSError:
                pass  # the server stopped reading after its limit: expected
            status_line = tls.recv(4096).partition(b"\r\n")[0]
    assert status_line.split(b" ")[1] in (b"413", b"431"), status_line
    request = _request(lab, _submission(lab))
    assert _post(lab, lab.server.port, b"".join(request.body), request.headers()).status == 200


# ----------------------------------------------------------------------------------------------------------
# Chunked request bodies, end to end


def _zeros(total: int) -> Iterator[bytes]:
    block = bytes(MB)
    for start in range(0, total, MB):
        yield block[: min(MB, total - start)]


def test_a_chunked_body_over_the_limit_gets_413_and_nothing_is_stored(lab: Lab) -> None:
    """One 64 MB chunk against a 3 MB limit: refused on its chunk-size line, before any of it is read."""
    submission = _submission(lab)
    request = _request(lab, submission)
    head = b"".join(request.body)
    size = 64 * MB

    def body() -> Iterator[bytes]:
        yield b"%x\r\n" % size + head
        yield from _zeros(size - len(head))
        yield b"\r\n0\r\n\r\n"

    with _server(lab, max_request_bytes=3 * MB, linger_seconds=30.0) as server:
        reply = _post(lab, server.port, body(), _chunked_headers(request))
    assert reply.status == 413
    fault = reply.parsed().fault
    assert fault is not None and fault.code == "Sender" and "3145728" in fault.reason
    assert not lab.inbox.contains(submission.submission_set.unique_id)
    assert list(lab.inbox.spool_dir.iterdir()) == []


def test_a_chunked_body_of_small_chunks_and_one_big_one_is_stored_byte_exact(lab: Lab) -> None:
    document = lab.directory / "scan.bin"
    content = os.urandom(2 * MB + 12345)
    document.write_bytes(content)
    submission = _submission(lab, document)
    request = _request(lab, submission)
    data = b"".join(request.body)
    small = [data[i : i + 30] for i in range(0, 3000, 30)]  # 100 chunks of 30 bytes
    pieces = [*small, data[3000:]]  # and the remaining ~2 MB as one chunk
    trailer = b"X-Checksum: none\r\n"
    connection = http.client.HTTPSConnection("127.0.0.1", lab.server.port, context=_context(lab), timeout=30)
    try:
        reply = _exchange(connection, _chunked(pieces, trailer), _chunked_headers(request))
        # the same connection serves the next request: the decoder stopped right after the trailer section
        connection.request("GET", "/xdr")
        follow_up = connection.getresponse()
        follow_up.read()
    finally:
        connection.close()
    assert reply.status == 200, reply.body[:300]
    response = reply.parsed().registry_response
    assert response is not None and response.is_success
    assert follow_up.status == 405
    assert content in _stored_documents(lab, submission.submission_set.unique_id)


def test_a_chunked_body_exactly_at_the_limit_is_accepted(lab: Lab) -> None:
    submission = _submission(lab)
    request = _request(lab, submission)
    data = b"".join(request.body)
    with _server(lab, max_request_bytes=len(data)) as server:
        reply = _post(lab, server.port, _chunked([data]), _chunked_headers(request))
        over = _post(
            lab, server.port, _chunked([data[:100], data[100:] + b"\r\n"]), _chunked_headers(request)
        )
    assert reply.status == 200
    response = reply.parsed().registry_response
    assert response is not None and response.is_success
    assert over.status == 413


@pytest.mark.parametrize(
    "framing",
    [
        b"zz\r\nabc\r\n0\r\n\r\n",
        b"-5\r\nabc\r\n0\r\n\r\n",
        b"3\r\nabcdef\r\n0\r\n\r\n",
        b"3\nabc\r\n0\r\n\r\n",
    ],
    ids=["not-hex", "negative", "data-longer-than-size", "bare-LF"],
)
def test_malformed_chunked_framing_gets_a_400_fault(
    lab: Lab, caplog: pytest.LogCaptureFixture, framing: bytes
) -> None:
    request = _request(lab, _submission(lab))
    reply = _post(lab, lab.server.port, framing, _chunked_headers(request))
    assert reply.status == 400
    fault = reply.parsed().fault
    assert fault is not None and fault.code == "Sender" and "chunked" in fault.reason
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ----------------------------------------------------------------------------------------------------------
# The chunked decoder on scripted bytes


class _Recording(io.RawIOBase):
    """A raw stream that remembers the largest read asked of it."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.largest = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.largest = max(self.largest, len(buffer))
        return self._data.readinto(buffer)


def _decoder(
    data: bytes, limit: int = 100 * MB
) -> tuple[_ChunkedBody, io.BufferedReader[_Recording], _Recording]:
    raw = _Recording(data)
    rfile = io.BufferedReader(raw, 8192)
    return _ChunkedBody(rfile, limit, 64 * 1024), rfile, raw


def test_decoder_reads_a_huge_chunk_in_bounded_pieces() -> None:
    payload = os.urandom(5 * MB)
    body, _, raw = _decoder(b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n")
    out = io.BytesIO()
    while piece := body.read(256 * 1024):
        out.write(piece)
    assert out.getvalue() == payload
    assert raw.largest <= 64 * 1024
    assert body.finished and body.bytes_read == len(payload)


def test_decoder_accepts_extensions_skips_trailers_and_stops_at_the_next_request() -> None:
    data = b"3;name=value\r\nabc\r\n4 \r\ndefg\r\n0\r\nX-One: 1\r\nX-Two: 2\r\n\r\nGET / HTTP/1.1\r\n"
    body, rfile, _ = _decoder(data)
    assert body.readline() == b"abcdefg"
    assert body.read() == b""
    assert body.finished
    assert rfile.read() == b"GET / HTTP/1.1\r\n"


def test_decoder_refuses_a_chunk_past_the_limit_before_reading_it() -> None:
    body, rfile, _ = _decoder(
        b"10\r\n" + b"x" * 16 + b"\r\n" + b"100\r\n" + b"y" * 256 + b"\r\n0\r\n\r\n", 100
    )
    assert body.read(16) == b"x" * 16
    with pytest.raises(LimitExceeded) as raised:
        body.read(16)
    assert raised.value.fault_code == "Sender"
    assert rfile.read(1) == b"y"  # the big chunk's data was not consumed
    assert body.failed and not body.finished
    with pytest.raises(LimitExceeded):
        body.read(1)  # stays refused


def test_decoder_reports_a_truncated_body_as_a_connection_error() -> None:
    body, _, _ = _decoder(b"10\r\nonly-part")
    with pytest.raises(ConnectionError):
        body.read()


def test_decoder_refuses_an_endless_chunk_size_line() -> None:
    body, _, _ = _decoder(b"1" + b"0" * 10000 + b"\r\n")
    with pytest.raises(RemoteProtocolError) as raised:
        body.read(10)
    assert raised.value.code == "bad-chunked-encoding"


# ----------------------------------------------------------------------------------------------------------
# Configuration


def test_a_key_that_does_not_fit_the_certificate_is_named_with_both_files(lab: Lab) -> None:
    other_key = lab.pki.practices["practice-a"].key
    with pytest.raises(CertificateError) as raised:
        _server(lab, key=other_key)
    message = str(raised.value)
    assert str(other_key) in message
    assert str(lab.pki.server_cert) in message


def test_the_default_header_limit_is_set() -> None:
    assert ServerConfig(plain_http=True).max_header_bytes == 64 * 1024
    assert ServerConfig(plain_http=True).handshake_timeout == 10.0


# ----------------------------------------------------------------------------------------------------------
# Slow headers


def _trickle_headers(send: Callable[[bytes], None], recv: Callable[[], bytes]) -> tuple[bytes, float]:
    """Send request headers a byte every 0.2 s until the server answers; the answer and how long it took."""
    head = b"POST /xdr HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Padding: 0123456789\r\n" * 100
    started = time.monotonic()
    for byte in head:
        send(bytes([byte]))
        try:
            answer = recv()
        except TimeoutError:
            continue
        except (ssl.SSLError, ConnectionError):
            break
        return answer, time.monotonic() - started
    return b"", time.monotonic() - started


@pytest.mark.slow
def test_headers_trickled_past_the_header_deadline_get_408_and_a_log_line(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    """Every byte arrives well within the socket timeout (a minute here), so only a deadline for the header
    section as a whole stops this client; it gets a 408, and the connection is closed."""
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    with _server(lab, header_timeout=1.0, socket_timeout=60.0) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        with _context(lab).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.settimeout(0.2)
            answer, waited = _trickle_headers(tls.sendall, lambda: tls.recv(4096))
        _wait_for(lambda: any("408" in r.getMessage() for r in caplog.records if r.name == SERVER_LOG))
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:80]
    assert b"Connection: close" in answer and b"did not arrive within 1 s" in answer
    assert waited < 10, f"the trickling client held a worker for {waited:.1f} s"
    (line,) = [r.getMessage() for r in caplog.records if r.name == SERVER_LOG and "408" in r.getMessage()]
    assert "the request line and headers did not arrive within 1 s" in line


@pytest.mark.slow
def test_the_header_deadline_also_holds_behind_a_proxy(lab: Lab) -> None:
    """Plain HTTP (behind nginx) reads headers through the same deadline."""
    with _server(lab, plain_http=True, header_timeout=1.0, socket_timeout=60.0) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as plain:
            plain.settimeout(0.2)
            answer, waited = _trickle_headers(plain.sendall, lambda: plain.recv(4096))
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:80]
    assert waited < 10


def test_headers_that_arrive_in_time_are_served_on_a_kept_alive_connection(lab: Lab) -> None:
    """The deadline is per request: a kept-alive connection that waits between requests is not cut off."""
    with _server(lab, header_timeout=1.0) as server:
        connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=_context(lab), timeout=30)
        try:
            ports = []
            for _ in range(2):
                request = _request(lab, _submission(lab))
                reply = _exchange(connection, b"".join(request.body), request.headers())
                assert reply.status == 200 and "connection" not in reply.headers
                assert connection.sock is not None
                ports.append(connection.sock.getsockname()[1])
                time.sleep(1.5)  # longer than the header deadline, between requests
        finally:
            connection.close()
    assert ports[0] == ports[1]  # the same connection served both


def test_the_default_header_deadline_is_a_few_seconds() -> None:
    assert ServerConfig(plain_http=True).header_timeout == 5.0


# ----------------------------------------------------------------------------------------------------------
# Slow bodies and refusals with a body


@pytest.mark.slow
def test_a_trickled_chunk_size_line_is_cut_off_by_the_upload_deadline(lab: Lab) -> None:
    """A buffered readline would wait the socket timeout per byte (a day for a 4 KiB line); the framing lines
    of a chunked body are read under the same rate deadline as its data."""
    with _server(lab, upload_grace_seconds=0.5, min_upload_bytes_per_second=1000) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        with _context(lab).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(
                b"POST /xdr HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/soap+xml\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n1"
            )
            tls.settimeout(0.2)
            started, received = time.monotonic(), b""
            while time.monotonic() - started < 60 and not received:
                try:
                    tls.sendall(b"0")  # one more digit of an endless chunk-size line every 0.2 s
                    received = tls.recv(4096)
                except TimeoutError:
                    continue
                except (ssl.SSLError, ConnectionError):
                    break
            waited = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 408 "), received[:80]
    assert waited < 30, f"the trickling client held the connection for {waited:.1f} s"


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_a_refused_request_with_a_body_closes_the_connection_instead_of_reading_the_body(
    lab: Lab, method: str
) -> None:
    """Keeping the connection would make the server read a body nobody wants (cheroot even holds it in
    memory): the answer says Connection: close, and the lingering close discards what still arrives."""
    connection = http.client.HTTPSConnection("127.0.0.1", lab.server.port, context=_context(lab), timeout=30)
    try:
        connection.request(method, "/xdr", body=b"x" * 1_000_000, headers={"Content-Type": "text/plain"})
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 405
    assert response.getheader("Connection", "").lower() == "close"


def _answer_without_reading(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
    """A WSGI app that answers at once, reads none of the body and asks for no close."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


@pytest.mark.parametrize(("size", "kept"), [(1_000, True), (8 * MB, False)], ids=["small", "large"])
def test_an_unread_body_is_discarded_piece_by_piece_not_read_into_memory(size: int, kept: bool) -> None:
    """The HTTP server has no size limit of its own (the app checks the declared length and answers in its own
    form). To keep the connection, cheroot would read an unread rest in one read, into memory: past one piece,
    the connection is closed instead and the lingering close discards what arrives."""
    with XdrServer(_answer_without_reading, ServerConfig(port=0, plain_http=True, threads=2)) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            connection.request("POST", "/xdr", body=b"x" * size, headers={"Content-Type": "text/plain"})
            response = connection.getresponse()
            assert response.read() == b"ok"
            closing = response.getheader("Connection", "").lower() == "close"
            if kept:
                connection.request("POST", "/xdr", body=b"y", headers={"Content-Type": "text/plain"})
                assert connection.getresponse().read() == b"ok"  # the same connection serves the next one
        finally:
            connection.close()
    assert closing is not kept


def test_a_proxys_pool_of_kept_alive_connections_stays_open(lab: Lab) -> None:
    """nginx keeps a pool of idle connections to each receiver (keepalive, per worker process). Every one of
    them stays open after its answer: cheroot's own limit (10 idle connections) closed those past it, so
    nginx connected again for most requests."""
    with _server(lab, plain_http=True) as server:
        connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(40)]
        try:
            for connection in connections:
                connection.request("GET", "/healthz")
                reply = connection.getresponse()
                reply.read()
                assert reply.status == 200 and reply.getheader("Connection") != "close"
            for connection in connections:  # each one serves a second request
                connection.request("GET", "/healthz")
                assert connection.getresponse().status == 200
        finally:
            for connection in connections:
                connection.close()


def test_a_chunked_body_answered_unread_closes_the_connection_instead_of_holding_a_worker() -> None:
    """A chunked body has no length to judge: keeping the connection would mean reading the rest first, at the
    client's pace (here a chunk every 0.2 s, above the upload pacing's minimum) with a worker held meanwhile,
    which let one client hold every worker with requests the app answered at once (``GET /healthz``). The answer
    says ``Connection: close`` and the lingering close gives up within its bound."""
    config = ServerConfig(port=0, plain_http=True, threads=2)
    with XdrServer(_answer_without_reading, config) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
            raw.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"x" * 1024
            )
            head = b""
            while b"\r\n\r\n" not in head and (piece := raw.recv(4096)):  # an early close ends it too
                head += piece
            assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 30:
                try:
                    raw.sendall(b"\r\n400\r\n" + b"x" * 1024)
                    raw.settimeout(0.2)
                    if raw.recv(4096) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except OSError:  # reset by the server: closed as well
                    closed = True
                    break
            held = time.monotonic() - started
    assert closed and held < 15, f"the connection was still open after {held:.1f} s"


@pytest.mark.parametrize("declared", [b"+5", b"1_0", b"-1", b"5 5", b"0x5"])
def test_a_content_length_that_is_not_digits_is_refused_before_any_body_is_read(declared: bytes) -> None:
    """RFC 9110 §8.6: digits only. Python's int() reads "+5" and "1_0"; a proxy in front that reads them
    otherwise would frame the stream differently from us (request smuggling), so neither guesses: 400, closed."""
    answer = _exchange_plain(
        b"POST /xdr HTTP/1.1\r\nHost: x\r\nContent-Length: " + declared + b"\r\n\r\nhello"
    )
    assert answer.startswith(b"HTTP/1.1 400 Bad Request"), answer[:200]
    body = answer.split(b"\r\n\r\n", 1)[1]  # ours, or cheroot's own for what int() refuses too ("5 5", "0x5")
    assert body in (
        b"Content-Length must be a number of digits (RFC 9110 8.6)",
        b"Malformed Content-Length Header.",
    )


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (b"Content-Length: 5\r\nContent-Length: 5\r\n", b"Content-Length"),
        (b"Content-Length: 5\r\ncontent-length: 50\r\n", b"Content-Length"),
        (b"Content-Length: 5\r\nHost: y\r\n", b"Host"),
    ],
)
def test_a_repeated_content_length_or_host_is_refused(fields: bytes, named: bytes) -> None:
    """cheroot keeps the last value of a repeated field; with two Content-Lengths a proxy that keeps the first
    frames the stream differently from us (request smuggling). Neither guesses: 400 naming the field, closed."""
    answer = _exchange_plain(b"POST /xdr HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\nhello")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request"), answer[:200]
    assert (
        answer.split(b"\r\n\r\n", 1)[1]
        == b"the request has more than one " + named + b" header field (RFC 9112)"
    )


def _exchange_plain(request: bytes) -> bytes:
    """Send raw bytes to a plain-HTTP server whose app answers unread; everything it sent until it closed."""
    with XdrServer(_answer_without_reading, ServerConfig(port=0, plain_http=True, threads=2)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
            raw.sendall(request)
            answer = b""
            while chunk := raw.recv(4096):
                answer += chunk
    return answer


def test_a_request_over_the_limit_whose_body_stalls_is_refused_promptly(lab: Lab) -> None:
    """The 413 waits for the first bytes of the body only so long (they may hold the MessageID its fault relates
    to): a client that sends a little and then nothing gets its answer in seconds, not after the upload pacing's
    grace period."""
    request = _request(lab, _submission(lab))
    head = dict(request.headers())
    head["Content-Length"] = str(10**12)
    lines = b"".join(f"{k}: {v}\r\n".encode() for k, v in head.items())
    with socket.create_connection(("127.0.0.1", lab.server.port), timeout=30) as raw:
        with _context(lab).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(
                b"POST /xdr HTTP/1.1\r\nHost: 127.0.0.1\r\n" + lines + b"\r\n" + b"".join(request.body)[:2048]
            )
            started = time.monotonic()
            status_line = tls.recv(4096).partition(b"\r\n")[0]
            waited = time.monotonic() - started
    assert status_line.startswith(b"HTTP/1.1 413"), status_line
    assert waited < 10, f"the 413 took {waited:.1f} s"
