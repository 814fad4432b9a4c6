"""Every input that once broke the JSON API's readers (the fuzz targets ``api-json``, ``api-form`` and ``api``,
docs/fuzzing.md), through the product's own entry point: the API's WSGI app in-process, built by ``build_api``
(:class:`tests.fuzz.api_world.ApiWorld`). The contract: a 4xx JSON refusal with a registered code whose message
and field are short printable lines of ours, naming what is wrong and where, never repeating what was sent; no
500.

The committed inputs are in ``tests/fuzz/regressions/api-*`` (each also a seed of its target). An input that
needs a private key (a certificate with an unreadable public key) is made here at run time instead: no key is
ever committed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PublicFormat,
    pkcs12,
)

from tests.fuzz.api_corpus import JSON, form, form_content_type, split_call
from tests.fuzz.api_world import APP_AUTH, RECIPIENT, SENDER, ApiReply, ApiWorld
from tests.fuzz.corpus import regression_inputs, split_entity
from tests.panics import PANIC_TEXT, panics
from xdr_edge.api.refusals import SHOWN_NAME_LIMIT, shown_name
from xdr_edge.certs import parse_certificates, parse_credential
from xdr_edge.protocol.errors import CertificateError


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiWorld]:
    w = ApiWorld(tmp_path_factory.mktemp("api-fuzz-findings"))
    yield w
    w.close()


def _post(world: ApiWorld, data: bytes) -> ApiReply:
    name, rest = split_call(data)
    content_type, body = split_entity(rest, JSON)
    return world.post(f"/api/v1/{name}", content_type, body)


def _refusal(reply: ApiReply, status: int = 400) -> dict[str, str]:
    assert reply.status == status, reply.body[:300]
    error: dict[str, str] = json.loads(reply.body)["error"]
    assert error["message"].isprintable() and len(error["message"]) <= 300, error
    assert "field" not in error or (error["field"].isprintable() and len(error["field"]) <= 100), error
    return error


def _form_input(body: bytes) -> bytes:
    return b"MessageSend\nContent-Type: " + form_content_type().encode() + b"\r\n\r\n" + body


# -- api-json ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", regression_inputs("api-json"), ids=lambda p: p.name)
def test_committed_api_json_regressions(world: ApiWorld, path: Path) -> None:
    """Field names of control characters are named escaped and cut (they were shown raw, or as a repr four
    times their length)."""
    error = _refusal(_post(world, path.read_bytes()))
    assert "\\x7f" in error["field"] or "\\x01" in error["field"], error


def test_an_unknown_field_of_control_characters_is_named_escaped_and_cut(world: ApiWorld) -> None:
    data = Path(__file__).parent / "fuzz/regressions/api-json/unknown-field-named-by-control-characters.txt"
    error = _refusal(_post(world, data.read_bytes()))
    assert error["code"] == "unknown-field"
    assert error["field"] == "auth." + "\\x7f" * (SHOWN_NAME_LIMIT // 4) + "..."
    assert error["message"] == f"{error['field']}: is not a field of this call"


def test_a_duplicate_field_of_control_characters_is_named_escaped(world: ApiWorld) -> None:
    data = Path(__file__).parent / "fuzz/regressions/api-json/duplicate-field-named-by-control-characters.txt"
    error = _refusal(_post(world, data.read_bytes()))
    assert (error["code"], error["field"]) == ("invalid-json", "\\x01x")
    assert error["message"] == "the field '\\x01x' appears twice in one object"


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("from", "from"),
        ("é" * 64, "é" * 64),
        ("a" * 65, "a" * 64 + "..."),
        ("\U000e0001x", "\\U000e0001x"),
        ("\x00" * 200, "\\x00" * 16 + "..."),
    ],
)
def test_shown_name(name: str, shown: str) -> None:
    assert shown_name(name) == shown
    assert len(shown_name(name)) <= SHOWN_NAME_LIMIT + 3


# -- api-form ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", regression_inputs("api-form"), ids=lambda p: p.name)
def test_committed_api_form_regressions(world: ApiWorld, path: Path) -> None:
    error = _refusal(_post(world, b"MessageSend\n" + path.read_bytes()))
    assert error["code"] == "bad-form"


def test_a_part_header_that_is_not_utf8_is_named_without_quoting_the_document(world: ApiWorld) -> None:
    """The multipart package's text quoted the bytes it could not decode: here a document's (PHI)."""
    path = Path(__file__).parent / "fuzz/regressions/api-form/part-header-not-utf-8.mime"
    error = _refusal(_post(world, b"MessageSend\n" + path.read_bytes()))
    assert error == {
        "code": "bad-form",
        "message": "part 2 of the form: a header line is not UTF-8 text",
        "field": "document[0]",
    }


def _request() -> bytes:
    return json.dumps({"auth": APP_AUTH, "from": SENDER, "to": [RECIPIENT]}).encode()


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"Content-Disposition: attachment", "its Content-Disposition is not form-data (RFC 7578 §4.2)"),
        (b"Content-Type: text/plain", "it has no Content-Disposition header (RFC 7578 §4.2)"),
        (b"Content-Disposition form-data", "a header line has no colon (name: value)"),
        (
            b"X-A: 1\r\n" * 17 + b"Content-Disposition: form-data",
            "its headers exceed the limits (at most 16 header lines",
        ),
    ],
)
def test_malformed_part_headers_are_named_in_our_words(world: ApiWorld, header: bytes, message: str) -> None:
    body = form([("request", None, JSON, _request()), ("document", "a.txt", None, b"text")])
    body = body.replace(b'Content-Disposition: form-data; name="document"; filename="a.txt"', header)
    error = _refusal(_post(world, _form_input(body)))
    assert error["code"] == "bad-form"
    assert error["message"].startswith(f"part 2 of the form: {message}"), error
    assert error["field"] == "document[0]"


def test_a_form_cut_short_says_which_part_it_ends_in(world: ApiWorld) -> None:
    body = form([("request", None, JSON, _request()), ("document", "a.txt", None, b"some text")])
    error = _refusal(_post(world, _form_input(body[: body.index(b"some text") + 4])))
    assert error == {
        "code": "bad-form",
        "message": "the body ends in part 2, before the closing boundary line (--boundary--)",
        "field": "document[0]",
    }


def test_an_unexpected_part_name_is_shown_escaped_and_cut(world: ApiWorld) -> None:
    body = form([("request", None, JSON, _request()), ("\x01" * 300, None, None, b"text")])
    error = _refusal(_post(world, _form_input(body)))
    shown = "\\x01" * 16 + "..."
    assert error["message"] == f"unexpected form part '{shown}': after 'request' only 'document' parts"


# -- api ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", regression_inputs("api"), ids=lambda p: p.name)
def test_committed_api_regressions(world: ApiWorld, path: Path) -> None:
    """A 4xx refusal whose message repeats none of the request's values."""
    data = path.read_bytes()
    reply = _post(world, data)
    assert 400 <= reply.status < 500, reply.body[:300]
    error = _refusal(reply, reply.status)
    content_type, body = split_entity(split_call(data)[1], JSON)
    if content_type == JSON:
        sent = json.loads(body)
        assert not [v for v in sent.values() if isinstance(v, str) and v in error["message"]], error


