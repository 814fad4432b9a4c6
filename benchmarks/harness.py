"""How ``python -m benchmarks`` measures: every measurement in a child process of its own, rounds interleaved,
medians, ratios against baselines measured in the same run, one JSON file.

A :class:`Case` is a set of :class:`Variant` s measured in turn, round after round (the order rotates every
round so that drift in the machine's load does not favour one). Each variant runs as
``python -m benchmarks --child module:function ARGS`` and prints one JSON object (its figures) as its last
line of output; the parent adds the child's peak RSS and CPU time from ``os.wait4``. A case may start servers
(its ``setup``) that live for all of its rounds, each in a process of its own.

The table shows, per variant, the median of every figure over the rounds and the ratio of its main figure
to the case's baseline (the median of the variant over the median of the baseline, both from this run).
A case may state targets (a ratio, or a figure, it should reach); they are printed as met or missed.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]

Figures = dict[str, float]


@dataclass(frozen=True)
class Variant:
    """One thing measured: ``function`` (``module:function``) called in a child with ``args``."""

    name: str
    function: str
    args: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""
    baseline: str | None = None  # the variant its ratio is against, when not the case's baseline


@dataclass(frozen=True)
class Target:
    """``variant``'s main figure divided by ``of``'s (or, with ``of=None``, the figure itself) should be at
    least ``at_least`` (or at most ``at_most``)."""

    variant: str
    of: str | None
    at_least: float | None = None
    at_most: float | None = None
    figure: str | None = None  # default: the case's main figure
    text: str = ""

    def value(self, medians: Mapping[str, Figures], main: str) -> float | None:
        figure = self.figure or main
        mine = medians.get(self.variant, {}).get(figure)
        if mine is None:
            return None
        if self.of is None:
            return mine
        theirs = medians.get(self.of, {}).get(figure)
        return None if not theirs else mine / theirs

    def met(self, value: float) -> bool:
        return (self.at_least is None or value >= self.at_least) and (
            self.at_most is None or value <= self.at_most
        )


@dataclass
class Case:
    """A benchmark: its variants, the figure that ranks them, the baseline of the ratios, its targets.

    ``setup`` (optional) is a context manager factory given the case's working directory and the options; what
    it yields is merged into every variant's arguments (the port of a server it started, paths of files it
    wrote). ``variants`` is then a function of those arguments.
    """

    name: str
    title: str
    main: str  # the figure ratios are computed on, e.g. "msg_per_s"
    baseline: str
    variants: Callable[[Mapping[str, Any]], Sequence[Variant]]
    columns: Sequence[tuple[str, str, str]]  # (figure, heading, format)
    setup: (
        Callable[[Path, Mapping[str, Any]], contextlib.AbstractContextManager[Mapping[str, Any]]] | None
    ) = None
    targets: Callable[[Mapping[str, Any]], Sequence[Target]] = lambda _: ()
    higher_is_better: bool = True
    description: str = ""


def run_child(function: str, args: Mapping[str, Any], *, timeout: float = 1800) -> Figures:
    """One measurement in a fresh interpreter; its figures plus ``peak_rss_mb``, ``user_s`` and ``sys_s`` of
    that child alone (``os.wait4``: the per-child form of ``getrusage(RUSAGE_CHILDREN)``). What the child
    writes to standard error (a script's own table, a traceback) is shown as it comes."""
    import threading

    os.sync()  # one measurement's dirty pages are not written back on the next one's time
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "--child", function, json.dumps(dict(args))],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
    )
    timer = threading.Timer(timeout, child.kill)
    timer.start()
    try:
        assert child.stdout is not None
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
    finally:
        timer.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{function} failed (exit {child.returncode}; its output is above)")
    lines = out.decode().strip().splitlines()
    if not lines:
        raise RuntimeError(f"{function} printed no figures")
    figures: Figures = json.loads(lines[-1])
    figures.update({"peak_rss_mb": usage.ru_maxrss / 1024, "user_s": usage.ru_utime, "sys_s": usage.ru_stime})
    return figures


def child_main(function: str, args_json: str) -> int:
    """``--child``: import ``module:function``, call it with the JSON arguments, print its figures."""
    module_name, _, attr = function.partition(":")
    module = __import__(module_name, fromlist=[attr])
    figures = getattr(module, attr)(**json.loads(args_json))
    print(json.dumps(figures), flush=True)
    return 0


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit,
    }


def load() -> tuple[float, float, float]:
    return os.getloadavg()


