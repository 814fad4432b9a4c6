"""XDS metadata as ebRIM 3.0: a Submission written as ``lcm:SubmitObjectsRequest`` and read back (ITI TF-3 4.2),
the writer and the lenient reader side by side with the vocabulary they share. Pure: lxml elements in and out.
Imports only from :mod:`xdr_edge.protocol`.
"""

from __future__ import annotations

__all__ = [
    "MetadataRead",
    "MetadataTemplates",
    "check_xml_text",
    "read_submit_objects",
    "write_submit_objects",
]

from xdr_edge.protocol.metadata.reader import MetadataRead, read_submit_objects
from xdr_edge.protocol.metadata.writer import MetadataTemplates, check_xml_text, write_submit_objects
