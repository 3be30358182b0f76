"""The state keeper and the stores: batches written off the hot path, merged back through the pool, outages
ridden out; the SQLite file's versions, damage and locks; the pool_state option."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import stat

import pytest
from copilot_pool.core.affinity import Affinity
from copilot_pool.core.classify import Outcome, Verdict
from copilot_pool.core.kept import Cooled
from copilot_pool.core.model import State
from copilot_pool.core.pool import Pool
from copilot_pool.core.sessions import Sessions
from copilot_pool.core.usage import Ledger
from copilot_pool.runtime.clock import FakeClock
from copilot_pool.runtime.state import check
from copilot_pool.runtime.state.keeper import FLUSH_EVERY, StateKeeper
from copilot_pool.runtime.state.memory import MemoryStore
from copilot_pool.runtime.state.redis import RedisStore
from copilot_pool.runtime.state.sqlite import SCHEMA, SCHEMA_VERSION, SqliteStore
from copilot_pool.runtime.state.store import Batch, News, SharedToken, StoreDown, StoreError
from helpers import config, give_token

OK = Verdict(Outcome.OK, 200)
LIMITED = Verdict(Outcome.RATE_LIMITED, 429, cooldown=600.0, reason="user_global_rate_limited")


class Proxy:
    """One proxy's pool, bindings, ledger and keeper on a store (several may share one)."""

    def __init__(self, store, clock: FakeClock | None = None, names=("alice", "bob"), tokens=True) -> None:
        self.clock = clock or FakeClock()
        self.pool = Pool(self.clock)
        self.pool.apply([config(n) for n in names])
        if tokens:
            for account in self.pool.accounts.values():
                give_token(self.pool, account)
        self.affinity, self.sessions, self.ledger = Affinity(self.clock, 3600), Sessions(self.clock), Ledger()
        spawn = lambda coro: asyncio.get_running_loop().create_task(coro)  # noqa: E731
        self.keeper = StateKeeper(
            store, self.pool, self.affinity, self.sessions, self.ledger, self.clock, spawn, f"proxy-{id(self)}"
        )

    def account(self, name):
        return self.pool.accounts[name]


async def test_many_changes_make_one_batch_and_no_change_makes_none():
    store = MemoryStore(FakeClock().wall)
    proxy = Proxy(store)
    await proxy.keeper.open()
    alice = proxy.account("alice")
    for n in range(100):
        proxy.pool.record(alice, OK)
        proxy.pool.credits_spent(alice, "gpt-5", 1000)
        proxy.affinity.put(f"conversation-{n % 10}", "alice")
        proxy.ledger.spent("dev", 1000, False, proxy.clock.wall())
    proxy.pool.record(proxy.account("bob"), LIMITED)
    await proxy.keeper.flush()
    [batch] = store.written
    assert batch.counters["account:alice"] == {
        "served": 100,
        "credits:gpt-5": 100_000,
        **_month(alice),
    }
    assert batch.counters["user:dev"]["requests"] == 100 and len(batch.affinity) == 10
    assert [(c.owner, c.reason) for c in batch.cooldowns] == [("bob", "user_global_rate_limited")]
    await proxy.keeper.flush()
    assert len(store.written) == 1  # nothing changed: nothing written
    proxy.pool.record(alice, OK)
    await proxy.keeper.flush()
    assert store.written[-1].counters["account:alice"] == {"served": 1} and not store.written[-1].cooldowns


async def test_between_full_batches_only_cooldowns_and_bindings_are_written():
    store = MemoryStore(FakeClock().wall)
    proxy = Proxy(store)
    await proxy.keeper.open()
    alice, bob = proxy.account("alice"), proxy.account("bob")
    for _ in range(10):
        proxy.pool.record(alice, OK)
    proxy.ledger.spent("dev", 1000, False, proxy.clock.wall())
    await proxy.keeper.flush(everything=False)
    assert not store.written  # counters only: they wait for the next full batch (once a second)
    proxy.pool.record(bob, LIMITED)
    proxy.affinity.put("conversation", "alice")
    await proxy.keeper.flush(everything=False)
    [urgent] = store.written
    assert [c.owner for c in urgent.cooldowns] == ["bob"] and list(urgent.affinity) == ["conversation"]
    assert set(urgent.counters) == {"account:bob"}  # the cooled account goes whole; alice and the user wait
    await proxy.keeper.flush()
    assert store.written[-1].counters["account:alice"]["served"] == 10
    assert store.written[-1].counters["user:dev"]["requests"] == 1


