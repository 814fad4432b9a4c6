"""The API's pure parts: password hashes, the failure throttle, request checks against the published schemas."""

from __future__ import annotations

import pytest

from xdr_edge.api.passwords import PasswordHasher, new_secret
from xdr_edge.api.refusals import Refusal
from xdr_edge.api.schema import CALLS, request_schema
from xdr_edge.api.throttle import FailureThrottle
from xdr_edge.api.validation import check


def test_password_hashes_are_salted_and_checked_by_their_own_parameters() -> None:
    cheap, default = PasswordHasher(log2_n=10), PasswordHasher()
    first, second = cheap.hash("correct horse"), cheap.hash("correct horse")
    assert first != second and first.startswith("scrypt$10$8$1$")
    assert default.verify("correct horse", first)  # the stored parameters decide, not the hasher's
    assert not cheap.verify("correct horsE", first)
    for broken in ("", "bcrypt$x", "scrypt$10$8$1$!!$!!", first.replace("$10$", "$40$"), first[:-4]):
        assert not cheap.verify("correct horse", broken)
    secret = new_secret()
    assert len(secret) == 40 and secret.isalnum() and secret != new_secret()


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_doubles_the_wait_after_the_free_failures_and_forgets() -> None:
    clock = _Clock()
    throttle = FailureThrottle(free=2, base=1.0, cap=4.0, window=100.0, max_keys=3, clock=clock)
    waits = []
    for _ in range(6):
        throttle.failed("k")
        waits.append(throttle.wait("k"))
    assert waits == [0.0, 0.0, 1.0, 2.0, 4.0, 4.0]
    clock.now += 3.0
    assert throttle.wait("k") == 1.0
    throttle.succeeded("k")
    assert throttle.wait("k") == 0.0
    throttle.failed("old")
    throttle.failed("old")
    throttle.failed("old")
    clock.now += 101.0
    assert throttle.wait("old") == 0.0  # outside the window: forgotten
    for key in ("a", "b", "c", "d"):
        for _ in range(3):
            throttle.failed(key)
    assert throttle.wait("a") == 0.0 and throttle.wait("d") == 1.0  # bounded: the oldest key went first


def _field(body: object, call: str = "MessageSend") -> tuple[str, str | None]:
    with pytest.raises(Refusal) as caught:
        check(body, request_schema(CALLS[call]))
    assert caught.value.status == 400
    return caught.value.code, caught.value.field


def test_requests_are_checked_against_the_published_schema_naming_the_field() -> None:
    auth = {"applicationId": "a", "applicationPassword": "p"}
    base: dict[str, object] = {
        "auth": auth,
        "from": "a@b.example",
        "to": ["c@d.example"],
        "documents": [{"content": "QQ=="}],
    }
    check(base, request_schema(CALLS["MessageSend"]))
    assert _field({**base, "documents": [{"content": "QQ=="}, {"content": 5}]}) == (
        "wrong-type",
        "documents[1].content",
    )
    assert _field({**base, "documents": [{"content": "QQ==", "colour": "x"}]}) == (
        "unknown-field",
        "documents[0].colour",
    )
    assert _field({**base, "metadata": {"level": "full"}}) == ("invalid-field", "metadata.level")
    assert _field({**base, "auth": {**auth, "accountId": "x" * 65}}) == ("invalid-field", "auth.accountId")
    assert _field({**base, "auth": {**auth, "userId": "tab\there"}}) == ("invalid-field", "auth.userId")
    assert _field({"auth": auth, "limit": True}, "PracticeList") == ("wrong-type", "limit")
    assert _field({"auth": auth, "limit": 0}, "PracticeList") == ("invalid-field", "limit")
    # the value is never in the message
    with pytest.raises(Refusal) as caught:
        check({"auth": {**auth, "applicationPassword": "x" * 2000}}, request_schema(CALLS["PingWithAuth"]))
    assert "xxxx" not in caught.value.message


