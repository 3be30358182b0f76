"""The service: the pool and what keeps it current, wired together on one clock.

It applies the account set from its source (and again whenever the source's files change), runs each account's
token loop, the wait queue, the quota poll and the state keeper (what the pool learnt, kept in its store and
shared with other proxies), and carries out the operator's overrides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

from .. import LOGGER_NAME
from ..core.affinity import Affinity
from ..core.endpoints import EndpointPolicy
from ..core.exchange import Exchange, FetchModels, FetchUser
from ..core.model import Account, AccountConfig, State, signature
from ..core.pool import Pool, PoolChanges
from ..core.sessions import Sessions
from ..core.usage import Ledger
from . import quota_poll, tasks
from .accounts_file import AccountsFileError, AccountSource
from .catalogues import CatalogueKeeper
from .clock import Clock
from .state import open_store, proxy_id
from .state.keeper import StateKeeper
from .state.store import StoreError
from .tokens import TokenKeeper
from .waiting import WaitQueue
from .watch import FileWatcher

log = logging.getLogger(LOGGER_NAME)

DEFAULT_AFFINITY_TTL = 3600
DEFAULT_QUOTA_POLL = 300
DEFAULT_MODELS_REFRESH = 600


class UnknownAccount(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no account named {self.name!r} in the pool"


class PoolService:
    def __init__(self, exchange: Exchange, fetch_user: FetchUser, fetch_models: FetchModels, clock: Clock) -> None:
        self.clock = clock
        self.pool = Pool(clock)
        self.endpoints = EndpointPolicy()  # where pool credentials may go; set from the options by `trust`
        self.keeper = TokenKeeper(self.pool, exchange, clock, lambda: self.endpoints)
        self.waits = WaitQueue(self.pool, clock)
        self.pool.listener = self.waits.serve
        self.affinity = Affinity(clock, DEFAULT_AFFINITY_TTL)
        self.sessions = Sessions(clock)
        self.ledger = Ledger()  # per proxy user: requests, credits, 429s
        self.catalogues = CatalogueKeeper(self.pool, fetch_models, clock, self.spawn, lambda: self.endpoints)
        self.keeper.on_token = self.catalogues.refresh
        self.fetch_user = fetch_user
        self.quota_poll_interval: float = DEFAULT_QUOTA_POLL
        self.models_refresh_interval: float = DEFAULT_MODELS_REFRESH
        self.source: AccountSource | None = None
        self.state: StateKeeper = self._keeper(open_store("memory"))
        self.running = False
        self.signature: str | None = None  # of the account set applied last
        self._watcher: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()

    # -- life cycle ---------------------------------------------------------------------------------

    def use_store(self, store) -> None:
        """Keep the state in `store` (before start: it is opened then)."""
        self.state = self._keeper(store)

    def _keeper(self, store) -> StateKeeper:
        return StateKeeper(
            store, self.pool, self.affinity, self.sessions, self.ledger, self.clock, self.spawn, proxy_id()
        )

    def share_tokens(self, on: bool) -> None:
        """pool_share_tokens: exchange Copilot tokens once for every proxy sharing the store (Redis only)."""
        store = self.state.store
        self.keeper.share = store if on and store.shared else None
        self.state.tokens_shared = self.keeper.share is not None

    async def open_state(self) -> bool:
        """Restore what the state store holds, before the token exchanges start; False (logged as an error,
        which stops mitmproxy's start-up) when the store cannot be used at all."""
        store = self.state.store
        try:
            await self.state.open()
        except StoreError as e:
            log.error(f"pool: {e}")
            return False
        if (replaced := getattr(store, "replaced", None)) is not None:
            log.warning(f"pool: state file {store.where} was broken; moved it to {replaced} and started a new one")
        where = f"{store.backend} {store.where}" + ("" if self.state.connected else " (not reachable yet)")
        log.info(f"pool: state in {where}: {self.state.restored}")
        for account in self.pool.accounts.values():
            if account.base_state is State.FAILED:
                log.warning(
                    f"pool: account {account.name} failed before the restart: {account.last_failure}; "
                    f"pool.refresh {account.name} (or a new credential) tries again"
                )
        return True

    def start(self) -> None:
        """Start every enabled account's refresh loop (all exchanges run in parallel), the file watch, the
        quota poll and the state keeper. Needs a running loop."""
        self.running = True
        for account in self.pool.accounts.values():
            if account.base_state not in (State.DISABLED, State.FAILED):  # failed: kept from before a restart
                self.keeper.start(account)
        self.state.start()
        self._watch()
        self.spawn(quota_poll.poll_forever(self.pool, self.fetch_user, self.clock, lambda: self.quota_poll_interval))
        self.spawn(self.catalogues.run(lambda: self.models_refresh_interval))

    def stop(self) -> None:
        self.running = False
        self.keeper.stop_all()
        self.waits.close()
        if self._watcher is not None:
            self._watcher.cancel()
        for task in list(self._background):
            task.cancel()

    def spawn(self, coro: Coroutine) -> asyncio.Task:
        """Run background work that logs its own crash and is cancelled at stop."""
        task = tasks.start(coro, f"copilot-pool {coro.__qualname__}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- the account set ----------------------------------------------------------------------------

    def use(self, source: AccountSource) -> PoolChanges:
        """Load the account set from `source` and apply it; raise AccountsFileError (changing nothing) when it
        cannot be read. From now on, changes to the source's files apply by themselves."""
        configs = source.load()
        self.source = source
        changes = self.apply(configs)
        if self.running:
            self._watch()
        return changes

    def apply(self, configs: list[AccountConfig]) -> PoolChanges:
        """Make the pool match `configs` in place. The same account set as last time does nothing at all."""
        new_signature = signature(configs)
        if new_signature == self.signature:
            return PoolChanges()
        self.signature = new_signature
        changes = self.pool.apply(configs)
        for account in changes.added:
            self.state.adopt(account)
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

    def _watch(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        if self.source is not None:
            source = self.source
            files = lambda: source.files([a.config for a in self.pool.accounts.values()])  # noqa: E731
            self._watcher = FileWatcher(files, self._files_changed, self.clock).start()

    def _files_changed(self) -> None:
        """Best effort: a missing, half-written or invalid file leaves the running pool exactly as it was."""
        assert self.source is not None
        try:
            configs = self.source.load()
        except AccountsFileError as e:
            log.error(f"pool: accounts file change ignored, the pool keeps its accounts: {e}")
            return
        self.apply(configs)

    # -- tokens -------------------------------------------------------------------------------------

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

    def token_refused(self, account: Account, generation: int, reason: str) -> None:
        """Copilot refused the token of `generation` (401, or 421: sent to an endpoint that is no longer the
        account's): take it out at once, so a failover does not pick it again, and exchange a new one (with its
        endpoints, then its catalogue), unless a newer token already replaced it or another refusal did all this.
        (A token refused within a minute of its exchange is replaced only after a backoff step: tokens.py.)"""
        if account.token_generation == generation and self.pool.invalidate(account):
            self.spawn(self.refresh(account.name, reason=reason))

    def trust(self, policy: EndpointPolicy) -> None:
        """Use a new endpoint trust policy (the options changed). A token whose endpoints it no longer trusts is
        taken out and exchanged again (its endpoints are then judged anew)."""
        if policy == self.endpoints:
            return
        self.endpoints = policy
        for account in list(self.pool.accounts.values()):
            token = account.token
            if token is None or (policy.accept(token.api_endpoint) and policy.accept(token.proxy_endpoint)):
                continue
            log.warning(f"pool: account {account.name}: its endpoint is no longer trusted; exchanging its token")
            self.pool.invalidate(account)
            if self.running:
                self.spawn(self.refresh(account.name, reason="endpoint policy changed"))

    # -- operator overrides (pool.disable / pool.enable / pool.cooldown), until the account's entry changes --

    def disable(self, name: str) -> Account:
        """Keep the account out of the pool; its requests in flight finish, its refresh loop stops."""
        account = self.account(name)
        if self.pool.disable(account):
            self.keeper.stop(name)
            log.info(f"pool: account {name} disabled by the operator ({account.in_flight} in flight finish normally)")
        return account

    def enable(self, name: str) -> Account:
        """Put a disabled account back: at once when it still holds a valid token, else after an exchange."""
        account = self.account(name)
        if account.base_state is State.DISABLED:
            state = self.pool.enable(account)
            log.info(
                f"pool: account {name} enabled by the operator"
                + ("" if state is State.ACTIVE else "; exchanging its token")
            )
            if self.running:
                self.keeper.start(account)  # its loop sleeps until the refresh is due, or exchanges now
        return account

    def set_cooldown(self, name: str, seconds: float) -> Account:
        """Cool the account for exactly `seconds` from now (0 ends a cooldown): the operator may shorten one."""
        account = self.account(name)
        self.pool.set_cooldown(account, seconds)
        self.state.operator_cooldown(account, seconds)  # every proxy sharing the state takes it as given
        return account
