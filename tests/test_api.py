"""The JSON API over real HTTPS on loopback: a lab (PKI, registry, mutual-TLS receiver) and the API on the lab's
registry database, called with requests. Every test ends by reading every log record for the secrets it used."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.apiworld import ApiWorld, api_world, ccda_document, error
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.devtools.lab import start_lab
from xdr_edge.minting import CertificateAuthority, IssuedCert


@pytest.fixture
def world(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[ApiWorld]:
    with api_world(tmp_path, caplog) as state:
        yield state


def _practice(world: ApiWorld, auth: dict[str, str], account: str, address: str) -> IssuedCert:
    return world.practice(auth, account, address)


def _login(world: ApiWorld, auth: dict[str, str], account: str, login_name: str) -> dict[str, str]:
    return world.login(auth, account, login_name)


_error = error
_ccda_document = ccda_document


def _stored_summaries(world: ApiWorld) -> list[dict[str, Any]]:
    return world.stored_summaries()


# ------------------------------------------------------------------------------------------------------------


def test_ping_with_application_and_individual_authentication(world: ApiWorld) -> None:
    alpha = world.application("alpha")
    answer = world.call("PingWithAuth", {"auth": {**alpha, "accountId": "acct-1", "userId": "u-7"}})
    assert answer.status_code == 200
    assert answer.json() == {
        "flavour": "application",
        "applicationId": "alpha",
        "accountId": "acct-1",
        "userId": "u-7",
    }
    assert answer.headers["Cache-Control"] == "no-store"
    _practice(world, alpha, "acct-1", "dr.who@direct.alpha.example")
    login = _login(world, alpha, "acct-1", "FrontDesk.1")
    answer = world.call("PingWithAuth", {"auth": login})
    assert answer.status_code == 200
    assert answer.json() == {
        "flavour": "individual",
        "applicationId": "alpha",
        "loginId": "alpha.frontdesk.1",
        "accountId": "acct-1",
    }
    # login ids are case-insensitive; passwords are not
    assert world.call("PingWithAuth", {"auth": {**login, "loginId": "ALPHA.FRONTDESK.1"}}).status_code == 200
    wrong_case = {**login, "loginPassword": login["loginPassword"].swapcase()}
    assert world.call("PingWithAuth", {"auth": wrong_case}).status_code == 401


def test_practice_calls_need_application_authentication(world: ApiWorld) -> None:
    alpha = world.application("alpha")
    _practice(world, alpha, "acct-1", "dr.who@direct.alpha.example")
    login = _login(world, alpha, "acct-1", "frontdesk")
    for name, body in (
        ("PracticeSave", {"name": "Renamed by a login"}),
        ("PracticeGet", {}),
        ("AddressBind", {"address": "other@direct.alpha.example"}),
        ("LoginSave", {"login": {"loginId": "second"}}),
    ):
        answer = world.call(name, {"auth": login, **body})
        assert answer.status_code == 403, name
        assert _error(answer)["code"] == "flavour-not-allowed"
        assert _error(answer)["field"] == "auth"
    practice = world.call("PracticeGet", {"auth": {**alpha, "accountId": "acct-1"}}).json()["practice"]
    assert practice["name"] == "Clinic acct-1"
    assert practice["addresses"] == ["dr.who@direct.alpha.example"]
    assert [x["loginId"] for x in practice["logins"]] == ["alpha.frontdesk"]


def test_an_application_never_sees_or_changes_another_applications_practice(world: ApiWorld) -> None:
    alpha, beta = world.application("alpha"), world.application("beta")
    beta_cert = _practice(world, beta, "shared-1", "dr.beta@direct.beta.example")
    beta_auth = {**beta, "accountId": "shared-1"}
    alpha_on_shared = {**alpha, "accountId": "shared-1"}

    answer = world.call("PracticeGet", {"auth": alpha_on_shared})
    assert answer.status_code == 404 and _error(answer)["code"] == "account-not-found"
    assert world.call("PracticeList", {"auth": alpha}).json() == {"practices": []}
    # The same accountId in another application is another practice: saving it creates alpha's own.
    answer = world.call("PracticeSave", {"auth": alpha_on_shared, "name": "Alpha's own"})
    assert answer.status_code == 200 and answer.json()["created"] is True
    # Beta's address, certificate and messages stay beta's.
    answer = world.call("AddressBind", {"auth": alpha_on_shared, "address": "dr.beta@direct.beta.example"})
    assert answer.status_code == 403 and _error(answer)["code"] == "address-not-covered"
    # Even with a certificate that names it (a CA issued one to alpha too), the address stays beta's.
    world.enrol(alpha_on_shared, world.issue("alpha's copy", "dr.beta@direct.beta.example"))
    answer = world.call("AddressBind", {"auth": alpha_on_shared, "address": "dr.beta@direct.beta.example"})
    assert answer.status_code == 409 and _error(answer)["code"] == "address-taken"
    assert "beta" not in _error(answer)["message"]
    answer = world.call("AddressUnbind", {"auth": alpha_on_shared, "address": "dr.beta@direct.beta.example"})
    assert answer.status_code == 404 and _error(answer)["code"] == "address-not-bound"
    fingerprint = beta_cert.fingerprint_sha256
    answer = world.call("CertificateRevoke", {"auth": alpha_on_shared, "fingerprint": fingerprint})
    assert answer.status_code == 404 and _error(answer)["code"] == "certificate-not-found"
    answer = world.call(
        "CertificateEnroll",
        {
            "auth": alpha_on_shared,
            "certificate": beta_cert.cert_pem.decode(),
            "privateKey": beta_cert.key_pem.decode(),  # even with the key (leaked): it is beta's enrolment
        },
    )
    assert answer.status_code == 409 and _error(answer)["code"] == "certificate-taken"

    practice = world.call("PracticeGet", {"auth": beta_auth}).json()["practice"]
    assert practice["name"] == "Clinic shared-1"
    assert practice["addresses"] == ["dr.beta@direct.beta.example"]
    assert [(c["fingerprint"], c["revoked"]) for c in practice["certificates"]] == [(fingerprint, False)]
    assert world.call("PracticeGet", {"auth": alpha_on_shared}).json()["practice"]["name"] == "Alpha's own"
    assert [p["accountId"] for p in world.call("PracticeList", {"auth": beta}).json()["practices"]] == [
        "shared-1"
    ]
    # The registry the receiver uses has both, under ids the integrators never see.
    assert {p.id for p in world.lab.registry.practices()} >= {"alpha.shared-1", "beta.shared-1"}


def test_a_certificate_no_trust_anchor_vouches_for_is_not_enrolled(world: ApiWorld) -> None:
    alpha = world.application("alpha")
    auth = {**alpha, "accountId": "stranger-1"}
    assert world.call("PracticeSave", {"auth": auth, "name": "Stranger"}).status_code == 200
    elsewhere = CertificateAuthority.create("Someone else's CA").issue_client(
        "stranger", emails=("a@b.example",)
    )
    answer = world.call(
        "CertificateEnroll",
        {"auth": auth, "certificate": elsewhere.cert_pem.decode(), "privateKey": elsewhere.key_pem.decode()},
    )
    world.secrets.add(elsewhere.key_pem.decode().splitlines()[1])
    assert answer.status_code == 400 and _error(answer)["code"] == "certificate-not-anchored"
    assert world.lab.registry.certificate(elsewhere.fingerprint_sha256) is None


def test_message_send_reaches_the_receiver_with_the_practices_certificate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spooled: list[list[int]] = []  # the spooled documents' sizes, seen while the receiver has the message

    def while_sending(stored: object) -> None:
        spooled.append(sorted(p.stat().st_size for p in (tmp_path / "spool").rglob("document-*")))

    lab = start_lab(tmp_path / "lab", hook=while_sending)
    try:
        with api_world(tmp_path, caplog, lab=lab) as world:
            _send_and_check(world, spooled)
    finally:
        lab.stop()


def _send_and_check(world: ApiWorld, spooled: list[list[int]]) -> None:
    alpha = world.application("alpha")
    issued = _practice(world, alpha, "acct-1", "dr.who@direct.alpha.example")
    auth = {**alpha, "accountId": "acct-1", "userId": "u-7"}
    body = {
        "auth": auth,
        "from": "dr.who@direct.alpha.example",
        "to": ["records@direct.hospital.example"],
        "documents": [_ccda_document()],
        "metadata": {"level": "xds", "title": "Referral"},
    }
    answer = world.call("MessageSend", body)
    assert answer.status_code == 200, answer.text
    message = answer.json()["message"]
    assert message["outcome"] == "Success" and message["ok"] is True and message["state"] == "done"
    assert message["from"] == "dr.who@direct.alpha.example" and message["documents"] == 1
    (summary,) = _stored_summaries(world)
    assert summary["practice"] == "alpha.acct-1"  # the receiver identified the practice by its certificate
    assert summary["certificate_sha256"] == issued.fingerprint_sha256
    assert summary["submission_set_unique_id"] == message["result"]["submission_set_unique_id"]

    status = world.call("MessageStatus", {"auth": auth, "messageId": message["messageId"]})
    assert status.status_code == 200 and status.json()["message"] == message

    # A large document goes as a streamed multipart form: the request part first, then the documents.
    pdf = b"%PDF-1.4\n" + os.urandom(3 * 1024 * 1024) + b"\n%%EOF\n"
    request_part = {k: v for k, v in body.items() if k != "documents"}
    answer = requests.post(
        f"{world.url}/MessageSend",
        files=[
            ("request", (None, json.dumps(request_part), "application/json")),
            ("document", ("scan.pdf", pdf, "application/pdf")),
            ("document", ("ccd.xml", sample_ccda(), "text/xml")),
        ],
        verify=str(world.lab.ca_bundle),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"]["outcome"] == "Success"
    assert answer.json()["message"]["bytes"] == len(pdf) + len(sample_ccda())
    stored = [s for s in _stored_summaries(world) if len(s["document_unique_ids"]) == 2]
    assert len(stored) == 1 and stored[0]["practice"] == "alpha.acct-1"
    assert spooled[-1] == sorted([len(pdf), len(sample_ccda())])  # streamed to disk for the send ...
    assert list((world.tmp / "spool").rglob("document-*")) == []  # ... and removed after it

    # The key is kept encrypted, readable only by us, and never answered.
    (kept,) = (world.tmp / "credentials").iterdir()
    assert kept.name == f"{issued.fingerprint_sha256}.p12" and kept.stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(kept.read_bytes(), None)
    assert "PRIVATE KEY" not in world.call("PracticeGet", {"auth": auth}).text

    # Revoking the certificate deletes its key: the practice can no longer send.
    answer = world.call("CertificateRevoke", {"auth": auth, "fingerprint": issued.fingerprint_sha256})
    assert answer.status_code == 200 and answer.json()["certificate"]["revoked"] is True
    assert list((world.tmp / "credentials").iterdir()) == []
    answer = world.call("MessageSend", body)
    assert answer.status_code == 409 and _error(answer)["code"] == "no-sending-certificate"


def test_an_unbound_sender_is_refused_before_anything_is_sent(
    world: ApiWorld, caplog: pytest.LogCaptureFixture
) -> None:
    alpha = world.application("alpha")
    _practice(world, alpha, "acct-1", "dr.who@direct.alpha.example")
    auth = {**alpha, "accountId": "acct-1"}
    body = {
        "auth": auth,
        "from": "someone.else@direct.alpha.example",
        "to": ["records@direct.hospital.example"],
        "documents": [_ccda_document()],
    }
    answer = world.call("MessageSend", body)
    assert answer.status_code == 422
    assert _error(answer) == {
        "code": "sender-not-bound",
        # the address is not repeated: messages never repeat a submitted value (docs/api.md, Errors)
        "message": "from: not bound to this account; bind it with AddressBind; nothing was sent",
        "field": "from",
    }
    request_part = {k: v for k, v in body.items() if k != "documents"}
    # The spool directory replaced by a file: spooling a single document byte would fail (500), so a 422
    # proves that the documents were never read.
    spool = world.built.app.options.spool.directory
    spool.rename(spool.with_name("moved-away"))
    spool.write_text("not a directory")
    try:
        answer = requests.post(
            f"{world.url}/MessageSend",
            files=[
                ("request", (None, json.dumps(request_part), "application/json")),
                ("document", ("big.bin", os.urandom(2 * 1024 * 1024), "application/octet-stream")),
            ],
            verify=str(world.lab.ca_bundle),
            timeout=60,
        )
    finally:
        spool.unlink()
        spool.with_name("moved-away").rename(spool)
    assert answer.status_code == 422 and _error(answer)["code"] == "sender-not-bound"
    assert answer.headers.get("Connection") == "close"  # refused after the first part: the rest is not read
    assert _stored_summaries(world) == []
    assert not [r for r in caplog.records if r.name == "xdr_edge.receiver"]  # the receiver never heard of it


def test_a_login_acts_only_on_its_own_account(world: ApiWorld) -> None:
    alpha = world.application("alpha")
    _practice(world, alpha, "acct-a", "dr.a@direct.alpha.example")
    _practice(world, alpha, "acct-b", "dr.b@direct.alpha.example")
    sent_by_b = world.call(
        "MessageSend",
        {
            "auth": {**alpha, "accountId": "acct-b"},
            "from": "dr.b@direct.alpha.example",
            "to": ["records@direct.hospital.example"],
            "documents": [_ccda_document()],
        },
    )
    assert sent_by_b.status_code == 200, sent_by_b.text
    b_message = sent_by_b.json()["message"]["messageId"]
    login_a = _login(world, alpha, "acct-a", "desk-a")
    to = ["records@direct.hospital.example"]

    as_b = {"auth": {**login_a, "accountId": "acct-b"}, "from": "dr.b@direct.alpha.example", "to": to}
    answer = world.call("MessageSend", {**as_b, "documents": [_ccda_document()]})
    assert answer.status_code == 403 and _error(answer)["code"] == "account-forbidden"
    from_b = {"auth": login_a, "from": "dr.b@direct.alpha.example", "to": to, "documents": [_ccda_document()]}
    answer = world.call("MessageSend", from_b)
    assert answer.status_code == 422 and _error(answer)["code"] == "sender-not-bound"
    answer = world.call("MessageStatus", {"auth": login_a, "messageId": b_message})
    assert answer.status_code == 404 and _error(answer)["code"] == "message-not-found"
    answer = world.call("MessageStatus", {"auth": {**login_a, "accountId": "acct-b"}, "messageId": b_message})
    assert answer.status_code == 403
    assert len(_stored_summaries(world)) == 1  # only b's own message reached the receiver

    own = world.call("MessageSend", {**from_b, "from": "dr.a@direct.alpha.example"})
    assert own.status_code == 200 and own.json()["message"]["outcome"] == "Success"
    status = world.call("MessageStatus", {"auth": login_a, "messageId": own.json()["message"]["messageId"]})
    assert status.status_code == 200 and status.json()["message"]["accountId"] == "acct-a"
    assert (
        world.call(
            "MessageStatus", {"auth": {**alpha, "accountId": "acct-a"}, "messageId": b_message}
        ).status_code
        == 404
    )


def test_wrong_passwords_are_answered_identically_and_slowed_down(world: ApiWorld) -> None:
    alpha = world.application("alpha")
    _practice(world, alpha, "acct-1", "dr.who@direct.alpha.example")
    login = _login(world, alpha, "acct-1", "desk")
    guesses = ["guess-number-one", "guess-number-two"]
    world.secrets.update(guesses)

    def attempt(auth: dict[str, str]) -> tuple[int, dict[str, str], str | None]:
        answer = world.call("PingWithAuth", {"auth": auth})
        return (
            answer.status_code,
            _error(answer) if answer.status_code != 200 else {},
            answer.headers.get("Retry-After"),
        )

    pairs = [
        (
            {"applicationId": "alpha", "applicationPassword": guesses[0]},
            {"applicationId": "nobody", "applicationPassword": guesses[0]},
        ),
        (
            {"loginId": "alpha.desk", "loginPassword": guesses[1]},
            {"loginId": "alpha.no-such-desk", "loginPassword": guesses[1]},
        ),
    ]
    for known, unknown in pairs:
        seen = []
        for _ in range(4):  # three free failures, then the fourth imposes a wait
            seen.append((attempt(known), attempt(unknown)))
        for from_known, from_unknown in seen:
            assert (
                from_known
                == from_unknown
                == (
                    401,
                    {
                        "code": "unauthenticated",
                        "message": "unknown identity or wrong password",
                        "field": "auth",
                    },
                    None,
                )
            )
        # Now both identities must wait, identically, and even the right password is not checked.
        known_wait, unknown_wait = attempt(known), attempt(unknown)
        assert known_wait == unknown_wait
        assert known_wait[0] == 429 and known_wait[1]["code"] == "too-many-failures" and known_wait[2] == "2"
    right = {"loginId": "alpha.desk", "loginPassword": login["loginPassword"]}
    assert attempt(right)[0] == 429
    assert attempt({**alpha})[0] == 429
    world.clock.now += 2.5
    assert attempt(right)[0] == 200
    assert attempt({**alpha})[0] == 200
    # a success forgets this address's failures for the identity; another failure is free again
    assert attempt({"applicationId": "alpha", "applicationPassword": guesses[0]})[0] == 401
    assert attempt({**alpha})[0] == 200


def test_failures_from_one_address_are_slowed_down_across_identities(world: ApiWorld) -> None:
    world.application("alpha")
    world.secrets.add("not-the-password")
    statuses = [
        world.call(
            "PingWithAuth", {"auth": {"applicationId": f"app-{i}", "applicationPassword": "not-the-password"}}
        ).status_code
        for i in range(52)
    ]
    assert statuses[:51] == [401] * 51  # 50 free failures per address in this fixture, then a wait
    assert statuses[51] == 429
    assert world.call("PingWithAuth", {"auth": {**world.application("beta")}}).status_code == 429
    world.clock.now += 1.5
    assert (
        world.call(
            "PingWithAuth",
            {"auth": {"applicationId": "beta", "applicationPassword": world.passwords["beta"]}},
        ).status_code
        == 200
    )


def test_bad_input_names_the_field_and_never_echoes_it(world: ApiWorld) -> None:
    alpha = world.application("alpha")
    auth = {**alpha, "accountId": "acct-1"}
    cases: list[tuple[str, Any, int, str, str]] = [
        ("PracticeSave", {"auth": auth}, 400, "missing-field", "name"),
        ("PracticeSave", {"auth": auth, "name": 7}, 400, "wrong-type", "name"),
        ("PracticeSave", {"auth": auth, "name": "x", "colour": "red"}, 400, "unknown-field", "colour"),
        (
            "PracticeSave",
            {"auth": {**alpha, "accountId": "has space"}, "name": "x"},
            400,
            "invalid-field",
            "auth.accountId",
        ),
        (
            "PracticeSave",
            {"auth": {**alpha, "loginId": "x", "loginPassword": "y" * 12}, "name": "x"},
            400,
            "invalid-auth",
            "auth",
        ),
        ("PracticeSave", {"name": "x"}, 401, "missing-credentials", "auth"),
        (
            "PracticeSave",
            {"auth": {**alpha, "applicationPassword": 12345}},
            400,
            "wrong-type",
            "auth.applicationPassword",
        ),
        ("PracticeGet", {"auth": alpha}, 400, "missing-field", "auth.accountId"),
        (
            "LoginSave",
            {"auth": auth, "login": {"loginId": "ok-id", "password": "short"}},
            400,
            "invalid-field",
            "login.password",
        ),
        (
            "MessageSend",
            {"auth": auth, "from": "a@b.example", "to": [], "documents": [_ccda_document()]},
            400,
            "invalid-field",
            "to",
        ),
    ]
    world.call("PracticeSave", {"auth": auth, "name": "Clinic"})
    for name, body, status, code, where in cases:
        answer = world.call(name, body)
        assert (answer.status_code, _error(answer)["code"], _error(answer).get("field")) == (
            status,
            code,
            where,
        ), (name, body)
    # the wrongly typed password is not repeated back
    answer = world.call(
        "PracticeSave", {"auth": {**alpha, "applicationPassword": ["secret-in-a-list"]}, "name": "x"}
    )
    assert answer.status_code == 400 and "secret-in-a-list" not in answer.text
    answer = requests.post(
        f"{world.url}/PracticeSave",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        verify=str(world.lab.ca_bundle),
        timeout=30,
    )
    assert answer.status_code == 400 and _error(answer)["code"] == "invalid-json"
    answer = requests.post(f"{world.url}/NoSuchCall", json={}, verify=str(world.lab.ca_bundle), timeout=30)
    assert answer.status_code == 404 and _error(answer)["code"] == "unknown-call"
    answer = world.call("PingWithAuth", {"auth": alpha}, headers={"Content-Type": "text/plain"})
    assert answer.status_code == 415
    # read as media types: case and parameters do not matter; an unreadable one is unsupported, not an error
    answer = world.call(
        "PingWithAuth", {"auth": alpha}, headers={"Content-Type": "Application/JSON; Charset=UTF-8"}
    )
    assert answer.status_code == 200, answer.text
    for unreadable in ('application/json; charset="open', "application/json; a=1; a=2", "json"):
        answer = world.call("PingWithAuth", {"auth": alpha}, headers={"Content-Type": unreadable})
        assert answer.status_code == 415 and _error(answer)["code"] == "unsupported-media-type", unreadable


def test_the_served_openapi_document_is_valid_and_lists_every_call(world: ApiWorld) -> None:
    from openapi_spec_validator import validate

    answer = requests.get(f"{world.url}/openapi.json", verify=str(world.lab.ca_bundle), timeout=30)
    assert answer.status_code == 200
    document = answer.json()
    validate(document)
    assert {path.rsplit("/", 1)[1] for path in document["paths"]} == {
        "PingWithAuth",
        "PracticeSave",
        "PracticeGet",
        "PracticeList",
        "CertificateEnroll",
        "CertificateRevoke",
        "AddressBind",
        "AddressUnbind",
        "LoginSave",
        "MessageSend",
        "MessageStatus",
    }
    assert "multipart/form-data" in document["paths"]["/api/v1/MessageSend"]["post"]["requestBody"]["content"]


def test_pkcs12_enrolment_and_login_reset(world: ApiWorld) -> None:
    alpha = world.application("alpha")
    auth = {**alpha, "accountId": "acct-1"}
    world.call("PracticeSave", {"auth": auth, "name": "Clinic"})
    issued = world.issue("p12 sender", "dr.p12@direct.alpha.example")
    bundle = world.tmp / "sender.p12"
    issued.write_p12(bundle, b"p12-password-for-the-test")
    world.secrets.add("p12-password-for-the-test")
    body = {
        "auth": auth,
        "pkcs12": base64.b64encode(bundle.read_bytes()).decode(),
        "pkcs12Password": "wrong-p12-password",
    }
    world.secrets.add("wrong-p12-password")
    answer = world.call("CertificateEnroll", body)
    assert answer.status_code == 400 and _error(answer)["field"] == "pkcs12"
    answer = world.call("CertificateEnroll", {**body, "pkcs12Password": "p12-password-for-the-test"})
    assert answer.status_code == 200 and answer.json()["certificate"]["canSend"] is True
    assert answer.json()["created"] is True
    assert (
        world.call("CertificateEnroll", {**body, "pkcs12Password": "p12-password-for-the-test"}).json()[
            "created"
        ]
        is False
    )

    chosen = "a chosen login password"
    world.secrets.add(chosen)
    answer = world.call(
        "LoginSave", {"auth": auth, "login": {"loginId": "desk", "password": chosen, "userId": "u-1"}}
    )
    assert answer.status_code == 200 and "loginPassword" not in answer.json() and chosen not in answer.text
    assert (
        world.call("PingWithAuth", {"auth": {"loginId": "alpha.desk", "loginPassword": chosen}}).json()[
            "userId"
        ]
        == "u-1"
    )
    reset = world.call("LoginSave", {"auth": auth, "login": {"loginId": "desk"}})
    assert reset.json()["created"] is False
    world.secrets.add(reset.json()["loginPassword"])
    assert (
        world.call("PingWithAuth", {"auth": {"loginId": "alpha.desk", "loginPassword": chosen}}).status_code
        == 401
    )
    assert (
        world.call(
            "PingWithAuth",
            {"auth": {"loginId": "alpha.desk", "loginPassword": reset.json()["loginPassword"]}},
        ).status_code
        == 200
    )
    # Login ids are the application's own: another application's "desk" is another login, and nothing tells
    # it that alpha has one; alpha cannot give the same id to two of its accounts.
    beta = world.application("beta")
    world.call("PracticeSave", {"auth": {**beta, "accountId": "b"}, "name": "B"})
    theirs = world.call("LoginSave", {"auth": {**beta, "accountId": "b"}, "login": {"loginId": "DESK"}})
    assert theirs.status_code == 200 and theirs.json()["login"]["loginId"] == "beta.desk"
    world.secrets.add(theirs.json()["loginPassword"])
    world.call("PracticeSave", {"auth": {**alpha, "accountId": "acct-2"}, "name": "Second"})
    taken = world.call("LoginSave", {"auth": {**alpha, "accountId": "acct-2"}, "login": {"loginId": "DESK"}})
    assert taken.status_code == 409 and _error(taken)["code"] == "login-taken"
    # every change is in the registry's audit log, with the application as the actor, and no secret
    actions = {(e.actor, e.action) for e in world.lab.registry.audit_log(100)}
    assert ("api application alpha", "login.save") in actions
    assert ("api application alpha", "certificate.enroll") in actions
    audit_text = json.dumps([e.as_dict() for e in world.lab.registry.audit_log(100)])
    assert chosen not in audit_text and "scrypt$" not in audit_text
