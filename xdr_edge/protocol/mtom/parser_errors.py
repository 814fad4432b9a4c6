"""The ``multipart`` package's refusals in our words, for every reader that drives its push parser (the MTOM
reader, the JSON API's form reader).

Why: the package's messages are written for developers ("Segment header failed to decode"), and one of them
carries the ``UnicodeDecodeError`` of the bytes it could not decode, which quotes those bytes: a document's,
when a broken boundary line makes its content read as headers. A peer is told what is wrong with which part in
our words (RFC 2046 §5.1.1 for the framing, RFC 2045/RFC 5322 for part headers, RFC 7578 for forms); the
package's first argument (its message, never the bytes) may go to a debug log through :func:`library_text`.
Pure: no logging here.
"""

from __future__ import annotations

__all__ = ["library_text", "parser_problem"]

#: The start of the package's message, and what it means. Its text is a key only, never shown; a message not
#: listed here gets our wording for the phase it happened in. (Its header limits, ParserLimitReached, are
#: answered by each caller with its own limits.)
_PROBLEMS: tuple[tuple[str, str], ...] = (
    ("Segment header failed to decode", "a header line is not UTF-8 text"),
    ("Malformed segment header", "a header line has no colon (name: value)"),
    ("Invalid segment header name", "a header name has characters a field name may not have (RFC 9110 §5.1)"),
    ("Invalid line break in segment header", "a header line ends with a bare line feed instead of CRLF"),
    ("Missing Content-Disposition", "it has no Content-Disposition header (RFC 7578 §4.2)"),
    ("Invalid Content-Disposition", "its Content-Disposition is not form-data (RFC 7578 §4.2)"),
    ("Multiple segment Content-Length", "it has more than one Content-Length header"),
    ("Invalid segment Content-Length", "its Content-Length header is not a decimal number"),
    ("Segment Content-Length exceeded", "it is longer than its Content-Length header says"),
    ("Segment size does not match", "it is shorter than its Content-Length header says"),
    ("Unexpected bytes after boundary", "the boundary line after it is followed by neither CRLF nor '--'"),
    ("Invalid line break after first boundary", "the first boundary line does not end with CRLF"),
    ("Unexpected byte after first boundary", "the first boundary line does not end with CRLF"),
)


def _message(exc: BaseException) -> str:
    first = exc.args[0] if exc.args else ""
    return first if isinstance(first, str) else ""


def parser_problem(exc: BaseException, *, in_body: bool, framing: str) -> str:
    """What the parser's refusal ``exc`` says is wrong with the part it was reading, in our words (a clause:
    "a header line is not UTF-8 text"). A refusal we have no words for is worded by where the parser was: in a
    part's body (the boundary line after it), or between parts (its boundary line or headers, per ``framing``,
    the standard that defines them: "RFC 2046 §5.1.1", "RFC 7578")."""
    text = _message(exc)
    ours = next((ours for theirs, ours in _PROBLEMS if text.startswith(theirs)), None)
    if ours is not None:
        return ours
    if in_body:
        return "the boundary line after it is malformed"
    return (
        f"its boundary line or headers are malformed ({framing}: a boundary line, header lines, a blank line)"
    )


def library_text(exc: BaseException) -> str:
    """The package's own message for a debug log: its first argument only (a later one may quote the bytes it
    could not decode), cut short and escaped."""
    return f"{type(exc).__name__}: {_message(exc)[:120]!r}"
