#!/usr/bin/env python3
"""The addon's own work per pooled request, in process: its request, responseheaders and response hooks on
mitmproxy flows shaped like the Copilot CLI's (its headers) and the fake's answers (quota header included),
without mitmproxy's connections and dispatch. The best of several batches, so other load on the machine shows
less; `--profile` prints cProfile's view of one batch instead.

    .venv/bin/python benchmarks/hooks.py [--requests 2000 --batches 7 --profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, dump, machine

sys.path.insert(0, str(ROOT / "tests"))  # the in-process fakes the addon's tests use: no network, a fake clock

from copilot_pool.mitm.addon import CopilotPool  # noqa: E402
from copilot_pool.runtime.clock import FakeClock  # noqa: E402
from helpers import give_token  # noqa: E402
from mitmproxy import http  # noqa: E402
from mitmproxy.test import taddons, tflow, tutils  # noqa: E402
from test_tokens import ScriptedExchange, no_user  # noqa: E402

HOST = "api.individual.githubcopilot.com"
REQUEST_HEADERS = [  # what the Copilot CLI sends on an inference call, values shortened
    (b"host", HOST.encode()),
    (b"authorization", b"Bearer gho_client_own_token"),
    (b"content-type", b"application/json"),
    (b"accept", b"application/json"),
    (b"copilot-integration-id", b"copilot-developer-cli"),
    (b"editor-version", b"copilot/1.0.102"),
    (b"editor-plugin-version", b"copilot/1.0.102"),
    (b"user-agent", b"copilot/1.0.102 (linux v22.13.0) term/unknown"),
    (b"openai-intent", b"conversation-agent"),
    (b"x-github-api-version", b"2026-08-01"),
    (b"x-initiator", b"user"),
    (b"x-interaction-id", b"6f1c2d9e-7a4b-4c1e-9d3f-2b8a5e6c7d10"),
    (b"x-interaction-type", b"conversation-agent"),
    (b"x-request-id", b"0b7d3c1e-2f4a-4b6c-8d9e-1a2b3c4d5e6f"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"content-length", b"120"),
]
ANSWER_HEADERS = [
    (b"Server", b"fake-copilot/1.0"),
    (b"Date", b"Mon, 01 Jun 2026 12:00:00 GMT"),
    (b"Content-Type", b"application/json"),
    (b"x-fake-account", b"bench0"),
    (b"Content-Length", b"281"),
]
QUOTA = "x-quota-snapshot-premium_interactions"  # one premium request less in each answer, as Copilot's say


def flows(n: int) -> list[tuple[http.HTTPFlow, http.Response]]:
    out = []
    for i in range(n):
        quota = f"ent=300&ov=0.0&ovPerm=false&rem={100 - (i % 900) / 9:.4f}&rst=2026-07-01T00%3A00%3A00Z"
        flow = tflow.tflow()
        flow.request = tutils.treq(
            scheme=b"https", host=HOST, port=443, path=b"/chat/completions", method=b"POST", headers=REQUEST_HEADERS
        )
        answer = http.Response.make(200, b'{"choices": []}', [*ANSWER_HEADERS, (QUOTA.encode(), quota.encode())])
        out.append((flow, answer))
    return out


async def measure(requests: int, batches: int, profile: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="copilot-pool-hooks-"))
    accounts = work / "accounts.json"
    accounts.write_text(json.dumps({"accounts": [{"name": f"bench{i}", "github_token": f"gho_{i}"} for i in range(3)]}))
    clock = FakeClock()
    addon = CopilotPool(clock, ScriptedExchange(clock), no_user)
    with taddons.context(addon) as tctx:
        tctx.configure(addon, pool_accounts=str(accounts), pool_github_token_file=str(work / "none"))
        for account in addon.service.pool.accounts.values():
            give_token(addon.service.pool, account)

        async def one(flow: http.HTTPFlow, answer: http.Response) -> None:
            await addon.request(flow)
            flow.response = answer
            addon.responseheaders(flow)
            await addon.response(flow)

        for flow, answer in flows(200):  # warm up
            await one(flow, answer)
        seconds, profiler = [], cProfile.Profile() if profile else None
        for _ in range(1 if profile else batches):
            batch = flows(requests)
            start = time.perf_counter()
            if profiler:
                profiler.enable()
            for flow, answer in batch:
                await one(flow, answer)
            if profiler:
                profiler.disable()
            seconds.append(time.perf_counter() - start)
            assert not addon.attempts.pooled and flow.metadata["copilot_pool.account"].startswith("bench")
    if profiler:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats("copilot_pool", 30)
    return {
        "benchmark": "hooks",
        "machine": machine(),
        "settings": {"requests_per_batch": requests, "batches": len(seconds), "profiled": profile},
        "us_per_request_best": round(min(seconds) / requests * 1e6, 1),
        "us_per_request_by_batch": [round(s / requests * 1e6, 1) for s in seconds],
    }


def run(requests: int = 2000, batches: int = 7, profile: bool = False) -> dict:
    return asyncio.run(measure(requests, batches, profile))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="per batch")
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="one batch under cProfile (slower: shares, not times)")
    a = parser.parse_args()
    dump(run(a.requests, a.batches, a.profile))


if __name__ == "__main__":
    main()
