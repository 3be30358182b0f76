"""Premium quota: what an account has left, read from response headers or from a `/copilot_internal/user` answer.

Copilot answers carry `x-quota-snapshot-premium_interactions` (or `-premium_models`, `-chat`): URL-encoded
`ent` (entitlement, -1 = unlimited), `rem` (percent remaining), `ov`, `ovPerm` (overage permitted), `rst`
(reset time), the fields VS Code reads (chatQuotaServiceImpl.ts).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from .parse import finite_float

SNAPSHOT_HEADERS = (
    "x-quota-snapshot-premium_interactions",
    "x-quota-snapshot-premium_models",
    "x-quota-snapshot-chat",
)


@dataclass(frozen=True)
class Quota:
    entitlement: int  # premium requests per period; -1: unlimited
    percent_remaining: float
    overage_permitted: bool
    resets_at: float | None  # epoch seconds (wall clock), when known
    observed_at: float  # pool clock

    @property
    def unlimited(self) -> bool:
        return self.entitlement < 0

    @property
    def remaining(self) -> float:
        """Premium requests left (inf when unlimited)."""
        if self.unlimited:
            return math.inf
        return self.entitlement * self.percent_remaining / 100

    def describe(self) -> str:
        if self.unlimited:
            return "unlimited"
        return f"{self.remaining:.0f}/{self.entitlement}"


USAGE_LIMIT_HEADERS = {"session": "x-usage-ratelimit-session", "weekly": "x-usage-ratelimit-weekly"}


def from_headers(headers: Mapping[str, str], now: float) -> Quota | None:
    """The quota in a Copilot response's headers, or None when it carries none (or garbage)."""
    for name in SNAPSHOT_HEADERS:
        value = headers.get(name)
        if value:
            return snapshot(value, now)
    return None


def usage_limits(headers: Mapping[str, str], now: float) -> dict[str, Quota]:
    """The session and weekly usage limits an answer reports (`x-usage-ratelimit-session` / `-weekly`), in the
    snapshot format of the quota headers: `rem` is the percent left, `rst` the reset."""
    found = {}
    for kind, name in USAGE_LIMIT_HEADERS.items():
        value = headers.get(name)
        if value and (limit := snapshot(value, now)) is not None:
            found[kind] = limit
    return found


def snapshot(value: str, now: float) -> Quota | None:
    """One `ent=..&rem=..&rst=..` header value, or None when it is garbage."""
    parsed = _snapshot(value)
    return None if parsed is None else Quota(*parsed, now)


@functools.lru_cache(maxsize=256)
def _snapshot(value: str) -> tuple[int, float, bool, float | None] | None:
    """A snapshot header's value -> (entitlement, percent remaining, overage permitted, resets at). Cached: every
    pooled answer carries one, and an account's stays the same until it spends a premium request."""
    fields = _form_fields(value)
    entitlement, percent = finite_float(fields.get("ent")), finite_float(fields.get("rem"))
    if entitlement is None or percent is None:
        return None
    return (
        int(entitlement),
        min(max(percent, 0.0), 100.0),
        fields.get("ovPerm", "").lower() == "true",
        parse_reset(fields.get("rst")),
    )


def _form_fields(value: str) -> dict[str, str]:
    """`ent=300&rem=97.5&rst=...` -> a dict; a plain split, as parse_qs costs more than the rest of a request's
    handling in the addon."""
    fields = {}
    for part in value.split("&"):
        key, _, raw = part.partition("=")
        fields[key] = _unquoted(raw) if "%" in raw or "+" in raw else raw
    return fields


@functools.lru_cache(maxsize=64)
def _unquoted(raw: str) -> str:
    """Cached: the encoded field is the reset time (`rst`), the same in every answer until the quota resets."""
    return unquote_plus(raw)


def from_user_info(data: object, now: float) -> Quota | None:
    """The premium quota in a `/copilot_internal/user` answer."""
    try:
        snapshot = data["quota_snapshots"]["premium_interactions"]  # type: ignore[index]
        unlimited = bool(snapshot.get("unlimited"))
        entitlement = -1.0 if unlimited else finite_float(snapshot.get("entitlement"))
        percent = 100.0 if unlimited else finite_float(snapshot.get("percent_remaining"))
        reset = data.get("quota_reset_date_utc") or data.get("quota_reset_date")  # type: ignore[union-attr]
    except (KeyError, TypeError, AttributeError):
        return None
    if entitlement is None or percent is None:
        return None
    overage = bool(snapshot.get("overage_permitted"))
    return Quota(
        int(entitlement),
        min(max(percent, 0.0), 100.0),
        overage,
        parse_reset(reset if isinstance(reset, str) else None),
        now,
    )


@functools.lru_cache(maxsize=64)
def parse_reset(value: str | None) -> float | None:
    """'2025-12-01T00:00:00Z' or '2025-12-01' -> epoch seconds (UTC when no zone is given)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
