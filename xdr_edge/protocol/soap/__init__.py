"""The SOAP 1.2 envelope of ITI-41: the request writer (zeep, our WSDL), the request reader, and replies
(RegistryResponse envelopes and faults, both directions), with what they share in :mod:`.envelope`.

Owns the envelope around the ebRIM metadata: WS-Addressing headers, the Direct ``addressBlock`` and
``metadata-level``, the ``xdsb:Document`` slots that point at MTOM parts. It holds no MIME packaging
(:mod:`xdr_edge.protocol.mtom`), no ebRIM content (:mod:`xdr_edge.protocol.metadata`) and no RegistryResponse
content (:mod:`xdr_edge.protocol.response`). Imports only from :mod:`xdr_edge.protocol`.
"""

from __future__ import annotations

__all__ = [
    "BODY_WARNING",
    "DIRECT_WARNING",
    "FINAL_DESTINATION_DELIVERY",
    "WSA_WARNING",
    "DocumentRef",
    "Fault",
    "LevelPlacement",
    "RequestEnvelope",
    "RequestEnvelopeWriter",
    "ResponseEnvelope",
    "build_fault_envelope",
    "build_request_envelope",
    "build_response_envelope",
    "fault_action",
    "fault_http_status",
    "header_qname",
    "message_id_in_prefix",
    "read_request_envelope",
    "read_response_envelope",
]

from xdr_edge.protocol.soap.envelope import (
    BODY_WARNING,
    DIRECT_WARNING,
    FINAL_DESTINATION_DELIVERY,
    WSA_WARNING,
    DocumentRef,
    Fault,
    LevelPlacement,
)
from xdr_edge.protocol.soap.reply import (
    ResponseEnvelope,
    build_fault_envelope,
    build_response_envelope,
    fault_action,
    fault_http_status,
    read_response_envelope,
)
from xdr_edge.protocol.soap.request_reader import (
    RequestEnvelope,
    header_qname,
    message_id_in_prefix,
    read_request_envelope,
)
from xdr_edge.protocol.soap.request_writer import RequestEnvelopeWriter, build_request_envelope
