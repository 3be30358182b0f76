"""How long a rate-limited account should rest, from the hints upstream gives."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from .parse import finite_float

MAX_COOLDOWN = 6 * 3600.0  # rate-limit waits can be hours; anything longer is more likely a bogus header


def retry_after_seconds(headers: Mapping[str, str], wall_now: float) -> float | None:
    """Seconds to wait according to `retry-after-ms`, `Retry-After` (seconds or HTTP-date) or
    `x-ratelimit-reset` (epoch seconds), the first that gives a wait, at most MAX_COOLDOWN. None when none does:
    a hint that is unparsable, zero, negative or in the past is no reason to send the account traffic again at
    once, so the caller's default applies."""
    ms = finite_float(headers.get("retry-after-ms"))
    reset = finite_float(headers.get("x-ratelimit-reset"))
    for wait in (
        None if ms is None else ms / 1000,
        _parse_retry_after(headers.get("retry-after"), wall_now),
        None if reset is None else reset - wall_now,
    ):
        if wait is not None and wait > 0:
            return min(wait, MAX_COOLDOWN)
    return None


def _parse_retry_after(value: str | None, wall_now: float) -> float | None:
    seconds = finite_float(value)
    if seconds is not None or not value:
        return seconds
    try:
        return parsedate_to_datetime(value).timestamp() - wall_now
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
