"""The pool: accounts' runtime state, picking an account per request, cooldowns and failures.

No I/O and no mitmproxy here; time comes from an injected clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from .accounts import AccountConfig
from .clock import Clock, SystemClock
from .quota import Quota
from .strategies import DEFAULT_STRATEGY, Ready, Strategy, make_strategy

# Bumped whenever any account's pickability may have changed, so the pool knows its ready lists are stale
# without every writer of base_state, token or cooldown_until having to tell it.
_PICKABILITY_FIELDS = frozenset({"base_state", "token", "cooldown_until"})
_pickability_changes = [0]


class State(StrEnum):
    STARTING = "starting"  # no usable token yet, or a token exchange is under way
    ACTIVE = "active"
    COOLING = "cooling"  # derived: active, but inside a cooldown
    FAILED = "failed"  # the token exchange was refused: needs a new credential
    DISABLED = "disabled"  # `enabled: false` in the accounts file


@dataclass(frozen=True)
class CopilotToken:
    """What one token exchange yields; `expires_at` is on the pool clock (monotonic), not the server's."""

    value: str = field(repr=False)
    expires_at: float
    refresh_at: float
    api_endpoint: str
    proxy_endpoint: str
    sku: str


@dataclass(eq=False)
class Account:
    config: AccountConfig
    base_state: State = State.STARTING
    token: CopilotToken | None = None
    token_generation: int = 0  # bumped on every new token; lets waiting refreshes see they were served
    in_flight: int = 0
    last_used: float = -math.inf
    cooldown_until: float = 0.0
    failures: int = 0
    last_failure: str | None = None
    served: int = 0
    rate_limited: int = 0
    quota: Quota | None = None  # last premium quota seen (response headers or /copilot_internal/user)

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name in _PICKABILITY_FIELDS:
            _pickability_changes[0] += 1

    @property
    def name(self) -> str:
        return self.config.name

    def state(self, now: float) -> State:
        if self.base_state is State.ACTIVE and self.cooldown_until > now:
            return State.COOLING
        return self.base_state

    def has_valid_token(self, now: float) -> bool:
        return self.token is not None and self.token.expires_at > now

    def pickable(self, now: float) -> bool:
        return self.base_state is State.ACTIVE and self.cooldown_until <= now and self.has_valid_token(now)

    def has_room(self) -> bool:
        limit = self.config.max_concurrency
        return limit is None or self.in_flight < limit


class Lease:
    """One request's claim on an account; `release` counts it out exactly once, however often it is called."""

    __slots__ = ("account", "reason", "_released", "_on_release")

    def __init__(self, account: Account, reason: str, on_release: Callable[[], None] | None = None) -> None:
        self.account = account
        self.reason = reason
        self._released = False
        self._on_release = on_release
        account.in_flight += 1

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.account.in_flight -= 1
            if self._on_release is not None:
                self._on_release()