def _month(account):
    return {f"month:{account.month}": account.month_nano}


async def test_what_one_process_kept_the_next_one_restores():
    clock = FakeClock()
    store = MemoryStore(clock.wall)
    first = Proxy(store, clock)
    await first.keeper.open()
    alice, bob = first.account("alice"), first.account("bob")
    first.pool.record(alice, LIMITED)
    first.pool.cool(bob, 120, "user_model_rate_limited", model="gpt-5")
    first.pool.record(bob, OK)
    first.pool.credits_spent(bob, "gpt-5", 5_000_000)
    first.affinity.put("conversation", "bob")
    first.sessions.bind("session-token", "bob", clock.wall() + 600)
    first.ledger.spent("dev", 5_000_000, True, clock.wall())
    await first.keeper.flush()

    later = FakeClock(start=3.0, wall_offset=clock.wall() + 60 - 3.0)  # a minute later, a new monotonic clock
    second = Proxy(store, later, tokens=False)
    await second.keeper.open()
    assert second.keeper.restored.startswith("2 cooldown(s), counters of 2 account(s) and 1 proxy user(s)")
    a, b = second.account("alice"), second.account("bob")
    assert a.cooldown_until - later.now() == pytest.approx(600 - 60) and a.cooldown_reason == "user_global_rate_limited"
    assert b.model_cooldowns["gpt-5"].until - later.now() == pytest.approx(60)
    assert (a.rate_limited, b.served, b.credits) == (1, 1, {"gpt-5": 5_000_000})
    assert second.affinity.get("conversation") == "bob" and second.sessions.account_for("session-token") == "bob"
    assert second.ledger.user("dev").nano == 5_000_000 and second.ledger.user("dev").rate_limited == 1
    second.pool.record(b, OK)
    await second.keeper.flush()
    assert store.held.counters["account:bob"]["served"] == 2  # counting goes on from the totals


async def test_counts_from_two_proxies_add_up_on_both():
    clock = FakeClock()
    store = MemoryStore(clock.wall)
    one, two = Proxy(store, clock), Proxy(store, clock)
    for proxy in (one, two):
        await proxy.keeper.open()
    for _ in range(3):
        one.pool.record(one.account("alice"), OK)
    two.pool.record(two.account("alice"), OK)
    await one.keeper.flush()
    await two.keeper.flush()  # its answer brings one's three
    assert two.account("alice").served == 4
    two.keeper.merge_news(News(counters=["account:alice"]))  # one hears that the total grew (Redis pub/sub)
    one.keeper.merge_news(News(counters=["account:alice"]))
    await one.keeper.flush()
    assert one.account("alice").served == 4 and store.held.counters["account:alice"]["served"] == 4


async def test_the_news_of_another_proxy_applies_at_once_and_is_not_echoed():
    clock = FakeClock()
    store = MemoryStore(clock.wall)
    proxy = Proxy(store, clock)
    await proxy.keeper.open()
    proxy.keeper.merge_news(
        News(
            cooldowns=[Cooled("alice", None, clock.wall() + 30, "user_global_rate_limited")],
            affinity={"conversation": ("bob", clock.wall())},
            sessions={"digest-of-a-token": ("bob", clock.wall() + 600)},
        )
    )
    assert proxy.account("alice").state(clock.now()) is State.COOLING
    assert proxy.affinity.get("conversation") == "bob"
    proxy.pool.record(proxy.account("alice"), OK)  # alice is written again for its count ...
    await proxy.keeper.flush()
    assert store.written[-1].cooldowns == [] and store.written[-1].affinity == {}  # ... not the others' news


class LosesAnswers(MemoryStore):
    """Applies a batch, then loses the answer (a connection cut at the wrong moment), `times` times."""

    def __init__(self, wall, times: int) -> None:
        super().__init__(wall)
        self.times = times

    async def write(self, batch: Batch):
        totals = await super().write(batch)
        if self.times:
            self.times -= 1
            raise StoreDown("connection reset")
        return totals


