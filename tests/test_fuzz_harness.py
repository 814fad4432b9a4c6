"""The fuzz harness itself (tests/fuzz): every target reads its whole seed corpus without a crash, the corpus is
the same bytes on every run, the oracle calls a crash what it should, and ``python -m tests.fuzz`` runs a short
fuzzing session with whichever engine is installed. The long and the CI runs are ``python -m tests.fuzz run|ci``
(docs/fuzzing.md)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from tests.fuzz.api_corpus import call_input
from tests.fuzz.api_world import APP_AUTH, APPLICATION_PASSWORD
from tests.fuzz.corpus import Corpus, split_entity
from tests.fuzz.oracle import MAX_SECONDS, MEMORY_ALLOWANCE, OUR_ERRORS, Crash, Oracle
from tests.fuzz.targets import TARGETS, Harness, _our_words, _own_values
from tests.fuzz.xml_values import BASES, MAX_VALUE_CHARS, _places
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.wire import parse_response

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("fuzz-harness"))
    yield h
    h.close()


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_reads_its_seed_corpus(harness: Harness, name: str) -> None:
    """What the fuzzer starts from must not crash already; and a target without seeds would fuzz nothing."""
    target = TARGETS[name]
    seeds = target.seed_inputs(harness)
    assert len(seeds) >= 1
    for data in seeds:
        target.check(harness, data)


def test_the_targets_cover_every_reader_and_the_app() -> None:
    assert set(TARGETS) == {
        "mtom",
        "soap-request",
        "reply",
        "metadata",
        "cda",
        "registry-response",
        "inspect",
        "parse-request",
        "app",
        "app-values",
        "api-json",
        "api-form",
        "api",
        "api-values",
    }


def test_the_corpus_is_the_same_bytes_every_time(harness: Harness, tmp_path: Path) -> None:
    """Random identifiers and boundaries come from a seeded generator while the corpus is made, so a run with a
    fixed fuzzer seed explores the same inputs on every machine."""
    other = Corpus(Harness(tmp_path).world)

    def digest(corpus: Corpus) -> str:
        data = b"".join(r.entity for r in corpus.requests) + b"".join(d for _, d in corpus.replies)
        return hashlib.sha256(data + b"".join(corpus.captures())).hexdigest()

    assert digest(harness.corpus) == digest(other)


def test_the_seeds_include_our_negative_messages(harness: Harness) -> None:
    names = {r.name for r in harness.corpus.requests}
    assert {"minimal-ccda", "plain-soap", "soap11", "no-action", "wrong-hash", "orphan-part"} <= names


def test_split_entity_takes_what_pack_writes_and_anything_else() -> None:
    assert split_entity(b"Content-Type: a/b\r\n\r\nbody", "x/y") == ("a/b", b"body")
    assert split_entity(b"content-type:a/b\nbody", "x/y") == ("a/b", b"body")
    assert split_entity(b"<a/>", "x/y") == ("x/y", b"<a/>")


# ----------------------------------------------------------------------------------------------------------
# The oracle


class _FakeClock:
    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step  # each reading is `step` after the one before: every run takes `step` seconds
        return self.now


def _ok(data: bytes) -> None:
    pass


def test_an_exception_outside_our_hierarchy_is_a_crash() -> None:
    def broken(data: bytes) -> None:
        raise ValueError("All strings must be XML compatible")

    with pytest.raises(Crash, match="ValueError escaped"):
        Oracle().check(broken, b"x", allowed=OUR_ERRORS)


def test_our_errors_are_allowed_where_the_target_allows_them() -> None:
    def refuses(data: bytes) -> None:
        raise RemoteProtocolError("bad", code="x")

    Oracle().check(refuses, b"x", allowed=OUR_ERRORS)
    with pytest.raises(Crash, match="RemoteProtocolError escaped"):
        Oracle().check(refuses, b"x", allowed=())


def test_an_input_that_is_slow_three_times_is_a_crash() -> None:
    with pytest.raises(Crash, match="took"):
        Oracle(clock=_FakeClock(MAX_SECONDS * 2)).check(_ok, b"x" * 1000, allowed=OUR_ERRORS)


def test_a_slow_first_run_that_is_fast_again_is_not_a_crash() -> None:
    times = iter([0.0, MAX_SECONDS * 3, 10.0, 10.01, 20.0, 20.01])
    Oracle(clock=lambda: next(times)).check(_ok, b"x", allowed=OUR_ERRORS)


def test_an_input_of_a_megabyte_or_more_may_take_longer() -> None:
    Oracle(clock=_FakeClock(MAX_SECONDS * 5)).check(_ok, b"x" * (1024 * 1024), allowed=OUR_ERRORS)


def test_memory_beyond_a_small_multiple_of_the_input_is_a_crash() -> None:
    peaks = iter([100 * 2**20, 100 * 2**20 + MEMORY_ALLOWANCE + 17 * 1000])
    with pytest.raises(Crash, match="peak RSS grew"):
        Oracle(peak_rss=lambda: next(peaks)).check(_ok, b"x" * 1000, allowed=OUR_ERRORS)
    peaks = iter([100 * 2**20, 100 * 2**20 + MEMORY_ALLOWANCE + 15 * 1000])
    Oracle(peak_rss=lambda: next(peaks)).check(_ok, b"x" * 1000, allowed=OUR_ERRORS)


# ----------------------------------------------------------------------------------------------------------
# The command


def _fuzz(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.fuzz", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_a_short_fuzzing_session_runs(tmp_path: Path) -> None:
    """With atheris when it is installed (the ``fuzz`` extra), else the built-in mutator."""
    done = _fuzz("run", "registry-response", "--runs=300", "--seed=7", f"--artifacts={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "number_of_executed_units: 300" in done.stderr
    assert not list(tmp_path.iterdir())


def test_the_builtin_mutator_runs_without_atheris(tmp_path: Path) -> None:
    done = _fuzz("run", "cda", "--engine=builtin", "--runs=200", "--seed=7", f"--artifacts={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "number_of_executed_units: 200" in done.stderr


def test_replay_reports_each_file(tmp_path: Path) -> None:
    path = tmp_path / "input"
    path.write_bytes(b"<rs:RegistryResponse xmlns:rs='urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0'/>")
    done = _fuzz("replay", "registry-response", str(path))
    assert done.returncode == 0 and done.stdout.startswith(f"ok    {path}")


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param(
            "atheris",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("atheris") is None, reason="atheris (the fuzz extra) not installed"
            ),
        ),
        "builtin",
    ],
)
def test_a_crash_fails_the_run_and_keeps_the_input(tmp_path: Path, engine: str) -> None:
    """What CI relies on: a crash ends the run with a non-zero status and leaves the input for ``replay``."""
    done = _fuzz("run", "cda", "--runs=50", f"--engine={engine}", f"--artifacts={tmp_path}", "--plant-crash")
    assert done.returncode != 0
    # the line that says what the crash was, which CI keeps (the tail of the output)
    assert re.search(r"\[cda\] crash[^\n]*: planted crash", done.stderr), done.stderr[-3000:]
    [saved] = list(tmp_path.iterdir())
    assert saved.name.startswith("cda-crash-")


def test_the_api_oracle_excuses_a_secret_the_caller_put_in_a_field_of_its_own(tmp_path: Path) -> None:
    """What failed a CI fuzz run: libFuzzer spliced the seeds' application password into a practice's name, and
    the answer that repeats the name (then every later one that shows the stored name) counted as a leak. The
    caller's own text is not a leak; the other secrets are still watched."""
    h = Harness(tmp_path)
    try:
        target, world = TARGETS["api"], h.api_world
        assert APPLICATION_PASSWORD in world.unexcused_secrets
        name = {"auth": APP_AUTH, "name": f"Clinic {APPLICATION_PASSWORD}"}
        target.check(h, call_input("PracticeSave", json.dumps(name).encode()))
        target.check(h, call_input("PracticeGet", json.dumps({"auth": APP_AUTH}).encode()))
        assert world.unexcused_secrets == tuple(s for s in world.secrets if s != APPLICATION_PASSWORD)
    finally:
        h.close()


