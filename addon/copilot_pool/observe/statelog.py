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
        self.reported: dict[str, float] = {}  # account name -> the cooldown end last reported

    def sweep(self) -> list[str]:
        """Log (and return) a line for each account that started cooling, cools longer, or stopped cooling."""
        now, wall = self.pool.clock.now(), self.pool.clock.wall()
        lines = []
        for name in [n for n in self.reported if n not in self.pool.accounts]:
            del self.reported[name]  # removal is logged where the accounts file is applied
        for account in self.pool.accounts.values():
            state = account.state(now)
            until = self.reported.get(account.name)
            if state is State.COOLING and (until is None or abs(account.cooldown_until - until) >= MOVED):
                self.reported[account.name] = account.cooldown_until
                left = account.cooldown_until - now
                lines.append(
                    f"pool: account {account.name} cooling until {local_time(wall + left)} ({math.ceil(left)}s)"
                )
            elif state is not State.COOLING and until is not None:
                del self.reported[account.name]
                if state is State.ACTIVE:  # failed or disabled meanwhile: that change has its own line
                    lines.append(f"pool: account {account.name} active again: cooldown over")
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