def test_a_form_document_named_with_control_characters_is_refused_not_a_500(world: ApiWorld) -> None:
    """A part's filename becomes the DocumentEntry's title: it was taken unchecked, and lxml refused it while
    the message was built (500). It now meets the rule of a JSON document's ``name``."""
    path = Path(__file__).parent / "fuzz/regressions/api/form-filename-control-characters.mime"
    assert _refusal(_post(world, path.read_bytes())) == {
        "code": "invalid-field",
        "message": "document[0].filename: must be printable text (no control characters)",
        "field": "document[0].filename",
    }


def test_an_unbound_sender_is_refused_without_repeating_the_address(world: ApiWorld) -> None:
    path = Path(__file__).parent / "fuzz/regressions/api/unbound-sender-repeated-in-the-message.json"
    assert _refusal(_post(world, path.read_bytes()), 422) == {
        "code": "sender-not-bound",
        "message": "from: not bound to this account; bind it with AddressBind; nothing was sent",
        "field": "from",
    }


def _enrol(world: ApiWorld, certificate: bytes, key: bytes) -> ApiReply:
    body: dict[str, Any] = {
        "auth": APP_AUTH,
        "certificate": certificate.decode(),
        "privateKey": key.decode(),
    }
    return world.post("/api/v1/CertificateEnroll", JSON, json.dumps(body).encode())


