"""xdr-edge: an XDR/SOAP Direct edge connector (IHE ITI-41 over mutual TLS), sender and receiver."""

from __future__ import annotations

__version__ = "0.1.0"
