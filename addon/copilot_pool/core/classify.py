"""What an upstream answer means for the account that got it and for the request that asked.

One table (mirrored in README.md), decided before anything acts on an answer:

| answer                                   | account                               | request              |
|------------------------------------------|---------------------------------------|----------------------|
| 2xx, 3xx                                 | served                                | done                 |
| 402, or a quota code in the body         | cools until the quota resets          | another account      |
| 429 `user_model_rate_limited`            | cools for that model only             | another account      |
| 429 weekly or session limit              | cools until the reset its headers say | another account      |
| 429                                      | cools for the hint, else the default  | another account      |
| 401 `Invalid auto-mode selector`         | nothing (the session token is bound)  | passed through       |
| 401                                      | token refreshed                       | another account      |
| 421 (token sent to the wrong endpoint)   | token refreshed (endpoints may move)  | another account      |
| 400 `model_not_supported` and the like   | its model catalogue fetched again     | another account      |
| 400, 413, 422, 466                       | nothing (the caller's problem)        | passed through       |
| 5xx                                      | nothing (upstream-wide)               | passed through       |
| connection error                         | nothing                               | another account      |
| anything else (403, 404, ...)            | nothing                               | passed through       |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from .limits import POOL_WIDE_CODES, Scope
from .parse import json_object
from .quota import from_headers, usage_limits
from .retry_after import retry_after_seconds
from .sessions import SELECTOR_REFUSED

QUOTA_CODES = frozenset({"quota_exceeded", "free_quota_exceeded", "overage_limit_reached"})
MODEL_CODES = frozenset({"model_not_supported", "unsupported_api_for_model", "no_available_model_endpoints"})
CALLER_ERRORS = frozenset({400, 413, 422, 466})
QUOTA_COOLDOWN = 6 * 3600.0  # quota exhausted and no reset time given
MODEL_LIMIT_CODES = frozenset({"user_model_rate_limited", "model_overloaded"})
WEEKLY_CODES = frozenset({"user_weekly_rate_limited"})
BLOCKED_COOLDOWN = 300.0  # `extension_blocked`: about five minutes, as the service asks
MAX_QUOTA_COOLDOWN = 31 * 86400.0  # quotas reset monthly
MAX_BODY_SNIFF = 64 * 1024


class Outcome(StrEnum):
    OK = "ok"
    RATE_LIMITED = "rate limited"
    QUOTA_EXHAUSTED = "quota exhausted"
    UNAUTHORIZED = "unauthorized"
    MISDIRECTED = "misdirected"
    SESSION_REFUSED = "session token refused"
    MODEL_UNSUPPORTED = "model not served by this account"
    CALLER_ERROR = "caller error"
    UPSTREAM_ERROR = "upstream error"
    CONNECTION_ERROR = "connection error"
    OTHER = "other"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    status: int  # 0 for a connection error
    failover: bool = False  # try the request on another account
    cooldown: float | None = None  # seconds to cool the account
    refresh: bool = False  # the account's token was refused: re-exchange it
    recatalogue: bool = False  # the account's model catalogue is stale: fetch it again
    scope: Scope = Scope.ACCOUNT  # what the cooldown covers: the account, or only the request's model
    reason: str | None = None  # the limit's name (the error code, "weekly limit", ...), shown with the cooldown
    pool_wide: bool = False  # may be a limit on the integration or the address, not on this account

    def describe(self) -> str:
        what = f"{self.status}" if self.status else "connection error"
        return what if self.outcome in (Outcome.OK, Outcome.OTHER) else f"{what} ({self.outcome})"


def classify(
    status: int, headers: Mapping[str, str], body: bytes | None, wall_now: float, default_cooldown: float
) -> Verdict:
    """Classify one upstream answer. `body` may be None or empty (a streamed answer)."""
    if status < 400:
        return Verdict(Outcome.OK, status)
    code = _error_code(body) if 400 <= status < 500 else None
    if status == 402 or code in QUOTA_CODES:
        cooldown = quota_cooldown(headers, wall_now)
        return Verdict(Outcome.QUOTA_EXHAUSTED, status, failover=True, cooldown=cooldown, reason="quota exhausted")
    if status == 429:
        return _rate_limited(headers, code, wall_now, default_cooldown)
    if status == 401 and body and SELECTOR_REFUSED.encode() in body[:MAX_BODY_SNIFF]:
        return Verdict(Outcome.SESSION_REFUSED, status)  # the client mints a new session token itself
    if status == 401:
        return Verdict(Outcome.UNAUTHORIZED, status, failover=True, refresh=True)
    if status == 421:
        return Verdict(Outcome.MISDIRECTED, status, failover=True, refresh=True)
    if code in MODEL_CODES:
        return Verdict(Outcome.MODEL_UNSUPPORTED, status, failover=True, recatalogue=True)
    if status in CALLER_ERRORS:
        return Verdict(Outcome.CALLER_ERROR, status)
    if status >= 500:
        return Verdict(Outcome.UPSTREAM_ERROR, status)
    return Verdict(Outcome.OTHER, status)


def _rate_limited(headers: Mapping[str, str], code: str | None, wall_now: float, default_cooldown: float) -> Verdict:
    """A 429's scope and length: a model-specific limit cools that model only; a weekly or session limit cools
    the account until the reset its headers name; the rest for the hint, else the default."""
    code = (code or "").split(":", 1)[0] or None  # codes may carry details after a colon
    hint = retry_after_seconds(headers, wall_now)
    wait = default_cooldown if hint is None else hint
    reason = code or "rate limited"
    limits = usage_limits(headers, 0.0)
    spent = [kind for kind, limit in limits.items() if limit.percent_remaining <= 0 and limit.resets_at]
    if code in WEEKLY_CODES and "weekly" not in spent and "weekly" in limits:
        spent.append("weekly")
    for kind in spent:
        reset = limits[kind].resets_at
        if reset is not None and reset > wall_now:
            return Verdict(
                Outcome.RATE_LIMITED, 429, True, min(reset - wall_now, MAX_QUOTA_COOLDOWN), reason=f"{kind} limit"
            )
    if code == "extension_blocked" and hint is None:
        wait = BLOCKED_COOLDOWN
    scope = Scope.MODEL if code in MODEL_LIMIT_CODES else Scope.ACCOUNT
    return Verdict(Outcome.RATE_LIMITED, 429, True, wait, scope=scope, reason=reason, pool_wide=code in POOL_WIDE_CODES)


def connection_error() -> Verdict:
    return Verdict(Outcome.CONNECTION_ERROR, 0, failover=True)


def quota_cooldown(headers: Mapping[str, str], wall_now: float) -> float:
    """Until the quota resets (`rst` of the quota snapshot), else the Retry-After hint, else QUOTA_COOLDOWN."""
    quota = from_headers(headers, 0.0)
    if quota is not None and quota.resets_at is not None and quota.resets_at > wall_now:
        return min(quota.resets_at - wall_now, MAX_QUOTA_COOLDOWN)
    hint = retry_after_seconds(headers, wall_now)
    return hint if hint else QUOTA_COOLDOWN


def _error_code(body: bytes | None) -> str | None:
    """`error.code` or `code` of a JSON error body."""
    if not body or len(body) > MAX_BODY_SNIFF:
        return None
    data = json_object(body)
    error = data.get("error")
    code = error.get("code") if isinstance(error, dict) else data.get("code")
    return code if isinstance(code, str) else None
