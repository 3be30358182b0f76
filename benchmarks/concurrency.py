#!/usr/bin/env python3
"""Concurrency: waves of 200 concurrent SSE streams through mitmdump with the pool addon. Checks that no stream
fails (every one gets all its events and [DONE]), that mitmdump's resident memory (VmRSS from /proc) stays flat
from wave to wave, and that the pool's in-flight count (from its status page, http://copilot-pool/status.json)
reaches the number of open streams and returns to zero after each wave. `--plain`: the same waves through plain
mitmdump, the baseline for its memory.

    .venv/bin/python benchmarks/concurrency.py [--streams 200 --waves 6 --chunks 8 --interval-ms 250] [--plain]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from common import (
    CHAT_BODY,
    Target,
    Upstream,
    dump,
    in_flight,
    machine,
    plain_proxy,
    plain_target,
    pool_proxy,
    pool_target,
    rss_kib,
    workdir,
)


async def one_stream(client: httpx.AsyncClient, target: Target, chunks: int) -> bool:
    """True when the stream delivered all its events and [DONE]."""
    try:
        async with client.stream("POST", target.url, headers=target.headers, json={**CHAT_BODY, "stream": True}) as r:
            if r.status_code != 200:
                return False
            body = b"".join([chunk async for chunk in r.aiter_raw()])
    except httpx.HTTPError:
        return False
    return body.count(b"data: {") == chunks and body.endswith(b"data: [DONE]\n\n")


async def wave(client: httpx.AsyncClient, target: Target, streams: int, chunks: int, pid: int, pooled: bool) -> dict:
    started = time.monotonic()
    tasks = [asyncio.create_task(one_stream(client, target, chunks)) for _ in range(streams)]
    peak_rss, peak_in_flight = 0, 0
    while not all(t.done() for t in tasks):  # sample while the streams run
        peak_rss = max(peak_rss, rss_kib(pid))
        if pooled:
            peak_in_flight = max(peak_in_flight, await asyncio.to_thread(in_flight, target.proxy))
        await asyncio.sleep(0.2)
    ok = sum(await asyncio.gather(*tasks))
    seconds = time.monotonic() - started
    deadline = time.monotonic() + 10
    after = None
    while pooled and (after := await asyncio.to_thread(in_flight, target.proxy)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if not pooled:
        await asyncio.sleep(0.5)  # let mitmdump finish with the last flows before reading its memory
    return {
        "seconds": round(seconds, 1),
        "ok": ok,
        "failed": streams - ok,
        "peak_in_flight": peak_in_flight,
        "in_flight_after": after,
        "peak_rss_kib": peak_rss,
        "rss_after_kib": rss_kib(pid),
    }


async def waves(target: Target, streams: int, count: int, chunks: int, pid: int, pooled: bool) -> list[dict]:
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    async with target.client(limits=limits) as client:
        return [await wave(client, target, streams, chunks, pid, pooled) for _ in range(count)]


def run(streams: int = 200, count: int = 6, chunks: int = 8, interval_ms: float = 250.0, plain: bool = False) -> dict:
    """`plain`: the same against plain mitmdump (relaying event streams), the baseline for its memory."""
    work = workdir()
    upstream = Upstream(3, stream_chunks=chunks, stream_interval_ms=interval_ms)
    proxy = None
    try:
        if plain:
            proxy = plain_proxy(upstream, work, stream_sse=True)
            target = plain_target(upstream, proxy)
        else:
            proxy = pool_proxy(upstream, work)
            target = pool_target(proxy)
        pid = proxy.process.pid
        rss_idle = rss_kib(pid)
        started = time.monotonic()
        results = asyncio.run(waves(target, streams, count, chunks, pid, pooled=not plain))
        seconds = time.monotonic() - started
    finally:
        if proxy:
            proxy.stop()
        upstream.stop()
    after = [w["rss_after_kib"] for w in results]
    return {
        "benchmark": "concurrency",
        "proxy": "mitmdump" if plain else "pool",
        "machine": machine(),
        "settings": {"streams": streams, "waves": count, "events_per_stream": chunks, "event_interval_ms": interval_ms},
        "seconds": round(seconds, 1),
        "failed_streams": sum(w["failed"] for w in results),
        "peak_in_flight": max(w["peak_in_flight"] for w in results) if not plain else None,
        "in_flight_after_each_wave": [w["in_flight_after"] for w in results],
        "rss_idle_kib": rss_idle,
        "rss_after_each_wave_kib": after,
        # the first waves fill mitmproxy's and the allocator's caches; flat means no growth after that
        "rss_growth_last_half_kib": after[-1] - after[len(after) // 2 - 1],
        "peak_rss_kib": max(w["peak_rss_kib"] for w in results),
        "waves": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--waves", type=int, default=6)
    parser.add_argument("--chunks", type=int, default=8, help="events per stream")
    parser.add_argument("--interval-ms", type=float, default=250.0, help="between events")
    parser.add_argument("--plain", action="store_true", help="against plain mitmdump instead (memory baseline)")
    a = parser.parse_args()
    dump(run(a.streams, a.waves, a.chunks, a.interval_ms, a.plain))


if __name__ == "__main__":
    main()
