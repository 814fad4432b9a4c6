"""Structure-aware inputs for the receiver (the ``app-values`` target): the fuzzer's bytes are read as edits of
a valid XDR request's SOAP envelope, each naming a place (an element's text or an attribute, in document order),
what to do there, and with what: put one of the envelope's other values or a hostile string, splice, cut, repeat,
write text made from the input's bytes, remove it, or repeat the whole element beside itself. The result is
serialized again and put back in its MTOM package, so every execution is well-formed XML, correctly framed, from
an enrolled practice: the values reach the metadata reader, the checks, the registry and the inbox, which byte
mutation of XML seldom does (it breaks the syntax, the framing or the hash first).

Layout of an input: one byte choosing the request, then edits of four bytes or more (two for the place, one for
the action, then the action's own); at most :data:`MAX_EDITS`.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

from lxml import etree

from tests.fuzz.choices import HOSTILE, TEXT_EDITS, Choices, edit_text
from tests.fuzz.corpus import Request, entity
from xdr_edge.protocol import ns

MAX_EDITS = 32
#: How long one value may grow, and the envelope past which no further edit is made: the oracle allows memory in
#: proportion to the *input*, and a few bytes that repeat a repeated element could otherwise ask for gigabytes.
MAX_VALUE_CHARS = 4096
MAX_ENVELOPE_BYTES = 256 * 1024
#: The valid requests of the seed corpus the edits start from.
BASES = ("minimal-ccda", "xds-ccda", "minimal-pdf", "ccda-and-pdf", "plain-soap")


@dataclass(frozen=True)
class _Base:
    name: str
    content_type: str
    head: bytes  # the body up to the envelope (the MTOM headers of its part), empty for plain SOAP
    root: bytes
    tail: bytes  # the body after the envelope (the other parts)


def _is_xml_char(c: str) -> bool:
    n = ord(c)
    return n in (0x9, 0xA, 0xD) or 0x20 <= n <= 0xD7FF or 0xE000 <= n <= 0xFFFD or 0x10000 <= n <= 0x10FFFF


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (lxml refuses to write them)."""
    return "".join(c for c in text if _is_xml_char(c))


def _places(root: etree._Element) -> list[tuple[etree._Element, str | None]]:
    """Every editable place in document order: (element, None) for its text, (element, name) for an attribute."""
    out: list[tuple[etree._Element, str | None]] = []
    for element in root.iter():
        if isinstance(element, etree._Comment | etree._ProcessingInstruction):
            continue
        if len(element) == 0 or (element.text and element.text.strip()):
            out.append((element, None))
        out.extend((element, str(name)) for name in element.attrib)
    return out


class XmlValueMutator:
    """Edits valid requests' envelopes as the choices say."""

    def __init__(self, requests: list[Request]) -> None:
        by_name = {r.name: r for r in requests}
        self.bases = [_split(by_name[name]) for name in BASES]
        values: set[str] = set()
        for base in self.bases:
            for element, name in _places(etree.fromstring(base.root)):
                values.add((element.text or "") if name is None else element.get(name, ""))
        self.pool: tuple[str, ...] = tuple(xml_text(v) for v in (*HOSTILE, *sorted(values)))

    def input_for(self, data: bytes) -> tuple[bytes, list[str]]:
        """The entity (``Content-Type:`` line, blank line, body) the bytes choose, and the edits made (for a
        crash report: where, what)."""
        choices = Choices(data)
        base = self.bases[choices.byte() % len(self.bases)]
        root = etree.fromstring(base.root)
        _fresh_unique_ids(root, data)
        edits: list[str] = []
        envelope = etree.tostring(root)
        for _ in range(MAX_EDITS):
            if choices.exhausted or len(envelope) > MAX_ENVELOPE_BYTES:
                break
            places = _places(root)
            element, name = places[choices.index(len(places))]
            edits.append(self._edit(root, element, name, choices))
            envelope = etree.tostring(root)
        return entity(base.content_type, base.head + envelope + base.tail), edits

    def _edit(self, root: etree._Element, element: etree._Element, name: str | None, choices: Choices) -> str:
        where = f"{root.getroottree().getpath(element)}{'/@' + name if name else '/text()'}"
        old = (element.text or "") if name is None else element.get(name, "")
        action = choices.byte() % 9
        if action == 7:
            if name is not None:
                del element.attrib[name]
            else:
                element.text = None
            return f"{where}: removed"
        if action == 8:
            parent = element.getparent()
            if parent is None:
                return f"{where}: kept (the root is not repeated)"
            parent.insert(parent.index(element) + 1, copy.deepcopy(element))
            return f"{where}: the element repeated"
        new = xml_text(self._value(action, old, choices))[:MAX_VALUE_CHARS]
        if name is None:
            element.text = new
        else:
            element.set(name, new)
        return f"{where}: {new[:80]!r}"

    def _value(self, action: int, old: str, choices: Choices) -> str:
        if action < TEXT_EDITS:
            return edit_text(action, old, choices, self.pool)
        return old.upper() if old != old.upper() else old.lower()  # action 6: the case changed


def _fresh_unique_ids(root: etree._Element, data: bytes) -> None:
    """Give the SubmissionSet and each DocumentEntry a uniqueId made from the input: otherwise every request made
    from one base would carry the base's, and all but the first would stop at the duplicate check, never
    reaching the inbox. The same input makes the same ids (a replay in a fresh world is the same request); the
    base's own ids stay in the pool, so an edit can still make a duplicate."""
    digest = int.from_bytes(hashlib.sha256(data).digest()[:16], "big")
    for n, identifier in enumerate(root.iter(f"{{{ns.RIM}}}ExternalIdentifier")):
        if identifier.get("identificationScheme") in (ns.SS_UNIQUE_ID, ns.DE_UNIQUE_ID):
            identifier.set("value", f"2.25.{digest + n}")


def _split(request: Request) -> _Base:
    """A request's body around its envelope (the MTOM root part, or the whole body of a plain SOAP request)."""
    at = request.body.index(request.root)
    return _Base(
        request.name,
        request.content_type,
        request.body[:at],
        request.root,
        request.body[at + len(request.root) :],
    )


def xml_value_seeds(mutator: XmlValueMutator) -> list[bytes]:
    """Each valid request as it is (one byte: its index), and each with one edit of every action at its first
    places."""
    seeds = [bytes([i]) for i in range(len(mutator.bases))]
    seeds += [bytes([i, 0, place, action, 1]) for i in range(len(mutator.bases)) for place, action in
              ((3, 0), (9, 1), (20, 2), (30, 3), (40, 4), (50, 5), (60, 6), (70, 7), (80, 8))]  # fmt: skip
    return seeds
