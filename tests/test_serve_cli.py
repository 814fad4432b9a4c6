"""``xdr-edge serve`` and its settings (xdr_edge.receiver.settings, xdr_edge.cli.servecmd): the TOML file and
flags, errors naming file and key, the assembled server with a hook, and the real command in a child process
answering a real request and stopping cleanly on SIGTERM."""

from __future__ import annotations

import dataclasses
import http.client
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from xdr_edge.certs import load_identity
from xdr_edge.cli import main
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.devtools.pki import DemoPki, write_demo_pki
from xdr_edge.minting import CertificateAuthority
from xdr_edge.practice import ClientCredential
from xdr_edge.protocol import ns
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.model import Document
from xdr_edge.protocol.wire import ParsedResponse, build_plain_request, build_request, parse_response
from xdr_edge.receiver.app import PeerIdentitySource
from xdr_edge.receiver.settings import (
    build_server,
    default_receiver_name,
    load_intermediates,
    load_receiver_settings,
)
from xdr_edge.receiver.store import RECEIVER_NAME
from xdr_edge.registry import open_registry
from xdr_edge.tls import client_ssl_context

SENDER = "dr.smith@direct.practice-a.org"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoPki]:
    """A directory with a demo PKI and an initialised registry (practice-a enrolled and bound)."""
    root = tmp_path_factory.mktemp("site")
    pki = write_demo_pki(root / "pki")
    registry = open_registry(str(root / "registry.db"))
    registry.init(actor="test")
    registry.add_trust_anchor(pki.ca_cert.read_bytes(), actor="test")
    registry.add_practice("practice-a", "Practice A", actor="test")
    registry.enroll("practice-a", pki.practices["practice-a"].cert.read_bytes(), actor="test")
    registry.bind("practice-a", SENDER, actor="test")
    return root, pki


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


TLS_TOML = """\
    [server]
    host = "127.0.0.1"
    port = 0
    cert = "pki/server.pem"
    key = "pki/server.key"
    client_ca = "pki/ca.pem"
    crls = ["pki/crl.pem"]
    threads = 2
    timeout_seconds = 20
    max_request_bytes = 1048576
    linger_seconds = 2.5
    handshake_timeout_seconds = 4
    max_header_bytes = 32768
    min_upload_bytes_per_second = 2048
    upload_grace_seconds = 5

    [receiver]
    registry = "registry.db"
    inbox = "inbox"
    path = "/xdr"
"""


# ----------------------------------------------------------------------------------------------------------
# Settings


def test_file_paths_are_resolved_against_the_file_directory(site: tuple[Path, DemoPki]) -> None:
    root, _ = site
    server, options = load_receiver_settings(_write(root / "serve.toml", TLS_TOML))
    assert server.cert == root / "pki" / "server.pem"
    assert server.crls == (root / "pki" / "crl.pem",)
    assert (server.port, server.threads, server.socket_timeout, server.linger_seconds) == (0, 2, 20.0, 2.5)
    assert server.max_request_bytes == options.max_request_bytes == 1048576
    assert (server.handshake_timeout, server.max_header_bytes) == (4.0, 32768)
    assert (server.min_upload_bytes_per_second, server.upload_grace_seconds) == (2048, 5.0)
    assert not server.plain_http
    assert options.registry == str(root / "registry.db")
    assert options.inbox == root / "inbox"
    assert options.path == "/xdr"
    assert options.identity_source is PeerIdentitySource.TLS


def test_understood_headers_are_read_as_clark_names(site: tuple[Path, DemoPki]) -> None:
    root, _ = site
    text = TLS_TOML.replace(
        'path = "/xdr"', 'path = "/xdr"\nunderstood_headers = ["wsse:Security", "{urn:x}T"]'
    )
    _, options = load_receiver_settings(_write(root / "serve-understood.toml", text))
    assert options.understood_headers == {f"{{{ns.WSSE}}}Security", "{urn:x}T"}
    bad = TLS_TOML.replace('path = "/xdr"', 'path = "/xdr"\nunderstood_headers = ["sec:Security"]')
    with pytest.raises(
        ConfigurationError, match=r"serve-bad-header.toml: understood_headers: .*'sec:Security'"
    ):
        load_receiver_settings(_write(root / "serve-bad-header.toml", bad))


