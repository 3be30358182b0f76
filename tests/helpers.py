"""Builders shared by the unit tests of the pure core."""

from __future__ import annotations

from copilot_pool.core.model import Account, AccountConfig, CopilotToken
from copilot_pool.core.pool import Pool
from copilot_pool.runtime.clock import FakeClock


def config(name: str, token: str | None = None, **kw) -> AccountConfig:
    return AccountConfig(name, token or f"gho_{name}", **kw)


def active_pool(*names: str, strategy: str = "least-busy", clock: FakeClock | None = None) -> Pool:
    """A pool whose accounts all hold a token valid for an hour."""
    return pool_of(*(config(n) for n in names), strategy=strategy, clock=clock)


def pool_of(*configs: AccountConfig, strategy: str = "least-busy", clock: FakeClock | None = None) -> Pool:
    clock = clock or FakeClock()
    pool = Pool(clock, strategy)
    pool.apply(configs)
    for account in pool.accounts.values():
        give_token(pool, account)
    return pool


def give_token(
    pool: Pool, account: Account, lifetime: float = 3600, endpoint: str = "https://api.individual.githubcopilot.com"
) -> CopilotToken:
    now = pool.clock.now()
    token = CopilotToken(
        f"tid={account.name}",
        now + lifetime,
        now + lifetime - 60,
        endpoint,
        "https://proxy.individual.githubcopilot.com",
        "sku",
    )
    pool.token_received(account, token)
    return token
