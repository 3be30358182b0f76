#!/usr/bin/env python3
"""Goodput under limits nobody told the pool.

The fake upstream gets hidden token buckets: one per account (burst B, refill R per second; empty: 429
`user_global_rate_limited` with the time to the next token) and one per account for one model (a smaller
refill; `user_model_rate_limited`). The load offers 1.5x the pool's aggregate capacity, open loop (requests
arrive at a fixed rate whatever the answers do), 80% for an unrestricted model and 20% for the limited one, for a
minute. For each strategy, and for a naive pool that rotates on every 429 (benchmarks/naive_rotate.py), in one
run, it reports:

- goodput: answers served per second over the aggregate capacity (accounts x R, plus their first bursts),
- upstream 429s per 1,000 served (what the accounts' owners see: the pattern abuse detection looks for),
- requests that reached the client as a 429 (the pool's own, once waiting cannot help, or upstream's).

    .venv/bin/python benchmarks/goodput.py [--seconds 60 --accounts 4 --burst 5 --rate 2 --modes least-busy,naive]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import ssl
import time
from pathlib import Path

import httpx
from common import COPILOT_HOST, QUIET, Upstream, dump, machine, pool_proxy, workdir
from mitmdump_process import Mitmdump, write_accounts

STRATEGIES = ["least-busy", "round-robin", "least-recent", "weighted", "quota"]
NAIVE = "naive (rotate on every 429)"
NAIVE_ADDON = Path(__file__).resolve().parent / "naive_rotate.py"
LIMITED_MODEL, FREE_MODEL = "claude-sonnet-4", "gpt-4o"


async def offer(proxy: Mitmdump, per_second: float, seconds: float, limited_share: float) -> dict:
    """Open-loop load: a request every 1/per_second seconds (with jitter), each counted by how it ended."""
    counts: dict[str, int] = {}
    verify = ssl.create_default_context(cafile=proxy.ca)
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(
        proxy=f"http://127.0.0.1:{proxy.port}", verify=verify, trust_env=False, timeout=90, limits=limits
    ) as client:

        async def one() -> None:
            model = LIMITED_MODEL if random.random() < limited_share else FREE_MODEL
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            try:
                r = await client.post(
                    f"https://{COPILOT_HOST}/chat/completions",
                    json=body,
                    headers={"authorization": "Bearer gho_goodput_client"},
                )
                key = (
                    str(r.status_code)
                    if r.status_code != 429
                    else ("429 upstream" if "x-fake-account" in r.headers else "429 pool")
                )
            except httpx.HTTPError as e:
                key = f"error {type(e).__name__}"
            counts[key] = counts.get(key, 0) + 1

        tasks, start = [], time.monotonic()
        for n in range(int(per_second * seconds)):
            await asyncio.sleep(
                max(0.0, start + n / per_second + random.uniform(-0.3, 0.3) / per_second - time.monotonic())
            )
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return {"statuses": counts, "seconds": time.monotonic() - start}


def one_mode(mode: str, a: argparse.Namespace) -> dict:
    args = ["--bucket", f"{a.burst}/{a.rate}", "--model-bucket", f"{LIMITED_MODEL}={a.model_burst}/{a.model_rate}"]
    upstream = Upstream(a.accounts, delay_ms=a.delay_ms, args=args)
    work = workdir()
    try:
        if mode == NAIVE:
            accounts = write_accounts(work / "accounts.json", upstream.accounts)
            options = {**QUIET, "naive_accounts": accounts, "naive_upstream": upstream.base_url}
            proxy = Mitmdump(work / "confdir", options, addon=NAIVE_ADDON)
        else:
            options = {"pool_strategy": mode, "pool_max_wait": a.max_wait, "pool_max_attempts": 3}
            proxy = pool_proxy(upstream, work, options=options)
        try:
            offered = a.overload * a.accounts * a.rate
            result = asyncio.run(offer(proxy, offered, a.seconds, a.limited_share))
        finally:
            proxy.stop()
        log = [e for e in upstream.log() if e["path"] == "/chat/completions"]
    finally:
        upstream.stop()
    served = result["statuses"].get("200", 0)
    capacity = a.accounts * (a.rate * a.seconds + a.burst)  # over the time load was offered
    upstream_429 = sum(1 for e in log if e["status"] == 429)
    return {
        "mode": mode,
        "offered_per_s": round(offered, 1),
        "served_per_s": round(served / result["seconds"], 2),
        "goodput": round(served / capacity, 3),
        "upstream_429_per_1000_served": round(1000 * upstream_429 / max(1, served), 1),
        "upstream_429s": upstream_429,
        "client_429s": result["statuses"].get("429 pool", 0) + result["statuses"].get("429 upstream", 0),
        "statuses": result["statuses"],
    }


def run(a: argparse.Namespace) -> dict:
    modes = a.modes.split(",") if a.modes else [*STRATEGIES, NAIVE]
    modes = [NAIVE if m == "naive" else m for m in modes]
    return {
        "benchmark": "goodput",
        "machine": machine(),
        "settings": {k: v for k, v in vars(a).items() if k != "modes"},
        "goal": {"goodput_at_least": 0.9, "upstream_429_per_1000_at_most": 20},
        "modes": [one_mode(mode, a) for mode in modes],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--burst", type=float, default=5, help="each account's hidden bucket: burst")
    parser.add_argument("--rate", type=float, default=2.0, help="each account's hidden bucket: refill per second")
    parser.add_argument("--model-burst", type=float, default=2)
    parser.add_argument("--model-rate", type=float, default=0.3, help=f"refill of {LIMITED_MODEL}'s bucket per account")
    parser.add_argument("--limited-share", type=float, default=0.2, help=f"share of requests for {LIMITED_MODEL}")
    parser.add_argument("--overload", type=float, default=1.5, help="offered load over the aggregate capacity")
    parser.add_argument("--delay-ms", type=float, default=100.0, help="the fake's time to answer")
    parser.add_argument("--max-wait", type=int, default=5, help="pool_max_wait for the pool modes")
    parser.add_argument("--modes", default="", help="comma-separated strategies and/or 'naive' (default: all)")
    dump(run(parser.parse_args()))


if __name__ == "__main__":
    main()
