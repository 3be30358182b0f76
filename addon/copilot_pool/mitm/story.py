"""The pooled flow's comment, in one line: who served, which model, what came back, how fast, what it cost;
then what each attempt got (`pool: bob · gpt-4o · 200 · first byte 0.31s · 4.20s · 0.025 credits — alice (...)
-> 429 (rate limited), alice cooling 60s; retried on bob (...) -> 200`)."""

from __future__ import annotations

import re

from mitmproxy import http

PREFIX = "pool: "
ENGINE = re.compile(r"/v1/engines/([^/]+)/completions$")


def tell(flow: http.HTTPFlow, account: str, model: str | None, credits: float | None) -> None:
    """Put the headline in front of the attempts the comment already lists."""
    request, response = flow.request, flow.response
    parts = [account, model or _engine(request.path)]
    if response is not None:
        parts.append(str(response.status_code))
        if response.timestamp_start:
            parts.append(f"first byte {response.timestamp_start - request.timestamp_start:.2f}s")
        if response.timestamp_end:
            parts.append(f"{response.timestamp_end - request.timestamp_start:.2f}s")
        if credits is not None:
            parts.append(f"{credits:.3g} credits")
    attempts = flow.comment.removeprefix(PREFIX)
    flow.comment = PREFIX + " · ".join(p for p in parts if p) + " — " + attempts


def _engine(path: str) -> str | None:
    """A code completion names its model in the path."""
    m = ENGINE.search(path.split("?", 1)[0]) if "/engines/" in path else None
    return m.group(1) if m else None
