#!/usr/bin/env python3
"""Profile mitmdump with the pool addon under load: py-spy samples the running process (no restart, no
instrumentation) while the overhead benchmark's load generator drives it. Prints where the busy time goes: the
addon's share and the hottest functions. Needs the `bench` extra (`pip install -e '.[bench]'`).

    .venv/bin/python benchmarks/profiling.py [--seconds 10 --concurrency 8 --churn 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from common import Upstream, dump, machine, pool_proxy, pool_target, run_load, workdir

PY_SPY = Path(sys.executable).parent / "py-spy"
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]+)(?::\d+)?\)$")
PREFIX = re.compile(r"^.*/(site-packages|addon|lib/python3\.\d+)/")  # keep the package-relative path
ADDON_FILES = "copilot_pool/"
LAUNCHER = "copilot_pool/mitm/launch.py"  # the entry point below every frame, not the addon's work


def py_spy() -> str | None:
    return str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy")


def where(frame: str) -> str:
    """'request (/x/addon/copilot_pool/addon.py:101)' -> 'copilot_pool/addon.py:request'."""
    m = FRAME.match(frame)
    if not m:
        return frame
    return f"{PREFIX.sub('', m['file'])}:{m['func']}"


def analyse(raw: str, top: int = 12) -> dict:
    """Collapsed stacks ('frame;frame;... count' per line, root first) -> shares of busy samples."""
    total = 0
    self_time: Counter[str] = Counter()
    addon_inclusive: Counter[str] = Counter()
    addon_total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [where(f) for f in stack.split(";")]
        total += n
        self_time[frames[-1]] += n
        in_addon = [f for f in frames if f.startswith(ADDON_FILES) and not f.startswith(LAUNCHER)]
        if in_addon:
            addon_total += n
            for f in set(in_addon):
                addon_inclusive[f] += n

    def share(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    return {
        "busy_samples": total,
        "addon_inclusive_pct": share(addon_total),
        "addon_functions_inclusive_pct": {f: share(n) for f, n in addon_inclusive.most_common(top)},
        "top_self_pct": {f: share(n) for f, n in self_time.most_common(top)},
    }


def run(seconds: float = 10.0, concurrency: int = 8, churn: float = 0.1, rate: int = 250) -> dict:
    spy = py_spy()
    if spy is None:
        return {"benchmark": "profile", "skipped": "py-spy is not installed: pip install -e '.[bench]'"}
    work = workdir()
    upstream = Upstream(3, delay_ms=10, churn_429=churn)
    proxy = None
    try:
        proxy = pool_proxy(upstream, work)
        out = work / "profile.txt"
        recorder = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(proxy.process.pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)  # let py-spy attach before the load starts
        sample = asyncio.run(run_load(pool_target(proxy), concurrency, seconds))
        _, err = recorder.communicate(timeout=seconds + 30)
        if recorder.returncode != 0 or not out.exists():
            return {"benchmark": "profile", "skipped": f"py-spy failed: {err.strip()[-500:]}"}
        raw = out.read_text()
    finally:
        if proxy:
            proxy.stop()
        upstream.stop()
    return {
        "benchmark": "profile",
        "machine": machine(),
        "settings": {"seconds": seconds, "concurrency": concurrency, "churn_429": churn, "rate_hz": rate},
        "requests": len(sample.latencies),
        "statuses": sample.statuses,
        "collapsed_stacks": str(out),
        **analyse(raw),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--churn", type=float, default=0.1, help="fraction of upstream 429s, to exercise cooldowns")
    a = parser.parse_args()
    dump(run(a.seconds, a.concurrency, a.churn))


if __name__ == "__main__":
    main()
