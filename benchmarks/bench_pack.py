"""Memory and time of MTOM packing and reading a large document, against a plain file copy in the same run.

Usage: ``.venv/bin/python benchmarks/bench_pack.py [--size-mb 1024] [--rounds 2] [--dir DIR] [--keep]``

Each measurement runs in its own child process (so one measurement's peak cannot hide another's); the parent
collects each child's peak RSS with ``os.wait4`` (the per-child form of ``getrusage(RUSAGE_CHILDREN)``,
which would report the maximum over *all* children so far). The child reports the wall time of the operation
alone, excluding interpreter start-up. Every child imports ``xdr_edge.protocol.mtom``, so import cost is common to all
rows and the ratios show what streaming through the MTOM code costs over ``shutil.copyfileobj``. Rounds of
copy, pack, read are interleaved (``--rounds``, default 2); each row shows its fastest round.
User and system CPU seconds (``os.wait4``) are reported too: wall and system time vary with disk write-back.

Exit status 1 when packing peaks at 64 MB RSS or more (the body must stream, never be held whole).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1024 * 1024
PACK_RSS_LIMIT_MB = 64
ROOT_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">'
    b'<soap:Body><xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="urn:ihe:iti:xds-b:2007">'
    b'<xdsb:Document id="Document01"><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" '
    b'href="cid:doc1@bench"/></xdsb:Document></xdsb:ProvideAndRegisterDocumentSetRequest></soap:Body>'
    b"</soap:Envelope>"
)


# ------------------------------------------------------------------------------------------------------------
# Children: each does one operation and prints one JSON line
# ------------------------------------------------------------------------------------------------------------


def child_copy(src: Path, dst: Path) -> dict[str, object]:
    start = time.perf_counter()
    with src.open("rb") as fin, dst.open("wb") as fout:
        shutil.copyfileobj(fin, fout)
    return {"seconds": time.perf_counter() - start}


def child_pack(src: Path, dst: Path, sha1: str) -> dict[str, object]:
    from xdr_edge.protocol.model import Document
    from xdr_edge.protocol.mtom import (
        MtomBody,
        MtomPart,
    )

    start = time.perf_counter()
    # With the metadata's hash and size, as a real send does: the writer checks both while streaming.
    document = Document.from_path(src)
    part = MtomPart("doc1@bench", "application/octet-stream", document, sha1, src.stat().st_size)
    body = MtomBody(ROOT_XML, [part])
    with dst.open("wb") as fout:
        written = body.write_to(fout)
    return {"seconds": time.perf_counter() - start, "content_type": body.content_type, "length": written}


def child_read(src: Path, spool: Path, content_type: str) -> dict[str, object]:
    from xdr_edge.protocol.mtom import (
        MtomLimits,
        read_mtom,
    )

    size = src.stat().st_size
    limits = MtomLimits(max_total_bytes=size + MIB)
    start = time.perf_counter()
    with (
        src.open("rb") as fin,
        read_mtom(content_type, fin, limits=limits, spool_dir=spool, content_length=size) as package,
    ):
        part = package.parts["doc1@bench"]
        result: dict[str, object] = {
            "seconds": time.perf_counter() - start,
            "sha1": part.sha1,
            "size": part.size,
        }
    return result


def run_child(argv: list[str]) -> int:
    import xdr_edge.protocol.mtom  # noqa: F401 - same imports in every child, so the baseline carries them too

    mode, *args = argv
    if mode == "copy":
        result = child_copy(Path(args[0]), Path(args[1]))
    elif mode == "pack":
        result = child_pack(Path(args[0]), Path(args[1]), args[2])
    elif mode == "read":
        result = child_read(Path(args[0]), Path(args[1]), args[2])
    else:
        raise SystemExit(f"unknown child mode {mode!r}")
    print(json.dumps(result))
    return 0


# ------------------------------------------------------------------------------------------------------------
# Parent
# ------------------------------------------------------------------------------------------------------------


def make_document(path: Path, size_mb: int) -> str:
    """A real (non-sparse) file of ``size_mb`` MiB of random bytes, written 1 MiB at a time; its SHA-1."""
    sha1 = hashlib.sha1(usedforsecurity=False)
    with path.open("wb") as fh:
        for _ in range(size_mb):
            block = os.urandom(MIB)
            sha1.update(block)
            fh.write(block)
    return sha1.hexdigest()


Figures = tuple[float, float, float, float]  # peak RSS MB, wall s, user CPU s, system CPU s


def measure(*args: str) -> tuple[dict[str, object], float, float, float]:
    """Run one child; its JSON report, peak RSS in MB, user and system CPU seconds (from ``os.wait4``).

    Dirty pages are flushed first (``os.sync``) so that one run's write-back is not billed to the next.
    """
    os.sync()
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", *args], stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"child {args[0]} failed with status {child.returncode}")
    report: dict[str, object] = json.loads(output)
    return report, usage.ru_maxrss / 1024, usage.ru_utime, usage.ru_stime  # Linux: ru_maxrss in KiB


def row(name: str, m: Figures, size_mb: int, base: Figures) -> str:
    rss, seconds, user, system = m
    rate = size_mb / seconds if seconds else float("inf")
    ratios = f"{rss / base[0]:9.2f}x {seconds / base[1]:9.2f}x {user / base[2]:9.2f}x"
    return f"{name:<28} {rss:10.1f} {seconds:7.2f} {user:7.2f} {system:7.2f} {rate:7.0f} {ratios}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="document size in MiB (default 1024)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the temporary files")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of copy, pack, read (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary files")
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="xdr-bench-pack-", dir=options.dir))
    try:
        return bench(workdir, options.size_mb, max(1, options.rounds))
    finally:
        if options.keep:
            print(f"files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def best(runs: list[Figures]) -> Figures:
    """The fastest run's times, with the highest peak RSS of any run (the RSS limit is about the worst)."""
    fastest = min(runs, key=lambda f: f[1])
    return (max(f[0] for f in runs), fastest[1], fastest[2], fastest[3])


