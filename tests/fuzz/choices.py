"""Choices read from a fuzzer's bytes, and the hostile strings values are turned into: shared by the
structure-aware targets (``api-values`` mutates a JSON request's values, ``app-values`` the XML values of an
XDR request), which read the input as decisions about a valid message instead of as the message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: What a value may become, besides the seeds' own values (spliced in) and text made from the input's bytes:
#: the shapes that break readers (control characters, line and paragraph separators, a NUL, a lone surrogate's
#: neighbour, very long runs, numbers at the edge of a double, markup of the formats the values hold, a path
#: that climbs, an OID too long for any column, an empty scheme, a bidi override).
HOSTILE: tuple[str, ...] = (
    "",
    " ",
    "\x00",
    "\t",
    "\r\n",
    "\u2028",
    "\u00e9",
    "\ud7ff",
    "\ufeff",
    "..",
    "/",
    "@",
    "%00",
    "^^^&",
    "&ISO",
    "a" * 300,
    "0",
    "-1",
    "1e309",
    "urn:oid:",
    "-----BEGIN CERTIFICATE-----\n",
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\n",
    "=" * 8,
    "<x/>",
    "\\",
    "../../../etc/passwd",
    "2.25." + "9" * 120,
    "urn:uuid:",
    "cid:",
    "mailto:",
    "x@y",
    "19700101",
    "99991231235959",
    "\u202e",
)


class Choices:
    """The input's bytes as a sequence of choices (0 once they run out)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    @property
    def exhausted(self) -> bool:
        return self._at >= len(self._data)

    def byte(self) -> int:
        if self._at >= len(self._data):
            return 0
        self._at += 1
        return self._data[self._at - 1]

    def pick(self, items: Sequence[Any]) -> Any:
        return items[self.byte() % len(items)]

    def index(self, count: int) -> int:
        """An index below ``count`` from the next two bytes: a short input reaches any of hundreds of places."""
        return ((self.byte() << 8) | self.byte()) % count

    def raw_text(self) -> str:
        """The next bytes as text: a length, then that many bytes read as Latin-1 (every code point to 255)."""
        length = self.byte() % 64
        start = self._at
        self._at = min(len(self._data), self._at + length)
        return self._data[start : self._at].decode("latin-1")


#: How many text edits :func:`edit_text` knows: its actions are 0 to ``TEXT_EDITS - 1``.
TEXT_EDITS = 6


def edit_text(action: int, old: str, choices: Choices, pool: Sequence[str]) -> str:
    """The text edits both structure-aware targets make: put a pool value, splice one in, cut, repeat (up to 40
    times), text made from the input's bytes, or that text appended."""
    if action == 0:
        return str(choices.pick(pool))
    if action == 1:
        at = choices.byte() % (len(old) + 1)
        return old[:at] + str(choices.pick(pool)) + old[at:]
    if action == 2:
        return old[: choices.byte() % (len(old) + 1)]
    if action == 3:
        return old * (1 + choices.byte() % 40)
    if action == 4:
        return choices.raw_text()
    return old + choices.raw_text()
