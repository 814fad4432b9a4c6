"""Who is calling: the ``auth`` object of every request, in its two flavours.

- *application*: ``applicationId`` + ``applicationPassword`` identify an integrator's application, which then
  acts on its own accounts by naming ``accountId`` (its key for a practice) and ``userId`` (its key for a user);
- *individual*: ``loginId`` + ``loginPassword`` of one practice's login; it acts only on that practice, and only
  while the application that owns the practice is enabled.

Every failure to authenticate (unknown identity, wrong password, disabled application or login) is the same
401 after the same work: exactly one slow hash check per attempt, against a dummy hash when there is nothing
stored, so that the time taken tells nothing about which identities exist.

Failures are counted (:mod:`.throttle`) for the identity as presented *from this client address*, for the
client address, and for the identity across all addresses. While the pair or the address must wait, the answer
is 429 and the password is not checked. The identity's own count only holds back addresses that have failed for
it themselves: an attacker guessing from elsewhere must not lock the real client out, so an address with no
recent failure for the identity still has its password checked, and a correct one gets through. Each attempt
is counted before its check and given back when it succeeds, so simultaneous guesses cannot overtake the count.

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
    """The two kinds of credentials an ``auth`` object carries."""

    APPLICATION = "application"  # an integrator's whole application (applicationId + applicationPassword)
    INDIVIDUAL = "individual"  # one practice's login (loginId + loginPassword)


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
    """The credentials as the request presented them (the identity normalized, nothing checked yet)."""

    flavour: Flavour
    identity: str
    password: str


@dataclass(frozen=True)
class _Keys:
    """What one attempt is counted against."""

    identity: str  # the identity as presented, from anywhere
    pair: str  # the identity as presented, from this client address
    address: str  # the client address


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
        pair_throttle: FailureThrottle | None = None,
        address_throttle: FailureThrottle | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._hasher = hasher or PasswordHasher()
        # one identity from one address: the attempts of one guesser (or one misconfigured client)
        self._pairs = pair_throttle or FailureThrottle(free=3, base=1.0, cap=60.0)
        # one identity from anywhere: guessing spread over many addresses; holds back only addresses that
        # failed for the identity themselves (module docstring)
        self._identities = identity_throttle or FailureThrottle(free=10, base=1.0, cap=60.0)
        # many people may share one address (a practice behind NAT): more free failures, a shorter cap
        self._addresses = address_throttle or FailureThrottle(free=20, base=1.0, cap=30.0)
        self._clock = clock
        self._dummy = self._hasher.hash(secrets.token_urlsafe(24))
        self._memo_key = secrets.token_bytes(32)
        self._memo: OrderedDict[tuple[str, str, str], tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._admission = threading.Lock()  # the throttles' waits and reservations, taken together

    def authenticate(self, auth: Mapping[str, Any], client: str) -> Principal:
        """The principal the ``auth`` object proves, or a :class:`Refusal` (400 malformed, 401, 429)."""
        presented = _presented(auth)
        identity = f"{presented.flavour.value}:{presented.identity}"
        keys = _Keys(identity=identity, pair=f"{identity} from {client}", address=client)
        self._reserve(keys)
        try:
            principal = self._check(presented, auth)
        except BaseException:
            self._give_back(keys, forget_pair=False)  # not a failure of the caller's (the store is down)
            raise
        if principal is None:
            raise Refusal(401, "unauthenticated", UNAUTHENTICATED_MESSAGE, field="auth")
        self._give_back(keys, forget_pair=True)
        return principal

    def _reserve(self, keys: _Keys) -> None:
        """Refuse with 429 while this attempt must wait; otherwise count it as a failure until it succeeds."""
        with self._admission:
            wait = max(self._addresses.wait(keys.address), self._pairs.wait(keys.pair))
            if self._pairs.count(keys.pair) > 0:
                wait = max(wait, self._identities.wait(keys.identity))
            if wait > 0:
                raise Refusal(
                    429,
                    "too-many-failures",
                    "too many failed attempts; wait before trying again",
                    field="auth",
                    retry_after=max(1, math.ceil(wait)),
                )
            self._addresses.failed(keys.address)
            self._pairs.failed(keys.pair)
            self._identities.failed(keys.identity)

    def _give_back(self, keys: _Keys, *, forget_pair: bool) -> None:
        """The attempt did not fail: return its reservations. A success also forgets this address's earlier
        failures for the identity; the identity's and the address's earlier failures stay counted."""
        with self._admission:
            self._addresses.release(keys.address)
            self._identities.release(keys.identity)
            if forget_pair:
                self._pairs.succeeded(keys.pair)
            else:
                self._pairs.release(keys.pair)

    def _check(self, presented: _Presented, auth: Mapping[str, Any]) -> Principal | None:
        """One slow hash check whatever the identity (dummy hash when nothing is stored), then the rest."""
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
        if not self._verify(presented, stored) or login is None:
            return None
        account = self._store.account_of_practice(login.practice_id)
        application = self._store.application(account.application_id) if account is not None else None
        if account is None or application is None or not application.active:
            return None  # a disabled application's logins are disabled with it
        return Principal(
            Flavour.INDIVIDUAL,
            application_id=account.application_id,
            login_id=login.login_id,
            practice_id=login.practice_id,
            account_id=account.account_id,
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
