"""``xdr-edge send`` through click's CliRunner against a real lab receiver on loopback (mutual TLS)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from xdr_edge.cli import main
from xdr_edge.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_TRANSPORT
from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.protocol.response import RegistryErrorEntry, RegistryResponse
from xdr_edge.protocol.wire import build_reply, parse_request
from xdr_edge.receiver.app import ReceiverConfig

A_FROM = "dr.smith@direct.practice-a.org"
B_FROM = "dr.jones@direct.practice-b.org"
TO = "records@direct.hospital.example"
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def run(*args: str | Path, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with start_lab(tmp_path_factory.mktemp("lab")) as running:
        yield running


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("docs")
    (folder / "ccd.xml").write_bytes(sample_ccda())
    (folder / "letter.pdf").write_bytes(sample_pdf())
    return folder / "ccd.xml", folder / "letter.pdf"


def adhoc(lab: Lab, endpoint: str | None = None) -> list[str | Path]:
    demo = lab.pki.practices["practice-a"]
    return [
        "--endpoint",
        endpoint or lab.endpoint,
        "--ca",
        lab.ca_bundle,
        "--cert",
        demo.cert,
        "--key",
        demo.key,
    ]


def write_config(lab: Lab, path: Path, *, timeout: float = 30) -> Path:
    lines = [
        f'endpoint = "{lab.endpoint}"',
        f'ca_bundle = "{lab.ca_bundle}"',
        'metadata_level = "XDS"',
        f"timeout_seconds = {timeout}",
    ]
    for pid, demo in lab.pki.practices.items():
        lines += [
            "",
            "[[practice]]",
            f'id = "{pid}"',
            f'p12 = "{demo.p12}"',
            f'p12_password_file = "{demo.p12_password_file}"',
            f"addresses = {json.dumps(list(demo.addresses))}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_send_with_options_succeeds_and_prints_json(lab: Lab, docs: tuple[Path, Path]) -> None:
    result = run(
        "send", docs[0], docs[1], "--from", A_FROM, "--to", TO, "--to", B_FROM, *adhoc(lab), "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["outcome"] == "Success" and data["ok"] is True
    assert data["practice"] == "cli"
    assert data["http_status"] == 200 and data["attempts"] == 1
    assert len(data["document_unique_ids"]) == 2
    assert lab.inbox.contains(data["submission_set_unique_id"])


def test_send_with_config_prints_the_outcome_readably(
    lab: Lab, docs: tuple[Path, Path], tmp_path: Path
) -> None:
    config = write_config(lab, tmp_path / "sender.toml")
    result = run(
        "send", docs[0], "--from", B_FROM, "--to", TO, "--config", config, "--practice", "practice-b"
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Success: the HISP accepted the submission")
    assert "outcome:        Success" in out
    assert "practice:       practice-b" in out
    assert "HTTP status:    200" in out
    uid = next(line.split()[-1] for line in out.splitlines() if "submission set:" in line)
    assert lab.inbox.contains(uid)
    assert "message id:     urn:uuid:" in out


def _send_as_practice_a(document: Path, config: Path) -> list[str | Path]:
    """``send`` of one document from practice A's address through the config file, with ``--json``."""
    return [
        "send",
        document,
        "--from",
        A_FROM,
        "--to",
        TO,
        "--config",
        config,
        "--practice",
        "practice-a",
        "--json",
    ]