async def test_an_outage_is_ridden_out_said_once_and_merged_back_without_counting_twice(caplog):
    clock = FakeClock()
    store = LosesAnswers(clock.wall, times=1)
    proxy = Proxy(store, clock)
    await proxy.keeper.open()
    proxy.keeper.start()
    alice = proxy.account("alice")

    async def tick(times=1):
        for _ in range(times):
            for _ in range(5):
                await asyncio.sleep(0)
            clock.advance(FLUSH_EVERY)
            for _ in range(5):
                await asyncio.sleep(0)

    with caplog.at_level(logging.INFO, logger="copilot_pool"):
        proxy.pool.record(alice, OK)
        await tick()  # applied, but the answer is lost: the keeper thinks the store is gone
        assert not proxy.keeper.connected and "connection reset" in proxy.keeper.status()["problem"]
        store.down = True
        for _ in range(20):
            proxy.pool.record(alice, OK)
            assert proxy.pool.acquire().release() is None  # the pool serves on, from its own view
        proxy.pool.record(proxy.account("bob"), LIMITED)
        await tick(100)  # ten seconds of retries with backoff
        store.down = False
        await tick(60)
    assert proxy.keeper.connected
    assert store.held.counters["account:alice"]["served"] == 21  # the lost answer's batch counted once
    assert alice.served == 21 and any(c.owner == "bob" for c in store.held.cooldowns)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in line for line in lines) == 1
    assert any("is back after" in line for line in lines)
    proxy.keeper._loop.cancel()


async def test_a_store_that_lost_everything_gets_this_proxys_view_again():
    clock = FakeClock()
    store = MemoryStore(clock.wall)
    proxy = Proxy(store, clock)
    await proxy.keeper.open()
    proxy.pool.record(proxy.account("alice"), OK)
    proxy.pool.cool(proxy.account("bob"), 300, "user_global_rate_limited")
    proxy.affinity.put("conversation", "alice")
    await proxy.keeper.flush()
    store.held = type(store.held)()  # a Redis restarted without persistence
    await proxy.keeper._connect()
    await proxy.keeper.flush()
    assert store.held.counters["account:alice"]["served"] == 1
    assert [c.owner for c in store.held.cooldowns] == ["bob"] and "conversation" in store.held.affinity


# -- SQLite -----------------------------------------------------------------------------------------


async def test_sqlite_round_trip_extends_cooldowns_only_and_is_owner_only(tmp_path):
    path = tmp_path / "data" / "state.sqlite3"
    store = SqliteStore(path, wall=lambda: 1_000.0)
    await store.connect()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = Batch(
        "1", [Cooled("alice", None, 2_000.0, "long")], {"alice": {"failed": None}}, {"account:alice": {"served": 2}}
    )
    await store.write(first)
    totals = await store.write(
        Batch(
            "2",
            [Cooled("alice", None, 1_500.0, "shorter"), Cooled("alice", "gpt-5", 1_200.0, "model")],
            counters={"account:alice": {"served": 3}},
            affinity={"c": ("alice", 900.0)},
            sessions={"d": ("alice", 1_100.0)},
        )
    )
    assert totals == {"account:alice": {"served": 5}}
    loaded = await store.load()
    assert sorted((c.model or "", c.until, c.reason) for c in loaded.cooldowns) == [
        ("", 2_000.0, "long"),
        ("gpt-5", 1_200.0, "model"),
    ]
    assert loaded.facts == {"alice": {"failed": None}} and loaded.sessions == {"d": ("alice", 1_100.0)}
    await store.write(Batch("3", [Cooled("alice", None, 1_000.0, "", exact=True)]))  # the operator ended it
    assert [c.model for c in (await store.load()).cooldowns] == ["gpt-5"]
    await store.close()


async def test_an_older_sqlite_file_is_migrated_and_keeps_what_it_held(tmp_path):
    path = tmp_path / "state.sqlite3"
    db = sqlite3.connect(path)
    for statement in SCHEMA[1]:
        db.execute(statement)
    db.execute("INSERT INTO counters VALUES ('alice', 'served', 41)")
    db.execute("INSERT INTO cooldowns VALUES ('alice', '', 5000.0, 'weekly limit')")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    store = SqliteStore(path, wall=lambda: 1_000.0)
    await store.connect()
    loaded = await store.load()
    assert loaded.counters == {"account:alice": {"served": 41}} and loaded.cooldowns[0].reason == "weekly limit"
    await store.write(Batch("1", sessions={"digest": ("alice", 2_000.0)}))  # what version 2 added
    await store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2


