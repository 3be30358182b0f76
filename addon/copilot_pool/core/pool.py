"""The pool: picking an account for each request, and every change of an account's state.

`Pool` is the only writer of `Account` fields (core/model.py). Each change is one named transition in the
"transitions" part below; a transition that may change which accounts can be picked bumps `version` (the
cached ready lists are rebuilt when it moved), and every change, a lease's end included, tells `listener`
(the wait queue), so a waiting request gets an account the moment one can take it. Leases taken and ended and
quotas seen also go to the ready lists, whose strategy index (weighted, quota) follows them without a rebuild.

What is worth keeping (core/kept.py) a transition also notes in `kept`, by account name (POOL for the pool's
own): the state store (runtime/state/) takes those names now and then and writes them in the background. What a
store brings back (a restart, another proxy) comes in through transitions of its own, which note nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from .backoff import backoff
from .catalogue import Catalogue
from .classify import Outcome, Verdict
from .clock import Clock
from .kept import CREDITS, MONTH, POOL, RATE_LIMITED, SERVED, Cooled, Counters, fingerprint, pacer_from, quota_from
from .kept import to_pool as _to_pool
from .limits import EASE_START, SHORTEST_PACED_REST, Cooldown, Pacer, Scope, StormWatch, eased
from .model import Account, AccountConfig, CopilotToken, Lease, State
from .quota import Quota
from .strategies import DEFAULT_STRATEGY, Ready, Strategy, make_strategy
from .usage import NANO_PER_CREDIT, month, next_month_start


class Unavailable(StrEnum):
    """Why no account could take a request."""

    BUSY = "busy"  # every ready account is at its max_concurrency
    COOLING = "cooling"  # every usable account is cooling: `recovers_in` says when the first is back
    STARTING = "starting"  # no account holds a usable token yet; exchanges are under way
    EXHAUSTED = "exhausted"  # only accounts this request already tried could serve it
    UNUSABLE = "unusable"  # every account failed or is disabled
    EMPTY = "empty"  # the pool has no accounts
    UNSERVED = "unserved"  # no account's catalogue has the model (on that endpoint)
    SESSION_LOST = "session lost"  # the session token's account cannot serve (cooling, failed, disabled, gone)
    POOL_LIMITED = "pool limited"  # distinct accounts were limited back to back: the limit is the pool's


WAITABLE = frozenset({Unavailable.BUSY, Unavailable.COOLING, Unavailable.STARTING, Unavailable.POOL_LIMITED})


@dataclass(frozen=True, slots=True)
class Want:
    """What one request needs of an account."""

    prefer: str | None = None  # the conversation's account (affinity): taken whenever it can serve
    only: str | None = None  # the account that minted the request's session token: this one or none
    model: str | None = None  # the model asked for ...
    endpoint: str | None = None  # ... on this endpoint: only accounts whose catalogue serves it

    @property
    def any_account(self) -> bool:
        """Any account that can serve will do (a preference is only a preference)."""
        return self.only is None and self.model is None and self.endpoint is None

    def allows(self, account: Account) -> bool:
        return (self.model is None and self.endpoint is None) or account.serves(self.model, self.endpoint)


ANY = Want()


class NoAccount(Exception):
    """No account can take the request now: the reason and, when known, seconds until one recovers."""

    def __init__(self, reason: Unavailable, recovers_in: float | None = None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.recovers_in = recovers_in

    @property
    def waitable(self) -> bool:
        return self.reason in WAITABLE


@dataclass(frozen=True, slots=True)
class Recorded:
    """What one answer did to its account, for the flow's comment and the log."""

    cooling_until: float | None = None  # the cooldown it caused (pool clock)
    scope: Scope = Scope.ACCOUNT
    pool_held_until: float | None = None  # it made a storm: the whole pool holds until then


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
        self.catalogues_version = 0  # bumped when any account's catalogue arrives or an account leaves
        self.storms = StormWatch()  # its `accounts` is the pool_storm_accounts option
        self.held: Cooldown | None = None  # a limit on the whole pool: nobody is picked before its end
        self.learned: dict[tuple[str, str | None], float] = {}  # (plan, model or None) -> a measured pace
        self.restricted = False  # some account is paced or cooling for one model: picks check each account
        self.kept: set[str] = set()  # accounts (POOL: the pool) whose kept state changed since the store looked
        self._tiers: list[list[Account]] = []  # accounts grouped by priority, best tier first; rebuilt by apply
        self._ready: list[Ready] = []  # each tier's pickable accounts, rebuilt when stale (see _ready_tiers)
        self._ready_version = -1  # the version they reflect
        self._ready_until = -math.inf  # when time alone changes them: a token expires, a cooldown ends

    def set_strategy(self, name: str) -> None:
        if name != self.strategy.name:
            self.strategy = make_strategy(name)
            self._ready_version = -1  # the ready lists carry the old strategy's index

    # -- picking ------------------------------------------------------------------------------------

    def acquire(self, want: Want = ANY, exclude: Collection[Account] = ()) -> Lease:
        """Pick an account for one request and count it in flight, or raise NoAccount.

        `want`: what the request needs (its session's account, its conversation's, its model). `exclude`:
        accounts this request may not try again. Otherwise the strategy picks within the first priority tier
        that has a ready and eligible account. Ready lists are cached, so a pick usually looks at a few
        accounts, not all of them.
        """
        now = self.clock.now()
        if self.held is not None and self.held.until > now:
            raise NoAccount(Unavailable.POOL_LIMITED, self.held.until - now)
        if want.only is not None:
            return self._session_lease(want.only, exclude, now, want.model)
        model = want.model
        if want.prefer is not None:
            account = self.accounts.get(want.prefer)
            if (
                account is not None
                and account not in exclude
                and account.pickable(now)
                and account.can_send(now, model)
                and want.allows(account)
            ):
                return self._lease(account, now, "affinity", model)
        for ready in self._ready_tiers(now):
            account = self.strategy.pick(ready, self._blocked(ready, exclude, now, want))
            if account is not None:
                top = self._tiers[0][0].config.priority
                tier_note = f", tier {account.config.priority}" if account.config.priority != top else ""
                count = len(ready.in_file_order)
                return self._lease(account, now, f"{self.strategy.name} among {count} ready{tier_note}", model)
        raise self._why_none(now, exclude, want)

    def _blocked(self, ready: Ready, exclude: Collection[Account], now: float, want: Want) -> Collection[Account]:
        """The tier's accounts this request may not take: those it tried, and, once limits or catalogues are in
        play, those that cannot send it now (its model cooling there or not served, a pace not yet due). The
        strategies' own indexes follow room under max_concurrency; this is what they cannot know."""
        if want.model is None and want.endpoint is None and not self.restricted:
            return exclude
        blocked = set(exclude)
        blocked.update(a for a in ready.in_file_order if not (a.can_send(now, want.model) and want.allows(a)))
        return blocked

    def _session_lease(self, name: str, exclude: Collection[Account], now: float, model: str | None) -> Lease:
        """The session token's account, or no account at all: a token works through no other."""
        account = self.accounts.get(name)
        if account is None or account in exclude or account.base_state in (State.FAILED, State.DISABLED):
            raise NoAccount(Unavailable.SESSION_LOST)
        if account.base_state is State.STARTING:
            raise NoAccount(Unavailable.STARTING)  # a new token is on its way
        if not account.pickable(now) or account.resting_until(model) > now:
            raise NoAccount(Unavailable.SESSION_LOST)  # cooling (for this model): the client mints elsewhere
        if not account.can_send(now, model):
            raise NoAccount(Unavailable.BUSY, max(0.0, account.paced_until(model) - now) or None)
        return self._lease(account, now, "session token", model)

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
                        resting = a.resting_until(None)
                        ends = resting if resting > now else a.token.expires_at
                        self._ready_until = min(self._ready_until, ends)
        return self._ready

    def _lease(self, account: Account, now: float, reason: str, model: str | None = None) -> Lease:
        lease = Lease(account, f"{reason}, {account.in_flight} in flight", self._release)
        account.last_used = now
        account.in_flight += 1
        for scope in {None, model}:
            if (pacer := account.pacers.get(scope)) is not None:
                pacer.started(now)
        for ready in self._ready:
            ready.used(account)
        return lease

    def _release(self, lease: Lease) -> None:
        lease.account.in_flight -= 1
        self._indexes_follow(lease.account)
        self._tell()

    def _why_none(self, now: float, exclude: Collection[Account], want: Want) -> NoAccount:
        """Why nothing could be picked, judged on the accounts this request may still use."""
        candidates = [a for a in self.accounts.values() if want.allows(a)]
        if self.accounts and not candidates:
            return NoAccount(Unavailable.UNSERVED)
        others = [a for a in candidates if a not in exclude] if exclude else candidates
        usable = [a for a in others if a.base_state is State.ACTIVE and a.has_valid_token(now)]
        model = want.model
        rested = [a for a in usable if a.resting_until(model) <= now]
        if rested:  # at max_concurrency, easing back in, or paced: the first pace ends when
            paced = [a.paced_until(model) - now for a in rested if a.has_room()]
            return NoAccount(Unavailable.BUSY, max(0.0, min(paced)) if paced else None)
        if usable:
            return NoAccount(Unavailable.COOLING, min(a.resting_until(model) for a in usable) - now)
        if any(a.base_state is State.STARTING for a in others):
            return NoAccount(Unavailable.STARTING)
        if exclude and any(a.base_state is State.ACTIVE for a in exclude):
            return NoAccount(Unavailable.EXHAUSTED)  # those it tried could serve (now or once cooled), no other
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
        if was is State.FAILED:
            self.kept.add(account.name)  # no longer failed
        self._changed()
        return was

    def invalidate(self, account: Account) -> bool:
        """Copilot refused the account's token (a 401): not picked until a new one arrives. False when it was not
        serving anyway (another 401 already took it out)."""
        if account.base_state is not State.ACTIVE:
            return False
        account.base_state = State.STARTING
        account.token = None
        self._changed()
        return True

    def exchange_failed(self, account: Account, reason: str) -> None:
        """A token exchange failed for now (network, 5xx): the account keeps any token it still holds."""
        account.failures += 1
        account.last_failure = reason
        self.kept.add(account.name)

    def exchange_paced(self, account: Account, reason: str) -> None:
        """The next exchange waits for a backoff step; `reason` says why (shown while the account is starting)."""
        account.last_failure = reason

    def fail(self, account: Account, reason: str) -> None:
        """GitHub refused the credential: the account is unusable until its credential changes."""
        account.base_state = State.FAILED
        account.token = None
        account.failures += 1
        account.last_failure = reason
        self.kept.add(account.name)
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

    def cool(self, account: Account, seconds: float, reason: str = "rate limited", model: str | None = None) -> float:
        """Cool the account, or only `model` on it, for `seconds`. A cooldown is only ever extended, never
        shortened (each scope its own). Returns its end. Out of an account cooldown it eases back in."""
        self.kept.add(account.name)
        return self._extend(account, self.clock.now() + seconds, reason, model)

    def _extend(self, account: Account, until: float, reason: str, model: str | None) -> float:
        now = self.clock.now()
        if model is not None:
            cooldowns = account.model_cooldowns
            for expired in [m for m, c in cooldowns.items() if c.until <= now]:
                del cooldowns[expired]
            if model not in cooldowns or until > cooldowns[model].until:
                cooldowns[model] = Cooldown(until, reason)
                self.restricted = True
                self._tell()  # ready lists hold no model cooldowns: no version bump
            return cooldowns[model].until
        if until > account.cooldown_until:
            account.cooldown_until, account.cooldown_reason = until, reason
            account.ease = EASE_START
            self._changed()
        return account.cooldown_until

    def set_cooldown(self, account: Account, seconds: float) -> None:
        """The operator's word: cool for exactly `seconds` from now (0 ends a cooldown early)."""
        account.cooldown_until = self.clock.now() + seconds
        account.cooldown_reason = "operator" if seconds else None
        self.kept.add(account.name)
        self._changed()

    def record(self, account: Account, verdict: Verdict, model: str | None = None) -> Recorded:
        """What one upstream answer means for the account: served, or cooling (a 429, a 402) for the scope the
        limit names, with its pace slowed; several accounts limited back to back hold the whole pool."""
        now = self.clock.now()
        account.connection_failures = 0  # it answered
        self.kept.add(account.name)
        if verdict.cooldown is not None:
            account.rate_limited += 1
            scoped = model if verdict.scope is Scope.MODEL else None
            until = self.cool(account, verdict.cooldown, verdict.reason or str(verdict.outcome), scoped)
            if verdict.outcome is Outcome.RATE_LIMITED and until - now >= SHORTEST_PACED_REST:
                self._pace(account, scoped, now, until - now)
            held = None
            if verdict.pool_wide and (end := self.storms.limited(account.name, now, until)) is not None:
                held = self.hold(end, f"{verdict.reason} on {self.storms.accounts} accounts at once")
            return Recorded(until, Scope.MODEL if scoped else Scope.ACCOUNT, held)
        if verdict.outcome is Outcome.OK:
            account.served += 1
            for scope in {None, model}:
                if (pacer := account.pacers.get(scope)) is not None:
                    pacer.succeeded()
            if account.ease is not None:
                account.ease = eased(account.ease)
                self._indexes_follow(account)  # more room
        return Recorded()

    def _pace(self, account: Account, scope: str | None, now: float, rests: float) -> None:
        """A limit met: slow the scope's pacer, from what it measured or what a plan-mate measured; share what it
        measured with the accounts of its plan that have not met the limit yet."""
        pacer = account.pacers.setdefault(scope, Pacer())
        self.restricted = True
        key = (_plan(account), scope)
        first = not pacer.measured
        pacer.limited(now, rests)
        if first and pacer.measured and key not in self.learned and pacer.rate is not None:
            # the plan's first measurement: its mates start from it instead of each meeting the limit twice
            self.learned[key] = pacer.rate
            self.kept.add(POOL)
            for mate in self.accounts.values():
                mates = mate.pacers.setdefault(scope, Pacer()) if _plan(mate) == key[0] else None
                if mates is not None and not mates.measured:
                    mates.adopt(pacer.rate)
        elif not pacer.measured and key in self.learned:
            pacer.adopt(self.learned[key])

    def hold(self, until: float, reason: str) -> float:
        """A limit on the whole pool (the integration's, the address's): no account is picked before `until`,
        and every account eases back in after it. Extended, never shortened. Returns its end."""
        self.kept.add(POOL)
        return self._hold(until, reason)

    def _hold(self, until: float, reason: str) -> float:
        now = self.clock.now()
        if self.held is None or self.held.until <= now or until > self.held.until:
            self.held = Cooldown(until, reason)
            for account in self.accounts.values():
                account.ease = EASE_START
            self._changed()
        return self.held.until

    def credits_spent(self, account: Account, model: str | None, nano: int) -> None:
        """An answer's cost in nano-AIU. Past its monthly budget, the account rests until the month resets."""
        account.credits[model or "?"] = account.credits.get(model or "?", 0) + nano
        self._this_month(account)
        account.month_nano += nano
        self.kept.add(account.name)
        self._check_budget(account)
        self._indexes_follow(account)

    def _this_month(self, account: Account) -> str:
        """The billing month now; `month_nano` starts again at 0 when it is a new one."""
        this = month(self.clock.wall())
        if account.month != this:
            account.month, account.month_nano = this, 0
        return this

    def _check_budget(self, account: Account) -> None:
        budget = account.config.credit_budget
        spent = budget is not None and account.month_nano >= budget * NANO_PER_CREDIT
        wall, now = self.clock.wall(), self.clock.now()
        if spent and account.budget_until <= now:
            quota = account.quota
            reset = quota.resets_at if quota and quota.resets_at and quota.resets_at > wall else None
            account.budget_until = now + ((reset or next_month_start(wall)) - wall)
            self._changed()
        elif not spent and account.budget_until > now:  # a raised budget, or a new month
            account.budget_until = 0.0
            self._changed()

    def connection_failed(self, account: Account) -> float:
        """A connection to the account's endpoint failed before an answer (refused, reset, garbage): cool it with
        exponential backoff while that keeps happening. Returns the cooldown's end."""
        account.connection_failures += 1
        return self.cool(account, backoff(account.connection_failures))

    def quota_seen(self, account: Account, quota: Quota) -> None:
        account.quota = quota
        self.kept.add(account.name)
        self._indexes_follow(account)

    def _indexes_follow(self, account: Account) -> None:
        """Something a strategy's index orders by changed (quota, credits spent, requests in flight, room)."""
        for ready in self._ready:
            ready.changed(account)

    def usage_limits_seen(self, account: Account, limits: dict[str, Quota]) -> None:
        account.usage_limits.update(limits)
        self.kept.add(account.name)

    def model_refused(self, account: Account, model: str | None) -> None:
        """The account said it does not serve `model` (after all): take it off its catalogue now, until the
        catalogue fetched again says otherwise."""
        catalogue = account.catalogue
        if model is not None and catalogue is not None and model in catalogue.entries:
            entries = {m: e for m, e in catalogue.entries.items() if m != model}
            self.catalogue_received(account, Catalogue(entries, catalogue.fetched_at))

    def catalogue_received(self, account: Account, catalogue: Catalogue) -> None:
        """The account's own /models answer: from now on it gets only the models it serves."""
        account.catalogue = catalogue
        self.catalogues_version += 1
        self._tell()  # a request waiting for a model may now find its account

    # -- transitions from the state store: kept before a restart, or seen by another proxy -----------------

    def take_kept(self) -> set[str]:
        """The accounts (POOL: the pool) whose kept state changed since the last call: the store writes them."""
        kept, self.kept = self.kept, set()
        return kept

    def cooldown_shared(self, cooled: Cooled) -> None:
        """A cooldown kept before a restart or set by another proxy: extended, never shortened, as `cool` does,
        but the operator's exact word stands as given (it may end a cooldown early everywhere)."""
        until = _to_pool(self.clock, cooled.until)
        if cooled.owner == POOL:
            self._hold(until, cooled.reason)
            return
        account = self.accounts.get(cooled.owner)
        if account is None:
            return
        if cooled.exact and cooled.model is None:
            account.cooldown_until = until
            account.cooldown_reason = cooled.reason if until > self.clock.now() else None
            self._changed()
        elif until > self.clock.now():
            self._extend(account, until, cooled.reason, cooled.model)

    def restore(self, account: Account, facts: dict) -> None:
        """What was known of the account before a restart: its failure (only when it was learnt with the
        credential the account has now, and the account holds no token since), quota, usage limits and paces."""
        failed = facts.get("failed")
        same_credential = facts.get("credential") == fingerprint(account.config)
        if isinstance(failed, str) and same_credential and account.base_state is State.STARTING:
            account.base_state = State.FAILED
            account.last_failure = failed
            self._changed()
        if same_credential and isinstance(facts.get("failures"), int):
            account.failures = max(account.failures, facts["failures"])
            account.last_failure = account.last_failure or _str(facts.get("last_failure"))
        quota = quota_from(facts.get("quota"), self.clock)
        if quota is not None and (account.quota is None or account.quota.observed_at < quota.observed_at):
            account.quota = quota
        limits = facts.get("usage_limits")
        for kind, record in limits.items() if isinstance(limits, dict) else ():
            limit = quota_from(record, self.clock)
            seen = account.usage_limits.get(kind)
            if limit is not None and (seen is None or seen.observed_at < limit.observed_at):
                account.usage_limits[kind] = limit
        pacers = facts.get("pacers")
        for scope, record in pacers.items() if isinstance(pacers, dict) else ():
            pacer = pacer_from(record, self.clock)
            if pacer is not None and account.pacers.get(scope or None, Pacer()).rate is None:
                account.pacers[scope or None] = pacer
                self.restricted = True  # picks check each account's pace
        self._indexes_follow(account)  # its quota may have changed

    def learned_restored(self, learned: dict[tuple[str, str | None], float]) -> None:
        """Plans' paces measured before a restart; this run's own measurements win."""
        for key, rate in learned.items():
            self.learned.setdefault(key, rate)

    def usage_merged(self, account: Account, delta: Counters) -> None:
        """Requests, 429s and credits counted elsewhere (another proxy, or this one before a restart): they add up."""
        account.served += delta.get(SERVED, 0)
        account.rate_limited += delta.get(RATE_LIMITED, 0)
        for key, nano in delta.items():
            if key.startswith(CREDITS):
                model = key[len(CREDITS) :]
                account.credits[model] = account.credits.get(model, 0) + nano
        this = self._this_month(account)
        account.month_nano += delta.get(MONTH + this, 0)
        self._check_budget(account)
        self._indexes_follow(account)  # its credits left changed

    def others_in_flight(self, counts: dict[str, int]) -> None:
        """Requests other proxies sharing the state have in flight on each account (least-busy counts them)."""
        for name, account in self.accounts.items():
            elsewhere = counts.get(name, 0)
            if account.elsewhere != elsewhere:
                account.elsewhere = elsewhere
                self._indexes_follow(account)

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
                if old.credit_budget != config.credit_budget:
                    self._check_budget(account)
            updated[name] = account
        self.accounts = updated  # keeps the file's order, which round-robin follows
        self._tiers = _tiers(updated.values())
        self.catalogues_version += 1
        self._changed()
        return changes


def _tiers(accounts: Iterable[Account]) -> list[list[Account]]:
    tiers: dict[int, list[Account]] = {}
    for account in accounts:
        tiers.setdefault(account.config.priority, []).append(account)
    return [tiers[p] for p in sorted(tiers)]


def _plan(account: Account) -> str:
    """What GitHub sets limits by: the token's sku, else the account type."""
    return account.token.sku if account.token is not None and account.token.sku else account.config.account_type


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _credential(config: AccountConfig) -> tuple[str, str]:
    return (config.github_token, config.account_type)
