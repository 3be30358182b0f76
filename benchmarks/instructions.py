#!/usr/bin/env python3
"""CPU instructions per request inside mitmdump, counted by valgrind's callgrind: a figure that other load on the
machine does not move (timings do), for the same modes as the overhead benchmark.

Every mode's mitmdump runs under callgrind (about 50 times slower), all at once, with one fixed hash seed. In each
of `--rounds` rotated rounds, mode after mode, its counters are zeroed, one client sends `--requests` requests back
to back on one keep-alive connection, and the counters are dumped: the instructions mitmdump executed for them
(its own Python and C code, uvloop's libuv; not the kernel's), less what it executes idle in as long (its
timers), per request. The median round is reported. Needs valgrind (Debian package `valgrind`).

    .venv/bin/python benchmarks/instructions.py [--requests 40 --rounds 3 --baseline /tmp/old/addon/pool.py]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import (
    AS_SCRIPT,
    CHAT_BODY,
    COPILOT_HOST,
    MITMDUMP,
    MITMDUMP_UVLOOP,
    ON_ASYNCIO,
    QUIET,
    SHIPPED,
    Upstream,
    dump,
    machine,
    median,
    plain_target,
    pool_target,
    revision,
    revision_name,
    workdir,
)
from mitmdump_process import Mitmdump, write_accounts
from overhead import PLAIN, PLAIN_UVLOOP, POOL, POOL_ASYNCIO, POOL_SCRIPT, WITHOUT_DEFAULT, comparisons

SLOW = 300.0  # seconds for anything under callgrind to start or answer
SAME_HASHES = {"PYTHONHASHSEED": "0"}  # the same dict and set layouts in every run: fewer instructions that vary


class Counted:
    """One mode's mitmdump under callgrind, and a client on one keep-alive connection to it."""

    def __init__(self, name: str, work: Path, options: dict, start: dict) -> None:
        self.name, self.options, self.dumps = name, options, 0
        slug = re.sub(r"[^A-Za-z0-9.]+", "-", name)
        self.out = work / f"callgrind-{slug}.out"
        command = list(start.get("command", (str(MITMDUMP),)))
        if Path(command[0]).name == "copilot-pool":  # a console script: valgrind runs the interpreter itself
            command = [sys.executable, "-c", "from copilot_pool.mitm.launch import main; main()"]
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}", *command]
        confdir = work / f"confdir-{slug}"
        env = {**SAME_HASHES, **start.get("env", {})}
        self.proxy = Mitmdump(confdir, options, timeout=SLOW, **{**start, "env": env, "command": tuple(command)})

    def ready(self, upstream: Upstream, warmup: int = 10) -> None:
        if "pool_accounts" in self.options:
            self.proxy.wait_accounts(timeout=SLOW)
            self.target = pool_target(self.proxy, self.name)
        else:
            self.target = plain_target(upstream, self.proxy, self.name)
        self.client = self.proxy.client(timeout=SLOW)
        self.send(warmup)

    def send(self, requests: int) -> None:
        for _ in range(requests):
            self.client.post(self.target.url, headers=self.target.headers, json=CHAT_BODY).raise_for_status()

    def per_request(self, requests: int, idle: float) -> float:
        """Instructions per request over `requests` requests, less what mitmdump executes idle in as long (its
        timers: under callgrind each of their seconds is a fiftieth of a real one)."""
        idle_rate = self.counted(lambda: time.sleep(idle)) / idle
        begin = time.monotonic()
        busy = self.counted(lambda: self.send(requests))
        return (busy - idle_rate * (time.monotonic() - begin)) / requests

    def counted(self, work) -> int:
        """Instructions mitmdump executes while `work()` runs (its counters zeroed before, dumped after)."""
        pid = str(self.proxy.process.pid)
        subprocess.run(["callgrind_control", "--zero", pid], check=True, capture_output=True)
        work()
        subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True)
        self.dumps += 1
        dumped = self.out.with_name(f"{self.out.name}.{self.dumps}")  # dumps on request are numbered
        summary = next(line for line in dumped.read_text().splitlines() if line.startswith("summary:"))
        return int(summary.split()[1])

    def stop(self) -> None:
        if hasattr(self, "client"):
            self.client.close()
        self.proxy.stop()


def run(requests: int = 40, rounds: int = 3, idle: float = 3.0, baselines: tuple[Path, ...] = ()) -> dict:
    if shutil.which("valgrind") is None:
        return {"benchmark": "instructions", "skipped": "valgrind is not installed (apt-get install valgrind)"}
    work = workdir()
    upstream = Upstream(3)
    plain = {**QUIET, "map_remote": f"|https://{COPILOT_HOST.replace('.', chr(92) + '.')}|{upstream.base_url}"}
    accounts = write_accounts(work / "accounts.json", upstream.accounts)
    pool = {**QUIET, "pool_accounts": accounts, **upstream.pool_options()}
    modes = {  # name -> (options, how it starts)
        PLAIN: (plain, {"addon": False}),
        PLAIN_UVLOOP: (plain, {"addon": False, "command": MITMDUMP_UVLOOP}),
        POOL: (pool, SHIPPED),
        POOL_ASYNCIO: (pool, ON_ASYNCIO),
        POOL_SCRIPT: (pool, AS_SCRIPT),
        **{name: ({**pool, **options}, SHIPPED) for name, options in WITHOUT_DEFAULT.items()},
        **{revision_name(script): (pool, revision(script)) for script in baselines},
    }
    counted: list[Counted] = []
    by_round: dict[str, list[float]] = {name: [] for name in modes}
    try:
        for name, (options, start) in modes.items():  # all started at once: their start-ups overlap
            counted.append(Counted(name, work, options, start))
        for each in counted:
            each.ready(upstream)
        for r in range(rounds):  # rotated rounds: a busier spell of the machine hits every mode alike
            for each in counted[r % len(counted) :] + counted[: r % len(counted)]:
                by_round[each.name].append(each.per_request(requests, idle))
    finally:
        for each in counted:
            each.stop()
        upstream.stop()
    per_request = {name: median(values) for name, values in by_round.items()}
    return {
        "benchmark": "instructions",
        "machine": machine(),
        "settings": {"requests_per_round": requests, "rounds": rounds, "baselines": [str(s) for s in baselines]},
        "instructions_per_request": {name: round(n) for name, n in per_request.items()},
        "by_round": {name: [round(n) for n in values] for name, values in by_round.items()},
        "ratios": {
            f"{mode} / {other}": round(per_request[mode] / per_request[other], 3)
            for mode, other, _ in comparisons([revision_name(script) for script in baselines], ())
            if mode in per_request and other in per_request
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40, help="per mode per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline", type=Path, action="append", default=[], help="another revision's addon/pool.py (repeatable)"
    )
    a = parser.parse_args()
    dump(run(a.requests, a.rounds, baselines=tuple(a.baseline)))


if __name__ == "__main__":
    main()
