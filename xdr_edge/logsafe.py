"""Putting values a peer chose into a log line without letting them forge or flood it.

Why one shared helper: the receiver logs the sender's Direct address and MessageID, the JSON API the
application and login ids as presented; both come from the network. A value with a newline or another control
character could start a second, forged log line (CWE-117, "Improper Output Neutralization for Logs"), a space
could forge a ``key=value`` token, and a megabyte-long value would flood the log. Every such value goes through
:func:`log_safe` before it is formatted into a line. And what the last line of defence caught (each WSGI app's,
the CLI's) goes through :func:`log_internal_error`: a panic's text can be the value it failed on.
"""

from __future__ import annotations

__all__ = ["MAX_LOGGED_CHARACTERS", "log_internal_error", "log_safe"]

import logging
import re
import traceback

#: The longest value written as is; a longer one is cut (and shown escaped, so the cut is visible).
MAX_LOGGED_CHARACTERS = 200

_NO_SPACE = re.compile(
    r"\S*"
)  # one C-level scan instead of a Python loop per character (values of every request)


def log_safe(text: str) -> str:
    """``text`` as one log token: unchanged when it is printable, has no whitespace and is at most
    :data:`MAX_LOGGED_CHARACTERS` long; otherwise its Python ``repr`` (control characters escaped, quoted) of
    the first :data:`MAX_LOGGED_CHARACTERS` characters, never the raw value."""
    if len(text) <= MAX_LOGGED_CHARACTERS and text.isprintable() and _NO_SPACE.fullmatch(text):
        return text
    return repr(text[:MAX_LOGGED_CHARACTERS])


def log_internal_error(
    log: logging.Logger, exc: BaseException, what: str, *args: object, level: int = logging.ERROR
) -> None:
    """Log what the last line of defence caught: an exception with its traceback; a panic (not an ``Exception``)
    with its type and frames but not its text, which is the library's debug print of the value it failed on
    (``cryptography``'s PKCS#12 panic printed the password's bytes)."""
    if isinstance(exc, Exception):
        log.log(level, what, *args, exc_info=exc)
        return
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.log(
        level,
        f"{what} (%s inside a library; its text is not logged, it may repeat what was sent)\n%s",
        *args,
        type(exc).__name__,
        frames.rstrip(),
    )
