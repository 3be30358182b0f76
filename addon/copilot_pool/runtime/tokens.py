"""The token keeper: every account's Copilot token, exchanged and kept fresh inside the running event loop.

All credential changes (the refresh loop, a new token in the accounts file, `pool.refresh`, a 401 on a
pooled request) go through `TokenKeeper.refresh`, serialized per account. What it learns it hands to the
pool's transitions (token received, exchange failed, failed).

Exchanges are paced per account, whatever triggers them, so no answer and no trigger can make the pool hammer
GitHub's token endpoint. Each exchange that follows a failed one, or replaces a token younger than SHORT_LIFETIME
(a 401 on a fresh token, `pool.refresh` or a file change in a loop, a token that lives only seconds), is one more
backoff step: it waits until 1, 2, 4 ... 60 s (with jitter) after the last. A 429's Retry-After is honoured; the
steps start again from zero once a normal token has served. A scheduled refresh of a normal token (after ~25
minutes) takes no step. At most MAX_CONCURRENT_EXCHANGES run at once across the pool, so thousands of accounts
start without a flood.

With pool_share_tokens (Redis only), the proxies sharing the store share Copilot tokens too: before exchanging,
the keeper takes a fresh token another proxy exchanged with the same credential; else it claims the exchange, so
that one proxy exchanges while the others wait for its token (a claim not answered within CLAIM_SECONDS, or a
store that cannot be reached, and each proxy exchanges its own, as without sharing).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from .. import LOGGER_NAME
from ..core.backoff import backoff
from ..core.endpoints import EndpointPolicy
from ..core.exchange import Exchange, Exchanged, ExchangeError, token_lifetime
from ..core.kept import fingerprint
from ..core.model import Account, AccountConfig, CopilotToken, State
from ..core.pool import Pool
from . import tasks
from .clock import Clock
from .state.store import SharedToken, StoreDown, TokenShare

log = logging.getLogger(LOGGER_NAME)

MIN_EXCHANGE_GAP = 1.0  # seconds between two exchanges of one account, at the least
SHORT_LIFETIME = 60.0  # replacing a token younger than this is a backoff step (a normal one lives 30 min)
MAX_CONCURRENT_EXCHANGES = 16
SHARE_TIMEOUT = 1.0  # seconds a shared-token read or write may take; then this proxy does without it
CLAIM_SECONDS = 10.0  # how long the others wait for the proxy that claimed an account's exchange
CLAIM_POLL = 0.2  # seconds between looks for the token the claiming proxy shares
_UNREACHABLE = object()


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()[:16]


@dataclass
class _Pace:
    """What the keeper remembers of one account's exchanges, to space the next one."""

    streak: int = 0  # backoff steps taken since a normal token last served
    not_before: float = -math.inf  # the next exchange may start then
    received_at: float = -math.inf  # when the last token arrived
    served_then: int = 0  # the account's 2xx count then: a higher count later means the token worked
    short: bool = False  # the last token lived less than SHORT_LIFETIME
    token: bytes = b""  # a digest of the last token received: a shared copy of it is never taken again


