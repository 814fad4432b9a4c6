"""The receiving side: the XDR edge endpoint (WSGI app), its server (cheroot with mutual TLS, or plain HTTP behind
a TLS-terminating proxy), its settings and the inbox store. See :mod:`xdr_edge.receiver.app` for the processing
order.

May import: :mod:`xdr_edge.protocol`, the shared modules and :mod:`xdr_edge.registry`; never the sender or devtools.
"""

from __future__ import annotations

from xdr_edge.receiver.app import PeerIdentitySource, ReceiverConfig, XdrEdgeApp
from xdr_edge.receiver.store import Inbox, StoredSubmission

__all__ = ["Inbox", "PeerIdentitySource", "ReceiverConfig", "StoredSubmission", "XdrEdgeApp"]
