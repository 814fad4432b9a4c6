"""Who is calling: the ``auth`` object of every request, in its two flavours.

- *application*: ``applicationId`` + ``applicationPassword`` identify an integrator's application, which then
  acts on its own accounts by naming ``accountId`` (its key for a practice) and ``userId`` (its key for a user);
- *individual*: ``loginId`` + ``loginPassword`` of one practice's login; it acts only on that practice.

Every failure to authenticate (unknown identity, wrong password, disabled application or login) is the same
401 after the same amount of work (an unknown identity is checked against a dummy hash), and counts against
the identity as presented and against the client address (:mod:`.throttle`). While either must wait, the
answer is 429 and the password is not checked at all.

Successful checks are remembered for a few minutes as an HMAC of the password under a key that exists only in
this process's memory, tied to the stored hash: a repeated call skips the slow hash, a changed password (a new
stored hash) is never served from memory, and nothing kept here can be turned back into a password.
"""

from __future__ import annotations

__all__ = ["Authenticator", "Flavour", "Principal"]

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from xdr_edge.api.passwords import PasswordHasher
from xdr_edge.api.refusals import UNAUTHENTICATED_MESSAGE, Refusal
from xdr_edge.api.throttle import FailureThrottle
from xdr_edge.registry.accounts import AccountStore


class Flavour(StrEnum):
    APPLICATION = "application"
    INDIVIDUAL = "individual"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Application: ``account_id``/``user_id`` are what the request named (resolved per call). Individual: the
    login's practice, that practice's ``account_id`` (for the owning application) and the login's ``user_id``.
    """

    flavour: Flavour
    application_id: str | None = None
    login_id: str | None = None
    practice_id: str | None = None
    account_id: str | None = None
    user_id: str | None = None

    @property
    def actor(self) -> str:
        """Who the registry's audit rows name."""
        if self.flavour is Flavour.APPLICATION:
            return f"api application {self.application_id}"
        return f"api login {self.login_id}"


@dataclass(frozen=True)
class _Presented:
    flavour: Flavour
    identity: str
    password: str


_MEMO_SECONDS = 300.0
_MEMO_ENTRIES = 10_000


class Authenticator:
    """Checks ``auth`` objects against the account store; thread-safe (one per running API)."""

    def __init__(
        self,
        store: AccountStore,
        *,
        hasher: PasswordHasher | None = None,
        identity_throttle: FailureThrottle | None = None,
        address_throttle: FailureThrottle | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._hasher = hasher or PasswordHasher()
        self._identities = identity_throttle or FailureThrottle(free=3, base=1.0, cap=60.0)
        # many people may share one address (a practice behind NAT): more free failures, a shorter cap
        self._addresses = address_throttle or FailureThrottle(free=20, base=1.0, cap=30.0)
        self._clock = clock
        self._dummy = self._hasher.hash(secrets.token_urlsafe(24))
        self._memo_key = secrets.token_bytes(32)
        self._memo: OrderedDict[tuple[str, str, str], tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def authenticate(self, auth: Mapping[str, Any], client: str) -> Principal:
        presented = _presented(auth)
        identity_key = f"{presented.flavour.value}:{presented.identity}"
        wait = max(self._identities.wait(identity_key), self._addresses.wait(client))
        if wait > 0:
            raise Refusal(
                429,
                "too-many-failures",
                "too many failed attempts; wait before trying again",
                field="auth",
                retry_after=max(1, math.ceil(wait)),
            )
        principal = self._check(presented, auth)
        if principal is None:
            self._identities.failed(identity_key)
            self._addresses.failed(client)
            raise Refusal(401, "unauthenticated", UNAUTHENTICATED_MESSAGE, field="auth")
        self._identities.succeeded(identity_key)
        return principal

    def _check(self, presented: _Presented, auth: Mapping[str, Any]) -> Principal | None:
        if presented.flavour is Flavour.APPLICATION:
            application = self._store.application(presented.identity)
            stored = application.password_hash if application is not None and application.active else None
            if not self._verify(presented, stored):
                return None
            return Principal(
                Flavour.APPLICATION,
                application_id=presented.identity,
                account_id=_optional(auth, "accountId"),
                user_id=_optional(auth, "userId"),
            )
        login = self._store.login(presented.identity)
        stored = login.password_hash if login is not None and login.active else None
        if login is None or not self._verify(presented, stored):
            return None
        account = self._store.account_of_practice(login.practice_id)
        return Principal(
            Flavour.INDIVIDUAL,
            application_id=account.application_id if account is not None else None,
            login_id=login.login_id,
            practice_id=login.practice_id,
            account_id=account.account_id if account is not None else None,
            user_id=login.user_id,
        )

    def _verify(self, presented: _Presented, stored: str | None) -> bool:
        """The slow check (against a dummy hash when there is nothing stored: the same work either way)."""
        if stored is None:
            self._hasher.verify(presented.password, self._dummy)
            return False
        memo_key = (presented.flavour.value, presented.identity, stored)
        tag = hmac.new(self._memo_key, presented.password.encode("utf-8"), hashlib.sha256).digest()
        now = self._clock()
        with self._lock:
            remembered = self._memo.get(memo_key)
        if remembered is not None and remembered[1] > now and hmac.compare_digest(remembered[0], tag):
            return True
        if not self._hasher.verify(presented.password, stored):
            return False
        with self._lock:
            self._memo.pop(memo_key, None)
            self._memo[memo_key] = (tag, now + _MEMO_SECONDS)
            while len(self._memo) > _MEMO_ENTRIES:
                self._memo.popitem(last=False)
        return True

    def hash_password(self, password: str) -> str:
        return self._hasher.hash(password)


def _optional(auth: Mapping[str, Any], key: str) -> str | None:
    value = auth.get(key)
    return value if isinstance(value, str) and value else None


def _presented(auth: Mapping[str, Any]) -> _Presented:
    """Which flavour the object carries; malformed combinations are 400s naming the field (the shape itself,
    types and lengths, was checked against the schema already)."""
    application = "applicationId" in auth or "applicationPassword" in auth
    individual = "loginId" in auth or "loginPassword" in auth
    if application and individual:
        raise Refusal(
            400,
            "invalid-auth",
            "give either applicationId and applicationPassword, or loginId and loginPassword, not both",
            field="auth",
        )
    if not application and not individual:
        raise Refusal(
            401,
            "missing-credentials",
            "no credentials: give applicationId and applicationPassword, or loginId and loginPassword",
            field="auth",
        )
    if application:
        names = ("applicationId", "applicationPassword")
        flavour = Flavour.APPLICATION
    else:
        names = ("loginId", "loginPassword")
        flavour = Flavour.INDIVIDUAL
    for name in names:
        if not isinstance(auth.get(name), str) or not auth[name]:
            raise Refusal(400, "missing-field", f"auth.{name} is required", field=f"auth.{name}")
    identity = auth[names[0]]
    if flavour is Flavour.INDIVIDUAL:
        identity = identity.lower()  # login ids are case-insensitive, stored in lower case
        if "userId" in auth:
            raise Refusal(
                400,
                "invalid-auth",
                "an individual login acts as its own user: auth.userId is for application authentication",
                field="auth.userId",
            )
    return _Presented(flavour, identity, auth[names[1]])
