"""``python -m benchmarks [NAME...]``: run benchmark cases, print their tables, write their figures as JSON.

Without names, the default cases run (``--list`` shows every case and which are default). Each case measures
its baselines in the same run and prints ratios against them; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _cases() -> dict[str, Any]:
    from benchmarks import case_large, case_receive, case_scripts, case_send, case_startup

    found: dict[str, Any] = {}
    for module in (case_send, case_receive, case_startup, case_large, case_scripts):
        for case in module.CASES:
            found[case.name] = case
    return found


DEFAULT = ("send", "receive", "startup", "large", "memory")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        from benchmarks.harness import child_main

        return child_main(argv[1], argv[2])
    if argv[:2] == ["--serve", "nocheck"]:
        from benchmarks.site import serve_nocheck

        serve_nocheck(argv[2], int(argv[3]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="cases to run (default: the default set; all)"
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per case (default 5)")
    parser.add_argument("--json", type=Path, help="where to write the figures (default benchmarks/out/...)")
    parser.add_argument("--dir", type=Path, help="parent of the temporary working directory")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--size-kib", type=int, default=100, help="small document size (default 100 KiB)")
    parser.add_argument(
        "--messages", type=int, default=300, help="messages per send measurement (default 300)"
    )
    parser.add_argument("--clients", type=int, default=8, help="receive: concurrent clients (default 8)")
    parser.add_argument(
        "--per-client", type=int, default=40, help="receive: messages per client (default 40)"
    )
    parser.add_argument("--large-mb", type=int, default=256, help="large: document size in MiB (default 256)")
    parser.add_argument(
        "--quick", action="store_true", help="few messages, small sizes, 1 round: checks that cases run"
    )
    args = parser.parse_args(argv)

    from benchmarks.harness import machine, run_case, table, temporary_work

    cases = _cases()
    if args.list:
        for name, case in cases.items():
            mark = "*" if name in DEFAULT else " "
            print(f"{mark} {name:<14} {case.title}")
        print("\n* run by default; `all` runs every case")
        return 0
    names = list(args.names) or list(DEFAULT)
    if names == ["all"]:
        names = list(cases)
    unknown = [n for n in names if n not in cases]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; --list shows them")
    if args.quick:
        args.rounds, args.messages, args.per_client, args.large_mb = 1, 30, 5, 16
    options = {
        "size_kib": args.size_kib,
        "messages": args.messages,
        "clients": args.clients,
        "per_client": args.per_client,
        "large_mb": args.large_mb,
        "quick": args.quick,
    }
    info = machine()
    print(
        f"machine: {info['cpus']} CPUs ({info['cpu_model'] or 'unknown model'}), Python {info['python']}, "
        f"{info['platform']}; commit {info['commit'] or '?'}",
        flush=True,
    )
    results = []
    started = time.monotonic()
    with temporary_work(args.dir, args.keep) as work:
        for name in names:
            print(f"\n== {name}", file=sys.stderr, flush=True)
            result = run_case(cases[name], max(1, args.rounds), work / name, options)
            results.append(result)
            print("\n" + table(result), flush=True)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks", *argv]),
        "machine": info,
        "options": options,
        "rounds": args.rounds,
        "seconds": round(time.monotonic() - started, 1),
        "cases": [r.as_dict() for r in results],
    }
    out = args.json or Path(__file__).resolve().parent / "out" / (
        "results-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ".json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nfigures written to {out}")
    failed = [r.case.name for r in results if r.error]
    missed = [
        f"{r.case.name}: {t.text}"
        for r in results
        for t, v in r.target_values
        if v is not None and not t.met(v)
    ]
    if failed:
        print(f"cases that failed: {', '.join(failed)}")
    if missed:
        print("targets missed:\n  " + "\n  ".join(missed))
    return 1 if failed or missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
