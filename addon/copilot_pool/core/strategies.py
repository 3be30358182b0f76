"""How the pool chooses among the accounts that can take a request right now.

Each strategy gets one tier's ready accounts and a test of eligibility, and returns one or None. Ties are broken
at random so that identical accounts share the load instead of one taking it all (BerriAI/litellm#39322).
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from .model import Account


class Ready:
    """One priority tier's accounts that can take a request now, in file order and least recently used first.

    Built by the pool only when some account's pickability changed, so a pick usually looks at a handful of
    accounts however large the pool: the least recently used idle account is at the front.
    """

    __slots__ = ("in_file_order", "by_recency")

    def __init__(self, accounts: list[Account]) -> None:
        self.in_file_order = accounts
        shuffled = random.sample(accounts, len(accounts))  # equal last_used (never used): random order
        # an OrderedDict, not a dict: moving entries to the end leaves no holes for iteration to skip
        self.by_recency = OrderedDict((a.name, a) for a in sorted(shuffled, key=lambda a: a.last_used))

    def used(self, account: Account) -> None:
        """The account was just picked: it is now the most recently used."""
        if account.name in self.by_recency:
            self.by_recency.move_to_end(account.name)


Eligible = Callable[[Account], bool]  # room under max_concurrency, not already tried by this request


class Strategy(Protocol):
    name: str

    def pick(self, ready: Ready, eligible: Eligible) -> Account | None: ...


class RoundRobin:
    """A cursor over the ready accounts, in the accounts file's order."""

    name = "round-robin"

    def __init__(self) -> None:
        self._cursor = 0

    def pick(self, ready: Ready, eligible: Eligible) -> Account | None:
        accounts = ready.in_file_order
        for step in range(len(accounts)):
            account = accounts[(self._cursor + step) % len(accounts)]
            if eligible(account):
                self._cursor += step + 1
                return account
        return None


class LeastBusy:
    """Fewest requests in flight for the account's weight; ties go to the least recently used."""

    name = "least-busy"

    def pick(self, ready: Ready, eligible: Eligible) -> Account | None:
        best, best_load = None, math.inf
        for account in ready.by_recency.values():  # least recently used first: it wins ties
            if not eligible(account):
                continue
            if not account.in_flight:
                return account  # idle: nothing is less busy
            load = account.in_flight / account.config.weight
            if load < best_load:
                best, best_load = account, load
        return best


class LeastRecent:
    """The account used longest ago."""

    name = "least-recent"

    def pick(self, ready: Ready, eligible: Eligible) -> Account | None:
        return next((a for a in ready.by_recency.values() if eligible(a)), None)


def headroom(account: Account) -> float:
    """What share of its allowance the account has left: 2.0 when unlimited (no budget, unlimited quota), else
    the smaller of its credit budget's share left this month and its premium quota's percent left; unknown
    counts as plenty (1.0), so it gets learnt."""
    quota, budget = account.quota, account.config.credit_budget
    if budget is None and quota is not None and quota.unlimited:
        return 2.0
    left = 1.0 if quota is None or quota.unlimited else quota.percent_remaining / 100
    if budget is not None:
        left = min(left, max(0.0, 1 - account.month_nano / (budget * 1e9)))
    return left


class MostQuota:
    """The most headroom (unlimited first, then the largest share of credits or premium quota left); ties as
    least-busy."""

    name = "quota"

    def pick(self, ready: Ready, eligible: Eligible) -> Account | None:
        best, best_key = None, None
        for account in ready.by_recency.values():
            if eligible(account):
                key = (-headroom(account), account.in_flight / account.config.weight)
                if best_key is None or key < best_key:
                    best, best_key = account, key
        return best


class SmoothWeighted:
    """Smooth weighted round robin (nginx): each account gets its weight's share, interleaved."""

    name = "weighted"

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def pick(self, ready: Ready, eligible: Eligible) -> Account | None:
        candidates = [a for a in ready.in_file_order if eligible(a)]
        if not candidates:
            return None
        total = 0
        best, best_current = candidates[0], -math.inf
        for account in candidates:
            weight = account.config.weight
            total += weight
            current = self._current.get(account.name, 0.0) + weight
            self._current[account.name] = current
            if current > best_current:
                best, best_current = account, current
        self._current[best.name] -= total
        if len(self._current) > 4 * len(candidates) + 64:  # forget accounts that left the pool
            names = {a.name for a in candidates}
            self._current = {n: c for n, c in self._current.items() if n in names}
        return best


STRATEGIES: dict[str, Callable[[], Strategy]] = {
    RoundRobin.name: RoundRobin,
    LeastBusy.name: LeastBusy,
    LeastRecent.name: LeastRecent,
    MostQuota.name: MostQuota,
    SmoothWeighted.name: SmoothWeighted,
}
DEFAULT_STRATEGY = LeastBusy.name


def make_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None
