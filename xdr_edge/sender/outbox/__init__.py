"""The batch folder-drop sender: practice systems write drops into a folder (often a network share), and each drop
is sent as an ITI-41 submission with its practice's certificate, accounted for across crashes, restarts, outages
and bad drops. See docs/outbox.md.

The engine is a library first (an integration engine runs :class:`Outbox` in-process); ``xdr-edge outbox`` is a
thin command over it. Modules: :mod:`.layout` (the folder, durable moves, the runner lock), :mod:`.journal` (the
SQLite write-ahead journal), :mod:`.arrivals` (finding drops by polling), :mod:`.drop` (manifest, documents,
composing with recorded uniqueIds), :mod:`.scheduler` (fair across practices), :mod:`.verdict` (sent, failed or
retried; result.json), :mod:`.finishing`, :mod:`.recovery`, :mod:`.engine` (the run), :mod:`.admin` (status,
retry). Part of :mod:`xdr_edge.sender`: imports only the protocol core, the shared modules and the sender.
"""

from __future__ import annotations

from xdr_edge.sender.config import OutboxDefaults, OutboxSettings
from xdr_edge.sender.outbox.admin import OutboxStatus, Retried, outbox_status, retry_failed
from xdr_edge.sender.outbox.engine import Outbox, RunSummary
from xdr_edge.sender.outbox.events import DropEvent, Progress
from xdr_edge.sender.outbox.layout import OutboxLayout

__all__ = [
    "DropEvent",
    "Outbox",
    "OutboxDefaults",
    "OutboxLayout",
    "OutboxSettings",
    "OutboxStatus",
    "Progress",
    "Retried",
    "RunSummary",
    "outbox_status",
    "retry_failed",
]
