"""Per-practice TLS over real loopback handshakes, with certificates made by xdr_edge.devtools.pki (Direct Edge Protocols IG §1.1, ETT tests 6-9; our practice-binding rule)."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from urllib3 import exceptions as http_errors

from xdr_edge.certs import describe_certificate, load_certificates, load_identity, parse_certificates
from xdr_edge.devtools.pki import DemoPki
from xdr_edge.minting import CertificateAuthority, IssuedCert
from xdr_edge.practice import ClientCredential, Practice
from xdr_edge.protocol.errors import CertificateError, ConfigurationError
from xdr_edge.protocol.model import Document
from xdr_edge.protocol.mtom import MtomBody, MtomPart
from xdr_edge.sender.sessions import PracticeSession, SessionPool
from xdr_edge.tls import client_ssl_context, server_ssl_context

# ----------------------------------------------------------------------------------------------------------
# A tiny HTTPS server that requires a client certificate and records who connected.


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TlsServer

    def do_POST(self) -> None:
        connection = self.connection
        assert isinstance(connection, ssl.SSLSocket)
        der = connection.getpeercert(binary_form=True)
        fingerprint = hashlib.sha256(der).hexdigest() if der else ""
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.seen.append((fingerprint, body))
            self.server.peers.append(self.client_address[1])
            self.server.framing.append(
                (self.headers.get("Content-Length"), self.headers.get("Transfer-Encoding"))
            )
            self.server.authorization.append(self.headers.get("Authorization"))
        reply = fingerprint.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TlsServer(ThreadingHTTPServer):
    """Handshakes in the per-connection thread, so that a failed handshake is counted, not fatal."""

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.context = context
        self.lock = threading.Lock()
        self.seen: list[tuple[str, bytes]] = []
        self.peers: list[int] = []  # the client port of each request: one per connection
        self.framing: list[tuple[str | None, str | None]] = []  # (Content-Length, Transfer-Encoding)
        self.authorization: list[str | None] = []
        self.handshake_failures: list[str] = []
        self.handshake_failed = threading.Event()

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            with self.lock:
                self.handshake_failures.append(type(exc).__name__)
            self.handshake_failed.set()
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]  # typeshed: Self
        except (ssl.SSLError, OSError):
            pass
        finally:
            tls.close()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}/xdr"


def _serve(context: ssl.SSLContext) -> Iterator[_TlsServer]:
    server = _TlsServer(context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def server(demo_pki: DemoPki) -> Iterator[_TlsServer]:
    yield from _serve(server_ssl_context(demo_pki.server_cert, demo_pki.server_key, demo_pki.ca_cert))


def _practice(demo_pki: DemoPki, practice_id: str, *, p12: bool = False) -> Practice:
    files = demo_pki.practices[practice_id]
    credential = (
        ClientCredential(p12=files.p12, p12_password_file=files.p12_password_file)
        if p12
        else ClientCredential(cert=files.cert, key=files.key)
    )
    return Practice(id=practice_id, name=practice_id, credential=credential)


def _pem_credential(tmp_path: Path, issued: IssuedCert, name: str) -> ClientCredential:
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    issued.write_pem(cert, key)
    return ClientCredential(cert=cert, key=key)


# ----------------------------------------------------------------------------------------------------------
# Sending side


def test_two_practices_concurrently_each_with_its_own_certificate(
    demo_pki: DemoPki, server: _TlsServer
) -> None:
    practices = [_practice(demo_pki, "practice-a"), _practice(demo_pki, "practice-b")]
    expected = {p.id: demo_pki.practices[p.id].fingerprint_sha256 for p in practices}

    def send(index: int) -> tuple[str, str]:
        practice = practices[index % 2]
        response = pool.session_for(practice).post(
            server.url, data=f"{practice.id}:{index}".encode(), headers={}, timeout=10
        )
        assert response.status_code == 200
        return practice.id, response.text

    with SessionPool(demo_pki.ca_cert) as pool, ThreadPoolExecutor(max_workers=4) as executor:
        results = list(executor.map(send, range(16)))
    assert all(fingerprint == expected[pid] for pid, fingerprint in results)
    assert len(server.seen) == 16
    for fingerprint, body in server.seen:
        practice_id = body.decode().split(":")[0]
        assert fingerprint == expected[practice_id]
    assert server.handshake_failures == []


def test_session_pool_reuses_session_until_certificate_replaced(
    demo_pki: DemoPki, server: _TlsServer
) -> None:
    practice = _practice(demo_pki, "practice-a")
    files = demo_pki.practices["practice-a"]
    with SessionPool(demo_pki.ca_cert) as pool:
        first = pool.session_for(practice)
        assert pool.session_for(practice) is first
        assert first.post(server.url, b"one", {}, 10).text == files.fingerprint_sha256

        renewed = demo_pki.ca.issue_client("practice-a renewed", practice_id="practice-a")
        renewed.write_pem(files.cert, files.key)

        second = pool.session_for(practice)
        assert second is not first
        assert second.key == ("practice-a", renewed.fingerprint_sha256)
        assert second.post(server.url, b"two", {}, 10).text == renewed.fingerprint_sha256
    assert [fp for fp, _ in server.seen] == [files.fingerprint_sha256, renewed.fingerprint_sha256]


def test_connections_never_exceed_the_pool_and_are_kept(demo_pki: DemoPki, server: _TlsServer) -> None:
    # Six threads, two connections: the others wait for a connection instead of opening (and closing) one of
    # their own per request, so the server sees two connections whatever the number of requests.
    practice = _practice(demo_pki, "practice-a")

    def send(index: int) -> int:
        with pool.session_for(practice).post(server.url, f"{index}".encode(), {}, 10) as response:
            assert response.content == demo_pki.practices["practice-a"].fingerprint_sha256.encode()
            return response.status_code

    with (
        SessionPool(demo_pki.ca_cert, connections_per_practice=2) as pool,
        ThreadPoolExecutor(max_workers=6) as executor,
    ):
        statuses = list(executor.map(send, range(60)))
    assert statuses == [200] * 60
    assert len(server.seen) == 60
    assert 1 <= len(set(server.peers)) <= 2


def test_an_answer_closed_unread_frees_its_connection(demo_pki: DemoPki, server: _TlsServer) -> None:
    # With one connection per practice, an answer closed before its body was read must give the connection's
    # place back (a new connection is opened for the next request), or the next request would wait forever.
    identity = load_identity(
        ClientCredential(cert=demo_pki.practices["practice-a"].cert, key=demo_pki.practices["practice-a"].key)
    )
    with PracticeSession("practice-a", identity, demo_pki.ca_cert, connections=1) as session:
        for index in range(3):
            with session.post(server.url, f"unread {index}".encode(), {}, 10) as response:
                assert response.status_code == 200
        with session.post(server.url, b"read", {}, 10) as response:
            assert response.content == demo_pki.practices["practice-a"].fingerprint_sha256.encode()
        with session.post(server.url, b"again", {}, 10) as response:
            assert response.status_code == 200
    assert len(server.seen) == 5
    # each unread answer closed its connection; the answer read to the end left its connection for the next
    assert len(set(server.peers)) == 4 and server.peers[-1] == server.peers[-2]


def test_a_streamed_body_is_sent_with_content_length_not_chunked(
    demo_pki: DemoPki, server: _TlsServer, tmp_path: Path
) -> None:
    # Some XDR receivers refuse chunked requests: an MTOM body (an iterable with a length) goes out with the
    # Content-Length it declares, streamed, never as Transfer-Encoding: chunked.
    document = tmp_path / "doc.bin"
    document.write_bytes(bytes(range(256)) * 4096)
    body = MtomBody(b"<root/>", [MtomPart("p@x", "application/octet-stream", Document.from_path(document))])
    identity = load_identity(
        ClientCredential(cert=demo_pki.practices["practice-a"].cert, key=demo_pki.practices["practice-a"].key)
    )
    headers = {"Content-Type": body.content_type, "Content-Length": str(len(body))}
    with PracticeSession("practice-a", identity, demo_pki.ca_cert) as session:
        with session.post(server.url, body, headers, 10) as response:
            assert response.status_code == 200
    assert server.framing == [(str(len(body)), None)]
    assert server.seen[0][1] == b"".join(body)


def test_credentials_in_the_endpoint_url_go_as_basic_authentication(
    demo_pki: DemoPki, server: _TlsServer
) -> None:
    identity = load_identity(
        ClientCredential(cert=demo_pki.practices["practice-a"].cert, key=demo_pki.practices["practice-a"].key)
    )
    with_credentials = server.url.replace("https://", "https://edge%40a:p%3Ass@")
    with PracticeSession("practice-a", identity, demo_pki.ca_cert) as session:
        for url in (with_credentials, server.url):
            with session.post(url, b"x", {}, 10) as response:
                assert response.status_code == 200
    assert server.authorization == ["Basic " + base64.b64encode(b"edge@a:p:ss").decode(), None]


def test_untrusted_server_certificate_fails_handshake(demo_pki: DemoPki, tmp_path: Path) -> None:
    impostor_ca = CertificateAuthority.create("impostor CA")
    impostor = impostor_ca.issue_server(["localhost", "127.0.0.1"])
    cert, key = tmp_path / "impostor.pem", tmp_path / "impostor.key"
    impostor.write_pem(cert, key)
    context = server_ssl_context(cert, key, demo_pki.ca_cert)
    for impostor_server in _serve(context):
        with SessionPool(demo_pki.ca_cert) as pool:
            session = pool.session_for(_practice(demo_pki, "practice-a"))
            with pytest.raises(http_errors.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
                session.post(impostor_server.url, b"secret", {}, 10)
        assert impostor_server.seen == []


def test_only_the_ca_bundle_is_trusted_whatever_the_environment_says(
    demo_pki: DemoPki, server: _TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither the environment (the CA bundle and proxy variables HTTP libraries read) nor urllib3's own
    # defaults may widen trust: after requests, the practice's context holds exactly the CA bundle.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(demo_pki.untrusted_ca_cert))
    monkeypatch.setenv("SSL_CERT_FILE", str(demo_pki.untrusted_ca_cert))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    identity = load_identity(
        ClientCredential(cert=demo_pki.practices["practice-a"].cert, key=demo_pki.practices["practice-a"].key)
    )
    with PracticeSession("practice-a", identity, demo_pki.ca_cert) as session:
        with session.post(server.url, b"x", {}, 10) as response:
            assert response.status_code == 200
        with session.post(server.url, b"y", {}, 10) as response:
            assert response.status_code == 200
    ca = x509.load_pem_x509_certificate(demo_pki.ca_cert.read_bytes())
    trusted = session.ssl_context.get_ca_certs(binary_form=True)
    assert trusted == [ca.public_bytes(serialization.Encoding.DER)]
    assert session.ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_plain_http_is_refused(demo_pki: DemoPki) -> None:
    identity = load_identity(
        ClientCredential(cert=demo_pki.practices["practice-a"].cert, key=demo_pki.practices["practice-a"].key)
    )
    with PracticeSession("practice-a", identity, demo_pki.ca_cert) as session:
        with pytest.raises(ConfigurationError, match="https"):
            session.post("http://127.0.0.1:9/xdr", b"x", {}, 1)


def test_redirect_is_not_followed(demo_pki: DemoPki) -> None:
    class Redirect(_Handler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(307)
            self.send_header("Location", "https://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

    context = server_ssl_context(demo_pki.server_cert, demo_pki.server_key, demo_pki.ca_cert)
    for redirect_server in _serve(context):
        redirect_server.RequestHandlerClass = Redirect
        with SessionPool(demo_pki.ca_cert) as pool:
            response = pool.session_for(_practice(demo_pki, "practice-b")).post(
                redirect_server.url, b"x", {}, 10
            )
        assert response.status_code == 307
        assert response.headers["Location"] == "https://127.0.0.1:9/elsewhere"


def test_p12_with_password_from_file_and_env(
    demo_pki: DemoPki, server: _TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = demo_pki.practices["practice-b"]
    from_file = load_identity(ClientCredential(p12=files.p12, p12_password_file=files.p12_password_file))
    assert from_file.fingerprint_sha256 == files.fingerprint_sha256
    monkeypatch.setenv("PRACTICE_B_P12_PASS", files.p12_password_file.read_text().strip())
    from_env = load_identity(ClientCredential(p12=files.p12, p12_password_env="PRACTICE_B_P12_PASS"))
    assert from_env.fingerprint_sha256 == files.fingerprint_sha256
    assert from_env.san_emails == files.addresses
    with SessionPool(demo_pki.ca_cert) as pool:
        response = pool.session_for(_practice(demo_pki, "practice-b", p12=True)).post(
            server.url, b"p", {}, 10
        )
    assert response.text == files.fingerprint_sha256


def test_wrong_p12_password_names_file_not_password(
    demo_pki: DemoPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = demo_pki.practices["practice-a"]
    monkeypatch.setenv("WRONG_PASS", "hunter2-wrong-password")
    with pytest.raises(CertificateError) as caught:
        load_identity(ClientCredential(p12=files.p12, p12_password_env="WRONG_PASS"))
    text = str(caught.value)
    assert "wrong PKCS#12 password or corrupt file" in text
    assert str(files.p12) in text
    assert "hunter2" not in text and caught.value.__cause__ is None


def test_missing_password_variable(demo_pki: DemoPki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_PASS_VAR", raising=False)
    files = demo_pki.practices["practice-a"]
    with pytest.raises(CertificateError, match="NO_SUCH_PASS_VAR"):
        load_identity(ClientCredential(p12=files.p12, p12_password_env="NO_SUCH_PASS_VAR"))


def test_identity_errors(demo_pki: DemoPki, tmp_path: Path) -> None:
    a, b = demo_pki.practices["practice-a"], demo_pki.practices["practice-b"]
    with pytest.raises(CertificateError, match="key does not match certificate"):
        load_identity(ClientCredential(cert=a.cert, key=b.key))
    with pytest.raises(CertificateError, match="file not found") as caught:
        load_identity(ClientCredential(cert=tmp_path / "absent.pem", key=a.key))
    assert "absent.pem" in str(caught.value)
    encrypted = tmp_path / "encrypted.key"
    key = serialization.load_pem_private_key(a.key.read_bytes(), password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(CertificateError, match="encrypted"):
        load_identity(ClientCredential(cert=a.cert, key=encrypted))
    with pytest.raises(CertificateError, match="not a PEM or DER"):
        load_identity(ClientCredential(cert=a.key, key=a.key))


def test_identity_with_intermediate_chain(demo_pki: DemoPki, tmp_path: Path, server: _TlsServer) -> None:
    intermediate = CertificateAuthority.create("issuing CA", parent=demo_pki.ca)
    issued = intermediate.issue_client("via intermediate", practice_id="practice-c", dns=["edge.c.example"])
    credential = _pem_credential(tmp_path, issued, "c")
    identity = load_identity(credential)
    assert identity.chain == (intermediate.cert,)
    assert identity.san_dns == ("edge.c.example",)
    assert "UID=practice-c" in identity.subject
    with SessionPool(demo_pki.ca_cert) as pool:
        practice = Practice(id="practice-c", credential=credential)
        assert pool.session_for(practice).post(server.url, b"c", {}, 10).text == issued.fingerprint_sha256


def test_session_pool_requires_a_credential(demo_pki: DemoPki) -> None:
    with SessionPool(demo_pki.ca_cert) as pool, pytest.raises(ConfigurationError, match="practice-x"):
        pool.session_for(Practice(id="practice-x"))


def test_client_context_settings_and_temp_key_removed(demo_pki: DemoPki, tmp_path: Path) -> None:
    files = demo_pki.practices["practice-a"]
    identity = load_identity(ClientCredential(cert=files.cert, key=files.key))
    context = client_ssl_context(identity, demo_pki.ca_cert)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1
    with pytest.raises(CertificateError, match="CA bundle file not found"):
        client_ssl_context(identity, tmp_path / "none.pem")


# ----------------------------------------------------------------------------------------------------------
# Receiving side: the handshake itself refuses bad clients (Direct Edge Protocols IG §1.1, ETT tests 9/19)


def _handshake(server: _TlsServer, demo_pki: DemoPki, cert: Path, key: Path) -> None:
    identity = load_identity(ClientCredential(cert=cert, key=key))
    with PracticeSession("x", identity, demo_pki.ca_cert) as session:
        session.post(server.url, b"x", {}, 10)


def test_untrusted_client_refused_in_handshake(demo_pki: DemoPki, server: _TlsServer) -> None:
    with pytest.raises((http_errors.SSLError, http_errors.ProtocolError)):
        _handshake(server, demo_pki, demo_pki.untrusted_client_cert, demo_pki.untrusted_client_key)
    assert server.handshake_failed.wait(10)  # the server thread records after the client saw the alert
    assert server.seen == [] and len(server.handshake_failures) == 1


def test_expired_client_refused_in_handshake(demo_pki: DemoPki, server: _TlsServer) -> None:
    with pytest.raises((http_errors.SSLError, http_errors.ProtocolError)):
        _handshake(server, demo_pki, demo_pki.expired_client_cert, demo_pki.expired_client_key)
    assert server.handshake_failed.wait(10)  # the server thread records after the client saw the alert
    assert server.seen == [] and len(server.handshake_failures) == 1


def test_revoked_client_refused_with_crl(demo_pki: DemoPki, tmp_path: Path) -> None:
    revoked = demo_pki.ca.issue_client("revoked", emails=["r@direct.example.org"])
    credential = _pem_credential(tmp_path, revoked, "revoked")
    crl = tmp_path / "crl.pem"
    crl.write_bytes(demo_pki.ca.crl([revoked.cert]).public_bytes(serialization.Encoding.PEM))
    context = server_ssl_context(demo_pki.server_cert, demo_pki.server_key, demo_pki.ca_cert, crls=[crl])
    assert context.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    for crl_server in _serve(context):
        assert credential.cert is not None and credential.key is not None
        with pytest.raises((http_errors.SSLError, http_errors.ProtocolError)):
            _handshake(crl_server, demo_pki, credential.cert, credential.key)
        files = demo_pki.practices["practice-a"]
        _handshake(crl_server, demo_pki, files.cert, files.key)
        assert [fp for fp, _ in crl_server.seen] == [files.fingerprint_sha256]


def test_server_context_errors(demo_pki: DemoPki, tmp_path: Path) -> None:
    a = demo_pki.practices["practice-a"]
    with pytest.raises(CertificateError, match="does the key match"):
        server_ssl_context(demo_pki.server_cert, a.key, demo_pki.ca_cert)
    with pytest.raises(CertificateError, match="client CA file not found"):
        server_ssl_context(demo_pki.server_cert, demo_pki.server_key, tmp_path / "none.pem")
    optional = server_ssl_context(
        demo_pki.server_cert, demo_pki.server_key, demo_pki.ca_cert, require_client_cert=False
    )
    assert optional.verify_mode == ssl.CERT_OPTIONAL


def test_client_without_certificate_refused(demo_pki: DemoPki, server: _TlsServer) -> None:
    context = ssl.create_default_context(cafile=str(demo_pki.ca_cert))
    host, port = server.server_address[:2]
    with socket.create_connection((str(host), int(port))) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"POST /xdr HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                if not tls.recv(1):
                    raise ConnectionError("closed")
    assert server.seen == []


# ----------------------------------------------------------------------------------------------------------
# Certificate inspection


def test_describe_certificate(pki_ca: CertificateAuthority) -> None:
    issued = pki_ca.issue_client(
        "dr smith", practice_id="practice-a", emails=["dr.smith@direct.a.org"], dns=["edge.a.org"]
    )
    info = describe_certificate(issued.cert)
    assert info.subject == "UID=practice-a,CN=dr smith"
    assert info.issuer == "CN=xdr-edge test CA"
    assert info.serial == format(issued.cert.serial_number, "x")
    assert info.fingerprint_sha256 == issued.fingerprint_sha256
    assert info.san_emails == ("dr.smith@direct.a.org",)
    assert info.san_dns == ("edge.a.org",)
    assert info.san_uris == ()
    assert info.key_usage == ("digital_signature",)
    assert info.extended_key_usage == ("clientAuth",)
    assert not info.is_ca
    assert info.not_before < info.not_after
    ca_info = describe_certificate(pki_ca.cert)
    assert ca_info.is_ca and set(ca_info.key_usage) >= {"key_cert_sign", "crl_sign"}
    assert info.as_dict()["not_after"] == info.not_after.isoformat()


def test_load_certificates_pem_and_der(demo_pki: DemoPki, tmp_path: Path) -> None:
    intermediate = CertificateAuthority.create("issuing CA", parent=demo_pki.ca)
    issued = intermediate.issue_server(["localhost"])
    pem = tmp_path / "chain.pem"
    pem.write_bytes(issued.cert_pem + issued.chain_pem)
    assert load_certificates(pem) == [issued.cert, intermediate.cert]
    der = tmp_path / "leaf.der"
    der.write_bytes(issued.cert.public_bytes(serialization.Encoding.DER))
    assert load_certificates(der) == [issued.cert]
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x01")
    with pytest.raises(CertificateError, match=r"garbage\.bin"):
        load_certificates(garbage)
    # The same parser serves bytes that come from no file (the registry's library API): no file is named.
    assert parse_certificates(issued.cert_pem + issued.chain_pem) == [issued.cert, intermediate.cert]
    with pytest.raises(CertificateError) as raised:
        parse_certificates(b"\x00\x01")
    assert raised.value.message == "not a PEM or DER X.509 certificate" and raised.value.location is None