class TokenKeeper:
    """One refresh loop per account inside the running event loop, and the one serialized refresh path."""

    def __init__(
        self, pool: Pool, exchange: Exchange, clock: Clock, endpoints: Callable[[], EndpointPolicy] = EndpointPolicy
    ) -> None:
        self.pool = pool
        self.exchange = exchange
        self.clock = clock
        self.endpoints = endpoints  # the trust policy an exchange's endpoints are judged by
        self.loops: dict[str, asyncio.Task] = {}
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # name -> (lock, [waiters])
        self.on_token: Callable[[Account], None] | None = None  # told of every new token (catalogue fetch)
        self._pace: dict[str, _Pace] = {}  # kept across removal and re-adding: a flapping file is no trigger
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_EXCHANGES)
        self.share: TokenShare | None = None  # pool_share_tokens: the store the proxies share tokens through

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
        while True:
            token, now = account.token, self.clock.now()
            if account.base_state is State.ACTIVE and token is not None and token.refresh_at > now:
                await self.clock.sleep(token.refresh_at - now)  # another trigger may refresh meanwhile
                continue
            # A failed exchange is retried by going round again: the pacing inside spaces the attempts.
            if not await self.refresh(account, reason="refresh" if account.token else "first exchange") and (
                account.base_state in (State.FAILED, State.DISABLED)
                or self.pool.accounts.get(account.name) is not account
            ):
                return  # GitHub refused the credential: wait for a new one (a file change restarts us)

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

    def _pace_of(self, name: str) -> _Pace:
        pace = self._pace.get(name)
        if pace is None:
            pace = self._pace[name] = _Pace()
        return pace

    def _current(self, account: Account) -> bool:
        return account.base_state is not State.DISABLED and self.pool.accounts.get(account.name) is account

    async def _exchange_once(self, account: Account, reason: str) -> bool:
        if not self._current(account):
            return False
        wait = self._pace_next(account, reason)
        self.pool.exchange_started(account)
        if wait > 0:
            await self.clock.sleep(wait)
            if not self._current(account):
                return False
        config = account.config
        try:
            exchanged, lifetime, refresh_after, shared = await self._obtain(account, config)
        except ExchangeError as e:
            self._paced_after_failure(account, self._pace_of(account.name), e)
            return self._exchange_failed(account, config, e)
        pace = self._pace_of(account.name)
        now = self.clock.now()
        pace.received_at, pace.served_then, pace.short = now, account.served, lifetime < SHORT_LIFETIME
        pace.token = _digest(exchanged.token)
        pace.not_before = now + MIN_EXCHANGE_GAP
        if account.config is not config or account.base_state is State.DISABLED:
            return False  # the credential changed or the account was disabled while we asked: discard
        token = self._on_pool_clock(account, exchanged, lifetime, refresh_after)
        was = self.pool.token_received(account, token)
        if self.on_token is not None:
            self.on_token(account)
        if was is not State.ACTIVE:
            log.info(
                f"pool: account {account.name} active "
                f"(sku {exchanged.sku or '?'}, token valid {lifetime / 60:.0f} min, {reason}"
                f"{', exchanged by another proxy' if shared else ''})"
            )
        return True

    async def _obtain(self, account: Account, config: AccountConfig) -> tuple[Exchanged, float, float, bool]:
        """The account's next token, its lifetime and refresh time from now, and whether another proxy exchanged
        it (pool_share_tokens); else exchanged here, and shared."""
        share = self.share
        credential = fingerprint(config) if share is not None else ""
        held = self._pace_of(account.name).token
        if share is not None and (found := await self._shared(share, account.name, credential, held)) is not None:
            token = Exchanged(found.token, 0.0, 0.0, found.api_endpoint, found.proxy_endpoint, found.sku)
            return token, found.lifetime, found.lifetime - found.refresh_lead, True
        async with self._slots:
            exchanged = await self.exchange(config)
        lifetime, refresh_after = token_lifetime(exchanged, self.clock.wall())
        if share is not None:
            lead = lifetime - refresh_after
            shared = SharedToken(
                exchanged.token, lifetime, lead, exchanged.api_endpoint, exchanged.proxy_endpoint, exchanged.sku
            )
            await self._quietly(share.share_token(account.name, credential, shared))
        return exchanged, lifetime, refresh_after, False

    async def _shared(self, share: TokenShare, name: str, credential: str, held: bytes) -> SharedToken | None:
        """A token another proxy exchanged: one that is there now, or the one the proxy that claimed the exchange
        shares within CLAIM_SECONDS. Never the token this proxy got last (it is being replaced), nor one due for
        refresh within SHORT_LIFETIME. None: this proxy exchanges (and shares) the token itself."""
        give_up, claimed = self.clock.now() + CLAIM_SECONDS, False
        while True:
            found = await self._quietly(share.shared_token(name, credential))
            if found is _UNREACHABLE:
                return None
            fresh = found is not None and found.lifetime - found.refresh_lead >= SHORT_LIFETIME
            if fresh and _digest(found.token) != held:
                return found
            if not claimed:
                mine = await self._quietly(share.claim_exchange(name, CLAIM_SECONDS))
                if mine is _UNREACHABLE or mine:
                    return None
                claimed = True  # another proxy is exchanging it: wait for its token
            if self.clock.now() >= give_up:
                return None
            await self.clock.sleep(CLAIM_POLL)

    async def _quietly(self, call):
        """The shared-token call's answer, or _UNREACHABLE: sharing tokens never stops an exchange."""
        try:
            return await asyncio.wait_for(call, SHARE_TIMEOUT)
        except (StoreDown, TimeoutError, OSError):
            return _UNREACHABLE

    def _pace_next(self, account: Account, reason: str) -> float:
        """Seconds the exchange about to run must wait (see the module's docstring), with the step it takes."""
        pace, now = self._pace_of(account.name), self.clock.now()
        if account.served > pace.served_then and not pace.short:
            pace.streak = 0  # a normal token served: whatever went wrong before is over
        age = now - pace.received_at
        if age < SHORT_LIFETIME:
            pace.streak += 1
            pace.not_before = max(pace.not_before, pace.received_at + backoff(pace.streak))
            wait = pace.not_before - now
            if wait > 0:
                why = f"its token is only {age:.1f}s old; next exchange in {wait:.0f}s ({reason})"
                self.pool.exchange_paced(account, why)
                log.warning(f"pool: account {account.name}: {why}")
        return pace.not_before - now

    def _paced_after_failure(self, account: Account, pace: _Pace, error: ExchangeError) -> None:
        pace.streak += 1
        pace.received_at = -math.inf  # this step is the failure's: the next exchange replaces no new token
        now = self.clock.now()
        gap = backoff(pace.streak)
        if account.token is not None and account.has_valid_token(now):
            # retry well before the working token runs out: a failed refresh never drops it early
            gap = min(gap, max(MIN_EXCHANGE_GAP, (account.token.expires_at - now) / 3))
        if error.retry_after is not None:
            gap = max(gap, error.retry_after)  # GitHub said how long: its word beats keeping the token
        pace.not_before = now + max(gap, MIN_EXCHANGE_GAP)

    def _exchange_failed(self, account: Account, config: AccountConfig, error: ExchangeError) -> bool:
        if account.config is not config:
            return False
        if error.permanent:
            self.pool.fail(account, error.reason)
            log.error(f"pool: account {account.name} failed: {error.reason}")
        else:
            self.pool.exchange_failed(account, error.reason)
            wait = self._pace_of(account.name).not_before - self.clock.now()
            log.warning(f"pool: account {account.name}: {error.reason}; retrying in {max(wait, 0):.0f}s")
        return False

    def _on_pool_clock(
        self, account: Account, exchanged: Exchanged, lifetime: float, refresh_after: float
    ) -> CopilotToken:
        """The token on the pool clock, with the endpoints the trust policy allows (core/endpoints.py)."""
        chosen = self.endpoints().choose(exchanged.api_endpoint, exchanged.proxy_endpoint, account.config.account_type)
        refused = exchanged.refused + chosen.refused
        if refused:
            log.warning(
                f"pool: account {account.name}: refused {', '.join(refused)} from its token exchange (pool "
                f"credentials go only to https Copilot hosts and pool_extra_endpoints); using {chosen.api}"
            )
        now = self.clock.now()
        return CopilotToken(
            exchanged.token,
            expires_at=now + lifetime,
            refresh_at=now + refresh_after,
            api_endpoint=chosen.api,
            proxy_endpoint=chosen.proxy,
            sku=exchanged.sku,
        )
