"""What the XML structural budget costs on real envelopes, and why it counts bytes instead of running a parser first.

Usage: ``.venv/bin/python benchmarks/bench_xml_budget.py [--rounds 7]``

Envelopes (all made by our own writer, so real ITI-41 requests):

* ``100 KiB metadata``: a plain-SOAP request whose metadata describes enough documents to reach ~100 KiB;
* ``10 MB metadata``: the same with ~1,600 DocumentEntries (about 270,000 nodes: over the default budget,
  so it is timed with a budget that admits it, to compare the parse itself);
* ``10 MB inline``: a plain-SOAP request with one base64 document inline (few nodes, long text).

Rows, each the median of ``--rounds`` runs in this process:

* **baseline: lxml parse** -- ``etree.fromstring`` with our hardened parser: the cost without any budget;
* **count pass** -- the budget check alone (three ``bytes.count`` calls), and its ratio to the baseline;
* **expat pre-pass** and **lxml pull pre-pass** -- counting elements, attributes and namespace declarations
  with a streaming parser before the real parse (the alternatives to counting bytes), and their ratios.

Then the peak RSS of each pre-pass on the ``one-element`` flood (5.7 million attributes on one element in
49 MiB, :mod:`xdr_edge.devtools.floods`), each in its own child process (``os.wait4``): a streaming parser
still holds every attribute of an element until its start tag ends, so it cannot stop that flood before it
has cost the memory; counting bytes can.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
import xml.parsers.expat
from collections.abc import Callable
from pathlib import Path

from lxml import etree

HERE = Path(__file__).resolve()


def _plain_request(documents: int, inline: bytes | None = None) -> bytes:
    from xdr_edge.protocol.compose import compose
    from xdr_edge.protocol.model import Document, MetadataLevel
    from xdr_edge.protocol.wire import build_plain_request

    docs = [Document.from_bytes(inline or b"%PDF-1.4 x", name=f"d{i}.pdf") for i in range(documents)]
    submission = compose(
        docs, sender="a@direct.a.example", recipients=["b@direct.b.example"], level=MetadataLevel.MINIMAL
    )
    _, _, xml = build_plain_request(submission, endpoint="https://hisp.example/xdr")
    return xml


def _lxml_parse(data: bytes) -> object:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
    return etree.fromstring(data, parser)


def _nodes(data: bytes) -> int:
    return data.count(b"<") - data.count(b"</") + data.count(b"=")


def _count_pass(data: bytes) -> None:
    """The budget check of xdr_edge.protocol.xml as parse() runs it (default density; no ceiling, so that the
    10 MB metadata envelope, over the default ceiling, is timed passing as well)."""
    from xdr_edge.protocol.xml import XmlBudget, _check_budget

    _check_budget(data, "envelope", XmlBudget(max_nodes=10**9))


def _expat_pass(data: bytes) -> int:
    counts = [0]
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True

    def start(name: str, attributes: dict[str, str]) -> None:
        counts[0] += 1 + len(attributes)

    def start_ns(prefix: str | None, uri: str) -> None:
        counts[0] += 1

    parser.StartElementHandler = start
    parser.StartNamespaceDeclHandler = start_ns
    view = memoryview(data)
    for offset in range(0, len(data), 1 << 20):
        parser.Parse(bytes(view[offset : offset + (1 << 20)]), False)
    parser.Parse(b"", True)
    return counts[0]


def _pull_pass(data: bytes) -> int:
    parser = etree.XMLPullParser(
        events=("start", "end", "start-ns"), resolve_entities=False, no_network=True, huge_tree=True
    )
    count = 0
    view = memoryview(data)
    for offset in range(0, len(data), 1 << 20):
        parser.feed(bytes(view[offset : offset + (1 << 20)]))
        for event, item in parser.read_events():
            if event == "start":
                count += 1 + len(item.attrib)  # type: ignore[union-attr]
            elif event == "end":
                item.clear()  # type: ignore[union-attr]  # finished: drop what it holds
            else:
                count += 1
    parser.close()
    return count


PASSES: dict[str, Callable[[bytes], object]] = {
    "count pass (ours)": _count_pass,
    "expat pre-pass": _expat_pass,
    "lxml pull pre-pass": _pull_pass,
}


def _median_ms(function: Callable[[bytes], object], data: bytes, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        function(data)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _flood_peak(name: str) -> float:
    process = subprocess.Popen([sys.executable, str(HERE), "_flood", name], stdout=subprocess.DEVNULL)
    _, _, usage = os.wait4(process.pid, 0)
    return usage.ru_maxrss / 1024


def _child_flood(name: str) -> None:
    from xdr_edge.devtools.floods import write_flood
    from xdr_edge.protocol.errors import RemoteProtocolError

    out = io.BytesIO()
    write_flood("one-element", out)
    data = out.getvalue()
    del out
    try:
        if name != "none":  # "none": the flood's bytes alone, the floor every pass starts from
            PASSES[name](data)
    except (xml.parsers.expat.ExpatError, etree.XMLSyntaxError, RemoteProtocolError):
        pass  # refused (the budget) or not well formed: what matters is the memory it took to get there


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "_flood":
        _child_flood(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    small = _plain_request(1)
    per_entry = len(_plain_request(11)) - len(small)
    envelopes = {
        "100 KiB metadata": _plain_request(max(1, 1 + (100 * 1024 - len(small)) * 10 // per_entry)),
        "10 MB metadata": _plain_request(1 + (10_000_000 - len(small)) * 10 // per_entry),
        "10 MB inline": _plain_request(1, os.urandom(7_400_000)),
    }
    print(f"{'envelope':<18}{'bytes':>12}{'nodes':>9}  {'pass':<22}{'ms':>9}{'x lxml parse':>14}")
    for label, data in envelopes.items():
        base = _median_ms(_lxml_parse, data, args.rounds)
        nodes = _nodes(data)
        print(f"{label:<18}{len(data):>12,}{nodes:>9,}  {'baseline: lxml parse':<22}{base:>9.2f}{1.0:>14.3f}")
        for name, function in PASSES.items():
            spent = _median_ms(function, data, args.rounds)
            print(f"{'':<18}{'':>12}{'':>9}  {name:<22}{spent:>9.2f}{spent / base:>14.3f}")
    print()
    baseline = _flood_peak("none")
    print(
        f"one-element flood (49 MiB, 5.7 million attributes), peak RSS of the pass (flood bytes alone: {baseline:.0f} MB)"
    )
    for name in PASSES:
        print(f"  {name:<22}{_flood_peak(name):>8.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