def figures(m: tuple[dict[str, object], float, float, float]) -> Figures:
    return (m[1], float(str(m[0]["seconds"])), m[2], m[3])


def bench(workdir: Path, size_mb: int, rounds: int) -> int:
    src, copied, packed, spool = (
        workdir / "doc.bin",
        workdir / "copy.bin",
        workdir / "packed.mime",
        workdir / "spool",
    )
    spool.mkdir()
    print(f"writing a {size_mb} MiB document in {workdir} ...", flush=True)
    expected_sha1 = make_document(src, size_mb)

    copies: list[Figures] = []
    packs: list[Figures] = []
    reads: list[Figures] = []
    for _ in range(rounds):  # interleaved, so the baseline and the subjects see the same machine conditions
        copy = measure("copy", str(src), str(copied))
        copied.unlink()
        pack = measure("pack", str(src), str(packed), expected_sha1)
        if pack[0]["length"] != packed.stat().st_size:
            raise SystemExit("packed length differs from len(MtomBody)")
        read = measure("read", str(packed), str(spool), str(pack[0]["content_type"]))
        if (read[0]["sha1"], read[0]["size"]) != (expected_sha1, size_mb * MIB):
            raise SystemExit("read_mtom did not give back the document's SHA-1 and size")
        if any(spool.iterdir()):
            raise SystemExit("read_mtom left spool files behind after close()")
        packed.unlink()
        copies.append(figures(copy))
        packs.append(figures(pack))
        reads.append(figures(read))

    base = best(copies)
    header = (
        "operation",
        "peak RSS MB",
        "wall s",
        "user s",
        "sys s",
        "MiB/s",
        "RSS ratio",
        "wall ratio",
        "user ratio",
    )
    print(f"\nbest of {rounds} round(s); peak RSS is the highest of any round")
    print("{:<28} {:>10} {:>7} {:>7} {:>7} {:>7} {:>10} {:>10} {:>10}".format(*header))
    print(row("baseline: copyfileobj", base, size_mb, base))
    print(row("MtomBody.write_to (pack)", best(packs), size_mb, base))
    print(row("read_mtom (spool + SHA-1)", best(reads), size_mb, base))
    pack_rss = best(packs)[0]
    if pack_rss >= PACK_RSS_LIMIT_MB:
        print(f"\nFAIL: packing peaked at {pack_rss:.1f} MB RSS (limit {PACK_RSS_LIMIT_MB} MB)")
        return 1
    print(f"\nOK: packing stayed under {PACK_RSS_LIMIT_MB} MB RSS")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(run_child(sys.argv[2:]))
    sys.exit(main())
