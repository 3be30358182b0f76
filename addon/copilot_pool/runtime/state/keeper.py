"""The state keeper: the pool's kept state written to its store in the background, and what the store knows
(kept before a restart, or learnt by another proxy) merged back through the pool's own transitions.

A pooled request never waits on a store. Transitions note what changed (`Pool.kept`, `Affinity.changed`,
`Sessions.changed`, `Ledger.changed`); every FLUSH_EVERY seconds the keeper writes new cooldowns and bindings, and
once a second everything else too (counters, facts), in one batch, and merges the counter totals the store
answers with. A shared store (Redis) also gets a heartbeat with this proxy's in-flight counts, answered with the
other proxies', and sends the others' news (a cooldown, a binding) as it happens. When the store cannot be
reached the notes wait (bounded: one per account and binding), the proxy carries on with its own view, one line
says so, and the keeper tries again with backoff; once back it sends what waited, then merges what the store
learnt meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Coroutine

from ... import LOGGER_NAME
from ...core.affinity import Affinity
from ...core.kept import (
    POOL,
    Cooled,
    Counters,
    account_counters,
    account_owner,
    added,
    cooldowns_of,
    facts_of,
    grown,
    learned_from,
    learned_record,
    to_pool,
    to_wall,
    user_counters,
    user_owner,
)
from ...core.model import Account
from ...core.pool import Pool
from ...core.sessions import Sessions
from ...core.usage import Ledger
from ..clock import Clock
from .store import Batch, Loaded, News, StoreDown, StoreError

log = logging.getLogger(LOGGER_NAME)

FLUSH_EVERY = 0.1  # seconds between batches: a cooldown or a binding reaches the store (and the others) this soon
COUNTS_EVERY = 10  # flushes: counters and facts, which are in no hurry, go once a second (one write, not ten)
HEARTBEAT_EVERY = 5  # flushes: a shared store hears this proxy's in-flight counts every half second
CONNECT_TIMEOUT = 3.0  # seconds the start-up waits for the store before it starts without it
MAX_BACKOFF = 5.0  # seconds between attempts to reach a store that went away


class StateKeeper:
    def __init__(
        self,
        store,
        pool: Pool,
        affinity: Affinity,
        sessions: Sessions,
        ledger: Ledger,
        clock: Clock,
        spawn: Callable[[Coroutine], asyncio.Task],
        proxy: str,
    ) -> None:
        self.store = store
        self.pool = pool
        self.affinity = affinity
        self.sessions = sessions
        self.ledger = ledger
        self.clock = clock
        self.spawn = spawn
        self.proxy = proxy  # this proxy's id among those sharing the store
        self.connected = False
        self.proxies: list[str] = []  # the live proxies sharing the store (heartbeats)
        self.problem: str | None = None  # why the store cannot be reached, while it cannot
        self.tokens_shared = False  # pool_share_tokens: the proxies share Copilot tokens through the store
        self._seen: dict[str, Counters] = {}  # owner -> its totals in the store, as far as this proxy counted them
        self._cooled: dict[tuple[str, str | None], Cooled] = {}  # the cooldowns the store holds, as far as known
        self._exact: list[Cooled] = []  # the operator's cooldowns, to be written as given
        self._unsent: Batch | None = None  # written, but the store's answer never came: sent again as is
        self._facts: dict[str, dict] = {}  # facts as loaded, for accounts that join the pool later
        self._pull: set[str] = set()  # owners whose totals another proxy raised: read them at the next write
        self._resend: set[str] = set()  # accounts (and POOL) written again in full after an outage
        self._resend_users: set[str] = set()
        self._deferred: set[str] = set()  # accounts whose counters and facts wait for the next full batch
        self._restored = False
        self.restored = "nothing restored yet"  # what the first load brought back, for the start-up line
        self._down_since: float | None = None
        self._attempts = 0
        self._retry_at = 0.0
        self._loop: asyncio.Task | None = None
        self._listener: asyncio.Task | None = None

    # -- life cycle ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and restore what the store holds, before the proxy takes traffic. Raises StoreError when the
        store is unusable (the caller stops start-up); when it is only unreachable, the proxy starts with an
        empty view and merges once it is back."""
        try:
            await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT)
        except StoreError:
            raise
        except (StoreDown, TimeoutError, OSError) as e:
            self._down(e)

    def start(self) -> None:
        self._loop = self.spawn(self._run())

    async def close(self) -> None:
        """Write what is left, then let go of the store (mitmproxy is stopping)."""
        for task in (self._loop, self._listener):
            if task is not None:
                task.cancel()
        if self.connected:
            try:
                await asyncio.wait_for(self.flush(), 2.0)
            except Exception as e:  # noqa: BLE001 - stopping anyway; the log says what was not saved
                log.warning(f"pool: state store {self.store.where}: last changes not saved: {_why(e)}")
        await self.store.close()

    def status(self) -> dict:
        return {
            "backend": self.store.backend,
            "where": self.store.where,
            "connected": self.connected,
            "proxy": self.proxy,
            "proxies": sorted(self.proxies) if self.store.shared else [self.proxy],
            "problem": self.problem,
            "conversations": len(self.affinity),  # bound to their accounts, shared through the store
            "sessions": len(self.sessions),
            "tokens_shared": self.tokens_shared,
        }

    # -- what the service tells it ----------------------------------------------------------------

    def adopt(self, account: Account) -> None:
        """An account joined the pool: it gets what the store held for it at the last load."""
        if (facts := self._facts.get(account.name)) is not None:
            self.pool.restore(account, facts)
        for cooled in [c for (owner, _), c in self._cooled.items() if owner == account.name]:
            self.pool.cooldown_shared(cooled)
        if (totals := self._seen.get(account_owner(account.name))) is not None:
            self.pool.usage_merged(account, totals)

    def operator_cooldown(self, account: Account, seconds: float) -> None:
        """pool.cooldown: written as given (it may shorten or end a cooldown), for every proxy."""
        wall = self.clock.wall()
        self._exact.append(Cooled(account.name, None, wall + seconds, "operator" if seconds else "", exact=True))

    # -- the loop -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        flushes = 0
        while True:
            await self.clock.sleep(FLUSH_EVERY)
            if not self.connected:
                if self.clock.now() >= self._retry_at:
                    await self._reconnect()
                continue
            try:
                await self.flush(everything=flushes % COUNTS_EVERY == 0)
                flushes += 1
                if self.store.shared and flushes % HEARTBEAT_EVERY == 0:
                    await self._heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - whatever the store tripped over, the proxy carries on
                self._down(e)

    async def _connect(self) -> None:
        await self.store.connect()
        if self._unsent is not None:
            await self._write(self._unsent)  # before the load: its counts must not be merged as another's
        self._merge_loaded(await self.store.load())
        self.connected, self.problem, self._attempts = True, None, 0
        if self.store.shared:
            self._listener = self.spawn(self._listen())
            await self._heartbeat()

    async def _reconnect(self) -> None:
        try:
            await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            self._down(e)
            return
        if self._down_since is not None:
            away = self.clock.now() - self._down_since
            log.info(f"pool: state store {self.store.where} is back after {away:.0f}s; merged this proxy's view")
            self._down_since = None

    def _down(self, error: BaseException) -> None:
        """The store is gone: carry on without it, say so once per outage, try again with backoff."""
        self.connected = False
        self.problem = _why(error)
        if self._listener is not None and self._listener is not asyncio.current_task():
            self._listener.cancel()
        self._listener = None
        self.pool.others_in_flight({})  # what the others had in flight is unknown now: count only our own
        self.proxies = []
        self._attempts += 1
        self._retry_at = self.clock.now() + min(MAX_BACKOFF, 0.25 * 2**self._attempts) * random.uniform(0.8, 1.2)
        if self._down_since is None:
            self._down_since = self.clock.now()
            log.warning(
                f"pool: state store {self.store.where} unreachable ({self.problem}); this proxy carries on with "
                "its own view and tries again"
            )

    async def _heartbeat(self) -> None:
        in_flight = {name: a.in_flight for name, a in self.pool.accounts.items() if a.in_flight}
        elsewhere, self.proxies = await self.store.heartbeat(in_flight)
        self.pool.others_in_flight(elsewhere)

    async def _listen(self) -> None:
        try:
            async for news in self.store.news():
                self.merge_news(news)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            if self.connected:
                self._down(e)

    # -- writing ------------------------------------------------------------------------------------

    async def flush(self, everything: bool = True) -> None:
        """Write what changed since the last batch (or the batch whose answer never came); unless `everything`,
        only new cooldowns and bindings (and the accounts that have new cooldowns)."""
        batch = self._unsent or self._next_batch(everything)
        if batch:
            await self._write(batch)

    def _next_batch(self, everything: bool = True) -> Batch:
        clock, pool = self.clock, self.pool
        batch = Batch(uuid.uuid4().hex, cooldowns=self._exact)
        self._exact = []
        names, self._deferred = pool.take_kept() | self._resend | self._deferred, set()
        for name in names:
            if name == POOL:
                held = pool.held
                if held is not None and held.until > clock.now():
                    batch.cooldowns.append(Cooled(POOL, None, to_wall(clock, held.until), held.reason))
                batch.facts[POOL] = {"learned": learned_record(pool.learned)}
                continue
            account = pool.accounts.get(name)
            if account is None:
                continue
            new = [
                cooled  # the store may not have it yet
                for cooled in cooldowns_of(account, clock)
                if (known := self._cooled.get((cooled.owner, cooled.model))) is None
                or cooled.until > known.until + 0.01
            ]
            if not (everything or new):
                self._deferred.add(name)
                continue
            batch.cooldowns += new
            batch.facts[name] = facts_of(account, clock)
            owner = account_owner(name)
            batch.counters[owner] = grown(account_counters(account), self._seen.get(owner, {}))
        self._resend = set()
        batch.affinity = {k: (a, to_wall(clock, t)) for k, (a, t) in self.affinity.take_changed().items()}
        batch.sessions = {k: (a, to_wall(clock, t)) for k, (a, t) in self.sessions.take_changed().items()}
        if not everything:
            return batch
        for user in self.ledger.take_changed() | self._resend_users:
            owner = user_owner(user)
            batch.counters[owner] = grown(user_counters(self.ledger.user(user)), self._seen.get(owner, {}))
        for owner in self._pull:
            batch.counters.setdefault(owner, {})
        self._pull, self._resend_users = set(), set()
        return batch

    async def _write(self, batch: Batch) -> None:
        self._unsent = batch
        totals = await self.store.write(batch)
        self._unsent = None
        self._know(batch.cooldowns)
        for owner, growth in batch.counters.items():
            self._seen[owner] = added(self._seen.get(owner, {}), growth)
        self._merge_totals(totals)
        if len(self._cooled) > 4 * len(self.pool.accounts) + 64:
            wall = self.clock.wall()
            self._cooled = {k: c for k, c in self._cooled.items() if c.until > wall}

    # -- merging ------------------------------------------------------------------------------------

    def _merge_loaded(self, loaded: Loaded) -> None:
        if self._restored:  # back after an outage: the store gets this proxy's whole view again
            self._resend = {*self.pool.accounts, POOL}
            self._resend_users = set(self.ledger.users)
            self._cooled = {}
            self.affinity.note_all()
            self.sessions.note_all()
            for owner in [o for o in self._seen if o not in loaded.counters]:
                # the store lost its totals (a Redis without persistence): this proxy's totals seed them again
                self._seen[owner] = {}
        self._merge_cooldowns(loaded.cooldowns)
        if not self._restored:  # facts only once: later, this proxy's own view is the newer one
            self._restored = True
            self.restored = _summary(loaded)
            for name, facts in loaded.facts.items():
                if name == POOL:
                    self.pool.learned_restored(learned_from(facts.get("learned")))
                elif (account := self.pool.accounts.get(name)) is not None:
                    self.pool.restore(account, facts)
        self._facts = loaded.facts
        self._merge_totals(loaded.counters)
        self._merge_bindings(loaded.affinity, loaded.sessions)

    def merge_news(self, news: News) -> None:
        """Another proxy's news: cooldowns apply at once, bindings too; grown totals are read at the next write."""
        self._merge_cooldowns(news.cooldowns)
        self._merge_bindings(news.affinity, news.sessions)
        self._pull.update(news.counters)

    def _merge_cooldowns(self, cooldowns: list[Cooled]) -> None:
        self._know(cooldowns)
        for cooled in cooldowns:
            self.pool.cooldown_shared(cooled)

    def _know(self, cooldowns: list[Cooled]) -> None:
        """Note what the store now holds: the later end, or the operator's exact word."""
        for cooled in cooldowns:
            key = (cooled.owner, cooled.model)
            known = self._cooled.get(key)
            if cooled.exact or known is None or cooled.until > known.until:
                self._cooled[key] = cooled

    def _merge_bindings(self, affinity: dict, sessions: dict) -> None:
        for key, (account, seen) in affinity.items():
            self.affinity.merge(key, account, to_pool(self.clock, seen))
        for key, (account, expires) in sessions.items():
            self.sessions.merge(key, account, to_pool(self.clock, expires))

    def _merge_totals(self, totals: dict[str, Counters]) -> None:
        """The store's totals: what grew beyond what this proxy knew was counted elsewhere, and is added here."""
        for owner, total in totals.items():
            growth = grown(total, self._seen.get(owner, {}))
            self._seen[owner] = dict(total)
            kind, _, name = owner.partition(":")
            if not growth:
                continue
            if kind == "account" and (account := self.pool.accounts.get(name)) is not None:
                self.pool.usage_merged(account, growth)
            elif kind == "user":
                self.ledger.merged(name, growth, self.clock.wall())


def _summary(loaded: Loaded) -> str:
    owners = [owner.partition(":")[0] for owner in loaded.counters]
    return (
        f"{len(loaded.cooldowns)} cooldown(s), counters of {owners.count('account')} account(s) and "
        f"{owners.count('user')} proxy user(s), {len(loaded.affinity)} conversation(s), "
        f"{len(loaded.sessions)} session(s)"
    )


def _why(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if isinstance(error, StoreDown | StoreError) else f"{type(error).__name__}: {text}"
