"""Tiers, max_concurrency, exclusion and affinity in Pool.acquire; the affinity map; the wait queue; strategies."""

import asyncio
from collections import Counter

import pytest
from copilot_pool.core.affinity import Affinity, conversation_key
from copilot_pool.core.pool import NoAccount, Unavailable, Want
from copilot_pool.core.quota import Quota
from copilot_pool.runtime.clock import FakeClock
from copilot_pool.runtime.waiting import WaitQueue
from helpers import config, give_token, pool_of


def queue_for(pool):
    queue = WaitQueue(pool, pool.clock)
    pool.listener = queue.serve
    return queue


def test_lower_tier_only_when_every_higher_tier_account_is_unavailable():
    clock = FakeClock()
    pool = pool_of(config("main1"), config("main2"), config("backup", priority=1), clock=clock)
    picks = [pool.acquire() for _ in range(20)]
    assert {lease.account.name for lease in picks} == {"main1", "main2"}
    for lease in picks:
        lease.release()
    pool.cool(pool.accounts["main1"], 30)
    pool.invalidate(pool.accounts["main2"])
    lease = pool.acquire()
    assert lease.account.name == "backup" and "tier 1" in lease.reason
    clock.advance(31)
    assert pool.acquire().account.name == "main1"


def test_max_concurrency_caps_in_flight_and_then_429_busy():
    pool = pool_of(config("a", max_concurrency=2), config("b", max_concurrency=1))
    leases = [pool.acquire() for _ in range(3)]
    assert Counter(lease.account.name for lease in leases) == {"a": 2, "b": 1}
    with pytest.raises(NoAccount) as e:
        pool.acquire()
    assert e.value.reason is Unavailable.BUSY and e.value.waitable
    leases[0].release()
    assert pool.acquire().account is leases[0].account


def test_exclude_and_attempts_exhausted():
    pool = pool_of(config("a"), config("b"))
    a, b = pool.accounts["a"], pool.accounts["b"]
    assert pool.acquire(exclude=[a]).account is b
    with pytest.raises(NoAccount) as e:
        pool.acquire(exclude=[a, b])
    assert e.value.reason is Unavailable.EXHAUSTED and not e.value.waitable


def test_prefer_wins_while_usable_and_yields_when_cooling():
    pool = pool_of(config("a"), config("b"), config("c"))
    for _ in range(10):
        lease = pool.acquire(Want(prefer="b"))
        assert lease.account.name == "b" and lease.reason.startswith("affinity")
    pool.cool(pool.accounts["b"], 10)
    assert pool.acquire(Want(prefer="b")).account.name != "b"
    assert pool.acquire(Want(prefer="gone")).account.name in {"a", "c"}


def test_all_cooling_reports_precise_recovery():
    clock = FakeClock()
    pool = pool_of(config("a"), clock=clock)
    pool.cool(pool.accounts["a"], 2.5)
    with pytest.raises(NoAccount) as e:
        pool.acquire()
    assert e.value.recovers_in == pytest.approx(2.5) and e.value.reason is Unavailable.COOLING and e.value.waitable


def test_weighted_strategy_gives_each_account_its_share_interleaved():
    pool = pool_of(config("a", weight=3), config("b", weight=1), strategy="weighted")
    picks = []
    for _ in range(8):
        lease = pool.acquire()
        picks.append(lease.account.name)
        lease.release()
    assert Counter(picks) == {"a": 6, "b": 2} and picks[:4].count("b") == 1


def test_least_busy_counts_in_flight_per_weight():
    pool = pool_of(config("big", weight=3), config("small"))
    leases = [pool.acquire() for _ in range(8)]
    assert Counter(lease.account.name for lease in leases) == {"big": 6, "small": 2}


def test_quota_strategy_prefers_most_remaining_and_learns_unknown():
    pool = pool_of(config("a"), config("b"), config("c"), strategy="quota")
    pool.quota_seen(pool.accounts["a"], Quota(300, 10.0, False, None, 0))
    pool.quota_seen(pool.accounts["b"], Quota(300, 90.0, False, None, 0))
    assert pool.acquire().account.name == "c"  # unknown: ask it once, its answer tells
    pool.quota_seen(pool.accounts["c"], Quota(300, 50.0, False, None, 0))
    assert {pool.acquire().account.name for _ in range(5)} == {"b"}


