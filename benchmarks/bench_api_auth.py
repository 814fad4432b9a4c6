"""Cost of authenticating a JSON API call: a full scrypt check (first call of a password, or a wrong one) against
a remembered success (the memo of :mod:`xdr_edge.api.auth`), with the store lookup alone as the baseline, all
measured in the same run.

Usage: ``.venv/bin/python benchmarks/bench_api_auth.py [--rounds 30]``

Why it matters: with the default scrypt cost every check takes tens of milliseconds of one core; without the memo
a busy integration would pay that on every call, and a two-core server would answer a few dozen calls a second.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

from xdr_edge.api.applications import add_application
from xdr_edge.api.auth import Authenticator
from xdr_edge.api.refusals import Refusal
from xdr_edge.api.throttle import FailureThrottle
from xdr_edge.registry import open_registry
from xdr_edge.registry.accounts import open_accounts


def _median_ms(func: object, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        func()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        db = Path(directory) / "registry.db"
        open_registry(str(db)).init(actor="bench")
        store = open_accounts(str(db))
        password = add_application(store, "bench", "bench", actor="bench")
        lenient = FailureThrottle(free=10**9, base=0.0, cap=0.0)
        auth = Authenticator(store, identity_throttle=lenient, address_throttle=lenient)
        good = {"applicationId": "bench", "applicationPassword": password}
        auth.authenticate(good, "127.0.0.1")  # remembered from now on

        def wrong() -> None:
            with contextlib.suppress(Refusal):  # the refusal is the measured path
                auth.authenticate({**good, "applicationPassword": "not-it"}, "127.0.0.1")

        rows = [
            ("baseline: store lookup", _median_ms(lambda: store.application("bench"), args.rounds)),
            ("remembered success", _median_ms(lambda: auth.authenticate(good, "127.0.0.1"), args.rounds)),
            ("full scrypt check (wrong password)", _median_ms(wrong, args.rounds)),
        ]
    base = rows[0][1]
    print(f"{'operation':<38} {'median ms':>10} {'x baseline':>11}")
    for name, ms in rows:
        print(f"{name:<38} {ms:>10.3f} {ms / base:>11.1f}")


if __name__ == "__main__":
    main()