def test_a_credential_field_is_never_the_callers_own_text() -> None:
    sent = {
        "auth": {"applicationId": "fuzz-app", "applicationPassword": "p1", "loginPassword": "p2"},
        "login": {"loginId": "night", "password": "p3"},
        "privateKey": "k",
        "pkcs12": "b",
        "pkcs12Password": "p4",
        "to": ["a@b.example", "c@d.example"],
    }
    own = _own_values(sent)
    assert not {"p1", "p2", "p3", "p4", "k", "b"} & set(own)
    assert {"a@b.example", "c@d.example", "fuzz-app", "night", "pkcs12Password"} <= set(own)  # names too


@pytest.mark.parametrize(
    ("value", "ours"),
    [
        ("certificate", True),  # the message's own word
        ("another practice", True),
        ("certific", False),  # not a whole word of it
        ("Certificate", False),  # not as the message writes it
        ("this-certificate", False),  # not plain words
    ],
)
def test_a_refusal_may_say_its_own_words_whatever_was_sent(value: str, ours: bool) -> None:
    assert _our_words(value, "this certificate is enrolled to another practice") is ours


def test_app_values_starts_from_a_valid_request_that_is_stored(harness: Harness) -> None:
    """A base alone (one byte: which request) is a valid request, with uniqueIds made from the input: stored."""
    mutator = harness.xml_mutator
    request, edits = mutator.input_for(
        bytes([len(mutator.bases)])
    )  # the first base, ids other than its seed's
    assert edits == []
    content_type, body = split_entity(request, "multipart/related")
    reply = harness.world.post(content_type, body)
    parsed = parse_response(reply.content_type, reply.body)
    assert reply.status == 200 and parsed.registry_response is not None, reply.body[:300]
    assert not parsed.registry_response.is_failure, parsed.registry_response


def test_app_values_edits_stay_bounded_however_they_repeat(harness: Harness) -> None:
    """Twelve edits that each repeat the longest text forty times would ask for 40**12 times its length: a
    value stops at MAX_VALUE_CHARS and the edits stop once the envelope passes MAX_ENVELOPE_BYTES."""
    mutator = harness.xml_mutator
    plain = BASES.index("plain-soap")
    places = _places(etree.fromstring(mutator.bases[plain].root))
    longest = max(
        range(len(places)), key=lambda i: len(places[i][0].text or "") if places[i][1] is None else 0
    )
    request, edits = mutator.input_for(bytes([plain]) + bytes([longest >> 8, longest & 0xFF, 3, 39]) * 12)
    assert len(edits) == 12 and len({e.rsplit(": ", 1)[0] for e in edits}) == 1, edits
    assert len(request) < len(mutator.bases[plain].root) + MAX_VALUE_CHARS + 1024, len(request)
    assert max(len(e) for e in edits) < 300  # the report shows a value's start, not all of it
