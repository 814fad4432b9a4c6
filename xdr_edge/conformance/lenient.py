"""Reading a recorded request past the WS-Addressing defects our reader stops on, so that each is judged once.

Our request reader (:func:`xdr_edge.protocol.wire.parse_request`) is the receiver's: a request without
``wsa:MessageID``, with another transaction's ``wsa:Action`` or with two ``wsa:To`` headers is a SOAP fault, and
it stops reading there (ITI TF-2x V.3.2, WS-Addressing 1.0 SOAP Binding §6.4). The sender catalogue must not stop:
were the request then "unreadable", every case that needs the envelope (address block, metadata, documents, hash
and size, ...) would fail with that one message, and none would judge what it is about.

So when the reader stops on a WS-Addressing header, the header is mended in a copy of the root part (a
placeholder MessageID, the ITI-41 Action, the duplicate or malformed optional header left out), the reader's
message is kept as that header's problem, and the request is read again, at most once per header. The raw
root part stays as it came, for the checks that read the wire form; the case about the header (``wsa-message-id``,
``wsa-action``, ``wsa-to``; ``soap-envelope`` for the others) reports the problem, once.
"""

from __future__ import annotations

__all__ = ["ACTION", "MESSAGE_ID", "TO", "read_leniently"]

from pathlib import Path

from lxml import etree

from xdr_edge.protocol import ns
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.mediatype import MediaType
from xdr_edge.protocol.mtom import MtomLimits, read_mtom
from xdr_edge.protocol.wire import IncomingRequest, interpret_request, parse_request, read_bounded
from xdr_edge.protocol.xml import parse

#: Where the reader reports a missing or unusable MessageID / Action (the locations its faults name).
MESSAGE_ID = "S:Header/wsa:MessageID"
ACTION = "S:Header/wsa:Action"
TO = "S:Header/wsa:To"

_WSA_HEADER = "S:Header/wsa:"
#: A MessageID that is a valid URI and that no sender would use, put in place of a missing or unusable one.
_PLACEHOLDER_MESSAGE_ID = "urn:uuid:00000000-0000-4000-8000-000000000000"
_HUGE = 9 * 1024 * 1024


def _header_local(location: str) -> str | None:
    """``S:Header/wsa:ReplyTo/wsa:Address`` -> ``ReplyTo``; None for anything not in a WS-Addressing header."""
    if not location.startswith(_WSA_HEADER):
        return None
    local = location[len(_WSA_HEADER) :].split("/")[0].split("[")[0]
    return local or None


def _mend(root: bytes, locals_: set[str]) -> bytes:
    """A copy of the root part with the WS-Addressing headers named in ``locals_`` mended."""
    tree = parse(root, what="request envelope", huge=len(root) > _HUGE)
    header = tree.find(f"{{{ns.SOAP}}}Header")
    if header is None:
        header = etree.Element(f"{{{ns.SOAP}}}Header")
        tree.insert(0, header)
    for local in locals_:
        for element in header.findall(f"{{{ns.WSA}}}{local}"):
            header.remove(element)
        if local == "MessageID":
            etree.SubElement(header, f"{{{ns.WSA}}}MessageID").text = _PLACEHOLDER_MESSAGE_ID
        elif local == "Action":
            etree.SubElement(header, f"{{{ns.WSA}}}Action").text = ns.ACTION_PNR
        # any other WS-Addressing header (To, ReplyTo, From, FaultTo, RelatesTo) is optional to the reader
    data: bytes = etree.tostring(tree, encoding="UTF-8", xml_declaration=True)
    return data


def _read(
    content_type: str,
    body: Path,
    size: int,
    *,
    limits: MtomLimits,
    spool_dir: Path | None,
    mend: set[str],
) -> IncomingRequest:
    with body.open("rb") as stream:
        if not mend:
            return parse_request(
                content_type, stream, limits=limits, spool_dir=spool_dir, content_length=size
            )
        media = MediaType.parse(content_type)
        # A mended Action is ours, not the sender's: the action its Content-Type states is not compared with it
        # (a mismatch was already kept as the Action's problem).
        actions = "Action" not in mend
        if media.matches("multipart/related"):
            package = read_mtom(content_type, stream, limits=limits, spool_dir=spool_dir, content_length=size)
            return interpret_request(  # closes the package on error
                _mend(package.root, mend), package, media_type=media, check_actions=actions
            )
        root = read_bounded(stream, limits.max_root_bytes)
        return interpret_request(_mend(root, mend), None, media_type=media, check_actions=actions)


def read_leniently(
    content_type: str,
    body: Path,
    size: int,
    *,
    limits: MtomLimits,
    spool_dir: Path | None = None,
) -> tuple[IncomingRequest, dict[str, str]]:
    """Read the request spooled at ``body``; return it with the WS-Addressing header problems read past
    (location -> the reader's message). Raises :class:`RemoteProtocolError` for anything else that makes the
    request unreadable (not SOAP, not MTOM as announced, a broken envelope)."""
    problems: dict[str, str] = {}
    mend: set[str] = set()
    while True:
        try:
            incoming = _read(content_type, body, size, limits=limits, spool_dir=spool_dir, mend=mend)
        except RemoteProtocolError as exc:
            local = _header_local(exc.location or "")
            if local is None or local in mend:
                raise
            problems[exc.location or ""] = exc.message
            mend.add(local)
            continue
        return incoming, problems
