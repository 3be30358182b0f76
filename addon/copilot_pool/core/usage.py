"""AI credits: what each answer cost, and who spent what.

Since June 2026 Copilot bills in AI credits: each answer reports `copilot_usage.total_nano_aiu` (1 credit =
10^9 nano-AIU), top level in a JSON answer, in the final event of a stream or WebSocket answer. Reading it
looks at the last few KB of the body only, never the whole stream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

NANO_PER_CREDIT = 10**9
TAIL = 16 * 1024  # bytes of an answer's end where the usage sits
_KEY = b'"total_nano_aiu"'
_VALUE = re.compile(rb'"total_nano_aiu"\s*:\s*(\d{1,20})')


def nano_aiu(tail: bytes | None) -> int | None:
    """The last `total_nano_aiu` in the end of an answer, or None when it reports none (failed requests)."""
    if not tail:
        return None
    at = tail.rfind(_KEY)
    match = _VALUE.match(tail, at) if at >= 0 else None
    return int(match.group(1)) if match else None


def credits(nano: int) -> float:
    return nano / NANO_PER_CREDIT


class Tail:
    """A streamed answer's chunks pass through unchanged; its last TAIL bytes are kept for `nano_aiu`."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = b""

    def __call__(self, chunk: bytes) -> bytes:
        if chunk:
            self.data = (self.data + chunk)[-TAIL:]
        return chunk


def day(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d")


def month(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m")


def next_month_start(wall: float) -> float:
    """When the calendar month (UTC) after `wall` begins: a budget's reset when no quota reset date is known."""
    now = datetime.fromtimestamp(wall, UTC)
    year, mon = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, mon, 1, tzinfo=UTC).timestamp()


def next_day_start(wall: float) -> float:
    now = datetime.fromtimestamp(wall, UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp() + 86400


@dataclass
class Spender:
    """One proxy user's requests, credits and 429s (with proxyauth: the user name the client signed in with)."""

    requests: int = 0
    nano: int = 0
    rate_limited: int = 0
    today: str = ""  # the UTC day `nano_today` counts
    nano_today: int = 0


@dataclass
class Ledger:
    users: dict[str, Spender] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)  # users who spent since the state store last looked

    def user(self, name: str) -> Spender:
        return self.users.setdefault(name, Spender())

    def spent(self, name: str, nano: int | None, rate_limited: bool, wall: float) -> None:
        spender = self.user(name)
        spender.requests += 1
        spender.rate_limited += rate_limited
        self.changed.add(name)
        if nano:
            spender.nano += nano
            self._today(spender, wall)
            spender.nano_today += nano

    def take_changed(self) -> set[str]:
        changed, self.changed = self.changed, set()
        return changed

    def merged(self, name: str, delta: dict[str, int], wall: float) -> None:
        """What the user spent through other proxies (or before a restart): it adds up."""
        spender = self.user(name)
        spender.requests += delta.get("requests", 0)
        spender.rate_limited += delta.get("rate_limited", 0)
        spender.nano += delta.get("nano", 0)
        spender.nano_today += delta.get("day:" + self._today(spender, wall), 0)

    @staticmethod
    def _today(spender: Spender, wall: float) -> str:
        today = day(wall)
        if spender.today != today:
            spender.today, spender.nano_today = today, 0
        return today

    def spent_today(self, name: str, wall: float) -> int:
        spender = self.users.get(name)
        return spender.nano_today if spender is not None and spender.today == day(wall) else 0