def test_affinity_lru_with_ttl():
    clock = FakeClock()
    affinity = Affinity(clock, ttl=60, max_entries=2)
    affinity.put("k1", "a")
    affinity.put("k2", "b")
    assert affinity.get("k1") == "a"
    affinity.put("k3", "c")  # over the bound: the least recently put goes
    assert affinity.get("k1") is None and affinity.get("k3") == "c"
    clock.advance(61)
    assert affinity.get("k2") is None and len(affinity) <= 2
    affinity.ttl = 0
    affinity.put("k4", "d")
    assert affinity.get("k4") is None


def test_conversation_key():
    assert conversation_key({"x-interaction-id": "i1", "vscode-sessionid": "s1"}) == "x-interaction-id:i1"
    assert conversation_key({"vscode-sessionid": "s1"}) == "vscode-sessionid:s1"
    assert conversation_key({}) is None


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def test_waiters_are_served_in_arrival_order_when_a_cooldown_ends():
    clock = FakeClock()
    pool = pool_of(config("a", max_concurrency=1), clock=clock)
    queue = queue_for(pool)
    pool.cool(pool.accounts["a"], 5)
    order = []

    async def client(i):
        lease, waited = await queue.acquire(30)
        order.append((i, waited))
        await asyncio.sleep(0)
        lease.release()

    tasks = []
    for i in range(4):
        tasks.append(asyncio.create_task(client(i)))
        await settle()
    assert len(queue) == 4 and not order
    clock.advance(5)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert [i for i, _ in order] == [0, 1, 2, 3] and all(w == 5 for _, w in order)
    assert pool.accounts["a"].in_flight == 0 and len(queue) == 0


async def test_no_wait_when_recovery_is_beyond_max_wait_or_waiting_is_off():
    clock = FakeClock()
    pool = pool_of(config("a"), clock=clock)
    queue = queue_for(pool)
    pool.cool(pool.accounts["a"], 100)
    with pytest.raises(NoAccount) as e:
        await queue.acquire(30)
    assert e.value.reason is Unavailable.COOLING
    pool.set_cooldown(pool.accounts["a"], 1)
    with pytest.raises(NoAccount):
        await queue.acquire(0)


async def test_waiter_gives_up_at_its_deadline():
    clock = FakeClock()
    pool = pool_of(config("a", max_concurrency=1), clock=clock)
    queue = queue_for(pool)
    held = pool.acquire()
    waiter = asyncio.create_task(queue.acquire(3))
    await settle()
    clock.advance(3.1)
    with pytest.raises(NoAccount) as e:
        await asyncio.wait_for(waiter, 5)
    assert e.value.reason is Unavailable.BUSY
    held.release()
    assert pool.accounts["a"].in_flight == 0


async def test_cancelled_waiter_leaves_nothing_behind():
    clock = FakeClock()
    pool = pool_of(config("a", max_concurrency=1), clock=clock)
    queue = queue_for(pool)
    held = pool.acquire()
    first = asyncio.create_task(queue.acquire(30))
    second = asyncio.create_task(queue.acquire(30))
    await settle()
    first.cancel()
    held.release()
    lease, _ = await asyncio.wait_for(second, 5)
    assert first.cancelled() and pool.accounts["a"].in_flight == 1
    lease.release()
    queue.close()
    assert pool.accounts["a"].in_flight == 0


async def test_a_waiter_is_served_the_moment_a_token_arrives():
    """No poll: the token's arrival is a pool transition, which tells the wait queue at once."""
    clock = FakeClock()
    pool = pool_of(config("a"), clock=clock)
    queue = queue_for(pool)
    pool.invalidate(pool.accounts["a"])  # a 401: no token until the new exchange ends
    waiter = asyncio.create_task(queue.acquire(30))
    await settle()
    assert not waiter.done() and len(queue) == 1
    give_token(pool, pool.accounts["a"])  # the clock has not moved
    lease, waited = await asyncio.wait_for(waiter, 1)
    assert lease.account.name == "a" and waited == 0 and len(queue) == 0
