"""Builders shared by the unit tests of the pure core."""

from __future__ import annotations

from copilot_pool.accounts import AccountConfig
from copilot_pool.clock import FakeClock
from copilot_pool.pool import Account, CopilotToken, Pool, State


def config(name: str, token: str | None = None, **kw) -> AccountConfig:
    return AccountConfig(name, token or f"gho_{name}", **kw)


def active_pool(*names: str, strategy: str = "least-busy", clock: FakeClock | None = None) -> Pool:
    """A pool whose accounts all hold a token valid for an hour."""
    clock = clock or FakeClock()
    pool = Pool(strategy, clock)
    pool.apply([config(n) for n in names])
    for account in pool.accounts.values():
        give_token(account, clock)
    return pool


def give_token(account: Account, clock: FakeClock, lifetime: float = 3600) -> None:
    now = clock.now()
    account.token = CopilotToken(f"tid={account.name}", now + lifetime, now + lifetime - 60, "https://api.example", "https://proxy.example", "sku")
    account.base_state = State.ACTIVE
