"""Peak memory and time of the receiver taking a large MTOM upload, against a tiny upload in the same run.

Usage: ``.venv/bin/python benchmarks/bench_receive.py [--size-mb 1024] [--chunked] [--dir DIR] [--keep]``

The receiver must hold memory bounded for any request size. For each of two uploads (a 1 KB document, the baseline,
then a ``--size-mb`` document) a fresh receiver runs in its own child process (``start_lab``: PKI, registry,
inbox, cheroot with mutual TLS on loopback), and a second child process composes the submission and uploads it
through MTOM over mutual TLS, streaming the body from the file. The parent reads the server child's peak RSS
with ``os.wait4`` once it has exited (per-child ``ru_maxrss``), so the figure covers start-up, the upload,
the SHA-1 check and the store. The server's peak for the baseline includes the interpreter, lxml, zeep and
cryptography; the ratio big/tiny shows what the document itself costs the receiver.

With ``--chunked`` both uploads go as ``Transfer-Encoding: chunked`` with the whole body in ONE chunk, the case a
naive decoder holds in memory (what some SOAP stacks, Axis2 among them, send is many small chunks).

The client reports the wall time of the upload (request sent to response read), excluding composing (which
hashes the document once). The stored document is checked against the original's size and SHA-1.

Exit status 1 when the large upload is not stored, or the server's peak exceeds the baseline by 64 MB or more.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
EXTRA_RSS_LIMIT_MB = 64
SENDER = "dr.smith@direct.practice-a.org"
RECIPIENT = "inbox@direct.hisp.example"


# ------------------------------------------------------------------------------------------------------------
# Children
# ------------------------------------------------------------------------------------------------------------


def child_server(directory: Path) -> None:
    """Start a lab, print its coordinates as one JSON line, serve until stdin closes."""
    from xdr_edge.devtools.lab import start_lab

    lab = start_lab(directory, threads=4)
    practice = lab.pki.practices["practice-a"]
    info = {
        "port": lab.server.port,
        "endpoint": lab.endpoint,
        "ca": str(lab.ca_bundle),
        "cert": str(practice.cert),
        "key": str(practice.key),
        "inbox": str(lab.inbox.root),
    }
    print(json.dumps(info), flush=True)
    sys.stdin.read()  # the parent closes stdin when done
    lab.stop()


def _one_chunk(request: Any) -> Any:
    """The MTOM body framed as a single HTTP/1.1 chunk, then the last chunk."""
    yield b"%x\r\n" % len(request.body)
    yield from request.body
    yield b"\r\n0\r\n\r\n"


def child_client(info: dict[str, Any], document: Path, chunked: bool = False) -> dict[str, Any]:
    from xdr_edge.certs import load_identity
    from xdr_edge.practice import ClientCredential
    from xdr_edge.protocol.compose import compose
    from xdr_edge.protocol.model import Document
    from xdr_edge.protocol.wire import (
        build_request,
        parse_response,
    )
    from xdr_edge.tls import client_ssl_context

    identity = load_identity(ClientCredential(cert=Path(info["cert"]), key=Path(info["key"])))
    context = client_ssl_context(identity, Path(info["ca"]))
    submission = compose([Document.from_path(document)], sender=SENDER, recipients=[RECIPIENT])
    request = build_request(submission, endpoint=info["endpoint"])
    connection = http.client.HTTPSConnection("127.0.0.1", info["port"], context=context, timeout=600)
    start = time.perf_counter()
    try:
        if chunked:
            headers = {k: v for k, v in request.headers().items() if k.lower() != "content-length"}
            headers["Transfer-Encoding"] = "chunked"
            connection.request("POST", "/xdr", body=_one_chunk(request), headers=headers)
        else:
            # An iterable body with Content-Length: http.client streams it chunk by chunk.
            connection.request("POST", "/xdr", body=iter(request.body), headers=request.headers())
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    seconds = time.perf_counter() - start
    parsed = parse_response(response.getheader("Content-Type") or "", body)
    rr = parsed.registry_response
    return {
        "status": response.status,
        "success": bool(rr is not None and rr.is_success),
        "errors": [e.code_context for e in rr.errors] if rr is not None else [str(parsed.fault)],
        "seconds": seconds,
        "body_bytes": len(request.body),
        "unique_id": submission.submission_set.unique_id,
    }


# ------------------------------------------------------------------------------------------------------------
# Parent
# ------------------------------------------------------------------------------------------------------------


def _make_document(path: Path, size: int) -> str:
    """A file of ``size`` pseudo-random bytes (a random 1 MiB block with a counter); returns its SHA-1."""
    block = os.urandom(MIB)
    sha1 = hashlib.sha1()
    written = 0
    with path.open("wb") as fh:
        while written < size:
            chunk = (written.to_bytes(8, "big") + block)[: min(MIB, size - written)]
            fh.write(chunk)
            sha1.update(chunk)
            written += len(chunk)
    return sha1.hexdigest()


def _stored_document(inbox: Path, unique_id: str) -> Path:
    (summary_path,) = [p for p in inbox.glob("*/*/summary.json") if p.parent.name.startswith(unique_id)]
    summary = json.loads(summary_path.read_text())
    return summary_path.parent / str(summary["documents"][0]["file"])


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as fh:
        while chunk := fh.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def measure(workdir: Path, name: str, size: int, chunked: bool = False) -> dict[str, Any]:
    """One fresh server child, one client child uploading a ``size``-byte document; the server's peak RSS."""
    here = Path(__file__).resolve()
    document = workdir / f"{name}.bin"
    expected_sha1 = _make_document(document, size)
    lab_dir = workdir / f"lab-{name}"
    server = subprocess.Popen(
        [sys.executable, str(here), "_server", str(lab_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        info = json.loads(server.stdout.readline())
        client = subprocess.run(
            [
                sys.executable,
                str(here),
                "_client",
                json.dumps(info),
                str(document),
                "chunked" if chunked else "length",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if client.returncode != 0:
            raise RuntimeError(f"client failed: {client.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(client.stdout.strip().splitlines()[-1])
        if result["success"]:
            stored = _stored_document(Path(info["inbox"]), result["unique_id"])
            result["stored_ok"] = stored.stat().st_size == size and _sha1(stored) == expected_sha1
        else:
            result["stored_ok"] = False
    finally:
        server.stdin.close()
        _, status, usage = os.wait4(server.pid, 0)
        server.returncode = os.waitstatus_to_exitcode(status)
    document.unlink()
    shutil.rmtree(lab_dir, ignore_errors=True)
    result["server_peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    result["size_bytes"] = size
    return result


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_server":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        child_server(Path(sys.argv[2]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        print(json.dumps(child_client(json.loads(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "chunked")))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the large document (MiB)")
    parser.add_argument("--chunked", action="store_true", help="upload as one HTTP chunk (no Content-Length)")
    parser.add_argument("--dir", type=Path, help="working directory (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-receive-", dir=args.dir))
    try:
        tiny = measure(workdir, "tiny", 1024, args.chunked)
        big = measure(workdir, "big", args.size_mb * MIB, args.chunked)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"{'upload':<10}{'document':>14}{'HTTP':>6}{'stored':>8}{'seconds':>10}{'MiB/s':>9}{'server peak RSS':>18}"
    )
    for name, row in (("tiny", tiny), ("large", big)):
        rate = row["size_bytes"] / MIB / row["seconds"] if row["seconds"] > 0 else 0.0
        print(
            f"{name:<10}{row['size_bytes']:>14,}{row['status']:>6}{'yes' if row['stored_ok'] else 'NO':>8}"
            f"{row['seconds']:>10.2f}{rate:>9.1f}{row['server_peak_rss_mb']:>15.1f} MB"
        )
    ratio = big["server_peak_rss_mb"] / tiny["server_peak_rss_mb"]
    extra = big["server_peak_rss_mb"] - tiny["server_peak_rss_mb"]
    print(f"server peak RSS, large / tiny: {ratio:.2f}x ({extra:+.1f} MB for a {args.size_mb} MiB document)")
    if not big["stored_ok"]:
        print(f"FAIL: the large upload was not stored intact: {big['errors']}")
        return 1
    if extra >= EXTRA_RSS_LIMIT_MB:
        print(f"FAIL: the large upload cost the server {extra:.1f} MB more than the baseline")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
