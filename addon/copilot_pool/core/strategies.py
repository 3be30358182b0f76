"""How the pool chooses among the accounts that can take a request right now.

Each strategy gets one tier's ready accounts and the accounts this request already tried, and returns one or None.
Ties are broken at random so identical accounts share the load instead of one taking it all (BerriAI/litellm#39322).

`weighted` and `quota` compare every ready account. Rather than scan them on each pick, they keep an index per tier
(heaps) that the pool updates on each change a pick depends on (a lease taken or ended, a quota seen), so a pick costs
O(log n) however large the pool.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Protocol

from .model import Account


class Index(Protocol):
    """A strategy's own structure over one tier's ready accounts, kept current by the pool."""

    def pick(self, exclude: Collection[Account]) -> Account | None: ...

    def used(self, account: Account) -> None:
        """The account was just leased: one more in flight, now the most recently used."""

    def changed(self, account: Account) -> None:
        """A lease on the account ended, or its quota changed."""

    def retire(self) -> None:
        """The ready lists are being rebuilt: hand back what must outlive this index."""


class Ready:
    """One priority tier's accounts that can take a request now, in file order and least recently used first, with
    the strategy's index over them.

    Built by the pool only when some account's pickability changed, so a pick usually looks at a handful of
    accounts however large the pool: the least recently used idle account is at the front.
    """

    __slots__ = ("in_file_order", "by_recency", "index")

    def __init__(self, accounts: list[Account], strategy: Strategy) -> None:
        self.in_file_order = accounts
        shuffled = random.sample(accounts, len(accounts))  # equal last_used (never used): random order
        # an OrderedDict, not a dict: moving entries to the end leaves no holes for iteration to skip
        self.by_recency = OrderedDict((a.name, a) for a in sorted(shuffled, key=lambda a: a.last_used))
        self.index = strategy.index(self)

    def used(self, account: Account) -> None:
        """The account was just picked: it is now the most recently used."""
        if account.name in self.by_recency:
            self.by_recency.move_to_end(account.name)
            if self.index is not None:
                self.index.used(account)

    def changed(self, account: Account) -> None:
        """A lease on the account ended, or its quota changed."""
        if self.index is not None and account.name in self.by_recency:
            self.index.changed(account)

    def retire(self) -> None:
        if self.index is not None:
            self.index.retire()


def can_take(account: Account, exclude: Collection[Account]) -> bool:
    """Room under its max_concurrency, and not already tried by this request."""
    return account.has_room() and account not in exclude


class Strategy(Protocol):
    name: str

    def index(self, ready: Ready) -> Index | None:
        """The structure picks will use, built with each tier's ready lists (None: the lists are enough)."""

    def pick(self, ready: Ready, exclude: Collection[Account]) -> Account | None: ...


class RoundRobin:
    """A cursor over the ready accounts, in the accounts file's order."""

    name = "round-robin"

    def __init__(self) -> None:
        self._cursor = 0

    def index(self, ready: Ready) -> None:
        return None

    def pick(self, ready: Ready, exclude: Collection[Account]) -> Account | None:
        accounts = ready.in_file_order
        for step in range(len(accounts)):
            account = accounts[(self._cursor + step) % len(accounts)]
            if can_take(account, exclude):
                self._cursor += step + 1
                return account
        return None


class LeastBusy:
    """Fewest requests in flight for the account's weight (through every proxy sharing the state); ties go to
    the least recently used."""

    name = "least-busy"

    def index(self, ready: Ready) -> None:
        return None

    def pick(self, ready: Ready, exclude: Collection[Account]) -> Account | None:
        best, best_load = None, math.inf
        for account in ready.by_recency.values():  # least recently used first: it wins ties
            if not can_take(account, exclude):
                continue
            busy = account.busy
            if not busy:
                return account  # idle: nothing is less busy
            load = busy / account.config.weight
            if load < best_load:
                best, best_load = account, load
        return best


