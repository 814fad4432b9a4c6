"""Passwords of the JSON API: generated secrets, slow salted hashes, constant-time checks.

Stored form: ``scrypt$<log2 N>$<r>$<p>$<salt>$<hash>`` (base64 without padding), the parameters travelling with
each hash so that they can be raised later without invalidating stored ones. scrypt (RFC 7914) is memory-hard,
which is what makes guessing a stolen hash expensive on GPUs; the standard library has it (``hashlib.scrypt``,
OpenSSL's implementation). The default cost, N = 2^15, r = 8, p = 1, takes 32 MiB and tens of milliseconds per
check; the API keeps a short-lived memo of successful checks (:mod:`.auth`) so that a busy integration does not
pay it on every call.

Application passwords are generated here, never chosen by a person: 40 characters from 62 (about 238 bits),
so that even a leaked hash cannot be reversed by guessing.
"""

from __future__ import annotations

__all__ = [
    "APPLICATION_PASSWORD_LENGTH",
    "MAX_PASSWORD_LENGTH",
    "MIN_LOGIN_PASSWORD_LENGTH",
    "PasswordHasher",
    "new_secret",
]

import base64
import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

APPLICATION_PASSWORD_LENGTH = 40
MIN_LOGIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024

_ALPHABET = string.ascii_letters + string.digits
_SALT_BYTES = 16
_KEY_BYTES = 32


def new_secret(length: int = APPLICATION_PASSWORD_LENGTH) -> str:
    """``length`` random letters and digits from the operating system's CSPRNG (``secrets``)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


@dataclass(frozen=True)
class PasswordHasher:
    """scrypt with the given cost for new hashes; verifies any hash with the parameters stored in it.

    ``log2_n`` 15 is the default; tests may use a lower one (still real scrypt, just cheaper).
    """

    log2_n: int = 15
    r: int = 8
    p: int = 1

    def hash(self, password: str) -> str:
        salt = secrets.token_bytes(_SALT_BYTES)
        key = _scrypt(password.encode("utf-8"), salt, self.log2_n, self.r, self.p)
        return f"scrypt${self.log2_n}${self.r}${self.p}${_b64(salt)}${_b64(key)}"

    def verify(self, password: str, encoded: str) -> bool:
        """True when ``password`` matches; a malformed stored hash never matches (and raises nothing)."""
        try:
            scheme, log2_n, r, p, salt, expected = encoded.split("$")
            if scheme != "scrypt":
                return False
            n_exp, r_val, p_val = int(log2_n), int(r), int(p)
            if not (1 <= n_exp <= 20 and 1 <= r_val <= 32 and 1 <= p_val <= 16):
                return False
            key = _scrypt(password.encode("utf-8"), _unb64(salt), n_exp, r_val, p_val)
            return hmac.compare_digest(key, _unb64(expected))
        except ValueError:
            return False


def _scrypt(password: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    # scrypt needs 128 * r * N bytes (plus p blocks); OpenSSL refuses above maxmem, whose default is 32 MiB
    need = 128 * r * (n + p + 2)
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES, maxmem=need + 1024 * 1024)
