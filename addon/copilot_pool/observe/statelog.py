"""Log lines for the state changes no single call site sees: cooldowns starting, moving and running out.

Most account state changes are logged where they happen (a token exchange: active or failed; the accounts
file: removed, disabled, new credential; the operator's commands). A cooldown, though, is set from several
places and ends by time alone, so `CooldownLog.sweep` compares each account's cooldown with the one it last
reported, and is called every quarter second.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from datetime import datetime

from ..core.model import State
from ..core.pool import Pool

MOVED = 1.0  # seconds: a cooldown end that moves by less is not reported again


def local_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


class CooldownLog:
    def __init__(self, pool: Pool, logger: logging.Logger) -> None:
        self.pool = pool
        self.log = logger
        # (account name, model or None) -> the cooldown end last reported; the pool-wide hold's last end
        self.reported: dict[tuple[str, str | None], float] = {}
        self.held: float | None = None

    def sweep(self) -> list[str]:
        """Log (and return) a line for each cooldown (an account's, a model's on an account) that started, grew or
        ended, and for the end of a hold on the whole pool (its start is logged where it happens)."""
        now, wall = self.pool.clock.now(), self.pool.clock.wall()
        lines = []
        cooling: dict[tuple[str, str | None], tuple[float, str]] = {}
        for account in self.pool.accounts.values():
            if account.state(now) is State.COOLING:
                cooling[(account.name, None)] = (account.cooldown_until, account.cooldown_reason or "rate limited")
            for model, cooldown in account.model_cooldowns.items():
                if cooldown.until > now:
                    cooling[(account.name, model)] = (cooldown.until, cooldown.reason)
        for (name, model), (until, reason) in cooling.items():
            seen = self.reported.get((name, model))
            if seen is None or abs(until - seen) >= MOVED:
                self.reported[(name, model)] = until
                scope = f" for {model}" if model else ""
                left = until - now
                until_text = f"until {local_time(wall + left)} ({math.ceil(left)}s)"
                lines.append(f"pool: account {name} cooling{scope} {until_text}: {reason}")
        for name, model in [key for key in self.reported if key not in cooling]:
            del self.reported[(name, model)]
            account = self.pool.accounts.get(name)
            if account is None or account.state(now) is not State.ACTIVE:
                continue  # removed, failed or disabled meanwhile: that change has its own line
            lines.append(
                f"pool: account {name} serves {model} again: cooldown over"
                if model
                else f"pool: account {name} active again: cooldown over"
            )
        held = self.pool.held
        if held is not None and held.until > now:
            self.held = held.until
        elif self.held is not None:
            self.held = None
            lines.append("pool: the hold on the whole pool is over; accounts ease back in")
        for line in lines:
            self.log.info(line)
        return lines


def summary_line(pool: Pool) -> str:
    now = pool.clock.now()
    accounts = list(pool.accounts.values())
    states = Counter(a.state(now).value for a in accounts)
    by_state = ", ".join(f"{count} {state}" for state, count in sorted(states.items())) or "none"
    return (
        f"pool: summary: {len(accounts)} account(s) ({by_state}); "
        f"{sum(a.in_flight for a in accounts)} in flight, {sum(a.served for a in accounts)} served, "
        f"{sum(a.rate_limited for a in accounts)} 429s"
    )
