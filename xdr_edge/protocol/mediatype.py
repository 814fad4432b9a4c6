"""Media types as media types: a Content-Type value read into type, subtype and parameters, and compared as such.

Grammar (RFC 9110 §8.3.1 and §5.6.6, RFC 2045 §5.1): ``type "/" subtype *( OWS ";" OWS [ name "=" value ] )``.
The type, subtype and parameter names are case-insensitive tokens and are kept lower-cased; a value is a token or
a quoted string whose backslash escapes (quoted-pairs) are resolved, so ``start-info="application/soap+xml;
action=\\"urn:a\\""`` reads as the media type ``application/soap+xml; action="urn:a"``, which
:meth:`MediaType.param_media_type` reads in turn. Parameters may come in any order and each at most once (RFC
6838 §4.3). Never compare a header value as a whole string: compare :attr:`MediaType.essence` (or use
:meth:`MediaType.matches`) and read parameters one by one.

What we accept beyond the strict grammar, so that real senders are read (RFC 9110 §2.2 lets a recipient recover a
usable element from an invalid construct): whitespace around ``=`` and around every token (RFC 2045 writes its
grammar in RFC 822 tokens, between which whitespace may appear; the NIST toolkit's capture ends the header with a
space), empty parameters (``;;``, a trailing ``;``, RFC 9110 §5.6.6), and an unquoted value that is not a token
(``type=application/xop+xml``) as long as it holds no whitespace, quote or ``;``.

The one reader of media types: the MTOM reader, the request and response readers, the capture reader,
``inspect``, the receiver and the conformance suite all use it. Pure.
"""

from __future__ import annotations

__all__ = ["MediaType", "parse_content_type"]

import re
from dataclasses import dataclass
from typing import Final

from xdr_edge.protocol.errors import RemoteProtocolError

_RFC9110_TCHARS: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE: Final = re.compile(_RFC9110_TCHARS)
#: An unquoted value as senders write them: visible characters but no quote, backslash or ``;`` (RFC 9110 §5.6.2
#: tokens, widened to what we recover, see the module docstring).
_LOOSE_VALUE_RE: Final = re.compile(r"[\x21\x23-\x3a\x3c-\x5b\x5d-\x7e\x80-\xff]+")
_OWS: Final = " \t"
#: What a header field may not hold: a character beyond ISO-8859-1, or a control character other than tab.
_NOT_FIELD_CHAR: Final = re.compile(r"[^\t\x20-\x7e\x80-\xff]")
#: The rest of a quoted string after its opening quote: qdtext and quoted-pairs, then the closing quote.
#: (Written as a run of plain characters between quoted-pairs: an alternation tried per character costs more.)
_QUOTED_REST_RE: Final = re.compile(r'([^"\\]*(?:\\.[^"\\]*)*)"', re.DOTALL)
_QUOTED_PAIR_RE: Final = re.compile(r"\\(.)", re.DOTALL)
#: The well-formed start of a value: ``type/subtype``.
_HEAD_RE: Final = re.compile(rf"[ \t]*({_RFC9110_TCHARS})/({_RFC9110_TCHARS})")
#: One well-formed ``; name=value`` (or an empty parameter) after it.
_PARAM_RE: Final = re.compile(
    rf"[ \t]*;[ \t]*(?:({_RFC9110_TCHARS})[ \t]*=[ \t]*"
    rf'(?:"([^"\\]*(?:\\.[^"\\]*)*)"|({_LOOSE_VALUE_RE.pattern})))?',
    re.DOTALL,
)
_SHOWN: Final = 200


