"""The JSON API against a hostile or careless caller, over real HTTPS on loopback: claiming what is someone
else's, guessing passwords, holding workers, malformed input. Each test names what it protects."""

from __future__ import annotations

import ast
import base64
import json
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.hazmat.primitives.serialization.pkcs12 import PBES

from tests.apiworld import ApiWorld, BlackHole, api_world, ccda_document, error, send_body, wait_for
from xdr_edge.api.applications import set_application_active
from xdr_edge.certs import MAX_PKCS12_ITERATIONS
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.pfx import key_derivation_iterations
from xdr_edge.practice import Binding

ALPHA_ADDRESS = "dr.who@direct.alpha.example"


@pytest.fixture
def world(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[ApiWorld]:
    with api_world(tmp_path, caplog) as state:
        yield state


def _message_rows(world: ApiWorld) -> list[sqlite3.Row]:
    with sqlite3.connect(world.lab.directory / "registry.db") as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM api_messages ORDER BY created_at").fetchall()


# -- claims: certificates and addresses ----------------------------------------------------------------------


def test_a_certificate_is_enrolled_only_with_its_private_key(world: ApiWorld) -> None:
    """Direct certificates are public: without proof of possession anyone could map another organization's
    traffic to themselves (and revoke it for good)."""
    alpha, evil = world.application("alpha"), world.application("evil")
    victim = world.issue("alpha clinic", "dr.a@direct.alpha.example")
    squatter = {**evil, "accountId": "e1"}
    assert world.call("PracticeSave", {"auth": squatter, "name": "E"}).status_code == 200

    answer = world.call("CertificateEnroll", {"auth": squatter, "certificate": victim.cert_pem.decode()})
    assert answer.status_code == 400 and error(answer)["code"] == "missing-field"
    assert error(answer)["field"] == "privateKey"
    someone_elses_key = world.issue("evil", "mallory@direct.evil.example").key_pem.decode()
    world.secrets.add(someone_elses_key.splitlines()[1])
    answer = world.call(
        "CertificateEnroll",
        {"auth": squatter, "certificate": victim.cert_pem.decode(), "privateKey": someone_elses_key},
    )
    assert answer.status_code == 400 and error(answer)["code"] == "key-mismatch"
    assert world.lab.registry.certificate(victim.fingerprint_sha256) is None  # nothing was claimed

    owner = {**alpha, "accountId": "a1"}
    world.call("PracticeSave", {"auth": owner, "name": "A"})
    assert world.enrol(owner, victim)["created"] is True
    record = world.lab.registry.certificate(victim.fingerprint_sha256)
    assert record is not None and record.practice_id == "alpha.a1"


def test_an_address_is_bound_only_when_a_certificate_of_the_practice_names_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The receiver accepts a message from any address bound to the certificate's practice, so a binding may
    claim no more than the practice's own certificate does."""
    with api_world(tmp_path, caplog, allow_domain_bindings=True) as world:
        evil = world.application("evil")
        auth = {**evil, "accountId": "e1"}
        world.practice(evil, "e1", "mallory@direct.evil.example")  # its own, honest certificate and address
        for claimed in (
            "dr.smith@direct.riverside.example",
            "@direct.riverside.example",
            "@direct.evil.example",
        ):
            answer = world.call("AddressBind", {"auth": auth, "address": claimed})
            assert answer.status_code == 403 and error(answer)["code"] == "address-not-covered", claimed
        practice = world.lab.registry.practice("evil.e1")
        assert practice is not None
        assert [str(b) for b in practice.bindings] == ["mallory@direct.evil.example"]
        smith = Binding.parse("dr.smith@direct.riverside.example").address
        assert smith is not None and not world.lab.registry.authorize_sender(practice, smith).allowed

        # An organization certificate (the bare domain as its SAN e-mail) names the domain and every address in it.
        world.enrol(auth, world.lab.pki.ca.issue_client("evil org", emails=("direct.evil.example",)))
        for claimed in ("@direct.evil.example", "frontdesk@direct.evil.example"):
            answer = world.call("AddressBind", {"auth": auth, "address": claimed})
            assert answer.status_code in (200, 409), (claimed, answer.text)
        assert world.call("AddressBind", {"auth": auth, "address": "@direct.evil.example"}).status_code == 200

        # A certificate the practice holds no key for (enrolled by the operator) or a revoked one claims nothing.
        beta = world.application("beta")
        beta_auth = {**beta, "accountId": "b1"}
        world.call("PracticeSave", {"auth": beta_auth, "name": "B"})
        operator_enrolled = world.issue("beta by operator", "dr.b@direct.beta.example")
        world.lab.registry.enroll("beta.b1", operator_enrolled.cert_pem, actor="operator")
        answer = world.call("AddressBind", {"auth": beta_auth, "address": "dr.b@direct.beta.example"})
        assert answer.status_code == 403 and error(answer)["code"] == "address-not-covered"
        revoked = world.issue("beta revoked", "dr.c@direct.beta.example")
        world.enrol(beta_auth, revoked)
        world.call("CertificateRevoke", {"auth": beta_auth, "fingerprint": revoked.fingerprint_sha256})
        answer = world.call("AddressBind", {"auth": beta_auth, "address": "dr.c@direct.beta.example"})
        assert answer.status_code == 403 and error(answer)["code"] == "address-not-covered"


# -- authentication ------------------------------------------------------------------------------------------


def test_every_failed_attempt_costs_exactly_one_hash_check(world: ApiWorld) -> None:
    """Timing must not tell which identities exist: counted, not timed."""
    alpha = world.application("alpha")
    world.practice(alpha, "acct-1", ALPHA_ADDRESS)
    login = world.login(alpha, "acct-1", "desk")
    world.call(
        "LoginSave", {"auth": {**alpha, "accountId": "acct-1"}, "login": {"loginId": "off", "active": False}}
    )
    world.secrets.add("wrong-guess")
    attempts = {
        "unknown application": {"applicationId": "nobody", "applicationPassword": "wrong-guess"},
        "known application": {"applicationId": "alpha", "applicationPassword": "wrong-guess"},
        "unknown login": {"loginId": "alpha.nobody", "loginPassword": "wrong-guess"},
        "known login": {"loginId": login["loginId"], "loginPassword": "wrong-guess"},
        "disabled login": {"loginId": "alpha.off", "loginPassword": "wrong-guess"},
        "not a login id": {"loginId": "x", "loginPassword": "wrong-guess"},
    }
    for label, auth in attempts.items():
        before = len(world.hasher.verified)
        answer = world.call("PingWithAuth", {"auth": auth})
        assert answer.status_code == 401, label
        assert len(world.hasher.verified) - before == 1, label


def test_failures_from_another_address_do_not_lock_out_the_right_password(world: ApiWorld) -> None:
    alpha = world.application("alpha")
    world.practice(alpha, "acct-1", ALPHA_ADDRESS)
    login = world.login(alpha, "acct-1", "desk")
    world.secrets.add("attacker-guess")
    for identity in (alpha, login):
        wrong = {**identity}
        wrong["applicationPassword" if "applicationId" in identity else "loginPassword"] = "attacker-guess"
        # Guessers at four other addresses: a few checked failures each, then each must wait (its own
        # failures, then the identity's, which by now hold back every address that failed for it) ...
        for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
            statuses = [world.call_from(address, "PingWithAuth", {"auth": wrong})[0] for _ in range(5)]
            assert statuses[0] == 401 and statuses[-1] == 429, (address, statuses)
        # ... while the real client, whose address has not failed, still gets in with the right password.
        assert world.call_from("127.0.0.1", "PingWithAuth", {"auth": identity})[0] == 200
        # The identity is now held back as a whole: a new address gets one check, then must wait too.
        assert world.call_from("127.0.0.6", "PingWithAuth", {"auth": wrong})[0] == 401
        status, body, headers = world.call_from("127.0.0.6", "PingWithAuth", {"auth": identity})
        assert status == 429 and body["error"]["code"] == "too-many-failures" and "retry-after" in headers
        world.clock.now += 120
        assert world.call_from("127.0.0.6", "PingWithAuth", {"auth": identity})[0] == 200


def test_simultaneous_guesses_are_counted_before_they_are_checked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Three free failures then a wait: ten guesses at once must not all be checked."""
    with api_world(
        tmp_path, caplog, threads=12, max_requests_per_address=12, max_requests_per_application=12
    ) as world:
        world.application("alpha")
        world.secrets.update(f"guess-{i}" for i in range(10))
        barrier = threading.Barrier(10)

        def guess(i: int) -> int:
            session = requests.Session()
            session.get(f"{world.url}/openapi.json", verify=world.verify, timeout=60)  # connected and ready
            barrier.wait()
            auth = {"applicationId": "alpha", "applicationPassword": f"guess-{i}"}
            return session.post(
                f"{world.url}/PingWithAuth", json={"auth": auth}, verify=world.verify, timeout=60
            ).status_code

        world.hasher.pause[0] = 0.3  # every check takes a while: the guesses overlap
        before = len(world.hasher.verified)
        with ThreadPoolExecutor(10) as pool:
            statuses = list(pool.map(guess, range(10)))
        assert len(world.hasher.verified) - before == 4
        assert sorted(statuses) == [401] * 4 + [429] * 6


def test_a_disabled_application_disables_its_logins(world: ApiWorld) -> None:
    alpha = world.application("alpha")
    world.practice(alpha, "acct-1", ALPHA_ADDRESS)
    login = world.login(alpha, "acct-1", "desk")
    assert world.call("PingWithAuth", {"auth": login}).status_code == 200
    set_application_active(world.built.store, "alpha", False, actor="operator")
    for auth in (alpha, login):
        answer = world.call("PingWithAuth", {"auth": auth})
        assert answer.status_code == 401 and error(answer)["code"] == "unauthenticated"
    answer = world.call("MessageSend", send_body(login, ALPHA_ADDRESS))
    assert answer.status_code == 401
    assert world.stored_summaries() == []
    set_application_active(world.built.store, "alpha", True, actor="operator")
    assert world.call("PingWithAuth", {"auth": login}).status_code == 200


def test_a_password_typed_into_the_id_field_is_not_logged(
    world: ApiWorld, caplog: pytest.LogCaptureFixture
) -> None:
    world.application("alpha")
    typed = "Sup3r Secret, wrong box!"
    world.secrets.add(typed)
    for auth in (
        {"loginId": typed, "loginPassword": "x"},
        {"applicationId": typed, "applicationPassword": "x"},
    ):
        assert world.call("PingWithAuth", {"auth": auth}).status_code == 401
    world.call("PingWithAuth", {"auth": {"loginId": "alpha.desk", "loginPassword": "x"}})
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("api call=PingWithAuth")]
    assert "login=? " in lines[0] and "application=? " in lines[1]
    assert "login=alpha.desk " in lines[2]  # an id as presented, when it has the form of one


def test_login_ids_are_the_applications_own(world: ApiWorld) -> None:
    """One application must not learn which login ids another uses."""
    alpha, beta = world.application("alpha"), world.application("beta")
    for app, account in ((alpha, "a"), (beta, "b")):
        world.call("PracticeSave", {"auth": {**app, "accountId": account}, "name": account})
    alpha_login = world.login(alpha, "a", "desk")
    beta_login = world.login(beta, "b", "desk")
    assert (alpha_login["loginId"], beta_login["loginId"]) == ("alpha.desk", "beta.desk")
    for login, application in ((alpha_login, "alpha"), (beta_login, "beta")):
        assert world.call("PingWithAuth", {"auth": login}).json()["applicationId"] == application


# -- bodies and workers --------------------------------------------------------------------------------------


def _raw_post(world: ApiWorld, name: str, body: bytes, *, chunked: bool = False) -> requests.Response:
    data: Any = iter([body[i : i + 8192] for i in range(0, len(body), 8192)]) if chunked else body
    return requests.post(
        f"{world.url}/{name}",
        data=data,
        headers={"Content-Type": "application/json"},
        verify=world.verify,
        timeout=60,
    )


def test_bodies_are_limited_per_call_and_by_structure_before_parsing(world: ApiWorld) -> None:
    """A stranger's body is parsed before it is authenticated: its size and shape are bounded first."""
    nobody = b'{"auth": {"applicationId": "nobody", "applicationPassword": "x"}, '
    padded = nobody + b'"pad": "' + b"x" * 70_000 + b'"}'
    for chunked in (False, True):  # declared or not, 64 KiB is all a PingWithAuth may have
        answer = _raw_post(world, "PingWithAuth", padded, chunked=chunked)
        assert answer.status_code == 413 and error(answer)["code"] == "too-large", chunked
    shapes = {
        "objects": b'"pad": [' + b"{}," * 3000 + b"{}]}",
        "values": b'"pad": [' + b"0," * 20_000 + b"0]}",
        "depth": b'"pad": ' + b"[" * 20 + b"]" * 20 + b"}",
        "long number": b'"limit": ' + b"1" * 5000 + b"}",
        "not a number": b'"limit": NaN}',
    }
    for label, tail in shapes.items():
        answer = _raw_post(world, "MessageSend", nobody + tail)
        assert answer.status_code == 400 and error(answer)["code"] == "invalid-json", label
    assert len(world.hasher.verified) == 0  # none of them got as far as a password check
    # The multipart form's request part is as small as a JSON body.
    answer = requests.post(
        f"{world.url}/MessageSend",
        files=[("request", (None, padded, "application/json")), ("document", ("a.txt", b"x", "text/plain"))],
        verify=world.verify,
        timeout=60,
    )
    assert answer.status_code == 413 and error(answer)["field"] == "request"


class _Trickle:
    """A client that sends its headers, then a body at 1 KB/s, and reads the answer when one comes."""

    def __init__(self, world: ApiWorld, source: str, head: bytes) -> None:
        context = ssl.create_default_context(cafile=world.verify)
        raw = socket.create_connection(("127.0.0.1", world.built.server.port), source_address=(source, 0))
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.sock.sendall(head)
        self.answer: bytes = b""
        self.answered_after: float | None = None
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                data = None
            except OSError:
                data = b""
            if data is not None:
                self.answered_after = time.monotonic() - self._started
                self._read_rest(data)
                return
            try:
                self.sock.sendall(b" " * 100)
            except OSError:
                continue

    def _read_rest(self, first: bytes) -> None:
        """The whole answer: the server closes the connection after it (or goes quiet)."""
        received = first
        self.sock.settimeout(1.0)
        while first:
            try:
                first = self.sock.recv(65536)
            except OSError:
                break
            received += first
        self.answer = received

    @property
    def status(self) -> int | None:
        return int(self.answer.split(b" ", 2)[1]) if self.answer.startswith(b"HTTP/1.1 ") else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def test_a_trickling_stranger_is_cut_off_and_cannot_take_every_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with api_world(tmp_path, caplog, threads=4, body_timeout=2.0) as world:
        alpha = world.application("alpha")
        head = (
            b"POST /api/v1/PingWithAuth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 60000\r\n\r\n{"
        )
        tricklers = [_Trickle(world, "127.0.0.2", head) for _ in range(4)]
        try:
            # Two of them (half the workers) are admitted from one address, the others refused at once ...
            wait_for(lambda: sum(t.status == 429 for t in tricklers) == 2, timeout=20, what="two 429s")
            assert all(b"client-busy" in t.answer for t in tricklers if t.status == 429)
            # ... so a caller from elsewhere is served while the admitted two still trickle,
            started = time.monotonic()
            assert world.call("PingWithAuth", {"auth": alpha}, timeout=10).status_code == 200
            assert time.monotonic() - started < 5
            # and the two are cut off once the time for an unauthenticated body is up (not at 500 B/s).
            held = [t for t in tricklers if t.status != 429]
            wait_for(lambda: all(t.status == 408 for t in held), timeout=30, what="408 for the slow bodies")
            assert all(b"body-too-slow" in t.answer for t in held)
            assert all(t.answered_after is not None and t.answered_after < 20 for t in held)
        finally:
            for trickler in tricklers:
                trickler.close()


def test_one_application_cannot_take_every_worker(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A HISP that hangs holds each MessageSend: an application (and an account) gets only its share."""
    lab = start_lab(tmp_path / "lab")
    hole = BlackHole(lab)
    try:
        with api_world(
            tmp_path, caplog, lab=lab, endpoint=hole.endpoint, threads=6, max_requests_per_address=6
        ) as world:
            alpha, beta = world.application("alpha"), world.application("beta")
            for account in ("a1", "a2", "a3"):
                world.practice(alpha, account, f"dr.{account}@direct.alpha.example")
            world.call("PracticeSave", {"auth": {**beta, "accountId": "b1"}, "name": "B"})
            pool = ThreadPoolExecutor(2)
            hanging = [
                pool.submit(
                    world.call,
                    "MessageSend",
                    send_body({**alpha, "accountId": account}, f"dr.{account}@direct.alpha.example"),
                )
                for account in ("a1", "a2")
            ]
            wait_for(lambda: hole.accepted >= 2, what="two sends hanging at the HISP")
            # per account (three workers for alpha, half of them per account here: one) ...
            answer = world.call("PracticeGet", {"auth": {**alpha, "accountId": "a1"}})
            assert answer.status_code == 429 and error(answer)["code"] == "account-busy"
            assert answer.headers["Retry-After"] == "1"
            # ... and per application (three of six workers): a third call of alpha waits, beta does not.
            third = world.call("PracticeGet", {"auth": {**alpha, "accountId": "a3"}})
            assert third.status_code == 200  # two in progress: a third still fits
            with ThreadPoolExecutor(1) as more:
                held = more.submit(
                    world.call,
                    "MessageSend",
                    send_body({**alpha, "accountId": "a3"}, "dr.a3@direct.alpha.example"),
                )
                wait_for(lambda: hole.accepted >= 3, what="a third send hanging")
                answer = world.call("PingWithAuth", {"auth": alpha})
                assert answer.status_code == 429 and error(answer)["code"] == "application-busy"
                assert world.call("PingWithAuth", {"auth": {**beta, "accountId": "b1"}}).status_code == 200
                hole.close()  # the HISP goes away: the sends end (nothing more is sent)
                assert held.result().status_code == 200
            assert [f.result().status_code for f in hanging] == [200, 200]
            pool.shutdown()
            assert world.call("PingWithAuth", {"auth": alpha}).status_code == 200
    finally:
        hole.close()
        lab.stop()


# -- malformed and unusual input -----------------------------------------------------------------------------


def test_null_values_are_the_wrong_type_never_an_error(world: ApiWorld) -> None:
    alpha = world.application("alpha")
    auth = {**alpha, "accountId": "acct-1"}
    world.practice(alpha, "acct-1", ALPHA_ADDRESS)
    for name, body, where in (
        ("PracticeList", {"auth": alpha, "limit": None}, "limit"),
        ("LoginSave", {"auth": auth, "login": {"loginId": "desk", "active": None}}, "login.active"),
        ("MessageSend", send_body(auth, ALPHA_ADDRESS, metadata={"level": None}), "metadata.level"),
        ("PracticeSave", {"auth": auth, "name": None}, "name"),
        ("PingWithAuth", {"auth": {**alpha, "userId": None}}, "auth.userId"),
    ):
        answer = world.call(name, body)
        assert (answer.status_code, error(answer)["code"], error(answer)["field"]) == (
            400,
            "wrong-type",
            where,
        )


def test_text_that_xml_cannot_carry_is_refused_before_anything_is_recorded(world: ApiWorld) -> None:
    alpha = world.application("alpha")
    auth = {**alpha, "accountId": "acct-1"}
    world.practice(alpha, "acct-1", ALPHA_ADDRESS)
    document = {**ccda_document(), "name": "a\u0000.xml"}
    for metadata, documents, where in (
        ({"title": "a\u0000b"}, [ccda_document()], "metadata.title"),
        ({"comments": "line\u0007bell"}, [ccda_document()], "metadata.comments"),
        ({"patientId": "\ud800"}, [ccda_document()], "metadata.patientId"),
        ({}, [document], "documents[0].name"),
    ):
        body = {**send_body(auth, ALPHA_ADDRESS), "metadata": metadata, "documents": documents}
        answer = world.call("MessageSend", body)
        assert (answer.status_code, error(answer)["field"]) == (400, where), answer.text
    comments = "two lines\r\nare fine\tin comments"
    answer = world.call("MessageSend", send_body(auth, ALPHA_ADDRESS, metadata={"comments": comments}))
    assert answer.status_code == 200, answer.text
    assert len(_message_rows(world)) == 1  # only the message that was sent is recorded


def test_a_private_key_on_an_unsupported_curve_is_a_400(world: ApiWorld) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (it makes the secp112r1 key cryptography cannot)")
    key = subprocess.run(
        [openssl, "ecparam", "-name", "secp112r1", "-genkey", "-noout"], capture_output=True, check=True
    ).stdout.decode()
    world.secrets.add(key.splitlines()[1])
    alpha = world.application("alpha")
    auth = {**alpha, "accountId": "acct-1"}
    world.call("PracticeSave", {"auth": auth, "name": "A"})
    issued = world.issue("x", "x@direct.alpha.example")
    answer = world.call(
        "CertificateEnroll", {"auth": auth, "certificate": issued.cert_pem.decode(), "privateKey": key}
    )
    assert answer.status_code == 400 and error(answer)["field"] == "privateKey"
    assert "algorithm or curve" in error(answer)["message"]


def test_a_pkcs12_asking_for_too_much_key_derivation_is_refused_unopened(world: ApiWorld) -> None:
    alpha = world.application("alpha")
    auth = {**alpha, "accountId": "acct-1"}
    world.call("PracticeSave", {"auth": auth, "name": "A"})
    issued = world.issue("x", "x@direct.alpha.example")
    costly = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(1_000_001)
        .key_cert_algorithm(PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(b"pw")
    )
    data = pkcs12.serialize_key_and_certificates(b"x", issued.key, issued.cert, None, costly)
    body = {"auth": auth, "pkcs12": base64.b64encode(data).decode(), "pkcs12Password": "wrong password"}
    world.secrets.add("wrong password")
    started = time.monotonic()
    answer = world.call("CertificateEnroll", body)
    assert answer.status_code == 400 and error(answer)["code"] == "pkcs12-too-costly"
    asked = key_derivation_iterations(data)  # the key's and the certificates' encryption, and the MAC
    assert asked > MAX_PKCS12_ITERATIONS and str(asked) in error(answer)["message"]
    assert time.monotonic() - started < 5  # not opened: opening costs seconds of CPU (generous bound)


def test_a_send_stopped_before_anything_left_is_recorded_as_not_sent(world: ApiWorld) -> None:
    alpha = world.application("alpha")
    auth = {**alpha, "accountId": "acct-1"}
    issued = world.practice(alpha, "acct-1", ALPHA_ADDRESS)
    kept = world.tmp / "credentials" / f"{issued.fingerprint_sha256}.p12"
    kept.write_bytes(b"not a PKCS#12 file any more")  # the disk went bad
    answer = world.call("MessageSend", send_body(auth, ALPHA_ADDRESS))
    assert answer.status_code == 409 and error(answer)["code"] == "certificate-unusable"
    (row,) = _message_rows(world)
    assert row["outcome"] == "NotSent" and json.loads(row["detail"]) == {"error": "pkcs12-unreadable"}
    assert world.stored_summaries() == []


def test_the_passphrase_file_is_read_the_same_way_everywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    passphrase = tmp_path / "credential.pass"
    passphrase.write_text("passphrase with an editor's blank line\n\n")  # two newlines: the second is kept
    passphrase.chmod(0o600)
    with api_world(tmp_path, caplog) as world:
        alpha = world.application("alpha")
        world.practice(alpha, "acct-1", ALPHA_ADDRESS)
        answer = world.call("MessageSend", send_body({**alpha, "accountId": "acct-1"}, ALPHA_ADDRESS))
        assert answer.status_code == 200 and answer.json()["message"]["outcome"] == "Success", answer.text


def test_a_sent_message_is_answered_even_when_its_outcome_cannot_be_recorded(world: ApiWorld) -> None:
    """A 503 after the HISP stored the message would invite the caller to send the documents again."""
    alpha = world.application("alpha")
    auth = {**alpha, "accountId": "acct-1"}
    world.practice(alpha, "acct-1", ALPHA_ADDRESS)
    with sqlite3.connect(world.lab.directory / "registry.db") as conn:  # the database fails mid-call
        conn.execute(
            "CREATE TRIGGER finish_fails BEFORE UPDATE ON api_messages BEGIN SELECT no_such_function(); END"
        )
    answer = world.call("MessageSend", send_body(auth, ALPHA_ADDRESS))
    assert answer.status_code == 200, answer.text
    message = answer.json()["message"]
    assert message["outcome"] == "Success" and message["recorded"] is False
    assert len(world.stored_summaries()) == 1


def test_what_the_openapi_document_says_is_what_the_api_enforces(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from openapi_spec_validator import validate

    seen: list[bytes] = []

    def keep(stored: Any) -> None:
        seen.append((stored.directory / "metadata.xml").read_bytes())

    lab = start_lab(tmp_path / "lab", hook=keep)
    try:
        with api_world(tmp_path, caplog, lab=lab, max_documents=2) as world:
            _check_document_against_enforcement(world, seen, validate)
    finally:
        lab.stop()


def _mime_types(metadata: bytes) -> list[str]:
    from lxml import etree

    from xdr_edge.protocol.metadata import read_submit_objects

    return [entry.mime_type for entry in read_submit_objects(etree.fromstring(metadata)).document_entries]


def _check_document_against_enforcement(world: ApiWorld, seen: list[bytes], validate: Any) -> None:
    document = requests.get(f"{world.url}/openapi.json", verify=world.verify, timeout=30).json()
    validate(document)
    alpha = world.application("alpha")
    auth = {**alpha, "accountId": "acct-1"}
    world.practice(alpha, "acct-1", ALPHA_ADDRESS)

    # Every call that acts on an account says so, and application authentication without accountId is refused.
    from xdr_edge.api.schema import CALLS

    for name, spec in CALLS.items():
        operation = document["paths"][f"/api/v1/{name}"]["post"]
        auth_schema = operation["requestBody"]["content"]["application/json"]["schema"]["properties"]["auth"]
        refs = [o["$ref"] for o in auth_schema.get("oneOf", [auth_schema])]
        application = [r for r in refs if "ApplicationAuth" in r]
        if spec.needs_account:
            assert application == ["#/components/schemas/AccountApplicationAuth"], name
            component = document["components"]["schemas"]["AccountApplicationAuth"]
            assert "accountId" in component["required"]
            answer = world.call(name, {"auth": alpha})
            assert answer.status_code == 400 and error(answer)["field"] == "auth.accountId", name
        else:
            assert application == ["#/components/schemas/ApplicationAuth"], name

    # The documents limit is the server's, in the document and in what is accepted.
    send = document["paths"]["/api/v1/MessageSend"]["post"]["requestBody"]["content"]
    assert send["application/json"]["schema"]["properties"]["documents"]["maxItems"] == 2
    three = send_body(auth, ALPHA_ADDRESS, documents=[ccda_document()] * 3)
    answer = world.call("MessageSend", three)
    assert answer.status_code == 400 and error(answer)["field"] == "documents"

    # A declared media type is the document's, in JSON and as a form part's Content-Type.
    content = base64.b64encode(b"some bytes that look like nothing in particular").decode()
    answer = world.call(
        "MessageSend",
        send_body(auth, ALPHA_ADDRESS, documents=[{"content": content, "mimeType": "Application/PDF"}]),
    )
    assert answer.status_code == 200, answer.text
    assert _mime_types(seen[-1]) == ["application/pdf"]
    request_part = json.dumps(
        {"auth": auth, "from": ALPHA_ADDRESS, "to": ["records@direct.hospital.example"]}
    )
    answer = requests.post(
        f"{world.url}/MessageSend",
        files=[
            ("request", (None, request_part, "application/json")),
            ("document", ("scan", b"plain words", "application/pdf")),
            ("document", ("notes.txt", b"plain words", "application/octet-stream")),  # not declared: guessed
        ],
        verify=world.verify,
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert _mime_types(seen[-1]) == ["application/pdf", "text/plain"]
    answer = world.call(
        "MessageSend", send_body(auth, ALPHA_ADDRESS, documents=[{"content": content, "mimeType": "pdf"}])
    )
    assert answer.status_code == 400 and error(answer)["field"] == "documents[0].mimeType"

    # Duplicate keys are refused in the form's request part as in a JSON body.
    duplicated = request_part[:-1] + ', "from": "someone@else.example"}'
    for answer in (
        world.post_raw("MessageSend", duplicated[:-1].encode() + b', "documents": []}'),
        requests.post(
            f"{world.url}/MessageSend",
            files=[
                ("request", (None, duplicated, "application/json")),
                ("document", ("a", b"x", "text/plain")),
            ],
            verify=world.verify,
            timeout=60,
        ),
    ):
        assert answer.status_code == 400 and error(answer)["code"] == "invalid-json"


def test_every_refusal_code_is_documented() -> None:
    """The codes are the API's contract: every code a refusal may carry is registered (a refusal with another
    code cannot even be made) and listed in docs/api.md, and every code written in the source is registered."""
    from xdr_edge.api.refusals import CODES, Refusal

    root = Path(__file__).resolve().parents[1]
    docs = (root / "docs" / "api.md").read_text(encoding="utf-8")
    missing = sorted(code for code in CODES if f"`{code}`" not in docs)
    assert not missing, f"refusal codes not in docs/api.md: {missing}"
    written: set[str] = set()
    for path in sorted((root / "xdr_edge" / "api").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "Refusal"
                and len(node.args) >= 2
            ):
                if isinstance(node.args[1], ast.Constant):
                    written.add(str(node.args[1].value))
    assert len(written) > 30 and written <= CODES, sorted(written - CODES)
    with pytest.raises(ValueError, match="not a registered refusal code"):
        Refusal(409, "certificate", "a library's own code")


# -- many processes ------------------------------------------------------------------------------------------


def test_uploads_left_by_a_stopped_process_are_swept_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from xdr_edge.api.forms import UploadSpool

    spool = tmp_path / "spool"
    running = UploadSpool(spool)  # another API process on the same spool, still running
    (running.directory / "upload-live").mkdir()
    (running.directory / "upload-live" / "document-1").write_bytes(b"in use")
    dead = spool / "api-0123456789abcdef"  # a process that crashed mid-upload
    (dead / "upload-x").mkdir(parents=True)
    (dead / "upload-x" / "document-1").write_bytes(b"PHI left behind")
    (spool / "api-0123456789abcdef.lock").touch()
    (spool / "upload-old").mkdir()  # the layout before per-process directories
    (spool / "upload-old" / "document-1").write_bytes(b"PHI left behind")
    try:
        with api_world(tmp_path, caplog) as world:
            assert world.built.app.options.spool.swept == 2
            assert not dead.exists() and not (spool / "upload-old").exists()
            assert (running.directory / "upload-live" / "document-1").read_bytes() == b"in use"
            assert world.call("PingWithAuth", {"auth": world.application("alpha")}).status_code == 200
        assert running.directory.exists()  # the other process's directory survives this one's stop
    finally:
        running.close()
    assert sorted(p.name for p in spool.iterdir()) == []


def test_a_message_another_process_is_sending_is_not_called_interrupted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Several API processes share the registry database: whether a send is interrupted is the sending
    process's to say (its lease), not a matter of when the asking process started."""
    lab = start_lab(tmp_path / "lab")
    hole = BlackHole(lab)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        with api_world(tmp_path / "a", caplog, lab=lab, endpoint=hole.endpoint, lease_seconds=3.0) as sender:
            alpha = sender.application("alpha")
            auth = {**alpha, "accountId": "acct-1"}
            sender.practice(alpha, "acct-1", ALPHA_ADDRESS)
            with ThreadPoolExecutor(1) as pool:
                sending = pool.submit(sender.call, "MessageSend", send_body(auth, ALPHA_ADDRESS))
                wait_for(lambda: hole.accepted >= 1, what="the send hanging at the HISP")
                (row,) = _message_rows(sender)
                # a second API process, started while the message is being sent
                with api_world(tmp_path / "b", caplog, lab=lab, lease_seconds=3.0) as other:
                    other.secrets |= sender.secrets
                    status = other.call("MessageStatus", {"auth": auth, "messageId": row["id"]})
                    assert status.json()["message"]["state"] == "sending"
                    time.sleep(3.5)  # longer than a lease: the sending process renewed it
                    status = other.call("MessageStatus", {"auth": auth, "messageId": row["id"]})
                    assert status.json()["message"]["state"] == "sending"
                    sender.built.app.messages.close()  # the sending process stops vouching (as if it died)
                    wait_for(
                        lambda: (
                            other.call("MessageStatus", {"auth": auth, "messageId": row["id"]}).json()[
                                "message"
                            ]["state"]
                            == "interrupted"
                        ),
                        timeout=15,
                        what="the lease to run out",
                    )
                    hole.close()
                    assert sending.result().status_code == 200
                    status = other.call("MessageStatus", {"auth": auth, "messageId": row["id"]})
                    assert status.json()["message"]["state"] == "done"
    finally:
        hole.close()
        lab.stop()


# -- configuration -------------------------------------------------------------------------------------------


def test_api_serve_refuses_a_registry_database_others_can_read(tmp_path: Path, lab_for_cli: Lab) -> None:
    from click.testing import CliRunner

    from xdr_edge.cli import main

    registry = lab_for_cli.directory / "registry.db"
    passphrase = tmp_path / "credential.pass"
    passphrase.write_text("passphrase\n")
    passphrase.chmod(0o600)
    config = tmp_path / "api.toml"
    config.write_text(
        f"""
[server]
port = 0
cert = "{lab_for_cli.pki.server_cert}"
key = "{lab_for_cli.pki.server_key}"
[api]
registry = "{registry}"
credentials = "credentials"
credential_passphrase_file = "credential.pass"
spool = "spool"
"""
    )
    registry.chmod(0o644)
    result = CliRunner().invoke(main, ["api", "serve", "--config", str(config)])
    assert (
        result.exit_code == 2 and "readable by other users" in result.stderr and "chmod 600" in result.stderr
    )
    assert "listening" not in result.stdout


@pytest.fixture
def lab_for_cli(tmp_path: Path) -> Iterator[Lab]:
    lab = start_lab(tmp_path / "lab")
    try:
        yield lab
    finally:
        lab.stop()


def test_the_curl_examples_keep_secrets_out_of_the_command_line() -> None:
    """``ps`` shows every process's arguments: passwords and keys go in through stdin, never argv."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    blocks = docs.split("```sh")[1:]
    commands = [block.split("```")[0] for block in blocks]
    curl_lines = [
        line
        for block in commands
        for line in block.splitlines()
        if line.lstrip().startswith(("curl", "$CURL")) or "| curl" in line
    ]
    assert len(curl_lines) > 20
    for line in curl_lines:
        assert not re.search(r"\$\{?(APP|LOGIN|APP_PW|LOGIN_PW|P12_PW)\b", line), line
        for secret in ("PRIVATE KEY", "privateKey", "Password"):
            assert secret not in line, line
        assert line.lstrip().startswith("$CURL") or "<-" in line or "$CURL" in line, line  # the body: stdin
    assert "--data-binary @-" in docs.split("CURL='", 1)[1].split("'", 1)[0]