class LeastRecent:
    """The account used longest ago."""

    name = "least-recent"

    def index(self, ready: Ready) -> None:
        return None

    def pick(self, ready: Ready, exclude: Collection[Account]) -> Account | None:
        return next((a for a in ready.by_recency.values() if can_take(a, exclude)), None)


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

    def index(self, ready: Ready) -> _ByQuota:
        return _ByQuota(ready)

    def pick(self, ready: Ready, exclude: Collection[Account]) -> Account | None:
        return ready.index.pick(exclude)  # type: ignore[union-attr]


class SmoothWeighted:
    """Smooth weighted round robin (nginx): each account gets its weight's share, interleaved."""

    name = "weighted"

    def __init__(self) -> None:
        self._current: dict[str, int] = {}  # each account's current weight when its tier's index last let go of it

    def index(self, ready: Ready) -> _Turns:
        if len(self._current) > 4 * len(ready.in_file_order) + 64:  # forget accounts that left the pool
            for name in [n for n in self._current if n not in ready.by_recency]:
                del self._current[name]  # in place: every tier's index shares this memory
        return _Turns(ready, self._current)

    def pick(self, ready: Ready, exclude: Collection[Account]) -> Account | None:
        return ready.index.pick(exclude)  # type: ignore[union-attr]


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


# -- the indexes --------------------------------------------------------------------------------------------------


class _Heap:
    """A min-heap of accounts by key, at most one live entry per account. A new key leaves the old entry in place
    (lazy deletion): it is dropped when it surfaces, or all at once when stale entries outnumber the live ones (a
    heap of the live ones is cheaper then than popping through the stale)."""

    __slots__ = ("_entries", "_live", "_seq")

    def __init__(self) -> None:
        self._entries: list[tuple] = []  # (*key, seq, account), flat: cheaper to compare; seq: keys tie, not accounts
        self._live: dict[str, tuple] = {}  # name -> its live entry
        self._seq = itertools.count()

    def __contains__(self, name: str) -> bool:
        return name in self._live

    def __len__(self) -> int:
        return len(self._live)

    def push(self, key: tuple, account: Account) -> None:
        entry = (*key, next(self._seq), account)
        self._live[account.name] = entry
        heapq.heappush(self._entries, entry)

    def remove(self, name: str) -> tuple:
        """Take the account out; returns its key."""
        return self._live.pop(name)[:-2]

    def top(self) -> tuple | None:
        """The live entry with the smallest key: (*key, seq, account)."""
        entries, live = self._entries, self._live
        if len(entries) > 2 * len(live) + 8:
            entries = self._entries = list(live.values())
            heapq.heapify(entries)
        while entries:
            entry = entries[0]
            if live.get(entry[-1].name) is entry:
                return entry
            heapq.heappop(entries)
        return None


class _ByQuota:
    """Accounts with room by quota level (most left first), then by fewest in flight (through every proxy) per
    weight, then least recently used: the order in which a scan compares them. An account at its max_concurrency
    is out until a lease on it ends.

    Each level (an amount left) is a heap of its own, in a heap of levels: as the strategy drains accounts evenly,
    they all move on from one level to the next, and the level left behind goes in one piece, not entry by entry.
    """

    __slots__ = ("_levels", "_order", "_level_of", "_recency", "_uses")

    def __init__(self, ready: Ready) -> None:
        self._levels: dict[float, _Heap] = {}  # -(quota left) -> its accounts by (load, recency)
        self._order: list[float] = []  # the levels, as a heap; an emptied level's entry is dropped when it surfaces
        self._level_of: dict[str, float] = {}  # name -> its level, for the accounts held
        self._recency = {name: rank for rank, name in enumerate(ready.by_recency)}
        self._uses = itertools.count(len(self._recency))
        for account in ready.by_recency.values():
            self.changed(account)

    def changed(self, account: Account) -> None:
        name = account.name
        level = None
        if account.has_room():
            level = -headroom(account)
        if name in self._level_of and self._level_of[name] != level:
            self._let_go(name)
        if level is not None:
            self._hold(account, level)

    def used(self, account: Account) -> None:
        self._recency[account.name] = next(self._uses)
        self.changed(account)

    def _hold(self, account: Account, level: float) -> None:
        heap = self._levels.get(level)
        if heap is None:
            heap = self._levels[level] = _Heap()
            heapq.heappush(self._order, level)
            if len(self._order) > 2 * len(self._levels) + 64:  # levels emptied and made again, deep in the heap
                self._order = list(self._levels)
                heapq.heapify(self._order)
        heap.push((account.busy / account.config.weight, self._recency[account.name]), account)
        self._level_of[account.name] = level

    def _let_go(self, name: str) -> None:
        level = self._level_of.pop(name)
        heap = self._levels[level]
        heap.remove(name)
        if not heap:
            del self._levels[level]

    def pick(self, exclude: Collection[Account]) -> Account | None:
        tried = [a for a in exclude if a.name in self._level_of]  # out of the way for this pick only
        for account in tried:
            self._let_go(account.name)
        best, order = None, self._order
        while order:
            heap = self._levels.get(order[0])
            if heap is not None:
                best = heap.top()[-1]  # type: ignore[index]  # a level held is never empty
                break
            heapq.heappop(order)
        for account in tried:
            self.changed(account)
        return best

    def retire(self) -> None:
        pass