def test_intermediates_come_from_the_client_ca_bundle_and_the_intermediates_file(
    site: tuple[Path, DemoPki],
) -> None:
    root, pki = site
    first = CertificateAuthority.create("Issuing CA 1", parent=pki.ca)
    second = CertificateAuthority.create("Issuing CA 2", parent=pki.ca)
    bundle = root / "pki" / "client-ca-with-issuing.pem"
    bundle.write_bytes(pki.ca_cert.read_bytes() + first.cert.public_bytes(serialization.Encoding.PEM))
    extra = root / "pki" / "intermediates.pem"
    extra.write_bytes(second.cert.public_bytes(serialization.Encoding.PEM))
    text = TLS_TOML.replace('client_ca = "pki/ca.pem"', 'client_ca = "pki/client-ca-with-issuing.pem"')
    text = text.replace('path = "/xdr"', 'path = "/xdr"\nintermediates = "pki/intermediates.pem"')
    server, options = load_receiver_settings(_write(root / "serve-intermediates.toml", text))
    assert options.intermediates == extra
    found = load_intermediates(server, options)
    assert {c.subject for c in found} == {first.cert.subject, second.cert.subject}  # the root is left out


def test_flags_override_the_file(site: tuple[Path, DemoPki]) -> None:
    root, _ = site
    config = _write(root / "serve-override.toml", TLS_TOML)
    server, options = load_receiver_settings(
        config, overrides={"port": 9443, "threads": None, "inbox": Path("/srv/inbox"), "crls": ()}
    )
    assert server.port == 9443
    assert server.threads == 2  # None: not given on the command line
    assert server.crls == (root / "pki" / "crl.pem",)  # an empty repeatable option is "not given"
    assert options.inbox == Path("/srv/inbox")
    server, options = load_receiver_settings(
        config, overrides={"understood_headers": ("wsse:Security",), "linger_seconds": 0.5}
    )
    assert options.understood_headers == {f"{{{ns.WSSE}}}Security"}
    assert server.linger_seconds == 0.5


def test_limits_against_hostile_peers_from_the_file_flags_and_defaults(
    site: tuple[Path, DemoPki], tmp_path: Path
) -> None:
    root, _ = site
    server, options = load_receiver_settings(_write(root / "serve-plain.toml", TLS_TOML))
    assert server.header_timeout == 5.0
    assert options.max_requests_per_practice == 1  # half of threads = 2
    assert (options.max_envelope_bytes, options.max_xml_nodes) == (50 * 1024 * 1024, 200_000)
    text = TLS_TOML.replace("threads = 2", "threads = 2\nheader_timeout_seconds = 2.5").replace(
        'path = "/xdr"',
        'path = "/xdr"\nmax_requests_per_practice = 3\nmax_envelope_bytes = 1048576\nmax_xml_nodes = 5000',
    )
    config = _write(root / "serve-limits.toml", text)
    server, options = load_receiver_settings(config)
    assert server.header_timeout == 2.5
    assert (options.max_requests_per_practice, options.max_envelope_bytes, options.max_xml_nodes) == (
        3,
        1048576,
        5000,
    )
    server, options = load_receiver_settings(
        config, overrides={"header_timeout": 7.0, "max_xml_nodes": 9000, "max_requests_per_practice": 4}
    )
    assert (server.header_timeout, options.max_xml_nodes, options.max_requests_per_practice) == (7.0, 9000, 4)
    built = build_server(server, dataclasses.replace(options, inbox=tmp_path / "inbox"))
    app = built.server.app.config
    assert app.limits.max_root_bytes == 1048576 and app.xml_budget.max_nodes == 9000
    assert app.max_requests_per_practice == 4