def test_a_certificate_whose_public_key_is_off_its_curve_is_refused_not_a_500(world: ApiWorld) -> None:
    """The fuzzer changed a byte of an EC point in an enrolled certificate: cryptography parses the public key
    only when asked, and raised ValueError out of the key-pair check (a 500). The key is made here: no key is
    committed."""
    issued = world.edge.pki.ca.issue_client("off-curve", emails=(SENDER,))
    der = bytearray(issued.cert.public_bytes(Encoding.DER))
    point = bytes(issued.cert.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
    at = bytes(der).index(point)
    der[at + 5] ^= 0x01  # an X coordinate no longer on the curve
    error = _refusal(_enrol(world, _pem(bytes(der)), issued.key_pem))
    assert error == {
        "code": "invalid-field",
        "message": "certificate: certificate 1: its public key cannot be read (RFC 5280 §4.1.2.7)",
        "field": "certificate",
    }


def _pem(der: bytes) -> bytes:
    return b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"


def _with_unreadable_issuer(world: ApiWorld) -> tuple[bytes, bytes]:
    """A certificate of the world's CA whose issuer name holds a byte that is not UTF-8 (a UTF8String, RFC 5280
    §4.1.2.4), and its key."""
    issued = world.edge.pki.ca.issue_client("bad issuer", emails=(SENDER,))
    der = bytearray(issued.cert.public_bytes(Encoding.DER))
    issuer_cn = issued.cert.issuer.rfc4514_string().split("CN=")[1].split(",")[0].encode()
    der[bytes(der).index(issuer_cn) + 1] = 0xFF
    return _pem(bytes(der)), issued.key_pem


def test_a_certificate_whose_issuer_name_does_not_parse_is_refused_not_a_500(world: ApiWorld) -> None:
    """cryptography parses a name when it is first read: the registry's message read the issuer and raised
    ValueError (a 500). Every field we read is parsed once, where the certificate is read."""
    certificate, key = _with_unreadable_issuer(world)
    error = _refusal(_enrol(world, certificate, key))
    assert error == {
        "code": "invalid-field",
        "message": "certificate: certificate 1: its issuer name cannot be read (RFC 5280 §4.1.2.4)",
        "field": "certificate",
    }


def test_parse_certificates_names_the_certificate_and_the_field_that_does_not_parse(world: ApiWorld) -> None:
    good = world.issued["sender"].cert_pem
    certificate, _ = _with_unreadable_issuer(world)
    with pytest.raises(CertificateError) as raised:
        parse_certificates(good + certificate, location="chain.pem")
    assert (raised.value.code, raised.value.location) == ("certificate-field-unreadable", "chain.pem")
    assert raised.value.message == "certificate 2: its issuer name cannot be read (RFC 5280 §4.1.2.4)"


def test_the_form_seed_sends_and_answers_json(world: ApiWorld) -> None:
    """The world is what the fuzzer needs: a multipart MessageSend reaches the send (a refused connection)."""
    body = form([("request", None, JSON, _request()), ("document", "ccd.txt", "text/plain", b"hello")])
    reply = _post(world, _form_input(body))
    assert reply.status == 200, reply.body[:300]
    assert json.loads(reply.body)["message"]["outcome"] == "TransportError"


def test_a_pkcs12_password_holding_a_nul_is_refused_not_a_panic(world: ApiWorld) -> None:
    """Found by fuzzing the values of the API's calls: ``cryptography``'s ``load_pkcs12`` panics on a password
    with a NUL character once the file parses (pyo3's ``PanicException``, a ``BaseException``, not a
    ``ValueError``), and the call got no answer at all. Such a password cannot be any file's (OpenSSL reads a
    C string): refused as a wrong password before the library sees it. The file is made here: no key is
    committed."""
    spare = world.issued["spare"]
    p12 = pkcs12.serialize_key_and_certificates(
        b"spare", spare.key, spare.cert, None, BestAvailableEncryption(b"right password")
    )
    with pytest.raises(CertificateError) as raised:
        parse_credential(pkcs12_data=p12, password=b"right\x00password")
    assert raised.value.code == "pkcs12-unreadable" and "NUL" in raised.value.message
    body = {
        "auth": APP_AUTH,
        "pkcs12": base64.b64encode(p12).decode(),
        "pkcs12Password": "right\u0000password",
    }
    error = _refusal(world.post("/api/v1/CertificateEnroll", JSON, json.dumps(body).encode()))
    assert (error["code"], error["field"]) == ("invalid-field", "pkcs12"), error


def test_a_panic_inside_a_call_is_a_json_500_and_the_next_call_is_answered(
    world: ApiWorld, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The API's last line of defence catches what is not an ``Exception`` too (only a request to stop the
    process passes): before, such a panic left the call without an answer and the connection dropped."""

    monkeypatch.setattr("xdr_edge.api.calls.parse_credential", panics)
    body = world.enrol_body(world.issued["spare"])
    reply = world.post("/api/v1/CertificateEnroll", JSON, json.dumps(body).encode())
    answer = json.loads(reply.body)
    assert reply.status == 500 and answer["error"]["code"] == "internal-error", reply.body[:300]
    assert answer["requestId"] == reply.headers["x-request-id"]
    assert reply.headers["connection"] == "close"
    # logged with its type and where it happened, not its text: a panic prints the value it failed on
    assert "Panic inside a library" in caplog.text and "in panics" in caplog.text, caplog.text
    assert PANIC_TEXT not in caplog.text
    monkeypatch.undo()
    ping = world.post("/api/v1/PingWithAuth", JSON, json.dumps({"auth": APP_AUTH}).encode())
    assert ping.status == 200, ping.body[:300]
