"""The API's settings file, its application commands, and client certificates on the API's TLS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from xdr_edge.api.settings import build_api, load_api_settings
from xdr_edge.cli import main
from xdr_edge.devtools.pki import DemoPki
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.registry import open_registry


@pytest.fixture
def registry_db(tmp_path: Path) -> Path:
    path = tmp_path / "registry.db"
    open_registry(str(path)).init(actor="test")
    return path


def test_application_commands_show_the_password_once_and_store_only_a_hash(registry_db: Path) -> None:
    runner = CliRunner()
    added = runner.invoke(main, ["api", "add-application", "mirth-prod", "--registry", str(registry_db)])
    assert added.exit_code == 0, added.output
    password = added.stdout.strip()
    assert len(password) == 40 and password.isalnum()
    assert password.encode() not in registry_db.read_bytes()
    listed = runner.invoke(main, ["api", "applications", "--json", "--registry", str(registry_db)])
    (app,) = json.loads(listed.stdout)
    assert app["id"] == "mirth-prod" and app["active"] is True and "password_hash" not in app
    reset = runner.invoke(
        main, ["api", "reset-application-password", "mirth-prod", "--registry", str(registry_db)]
    )
    assert reset.exit_code == 0 and reset.stdout.strip() != password
    assert (
        runner.invoke(main, ["api", "add-application", "Bad_Id", "--registry", str(registry_db)]).exit_code
        == 2
    )
    again = runner.invoke(main, ["api", "add-application", "mirth-prod", "--registry", str(registry_db)])
    assert again.exit_code == 2 and "already exists" in again.stderr
    disabled = runner.invoke(
        main, ["api", "disable-application", "mirth-prod", "--registry", str(registry_db)]
    )
    assert disabled.exit_code == 0 and "disabled" in disabled.stdout
    actions = [e.action for e in open_registry(str(registry_db)).audit_log(10)]
    assert actions[:3] == ["application.disable", "application.password-reset", "application.add"]


def test_openapi_command_prints_the_served_document() -> None:
    result = CliRunner().invoke(main, ["api", "openapi"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["paths"]["/api/v1/PingWithAuth"]["post"]["operationId"] == "PingWithAuth"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "api.toml"
    path.write_text(text)
    return path


def test_settings_resolve_relative_paths_and_refuse_unknown_keys(tmp_path: Path) -> None:
    base = """
[server]
port = 0
cert = "certs/api.pem"
key = "certs/api.key"
[api]
registry = "registry.db"
credentials = "credentials"
credential_passphrase_file = "credential.pass"
spool = "spool"
[sender]
endpoint = "https://hisp.example/xdr"
ca_bundle = "certs/hisp.pem"
metadata_level = "XDS"
"""
    server, settings = load_api_settings(_write(tmp_path, base))
    assert settings.registry == str(tmp_path / "registry.db")
    assert settings.credentials == tmp_path / "credentials"
    assert server.cert == tmp_path / "certs/api.pem" and server.require_client_cert is False
    assert settings.metadata_level.value == "XDS"
    with pytest.raises(ConfigurationError, match=r"api\.toml: api\.credential: unknown key"):
        load_api_settings(_write(tmp_path, base.replace("credentials =", "credential =")))
    with pytest.raises(ConfigurationError, match=r"require_client_cert needs server\.client_ca"):
        load_api_settings(_write(tmp_path, base.replace("port = 0", "port = 0\nrequire_client_cert = true")))
    with pytest.raises(ConfigurationError, match="must be an https:// URL"):
        load_api_settings(_write(tmp_path, base.replace("https://hisp", "http://hisp")))
    with_ca = base.replace("port = 0", 'port = 0\nclient_ca = "certs/ca.pem"')
    assert load_api_settings(_write(tmp_path, with_ca))[0].require_client_cert is True
    limits = base.replace(
        'spool = "spool"',
        'spool = "spool"\nbody_timeout = 15\nmax_requests_per_address = 3\nmax_requests_per_account = 1',
    )
    settings = load_api_settings(_write(tmp_path, limits))[1]
    assert (settings.body_timeout, settings.max_requests_per_address, settings.max_requests_per_account) == (
        15,
        3,
        1,
    )
    assert settings.max_requests_per_application is None  # half the server's threads
    with pytest.raises(ConfigurationError, match="max_requests_per_address"):
        load_api_settings(
            _write(tmp_path, limits.replace("max_requests_per_address = 3", "max_requests_per_address = 0"))
        )


def test_client_certificates_can_be_required_on_the_api(
    tmp_path: Path, demo_pki: DemoPki, registry_db: Path
) -> None:
    passphrase = tmp_path / "credential.pass"
    passphrase.write_text("passphrase\n")
    passphrase.chmod(0o600)
    text = f"""
[server]
port = 0
cert = "{demo_pki.server_cert}"
key = "{demo_pki.server_key}"
client_ca = "{demo_pki.ca_cert}"
[api]
registry = "{registry_db}"
credentials = "credentials"
credential_passphrase_file = "credential.pass"
spool = "spool"
"""
    server, settings = load_api_settings(_write(tmp_path, text))
    built = build_api(server, settings)
    built.server.start()
    try:
        url = f"{built.url}/openapi.json"
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url, verify=str(demo_pki.ca_cert), timeout=10)
        practice = demo_pki.practices["practice-a"]
        answer = requests.get(
            url, verify=str(demo_pki.ca_cert), cert=(str(practice.cert), str(practice.key)), timeout=10
        )
        assert answer.status_code == 200
    finally:
        built.stop()
    passphrase.chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by other users"):
        build_api(server, settings)