def test_registry_url_forms(site: tuple[Path, DemoPki]) -> None:
    root, _ = site
    text = TLS_TOML.replace('registry = "registry.db"', 'registry = "sqlite:data/reg.db"')
    _, options = load_receiver_settings(_write(root / "serve-url.toml", text))
    assert options.registry == str(root / "data" / "reg.db")
    text = TLS_TOML.replace('registry = "registry.db"', 'registry = "sqlite:///var/lib/reg.db"')
    _, options = load_receiver_settings(_write(root / "serve-abs.toml", text))
    assert options.registry == "/var/lib/reg.db"
    url = "postgresql://xdr@db.internal/xdr_edge?sslmode=verify-full"
    text = TLS_TOML.replace('registry = "registry.db"', f'registry = "{url}"')
    _, options = load_receiver_settings(_write(root / "serve-pg.toml", text))
    assert options.registry == url  # a server database: no path to resolve


def test_receiver_name_from_file_flag_or_host(site: tuple[Path, DemoPki]) -> None:
    root, _ = site
    text = TLS_TOML.replace('inbox = "inbox"', 'inbox = "inbox"\n    name = "rx-7"')
    config = _write(root / "serve-name.toml", text)
    assert load_receiver_settings(config)[1].receiver_name == "rx-7"
    assert load_receiver_settings(config, overrides={"receiver_name": "rx-8"})[1].receiver_name == "rx-8"
    plain = load_receiver_settings(_write(root / "serve-noname.toml", TLS_TOML))[1]
    assert plain.receiver_name == default_receiver_name() and RECEIVER_NAME.match(plain.receiver_name)
    with pytest.raises(ConfigurationError, match="receiver name 'a/b' is not usable"):
        load_receiver_settings(config, overrides={"receiver_name": "a/b"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("port = 0", "port = 70000"), "server.port: must be an integer from 0 to 65535"),
        (("threads = 2", 'threads = "two"'), "server.threads: must be an integer"),
        (("threads = 2", "thread = 2"), "server.thread: unknown key"),
        (("linger_seconds = 2.5", "linger_seconds = -1"), "server.linger_seconds: must be a positive number"),
        (
            ("threads = 2", "threads = 2\nheader_timeout_seconds = 0"),
            "server.header_timeout_seconds: must be a positive",
        ),
        (
            ('path = "/xdr"', 'path = "/xdr"\nmax_requests_per_practice = 0'),
            "receiver.max_requests_per_practice: must be",
        ),
        (
            ('path = "/xdr"', 'path = "/xdr"\nmax_xml_nodes = 10'),
            "receiver.max_xml_nodes: must be an integer of at least 100",
        ),
        (("threads = 2", "threads = 2\nmax_xml_nodes = 5000"), "server.max_xml_nodes: unknown key"),
        (('path = "/xdr"', 'path = "xdr"'), "receiver.path: must start with '/'"),
        (('registry = "registry.db"', 'registry = "mysql://db/x"'), "receiver.registry: unsupported"),
        (('crls = ["pki/crl.pem"]', 'crls = "pki/crl.pem"'), "server.crls: must be a list"),
        (("[receiver]", "[reciever]"), "reciever: unknown section"),
        (('cert = "pki/server.pem"', ""), "mutual TLS needs cert"),
    ],
)
def test_errors_name_the_file_and_the_key(
    site: tuple[Path, DemoPki], change: tuple[str, str], message: str
) -> None:
    root, _ = site
    config = _write(root / "bad.toml", TLS_TOML.replace(*change))
    with pytest.raises(ConfigurationError) as info:
        load_receiver_settings(config)
    assert message in str(info.value)
    if "mutual TLS" not in message:
        assert str(config) in str(info.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    config = _write(tmp_path / "broken.toml", "[server\nport = 1\n")
    with pytest.raises(ConfigurationError, match=r"broken\.toml: not valid TOML"):
        load_receiver_settings(config)


def test_proxy_mode_from_file_needs_no_certificates(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "proxy.toml",
        """\
        [receiver]
        registry = "registry.db"
        inbox = "inbox"
        [proxy]
        enabled = true
        trusted = ["127.0.0.1", "10.0.0.0/24"]
        cert_header = "X-Client-Cert"
        """,
    )
    server, options = load_receiver_settings(config)
    assert server.plain_http
    assert options.behind_proxy
    assert options.trusted_proxies == ("127.0.0.1", "10.0.0.0/24")
    assert options.proxy_cert_header == "X-Client-Cert"
    assert options.proxy_verify_header == "X-SSL-Client-Verify"


def test_proxy_mode_needs_a_trusted_proxy_and_trusted_proxies_need_proxy_mode(tmp_path: Path) -> None:
    base = {"registry": "r.db", "inbox": tmp_path}
    with pytest.raises(ConfigurationError, match="proxy mode needs the proxy's address"):
        load_receiver_settings(None, overrides={**base, "behind_proxy": True})
    with pytest.raises(ConfigurationError, match="proxy mode is off"):
        load_receiver_settings(
            None,
            overrides={
                **base,
                "trusted_proxies": ("127.0.0.1",),
                "cert": tmp_path,
                "key": tmp_path,
                "client_ca": tmp_path,
            },
        )
    with pytest.raises(ConfigurationError, match="no registry given"):
        load_receiver_settings(None, overrides={"inbox": tmp_path})


def test_build_server_runs_the_hook_and_recovers_the_inbox(
    site: tuple[Path, DemoPki], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, pki = site
    hook_dir = tmp_path / "hooks"
    hook_dir.mkdir()
    (hook_dir / "xdr_test_hook.py").write_text(
        "from pathlib import Path\n"
        "def deliver(stored):\n"
        "    (stored.directory.parent.parent / 'delivered.txt').write_text(stored.summary['practice'])\n"
    )
    monkeypatch.syspath_prepend(str(hook_dir))
    inbox = tmp_path / "inbox"
    (inbox / ".work" / "rx-1" / "staging" / "left-over").mkdir(parents=True)
    (inbox / ".work" / "rx-2" / "staging" / "another-receivers").mkdir(parents=True)
    server_config, options = load_receiver_settings(
        _write(root / "serve-hook.toml", TLS_TOML),
        overrides={"inbox": inbox, "hook": "xdr_test_hook:deliver", "receiver_name": "rx-1"},
    )
    built = build_server(server_config, options)
    try:
        assert built.recovered.removed == 1 and built.recovered.completed == 0
        assert (inbox / ".work" / "rx-2" / "staging" / "another-receivers").is_dir()  # not ours to touch
        with built.server:
            reply = _send(built.server.port, pki)
    finally:
        built.close()
    assert reply.registry_response is not None and reply.registry_response.is_success
    assert (inbox / "delivered.txt").read_text() == "practice-a"


def test_build_server_refuses_a_missing_registry(site: tuple[Path, DemoPki], tmp_path: Path) -> None:
    root, _ = site
    server_config, options = load_receiver_settings(
        _write(root / "serve-noreg.toml", TLS_TOML), overrides={"registry": str(tmp_path / "none.db")}
    )
    with pytest.raises(ConfigurationError, match="registry init"):
        build_server(server_config, options)
    assert not (tmp_path / "none.db").exists()


def test_bad_hook_is_a_configuration_error(site: tuple[Path, DemoPki], tmp_path: Path) -> None:
    root, _ = site
    server_config, options = load_receiver_settings(
        _write(root / "serve-badhook.toml", TLS_TOML),
        overrides={"inbox": tmp_path / "inbox", "hook": "no_such_module_xyz:deliver"},
    )
    with pytest.raises(ConfigurationError, match="cannot load hook"):
        build_server(server_config, options)


# ----------------------------------------------------------------------------------------------------------
# The command


def _send(port: int, pki: DemoPki) -> ParsedResponse:
    practice = pki.practices["practice-a"]
    identity = load_identity(ClientCredential(cert=practice.cert, key=practice.key))
    context = client_ssl_context(identity, pki.ca_cert)
    document = Document.from_bytes(sample_ccda(), name="ccd.xml")
    submission = compose([document], sender=SENDER, recipients=["x@direct.hisp.example"])
    request = build_request(submission, endpoint=f"https://127.0.0.1:{port}/xdr")
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        connection.request("POST", "/xdr", body=b"".join(request.body), headers=request.headers())
        response = connection.getresponse()
        return parse_response(response.getheader("Content-Type") or "", response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("mtom", [False, True], ids=["plain-soap", "mtom"])
def test_a_request_over_the_configured_limit_gets_a_413_soap_fault(
    site: tuple[Path, DemoPki], tmp_path: Path, mtom: bool
) -> None:
    """The server and the app share ``max_request_bytes``: the app, not the HTTP server under it, answers a
    declared length over it, as a SOAP 1.2 Sender fault with the request's MessageID (never cheroot's plain-text
    413), and reads no more of the body than the first bytes."""
    root, pki = site
    server_config, options = load_receiver_settings(
        _write(root / "serve-limit.toml", TLS_TOML), overrides={"inbox": tmp_path / "inbox"}
    )
    limit = options.max_request_bytes
    practice = pki.practices["practice-a"]
    context = client_ssl_context(
        load_identity(ClientCredential(cert=practice.cert, key=practice.key)), pki.ca_cert
    )
    big = Document.from_bytes(b"%PDF-1.4\n" + b"x" * (2 * limit), name="big.pdf")
    submission = compose([big], sender=SENDER, recipients=["x@direct.hisp.example"])
    built = build_server(server_config, options)
    try:
        with built.server:
            endpoint = f"https://127.0.0.1:{built.server.port}/xdr"
            if mtom:
                request = build_request(submission, endpoint=endpoint)
                message_id, body, headers = request.message_id, b"".join(request.body), request.headers()
            else:
                message_id, content_type, body = build_plain_request(submission, endpoint=endpoint)
                headers = {"Content-Type": content_type}
            assert len(body) > limit
            connection = http.client.HTTPSConnection(
                "127.0.0.1", built.server.port, context=context, timeout=30
            )
            try:
                connection.request("POST", "/xdr", body=body, headers=headers)
                response = connection.getresponse()
                reply_type, data = response.getheader("Content-Type") or "", response.read()
            finally:
                connection.close()
    finally:
        built.close()
    assert response.status == 413, data[:300]
    media = MediaType.parse(reply_type)
    if mtom:  # an MTOM request is answered in kind (ITI TF-2x V.3.6)
        assert media.essence == "multipart/related" and media.param("start-info") == "application/soap+xml"
    else:
        assert media.essence == "application/soap+xml"
    parsed = parse_response(reply_type, data)
    assert parsed.fault is not None and parsed.fault.code == "Sender"
    assert f"exceeds the limit of {limit}" in parsed.fault.reason
    assert parsed.envelope.relates_to == message_id
    assert not list((tmp_path / "inbox").glob("*/*/summary.json"))  # nothing stored


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--inbox", str(tmp_path / "inbox"), "--port", "0"], env={"XDR_EDGE_REGISTRY": ""}
    )
    assert result.exit_code == 2
    assert "error:" in result.output
    assert "Traceback" not in result.output


def test_serve_command_answers_and_stops_on_sigterm(site: tuple[Path, DemoPki]) -> None:
    root, pki = site
    config = _write(root / "serve-cli.toml", TLS_TOML)
    launcher = "from xdr_edge.cli import main; main()"
    command = [sys.executable, "-c", launcher, "serve", "--config", str(config), "--threads", "2"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "listening on https://127.0.0.1:" in first, first + process.stdout.read()
        port = int(first.split("127.0.0.1:")[1].split("/")[0])
        assert f":{port}/xdr (mutual TLS)" in first  # the configured path, not a guess
        reply = _send(port, pki)
        assert reply.registry_response is not None and reply.registry_response.is_success
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "stopped" in output
    assert any((root / "inbox").glob("*/*/summary.json"))
    # one structured line per request by default, without -v
    assert "INFO xdr_edge.receiver request practice=" in output and "outcome=stored" in output, output
