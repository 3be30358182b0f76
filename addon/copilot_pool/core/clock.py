"""What the core needs of time. The runtime's clocks (runtime/clock.py) add `sleep`."""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds: cooldowns, token lifetimes and last-used times are measured on this."""

    def wall(self) -> float:
        """Epoch seconds: only to turn absolute hints (HTTP-dates, reset epochs) into durations."""
