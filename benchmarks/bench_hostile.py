"""Peak memory of the receiver under structural floods, of ``xdr-edge inspect`` reading one, and of the client
reading a huge response; each against a normal exchange measured in the same run.

Usage::

    .venv/bin/python benchmarks/bench_hostile.py                         # the code of this checkout
    .venv/bin/python benchmarks/bench_hostile.py --code /tmp/xdr-before  # another checkout's xdr_edge
    .venv/bin/python benchmarks/bench_hostile.py --cases floods,inspect --response-mb 256

``--code DIR`` runs the server, ``inspect`` and the client from the ``xdr_edge`` package in DIR (a worktree of
an older commit: ``git worktree add /tmp/xdr-before <commit>``), so the same measurements give "before" and
"after" figures. The benchmark itself (making floods, posting them, the huge-response server) always runs on
this checkout; what it asks of the code under test exists in every version (``xdr-edge serve``, ``pack``,
``inspect``, ``XdrClient``).

What it does:

* **floods** (``--cases floods``): for each case a fresh ``xdr-edge serve`` (mutual TLS, default settings, a
  registry with practice-a enrolled) in a child process. It first answers one normal request (a one-document
  MTOM submission made by ``xdr-edge pack``), then the case: one flood of
  :mod:`xdr_edge.devtools.floods` (about 49 MiB of plain SOAP with 400,000 elements of 20 attributes,
  one element with 5.7 million attributes, one with 3.2 million namespace declarations), or the attribute flood
  four times at once. The server's peak RSS (``VmHWM``) and what it still holds afterwards (``VmRSS``) are read
  from ``/proc/PID/status``; "baseline" is its peak after the normal request alone.
* **inspect** (``--cases inspect``): ``xdr-edge inspect --json`` of the normal request, then of the attribute
  flood; peak RSS of each child from ``os.wait4``.
* **response** (``--cases response``): ``XdrClient.send`` of one small document to a stand-in HISP (TLS on
  loopback, in this process) that answers with a 1 KB RegistryResponse (the baseline), then with a
  ``--response-mb`` MiB (default 2048) body generated as it is sent, never stored; peak RSS of the client
  child from ``os.wait4``, and the outcome it reports.

Prints one table (peak RSS, what is held afterwards, the HTTP status and wall time of each case) and exits 1
when, on this checkout's code, a flood is not refused with 400 or costs the server more than
``2 x 49 MiB`` per concurrent flood over its baseline, or the client's peak for the huge response exceeds its
baseline by 64 MB or more.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
SENDER = "dr.smith@direct.practice-a.org"
RECIPIENT = "inbox@direct.hisp.example"
FLOOD_SOAP_TYPE = (
    'application/soap+xml; charset=UTF-8; action="urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"'
)
CLIENT_EXTRA_LIMIT_MB = 64
HERE = Path(__file__).resolve()


# ------------------------------------------------------------------------------------------------------------
# Children (run with the code under test on PYTHONPATH)
# ------------------------------------------------------------------------------------------------------------


def child_setup(site: Path) -> None:
    """A demo PKI, a registry with practice-a enrolled and bound, a serve.toml and a normal request."""
    from xdr_edge.conformance.samples import sample_ccda
    from xdr_edge.devtools.pki import write_demo_pki
    from xdr_edge.protocol.compose import compose
    from xdr_edge.protocol.model import Document
    from xdr_edge.protocol.wire import build_request
    from xdr_edge.registry import open_registry

    pki = write_demo_pki(site / "pki")
    registry = open_registry(str(site / "registry.db"))
    registry.init(actor="bench")
    registry.add_trust_anchor(pki.ca_cert.read_bytes(), actor="bench")
    registry.add_practice("practice-a", "Practice A", actor="bench")
    registry.enroll("practice-a", pki.practices["practice-a"].cert.read_bytes(), actor="bench")
    registry.bind("practice-a", SENDER, actor="bench")
    (site / "serve.toml").write_text(
        "[server]\n"
        'host = "127.0.0.1"\nport = 0\n'
        f'cert = "{pki.server_cert}"\nkey = "{pki.server_key}"\nclient_ca = "{pki.ca_cert}"\n'
        "[receiver]\n"
        f'registry = "{site / "registry.db"}"\ninbox = "{site / "inbox"}"\n'
    )
    submission = compose(
        [Document.from_bytes(sample_ccda(), name="ccd.xml")], sender=SENDER, recipients=[RECIPIENT]
    )
    request = build_request(submission, endpoint="https://127.0.0.1/xdr")
    (site / "normal.mime").write_bytes(
        f"Content-Type: {request.content_type}\r\n\r\n".encode() + b"".join(request.body)
    )
    practice = pki.practices["practice-a"]
    info = {"ca": str(pki.ca_cert), "cert": str(practice.cert), "key": str(practice.key)}
    info |= {"server_cert": str(pki.server_cert), "server_key": str(pki.server_key)}
    (site / "site.json").write_text(json.dumps(info))


def child_send(site: Path, endpoint: str) -> None:
    """Send one small document with XdrClient (one attempt) and print the outcome as JSON."""
    from xdr_edge.conformance.samples import sample_ccda
    from xdr_edge.practice import Binding, ClientCredential, Practice
    from xdr_edge.protocol.compose import compose
    from xdr_edge.protocol.model import Document
    from xdr_edge.sender.client import RetryPolicy, XdrClient

    info = json.loads((site / "site.json").read_text())
    practice = Practice(
        id="practice-a",
        name="A",
        bindings=(Binding.parse(SENDER),),
        credential=ClientCredential(cert=Path(info["cert"]), key=Path(info["key"])),
    )
    submission = compose(
        [Document.from_bytes(sample_ccda(), name="ccd.xml")], sender=SENDER, recipients=[RECIPIENT]
    )
    client = XdrClient(
        endpoint=endpoint,
        ca_bundle=info["ca"],
        practices=[practice],
        timeout=(10.0, 600.0),
        retry=RetryPolicy(max_attempts=1),
    )
    with client:
        result = client.send(submission, practice="practice-a")
    print(json.dumps({"outcome": result.outcome.value, "message": result.message[:300]}))


# ------------------------------------------------------------------------------------------------------------
# The parent
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    peak_mb: float
    held_mb: float | None = None
    status: str = ""
    seconds: float = 0.0
    note: str = ""
    baseline_mb: float | None = None


@dataclass
class Bench:
    workdir: Path
    code: Path | None
    site: Path = field(init=False)
    info: dict[str, str] = field(init=False)
    rows: list[Row] = field(default_factory=list)
    code_dir: str = ""

    def __post_init__(self) -> None:
        self.site = self.workdir / "site"
        self.site.mkdir()

    # -- children -------------------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The children's environment: ``--code`` first on the path (children run in the working directory)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.code is not None:
            env["PYTHONPATH"] = str(self.code) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def run_child(self, *args: str) -> tuple[int, str, float]:
        """Run a child to its end; its exit status, standard output and peak RSS (MB, from wait4)."""
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env(), cwd=self.workdir
        )
        assert process.stdout is not None
        output = process.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        return process.returncode, output, usage.ru_maxrss / 1024

    def setup(self) -> None:
        code, output, _ = self.run_child(sys.executable, str(HERE), "_setup", str(self.site))
        if code != 0:
            raise RuntimeError(f"setting up the site failed:\n{output}")
        self.info = json.loads((self.site / "site.json").read_text())
        probe = "import xdr_edge, pathlib; print(pathlib.Path(xdr_edge.__file__).parent.parent)"
        _, where, _ = self.run_child(sys.executable, "-c", probe)
        self.code_dir = where.strip()

    # -- the server -----------------------------------------------------------------------------------------

    def start_server(self) -> tuple[subprocess.Popen[str], int]:
        launcher = "from xdr_edge.cli import main; main()"
        process = subprocess.Popen(
            [sys.executable, "-c", launcher, "serve", "--config", str(self.site / "serve.toml"), "-q"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env(),
            cwd=self.workdir,  # not this checkout: "python -c" would import the xdr_edge found there first
        )
        assert process.stdout is not None
        first = process.stdout.readline()
        if "listening on" not in first:
            process.kill()
            raise RuntimeError(f"the server did not start: {first}{process.stdout.read()}")
        threading.Thread(target=process.stdout.read, daemon=True).start()  # keep its pipe drained
        return process, int(first.split("127.0.0.1:")[1].split("/")[0])

    @staticmethod
    def stop_server(process: subprocess.Popen[str]) -> None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.info["ca"])
        context.load_cert_chain(self.info["cert"], self.info["key"])
        context.check_hostname = False
        return context

    def post(self, port: int, content_type: str, path: Path, offset: int = 0) -> tuple[int, bytes, float]:
        """POST the file's bytes from ``offset``, streamed; the status, the first 4 KB of the answer, seconds."""
        size = path.stat().st_size - offset
        connection = http.client.HTTPSConnection(
            "127.0.0.1", port, context=self.client_context(), timeout=600
        )
        started = time.perf_counter()
        try:
            with path.open("rb") as body:
                body.seek(offset)
                headers = {"Content-Type": content_type, "Content-Length": str(size)}
                connection.request("POST", "/xdr", body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
            return response.status, answer[:4096], time.perf_counter() - started
        finally:
            connection.close()

    def post_normal(self, port: int) -> int:
        path = self.site / "normal.mime"
        head, _, _ = path.read_bytes().partition(b"\r\n\r\n")
        content_type = head.decode().split(":", 1)[1].strip()
        status, _, _ = self.post(port, content_type, path, offset=len(head) + 4)
        return status

    # -- cases ----------------------------------------------------------------------------------------------

    def flood_file(self, kind: str) -> Path:
        from xdr_edge.devtools.floods import write_flood

        path = self.workdir / f"flood-{kind}.xml"
        if not path.exists():
            with path.open("wb") as out:
                write_flood(kind, out)
        return path

    def floods(self) -> None:
        from xdr_edge.devtools.floods import FLOOD_KINDS

        for kind, copies in [*((k, 1) for k in FLOOD_KINDS), ("attributes", 4)]:
            path = self.flood_file(kind)
            process, port = self.start_server()
            try:
                normal = self.post_normal(port)
                baseline = _vm(process.pid)["VmHWM"]
                results: list[tuple[int, bytes, float]] = []

                def one(path: Path = path, port: int = port, results: list[Any] = results) -> None:
                    try:
                        results.append(self.post(port, FLOOD_SOAP_TYPE, path))
                    except OSError as exc:
                        results.append((0, str(exc).encode(), 0.0))

                threads = [threading.Thread(target=one) for _ in range(copies)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                time.sleep(0.5)
                memory = _vm(process.pid)
            finally:
                self.stop_server(process)
            statuses = ",".join(str(s) for s, _, _ in results)
            name = f"server: {kind} flood" + (f" x{copies} at once" if copies > 1 else "")
            self.rows.append(
                Row(
                    name,
                    memory["VmHWM"],
                    memory["VmRSS"],
                    statuses,
                    max(t for _, _, t in results),
                    _reason(results[0][1]),
                    baseline,
                )
            )
            if normal != 200:
                self.rows[-1].note += f" (the normal request got {normal})"

    def inspect(self) -> None:
        launcher = "from xdr_edge.cli import main; main()"
        _, _, base = self.run_child(
            sys.executable, "-c", launcher, "inspect", "--json", str(self.site / "normal.mime")
        )
        flood = self.flood_file("attributes")
        started = time.perf_counter()
        code, output, peak = self.run_child(sys.executable, "-c", launcher, "inspect", "--json", str(flood))
        seconds = time.perf_counter() - started
        self.rows.append(
            Row(
                "inspect: attributes flood",
                peak,
                None,
                f"exit {code}",
                seconds,
                _reason(output.encode()),
                base,
            )
        )

    def response(self, size: int) -> None:
        rows: list[Row] = []
        from xdr_edge.devtools.floods import HugeAnswer

        for label, body_size in (("1 KB", None), (f"{size // MIB} MiB", size)):
            cert, key = Path(self.info["server_cert"]), Path(self.info["server_key"])
            with HugeAnswer(cert, key, body_size) as server:
                started = time.perf_counter()
                code, output, peak = self.run_child(
                    sys.executable, str(HERE), "_send", str(self.site), server.url
                )
                seconds = time.perf_counter() - started
            try:
                result = json.loads(output.strip().splitlines()[-1])
                note = f"{result['outcome']}: {result['message'][:90]}"
            except (ValueError, IndexError, KeyError):
                note = f"exit {code}: {output.strip()[-200:]}"
            rows.append(Row(f"client: {label} response", peak, None, "", seconds, note))
        rows[1].baseline_mb = rows[0].peak_mb
        self.rows.extend(rows)


def _vm(pid: int) -> dict[str, float]:
    """VmHWM and VmRSS of a process, in MB."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            found[key] = int(value.split()[0]) / 1024
    return found


def _reason(answer: bytes) -> str:
    """The SOAP fault reason (or the first words) of an answer, shortened."""
    text = answer.decode(errors="replace")
    if "<S:Text" in text or "Text xml:lang" in text:
        start = text.find(">", text.find("Text")) + 1
        text = text[start : text.find("<", start)]
    elif '"message"' in text:
        try:
            findings = json.loads(text).get("findings", [])
            text = findings[0]["message"] if findings else text
        except (ValueError, AttributeError, KeyError, IndexError):
            pass
    return " ".join(text.split())[:110]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_setup":
        child_setup(Path(sys.argv[2]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_send":
        child_send(Path(sys.argv[2]), sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--code", type=Path, help="directory holding the xdr_edge package to measure")
    parser.add_argument(
        "--cases", default="floods,inspect,response", help="comma-separated: floods, inspect, response"
    )
    parser.add_argument("--response-mb", type=int, default=2048, help="size of the huge response (MiB)")
    parser.add_argument("--dir", type=Path, help="working directory (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    if args.code is not None and not (args.code / "xdr_edge" / "__init__.py").is_file():
        parser.error(f"--code {args.code}: no xdr_edge package there")
    cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    workdir = Path(tempfile.mkdtemp(prefix="bench-hostile-", dir=args.dir))
    bench = Bench(workdir, args.code)
    try:
        bench.setup()
        if "floods" in cases:
            bench.floods()
        if "inspect" in cases:
            bench.inspect()
        if "response" in cases:
            bench.response(args.response_mb * MIB)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"code under test: xdr_edge of {bench.code_dir}")
    print(f"{'case':<40}{'peak RSS':>10}{'baseline':>10}{'held':>9}{'status':>16}{'s':>7}  answer")
    for row in bench.rows:
        held = f"{row.held_mb:.0f}" if row.held_mb is not None else "-"
        base = f"{row.baseline_mb:.0f}" if row.baseline_mb is not None else "-"
        print(
            f"{row.name:<40}{row.peak_mb:>10.0f}{base:>10}{held:>9}{row.status:>16}{row.seconds:>7.2f}  {row.note}"
        )
    print("(MB; baseline: the same process after one normal exchange; held: RSS after the case)")
    return 0 if args.code is not None else _verdict(bench.rows)


def _verdict(rows: list[Row]) -> int:
    failed = False
    for row in rows:
        if row.name.startswith("server:"):
            copies = 4 if "x4" in row.name else 1
            statuses = row.status.split(",")
            extra = row.peak_mb - (row.baseline_mb or 0)
            if any(s != "400" for s in statuses) or extra > copies * 2 * 49:
                print(f"FAIL: {row.name}: {row.status}, {extra:.0f} MB over the baseline")
                failed = True
        elif row.name.startswith("client:") and row.baseline_mb is not None:
            if row.peak_mb - row.baseline_mb >= CLIENT_EXTRA_LIMIT_MB:
                print(f"FAIL: {row.name}: {row.peak_mb - row.baseline_mb:.0f} MB over the baseline")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
