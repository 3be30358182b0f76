"""The pool: picking an account for each request, and every change of an account's state.

`Pool` is the only writer of `Account` fields (core/model.py). Each change is one named transition in the
"transitions" part below; a transition that may change which accounts can be picked bumps `version` (the
cached ready lists are rebuilt when it moved), and every change, a lease's end included, tells `listener`
(the wait queue), so a waiting request gets an account the moment one can take it. Leases taken and ended and
quotas seen also go to the ready lists, whose strategy index (weighted, quota) follows them without a rebuild.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from .classify import Outcome, Verdict
from .clock import Clock
from .model import Account, AccountConfig, CopilotToken, Lease, State
from .quota import Quota
from .strategies import DEFAULT_STRATEGY, Ready, Strategy, make_strategy


class Unavailable(StrEnum):
    """Why no account could take a request."""

    BUSY = "busy"  # every ready account is at its max_concurrency
    COOLING = "cooling"  # every usable account is cooling: `recovers_in` says when the first is back
    STARTING = "starting"  # no account holds a usable token yet; exchanges are under way
    EXHAUSTED = "exhausted"  # only accounts this request already tried could serve it
    UNUSABLE = "unusable"  # every account failed or is disabled
    EMPTY = "empty"  # the pool has no accounts


WAITABLE = frozenset({Unavailable.BUSY, Unavailable.COOLING, Unavailable.STARTING})  # time can mend these


class NoAccount(Exception):
    """No account can take the request now: the reason and, when known, seconds until one recovers."""

    def __init__(self, reason: Unavailable, recovers_in: float | None = None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.recovers_in = recovers_in

    @property
    def waitable(self) -> bool:
        return self.reason in WAITABLE


@dataclass
class PoolChanges:
    added: list[Account] = field(default_factory=list)
    removed: list[Account] = field(default_factory=list)
    credential_changed: list[Account] = field(default_factory=list)
    enabled: list[Account] = field(default_factory=list)
    disabled: list[Account] = field(default_factory=list)


class Pool:
    def __init__(self, clock: Clock, strategy: str = DEFAULT_STRATEGY) -> None:
        self.clock = clock
        self.strategy: Strategy = make_strategy(strategy)
        self.accounts: dict[str, Account] = {}
        self.version = 0  # bumped by every transition that may change which accounts can be picked
        self.listener: Callable[[], None] | None = None  # told after every change (the wait queue)
        self._tiers: list[list[Account]] = []  # accounts grouped by priority, best tier first; rebuilt by apply
        self._ready: list[Ready] = []  # each tier's pickable accounts, rebuilt when stale (see _ready_tiers)
        self._ready_version = -1  # the version they reflect
        self._ready_until = -math.inf  # when time alone changes them: a token expires, a cooldown ends

    def set_strategy(self, name: str) -> None:
        if name != self.strategy.name:
            self.strategy = make_strategy(name)
            self._ready_version = -1  # the ready lists carry the old strategy's index

    # -- picking ------------------------------------------------------------------------------------

    def acquire(self, exclude: Collection[Account] = (), prefer: str | None = None) -> Lease:
        """Pick an account for one request and count it in flight, or raise NoAccount.

        `exclude`: accounts this request already tried. `prefer`: the conversation's account (affinity), taken
        whenever it can serve. Otherwise the strategy picks within the first priority tier that has a ready and
        eligible account. Ready lists are cached, so a pick usually looks at a few accounts, not all of them.
        """
        now = self.clock.now()
        if prefer is not None:
            account = self.accounts.get(prefer)
            if account is not None and account not in exclude and account.pickable(now) and account.has_room():
                return self._lease(account, now, "affinity")
        for ready in self._ready_tiers(now):
            account = self.strategy.pick(ready, exclude)
            if account is not None:
                top = self._tiers[0][0].config.priority
                tier_note = f", tier {account.config.priority}" if account.config.priority != top else ""
                count = len(ready.in_file_order)
                return self._lease(account, now, f"{self.strategy.name} among {count} ready{tier_note}")
        raise self._why_none(now, exclude)

    def _ready_tiers(self, now: float) -> list[Ready]:
        if self._ready_version != self.version or now >= self._ready_until:
            self._ready_version = self.version
            for ready in self._ready:
                ready.retire()
            self._ready, self._ready_until = [], math.inf
            for tier in self._tiers:
                ready = [a for a in tier if a.pickable(now)]
                if ready:
                    self._ready.append(Ready(ready, self.strategy))
                for a in tier:
                    if a.base_state is State.ACTIVE and a.token is not None and a.token.expires_at > now:
                        ends = a.cooldown_until if a.cooldown_until > now else a.token.expires_at
                        self._ready_until = min(self._ready_until, ends)
        return self._ready

    def _lease(self, account: Account, now: float, reason: str) -> Lease:
        lease = Lease(account, f"{reason}, {account.in_flight} in flight", self._release)
        account.last_used = now
        account.in_flight += 1
        for ready in self._ready:
            ready.used(account)
        return lease

    def _release(self, lease: Lease) -> None:
        lease.account.in_flight -= 1
        for ready in self._ready:
            ready.changed(lease.account)
        self._tell()

    def _why_none(self, now: float, exclude: Collection[Account] = ()) -> NoAccount:
        """Why nothing could be picked, judged on the accounts this request may still use."""
        others = [a for a in self.accounts.values() if a not in exclude] if exclude else list(self.accounts.values())
        usable = [a for a in others if a.base_state is State.ACTIVE and a.has_valid_token(now)]
        if any(a.cooldown_until <= now for a in usable):
            return NoAccount(Unavailable.BUSY)
        if usable:
            return NoAccount(Unavailable.COOLING, min(a.cooldown_until for a in usable) - now)
        if any(a.base_state is State.STARTING for a in others):
            return NoAccount(Unavailable.STARTING)
        if exclude and any(a.pickable(now) for a in exclude):
            return NoAccount(Unavailable.EXHAUSTED)
        return NoAccount(Unavailable.UNUSABLE if self.accounts else Unavailable.EMPTY)

    # -- transitions: the only writers of account state ----------------------------------------------

    def _changed(self) -> None:
        self.version += 1
        self._tell()

    def _tell(self) -> None:
        if self.listener is not None:
            self.listener()

    def exchange_started(self, account: Account) -> None:
        """A token exchange begins; without a usable token the account is starting until it ends."""
        if account.base_state is not State.STARTING and not account.has_valid_token(self.clock.now()):
            account.base_state = State.STARTING
            self._changed()

    def token_received(self, account: Account, token: CopilotToken) -> State:
        """A new Copilot token: the account serves with it. Returns the state it was in before."""
        was = account.base_state
        account.token = token
        account.token_generation += 1
        account.base_state = State.ACTIVE
        self._changed()
        return was

    def invalidate(self, account: Account) -> None:
        """Copilot refused the account's token (a 401): not picked until a new one arrives."""
        if account.base_state is State.ACTIVE:
            account.base_state = State.STARTING
            account.token = None
            self._changed()

    def exchange_failed(self, account: Account, reason: str) -> None:
        """A token exchange failed for now (network, 5xx): the account keeps any token it still holds."""
        account.failures += 1
        account.last_failure = reason

    def fail(self, account: Account, reason: str) -> None:
        """GitHub refused the credential: the account is unusable until its credential changes."""
        account.base_state = State.FAILED
        account.token = None
        account.failures += 1
        account.last_failure = reason
        self._changed()

    def disable(self, account: Account) -> bool:
        """Keep the account out of the pool; False when it already was."""
        if account.base_state is State.DISABLED:
            return False
        account.base_state = State.DISABLED
        self._changed()
        return True

    def enable(self, account: Account) -> State:
        """Put a disabled account back: active when it still holds a valid token, else starting."""
        if account.base_state is State.DISABLED:
            account.base_state = State.ACTIVE if account.has_valid_token(self.clock.now()) else State.STARTING
            self._changed()
        return account.base_state

    def cool(self, account: Account, seconds: float) -> float:
        """Cool the account for `seconds`; a cooldown is only ever extended, never shortened. Returns its end."""
        until = self.clock.now() + seconds
        if until > account.cooldown_until:
            account.cooldown_until = until
            self._changed()
        return account.cooldown_until

    def set_cooldown(self, account: Account, seconds: float) -> None:
        """The operator's word: cool for exactly `seconds` from now (0 ends a cooldown early)."""
        account.cooldown_until = self.clock.now() + seconds
        self._changed()

    def record(self, account: Account, verdict: Verdict) -> float | None:
        """What one upstream answer means for the account: served, or cooling (a 429, a 402). Returns the end
        of the cooldown it caused, if any."""
        if verdict.cooldown is not None:
            account.rate_limited += 1
            return self.cool(account, verdict.cooldown)
        if verdict.outcome is Outcome.OK:
            account.served += 1
        return None

    def quota_seen(self, account: Account, quota: Quota) -> None:
        account.quota = quota
        for ready in self._ready:
            ready.changed(account)

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
        self._changed()
        return changes


def _tiers(accounts: Iterable[Account]) -> list[list[Account]]:
    tiers: dict[int, list[Account]] = {}
    for account in accounts:
        tiers.setdefault(account.config.priority, []).append(account)
    return [tiers[p] for p in sorted(tiers)]


def _credential(config: AccountConfig) -> tuple[str, str]:
    return (config.github_token, config.account_type)