def _stored_summary(lab: Lab, unique_id: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(next(lab.inbox.root.glob(f"*/{unique_id}/summary.json")).read_text())
    return summary


def test_config_level_is_the_default_and_option_overrides(
    lab: Lab, docs: tuple[Path, Path], tmp_path: Path
) -> None:
    base = _send_as_practice_a(docs[0], write_config(lab, tmp_path / "sender.toml"))
    xds = json.loads(run(*base).stdout)
    minimal = json.loads(run(*base, "--metadata", "minimal").stdout)
    summaries = {
        uid: _stored_summary(lab, uid)
        for uid in (xds["submission_set_unique_id"], minimal["submission_set_unique_id"])
    }
    assert summaries[xds["submission_set_unique_id"]]["metadata_level"] == "XDS"
    assert summaries[minimal["submission_set_unique_id"]]["metadata_level"] == "minimal"


def test_send_can_ask_for_a_final_destination_delivery_notification(
    lab: Lab, docs: tuple[Path, Path], tmp_path: Path
) -> None:
    base = _send_as_practice_a(docs[0], write_config(lab, tmp_path / "sender.toml"))
    result = run(*base, "--final-delivery-notification")
    assert result.exit_code == 0, result.output
    summary = _stored_summary(lab, json.loads(result.stdout)["submission_set_unique_id"])
    assert summary["final_destination_delivery"] is True


def test_unbound_sender_with_config_exits_2_naming_the_address(
    lab: Lab, docs: tuple[Path, Path], tmp_path: Path
) -> None:
    config = write_config(lab, tmp_path / "sender.toml")
    result = run(
        "send", docs[0], "--from", B_FROM, "--to", TO, "--config", config, "--practice", "practice-a"
    )
    assert result.exit_code == EXIT_BAD_INPUT
    assert B_FROM in result.stderr and "not bound to practice 'practice-a'" in result.stderr
    assert "nothing was sent" in result.stderr
    assert result.stdout == ""


def test_a_lone_pdf_at_the_xds_level_says_which_options_are_missing_then_sends_with_them(
    lab: Lab, docs: tuple[Path, Path]
) -> None:
    refused = run("send", docs[1], "--from", A_FROM, "--to", TO, "--metadata", "xds", *adhoc(lab))
    assert refused.exit_code == EXIT_BAD_INPUT
    assert "--patient-id (for patientId, sourcePatientId) and --author-person" in refused.stderr
    author = [
        "--author-person",
        "^Smith^John^^^Dr.",
        "--author-institution",
        "Riverside Clinic^^^^^^^^^1.2.3.4.5",
    ]
    patient = ["--patient-id", "8273^^^&1.3.6.1.4.1.21367.2005.3.7&ISO"]
    result = run(
        "send",
        docs[1],
        "--from",
        A_FROM,
        "--to",
        TO,
        "--metadata",
        "xds",
        *patient,
        *author,
        *adhoc(lab),
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = _stored_summary(lab, json.loads(result.stdout)["submission_set_unique_id"])
    assert summary["metadata_level"] == "XDS"


def test_from_not_in_the_certificate_exits_2(lab: Lab, docs: tuple[Path, Path]) -> None:
    # ad hoc: the user asserts the binding, but the certificate's SAN names only dr.smith
    result = run("send", docs[0], "--from", "nurse@direct.practice-a.org", "--to", TO, *adhoc(lab))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "nurse@direct.practice-a.org is not covered by the certificate" in result.stderr


def test_endpoint_down_exits_3(lab: Lab, docs: tuple[Path, Path]) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"https://127.0.0.1:{port}/xdr"
    result = run("send", docs[0], "--from", A_FROM, "--to", TO, *adhoc(lab, url), "--retries", "0")
    assert result.exit_code == EXIT_TRANSPORT
    assert result.stdout.startswith(f"could not connect to {url}")
    assert "TransportError" in result.stdout


def _failing_app(config: ReceiverConfig) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A HISP that reads the request and answers every one with a Failure RegistryResponse."""
    failure = RegistryResponse.failure(
        [RegistryErrorEntry("XDSPatientIdDoesNotMatch", "patient unknown", location="DocumentEntry")]
    )

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with parse_request(
            environ["CONTENT_TYPE"], environ["wsgi.input"], spool_dir=config.inbox.spool_dir
        ) as req:
            reply = build_reply(failure, relates_to=req.envelope.message_id, mtom=req.mtom)
        start_response(f"{reply.status} OK", [("Content-Type", reply.content_type)])
        return [reply.body]

    return app


def test_hisp_failure_exits_1_and_saves_the_response(tmp_path: Path, docs: tuple[Path, Path]) -> None:
    with start_lab(tmp_path / "lab", app_factory=_failing_app) as lab:
        saved = tmp_path / "response.mime"
        result = run("send", docs[0], "--from", A_FROM, "--to", TO, *adhoc(lab), "--save-response", saved)
        assert result.exit_code == EXIT_FAILURE
        assert result.stdout.startswith("Failure: XDSPatientIdDoesNotMatch: patient unknown")
        assert "Error XDSPatientIdDoesNotMatch: patient unknown [DocumentEntry]" in result.stdout
        assert saved.read_bytes().startswith(b"Content-Type: multipart/related")
        inspected = run("inspect", saved, "--json")
    assert json.loads(inspected.stdout)["kind"] == "response"


def test_p12_with_password_from_environment(lab: Lab, docs: tuple[Path, Path]) -> None:
    demo = lab.pki.practices["practice-a"]
    password = demo.p12_password_file.read_text().strip()
    options: list[str | Path] = [
        "--endpoint",
        lab.endpoint,
        "--ca",
        lab.ca_bundle,
        "--p12",
        demo.p12,
        "--p12-password-env",
        "P12_PW",
    ]
    ok = run("send", docs[1], "--from", A_FROM, "--to", TO, *options, env={"P12_PW": password})
    assert ok.exit_code == 0, ok.output
    missing = run("send", docs[1], "--from", A_FROM, "--to", TO, *options, env={"P12_PW": None})
    assert missing.exit_code == EXIT_BAD_INPUT
    assert "environment variable P12_PW" in missing.stderr
    assert password not in missing.output


def test_no_password_option_exists() -> None:
    command = main.get_command(click.Context(main), "send")
    assert isinstance(command, click.Command)
    names = {opt for param in command.params for opt in param.opts}
    assert not any("password" in n and not n.endswith(("-env", "-file")) for n in names)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--practice", "practice-a"], "--practice needs --config"),
        (["--endpoint", "https://127.0.0.1:9/xdr"], "--endpoint URL --ca FILE"),
        (
            ["--config", "CONFIG", "--practice", "practice-a", "--endpoint", "https://x/xdr"],
            "cannot be combined",
        ),
        (["--config", "CONFIG"], "--config needs --practice"),
    ],
)
def test_usage_errors_exit_2(
    lab: Lab, docs: tuple[Path, Path], tmp_path: Path, extra: list[str], expected: str
) -> None:
    config = write_config(lab, tmp_path / "sender.toml")
    args = [str(config) if a == "CONFIG" else a for a in extra]
    result = run("send", docs[0], "--from", A_FROM, "--to", TO, *args)
    assert result.exit_code == EXIT_BAD_INPUT
    assert expected in result.stderr


def test_cert_without_key_and_mixed_credentials_exit_2(lab: Lab, docs: tuple[Path, Path]) -> None:
    demo = lab.pki.practices["practice-a"]
    base: list[str | Path] = [
        "send",
        docs[0],
        "--from",
        A_FROM,
        "--to",
        TO,
        "--endpoint",
        lab.endpoint,
        "--ca",
        lab.ca_bundle,
    ]
    lone = run(*base, "--cert", demo.cert)
    assert lone.exit_code == EXIT_BAD_INPUT and "--cert and --key must be given together" in lone.stderr
    both = run(*base, "--cert", demo.cert, "--key", demo.key, "--p12", demo.p12)
    assert both.exit_code == EXIT_BAD_INPUT and "not both" in both.stderr
    none = run(*base)
    assert none.exit_code == EXIT_BAD_INPUT and "client certificate is missing" in none.stderr


def test_unknown_practice_in_config_exits_2(lab: Lab, docs: tuple[Path, Path], tmp_path: Path) -> None:
    config = write_config(lab, tmp_path / "sender.toml")
    result = run("send", docs[0], "--from", A_FROM, "--to", TO, "--config", config, "--practice", "nope")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "unknown practice 'nope'" in result.stderr and "practice-a, practice-b" in result.stderr


def _stored_count(lab: Lab) -> int:
    return len(list(lab.inbox.root.glob("*/*/summary.json")))


@pytest.mark.parametrize("where", ["missing-directory", "input-file"])
def test_unusable_save_response_path_is_refused_before_sending(
    lab: Lab, docs: tuple[Path, Path], tmp_path: Path, where: str
) -> None:
    target = tmp_path / "missing" / "resp.mime" if where == "missing-directory" else docs[0]
    before = _stored_count(lab)
    result = run(
        "send", docs[0], "--from", A_FROM, "--to", TO, *adhoc(lab), "--save-response", target, "--json"
    )
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"--save-response {target}" in result.stderr and "nothing was sent" in result.stderr
    assert ".part" not in result.stderr
    assert result.stdout == ""
    assert _stored_count(lab) == before
    assert docs[0].read_bytes() == sample_ccda()


def test_save_response_failing_after_the_send_still_reports_the_outcome(
    lab: Lab, docs: tuple[Path, Path], tmp_path: Path
) -> None:
    target = tmp_path / "resp.mime"
    (tmp_path / "resp.mime.part").mkdir()  # passes the pre-send check, but the write itself fails
    result = run(
        "send", docs[0], "--from", A_FROM, "--to", TO, *adhoc(lab), "--save-response", target, "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["outcome"] == "Success"
    assert lab.inbox.contains(data["submission_set_unique_id"])
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(target) in warnings[0]
    assert "error:" not in result.stderr
    assert not target.exists()
