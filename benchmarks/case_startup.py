"""``startup``: how long a call of the ``xdr-edge`` command takes before it does anything, against a bare
``python -c pass`` measured in the same run.

Each variant runs its command ``REPEATS`` times in a row (fresh processes, the venv's own ``xdr-edge``
script) and reports the median wall time; the table's ``above bare Python`` column is what the command adds.
``xdr-edge send --help`` imports the sending stack (zeep, lxml, urllib3, cryptography): the cost every call of
every command paid before commands were imported only when used.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import Case, Target, Variant

REPEATS = 15


def _xdr_edge() -> list[str]:
    script = Path(sys.executable).with_name("xdr-edge")
    return [str(script)] if script.exists() else [sys.executable, "-m", "xdr_edge"]


def timed(*, command: list[str], **_: Any) -> dict[str, float]:
    argv = [sys.executable, *command[1:]] if command[0] == "python" else [*_xdr_edge(), *command[1:]]
    times = []
    for _round in range(REPEATS):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return {"seconds": statistics.median(times), "fastest": min(times)}


def _variants(_: Mapping[str, Any]) -> Sequence[Variant]:
    return [
        Variant("python -c pass", "benchmarks.case_startup:timed", {"command": ["python", "-c", "pass"]}),
        Variant(
            "xdr-edge --version", "benchmarks.case_startup:timed", {"command": ["xdr-edge", "--version"]}
        ),
        Variant("xdr-edge --help", "benchmarks.case_startup:timed", {"command": ["xdr-edge", "--help"]}),
        Variant(
            "xdr-edge send --help",
            "benchmarks.case_startup:timed",
            {"command": ["xdr-edge", "send", "--help"]},
            note="imports the sending stack: what every call cost before",
        ),
    ]


class _Above(Target):
    """The variant's seconds minus the bare interpreter's, at most ``at_most``."""

    def value(self, medians: Mapping[str, dict[str, float]], main: str) -> float | None:
        mine = medians.get(self.variant, {}).get("seconds")
        bare = medians.get("python -c pass", {}).get("seconds")
        return None if mine is None or bare is None else mine - bare


def _targets(_: Mapping[str, Any]) -> Sequence[Target]:
    return [
        _Above(
            "xdr-edge --version", None, at_most=0.15, text="xdr-edge --version <= 0.15 s above bare Python"
        ),
        _Above("xdr-edge --help", None, at_most=0.15, text="xdr-edge --help <= 0.15 s above bare Python"),
    ]


CASES = [
    Case(
        name="startup",
        title="start-up of the xdr-edge command against a bare interpreter",
        main="seconds",
        baseline="python -c pass",
        variants=_variants,
        targets=_targets,
        higher_is_better=False,
        columns=[("seconds", "median s", ".3f"), ("fastest", "fastest s", ".3f")],
        description=__doc__ or "",
    )
]
