"""The receiver in-process for the fuzz harness: a whole edge (PKI, registry, inbox) built by the demo lab's own
code (:func:`xdr_edge.devtools.lab.build_edge`), and its WSGI app called with a verified client certificate in
the environ, as cheroot hands it over after the TLS handshake. No socket: a fuzz execution costs what the app
costs, so hundreds of requests per second reach the readers behind it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xdr_edge.devtools.lab import Edge, build_edge
from xdr_edge.receiver.app import XdrEdgeApp

#: The practice whose certificate every fuzz request carries, and the address bound to it.
PRACTICE = "practice-a"
BOUND_SENDER = "dr.smith@direct.practice-a.org"
UNBOUND_SENDER = "someone@elsewhere.example"
RECIPIENT = "records@direct.hisp.example"


@dataclass(frozen=True)
class AppReply:
    status: int
    content_type: str
    body: bytes


class ReceiverWorld:
    """One edge under ``directory`` and its app; not thread-safe (a fuzzer runs one input at a time)."""

    def __init__(self, directory: Path) -> None:
        self.edge: Edge = build_edge(directory)
        self.app = XdrEdgeApp(self.edge.config)
        self._pem = self.edge.pki.practices[PRACTICE].cert.read_text(encoding="ascii")

    @property
    def spool_dir(self) -> Path:
        return self.edge.inbox.spool_dir

    def post(self, content_type: str, body: bytes) -> AppReply:
        """POST ``body`` as the practice's edge would, past TLS: identity in the environ, body in wsgi.input."""
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/xdr",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "https",
            "wsgi.input": io.BytesIO(body),
            "CONTENT_TYPE": content_type,
            "CONTENT_LENGTH": str(len(body)),
            "SSL_CLIENT_CERT": self._pem,
            "SSL_CLIENT_VERIFY": "SUCCESS",
        }
        started: list[tuple[str, list[tuple[str, str]]]] = []

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            started.append((status, headers))

        data = b"".join(self.app(environ, start_response))
        status, headers = started[0]
        content_type_out = next((v for k, v in headers if k.lower() == "content-type"), "")
        return AppReply(int(status.split()[0]), content_type_out, data)
