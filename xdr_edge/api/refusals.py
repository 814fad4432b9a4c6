"""The one error the JSON API answers with: an HTTP status, a stable machine-readable code, a message, and the
field of the request it is about.

Every refusal is a :class:`Refusal`; the application turns it into ``{"error": {"code", "message", "field"}}``.
Messages are written by the API for the caller: they never repeat a submitted value (it could be a password or
a key) and never name another tenant's practice. The codes are part of the API contract (docs/api.md).
"""

from __future__ import annotations

__all__ = ["UNAUTHENTICATED_MESSAGE", "Refusal"]

from xdr_edge.protocol.errors import XdrError

#: The single answer to unknown identities, wrong passwords and disabled applications or logins alike, so that a
#: caller cannot tell which of these it met (an identity oracle would help guessing).
UNAUTHENTICATED_MESSAGE = "unknown identity or wrong password"


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
