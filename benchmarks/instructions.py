#!/usr/bin/env python3
"""CPU instructions per request inside mitmdump, counted by valgrind's callgrind: a figure that other load on the
machine does not move (timings do), for the same modes as the overhead benchmark.

Each mode's mitmdump runs under callgrind (about 50 times slower); after a warm-up its counters are zeroed, one
client sends `--requests` requests back to back on one keep-alive connection, and the counters are dumped: the
instructions mitmdump executed for them (its own Python and C code, uvloop's libuv; not the kernel's), less what
it executes idle in as long (timers), divided by their number. Needs valgrind (Debian package `valgrind`).

    .venv/bin/python benchmarks/instructions.py [--requests 100 --baseline /tmp/old/addon/pool.py]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import (
    CHAT_BODY,
    COPILOT_HOST,
    MITMDUMP,
    MITMDUMP_UVLOOP,
    ON_ASYNCIO,
    QUIET,
    SHIPPED,
    Target,
    Upstream,
    dump,
    machine,
    plain_target,
    pool_target,
    revision,
    revision_name,
    workdir,
)
from mitmdump_process import Mitmdump, write_accounts
from overhead import PLAIN, PLAIN_UVLOOP, POOL, POOL_ASYNCIO, POOL_FLOW_LINES, comparisons

SLOW = 300.0  # seconds for anything under callgrind to start or answer


def under_callgrind(start: dict, out: Path) -> dict:
    """The same start, with valgrind in front of its command; the launcher's console script runs through Python."""
    command = list(start.get("command", (str(MITMDUMP),)))
    if Path(command[0]).name == "copilot-pool":
        command = [sys.executable, "-c", "from copilot_pool.mitm.launch import main; main()"]
    return {**start, "command": ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command)}


def count(target: Target, proxy: Mitmdump, out: Path, requests: int, warmup: int = 10, idle: float = 5.0) -> float:
    """Instructions mitmdump executes per request: counted over `requests` requests after a warm-up, less what
    it executes idle in as long (its timers: under callgrind every second of them is a fiftieth of a real one)."""
    with proxy.client(timeout=SLOW) as client:
        for _ in range(warmup):
            client.post(target.url, headers=target.headers, json=CHAT_BODY).raise_for_status()
        idle_rate = counted(proxy, out, 1, lambda: time.sleep(idle)) / idle
        begin = time.monotonic()
        busy = counted(
            proxy,
            out,
            2,
            lambda: [client.post(target.url, headers=target.headers, json=CHAT_BODY) for _ in range(requests)],
        )
        return (busy - idle_rate * (time.monotonic() - begin)) / requests


def counted(proxy: Mitmdump, out: Path, dump_number: int, work) -> int:
    """Instructions mitmdump executes while `work()` runs (its counters zeroed before, dumped after)."""
    pid = str(proxy.process.pid)
    subprocess.run(["callgrind_control", "--zero", pid], check=True, capture_output=True)
    work()
    subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True)
    dumped = out.with_name(f"{out.name}.{dump_number}")  # dumps on request are numbered; the rest goes to `out`
    summary = next(line for line in dumped.read_text().splitlines() if line.startswith("summary:"))
    return int(summary.split()[1])


def run(requests: int = 100, baselines: tuple[Path, ...] = ()) -> dict:
    if shutil.which("valgrind") is None:
        return {"benchmark": "instructions", "skipped": "valgrind is not installed (apt-get install valgrind)"}
    work = workdir()
    upstream = Upstream(3)
    plain = {**QUIET, "map_remote": f"|https://{COPILOT_HOST.replace('.', chr(92) + '.')}|{upstream.base_url}"}
    accounts = write_accounts(work / "accounts.json", upstream.accounts)
    pool = {**QUIET, "pool_accounts": accounts, "pool_github_api": upstream.base_url}
    modes = {  # name -> (options, how it starts)
        PLAIN: (plain, {"addon": False}),
        PLAIN_UVLOOP: (plain, {"addon": False, "command": MITMDUMP_UVLOOP}),
        POOL: (pool, SHIPPED),
        POOL_ASYNCIO: (pool, ON_ASYNCIO),
        POOL_FLOW_LINES: ({**pool, "flow_detail": 1}, SHIPPED),
    }
    for script in baselines:
        modes[revision_name(script)] = (pool, revision(script))
    per_request: dict[str, float] = {}
    try:
        for name, (options, start) in modes.items():
            out = work / f"callgrind-{len(per_request)}.out"
            proxy = Mitmdump(work / f"confdir-{len(per_request)}", options, timeout=SLOW, **under_callgrind(start, out))
            try:
                if "pool_accounts" in options:
                    proxy.wait_accounts(timeout=SLOW)
                    target = pool_target(proxy, name)
                else:
                    target = plain_target(upstream, proxy, name)
                per_request[name] = count(target, proxy, out, requests)
            finally:
                proxy.stop()
            print(f"{name}: {per_request[name]:,.0f} instructions per request", file=sys.stderr, flush=True)
    finally:
        upstream.stop()
    return {
        "benchmark": "instructions",
        "machine": machine(),
        "settings": {"requests": requests, "baselines": [str(script) for script in baselines]},
        "instructions_per_request": {name: round(n) for name, n in per_request.items()},
        "ratios": {
            f"{mode} / {other}": round(per_request[mode] / per_request[other], 3)
            for mode, other, _ in comparisons([revision_name(script) for script in baselines])
            if mode in per_request and other in per_request
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument(
        "--baseline", type=Path, action="append", default=[], help="another revision's addon/pool.py (repeatable)"
    )
    a = parser.parse_args()
    dump(run(a.requests, tuple(a.baseline)))


if __name__ == "__main__":
    main()
