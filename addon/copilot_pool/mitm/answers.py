"""The answers the pool gives itself: why no account could serve, as HTTP, and a re-sent attempt's answer."""

from __future__ import annotations

import json
import math

import httpx
from mitmproxy import http

from ..core.pool import NoAccount, Unavailable

NOT_RETURNED = frozenset({b"content-length", b"connection", b"keep-alive", b"transfer-encoding"})

# reason -> (HTTP status, error code, what to tell the client)
NO_ACCOUNT = {
    Unavailable.BUSY: (
        429,
        "pool_all_busy",
        "Every ready Copilot account is at its max_concurrency; retry in a moment, or raise max_concurrency.",
    ),
    Unavailable.COOLING: (
        429,
        "pool_all_cooling",
        "Every Copilot account in the pool is rate limited; the first one recovers in {retry_after}s. "
        "Retry after that, or add accounts to the pool.",
    ),
    Unavailable.STARTING: (
        503,
        "pool_unavailable",
        "No Copilot account in the pool holds a token yet; retry in a few seconds. `pool.status` shows why.",
    ),
    Unavailable.EXHAUSTED: (
        502,
        "pool_attempts_exhausted",
        "Every Copilot account that could serve this request was tried and failed.",
    ),
    Unavailable.UNUSABLE: (
        503,
        "pool_unavailable",
        "No Copilot account in the pool is usable (failed or disabled). "
        "`pool.status` shows why; fix the accounts file.",
    ),
    Unavailable.EMPTY: (
        503,
        "pool_unavailable",
        "The Copilot pool has no accounts. Add accounts to the accounts file (pool_accounts).",
    ),
}


def retry_after(e: NoAccount) -> int | None:
    """Whole seconds for Retry-After: until the first account recovers, 1 when they are only busy."""
    if e.reason is Unavailable.COOLING and e.recovers_in is not None:
        return max(1, math.ceil(e.recovers_in))
    return 1 if e.reason is Unavailable.BUSY else None


def code(e: NoAccount) -> str:
    return NO_ACCOUNT[e.reason][1]


def no_account(e: NoAccount) -> http.Response:
    status, error_code, message = NO_ACCOUNT[e.reason]
    wait = retry_after(e)
    headers = {"content-type": "application/json"}
    if wait is not None:
        headers["retry-after"] = str(wait)
    body = json.dumps({"error": {"message": message.format(retry_after=wait), "code": error_code}})
    return http.Response.make(status, body, headers)


def untrusted_endpoint() -> http.Response:
    """The account's endpoint is not one pool credentials may go to (core/endpoints.py): nothing was sent."""
    body = {
        "error": {
            "message": "The Copilot pool refused to send this request to the chosen account's endpoint; "
            "the pool's log says why.",
            "code": "pool_endpoint_refused",
        }
    }
    return http.Response.make(502, json.dumps(body), {"content-type": "application/json"})


def resent(status: int, headers: httpx.Headers, body: bytes) -> http.Response:
    """A re-sent attempt's answer as the flow's response, its body as upstream sent it (encoding intact)."""
    fields = [(k, v) for k, v in headers.raw if k.lower() not in NOT_RETURNED]
    response = http.Response.make(status, b"", fields)
    response.raw_content = body
    response.headers["content-length"] = str(len(body))
    return response
