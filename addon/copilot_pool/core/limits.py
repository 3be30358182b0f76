"""Rate limits as the service applies them, and how the pool keeps its accounts clear of them.

- A limit has a scope: one model of one account (`user_model_rate_limited`), the whole account (burst, per
  user, session, weekly), or, when distinct accounts are limited back to back, the pool itself (the integration's
  or the address's limit: rotating further would only multiply the 429s).
- An account that was limited is paced: it sends no faster than the rate it was seen to sustain between two
  limits, and probes upwards slowly, so it meets its limit now and then instead of on every refill. Accounts of
  one plan share their limits (GitHub sets them per plan), so what one account measured, the others of its plan
  start from instead of each paying for the lesson in 429s.
- An account coming out of a cooldown is eased back in, as TCP's slow start does: one request in flight at
  first, one more with each success (so the allowance doubles with each round of answers), instead of being
  handed every waiting request at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Scope(StrEnum):
    MODEL = "model"  # this account, for this model only: it keeps serving the others
    ACCOUNT = "account"


@dataclass(frozen=True, slots=True)
class Cooldown:
    until: float  # pool clock
    reason: str  # what said so: "user_model_rate_limited", "weekly limit", "quota exhausted", "operator", ...


# -- pacing ----------------------------------------------------------------------------------------------

SAFETY = 0.95  # pace at this share of the rate measured between two limits
PROBE = 1.0002  # per success: a paced account climbs ~0.02% per request, meeting its limit every ~250 requests
PROBE_ADOPTED = 1.002  # faster while its pace is a plan-mate's, not yet confirmed by a limit of its own
BACKOFF = 0.8  # a limit with nothing measured since the last: slow down by this
MIN_RATE = 0.02  # requests per second: never slower (one a minute or so), whatever was measured
# A limit that reopens sooner than this (retry-after-ms: 20) leaves nothing to pace: the cooldown covers it. Pacing on
# it would measure the pacer's own rate, not the limit's, and random short 429s would slow the account to a crawl.
SHORTEST_PACED_REST = 0.1  # seconds


@dataclass(slots=True)
class Pacer:
    """The rate one scope of an account is allowed to send at. None until it meets its first limit."""

    rate: float | None = None  # requests per second
    next_at: float = 0.0  # pool clock: not before this
    served: int = 0  # successes since the last limit
    limited_at: float | None = None
    measured: bool = False  # its rate comes from a measurement (its own, or a plan-mate's)
    adopted: bool = False  # ... a plan-mate's: their later measurements replace it

    def ready(self, now: float) -> bool:
        return self.rate is None or now >= self.next_at

    def started(self, now: float) -> None:
        if self.rate is not None:
            self.next_at = max(self.next_at, now) + 1 / self.rate

    def succeeded(self) -> None:
        self.served += 1
        if self.rate is not None:
            self.rate *= PROBE_ADOPTED if self.adopted else PROBE

    def limited(self, now: float, rests: float = 0.0) -> None:
        """A 429 for this scope, which rests for `rests` seconds. A rest ends when the limit lets a request through
        again (that is what Retry-After says: a token refilled, a window reopened), so from the end of the last
        rest to the end of this one the limit let through exactly what got through: that over the time is its rate,
        whatever kind of limit it is."""
        rest_ends = now + rests
        if self.limited_at is not None and self.served and rest_ends > self.limited_at:
            self.rate = max(MIN_RATE, SAFETY * self.served / (rest_ends - self.limited_at))
            self.measured, self.adopted = True, False
        elif self.rate is not None:
            self.rate = max(MIN_RATE, self.rate * BACKOFF)
        self.limited_at, self.served = rest_ends, 0

    def adopt(self, rate: float) -> None:
        """Pace at a plan-mate's measured rate, until a limit of its own measures it."""
        self.rate, self.measured, self.adopted = rate, True, True


# -- easing back in --------------------------------------------------------------------------------------

EASE_START = 1  # requests in flight right after a cooldown
EASE_DONE = 16  # once this many may be in flight, the account is back to its share


def eased(ease: int | None) -> int | None:
    """The allowance after a success: one more, until the account is back to normal (None)."""
    if ease is None:
        return None
    return None if ease + 1 >= EASE_DONE else ease + 1


# -- storms: limits on the whole pool ---------------------------------------------------------------------

POOL_WIDE_CODES = frozenset({"integration_rate_limited", "rate_limited"})  # not one account's own limit
STORM_WINDOW = 60.0  # seconds: distinct accounts limited within this are one limit on the pool


@dataclass
class StormWatch:
    """Notices when `accounts` distinct accounts hit a pool-wide-looking limit within `window` seconds."""

    accounts: int = 2  # 0: never hold the pool
    window: float = STORM_WINDOW
    _recent: list[tuple[float, str, float]] = field(default_factory=list)  # (when, account, cooling until)

    def limited(self, account: str, now: float, until: float) -> float | None:
        """Record the limit; when it makes a storm, the moment the pool may try again (the earliest end of the
        accounts' cooldowns, which their Retry-Afters gave)."""
        self._recent = [r for r in self._recent if now - r[0] <= self.window and r[1] != account]
        self._recent.append((now, account, until))
        if self.accounts and len(self._recent) >= self.accounts:
            return min(r[2] for r in self._recent)
        return None
