"""The token keeper: every account's Copilot token, exchanged and kept fresh inside the running event loop.

All credential changes (the refresh loop, a new token in the accounts file, `pool.refresh`, a 401 on a
pooled request) go through `TokenKeeper.refresh`, serialized per account. What it learns it hands to the
pool's transitions (token received, exchange failed, failed).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from .. import LOGGER_NAME
from ..core.exchange import Exchange, Exchanged, ExchangeError
from ..core.model import Account, AccountConfig, CopilotToken, State
from ..core.pool import Pool
from . import tasks
from .clock import Clock

log = logging.getLogger(LOGGER_NAME)

LOCAL_EXPIRY_SLACK = 60.0  # VS Code: trust refresh_in on the local clock, plus a minute, not the server's clock
MAX_BACKOFF = 60.0


class TokenKeeper:
    """One refresh loop per account inside the running event loop, and the one serialized refresh path."""

    def __init__(self, pool: Pool, exchange: Exchange, clock: Clock) -> None:
        self.pool = pool
        self.exchange = exchange
        self.clock = clock
        self.loops: dict[str, asyncio.Task] = {}
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # name -> (lock, [waiters])
        self.on_token: Callable[[Account], None] | None = None  # told of every new token (catalogue fetch)

    # -- loops --------------------------------------------------------------------------------------

    def start(self, account: Account) -> None:
        """(Re)start the account's refresh loop; its first step is an exchange."""
        self.stop(account.name)
        self.loops[account.name] = tasks.start(self._loop(account), f"copilot-pool refresh loop of {account.name}")

    def stop(self, name: str) -> None:
        task = self.loops.pop(name, None)
        if task is not None:
            task.cancel()

    def stop_all(self) -> None:
        for name in list(self.loops):
            self.stop(name)

    async def _loop(self, account: Account) -> None:
        failures = 0
        while True:
            token, now = account.token, self.clock.now()
            if account.base_state is State.ACTIVE and token is not None and token.refresh_at > now:
                await self.clock.sleep(token.refresh_at - now)  # another trigger may refresh meanwhile
                continue
            if await self.refresh(account, reason="refresh" if account.token else "first exchange"):
                failures = 0
                continue
            if (
                account.base_state in (State.FAILED, State.DISABLED)
                or self.pool.accounts.get(account.name) is not account
            ):
                return  # GitHub refused the credential: wait for a new one (a file change restarts us)
            failures += 1
            delay = backoff(failures)
            if account.has_valid_token(self.clock.now()):
                # retry well before the working token runs out: a failed refresh never drops it early
                delay = min(delay, max(1.0, (account.token.expires_at - self.clock.now()) / 3))  # type: ignore[union-attr]
            await self.clock.sleep(delay)

    def ensure_loop(self, account: Account) -> None:
        task = self.loops.get(account.name)
        if task is None or task.done():
            self.start(account)

    # -- the serialized path ------------------------------------------------------------------------

    async def refresh(self, account: Account, *, invalidate: bool = False, reason: str = "scheduled") -> bool:
        """Exchange the account's GitHub token for a new Copilot token, one exchange per account at a time.

        `invalidate`: the current token is known bad (a 401, a new credential): the account is not picked
        until it holds a new one. Triggers that waited while another exchange succeeded reuse its result.
        """
        if invalidate:
            self.pool.invalidate(account)
        seen_generation = account.token_generation
        lock, waiters = self._locks.setdefault(account.name, (asyncio.Lock(), [0]))
        waiters[0] += 1
        try:
            async with lock:
                if account.token_generation != seen_generation and account.base_state is State.ACTIVE:
                    return True  # an exchange finished while we waited: its token is as fresh as ours would be
                return await self._exchange_once(account, reason)
        finally:
            waiters[0] -= 1
            if waiters[0] == 0:
                del self._locks[account.name]

    async def _exchange_once(self, account: Account, reason: str) -> bool:
        if account.base_state is State.DISABLED or self.pool.accounts.get(account.name) is not account:
            return False
        self.pool.exchange_started(account)
        config = account.config
        try:
            exchanged = await self.exchange(config)
        except ExchangeError as e:
            return self._exchange_failed(account, config, e)
        if account.config is not config or account.base_state is State.DISABLED:
            return False  # the credential changed or the account was disabled while we asked: discard
        token = self._on_pool_clock(exchanged)
        was = self.pool.token_received(account, token)
        if self.on_token is not None:
            self.on_token(account)
        if was is not State.ACTIVE:
            remaining = token.expires_at - self.clock.now()
            log.info(
                f"pool: account {account.name} active "
                f"(sku {exchanged.sku or '?'}, token valid {remaining / 60:.0f} min, {reason})"
            )
        return True

    def _exchange_failed(self, account: Account, config: AccountConfig, error: ExchangeError) -> bool:
        if account.config is not config:
            return False
        if error.permanent:
            self.pool.fail(account, error.reason)
            log.error(f"pool: account {account.name} failed: {error.reason}")
        else:
            self.pool.exchange_failed(account, error.reason)
            log.warning(f"pool: account {account.name}: {error.reason}; retrying")
        return False

    def _on_pool_clock(self, exchanged: Exchanged) -> CopilotToken:
        now, wall = self.clock.now(), self.clock.wall()
        lifetime = exchanged.refresh_in + LOCAL_EXPIRY_SLACK
        server_left = exchanged.expires_at - wall
        if 0 < server_left < lifetime:  # a short-lived token: never outlive what the server says
            lifetime = server_left
        margin = min(60.0, exchanged.refresh_in * 0.1)
        return CopilotToken(
            exchanged.token,
            expires_at=now + lifetime,
            refresh_at=now + max(1.0, min(exchanged.refresh_in, lifetime) - margin),
            api_endpoint=exchanged.api_endpoint,
            proxy_endpoint=exchanged.proxy_endpoint,
            sku=exchanged.sku,
        )


def backoff(failures: int) -> float:
    """Exponential backoff with +-20% jitter: 1, 2, 4 ... 60 s."""
    return min(MAX_BACKOFF, 2.0 ** (failures - 1)) * random.uniform(0.8, 1.2)
