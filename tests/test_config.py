"""Sender configuration: a good file loads with resolved paths; every mistake names the file and the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xdr_edge.certs import load_identity
from xdr_edge.devtools.pki import DemoPki
from xdr_edge.practice import Binding
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.protocol.model import DirectAddress, MetadataLevel
from xdr_edge.sender.config import SenderConfig, load_sender_config

GOOD = """
endpoint = "https://hisp.example.org/xdr"
ca_bundle = "pki/ca.pem"
metadata_level = "XDS"
timeout_seconds = 30

[[practice]]
id = "practice-a"
name = "Practice A"
cert = "pki/practice-a.pem"
key = "pki/practice-a.key"
addresses = ["dr.smith@direct.practice-a.org"]
domains = ["direct.practice-a.org"]

[[practice]]
id = "practice-b"
p12 = "pki/practice-b.p12"
p12_password_file = "pki/practice-b.p12.pass"
addresses = ["dr.jones@direct.practice-b.org"]
"""

PRACTICE_A = """
[[practice]]
id = "practice-a"
cert = "pki/practice-a.pem"
key = "pki/practice-a.key"
"""

TOP = 'endpoint = "https://hisp.example.org/xdr"\nca_bundle = "pki/ca.pem"\n'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_sender_config(_write(tmp_path, text))
    return str(caught.value)


def test_good_config_resolves_paths_against_its_directory(
    demo_pki: DemoPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, GOOD)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_sender_config(Path(os.path.relpath(path, elsewhere)))
    assert isinstance(config, SenderConfig)
    assert config.endpoint == "https://hisp.example.org/xdr"
    assert config.ca_bundle == demo_pki.ca_cert.resolve()
    assert config.metadata_level is MetadataLevel.XDS
    assert config.timeout_seconds == 30.0
    assert list(config.practices) == ["practice-a", "practice-b"]
    a, b = config.practice("practice-a"), config.practice("practice-b")
    assert a.name == "Practice A" and b.name == "practice-b"
    assert a.credential is not None and a.credential.cert == demo_pki.practices["practice-a"].cert.resolve()
    assert a.bindings == (
        Binding(address=DirectAddress.parse("dr.smith@direct.practice-a.org")),
        Binding(domain="direct.practice-a.org"),
    )
    assert b.credential is not None and b.credential.p12 is not None
    # The loaded credentials are usable as they are.
    assert (
        load_identity(b.credential).fingerprint_sha256 == demo_pki.practices["practice-b"].fingerprint_sha256
    )
    assert config.practice_for_address(DirectAddress.parse("nurse@direct.practice-a.org")) is a
    assert config.practice_for_address(DirectAddress.parse("dr.jones@direct.practice-b.org")) is b
    assert config.practice_for_address(DirectAddress.parse("x@elsewhere.org")) is None


def test_defaults(demo_pki: DemoPki, tmp_path: Path) -> None:
    config = load_sender_config(_write(tmp_path, TOP + PRACTICE_A))
    assert config.metadata_level is MetadataLevel.MINIMAL
    assert config.timeout_seconds == 60.0
    assert config.practice("practice-a").bindings == ()


def test_unknown_practice_lists_known(demo_pki: DemoPki, tmp_path: Path) -> None:
    config = load_sender_config(_write(tmp_path, TOP + PRACTICE_A))
    with pytest.raises(ConfigurationError, match=r"unknown practice 'nope' \(configured: practice-a\)"):
        config.practice("nope")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            TOP + PRACTICE_A.replace("practice-a.pem", "x.pem"),
            "config.toml: practice[0].cert: file not found: pki/x.pem",
        ),
        (TOP + PRACTICE_A + 'p12_password = "secret"\n', "passwords do not belong in the config file"),
        (TOP.replace("https://", "http://") + PRACTICE_A, "endpoint: must be an https:// URL"),
        (TOP.replace("pki/ca.pem", "pki/none.pem") + PRACTICE_A, "ca_bundle: file not found: pki/none.pem"),
        (TOP.replace("ca_bundle", "ca_bundel") + PRACTICE_A, "ca_bundel: unknown key"),
        (TOP + 'metadata_level = "full-ish"\n' + PRACTICE_A, "metadata_level: unknown metadata level"),
        (TOP + "timeout_seconds = 0\n" + PRACTICE_A, "timeout_seconds: must be a positive number"),
        (TOP + 'timeout_seconds = "60"\n' + PRACTICE_A, "timeout_seconds: must be a positive number"),
        (TOP, "practice: at least one [[practice]] is required"),
        (TOP + PRACTICE_A + PRACTICE_A, "practice[1].id: duplicate practice id 'practice-a'"),
        (TOP + PRACTICE_A + 'adresses = ["a@b.org"]\n', "practice[0].adresses: unknown key"),
        (
            TOP + PRACTICE_A + 'addresses = ["not-an-address"]\n',
            "practice[0].addresses[0]: not a Direct address",
        ),
        (TOP + PRACTICE_A + 'addresses = "a@b.org"\n', "practice[0].addresses: must be a list of strings"),
        (TOP + PRACTICE_A + 'domains = ["a@b.org"]\n', "practice[0].domains[0]: not a Direct domain"),
        (TOP + PRACTICE_A.replace('key = "pki/practice-a.key"\n', ""), "practice[0].key: cert and key"),
        (
            TOP + PRACTICE_A + 'p12 = "pki/practice-a.p12"\n',
            "practice[0].p12: give either cert and key, or p12",
        ),
        (
            TOP + PRACTICE_A + 'p12_password_env = "X"\n',
            "practice[0].p12_password_env: given without p12",
        ),
        (TOP + '[[practice]]\nid = "p"\n', "practice[0].cert: missing"),
        (TOP + '[[practice]]\nname = "p"\n', "practice[0].id: missing"),
        (TOP + PRACTICE_A + "active = 1\n", "practice[0].active: must be true or false"),
        (
            TOP
            + PRACTICE_A
            + 'domains = ["direct.a.org"]\n'
            + PRACTICE_A.replace('"practice-a"\n', '"practice-z"\n', 1)
            + 'domains = ["direct.a.org"]\n',
            "practice[1].domains: @direct.a.org is already bound to practice 'practice-a'",
        ),
        ("endpoint = [", "config.toml: not valid TOML"),
    ],
)
def test_bad_configs(demo_pki: DemoPki, tmp_path: Path, text: str, expected: str) -> None:
    message = _error(tmp_path, text)
    assert expected in message
    assert "secret" not in message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"absent\.toml: file not found"):
        load_sender_config(tmp_path / "absent.toml")


def test_error_location_names_file_and_key(demo_pki: DemoPki, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_sender_config(_write(tmp_path, TOP + PRACTICE_A.replace("practice-a.key", "gone.key")))
    assert caught.value.location == f"{tmp_path / 'config.toml'}:practice[0].key"
    assert caught.value.code == "configuration"