async def test_a_broken_sqlite_file_is_moved_aside_and_a_fresh_one_started(tmp_path):
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"this is not a database, just some bytes a crash or a person left" * 100)
    store = SqliteStore(path)
    await store.connect()
    assert store.replaced is not None and ".broken-" in store.replaced and "not a database" in store.replaced
    [aside] = tmp_path.glob("state.sqlite3.broken-*")
    assert aside.read_bytes().startswith(b"this is not a database")
    assert (await store.load()).cooldowns == []
    await store.close()


async def test_a_locked_or_newer_sqlite_file_is_a_clear_error_naming_it(tmp_path):
    path = tmp_path / "state.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process keeps it locked
    with pytest.raises(StoreError, match=rf"state file {path} is locked by another process"):
        await SqliteStore(path).connect()
    holder.execute("ROLLBACK")
    holder.execute("PRAGMA user_version=99")
    holder.close()
    with pytest.raises(StoreError, match=r"schema version 99, written by a newer copilot-pool"):
        await SqliteStore(path).connect()


async def test_a_sqlite_write_that_fails_mid_run_is_an_outage_not_a_crash(tmp_path):
    path = tmp_path / "state.sqlite3"
    store = SqliteStore(path)
    await store.connect()
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreDown, match="locked"):
        await store.write(Batch("1", counters={"account:alice": {"served": 1}}))
    holder.execute("ROLLBACK")
    assert await store.write(Batch("1", counters={"account:alice": {"served": 1}})) == {"account:alice": {"served": 1}}
    await store.close()


# -- the option -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, message",
    [
        ("sqlite:", "needs a path"),
        ("postgres://db", "expected sqlite, sqlite:PATH, redis://HOST:PORT/DB"),
        ("redis://:hunter2@localhost:6379/0", "COPILOT_POOL_REDIS_PASSWORD, not in the option"),
        ("redis://localhost:6379/zero", "the database must be a number"),
    ],
)
def test_bad_pool_state_values_say_what_is_wrong(value, message):
    with pytest.raises(ValueError, match=message):
        check(value)
    assert "hunter2" not in message


def test_good_pool_state_values():
    for value in ("sqlite", "sqlite:/tmp/x.sqlite3", "sqlite:~/state", "memory", "redis://h:1/0", "rediss://h/2"):
        check(value)


def test_facts_are_json(tmp_path):
    proxy = Proxy(MemoryStore())
    json.dumps(proxy.keeper.status())


async def test_an_account_that_joins_later_gets_what_the_store_held_for_it():
    clock = FakeClock()
    store = MemoryStore(clock.wall)
    elsewhere = Proxy(store, clock, names=("alice", "carol"))
    await elsewhere.keeper.open()
    elsewhere.pool.record(elsewhere.account("carol"), LIMITED)
    elsewhere.pool.record(elsewhere.account("carol"), OK)
    await elsewhere.keeper.flush()
    proxy = Proxy(store, clock, names=("alice",))
    await proxy.keeper.open()
    proxy.pool.apply([config("alice"), config("carol")])  # the accounts file gains carol
    carol = proxy.account("carol")
    proxy.keeper.adopt(carol)  # as PoolService.apply does for every account added
    assert carol.cooldown_reason == "user_global_rate_limited" and (carol.served, carol.rate_limited) == (1, 1)


async def test_redis_shares_a_token_only_for_its_credential_and_only_as_long_as_it_lives(redis_server):
    a, b = RedisStore(redis_server.url, "a:1"), RedisStore(redis_server.url, "b:2")
    await a.connect(), await b.connect()
    try:
        assert await b.shared_token("alice", "cred") is None
        assert await a.claim_exchange("alice", 5) is True
        assert await b.claim_exchange("alice", 5) is False  # A exchanges; B waits for its token
        shared = SharedToken("tid=x;exp=1", 0.5, 0.1, "https://api.x", None, "sku_x")
        await a.share_token("alice", "cred", shared)
        found = await b.shared_token("alice", "cred")
        assert found.token == "tid=x;exp=1" and 0.3 < found.lifetime <= 0.5 and found.refresh_lead == 0.1
        assert (found.api_endpoint, found.proxy_endpoint, found.sku) == ("https://api.x", None, "sku_x")
        assert "tid=x" not in repr(found)
        assert await b.shared_token("alice", "another credential") is None
        assert await b.claim_exchange("alice", 5) is True  # sharing the token let go of A's claim
        await asyncio.sleep(0.6)
        assert await b.shared_token("alice", "cred") is None  # gone with the token's end
    finally:
        await a.close(), await b.close()
