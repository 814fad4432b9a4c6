"""``python -m tests.fuzz``: fuzz the readers (see ``tests/fuzz/__init__.py`` and docs/fuzzing.md).

Commands::

    list                               the targets
    run TARGET [--seconds N | --runs N] [--seed S] [--corpus DIR] [--max-len N]
                                       fuzz one target (atheris/libFuzzer, else the built-in mutator)
    ci [--seed S] [--scale F]          the bounded run CI makes: every target, a fixed seed and run count,
                                       each in its own process; exit 1 when any target crashed
    replay TARGET FILE...              each file through the target's oracle, with its time; exit 1 on a crash
    seeds TARGET DIR                   write the target's seed corpus (made by our code) into DIR

A crash is written to ``.fuzz/crashes/<target>-crash-<sha1>`` (``--artifacts``) and reproduced with
``python -m tests.fuzz replay <target> <file>``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the modules under test are imported inside atheris's instrumentation, see _load
    from tests.fuzz.targets import Harness, Target

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ARTIFACTS = ROOT / ".fuzz" / "crashes"
CI_SEED = 15
#: Executions per target in the CI run, sized for about 10-20 s each on a quiet 2-core machine (instrumented). A
#: target that executes more slowly on the machine at hand is cut at ``CI_SECONDS`` (the runs it did are the
#: same as on a fast one: fixed seed, same corpus).
CI_RUNS = {
    "mtom": 20_000,
    "soap-request": 80_000,
    "reply": 20_000,
    "metadata": 50_000,
    "cda": 60_000,
    "registry-response": 150_000,
    "inspect": 10_000,
    "parse-request": 8_000,
    "app": 2_500,
    "app-values": 2_500,
    "api-json": 50_000,
    "api-form": 40_000,
    "api": 10_000,
    "api-values": 10_000,
}
CI_SECONDS = 60
MAX_LEN = 64 * 1024


def _load(instrument: bool) -> tuple[dict[str, Target], type[Harness]]:
    """Import the targets (and with them xdr_edge and multipart), under atheris's coverage instrumentation
    when fuzzing with it: only code imported inside ``instrument_imports`` reports coverage to libFuzzer."""
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["xdr_edge", "multipart"]):
            from tests.fuzz.targets import TARGETS, Harness
    else:
        from tests.fuzz.targets import TARGETS, Harness
    return TARGETS, Harness


def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the targets")
    run = sub.add_parser("run", help="fuzz one target")
    run.add_argument("target")
    run.add_argument("--seconds", type=int, help="stop after this long (default: until a crash or Ctrl-C)")
    run.add_argument("--runs", type=int, help="stop after this many executions")
    run.add_argument("--seed", type=int, default=0, help="libFuzzer/mutator seed (0: random)")
    run.add_argument(
        "--corpus", type=Path, help="corpus directory to keep and grow (default: a temporary one)"
    )
    run.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS, help="where crash inputs go")
    run.add_argument("--max-len", type=int, default=MAX_LEN, help="longest input the fuzzer makes")
    run.add_argument("--engine", choices=("atheris", "builtin"), help="default: atheris when installed")
    # For the harness's own test: every fuzzed input (after the seeds' warm-up) counts as a crash.
    run.add_argument("--plant-crash", action="store_true", help=argparse.SUPPRESS)
    ci = sub.add_parser("ci", help="the bounded, repeatable run of every target")
    ci.add_argument("--seed", type=int, default=CI_SEED)
    ci.add_argument("--scale", type=float, default=1.0, help="multiply every target's run count")
    ci.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)
    ci.add_argument("targets", nargs="*", help="only these targets")
    replay = sub.add_parser("replay", help="files through a target's oracle")
    replay.add_argument("target")
    replay.add_argument("files", nargs="+", type=Path)
    seeds = sub.add_parser("seeds", help="write a target's seed corpus")
    seeds.add_argument("target")
    seeds.add_argument("directory", type=Path)
    args = parser.parse_args(argv)

    if args.command == "ci":
        return _ci(args.seed, args.scale, args.artifacts, args.targets)
    engine = getattr(args, "engine", None) or ("atheris" if _have_atheris() else "builtin")
    targets, harness_type = _load(args.command == "run" and engine == "atheris")
    if args.command == "list":
        for target in targets.values():
            print(f"{target.name:18} {target.about}")
        return 0
    if args.target not in targets:
        parser.error(f"unknown target {args.target!r}; one of: {', '.join(targets)}")
    target = targets[args.target]
    harness = harness_type()
    try:
        if args.command == "replay":
            return _replay(target, harness, args.files)
        if args.command == "seeds":
            _write_seeds(target, harness, args.directory)
            return 0
        return _run(target, harness, args, engine)
    finally:
        harness.close()


def _write_seeds(target: Target, harness: Harness, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    inputs = target.seed_inputs(harness)
    for data in inputs:
        (directory / hashlib.sha1(data, usedforsecurity=False).hexdigest()).write_bytes(data)
    return len(inputs)


def _replay(target: Target, harness: Harness, files: Sequence[Path]) -> int:
    from tests.fuzz.oracle import Crash

    crashed = 0
    harness.world  # built before the clock starts: the times below are the inputs' own  # noqa: B018
    for path in files:
        data = path.read_bytes()
        start = time.perf_counter()
        try:
            target.check(harness, data)
        except Crash as exc:
            crashed += 1
            print(f"CRASH {path} ({len(data)} bytes): {exc}")
            continue
        print(f"ok    {path} ({len(data)} bytes) in {time.perf_counter() - start:.3f} s")
    return 1 if crashed else 0


def _run(target: Target, harness: Harness, args: argparse.Namespace, engine: str) -> int:
    from tests.fuzz.oracle import Crash

    seeds = target.seed_inputs(harness)
    for (
        data
    ) in seeds:  # the seeds first: a defect in them needs no fuzzing, and the warm-up sets the RSS peak
        try:
            target.check(harness, data)
        except Crash:
            path = _save(args.artifacts, target.name, data)
            print(f"a seed of {target.name} crashes; saved as {path}", file=sys.stderr)
            raise
    if engine == "builtin":
        return _run_builtin(target, harness, args, seeds)
    import atheris

    corpus = args.corpus or Path(tempfile.mkdtemp(prefix=f"xdr-fuzz-corpus-{target.name}-"))
    _write_seeds(target, harness, corpus)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    flags = [
        sys.argv[0],
        str(corpus),
        f"-artifact_prefix={args.artifacts}/{target.name}-",
        f"-max_len={args.max_len}",
        "-timeout=20",  # libFuzzer's own backstop; the oracle's 1 s rule is checked in TestOneInput
        "-rss_limit_mb=3072",
        "-print_final_stats=1",
    ]
    if args.seed:
        flags.append(f"-seed={args.seed}")
    if args.runs:
        flags.append(f"-runs={args.runs}")
    if args.seconds:
        flags.append(f"-max_total_time={args.seconds}")

    def one_input(data: bytes) -> None:
        try:
            if args.plant_crash:
                raise Crash("planted crash")
            target.check(harness, data)
        except Crash as exc:
            # what the crash was, on the lines CI keeps (the tail of the output), before libFuzzer's own report
            print(
                f"\n[{target.name}] crash: {exc}\n"
                f"reproduce with: python -m tests.fuzz replay {target.name} <the crash file>",
                file=sys.stderr,
            )
            raise

    print(f"fuzzing {target.name} with atheris: {len(seeds)} seeds, corpus {corpus}", file=sys.stderr)
    atheris.Setup(flags, one_input)
    atheris.Fuzz()
    return 0  # not reached: libFuzzer exits the process


def _save(directory: Path, target: str, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{target}-crash-{hashlib.sha1(data, usedforsecurity=False).hexdigest()}"
    path.write_bytes(data)
    return path


def _run_builtin(target: Target, harness: Harness, args: argparse.Namespace, seeds: list[bytes]) -> int:
    """A small mutation fuzzer for when atheris is not installed: byte flips, inserts, deletions, repeats of a
    slice (the shape of the quadratic inputs) and splices of two seeds; no coverage feedback."""
    from tests.fuzz.oracle import Crash

    rng = random.Random(args.seed or None)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    runs = 0
    while (args.runs is None or runs < args.runs) and (deadline is None or time.monotonic() < deadline):
        data = _mutate(rng, rng.choice(seeds), rng.choice(seeds), args.max_len)
        runs += 1
        try:
            if args.plant_crash:
                raise Crash("planted crash")
            target.check(harness, data)
        except Crash as exc:
            path = _save(args.artifacts, target.name, data)
            print(f"[{target.name}] crash after {runs} runs: {exc}\nsaved as {path}", file=sys.stderr)
            return 1
    print(f"stat::number_of_executed_units: {runs}", file=sys.stderr)
    return 0


def _mutate(rng: random.Random, data: bytes, other: bytes, max_len: int) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(out) + 1)
        choice = rng.randrange(6)
        if choice == 0 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif choice == 1:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif choice == 2:
            del out[at : at + rng.randint(1, 64)]
        elif choice == 3 and out:
            start = rng.randrange(len(out))
            piece = out[start : start + rng.randint(1, 16)]
            out[at:at] = piece * rng.randint(2, 4096)
        elif choice == 4:
            cut = rng.randrange(len(other) + 1)
            out = out[:at] + other[cut:]
        else:
            out[at:at] = rng.choice(_TOKENS)
    return bytes(out[:max_len])


_TOKENS = [b"\r\n", b"\n", b"--", b"<", b">", b'"', b";", b"=", b"%", b"\x00", b"\x01", b"cid:", b" " * 64]


def _ci(seed: int, scale: float, artifacts: Path, only: Sequence[str]) -> int:
    """Every target in its own process (libFuzzer exits the process when done), a fixed seed and run count,
    a fresh corpus made by our code: the same code fuzzes the same inputs, so a crash reproduces."""
    names = list(only) or list(CI_RUNS)
    unknown = [n for n in names if n not in CI_RUNS]
    if unknown:
        print(f"unknown target(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    failed: list[str] = []
    total = time.monotonic()
    for name in names:
        runs = max(1, int(CI_RUNS[name] * scale))
        command = [
            sys.executable, "-m", "tests.fuzz", "run", name, f"--seed={seed}", f"--runs={runs}",
            f"--seconds={CI_SECONDS}", f"--artifacts={artifacts}",
        ]  # fmt: skip
        start = time.monotonic()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - start
        executed = _executed(done.stdout + done.stderr)
        status = "ok" if done.returncode == 0 else f"CRASH (exit {done.returncode})"
        print(f"fuzz {name:18} {executed:>8} executions in {seconds:5.1f} s: {status}", flush=True)
        if done.returncode != 0:
            failed.append(name)
            print(_tail(done.stderr, 100), file=sys.stderr)
    print(f"fuzz: {len(names)} target(s) in {time.monotonic() - total:.0f} s", flush=True)
    if failed:
        print(
            f"fuzz: crashes in {', '.join(failed)}; inputs are in {artifacts} "
            "(python -m tests.fuzz replay <target> <file>)",
            file=sys.stderr,
        )
        return 1
    return 0


def _executed(output: str) -> str:
    found = re.findall(r"stat::number_of_executed_units:\s*(\d+)", output)
    return found[-1] if found else "?"


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


if __name__ == "__main__":
    sys.exit(main())
