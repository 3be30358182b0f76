"""The account model: an account's configuration, what the pool knows of it now, the Copilot token it holds,
and one request's claim on it.

Like h11's connection state, an `Account`'s fields are read by anyone and written by one class only: `Pool`
(core/pool.py), through its named transitions. Don't set them directly; a pick would not see the change.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from enum import StrEnum

from .catalogue import Catalogue
from .limits import Cooldown, Pacer
from .quota import Quota


@dataclass(frozen=True)
class AccountConfig:
    """One account as the accounts file gives it, with its GitHub token already resolved."""

    name: str
    github_token: str = field(repr=False)
    account_type: str = "individual"
    enabled: bool = True
    max_concurrency: int | None = None  # requests in flight at once on this account; None: no limit
    weight: int = 1  # share of the traffic relative to the other accounts (least-busy, weighted)
    priority: int = 0  # tier: 0 is tried first; a higher number only when every lower-numbered tier is unavailable
    credit_budget: float | None = None  # AI credits it may spend per billing month; None: no budget
    token_file: str | None = field(default=None, compare=False)  # watched for changes; not part of the identity


def signature(configs: Iterable[AccountConfig]) -> str:
    """A digest of the account set as the pool sees it: independent of order, formatting and where a token
    came from; changed by every field that matters (those that take part in equality)."""
    canonical = []
    for config in sorted(configs, key=lambda c: c.name):
        entry = {f.name: getattr(config, f.name) for f in fields(config) if f.compare}
        entry["github_token"] = hashlib.sha256(config.github_token.encode()).hexdigest()
        canonical.append(entry)
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


class State(StrEnum):
    STARTING = "starting"  # no usable token yet, or a token exchange is under way
    ACTIVE = "active"
    COOLING = "cooling"  # derived: active, but inside a cooldown
    FAILED = "failed"  # the token exchange was refused: needs a new credential
    DISABLED = "disabled"  # `enabled: false` in the accounts file, or pool.disable


@dataclass(frozen=True)
class CopilotToken:
    """What one token exchange yields; `expires_at` is on the pool clock (monotonic), not the server's."""

    value: str = field(repr=False)
    expires_at: float
    refresh_at: float
    api_endpoint: str
    proxy_endpoint: str
    sku: str


@dataclass(eq=False, slots=True)
class Account:
    """One account's runtime state. Written only by `Pool`."""

    config: AccountConfig
    base_state: State = State.STARTING
    token: CopilotToken | None = None
    token_generation: int = 0  # bumped on every new token; lets waiting refreshes see they were served
    in_flight: int = 0
    elsewhere: int = 0  # in flight on it through other proxies sharing the state (Redis); least-busy adds them
    last_used: float = -math.inf
    cooldown_until: float = 0.0  # the whole account rests until then ...
    cooldown_reason: str | None = None  # ... because of this
    model_cooldowns: dict[str, Cooldown] = field(default_factory=dict)  # model -> it rests for that model only
    pacers: dict[str | None, Pacer] = field(default_factory=dict)  # None: the account; a model: that model
    ease: int | None = None  # requests it may have in flight while easing back in after a cooldown
    failures: int = 0
    last_failure: str | None = None
    served: int = 0
    rate_limited: int = 0
    connection_failures: int = 0  # in a row: connections to its endpoint that failed before an answer
    quota: Quota | None = None  # last premium quota seen (response headers or /copilot_internal/user)
    usage_limits: dict[str, Quota] = field(default_factory=dict)  # "session" / "weekly", from answers' headers
    credits: dict[str, int] = field(default_factory=dict)  # model -> nano-AIU its answers reported, since start
    month: str = ""  # the billing month `month_nano` counts (UTC, "2026-12")
    month_nano: int = 0
    budget_until: float = 0.0  # its credit budget is spent: not picked before then (pool clock)
    catalogue: Catalogue | None = None  # the models it serves (its /models answer); None: not known yet

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
        return (
            self.base_state is State.ACTIVE
            and self.cooldown_until <= now
            and self.budget_until <= now
            and self.has_valid_token(now)
        )

    def resting_until(self, model: str | None) -> float:
        """When its cooldowns for this request end: the account's, its budget's, the model's (pool clock)."""
        until = max(self.cooldown_until, self.budget_until)
        if model is not None and (cooldown := self.model_cooldowns.get(model)) is not None:
            until = max(until, cooldown.until)
        return until

    def paced_until(self, model: str | None) -> float:
        """When its pacers let it send the next request for `model`."""
        until = 0.0
        for scope in {None, model}:
            pacer = self.pacers.get(scope)
            if pacer is not None and pacer.rate is not None:
                until = max(until, pacer.next_at)
        return until

    def can_send(self, now: float, model: str | None) -> bool:
        """Room under max_concurrency and its easing, its model not cooling, its pacers ready."""
        return self.has_room() and self.resting_until(model) <= now and self.paced_until(model) <= now

    def serves(self, model: str | None, endpoint: str | None) -> bool:
        """Whether its catalogue lists the model on the endpoint; an unknown catalogue serves anything."""
        return self.catalogue is None or self.catalogue.serves(model, endpoint)

    @property
    def busy(self) -> int:
        """Requests in flight on it through this proxy and the others that share the state."""
        return self.in_flight + self.elsewhere

    def has_room(self) -> bool:
        limit = self.config.max_concurrency
        if self.ease is not None:
            limit = self.ease if limit is None else min(limit, self.ease)
        return limit is None or self.in_flight < limit


class Lease:
    """One request's claim on an account; `release` counts it out exactly once, however often it is called."""

    __slots__ = ("account", "reason", "_release")

    def __init__(self, account: Account, reason: str, release: Callable[[Lease], None]) -> None:
        self.account = account
        self.reason = reason
        self._release: Callable[[Lease], None] | None = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release(self)
