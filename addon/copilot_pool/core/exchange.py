"""The Copilot token exchange's answer, parsed and judged: a token with its lifetime and endpoints, or why there is
none. Nothing in the answer is trusted: an unusable lifetime is a failed exchange (the caller backs off), the
endpoints are judged later by core/endpoints.py, and no message quotes more than a short prefix of a value."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from .model import AccountConfig, CopilotToken
from .parse import finite_float, json_object
from .retry_after import retry_after_seconds
from .text import quote

LOCAL_EXPIRY_SLACK = 60.0  # VS Code: trust refresh_in on the local clock, plus a minute, not the server's clock
MIN_LIFETIME = 2.0  # a token that lives less than this is no token
MAX_LIFETIME = 24 * 3600.0  # a longer promise is not believed (a 401 would still refresh it)
MIN_REFRESH = 60.0  # refresh no sooner than this (or half the lifetime, when shorter), whatever refresh_in says
MAX_TOKEN_CHARS = 8192
TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")  # printable ASCII without space: safe in a header
MAX_SKU_CHARS = 100


@dataclass(frozen=True)
class Exchanged:
    """The token exchange's answer, before it is put on the pool clock. The endpoints are as the answer gave them
    (any JSON value, None when absent): the token keeper judges them with the endpoint policy."""

    token: str = field(repr=False)
    refresh_in: float
    expires_at: float  # server epoch seconds
    api_endpoint: object
    proxy_endpoint: object
    sku: str
    refused: tuple[str, ...] = ()  # parts of the answer refused already (an `endpoints` that is no object)


# What the runtime is given to talk to GitHub (github.py has the HTTP implementations).
Exchange = Callable[[AccountConfig], Awaitable[Exchanged]]  # the Copilot token exchange
FetchUser = Callable[[AccountConfig], Awaitable[object]]  # the JSON answer of /copilot_internal/user
FetchModels = Callable[[AccountConfig, CopilotToken], Awaitable[bytes]]  # the account's own /models answer


class ExchangeError(Exception):
    """The exchange failed. `permanent`: GitHub refused the credential, retrying will not help. `retry_after`:
    seconds GitHub asked us to wait (a 429's Retry-After), if it said."""

    def __init__(self, reason: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after


def parse_exchange_response(
    status: int,
    body: bytes,
    account_type: str = "individual",
    *,
    headers: Mapping[str, str] | None = None,
    wall_now: float = 0.0,
) -> Exchanged:
    data = json_object(body)
    hint = retry_after_seconds(headers or {}, wall_now)
    if status == 401:
        raise ExchangeError("GitHub rejected the token (401): it is invalid or revoked; replace it", permanent=True)
    if status in (403, 404):
        message = data.get("message")
        if isinstance(message, str) and "rate limit" in message.lower():
            raise ExchangeError(
                f"GitHub API rate limit during token exchange ({status})", permanent=False, retry_after=hint
            )
        details = data.get("error_details")
        notification = details.get("notification_id") if isinstance(details, dict) else None
        why = notification or message or "forbidden"
        raise ExchangeError(f"no Copilot access ({status} {quote(why)})", permanent=True)
    if status == 429:
        raise ExchangeError("GitHub rate-limited the token exchange (429)", permanent=False, retry_after=hint)
    if status != 200:
        raise ExchangeError(f"token exchange answered {status}", permanent=False, retry_after=hint)
    token = data.get("token")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not TOKEN_CHARACTERS.fullmatch(token):
        raise ExchangeError("token exchange answer has no usable token (missing, not printable ASCII)", permanent=False)
    refresh_in, expires_at = finite_float(data.get("refresh_in")), finite_float(data.get("expires_at"))
    if refresh_in is None or refresh_in <= 0 or expires_at is None or expires_at <= 0:
        raise ExchangeError(
            "token exchange answer has no usable refresh_in/expires_at (missing, not a number, zero or negative)",
            permanent=False,
        )
    endpoints = data.get("endpoints")
    refused = () if endpoints is None or isinstance(endpoints, dict) else (f"endpoints {quote(endpoints)}",)
    endpoints = endpoints if isinstance(endpoints, dict) else {}
    sku = data.get("sku")
    sku = sku if isinstance(sku, str) and len(sku) <= MAX_SKU_CHARS and sku.isascii() and sku.isprintable() else ""
    return Exchanged(token, refresh_in, expires_at, endpoints.get("api"), endpoints.get("proxy"), sku, refused)


def token_lifetime(exchanged: Exchanged, wall_now: float) -> tuple[float, float]:
    """(seconds the token may be used, seconds until it should be refreshed), on the local clock.

    As VS Code does, the lifetime is refresh_in plus a minute, never longer than the server's expires_at allows.
    A token that is already expired or lives only a moment is a failed exchange, not a reason to exchange again
    at once."""
    lifetime = exchanged.refresh_in + LOCAL_EXPIRY_SLACK
    server_left = exchanged.expires_at - wall_now
    if server_left <= 0:
        raise ExchangeError(
            f"token exchange answered a token that expired {-server_left:.0f}s ago by this machine's clock "
            "(is the clock right?)",
            permanent=False,
        )
    lifetime = min(lifetime, server_left, MAX_LIFETIME)
    if lifetime < MIN_LIFETIME:
        raise ExchangeError(f"token exchange answered a token valid for only {lifetime:.1f}s", permanent=False)
    margin = min(60.0, lifetime * 0.1)
    refresh_after = min(max(exchanged.refresh_in - margin, min(MIN_REFRESH, lifetime / 2)), lifetime - margin)
    return lifetime, refresh_after
