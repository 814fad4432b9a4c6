"""Reading drops and the outbox parts of the sender configuration: real files, real TOML/JSON, real composing.

Every refusal must name the file and the key (or the path inside the drop), and nothing is sent for a bad drop."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.outbox_helpers import A_FROM, B_FROM, TO
from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.devtools.pki import DemoPki
from xdr_edge.protocol.errors import ConfigurationError, LocalProtocolError
from xdr_edge.protocol.model import MetadataLevel
from xdr_edge.sender.config import OutboxSettings, SenderConfig, load_sender_config
from xdr_edge.sender.outbox.drop import SubmissionRecord, compose_drop, peek_practice, read_drop
from xdr_edge.sender.outbox.layout import set_aside


def _config_text(pki: DemoPki, *, outbox: str = "", a_defaults: str = "") -> str:
    a, b = pki.practices["practice-a"], pki.practices["practice-b"]
    return f"""
endpoint = "https://hisp.example.org/xdr"
ca_bundle = "{pki.ca_cert}"
metadata_level = "minimal"
{outbox}

[[practice]]
id = "practice-a"
cert = "{a.cert}"
key = "{a.key}"
addresses = {json.dumps(list(a.addresses))}
{a_defaults}

[[practice]]
id = "practice-b"
cert = "{b.cert}"
key = "{b.key}"
addresses = {json.dumps(list(b.addresses))}
"""


A_DEFAULTS = f'[practice.outbox]\nfrom = "{A_FROM}"\nto = ["{TO}"]\nmetadata = "XDS"\n'


@pytest.fixture
def config(demo_pki: DemoPki, tmp_path: Path) -> SenderConfig:
    path = tmp_path / "sender.toml"
    path.write_text(_config_text(demo_pki, a_defaults=A_DEFAULTS))
    return load_sender_config(path)


def _error(demo_pki: DemoPki, tmp_path: Path, **parts: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(_config_text(demo_pki, **parts))
    with pytest.raises(ConfigurationError) as caught:
        load_sender_config(path)
    return str(caught.value)


# -- configuration ----------------------------------------------------------------------------------------------


def test_config_reads_outbox_settings_and_practice_defaults(
    config: SenderConfig, demo_pki: DemoPki, tmp_path: Path
) -> None:
    assert config.outbox == OutboxSettings()  # every setting has a default
    defaults = config.outbox_defaults["practice-a"]
    assert str(defaults.sender) == A_FROM and [str(r) for r in defaults.recipients] == [TO]
    assert defaults.level is MetadataLevel.XDS
    assert "practice-b" not in config.outbox_defaults
    path = tmp_path / "tuned.toml"
    path.write_text(
        _config_text(
            demo_pki,
            outbox="[outbox]\nworkers = 8\npoll_seconds = 0.5\nsettle_seconds = 0\ngive_up_after_hours = 0.5\n"
            'keep_finished_days = 2\nstate_dir = "local/outbox-state"\n',
        )
    )
    tuned = load_sender_config(path).outbox
    assert (tuned.workers, tuned.poll_seconds, tuned.settle_seconds) == (8, 0.5, 0.0)
    assert tuned.give_up_after_seconds == 1800 and tuned.keep_finished_seconds == 2 * 86400
    assert tuned.state_dir == (tmp_path / "local" / "outbox-state").resolve()  # relative to the file


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (
            {"outbox": "[outbox]\nworkers = 0\n"},
            "bad.toml: outbox.workers: must be a whole number from 1 to 64, got 0",
        ),
        (
            {"outbox": "[outbox]\nworkers = 65\n"},
            "bad.toml: outbox.workers: must be a whole number from 1 to 64, got 65",
        ),
        (
            {"outbox": "[outbox]\nretry_base_seconds = 0\n"},
            "bad.toml: outbox.retry_base_seconds: must be a number above 0, got 0",
        ),
        (
            {"outbox": "[outbox]\nretry_base_seconds = 60\nretry_max_seconds = 30\n"},
            "bad.toml: outbox.retry_max_seconds: must not be below retry_base_seconds, got 30",
        ),
        (
            {"outbox": "[outbox]\ngive_up_after_hours = -2\n"},
            "bad.toml: outbox.give_up_after_hours: must be a number above 0, got -2",
        ),
        (
            {"outbox": '[outbox]\nkeep_finished_days = "forever"\n'},
            "bad.toml: outbox.keep_finished_days: must be a number above 0, got 'forever'",
        ),
        (
            {"outbox": "[outbox]\nstate_dir = 7\n"},
            "bad.toml: outbox.state_dir: must be a non-empty string",
        ),
        (
            {"outbox": "[outbox]\npoll_seconds = 0\n"},
            "bad.toml: outbox.poll_seconds: must be a number above 0",
        ),
        (
            {"outbox": "[outbox]\nretry_max_seconds = -1\n"},
            "bad.toml: outbox.retry_max_seconds: must be a number 0 or more, got -1",
        ),
        ({"outbox": "[outbox]\nworker = 2\n"}, "bad.toml: outbox.worker: unknown key"),
        (
            {"a_defaults": f'[practice.outbox]\nfrom = "{B_FROM}"\nto = ["{TO}"]\n'},
            f"bad.toml: practice[0].outbox.from: {B_FROM} is not bound to practice 'practice-a'",
        ),
        (
            {"a_defaults": f'[practice.outbox]\nfrom = "{A_FROM}"\nto = "{TO}"\n'},
            "bad.toml: practice[0].outbox.to: must be a non-empty list of Direct addresses",
        ),
        ({"a_defaults": f'[practice.outbox]\nto = ["{TO}"]\n'}, "bad.toml: practice[0].outbox.from: missing"),
        (
            {"a_defaults": f'[practice.outbox]\nfrom = "{A_FROM}"\nto = ["{TO}"]\nmetadata = "full-ish"\n'},
            "bad.toml: practice[0].outbox.metadata: unknown metadata level",
        ),
        (
            {"a_defaults": f'[practice.outbox]\nfrom = "{A_FROM}"\nto = ["{TO}"]\nlevel = "XDS"\n'},
            "bad.toml: practice[0].outbox.level: unknown key",
        ),
    ],
)
def test_config_mistakes_name_file_and_key(
    demo_pki: DemoPki, tmp_path: Path, parts: dict[str, str], expected: str
) -> None:
    assert expected in _error(demo_pki, tmp_path, **parts)


def test_outbox_settings_refuse_nonsense_from_library_callers() -> None:
    """The same rules as the file's, in the same words (one statement of them), naming the keyword."""
    with pytest.raises(ConfigurationError, match="workers must be a whole number from 1 to 64, got 0"):
        OutboxSettings(workers=0)
    with pytest.raises(ConfigurationError, match="workers must be a whole number from 1 to 64, got 1000"):
        OutboxSettings(workers=1000)
    with pytest.raises(ConfigurationError, match="poll_seconds must be a number above 0, got 0"):
        OutboxSettings(poll_seconds=0)
    with pytest.raises(ConfigurationError, match="retry_base_seconds must be a number above 0, got nan"):
        OutboxSettings(retry_base_seconds=float("nan"))
    with pytest.raises(ConfigurationError, match="retry_base_seconds must be a number above 0, got 0"):
        OutboxSettings(retry_base_seconds=0)  # a retry loop without a pause
    with pytest.raises(ConfigurationError, match="retry_max_seconds must not be below retry_base_seconds"):
        OutboxSettings(retry_base_seconds=10, retry_max_seconds=5)


