#!/usr/bin/env python3
"""Streaming: how long after the fake upstream sent the first SSE event (its `sent_at`, wall clock, same machine)
the client has it: directly, through plain mitmdump (with benchmarks/stream_sse.py, so it relays event
streams instead of buffering them), through mitmdump with the pool addon (whose relay streams every attempt), and
through the pool when 10% of upstream answers are 429s; the pool both with the relay and without (`pool_relay=false`:
the first attempt is mitmproxy's own and a failed-over answer arrives buffered, as before the relay).

    .venv/bin/python benchmarks/streaming.py [--rounds 4 --streams 40 --concurrency 2 --churn 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx
from common import (
    CHAT_BODY,
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
    workdir,
)


async def first_chunk_latencies(target: Target, streams: int, concurrency: int) -> tuple[list[float], int]:
    """Each worker opens one keep-alive connection and runs its share of streams one after another."""
    latencies: list[float] = []
    failures = 0

    async def worker(n: int) -> None:
        nonlocal failures
        async with target.client(limits=httpx.Limits(max_connections=1)) as client:
            for i in range(n + 1):  # the first stream warms the connection and is not counted
                latency = await one_stream(client, target)
                if latency is None:
                    failures += 1
                elif i:
                    latencies.append(latency)

    share = [streams // concurrency + (i < streams % concurrency) for i in range(concurrency)]
    await asyncio.gather(*(worker(n) for n in share))
    return latencies, failures


async def one_stream(client: httpx.AsyncClient, target: Target) -> float | None:
    """Seconds from the upstream's `sent_at` of the first event to its arrival here; None if the stream failed."""
    latency = None
    buffer = b""
    async with client.stream("POST", target.url, headers=target.headers, json={**CHAT_BODY, "stream": True}) as r:
        if r.status_code != 200:
            return None
        async for chunk in r.aiter_raw():
            if latency is None:
                buffer += chunk
                line, sep, _ = buffer.partition(b"\n\n")
                if sep:
                    latency = time.time() - json.loads(line.removeprefix(b"data: "))["sent_at"]
            elif b"[DONE]" in chunk:
                break
    return latency


def run(rounds: int = 4, streams: int = 40, concurrency: int = 2, churn: float = 0.1) -> dict:
    work = workdir()
    upstream = Upstream(3, stream_chunks=3, stream_interval_ms=5)
    churning = Upstream(3, stream_chunks=3, stream_interval_ms=5, churn_429=churn)
    proxies = []
    try:
        proxies = [
            plain_proxy(upstream, work, stream_sse=True),
            pool_proxy(upstream, work),
            pool_proxy(upstream, work, options={"pool_relay": "false"}),
            pool_proxy(churning, work),
            pool_proxy(churning, work, options={"pool_relay": "false"}),
        ]
        targets = [
            direct_target(upstream),
            plain_target(upstream, proxies[0]),
            pool_target(proxies[1]),
            pool_target(proxies[2], "pool, no relay (before)"),
            pool_target(proxies[3], f"pool, {churn:.0%} 429s"),
            pool_target(proxies[4], f"pool, {churn:.0%} 429s, no relay (before)"),
        ]
        results: dict[str, list[float]] = {t.name: [] for t in targets}
        p50_by_round: dict[str, list[float]] = {t.name: [] for t in targets}
        failures = 0
        for r in range(rounds):
            for target in targets[r % len(targets) :] + targets[: r % len(targets)]:
                latencies, failed = asyncio.run(first_chunk_latencies(target, streams, concurrency))
                results[target.name] += latencies
                p50_by_round[target.name].append(percentile(latencies, 50))
                failures += failed
    finally:
        for p in proxies:
            p.stop()
        upstream.stop()
        churning.stop()
    delta = [b - a for a, b in zip(p50_by_round["mitmdump"], p50_by_round["pool"], strict=True)]
    return {
        "benchmark": "streaming",
        "machine": machine(),
        "settings": {
            "rounds": rounds,
            "streams_per_round": streams,
            "concurrency": concurrency,
            "churn_429": churn,
            "plain_mitmdump": "-s benchmarks/stream_sse.py",
        },
        "failed_streams": failures,
        "first_chunk_ms": {
            name: {
                "streams": len(v),
                "p50": ms(percentile(v, 50)),
                "p90": ms(percentile(v, 90)),
                "p99": ms(percentile(v, 99)),
            }
            for name, v in results.items()
        },
        "pool_minus_mitmdump_p50_ms_median": ms(median(delta)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--streams", type=int, default=40, help="per mode per round")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--churn", type=float, default=0.1, help="fraction of upstream answers that are 429s")
    a = parser.parse_args()
    dump(run(a.rounds, a.streams, a.concurrency, a.churn))


if __name__ == "__main__":
    main()