@dataclass(frozen=True)
class MediaType:
    """One media type: ``type/subtype`` (lower-cased) and its parameters in the order given.

    ``params`` holds ``(name, value)`` pairs, names lower-cased, values exactly as meant (quotes and escapes
    removed). Build one with :meth:`parse`; ``str()`` writes it back in the canonical form (parameters quoted only
    where a token would not do), and ``MediaType.parse(str(m)) == m``.
    """

    type: str
    subtype: str
    params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not (_TOKEN_RE.fullmatch(self.type) and _TOKEN_RE.fullmatch(self.subtype)):
            raise ValueError(f"not a type/subtype: {self.type!r}/{self.subtype!r}")
        if self.type != self.type.lower() or self.subtype != self.subtype.lower():
            raise ValueError("type and subtype are kept lower-cased")
        names = [name for name, _ in self.params]
        if any(not _TOKEN_RE.fullmatch(n) or n != n.lower() for n in names) or len(set(names)) != len(names):
            raise ValueError(f"parameter names must be distinct lower-case tokens: {names!r}")

    # -- reading --------------------------------------------------------------------------------------------

    @classmethod
    def parse(cls, value: str | bytes, *, where: str = "Content-Type") -> MediaType:
        """Read a Content-Type (or a parameter holding a media type) per RFC 9110 §8.3.1 and RFC 2045 §5.1.

        ``bytes`` are read as the octets of an HTTP or MIME header field (ISO-8859-1, RFC 9110 §5.5); a ``str`` is
        such a value already decoded that way (WSGI's convention). Raises :class:`RemoteProtocolError` (fault
        ``Sender``, code ``malformed-media-type``) naming ``where`` and what is wrong.
        """
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        return _well_formed(text) or _Reader(text, where).media_type()

    @classmethod
    def parse_or_none(cls, value: str | bytes | None) -> MediaType | None:
        """:meth:`parse`, or None for a missing or malformed value: for choices that have a safe default (the
        framing of a fault answer) and for display."""
        if value is None:
            return None
        try:
            return cls.parse(value)
        except RemoteProtocolError:
            return None

    # -- comparing ------------------------------------------------------------------------------------------

    @property
    def essence(self) -> str:
        """``type/subtype`` without parameters (lower-cased): what "is this an X" compares."""
        return f"{self.type}/{self.subtype}"

    def matches(self, other: str | MediaType) -> bool:
        """Whether this is the media type ``other`` names (``"multipart/related"``), whatever the parameters and
        the case; a ``str`` may carry parameters, which are ignored."""
        if isinstance(other, MediaType):
            return self.essence == other.essence
        if ";" not in other:  # a bare type/subtype, as callers name one: no need to read it as a whole
            return self.essence == other.strip(_OWS).lower()
        return self.essence == MediaType.parse(other, where="media type").essence

    def param(self, name: str) -> str | None:
        """The value of parameter ``name`` (case-insensitive), or None when absent."""
        wanted = name.lower()
        return next((value for key, value in self.params if key == wanted), None)

    def param_media_type(self, name: str, *, where: str = "Content-Type") -> MediaType | None:
        """A parameter whose value is itself a media type (multipart/related ``type`` and ``start-info``, RFC
        2387 §3; application/xop+xml ``type``, XOP 1.0 §4.1), read as one; None when absent."""
        value = self.param(name)
        if value is None:
            return None
        return MediaType.parse(value, where=f"{where} {name} parameter")

    def __str__(self) -> str:
        return self.essence + "".join(f"; {name}={_quote(value)}" for name, value in self.params)


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``(essence, parameters)`` of :meth:`MediaType.parse`, for callers that want a plain dict."""
    media = MediaType.parse(value)
    return media.essence, dict(media.params)


def _well_formed(text: str) -> MediaType | None:
    """The media type of a value that is well-formed as it stands (the common case, read with a few regular
    expression matches), or None for anything else, including a repeated parameter: :class:`_Reader` then reads
    it and says what is wrong. Every part is followed by what cannot start it again, so matching is linear."""
    head = _HEAD_RE.match(text)
    if head is None or _NOT_FIELD_CHAR.search(text) is not None:
        return None
    params: list[tuple[str, str]] = []
    position, end = head.end(), len(text)
    while position < end:
        param = _PARAM_RE.match(text, position)
        if param is None or param.end() == position:
            break
        position = param.end()
        name, quoted, loose = param.groups()
        if name is None:
            continue  # an empty parameter (RFC 9110 §5.6.6)
        if quoted is None:
            value = loose
        else:
            value = _QUOTED_PAIR_RE.sub(r"\1", quoted) if "\\" in quoted else quoted
        params.append((name.lower(), value))
    if text[position:].strip(_OWS) or len({name for name, _ in params}) != len(params):
        return None
    # Valid by construction (lower-cased tokens, distinct names), so the checks of __post_init__ are skipped:
    # this runs for every header of every message.
    media = object.__new__(MediaType)
    object.__setattr__(media, "type", head.group(1).lower())
    object.__setattr__(media, "subtype", head.group(2).lower())
    object.__setattr__(media, "params", tuple(params))
    return media


def _quote(value: str) -> str:
    if _TOKEN_RE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Reader:
    """One pass over a header value; ``pos`` moves forward only."""

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        self.pos = 0

    def fail(self, why: str) -> RemoteProtocolError:
        shown = self.text if len(self.text) <= _SHOWN else self.text[:_SHOWN] + "..."
        return RemoteProtocolError(
            f"malformed {self.where} {shown!r}: {why}",
            code="malformed-media-type",
            location=self.where,
            fault_code="Sender",
        )

    def media_type(self) -> MediaType:
        bad = _NOT_FIELD_CHAR.search(self.text)
        if bad is not None:
            if ord(bad.group()) > 0xFF:
                raise self.fail("it holds a character that cannot appear in a header field (RFC 9110 §5.5)")
            raise self.fail("it holds a control character (RFC 9110 §5.5)")
        self.skip_ows()
        major = self.token()
        if major is None or not self.take("/"):
            raise self.fail("no type/subtype")
        minor = self.token()
        if minor is None:
            raise self.fail("no type/subtype")
        params: list[tuple[str, str]] = []
        seen: set[str] = set()
        self.skip_ows()
        while self.pos < len(self.text):
            if not self.take(";"):
                raise self.fail(f"unexpected {self.text[self.pos]!r} after {self.text[: self.pos].strip()!r}")
            self.skip_ows()
            if self.pos == len(self.text) or self.text[self.pos] == ";":
                continue  # an empty parameter (RFC 9110 §5.6.6)
            name = self.token()
            self.skip_ows()
            if name is None or not self.take("="):
                raise self.fail("a parameter is not name=value")
            self.skip_ows()
            name = name.lower()
            if name in seen:
                raise self.fail(f"parameter {name!r} is given more than once (RFC 6838 §4.3)")
            seen.add(name)
            params.append((name, self.value()))
            self.skip_ows()
        return MediaType(major.lower(), minor.lower(), tuple(params))

    def skip_ows(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _OWS:
            self.pos += 1

    def take(self, char: str) -> bool:
        if self.text.startswith(char, self.pos):
            self.pos += 1
            return True
        return False

    def token(self) -> str | None:
        match = _TOKEN_RE.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()

    def value(self) -> str:
        if self.take('"'):
            return self.quoted_rest()
        match = _LOOSE_VALUE_RE.match(self.text, self.pos)
        if match is None:
            raise self.fail("a parameter has no value")
        self.pos = match.end()
        return match.group()

    def quoted_rest(self) -> str:
        """The rest of a quoted string (RFC 9110 §5.6.4): qdtext and quoted-pairs up to the closing quote."""
        match = _QUOTED_REST_RE.match(self.text, self.pos)
        if match is None:
            raise self.fail("unterminated quoted parameter value")
        self.pos = match.end()
        return _QUOTED_PAIR_RE.sub(r"\1", match.group(1))
