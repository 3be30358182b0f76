"""How long a rate-limited account should rest, from the hints upstream gives."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from .parse import finite_float

MAX_COOLDOWN = 6 * 3600.0  # rate-limit waits can be hours; anything longer is more likely a bogus header


def retry_after_seconds(headers: Mapping[str, str], wall_now: float) -> float | None:
    """Seconds to wait according to `retry-after-ms`, `Retry-After` (seconds or HTTP-date) or
    `x-ratelimit-reset` (epoch seconds), clamped to [0, MAX_COOLDOWN]; None when no hint parses."""
    wait = finite_float(headers.get("retry-after-ms"))
    if wait is not None:
        wait /= 1000
    if wait is None:
        wait = _parse_retry_after(headers.get("retry-after"), wall_now)
    if wait is None:
        reset = finite_float(headers.get("x-ratelimit-reset"))
        if reset is not None:
            wait = reset - wall_now
    if wait is None:
        return None
    return min(max(wait, 0.0), MAX_COOLDOWN)


def _parse_retry_after(value: str | None, wall_now: float) -> float | None:
    seconds = finite_float(value)
    if seconds is not None or not value:
        return seconds
    try:
        return parsedate_to_datetime(value).timestamp() - wall_now
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
