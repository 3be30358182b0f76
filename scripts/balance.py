#!/usr/bin/env python3
"""How evenly each strategy spreads load: a discrete-event simulation over the pure pool core.

Requests arrive as a Poisson stream and last a heavy-tailed time (lognormal, like LLM answers). We report,
per strategy, the share error (how far each account's share of requests is from its weight's share, summed)
and the weighted in-flight imbalance (time-averaged max over accounts of in_flight/weight, divided by the
mean of in_flight/weight): 1.0 is perfect.

    .venv/bin/python scripts/balance.py [--requests 20000] [--seed 1]
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from collections.abc import Collection

from copilot_pool.core.model import Account, AccountConfig, CopilotToken
from copilot_pool.core.pool import Pool
from copilot_pool.core.strategies import LeastBusy, Ready, SmoothWeighted, can_take
from copilot_pool.runtime.clock import FakeClock


class PowerOfTwo:  # measured here, not shipped: least-busy balances better (README, Strategies)
    """Two candidates at random, the less busy (for its weight) wins."""

    name = "p2c"

    def index(self, ready: Ready) -> None:
        return None

    def pick(self, ready: Ready, exclude: Collection[Account]) -> Account | None:
        candidates = [a for a in ready.in_file_order if can_take(a, exclude)]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        a, b = random.sample(candidates, 2)
        return a if a.in_flight / a.config.weight <= b.in_flight / b.config.weight else b


STRATEGIES = {"least-busy": LeastBusy, "weighted": SmoothWeighted, "p2c": PowerOfTwo}


def simulate(strategy: str, weights: list[int], concurrency: float, requests: int, seed: int) -> tuple[float, float]:
    random.seed(seed)
    clock = FakeClock(start=0.0)
    pool = Pool(clock)
    pool.apply([AccountConfig(f"a{i}", f"gho_{i}", weight=w) for i, w in enumerate(weights)])
    pool.strategy = STRATEGIES[strategy]()
    for account in pool.accounts.values():
        pool.token_received(account, CopilotToken("t", 1e12, 1e12, "https://x", "https://x", "sku"))
    mean_service = 1.0
    rate = concurrency / mean_service  # Little's law: arrivals per second for that average concurrency
    ending: list[tuple[float, int, object]] = []
    served = {name: 0 for name in pool.accounts}
    accounts = list(pool.accounts.values())
    imbalance_area = time_area = 0.0
    now = 0.0
    for n in range(requests):
        arrival = now + random.expovariate(rate)
        while ending and ending[0][0] <= arrival:
            end, _, lease = heapq.heappop(ending)
            imbalance_area += _imbalance(accounts) * (end - now)
            time_area += end - now
            now = end
            lease.release()
        imbalance_area += _imbalance(accounts) * (arrival - now)
        time_area += arrival - now
        now = arrival
        clock.advance(now - clock.now())
        lease = pool.acquire()
        served[lease.account.name] += 1
        heapq.heappush(ending, (now + random.lognormvariate(0, 1.0) * mean_service / 1.65, n, lease))
    total_weight = sum(weights)
    share_error = sum(abs(served[a.name] / requests - a.config.weight / total_weight) for a in accounts)
    return share_error, imbalance_area / time_area


def _imbalance(accounts) -> float:
    loads = [a.in_flight / a.config.weight for a in accounts]
    mean = sum(loads) / len(loads)
    return max(loads) / mean if mean else 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    scenarios = {"8 equal": [1] * 8, "8 weighted 1,1,1,1,2,2,4,4": [1, 1, 1, 1, 2, 2, 4, 4]}
    print(f"{'scenario':28} {'concurrency':>11} {'strategy':>11} {'share error':>12} {'imbalance':>10}")
    for label, weights in scenarios.items():
        for concurrency in (2, 8, 32):
            for strategy in STRATEGIES:
                error, imbalance = simulate(strategy, weights, concurrency, args.requests, args.seed)
                print(f"{label:28} {concurrency:>11} {strategy:>11} {error:>12.3f} {imbalance:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
