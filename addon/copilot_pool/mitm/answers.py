"""The answers the pool gives itself, shaped as Copilot's own: `{"error": {"message", "code"}}` JSON with an
`x-github-request-id` (editors read an answer without one as a proxy or firewall intercepting the request;
Retry-After is still honoured), and a re-sent attempt's answer made the flow's."""

from __future__ import annotations

import json
import math
import secrets

import httpx
from mitmproxy import http

from ..core.pool import NoAccount, Unavailable
from ..core.sessions import SELECTOR_REFUSED

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
    Unavailable.UNSERVED: (
        400,
        "model_not_supported",
        "No Copilot account in the pool serves model {model!r}{endpoint}. The accounts' plans: {plans}.",
    ),
    Unavailable.SESSION_LOST: (401, "invalid_auto_mode_selector", SELECTOR_REFUSED),
    Unavailable.POOL_LIMITED: (
        429,
        "pool_limited",
        "Copilot is rate limiting this pool as a whole (its integration or address), not one account; the pool "
        "holds every request for {retry_after}s instead of rotating accounts into more 429s.",
    ),
}


def retry_after(e: NoAccount) -> int | None:
    """Whole seconds for Retry-After: until the first account recovers, 1 when they are only busy."""
    if e.reason in (Unavailable.COOLING, Unavailable.POOL_LIMITED, Unavailable.BUSY) and e.recovers_in is not None:
        return max(1, math.ceil(e.recovers_in))
    return 1 if e.reason is Unavailable.BUSY else None


def code(e: NoAccount) -> str:
    return NO_ACCOUNT[e.reason][1]


def no_account(e: NoAccount, model: str | None = None, endpoint: str | None = None, plans: str = "") -> http.Response:
    """Why no account takes the request. SESSION_LOST: the session token's account cannot serve it, and a
    session token works through no other, so the client is told to mint a new one (as the service would)."""
    status, error_code, message = NO_ACCOUNT[e.reason]
    wait = retry_after(e)
    text = message.format(retry_after=wait, model=model, endpoint=f" on {endpoint}" if endpoint else "", plans=plans)
    return error(status, error_code, text, {"retry-after": str(wait)} if wait is not None else {})


def session_refused() -> http.Response:
    return no_account(NoAccount(Unavailable.SESSION_LOST))


def error(status: int, error_code: str, message: str, headers: dict[str, str] | None = None) -> http.Response:
    body = json.dumps({"error": {"message": message, "code": error_code}})
    return made(status, body, headers)


def made(status: int, body: str, headers: dict[str, str] | None = None) -> http.Response:
    """An answer of the pool's own, JSON, with a request id as GitHub's answers carry."""
    fields = {"content-type": "application/json", "x-github-request-id": request_id(), **(headers or {})}
    return http.Response.make(status, body, fields)


def request_id() -> str:
    """Shaped like GitHub's (`E2C4:3B0F:1A2B3C:4D5E6F:674D3A1B`); marked as the pool's by its first part."""
    return f"C0DE:{secrets.token_hex(2).upper()}:{secrets.token_hex(3).upper()}:{secrets.token_hex(4).upper()}"


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
