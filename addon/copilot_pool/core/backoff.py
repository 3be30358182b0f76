"""Exponential backoff with jitter: how long to leave something alone after it failed `failures` times in a row."""

from __future__ import annotations

import random

MAX_BACKOFF = 60.0


def backoff(failures: int, cap: float = MAX_BACKOFF) -> float:
    """1, 2, 4 ... `cap` seconds for 1, 2, 3 ... failures, each +-20% (jitter spreads accounts that failed
    together)."""
    return min(cap, 2.0 ** (min(max(failures, 1), 32) - 1)) * random.uniform(0.8, 1.2)