@dataclass
class CaseResult:
    case: Case
    rounds: list[dict[str, Figures]] = field(default_factory=list)  # per round: variant -> figures
    notes: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    extra: dict[str, Any] = field(default_factory=dict)
    target_values: list[tuple[Target, float | None]] = field(default_factory=list)
    baselines: dict[str, str] = field(default_factory=dict)  # variant -> the variant its ratio is against

    def baseline_of(self, variant: str) -> str:
        return self.baselines.get(variant, self.case.baseline)

    def ratio(self, variant: str, medians: Mapping[str, Figures]) -> float | None:
        mine = medians.get(variant, {}).get(self.case.main)
        base = medians.get(self.baseline_of(variant), {}).get(self.case.main)
        return None if mine is None or not base else mine / base

    def medians(self) -> dict[str, Figures]:
        names: list[str] = []
        for round_ in self.rounds:
            names.extend(n for n in round_ if n not in names)
        result: dict[str, Figures] = {}
        for name in names:
            runs = [r[name] for r in self.rounds if name in r]
            keys = sorted({k for run in runs for k in run if isinstance(run[k], int | float)})
            result[name] = {
                k: statistics.median(float(run[k]) for run in runs if isinstance(run.get(k), int | float))
                for k in keys
            }
        return result

    def as_dict(self) -> dict[str, Any]:
        medians = self.medians()
        return {
            "case": self.case.name,
            "title": self.case.title,
            "main_figure": self.case.main,
            "baseline": self.case.baseline,
            "error": self.error,
            "seconds": round(self.seconds, 1),
            "load_average_before": self.load_before,
            "load_average_after": self.load_after,
            "medians": medians,
            "ratios": {name: self.ratio(name, medians) for name in medians},
            "ratio_baselines": {name: self.baseline_of(name) for name in medians},
            "targets": [
                {
                    "variant": t.variant,
                    "of": t.of,
                    "figure": t.figure or self.case.main,
                    "at_least": t.at_least,
                    "at_most": t.at_most,
                    "value": v,
                    "met": None if v is None else t.met(v),
                    "text": t.text,
                }
                for t, v in self.target_values
            ],
            "rounds": self.rounds,
            "notes": self.notes,
            **self.extra,
        }


def run_case(case: Case, rounds: int, work: Path, options: Mapping[str, Any]) -> CaseResult:
    """Set the case up, measure its variants ``rounds`` times (rotating their order), tear it down."""
    result = CaseResult(case, load_before=load())
    started = time.monotonic()
    work.mkdir(parents=True, exist_ok=True)
    try:
        with case.setup(work, options) if case.setup else contextlib.nullcontext({}) as fixture:
            shared = {**options, **fixture}
            variants = list(case.variants(shared))
            result.notes = {v.name: v.note for v in variants if v.note}
            result.baselines = {v.name: v.baseline for v in variants if v.baseline}
            for number in range(rounds):
                shift = number % len(variants)
                order = variants[shift:] + variants[:shift]
                measured: dict[str, Figures] = {}
                for variant in order:
                    figures = run_child(variant.function, {**shared, **variant.args, "work": str(work)})
                    measured[variant.name] = figures
                    _progress(case, number + 1, rounds, variant.name, figures)
                result.rounds.append({v.name: measured[v.name] for v in variants})
            result.target_values = [(t, t.value(result.medians(), case.main)) for t in case.targets(shared)]
    except Exception as exc:  # one failing case must not lose the others' figures
        result.error = f"{type(exc).__name__}: {exc}"
    result.seconds = time.monotonic() - started
    result.load_after = load()
    return result


def _progress(case: Case, number: int, rounds: int, variant: str, figures: Figures) -> None:
    shown = ", ".join(
        f"{heading.strip()} {format(figures[key], fmt)}"
        for key, heading, fmt in case.columns
        if key in figures
    )
    print(f"  [{case.name} {number}/{rounds}] {variant}: {shown}", file=sys.stderr, flush=True)


def table(result: CaseResult) -> str:
    """The case's medians as a Markdown table, the ratio column against the baseline, then its targets."""
    case = result.case
    lines = [f"### {case.name}: {case.title}", ""]
    if result.error:
        lines.append(f"ERROR: {result.error}")
        return "\n".join(lines)
    medians = result.medians()
    baselines = set(result.baselines.values()) | {case.baseline}
    headings = ["variant", *(h for _, h, _ in case.columns), f"ratio ({case.main} / baseline)"]
    lines.append("| " + " | ".join(headings) + " |")
    lines.append("|" + "---|" * len(headings))
    for name, figures in medians.items():
        cells = [name + (" (baseline)" if name in baselines else "")]
        for key, _, fmt in case.columns:
            cells.append(format(figures[key], fmt) if key in figures else "-")
        ratio = result.ratio(name, medians)
        own = result.baselines.get(name)
        cells.append("-" if ratio is None else f"{ratio:.2f}x" + (f" of {own}" if own else ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"{len(result.rounds)} rounds, medians; load average {result.load_before[0]:.1f} before, "
        f"{result.load_after[0]:.1f} after; {result.seconds:.0f} s"
    )
    for target, value in result.target_values:
        shown = "not measured" if value is None else f"{value:.2f}"
        verdict = "-" if value is None else "met" if target.met(value) else "MISSED"
        lines.append(f"- target {target.text}: {shown} ({verdict})")
    for name, note in result.notes.items():
        lines.append(f"- {name}: {note}")
    return "\n".join(lines)


@contextlib.contextmanager
def temporary_work(parent: Path | None, keep: bool) -> Iterator[Path]:
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="xdr-bench-", dir=parent))
    try:
        yield work
    finally:
        if keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
