"""The one error the JSON API answers with: an HTTP status, a stable machine-readable code, a message, and the
field of the request it is about.

Every refusal is a :class:`Refusal`; the application turns it into ``{"error": {"code", "message", "field"}}``.
Messages are written by the API for the caller: they never repeat a submitted value (it could be a password or
a key) and never name another tenant's practice. The codes are part of the API contract (docs/api.md).
"""

from __future__ import annotations

__all__ = ["CODES", "UNAUTHENTICATED_MESSAGE", "Refusal", "shown_name"]

from xdr_edge.protocol.errors import XdrError

#: The single answer to unknown identities, wrong passwords and disabled applications or logins alike, so that a
#: caller cannot tell which of these it met (an identity oracle would help guessing).
UNAUTHENTICATED_MESSAGE = "unknown identity or wrong password"


#: Every code a refusal may carry: the API's contract, each listed in docs/api.md (a test keeps them in step).
#: A library's own error code is never answered as such; it is translated to one of these.
CODES = frozenset(
    {
        # 400
        "missing-field",
        "unknown-field",
        "wrong-type",
        "invalid-field",
        "invalid-json",
        "invalid-auth",
        "bad-form",
        "bad-framing",
        "key-mismatch",
        "certificate-expired",
        "certificate-not-anchored",
        "pkcs12-too-costly",
        "validation-failed",
        "invalid-message",
        # 401
        "unauthenticated",
        "missing-credentials",
        # 403
        "flavour-not-allowed",
        "account-forbidden",
        "account-inactive",
        "domain-binding-not-allowed",
        "address-not-covered",
        # 404
        "account-not-found",
        "certificate-not-found",
        "address-not-bound",
        "message-not-found",
        "unknown-call",
        # 405, 408, 413, 415
        "method-not-allowed",
        "body-too-slow",
        "too-large",
        "unsupported-media-type",
        # 409
        "address-taken",
        "certificate-taken",
        "certificate-revoked",
        "login-taken",
        "practice-id-taken",
        "no-sending-certificate",
        "certificate-unusable",
        "not-sent",
        "registry-refused",
        # 422
        "sender-not-bound",
        "sender-not-in-certificate",
        # 429
        "too-many-failures",
        "client-busy",
        "application-busy",
        "account-busy",
        # 503
        "sending-not-configured",
        "store-unavailable",
    }
)


#: The most characters of a caller's own name (a JSON key, a form part's name) a refusal shows.
SHOWN_NAME_LIMIT = 64


def shown_name(name: str) -> str:
    """A name the caller sent (a JSON key, a form part's name), as a refusal's message and ``field`` show it:
    itself when it is a short line of printable text, else its first characters with the unprintable ones
    escaped (``\\x7f``), cut at :data:`SHOWN_NAME_LIMIT` characters and marked ``...``. Whatever the caller
    sent, the refusal stays one short printable line that still says which name it means."""
    if len(name) <= SHOWN_NAME_LIMIT and name.isprintable():
        return name
    escaped = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in name[:SHOWN_NAME_LIMIT]
    )
    if len(name) > SHOWN_NAME_LIMIT or len(escaped) > SHOWN_NAME_LIMIT:
        return escaped[:SHOWN_NAME_LIMIT] + "..."
    return escaped


class Refusal(XdrError):
    """A call refused with HTTP ``status``; ``location`` is the request field at fault (``auth.loginId``)."""

    code = "refused"

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        if code not in CODES:
            raise ValueError(f"{code!r} is not a registered refusal code (refusals.CODES, docs/api.md)")
        super().__init__(message, code=code, location=field)
        self.status = status
        self.retry_after = retry_after

    @property
    def field(self) -> str | None:
        return self.location

    def body(self) -> dict[str, str]:
        error = {"code": self.code, "message": self.message}
        if self.location is not None:
            error["field"] = self.location
        return error
