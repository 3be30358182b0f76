"""What the pool keeps across restarts and shares with other proxies, as plain records on the wall clock.

The pool measures time on a monotonic clock (core/clock.py) that means nothing after a restart or on another
machine, so every kept moment is turned into epoch seconds here, and back on the way in. Three kinds of record,
each with its own merge:

- cooldowns (`Cooled`): extended, never shortened, whoever saw the limit (the operator's exact word aside);
- facts (`facts_of`): an account's failure, quota, usage limits and paces; the latest writer wins;
- counters (`Counters`): requests, 429s and credits per account, model and proxy user; they add up, so a store
  keeps totals and each proxy sends what it counted since it last heard the total (`grown`).

Nothing here holds a token: an account's credential appears only as a digest (`fingerprint`), to tell whether a
failure was learnt with the credential the account has now; session tokens only as core/sessions.py's digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from .clock import Clock
from .limits import Pacer
from .model import Account, AccountConfig, State
from .quota import Quota
from .usage import Spender

POOL = ""  # the owner of pool-wide state (the hold, learned paces): no account has an empty name

Counters = dict[str, int]


@dataclass(frozen=True, slots=True)
class Cooled:
    """A cooldown: an account's (model None), a model's on an account, or the hold on the whole pool (owner POOL)."""

    owner: str
    model: str | None
    until: float  # epoch seconds
    reason: str
    exact: bool = False  # the operator's word (pool.cooldown): it may shorten or end a cooldown


def fingerprint(config: AccountConfig) -> str:
    """A digest of the credential (not the credential): a kept failure holds only while the credential is the same."""
    return hashlib.sha256(f"{config.account_type}\0{config.github_token}".encode()).hexdigest()[:32]


def to_wall(clock: Clock, moment: float) -> float:
    return moment - clock.now() + clock.wall()


def to_pool(clock: Clock, wall: float) -> float:
    return wall - clock.wall() + clock.now()


# -- cooldowns ----------------------------------------------------------------------------------------------


def cooldowns_of(account: Account, clock: Clock) -> list[Cooled]:
    """The account's cooldowns still in force."""
    now = clock.now()
    found = []
    if account.cooldown_until > now:
        reason = account.cooldown_reason or "rate limited"
        found.append(Cooled(account.name, None, to_wall(clock, account.cooldown_until), reason))
    for model, cooldown in account.model_cooldowns.items():
        if cooldown.until > now:
            found.append(Cooled(account.name, model, to_wall(clock, cooldown.until), cooldown.reason))
    return found


# -- facts --------------------------------------------------------------------------------------------------


def facts_of(account: Account, clock: Clock) -> dict:
    """What is known of the account besides its cooldowns and counters, as JSON-able data."""
    failed = account.base_state is State.FAILED
    return {
        "credential": fingerprint(account.config),
        "failed": account.last_failure if failed else None,
        "failures": account.failures,
        "last_failure": account.last_failure,
        "quota": quota_record(account.quota, clock),
        "usage_limits": {kind: quota_record(q, clock) for kind, q in account.usage_limits.items()},
        "pacers": {scope or "": pacer_record(p, clock) for scope, p in account.pacers.items() if p.rate is not None},
    }


def quota_record(quota: Quota | None, clock: Clock) -> dict | None:
    if quota is None:
        return None
    return {
        "entitlement": quota.entitlement,
        "percent_remaining": quota.percent_remaining,
        "overage_permitted": quota.overage_permitted,
        "resets_at": quota.resets_at,
        "observed_at": to_wall(clock, quota.observed_at),
    }


def quota_from(record: object, clock: Clock) -> Quota | None:
    """A kept quota, or None when the record is not one (a foreign or damaged store says nothing)."""
    if not isinstance(record, Mapping):
        return None
    try:
        resets = record.get("resets_at")
        return Quota(
            int(record["entitlement"]),
            min(max(float(record["percent_remaining"]), 0.0), 100.0),
            bool(record.get("overage_permitted")),
            float(resets) if resets is not None else None,
            to_pool(clock, float(record["observed_at"])),
        )
    except (KeyError, TypeError, ValueError):
        return None


def pacer_record(pacer: Pacer, clock: Clock) -> dict:
    return {
        "rate": pacer.rate,
        "next_at": to_wall(clock, pacer.next_at) if pacer.next_at else None,
        "served": pacer.served,
        "limited_at": to_wall(clock, pacer.limited_at) if pacer.limited_at is not None else None,
        "measured": pacer.measured,
        "adopted": pacer.adopted,
    }


def pacer_from(record: object, clock: Clock) -> Pacer | None:
    if not isinstance(record, Mapping):
        return None
    try:
        rate, next_at, limited_at = float(record["rate"]), record.get("next_at"), record.get("limited_at")
        return Pacer(
            rate=rate if rate > 0 else None,
            next_at=to_pool(clock, float(next_at)) if next_at is not None else 0.0,
            served=int(record.get("served", 0)),
            limited_at=to_pool(clock, float(limited_at)) if limited_at is not None else None,
            measured=bool(record.get("measured")),
            adopted=bool(record.get("adopted")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def learned_record(learned: Mapping[tuple[str, str | None], float]) -> dict:
    """The plans' measured paces: {"plan\\tmodel": rate} ("" for the account scope)."""
    return {f"{plan}\t{model or ''}": rate for (plan, model), rate in learned.items()}


def learned_from(record: object) -> dict[tuple[str, str | None], float]:
    found: dict[tuple[str, str | None], float] = {}
    for key, rate in record.items() if isinstance(record, Mapping) else ():
        plan, _, model = str(key).partition("\t")
        if isinstance(rate, int | float) and rate > 0:
            found[(plan, model or None)] = float(rate)
    return found


# -- counters -----------------------------------------------------------------------------------------------

SERVED, RATE_LIMITED, REQUESTS, NANO = "served", "rate_limited", "requests", "nano"
CREDITS = "credits:"  # + model: nano-AIU the account's answers for that model reported
MONTH = "month:"  # + "2026-12": nano-AIU the account spent in that billing month
DAY = "day:"  # + "2026-12-01": nano-AIU the proxy user spent that UTC day


def account_owner(name: str) -> str:
    return f"account:{name}"


def user_owner(name: str) -> str:
    return f"user:{name}"


def account_counters(account: Account) -> Counters:
    counters = {SERVED: account.served, RATE_LIMITED: account.rate_limited}
    counters.update({CREDITS + model: nano for model, nano in account.credits.items()})
    if account.month:
        counters[MONTH + account.month] = account.month_nano
    return counters


def user_counters(spender: Spender) -> Counters:
    counters = {REQUESTS: spender.requests, RATE_LIMITED: spender.rate_limited, NANO: spender.nano}
    if spender.today:
        counters[DAY + spender.today] = spender.nano_today
    return counters


def grown(now: Mapping[str, int], before: Mapping[str, int]) -> Counters:
    """What each counter of `now` grew by since `before` (counters only grow: a month gone by is not a loss)."""
    return {k: v - before.get(k, 0) for k, v in now.items() if v > before.get(k, 0)}


def added(a: Mapping[str, int], b: Mapping[str, int]) -> Counters:
    return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}
