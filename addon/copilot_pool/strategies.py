"""How the pool chooses among the accounts that can take a request right now.

Each strategy gets the candidates (never empty) and returns one. Ties are broken at random so that
identical accounts share the load instead of one taking it all (BerriAI/litellm#39322).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .pool import Account


class Strategy(Protocol):
    name: str

    def pick(self, candidates: Sequence[Account]) -> Account: ...


def _min_random_tie(candidates: Sequence[Account], key: Callable[[Account], object]) -> Account:
    best_key = None
    best: list[Account] = []
    for account in candidates:
        k = key(account)
        if best_key is None or k < best_key:  # type: ignore[operator]
            best_key, best = k, [account]
        elif k == best_key:
            best.append(account)
    return best[0] if len(best) == 1 else random.choice(best)


class RoundRobin:
    """A cursor over the candidates, in the accounts file's order."""

    name = "round-robin"

    def __init__(self) -> None:
        self._cursor = 0

    def pick(self, candidates: Sequence[Account]) -> Account:
        account = candidates[self._cursor % len(candidates)]
        self._cursor += 1
        return account


class LeastBusy:
    """Fewest requests in flight for the account's weight; ties go to the least recently used."""

    name = "least-busy"

    def pick(self, candidates: Sequence[Account]) -> Account:
        return _min_random_tie(candidates, lambda a: (a.in_flight / a.config.weight, a.last_used))


class LeastRecent:
    """The account used longest ago."""

    name = "least-recent"

    def pick(self, candidates: Sequence[Account]) -> Account:
        return _min_random_tie(candidates, lambda a: a.last_used)


class MostQuota:
    """The most premium requests left (unknown counts as plenty, so it gets learnt); ties as least-busy."""

    name = "quota"

    def pick(self, candidates: Sequence[Account]) -> Account:
        return _min_random_tie(
            candidates, lambda a: (-(a.quota.remaining if a.quota else math.inf), a.in_flight / a.config.weight, a.last_used)
        )


class SmoothWeighted:
    """Smooth weighted round robin (nginx): each account gets its weight's share, interleaved."""

    name = "weighted"

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def pick(self, candidates: Sequence[Account]) -> Account:
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