class _Turns:
    """Smooth weighted round robin without the scan.

    nginx's rule: on each pick every candidate's current weight grows by its weight, the highest current (the first
    in file order on a tie) is picked and loses the candidates' total weight. Here `current = weight * steps - debt`
    with `steps` counting the picks: a step raises every current at once, and among accounts of one weight the
    order is by debt alone. So there is a heap by (debt, file position) per distinct weight, and a pick compares the
    best of each: O(weights + log n). Accounts at their max_concurrency and those this request tried are not
    candidates (their current stands still), as in nginx.
    """

    __slots__ = ("_memory", "_steps", "_total", "_position", "_heaps", "_weight")

    def __init__(self, ready: Ready, memory: dict[str, int]) -> None:
        self._memory = memory  # current weights of accounts this index does not hold (the strategy's, shared)
        self._steps = 0
        self._total = 0  # the weight of the accounts held: the candidates of the next pick
        self._position = {a.name: i for i, a in enumerate(ready.in_file_order)}
        self._heaps: dict[int, _Heap] = {}  # weight -> its accounts by (debt, position)
        self._weight: dict[str, int] = {}  # name -> weight, for the accounts held
        for account in ready.in_file_order:
            self.changed(account)

    def _hold(self, account: Account, current: int) -> None:
        weight = account.config.weight
        self._weight[account.name] = weight
        self._total += weight
        heap = self._heaps.get(weight) or self._heaps.setdefault(weight, _Heap())
        heap.push((weight * self._steps - current, self._position[account.name]), account)

    def _let_go(self, name: str) -> int:
        """Stop holding the account; returns its current weight."""
        weight = self._weight.pop(name)
        self._total -= weight
        debt, _ = self._heaps[weight].remove(name)
        return weight * self._steps - debt

    def changed(self, account: Account) -> None:
        name = account.name
        if name not in self._weight and account.has_room():
            self._hold(account, self._memory.pop(name, 0))
        elif name in self._weight and not account.has_room():
            self._memory[name] = self._let_go(name)

    used = changed  # a lease may have filled the account up

    def pick(self, exclude: Collection[Account]) -> Account | None:
        tried = [(a, self._let_go(a.name)) for a in exclude if a.name in self._weight]
        total, steps, best, best_current = self._total, self._steps + 1, None, 0
        for weight, heap in self._heaps.items():
            entry = heap.top()
            if entry is not None:
                current = weight * steps - entry[0]
                if best is None or current > best_current or (current == best_current and entry[1] < best[1]):
                    best, best_current = entry, current
        if best is not None:
            self._steps = steps
            debt, position, _, account = best
            self._heaps[self._weight[account.name]].push((debt + total, position), account)
        for account, current in tried:
            self._hold(account, current)
        return best[-1] if best is not None else None

    def retire(self) -> None:
        for name in list(self._weight):
            self._memory[name] = self._let_go(name)