# -- reading drops ----------------------------------------------------------------------------------------------


def _folder(
    tmp_path: Path, manifest: str | None, files: dict[str, bytes] | None = None, fmt: str = "toml"
) -> Path:
    root = tmp_path / "drop"
    root.mkdir()
    for name, data in (files if files is not None else {"ccd.xml": sample_ccda()}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    if manifest is not None:
        (root / f"message.{fmt}").write_text(manifest)
    return root


GOOD_TOML = f'practice = "practice-b"\nfrom = "{B_FROM}"\nto = ["{TO}"]\n'


def test_a_folder_drop_with_toml_manifest_sends_every_other_file_sorted(
    config: SenderConfig, tmp_path: Path
) -> None:
    root = _folder(
        tmp_path,
        GOOD_TOML + 'metadata = "xds"\ntitle = "Referral"\nfinal_delivery_notification = true\n',
        {"b.pdf": sample_pdf(), "a.xml": sample_ccda(), ".DS_Store": b"x", "result.json": b"{}"},
    )
    (root / "sub").mkdir()
    (root / "sub" / "c.pdf").write_bytes(sample_pdf())
    request = read_drop(root, kind="folder", practice_folder=None, config=config)
    assert request.practice == "practice-b" and str(request.sender) == B_FROM
    assert request.documents == ("a.xml", "b.pdf")  # hidden files, our outputs and sub-folders are not sent
    assert (
        request.level is MetadataLevel.XDS
        and request.title == "Referral"
        and request.final_delivery_notification
    )
    submission, record = compose_drop(request, None, renew=True)
    assert submission.submission_set.title == "Referral" and submission.final_destination_delivery
    assert [name for name, *_ in record.documents] == ["a.xml", "b.pdf"]


def test_a_json_manifest_lists_documents_in_its_order_and_may_name_sub_folders(
    config: SenderConfig, tmp_path: Path
) -> None:
    manifest = {
        "practice": "practice-a",
        "from": A_FROM,
        "to": [TO, "care@direct.clinic.example"],
        "documents": ["sub/letter.pdf", "ccd.xml"],
        "patient_id": "77^^^&2.16.840.1.113883.19.5&ISO",
        "author": {
            "person": {"family": "Smith", "given": "John"},
            "institution": "Practice A",
            "role": "Attending",
        },
    }
    root = _folder(
        tmp_path, json.dumps(manifest), {"ccd.xml": sample_ccda(), "sub/letter.pdf": sample_pdf()}, "json"
    )
    request = read_drop(root, kind="folder", practice_folder=None, config=config)
    assert request.documents == ("sub/letter.pdf", "ccd.xml")
    assert [str(r) for r in request.recipients] == [TO, "care@direct.clinic.example"]
    assert request.author is not None and request.author.person is not None
    assert request.author.person.family == "Smith" and request.author.roles == ("Attending",)
    submission, _ = compose_drop(request, None, renew=True)
    assert str(submission.submission_set.patient_id) == "77^^^&2.16.840.1.113883.19.5&ISO"


@pytest.mark.parametrize(
    ("manifest", "fmt", "code", "text"),
    [
        ("practice = ", "toml", "bad-manifest", "message.toml is not valid TOML"),
        ("[1, 2]", "json", "bad-manifest", "message.json must hold a table"),
        (GOOD_TOML + "color = 1\n", "toml", "bad-manifest", "message.toml: color: unknown key"),
        (f'from = "{A_FROM}"\nto = ["{TO}"]\n', "toml", "bad-manifest", "message.toml: practice: missing"),
        (
            f'practice = "practice-z"\nfrom = "{A_FROM}"\nto = ["{TO}"]\n',
            "toml",
            "unknown-practice",
            "unknown practice 'practice-z' (configured: practice-a, practice-b)",
        ),
        (
            f'practice = "practice-a"\nfrom = "{A_FROM}"\nto = "{TO}"\n',
            "toml",
            "bad-manifest",
            "message.toml: to: must be",
        ),
        (
            f'practice = "practice-a"\nfrom = "nobody"\nto = ["{TO}"]\n',
            "toml",
            "bad-manifest",
            "from: not a Direct address",
        ),
        (
            GOOD_TOML + 'metadata = "rich"\n',
            "toml",
            "bad-manifest",
            "message.toml: metadata: unknown metadata level",
        ),
        (GOOD_TOML + 'documents = ["../../etc/passwd"]\n', "toml", "path-outside-drop", "leaves the drop"),
        (GOOD_TOML + 'documents = ["/etc/passwd"]\n', "toml", "path-outside-drop", "leaves the drop"),
        (GOOD_TOML + 'documents = ["missing.pdf"]\n', "toml", "document-not-found", "is not in the drop"),
        (GOOD_TOML + 'documents = ["message.toml"]\n', "toml", "bad-manifest", "is not a document"),
        (GOOD_TOML + 'documents = ["ccd.xml", "ccd.xml"]\n', "toml", "bad-manifest", "listed twice"),
        (GOOD_TOML + "final_delivery_notification = 1\n", "toml", "bad-manifest", "must be true or false"),
        (
            GOOD_TOML + '[author]\nperson = {nick = "x"}\n',
            "toml",
            "bad-manifest",
            "author.person.nick: unknown key",
        ),
        (None, "toml", "no-manifest", "no message.toml or message.json"),
        # valid JSON and TOML, but no file can be named so: a bad drop, never an unexpected error
        (
            json.dumps(
                {"practice": "practice-b", "from": B_FROM, "to": [TO], "documents": ["ccd\u0000.xml"]}
            ),
            "json",
            "bad-manifest",
            "message.json: documents[0]: 'ccd\\x00.xml' holds a control character",
        ),
        (
            GOOD_TOML + 'documents = ["ccd.xml", "a\\u0007.pdf"]\n',
            "toml",
            "bad-manifest",
            "message.toml: documents[1]: 'a\\x07.pdf' holds a control character",
        ),
        (
            GOOD_TOML + f'documents = ["{"x" * 5000}.xml"]\n',
            "toml",
            "bad-manifest",
            "cannot be read as a path",
        ),
    ],
)
def test_bad_drops_are_refused_with_file_and_key(
    config: SenderConfig, tmp_path: Path, manifest: str | None, fmt: str, code: str, text: str
) -> None:
    root = _folder(tmp_path, manifest, fmt=fmt)
    with pytest.raises(LocalProtocolError) as caught:
        read_drop(root, kind="folder", practice_folder=None, config=config)
    assert caught.value.code == code
    assert text in str(caught.value)


def test_a_symlink_anywhere_in_the_drop_refuses_it(config: SenderConfig, tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_bytes(sample_ccda())
    root = _folder(tmp_path, GOOD_TOML + 'documents = ["sub/ccd.xml"]\n', {"a.pdf": sample_pdf()})
    (root / "sub").mkdir()
    os.symlink(secret, root / "sub" / "ccd.xml")
    with pytest.raises(LocalProtocolError) as caught:
        read_drop(root, kind="folder", practice_folder=None, config=config)
    assert caught.value.code == "symlink-in-drop" and "sub/ccd.xml" in str(caught.value)


def test_both_manifests_is_ambiguous(config: SenderConfig, tmp_path: Path) -> None:
    root = _folder(tmp_path, GOOD_TOML)
    (root / "message.json").write_text("{}")
    with pytest.raises(LocalProtocolError, match=r"both message\.toml and message\.json"):
        read_drop(root, kind="folder", practice_folder=None, config=config)


def test_a_single_file_takes_the_practice_defaults(config: SenderConfig, tmp_path: Path) -> None:
    root = tmp_path / "claimed"
    root.mkdir()
    (root / "referral.xml").write_bytes(sample_ccda(title="Referral note"))
    request = read_drop(root, kind="file", practice_folder="practice-a", config=config)
    assert (request.practice, str(request.sender), request.documents) == (
        "practice-a",
        A_FROM,
        ("referral.xml",),
    )
    assert request.level is MetadataLevel.XDS
    submission, _ = compose_drop(request, None, renew=True)
    assert submission.document_entries[0].title == "Referral note"  # from the C-CDA header
    assert submission.submission_set.patient_id is not None


def test_a_folder_in_a_practice_folder_needs_no_manifest_but_may_not_change_practice(
    config: SenderConfig, tmp_path: Path
) -> None:
    root = _folder(tmp_path, None)
    assert (
        read_drop(root, kind="folder", practice_folder="practice-a", config=config).practice == "practice-a"
    )
    (root / "message.toml").write_text(GOOD_TOML)
    with pytest.raises(LocalProtocolError, match="'practice-b' in the folder of practice 'practice-a'"):
        read_drop(root, kind="folder", practice_folder="practice-a", config=config)


def test_a_single_file_for_a_practice_without_defaults_says_what_is_missing(
    config: SenderConfig, tmp_path: Path
) -> None:
    root = tmp_path / "claimed"
    root.mkdir()
    (root / "ccd.xml").write_bytes(sample_ccda())
    with pytest.raises(LocalProtocolError) as caught:
        read_drop(root, kind="file", practice_folder="practice-b", config=config)
    assert caught.value.code == "no-outbox-defaults" and "[practice.outbox]" in str(caught.value)


def test_a_single_file_outside_a_practice_folder_is_not_a_drop(config: SenderConfig, tmp_path: Path) -> None:
    root = tmp_path / "claimed"
    root.mkdir()
    (root / "stray.pdf").write_bytes(sample_pdf())
    with pytest.raises(LocalProtocolError) as caught:
        read_drop(root, kind="file", practice_folder=None, config=config)
    assert caught.value.code == "not-a-drop" and "incoming/<practice id>/" in str(caught.value)


def test_peek_practice_is_cheap_and_never_raises(tmp_path: Path) -> None:
    good = _folder(tmp_path, GOOD_TOML)
    assert peek_practice(good, None) == "practice-b"
    assert peek_practice(good, "practice-a") == "practice-a"
    (good / "message.toml").write_text("practice = ")
    assert peek_practice(good, None) is None


# -- the recorded uniqueIds -------------------------------------------------------------------------------------


def test_recomposing_with_a_record_keeps_every_unique_id(config: SenderConfig, tmp_path: Path) -> None:
    root = _folder(tmp_path, GOOD_TOML, {"a.xml": sample_ccda(), "b.pdf": sample_pdf()})
    request = read_drop(root, kind="folder", practice_folder=None, config=config)
    first, record = compose_drop(request, None, renew=True)
    stored = SubmissionRecord.from_json(json.loads(json.dumps(record.as_json())))  # as the journal keeps it
    again, same = compose_drop(request, stored, renew=False)
    assert same == record
    assert again.submission_set.unique_id == first.submission_set.unique_id
    assert [e.unique_id for e in again.document_entries] == [e.unique_id for e in first.document_entries]
    assert again.submission_set.submission_time == first.submission_set.submission_time
    assert [e.hash for e in again.document_entries] == [e.hash for e in first.document_entries]


def test_a_drop_changed_after_sending_is_refused_unless_nothing_was_ever_sent(
    config: SenderConfig, tmp_path: Path
) -> None:
    root = _folder(tmp_path, GOOD_TOML, {"a.xml": sample_ccda(), "b.pdf": sample_pdf()})
    request = read_drop(root, kind="folder", practice_folder=None, config=config)
    _, record = compose_drop(request, None, renew=True)
    (root / "b.pdf").write_bytes(sample_pdf("a longer, different text than before") + b"\n")
    with pytest.raises(LocalProtocolError) as caught:
        compose_drop(request, record, renew=False)
    assert caught.value.code == "drop-changed" and "--new-ids" in str(caught.value)
    # never sent: new uniqueIds are safe, and a change of the same size is seen too
    (root / "b.pdf").write_bytes(sample_pdf("a longer, different text than before"))
    assert (root / "b.pdf").stat().st_size == record.documents[1][3]
    renewed, fresh = compose_drop(request, record, renew=True)
    assert fresh.submission_set_unique_id != record.submission_set_unique_id
    assert renewed.submission_set.unique_id == fresh.submission_set_unique_id


def test_set_aside_keeps_a_drops_own_file_named_like_an_output(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text("theirs")
    (tmp_path / "result.previous.json").write_text("older")
    assert set_aside(tmp_path, "result.json") == "result.previous-2.json"
    assert (tmp_path / "result.previous-2.json").read_text() == "theirs"
    assert set_aside(tmp_path, "error.txt") is None
