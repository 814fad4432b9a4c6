"""Hostile peers for the tests and benchmarks: SOAP envelopes that flood the receiver's parser, and a
stand-in HISP that floods a client with its answer.

Each is a well-formed plain-SOAP ITI-41 request whose body carries one *flood*: markup that costs a few bytes
on the wire and a hundred or more as a parsed tree (see :class:`xdr_edge.protocol.xml.XmlBudget`):

* ``attributes``: 400,000 elements of 20 attributes each (8.4 million nodes in about 49 MiB);
* ``one-element``: a single element with millions of attributes;
* ``namespaces``: a single element with millions of namespace declarations.

They are written to a stream piece by piece, never held whole, so that making a 49 MiB flood costs a
benchmark or a test next to nothing. :class:`HugeAnswer` answers one request with as many bytes as it is told
(2 GiB, say), made as they are sent.
"""

from __future__ import annotations

__all__ = ["FLOOD_KINDS", "HugeAnswer", "flood_pieces", "write_flood"]

import itertools
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from xdr_edge.protocol import ns

#: What :func:`write_flood` can make.
FLOOD_KINDS = ("attributes", "one-element", "namespaces")

_TARGET = 49 * 1024 * 1024  # just under the default 50 MiB envelope limit, as in the attack it reproduces
_LETTERS = "abcdefghijklmnopqrstuvw"  # no "x": a name made of these never starts with the reserved "xml"


def _names() -> Iterator[str]:
    """Distinct, short XML names: all names of one letter, then of two, and so on."""
    for length in itertools.count(1):
        for letters in itertools.product(_LETTERS, repeat=length):
            yield "".join(letters)


def _head() -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<S:Envelope xmlns:S="{ns.SOAP}" xmlns:wsa="{ns.WSA}"><S:Header>'
        f'<wsa:Action S:mustUnderstand="true">{ns.ACTION_PNR}</wsa:Action>'
        f"<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID></S:Header><S:Body>"
        f'<xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="{ns.XDSB}">'
    ).encode()


_TAIL = b"</xdsb:ProvideAndRegisterDocumentSetRequest></S:Body></S:Envelope>\n"


def _attributes(budget: int) -> Iterator[bytes]:
    # 20 attributes in 128 bytes: 400,000 of these elements fill 49 MiB
    names = list(itertools.islice(_names(), 20))
    values = ["xy"] * 4 + ["x"] * 16
    element = ("<f " + " ".join(f'{n}="{v}"' for n, v in zip(names, values, strict=True)) + "/>").encode()
    batch = element * 1000
    for _ in range(min(400_000, budget // len(element)) // 1000):
        yield batch


def _one_element(budget: int, declaration: str) -> Iterator[bytes]:
    yield b"<f"
    used = 2
    names = _names()
    while True:
        piece = "".join(declaration % name for name in itertools.islice(names, 10_000)).encode()
        if used + len(piece) + 2 > budget:
            break
        yield piece
        used += len(piece)
    yield b"/>"


def flood_pieces(kind: str, target_bytes: int = _TARGET) -> Iterator[bytes]:
    """The envelope with a ``kind`` flood, in pieces of at most a few hundred KB, about ``target_bytes`` long."""
    head = _head()
    budget = target_bytes - len(head) - len(_TAIL)
    yield head
    if kind == "attributes":
        yield from _attributes(budget)
    elif kind == "one-element":
        yield from _one_element(budget, ' %s=""')
    elif kind == "namespaces":
        yield from _one_element(budget, ' xmlns:%s="u"')
    else:
        raise ValueError(f"unknown flood {kind!r}; one of {', '.join(FLOOD_KINDS)}")
    yield _TAIL


def write_flood(kind: str, out: BinaryIO, target_bytes: int = _TARGET) -> int:
    """Write the ``kind`` flood to ``out``; returns its length in bytes."""
    written = 0
    for piece in flood_pieces(kind, target_bytes):
        out.write(piece)
        written += len(piece)
    return written


class HugeAnswer:
    """A stand-in HISP on loopback TLS: reads one request, then answers 200 with ``size`` bytes (the start of a
    SOAP envelope, then spaces) made as they are sent, or with a 1 KB RegistryResponse Success when ``size``
    is None. It stops when the client hangs up; ``sent`` says how much of the answer went out."""

    def __init__(self, cert: Path, key: Path, size: int | None) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(cert), str(key))
        self.size = size
        self.sent = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="huge-answer", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/xdr"

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=30)

    def __enter__(self) -> HugeAnswer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        try:
            raw, _ = self._listener.accept()
            with self._context.wrap_socket(raw, server_side=True) as tls:
                tls.settimeout(60)
                _read_request(tls)
                for piece in self._answer():
                    tls.sendall(piece)
                    self.sent += len(piece)
        except OSError:
            pass  # the client stopped reading and hung up (what a bounded reader does), or we were closed

    def _answer(self) -> Iterator[bytes]:
        envelope = f'<?xml version="1.0" encoding="UTF-8"?><S:Envelope xmlns:S="{ns.SOAP}"><S:Body>'.encode()
        small = (
            envelope
            + (
                f'<rs:RegistryResponse xmlns:rs="{ns.RS}" status="{ns.STATUS_SUCCESS}"/></S:Body></S:Envelope>'
            ).encode()
        )
        size = len(small) if self.size is None else self.size
        yield b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: %d\r\n\r\n" % size
        if self.size is None:
            yield small
            return
        yield envelope
        left = size - len(envelope)
        block = b" " * (1024 * 1024)
        while left > 0:
            yield block[: min(left, len(block))]
            left -= len(block)


def _read_request(tls: ssl.SSLSocket) -> None:
    """Read one request's headers and its Content-Length body (and throw them away)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = tls.recv(65536)
        if not piece:
            return
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        piece = tls.recv(65536)
        if not piece:
            return
        body += piece