class NoAccountAvailable(Exception):
    """No account can take the request.

    `status` 429: all usable accounts are cooling (`recovers_in` seconds until the first is back) or busy at
    their `max_concurrency`; 503: none usable (yet); 502 (`pool_attempts_exhausted`): only accounts the request
    excluded are left. `waitable`: holding the request may help (cooling, busy, or a token on its way).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        retry_after: int | None = None,
        *,
        recovers_in: float | None = None,
        waitable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.recovers_in = recovers_in
        self.waitable = waitable


@dataclass
class PoolChanges:
    added: list[Account] = field(default_factory=list)
    removed: list[Account] = field(default_factory=list)
    credential_changed: list[Account] = field(default_factory=list)
    enabled: list[Account] = field(default_factory=list)
    disabled: list[Account] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.added, self.removed, self.credential_changed, self.enabled, self.disabled))


class Pool:
    def __init__(self, strategy: str = DEFAULT_STRATEGY, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.strategy: Strategy = make_strategy(strategy)
        self.accounts: dict[str, Account] = {}
        self._tiers: list[list[Account]] = []  # accounts grouped by priority, best tier first; rebuilt by apply
        self._ready: list[Ready] = []  # each tier's pickable accounts, rebuilt when stale (see _ready_tiers)
        self._ready_as_of = -1  # the pickability change count they reflect
        self._ready_until = -math.inf  # when time alone changes them: a token expires, a cooldown ends
        self.on_release: Callable[[], None] | None = None  # told whenever a lease ends (wakes waiting requests)

    def set_strategy(self, name: str) -> None:
        if name != self.strategy.name:
            self.strategy = make_strategy(name)

    # -- picking ------------------------------------------------------------------------------------

    def acquire(self, exclude: Collection[Account] = (), prefer: str | None = None) -> Lease:
        """Pick an account for one request and count it in flight, or raise NoAccountAvailable.

        `exclude`: accounts this request already tried. `prefer`: the conversation's account (affinity), taken
        whenever it can serve. Otherwise the strategy picks within the first priority tier that has a ready and
        eligible account. Ready lists are cached, so a pick usually looks at a few accounts, not all of them.
        """
        now = self.clock.now()
        if prefer is not None:
            account = self.accounts.get(prefer)
            if account is not None and account not in exclude and account.pickable(now) and account.has_room():
                return self._lease(account, now, "affinity")

        def eligible(account: Account) -> bool:
            return account.has_room() and account not in exclude

        for ready in self._ready_tiers(now):
            account = self.strategy.pick(ready, eligible)
            if account is not None:
                top = self._tiers[0][0].config.priority
                tier_note = f", tier {account.config.priority}" if account.config.priority != top else ""
                count = len(ready.in_file_order)
                return self._lease(account, now, f"{self.strategy.name} among {count} ready{tier_note}")
        raise self._why_none(now, exclude)

    def _ready_tiers(self, now: float) -> list[Ready]:
        if self._ready_as_of != _pickability_changes[0] or now >= self._ready_until:
            self._ready_as_of = _pickability_changes[0]
            self._ready, self._ready_until = [], math.inf
            for tier in self._tiers:
                ready = [a for a in tier if a.pickable(now)]
                if ready:
                    self._ready.append(Ready(ready))
                for a in tier:
                    if a.base_state is State.ACTIVE and a.has_valid_token(now):
                        ends = a.cooldown_until if a.cooldown_until > now else a.token.expires_at  # type: ignore[union-attr]
                        self._ready_until = min(self._ready_until, ends)
        return self._ready

    def _lease(self, account: Account, now: float, reason: str) -> Lease:
        account.last_used = now
        for ready in self._ready:
            ready.used(account)
        return Lease(account, f"{reason}, {account.in_flight} in flight", self.on_release)

    def _why_none(self, now: float, exclude: Collection[Account] = ()) -> NoAccountAvailable:
        """Why nothing could be picked, judged on the accounts this request may still use."""
        others = [a for a in self.accounts.values() if a not in exclude] if exclude else list(self.accounts.values())
        usable = [a for a in others if a.base_state is State.ACTIVE and a.has_valid_token(now)]
        ready = [a for a in usable if a.cooldown_until <= now]
        starting = any(a.base_state is State.STARTING for a in others)
        if ready:
            return NoAccountAvailable(
                429,
                "pool_all_busy",
                "Every ready Copilot account is at its max_concurrency; retry in a moment, or raise max_concurrency.",
                1,
                waitable=True,
            )
        if usable:
            wait = min(a.cooldown_until for a in usable) - now
            retry_after = max(1, math.ceil(wait))
            return NoAccountAvailable(
                429,
                "pool_all_cooling",
                f"Every Copilot account in the pool is rate limited; the first one recovers in {retry_after}s. "
                "Retry after that, or add accounts to the pool.",
                retry_after,
                recovers_in=wait,
                waitable=True,
            )
        if starting:
            message = "No Copilot account in the pool holds a token yet; retry in a few seconds. `pool.status` shows why."
            return NoAccountAvailable(503, "pool_unavailable", message, waitable=True)
        if exclude and any(a.pickable(now) for a in exclude):
            return NoAccountAvailable(
                502, "pool_attempts_exhausted", "Every Copilot account that could serve this request was tried and failed."
            )
        if not self.accounts:
            message = "The Copilot pool has no accounts. Add accounts to the accounts file (pool_accounts)."
        else:
            message = "No Copilot account in the pool is usable (failed or disabled). `pool.status` shows why; fix the accounts file."
        return NoAccountAvailable(503, "pool_unavailable", message)

    # -- feedback -----------------------------------------------------------------------------------

    def mark_cooldown(self, account: Account, seconds: float) -> float:
        """Cool the account for `seconds`; a cooldown is only ever extended, never shortened. Returns its end."""
        account.cooldown_until = max(account.cooldown_until, self.clock.now() + seconds)
        return account.cooldown_until

    def mark_failure(self, account: Account, reason: str) -> None:
        """The account cannot work until its credential changes."""
        account.base_state = State.FAILED
        account.failures += 1
        account.last_failure = reason

    def cooldown_remaining(self, account: Account) -> float:
        return max(0.0, account.cooldown_until - self.clock.now())

    # -- accounts file changes ----------------------------------------------------------------------

    def apply(self, configs: Iterable[AccountConfig]) -> PoolChanges:
        """Make the account set match `configs`, in place and keyed by name.

        Accounts that did not change keep their tokens, cooldowns and counters; removed accounts leave the
        pool at once, and requests already holding them finish normally (their Lease keeps the object).
        """
        changes = PoolChanges()
        wanted = {c.name: c for c in configs}
        for name in [n for n in self.accounts if n not in wanted]:
            changes.removed.append(self.accounts.pop(name))
        updated: dict[str, Account] = {}
        for name, config in wanted.items():
            account = self.accounts.get(name)
            if account is None:
                account = Account(config, State.STARTING if config.enabled else State.DISABLED)
                changes.added.append(account)
            elif account.config != config:
                old, account.config = account.config, config
                if not config.enabled:
                    account.base_state = State.DISABLED
                    changes.disabled.append(account)
                elif not old.enabled or _credential(old) != _credential(config):
                    # A new credential (or a re-enabled account) needs a new exchange before it serves again.
                    account.base_state = State.STARTING
                    account.token = None
                    (changes.enabled if not old.enabled else changes.credential_changed).append(account)
            updated[name] = account
        self.accounts = updated  # keeps the file's order, which round-robin follows
        self._tiers = _tiers(updated.values())
        _pickability_changes[0] += 1
        return changes


def _tiers(accounts: Iterable[Account]) -> list[list[Account]]:
    tiers: dict[int, list[Account]] = {}
    for account in accounts:
        tiers.setdefault(account.config.priority, []).append(account)
    return [tiers[p] for p in sorted(tiers)]


def _credential(config: AccountConfig) -> tuple[str, str]:
    return (config.github_token, config.account_type)
