#!/usr/bin/env python3
"""Start-up: mitmdump with the pool addon and 100 accounts whose token exchange takes 200 ms each (the fake's
exchange delay). Measures from the moment mitmdump reports it is listening until the status page shows every
account active (polled every 5 ms); exchanged one after another that would take 20 s.

    .venv/bin/python benchmarks/startup.py [--accounts 100 --exchange-delay-ms 200 --runs 3]
"""

from __future__ import annotations

import argparse
import time

from common import Upstream, dump, machine, ms, workdir
from mitmdump_process import Mitmdump, write_accounts


def one_start(upstream: Upstream, count: int, timeout: float = 30.0) -> dict:
    work = workdir()
    accounts = write_accounts(work / "accounts.json", upstream.accounts)
    spawned = time.monotonic()
    options = {"pool_accounts": accounts, **upstream.pool_options(), "pool_state": f"sqlite:{work}/state.sqlite3"}
    proxy = Mitmdump(work / "confdir", options)
    listening = time.monotonic()
    try:
        first = None
        while (active := sum(a["state"] == "active" for a in proxy.status()["accounts"])) < count:
            if active and first is None:
                first = time.monotonic()
            if time.monotonic() - listening > timeout:
                raise RuntimeError(
                    f"only {active}/{count} accounts active after {timeout}s:\n" + proxy.output()[-2000:]
                )
            time.sleep(0.005)
        done = time.monotonic()
    finally:
        proxy.stop()
    return {
        "all_active_after_listening_ms": ms(done - listening),
        "first_active_after_listening_ms": ms((first or done) - listening),
        "spawn_to_listening_ms": ms(listening - spawned),
    }


def run(count: int = 100, exchange_delay_ms: float = 200.0, runs: int = 3) -> dict:
    upstream = Upstream(count, exchange_delay_ms=exchange_delay_ms)
    try:
        starts = [one_start(upstream, count) for _ in range(runs)]
    finally:
        upstream.stop()
    worst = max(s["all_active_after_listening_ms"] for s in starts)
    return {
        "benchmark": "startup",
        "machine": machine(),
        "settings": {"accounts": count, "exchange_delay_ms": exchange_delay_ms, "runs": runs},
        "runs": starts,
        "worst_all_active_ms": worst,
        "target_ms": 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--exchange-delay-ms", type=float, default=200.0)
    parser.add_argument("--runs", type=int, default=3)
    a = parser.parse_args()
    dump(run(a.accounts, a.exchange_delay_ms, a.runs))


if __name__ == "__main__":
    main()