def test_a_reservation_counts_until_it_is_given_back() -> None:
    clock = _Clock()
    throttle = FailureThrottle(free=1, base=1.0, cap=4.0, clock=clock)
    throttle.failed("k")  # an attempt in progress
    assert throttle.count("k") == 1 and throttle.wait("k") == 0.0
    throttle.failed("k")
    assert throttle.wait("k") == 1.0  # a second one at once must wait
    throttle.release("k")
    throttle.release("k")
    assert throttle.count("k") == 0 and throttle.wait("k") == 0.0
    throttle.release("never-seen")  # nothing to give back: nothing happens


def test_json_bodies_are_checked_for_shape_before_they_are_parsed() -> None:
    from xdr_edge.api.bodies import MAX_CONTAINERS, MAX_DEPTH, parse_json_object

    big = b'{"content": "' + b"QUJD" * 250_000 + b'", "list": [1, 2, {"a": [true, null]}]}'
    assert len(parse_json_object(big)["content"]) == 1_000_000  # a large string is one token
    tricky = b'{"text": "[[[[{{{{,,,,\\"]]]]", "n": -1.5e3}'
    assert parse_json_object(tricky) == {"text": '[[[[{{{{,,,,"]]]]', "n": -1500.0}
    for body, words in (
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested too deeply"),
        (b'{"a": [' + b"[]," * MAX_CONTAINERS + b"[]]}", "too many objects"),
        (b'{"a": [' + b"0," * 20_000 + b"0]}", "too many values"),
        (b'{"a": 1' + b"0" * 30 + b"}", "number longer"),
        (b'{"a": Infinity}', "not valid JSON"),
        (b'{"a": 1, "a": 2}', "appears twice"),
        (b'{"a": "\xff"}', "not valid JSON"),
        (b"[]", "must be a JSON object"),
    ):
        with pytest.raises(Refusal) as caught:
            parse_json_object(body)
        assert caught.value.status == 400 and caught.value.code == "invalid-json"
        assert words in caught.value.message, body[:40]


def test_a_refusal_carries_only_a_registered_code() -> None:
    from xdr_edge.api.refusals import CODES

    assert "sender-not-bound" in CODES
    with pytest.raises(ValueError):
        Refusal(400, "some-library-code", "x")


def test_log_safe_keeps_one_token_per_value() -> None:
    from xdr_edge.logsafe import MAX_LOGGED_CHARACTERS, log_safe

    assert log_safe("dr.who@direct.example") == "dr.who@direct.example"
    forged = "x status=200\ninjected line"
    assert "\n" not in log_safe(forged) and " " not in log_safe(forged).strip("'")[:1]
    assert log_safe(forged) == repr(forged)
    assert len(log_safe("a" * 5000)) == MAX_LOGGED_CHARACTERS + 2  # cut, quoted


def _p12(rounds: int | None, algorithm: object = None, cas: bool = False) -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.hazmat.primitives.serialization.pkcs12 import PBES

    from xdr_edge.minting import CertificateAuthority

    ca = CertificateAuthority.create("p12 test")
    issued = ca.issue_client("x", emails=("a@b.example",))
    if rounds is None:
        encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    else:
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(rounds)
            .key_cert_algorithm(algorithm or PBES.PBESv2SHA256AndAES256CBC)  # type: ignore[arg-type]
            .hmac_hash(hashes.SHA256())
            .build(b"pw")
        )
    return pkcs12.serialize_key_and_certificates(
        b"x", issued.key, issued.cert, [ca.cert] if cas else None, encryption
    )


def test_pkcs12_key_derivation_costs_are_read_without_decrypting() -> None:
    from cryptography.hazmat.primitives.serialization.pkcs12 import PBES

    from xdr_edge.pfx import Pkcs12Unreadable, key_derivation_iterations

    # key bag and certificate encryption with the rounds asked for, and the MAC (2048 rounds by default)
    assert key_derivation_iterations(_p12(5000)) == 5000 + 5000 + 2048
    assert (
        key_derivation_iterations(_p12(7000, PBES.PBESv1SHA1And3KeyTripleDESCBC, cas=True))
        == 7000 + 7000 + 2048
    )
    assert key_derivation_iterations(_p12(None)) == 2048  # unencrypted: only the MAC
    for broken in (
        b"",
        b"\x30\x03\x02\x01",
        b"\x30\x80\x02\x01\x03",
        b"not DER at all",
        b"\x30\x84\xff\xff\xff\xff",
    ):
        with pytest.raises(Pkcs12Unreadable):
            key_derivation_iterations(broken)


