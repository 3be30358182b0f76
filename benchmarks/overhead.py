#!/usr/bin/env python3
"""Overhead of the pool addon, and what each lever buys: the same load against the fake directly, plain
mitmdump (asyncio, and on uvloop), the pool as shipped (the copilot-pool launcher: uvloop, no line per flow, no
mitm.it onboarding app; its state in SQLite), the pool without one lever at a time, the pool with its state in a real
redis-server or in memory (--state), other revisions of the addon (--baseline), and the pool under 10% 429 churn.

Fixed concurrency, one keep-alive connection per worker (HTTPS through the proxies, plain HTTP directly), a fake
upstream with a fixed delay. Modes run in interleaved, rotated rounds so that background load hits all of them
alike; each comparison's ratio is taken per round (paired) and its median reported.

    .venv/bin/python benchmarks/overhead.py [--rounds 6 --seconds 1.5 --concurrency 1,8 --delay-ms 10]
    .venv/bin/python benchmarks/overhead.py --baseline /tmp/old/addon/pool.py   # git worktree add /tmp/old REV
    .venv/bin/python benchmarks/overhead.py --state redis,memory
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from common import (
    AS_SCRIPT,
    ON_ASYNCIO,
    RedisServer,
    Sample,
    Target,
    Upstream,
    direct_target,
    dump,
    machine,
    median,
    ms,
    percentile,
    plain_proxy,
    plain_target,
    pool_proxy,
    pool_target,
    revision,
    revision_name,
    run_load,
    workdir,
)

PLAIN, PLAIN_UVLOOP, POOL, POOL_ASYNCIO, POOL_FLOW_LINES, POOL_ONBOARDING, POOL_SCRIPT = (
    "mitmdump",
    "mitmdump + uvloop",
    "pool",
    "pool on asyncio",
    "pool + flow lines",
    "pool + mitm.it",
    "mitmdump -s addon/pool.py",
)
# the shipped pool without one of the launcher's defaults, as options
WITHOUT_DEFAULT = {POOL_FLOW_LINES: {"flow_detail": 1}, POOL_ONBOARDING: {"onboarding": "true"}}
# (mode, compared with, what the comparison shows): throughput ratio mode / other, p50 difference mode - other
COMPARISONS = [
    (PLAIN_UVLOOP, PLAIN, "uvloop under plain mitmdump"),
    (POOL, PLAIN, "the pool as shipped vs plain mitmdump"),
    (POOL, PLAIN_UVLOOP, "the pool's own cost (both on uvloop)"),
    (POOL, POOL_ASYNCIO, "lever: uvloop"),
    (POOL, POOL_FLOW_LINES, "lever: no line per flow"),
    (POOL, POOL_ONBOARDING, "lever: no mitm.it onboarding app"),
    (POOL_SCRIPT, PLAIN, "the pool by hand vs plain mitmdump (same loop, same defaults)"),
]
BASELINE = "this revision vs another (both as mitmdump -s)"  # POOL_SCRIPT / each --baseline
STATES = ("redis", "memory")  # besides sqlite, the default, which POOL uses


def state_mode(state: str) -> str:
    return f"pool, state in {state}"


def comparisons(baselines: list[str], states: tuple[str, ...]) -> list[tuple[str, str, str]]:
    return (
        COMPARISONS
        + [(state_mode(state), POOL, "state backend vs sqlite (the default)") for state in states]
        + [(POOL_SCRIPT, name, BASELINE) for name in baselines]
    )


def summarise(samples: list[Sample]) -> dict:
    latencies = [x for s in samples for x in s.latencies]
    statuses: dict[str, int] = {}
    served: dict[str, int] = {}
    for s in samples:
        for k, v in s.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
        for k, v in s.served_by.items():
            served[k] = served.get(k, 0) + v
    return {
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / sum(s.seconds for s in samples), 1),
        "req_per_s_by_round": [round(len(s.latencies) / s.seconds, 1) for s in samples],
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "statuses": statuses,
        "served_by": served,
    }


def run(
    rounds: int = 6,
    seconds: float = 1.5,
    concurrency: tuple[int, ...] = (1, 8),
    delay_ms: float = 10.0,
    churn: float = 0.1,
    baselines: tuple[Path, ...] = (),
    states: tuple[str, ...] = (),
) -> dict:
    work = workdir()
    upstream = Upstream(3, delay_ms=delay_ms)
    churn_upstream = Upstream(3, delay_ms=delay_ms, churn_429=churn)
    proxies, redis = [], None
    try:
        plain, plain_uvloop = plain_proxy(upstream, work), plain_proxy(upstream, work, uvloop=True)
        pools = {
            POOL: pool_proxy(upstream, work),
            POOL_ASYNCIO: pool_proxy(upstream, work, start=ON_ASYNCIO),
            POOL_SCRIPT: pool_proxy(upstream, work, start=AS_SCRIPT),
            **{name: pool_proxy(upstream, work, options=options) for name, options in WITHOUT_DEFAULT.items()},
        }
        for script in baselines:
            pools[revision_name(script)] = pool_proxy(upstream, work, start=revision(script))
        for state in states:
            if state == "redis":
                redis = RedisServer(work / "redis")
            pools[state_mode(state)] = pool_proxy(
                upstream, work, options={"pool_state": redis.url if state == "redis" else state}
            )
        churning = pool_proxy(churn_upstream, work)
        proxies = [plain, plain_uvloop, *pools.values(), churning]
        targets = [
            direct_target(upstream),
            plain_target(upstream, plain),
            plain_target(upstream, plain_uvloop, PLAIN_UVLOOP),
            *(pool_target(proxy, name) for name, proxy in pools.items()),
            pool_target(churning, f"pool, {churn:.0%} 429 churn"),
        ]
        compared = comparisons([revision_name(script) for script in baselines], states)
        levels = {c: measure(targets, rounds, seconds, c, compared) for c in concurrency}
    finally:
        for p in proxies:
            p.stop()
        upstream.stop()
        churn_upstream.stop()
        if redis is not None:
            redis.stop()
    return {
        "benchmark": "overhead",
        "machine": machine(),
        "settings": {
            "rounds": rounds,
            "seconds_per_round": seconds,
            "upstream_delay_ms": delay_ms,
            "churn_429": churn,
            "churn_retry_after_ms": 20,
            "baselines": [str(script) for script in baselines],
            "states": ["sqlite", *states],
        },
        "by_concurrency": levels,
    }


def measure(
    targets: list[Target], rounds: int, seconds: float, concurrency: int, compared: list[tuple[str, str, str]]
) -> dict:
    samples: dict[str, list[Sample]] = {t.name: [] for t in targets}
    for r in range(rounds):  # rotated order: no mode always runs first or last
        for target in targets[r % len(targets) :] + targets[: r % len(targets)]:
            samples[target.name].append(asyncio.run(run_load(target, concurrency, seconds)))
    return {
        "modes": {name: summarise(s) for name, s in samples.items()},
        "comparisons": [
            compare(samples[mode], samples[other], mode, other, label)
            for mode, other, label in compared
            if mode in samples and other in samples
        ],
    }


def compare(mine: list[Sample], theirs: list[Sample], mode: str, other: str, label: str) -> dict:
    pairs = list(zip(theirs, mine, strict=True))
    throughput_ratio = [len(b.latencies) / b.seconds / (len(a.latencies) / a.seconds) for a, b in pairs]
    p50_delta = [percentile(b.latencies, 50) - percentile(a.latencies, 50) for a, b in pairs]
    return {
        "mode": mode,
        "other": other,
        "what": label,
        "throughput_ratio_median": round(median(throughput_ratio), 3),
        "throughput_ratio_by_round": [round(x, 3) for x in throughput_ratio],
        "p50_delta_ms_median": ms(median(p50_delta)),
        "p50_delta_ms_by_round": [ms(x) for x in p50_delta],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=1.5, help="per mode per round")
    parser.add_argument("--concurrency", default="1,8", help="comma-separated levels, each measured in full")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="the fake's delay before each answer")
    parser.add_argument(
        "--churn", type=float, default=0.1, help="fraction of upstream answers that are 429s in mode (4)"
    )
    parser.add_argument(
        "--baseline", type=Path, action="append", default=[], help="another revision's addon/pool.py (repeatable)"
    )
    parser.add_argument("--state", default="", help="also the pool with its state in: redis, memory (comma-separated)")
    a = parser.parse_args()
    levels = tuple(int(c) for c in a.concurrency.split(","))
    states = tuple(s for s in a.state.split(",") if s)
    if unknown := set(states) - set(STATES):
        parser.error(f"--state: unknown {', '.join(sorted(unknown))}; choose from {', '.join(STATES)}")
    dump(run(a.rounds, a.seconds, levels, a.delay_ms, a.churn, tuple(a.baseline), states))


if __name__ == "__main__":
    main()
