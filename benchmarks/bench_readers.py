"""How the readers scale on the input shapes that once made them (or their regular expressions) super-linear:
each shape is timed at ``n`` and ``8n`` bytes in the same run, and the ratio is printed (about 8 for linear
code, about 64 for quadratic).

Usage: ``.venv/bin/python benchmarks/bench_readers.py [--size-kb 64] [--rounds 3]``

Shapes: a run of blanks without a newline in a bare-LF capture (the line-end restorer: 87 s for 250 KB when it
was quadratic), a chunked capture of one-byte chunks, an OID and a Direct address of many short components
(the regular expressions of ``protocol.model``), a certificate subject of blanks (``registry.verify``), a long
peer text with control characters quoted in a reply (``xml.reply_text``), a Content-Type with many parameters.
Each row is the best of ``--rounds`` runs; the ratio of best times cancels the machine's speed. Exit status 1
when any ratio is above 24 (three times linear): that shape is no longer linear.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable

from cryptography.x509.verification import VerificationError

from xdr_edge.minting import CertificateAuthority
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.inspection import inspect_stream
from xdr_edge.protocol.mediatype import parse_content_type
from xdr_edge.protocol.model import DirectAddress, is_oid
from xdr_edge.protocol.xml import reply_text
from xdr_edge.registry.verify import _explain

LINEAR_RATIO_LIMIT = 24.0


def _blank_run(n: int) -> Callable[[], object]:
    data = b'Content-Type: multipart/related; boundary=zz; type="application/xop+xml"\n\n' + b" " * n
    return lambda: inspect_stream(io.BytesIO(data))


def _one_byte_chunks(n: int) -> Callable[[], object]:
    chunks = b"1\r\nx\r\n" * (n // 6) + b"0\r\n\r\n"
    data = (
        b"POST / HTTP/1.1\r\nContent-Type: application/soap+xml\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
    )
    return lambda: inspect_stream(io.BytesIO(data))


def _oid(n: int) -> Callable[[], object]:
    text = "1." * (n // 2) + "x"
    return lambda: is_oid(text)


def _address(n: int) -> Callable[[], object]:
    text = "a@" + "a." * (n // 2) + "!"

    def parse() -> object:
        try:
            return DirectAddress(text)
        except ValueError:
            return None

    return parse


_LEAF = CertificateAuthority.create("bench CA").issue_client("bench client").cert


def _subject(n: int) -> Callable[[], object]:
    error = VerificationError("validation failed: x" + " " * n + "(encountered processing")
    return lambda: _explain(error, _LEAF)


def _reply_text(n: int) -> Callable[[], object]:
    text = "\x01a" * (n // 2)
    return lambda: reply_text(text, limit=n)


def _content_type(n: int) -> Callable[[], object]:
    value = "multipart/related" + "".join(f"; p{i}=v" for i in range(n // 10))

    def parse() -> object:
        try:
            return parse_content_type(value)
        except RemoteProtocolError:  # a refusal costs what reading to it cost: that is what is measured
            return None

    return parse


SHAPES: dict[str, Callable[[int], Callable[[], object]]] = {
    "blank run, bare-LF capture (inspect)": _blank_run,
    "one-byte chunks (inspect)": _one_byte_chunks,
    "OID '1.1.1...x' (is_oid)": _oid,
    "address 'a@a.a.a...!' (DirectAddress)": _address,
    "subject of blanks (registry.verify)": _subject,
    "control characters (reply_text)": _reply_text,
    "Content-Type parameters (mediatype)": _content_type,
}


def _best(run: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-kb", type=int, default=64, help="n; each shape also runs at 8n")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.size_kb * 1024
    print(f"{'shape':42} {'n=' + str(n):>12} {'8n':>12} {'ratio':>7}")
    worst = 0.0
    for name, make in SHAPES.items():
        small, large = _best(make(n), args.rounds), _best(make(8 * n), args.rounds)
        ratio = large / small if small > 0 else 0.0
        worst = max(worst, ratio)
        print(f"{name:42} {small * 1000:10.2f}ms {large * 1000:10.2f}ms {ratio:7.1f}")
    if worst > LINEAR_RATIO_LIMIT:
        print(
            f"a shape scales worse than linearly (ratio {worst:.1f} > {LINEAR_RATIO_LIMIT})", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
