"""`weighted` and `quota` pick from indexes the pool keeps current; they must pick exactly what a scan of every
ready account would, through every change a pick depends on."""

import math
import random

import pytest
from copilot_pool.core.model import AccountConfig
from copilot_pool.core.pool import NoAccount, Pool, Want
from copilot_pool.core.quota import Quota
from copilot_pool.core.strategies import can_take, headroom, make_strategy
from copilot_pool.runtime.clock import FakeClock
from helpers import give_token


class ScanQuota:
    """The specification: compare every ready account (the implementation before the index)."""

    name = "quota"

    def index(self, ready):
        return None

    def pick(self, ready, exclude):
        best, best_key = None, None
        for account in ready.by_recency.values():
            if can_take(account, exclude):
                key = (-headroom(account), account.busy / account.config.weight)
                if best_key is None or key < best_key:
                    best, best_key = account, key
        return best


class ScanWeighted:
    """The specification: nginx's smooth weighted round robin over every candidate."""

    name = "weighted"

    def __init__(self):
        self.current = {}

    def index(self, ready):
        return None

    def pick(self, ready, exclude):
        candidates = [a for a in ready.in_file_order if can_take(a, exclude)]
        if not candidates:
            return None
        total, best, best_current = 0, None, -math.inf
        for account in candidates:
            total += account.config.weight
            self.current[account.name] = self.current.get(account.name, 0) + account.config.weight
            if self.current[account.name] > best_current:
                best, best_current = account, self.current[account.name]
        self.current[best.name] -= total
        return best


def configs(rng, count):
    return [
        AccountConfig(
            f"a{i}",
            f"gho_{i}",
            weight=rng.choice([1, 1, 2, 3, 5]),
            max_concurrency=rng.choice([None, None, 1, 2]),
            priority=rng.choice([0, 0, 0, 1]),
        )
        for i in range(count)
    ]


def scenario(strategy, seed, steps=1500, count=8):
    """Picks (or why none) over a random run of everything that changes what a pick sees."""
    random.seed(seed)  # the ready lists break ties in last use at random: the same draws for both runs
    rng, clock = random.Random(seed), FakeClock()
    pool = Pool(clock)
    pool.strategy = strategy
    accounts = configs(rng, count)
    pool.apply(accounts)
    for account in pool.accounts.values():
        give_token(pool, account, lifetime=1e9)
    held, picks = [], []
    for _ in range(steps):
        op, names = rng.random(), list(pool.accounts)
        if op < 0.45:
            exclude = [pool.accounts[n] for n in rng.sample(names, rng.choice([0, 0, 0, 1, 2]))]
            prefer = rng.choice(names) if rng.random() < 0.05 else None  # affinity: a lease the strategy did not pick
            try:
                lease = pool.acquire(Want(prefer=prefer), exclude=exclude)
            except NoAccount as e:
                picks.append(f"none: {e.reason}")
            else:
                picks.append(lease.account.name)
                held.append(lease)
        elif op < 0.8 and held:
            held.pop(rng.randrange(len(held))).release()
        elif op < 0.9:
            entitlement = rng.choice([300, 300, 50, -1])
            quota = Quota(entitlement, rng.choice([0.0, 10.0, 50.0, 50.0, 100.0]), False, None, clock.now())
            pool.quota_seen(pool.accounts[rng.choice(names)], quota)
        elif op < 0.95:
            pool.cool(pool.accounts[rng.choice(names)], rng.choice([0.5, 2.0]))
        elif op < 0.98:
            clock.advance(rng.choice([0.3, 1.0]))
        else:
            i = rng.randrange(len(accounts))  # a new weight or limit: the pool rebuilds, leases keep counting
            old = accounts[i]
            accounts[i] = AccountConfig(
                old.name, old.github_token, weight=rng.choice([1, 2, 4]), max_concurrency=rng.choice([None, 1])
            )
            pool.apply(accounts)
    return picks


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("name, specification", [("weighted", ScanWeighted), ("quota", ScanQuota)])
def test_index_picks_exactly_what_a_scan_picks(name, specification, seed):
    indexed, scanned = scenario(make_strategy(name), seed), scenario(specification(), seed)
    assert indexed == scanned
    assert len({p for p in indexed if not p.startswith("none")}) > 3  # the run exercised the pool, not an edge


def test_weighted_keeps_its_turns_across_rebuilds():
    """A cooldown elsewhere rebuilds the ready lists; the interleaving goes on where it was."""
    clock = FakeClock()
    pool = Pool(clock, "weighted")
    pool.apply([AccountConfig("a", "gho_a", weight=3), AccountConfig("b", "gho_b"), AccountConfig("c", "gho_c")])
    for account in pool.accounts.values():
        give_token(pool, account, lifetime=1e9)
    picks = []
    for i in range(40):
        if i % 7 == 0:
            pool.cool(pool.accounts["c"], 0.001)  # c cools briefly, again and again
        clock.advance(0.01)
        lease = pool.acquire()
        picks.append(lease.account.name)
        lease.release()
    assert picks.count("a") == 24 and picks.count("b") == 8 and picks.count("c") == 8
