"""The pool and its token keeper together: apply an account set, start and stop refresh loops, report status."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

from .accounts import AccountConfig, signature
from .clock import Clock, SystemClock
from .pool import Account, Pool, PoolChanges, State
from .tokens import Exchange, TokenKeeper

log = logging.getLogger("copilot_pool")


class UnknownAccount(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no account named {self.name!r} in the pool"


class PoolService:
    def __init__(self, exchange: Exchange, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.pool = Pool(clock=self.clock)
        self.keeper = TokenKeeper(self.pool, exchange, self.clock)
        self.running = False
        self.signature: str | None = None  # of the account set applied last

    def start(self) -> None:
        """Start every enabled account's refresh loop (all exchanges run in parallel). Needs a running loop."""
        self.running = True
        for account in self.pool.accounts.values():
            if account.base_state is not State.DISABLED:
                self.keeper.start(account)

    def stop(self) -> None:
        self.running = False
        self.keeper.stop_all()

    def apply(self, configs: Iterable[AccountConfig]) -> PoolChanges:
        """Make the pool match `configs` in place. The same account set as last time does nothing at all."""
        configs = list(configs)
        new_signature = signature(configs)
        if new_signature == self.signature:
            return PoolChanges()
        self.signature = new_signature
        changes = self.pool.apply(configs)
        for account in changes.removed + changes.disabled:
            self.keeper.stop(account.name)
        for account in changes.removed:
            log.info(f"pool: account {account.name} removed ({account.in_flight} in flight finish normally)")
        for account in changes.disabled:
            log.info(f"pool: account {account.name} disabled")
        for account in changes.credential_changed:
            log.info(f"pool: account {account.name} has a new credential; exchanging its token")
        if self.running:
            for account in changes.added + changes.credential_changed + changes.enabled:
                self.keeper.start(account)
        return changes

    def account(self, name: str) -> Account:
        try:
            return self.pool.accounts[name]
        except KeyError:
            raise UnknownAccount(name) from None

    async def refresh(self, name: str, *, invalidate: bool = False, reason: str = "manual") -> bool:
        """Re-exchange one account's token now, through the keeper's serialized path."""
        account = self.account(name)
        ok = await self.keeper.refresh(account, invalidate=invalidate, reason=reason)
        if ok and self.running:
            self.keeper.ensure_loop(account)
        return ok

    # -- operator overrides (pool.disable / pool.enable / pool.cooldown), until the account's entry changes --

    def disable(self, name: str) -> Account:
        """Keep the account out of the pool; its requests in flight finish, its refresh loop stops."""
        account = self.account(name)
        if account.base_state is not State.DISABLED:
            account.base_state = State.DISABLED
            self.keeper.stop(name)
            log.info(f"pool: account {name} disabled by the operator ({account.in_flight} in flight finish normally)")
        return account

    def enable(self, name: str) -> Account:
        """Put a disabled account back: at once when it still holds a valid token, else after an exchange."""
        account = self.account(name)
        if account.base_state is State.DISABLED:
            account.base_state = State.ACTIVE if account.has_valid_token(self.clock.now()) else State.STARTING
            log.info(f"pool: account {name} enabled by the operator" + ("" if account.base_state is State.ACTIVE else "; exchanging its token"))
            if self.running:
                self.keeper.start(account)  # its loop sleeps until the refresh is due, or exchanges now
        return account

    def set_cooldown(self, name: str, seconds: float) -> Account:
        """Cool the account for exactly `seconds` from now (0 ends a cooldown): the operator may shorten one."""
        account = self.account(name)
        account.cooldown_until = self.clock.now() + seconds
        return account

    def status_lines(self) -> list[str]:
        now = self.clock.now()
        if not self.pool.accounts:
            return ["pool: no accounts"]
        lines = []
        for a in self.pool.accounts.values():
            state = a.state(now)
            fields = [
                f"{a.name}",
                f"state={state.value}",
                f"in_flight={a.in_flight}",
                f"last_used={_ago(now, a.last_used)}",
                f"cooldown={_seconds(a.cooldown_until - now)}",
                f"token_expires={_seconds(a.token.expires_at - now) if a.token else '-'}",
                f"served={a.served}",
                f"429s={a.rate_limited}",
                f"quota={a.quota.describe() if a.quota else '?'}",
            ]
            if a.last_failure and state in (State.FAILED, State.STARTING):
                fields.append(f"reason={a.last_failure!r}")
            lines.append(" ".join(fields))
        return lines


def _seconds(value: float) -> str:
    return f"{math.ceil(value)}s" if value > 0 else "-"


def _ago(now: float, then: float) -> str:
    return "never" if then == -math.inf else f"{now - then:.0f}s ago"