def test_pkcs12_in_ber_with_indefinite_lengths_is_read_too() -> None:
    """Older tools write BER: indefinite lengths and constructed OCTET STRINGs (RFC 7292 allows it)."""
    from xdr_edge.pfx import Pkcs12Unreadable, key_derivation_iterations

    def der(tag: int, content: bytes) -> bytes:
        n = len(content)
        length = bytes([n]) if n < 0x80 else bytes([0x82]) + n.to_bytes(2, "big")
        return bytes([tag]) + length + content

    def oid(dotted: str) -> bytes:
        arcs = [int(a) for a in dotted.split(".")]
        body = bytes([40 * arcs[0] + arcs[1]])
        for arc in arcs[2:]:
            chunk = [arc & 0x7F]
            arc >>= 7
            while arc:
                chunk.append(0x80 | (arc & 0x7F))
                arc >>= 7
            body += bytes(reversed(chunk))
        return der(0x06, body)

    def indefinite(tag: int, content: bytes) -> bytes:
        return bytes([tag, 0x80]) + content + b"\x00\x00"

    def pfx_with(scheme: str) -> bytes:
        salt_and_iterations = der(0x30, der(0x04, b"salt") + der(0x02, (4321).to_bytes(2, "big")))
        shrouded = der(0x30, der(0x30, oid(scheme) + salt_and_iterations) + der(0x04, b"encrypted key"))
        bag = der(0x30, oid("1.2.840.113549.1.12.10.1.2") + der(0xA0, shrouded))
        safe_contents = der(0x30, bag)
        # the data content as a constructed OCTET STRING in two pieces, in indefinite-length wrappers
        pieces = indefinite(0x24, der(0x04, safe_contents[:5]) + der(0x04, safe_contents[5:]))
        info = indefinite(0x30, oid("1.2.840.113549.1.7.1") + indefinite(0xA0, pieces))
        auth_safe = indefinite(
            0x30, oid("1.2.840.113549.1.7.1") + indefinite(0xA0, der(0x04, der(0x30, info)))
        )
        digest = der(0x30, der(0x30, oid("1.3.14.3.2.26")) + der(0x04, b"mac"))
        mac = der(0x30, digest + der(0x04, b"salt") + der(0x02, b"\x64"))
        return indefinite(0x30, der(0x02, b"\x03") + auth_safe + mac)

    assert key_derivation_iterations(pfx_with("1.2.840.113549.1.12.1.3")) == 4321 + 100
    with pytest.raises(Pkcs12Unreadable, match="scheme whose cost is unknown"):
        key_derivation_iterations(pfx_with("1.3.6.1.4.1.11591.4.11"))  # scrypt: its cost is memory too


def test_credentials_from_bytes_say_what_is_wrong_by_code() -> None:
    from xdr_edge.certs import MAX_PKCS12_ITERATIONS, parse_credential
    from xdr_edge.minting import CertificateAuthority
    from xdr_edge.protocol.errors import CertificateError

    ca = CertificateAuthority.create("credentials")
    one, other = (ca.issue_client(n, emails=(f"{n}@b.example",)) for n in ("one", "other"))
    parsed = parse_credential(certificate=one.cert_pem + ca.cert_pem, key=one.key_pem)
    assert parsed.cert == one.cert and parsed.chain == (ca.cert,)
    for arguments, code in (
        ({"certificate": one.cert_pem, "key": other.key_pem}, "key-mismatch"),
        ({"certificate": b"nope", "key": one.key_pem}, "certificate-unreadable"),
        (
            {
                "certificate": one.cert_pem,
                "key": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            },
            "key-unreadable",
        ),
        ({"pkcs12_data": b"\x30\x03\x02\x01\x03"}, "pkcs12-unreadable"),
        ({"pkcs12_data": _p12(MAX_PKCS12_ITERATIONS // 2)}, "pkcs12-too-costly"),
    ):
        with pytest.raises(CertificateError) as caught:
            parse_credential(**arguments)  # type: ignore[arg-type]
        assert caught.value.code == code, arguments
    with pytest.raises(ValueError):
        parse_credential(certificate=one.cert_pem)
