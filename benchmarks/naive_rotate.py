"""The baseline for benchmarks/goodput.py: a naive pool that rotates on every 429 and learns nothing.

Each request goes to the next account in turn with that account's GitHub token; a 429 is sent again at once on
the next account, up to one try per account, and the last answer goes back. No cooldowns, no pacing, no storm
stop: what a pool without account safety does. Not part of the product.

    mitmdump -s benchmarks/naive_rotate.py --set naive_accounts=ACCOUNTS.json --set naive_upstream=http://127.0.0.1:PORT
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import httpx
from mitmproxy import ctx, http

COPILOT_HOSTS = {"api.githubcopilot.com", "api.individual.githubcopilot.com"}


class NaiveRotate:
    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.turn = itertools.count()
        self.client = httpx.AsyncClient(trust_env=False, timeout=60, limits=httpx.Limits(max_connections=1000))

    def load(self, loader) -> None:
        loader.add_option("naive_accounts", str, "", "accounts file (JSON) whose GitHub tokens to rotate")
        loader.add_option("naive_upstream", str, "", "where the accounts' requests go")

    def configure(self, updated) -> None:
        if "naive_accounts" in updated and ctx.options.naive_accounts:
            accounts = json.loads(Path(ctx.options.naive_accounts).read_text())["accounts"]
            self.tokens = [a["github_token"] for a in accounts]

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.pretty_host not in COPILOT_HOSTS or not self.tokens:
            return
        body, path = flow.request.raw_content or b"", flow.request.path
        headers = {"content-type": "application/json"}
        for _ in range(len(self.tokens)):  # rotate on every 429, at once
            token = self.tokens[next(self.turn) % len(self.tokens)]
            answer = await self.client.post(
                ctx.options.naive_upstream + path, content=body, headers={**headers, "authorization": f"Bearer {token}"}
            )
            if answer.status_code != 429:
                break
        fields = [(k, v) for k, v in answer.headers.raw if k.lower() not in (b"content-length", b"transfer-encoding")]
        flow.response = http.Response.make(answer.status_code, answer.content, fields)


addons = [NaiveRotate()]
