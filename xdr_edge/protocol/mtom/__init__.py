"""MTOM/XOP packaging of ITI-41 (XOP 1.0, RFC 2387, ITI TF-2b 3.41.5): a streaming writer with an exact length
and a streaming reader with limits, plus what both share (:mod:`.framing`: media types, Content-IDs, ``cid:``
URLs). Pure: byte streams in, bytes out; files only as document sources (writer) and spool files (reader); no
sockets, no envelope parsing, no logging of part bytes (documents are PHI). Imports only from
:mod:`xdr_edge.protocol`.
"""

from __future__ import annotations

__all__ = [
    "MtomBody",
    "MtomLimits",
    "MtomPackage",
    "MtomPart",
    "ReceivedPart",
    "cid_href",
    "content_id_of",
    "new_content_id",
    "read_mtom",
    "root_part_prefix",
]

from xdr_edge.protocol.mtom.framing import cid_href, content_id_of, new_content_id
from xdr_edge.protocol.mtom.reader import MtomLimits, MtomPackage, ReceivedPart, read_mtom, root_part_prefix
from xdr_edge.protocol.mtom.writer import MtomBody, MtomPart
