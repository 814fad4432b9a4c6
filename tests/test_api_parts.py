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
