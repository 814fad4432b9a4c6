"""The measurements that are scripts of their own (``benchmarks/bench_*.py``, each described in
``benchmarks/README.md``), run by ``python -m benchmarks`` as one case each: the script runs in a child
process with its own defaults (or quicker ones with ``--quick``), its output is shown as it prints it, and the
case records its exit status (those scripts exit 1 when what they check fails) and its wall time. Each script
measures its own baselines in its own run; they stay runnable directly, with all their options.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.harness import REPOSITORY, Case, Target, Variant

#: case name -> (script, title, arguments, arguments with --quick)
SCRIPTS: dict[str, tuple[str, str, list[str], list[str]]] = {
    "pack": (
        "bench_pack.py",
        "MTOM packing and reading of one 1 GiB document against a file copy (memory, time)",
        [],
        ["--size-mb", "16", "--rounds", "1"],
    ),
    "receive-large": (
        "bench_receive.py",
        "the receiver's peak memory taking a 1 GiB upload against a 1 KB one",
        [],
        ["--size-mb", "16"],
    ),
    "identify": (
        "bench_identify.py",
        "the per-request certificate decision with a large CRL against an empty one",
        [],
        ["--revoked", "1000", "--rounds", "30"],
    ),
    "api-auth": (
        "bench_api_auth.py",
        "authenticating a JSON API call: remembered success and scrypt against a store lookup",
        [],
        ["--rounds", "3"],
    ),
    "hostile": (
        "bench_hostile.py",
        "the receiver under structural floods, inspect of a flood, the client under a huge answer",
        [],
        ["--cases", "floods", "--response-mb", "64"],
    ),
    "xml-budget": (
        "bench_xml_budget.py",
        "the structural budget against lxml's parse and two pre-pass designs",
        [],
        ["--rounds", "1"],
    ),
    "root-memory": (
        "bench_root_memory.py",
        "peak RSS of reading a 48 MiB SOAP envelope against holding it once",
        [],
        ["--mb", "8", "--rounds", "1"],
    ),
    "cluster": (
        "bench_cluster.py",
        "one and two receivers behind nginx on a shared PostgreSQL registry (needs postgresql and nginx)",
        [],
        ["--per-client", "5", "--rounds", "1"],
    ),
}


def run_script(*, script: str, arguments: list[str], **_: Any) -> dict[str, Any]:
    """Run ``benchmarks/<script>``; its output goes to this process's standard error as it comes."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, str(REPOSITORY / "benchmarks" / script), *arguments],
        cwd=REPOSITORY,
        stdout=sys.stderr,
        stderr=sys.stderr,
        check=False,
    )
    return {"exit_status": completed.returncode, "seconds": time.perf_counter() - started}


def _case(name: str, script: str, title: str, arguments: list[str], quick: list[str]) -> Case:
    def variants(options: Mapping[str, Any]) -> Sequence[Variant]:
        chosen = quick if options.get("quick") else arguments
        return [
            Variant(script, "benchmarks.case_scripts:run_script", {"script": script, "arguments": chosen})
        ]

    def targets(_: Mapping[str, Any]) -> Sequence[Target]:
        return [Target(script, None, at_most=0, figure="exit_status", text=f"{script} exits 0")]

    return Case(
        name=name,
        title=f"{script}: {title}",
        main="seconds",
        baseline=script,
        variants=variants,
        targets=targets,
        higher_is_better=False,
        columns=[("exit_status", "exit status", ".0f"), ("seconds", "s", ".1f")],
        description=__doc__ or "",
    )


CASES = [_case(name, *entry) for name, entry in SCRIPTS.items()]
