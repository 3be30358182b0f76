from collections import Counter

import pytest

from copilot_pool.clock import FakeClock
from copilot_pool.pool import NoAccountAvailable, State
from helpers import active_pool, config, give_token


def names(pool, n):
    picked = []
    for _ in range(n):
        lease = pool.acquire()
        picked.append(lease.account.name)
        lease.release()
    return picked


def test_round_robin_cycles_in_file_order():
    pool = active_pool("a", "b", "c", strategy="round-robin")
    assert names(pool, 6) == ["a", "b", "c", "a", "b", "c"]


def test_least_busy_picks_the_idle_account():
    pool = active_pool("a", "b", "c")
    busy = [pool.accounts["a"], pool.accounts["c"]]
    for account in busy:
        account.in_flight = 5  # artificially in flight
    assert set(names(pool, 20)) == {"b"}


def test_least_busy_spreads_concurrent_requests():
    pool = active_pool("a", "b", "c", "d")
    leases = [pool.acquire() for _ in range(8)]
    assert Counter(lease.account.name for lease in leases) == {"a": 2, "b": 2, "c": 2, "d": 2}


def test_least_busy_ties_go_to_least_recently_used():
    clock = FakeClock()
    pool = active_pool("a", "b", clock=clock)
    first = names(pool, 1)[0]
    clock.advance(1)
    second = names(pool, 1)[0]
    assert {first, second} == {"a", "b"}
    clock.advance(1)
    assert names(pool, 1)[0] == first


def test_least_recent_rotates():
    clock = FakeClock()
    pool = active_pool("a", "b", "c", strategy="least-recent", clock=clock)
    picked = []
    for _ in range(6):
        picked += names(pool, 1)
        clock.advance(1)
    assert sorted(picked[:3]) == ["a", "b", "c"] and picked[3:] == picked[:3]


def test_random_tie_break_shares_identical_accounts():
    counts = Counter()
    for _ in range(200):
        pool = active_pool("a", "b", "c")
        counts[names(pool, 1)[0]] += 1
    assert all(counts[n] > 30 for n in "abc"), counts


def test_cooling_account_is_excluded_and_comes_back():
    clock = FakeClock()
    pool = active_pool("a", "b", clock=clock)
    pool.mark_cooldown(pool.accounts["a"], 30)
    assert pool.accounts["a"].state(clock.now()) is State.COOLING
    assert set(names(pool, 10)) == {"b"}
    clock.advance(30.5)
    assert "a" in names(pool, 10)


def test_cooldowns_only_extend():
    clock = FakeClock()
    pool = active_pool("a", clock=clock)
    account = pool.accounts["a"]
    until = pool.mark_cooldown(account, 100)
    assert pool.mark_cooldown(account, 5) == until
    assert pool.mark_cooldown(account, 200) == clock.now() + 200


def test_all_cooling_gives_429_with_earliest_recovery():
    clock = FakeClock()
    pool = active_pool("a", "b", clock=clock)
    pool.mark_cooldown(pool.accounts["a"], 40)
    pool.mark_cooldown(pool.accounts["b"], 12.2)
    with pytest.raises(NoAccountAvailable) as e:
        pool.acquire()
    assert (e.value.status, e.value.retry_after, e.value.code) == (429, 13, "pool_all_cooling")


def test_none_usable_gives_503():
    pool = active_pool("a")
    pool.mark_failure(pool.accounts["a"], "GitHub rejected the token")
    with pytest.raises(NoAccountAvailable) as e:
        pool.acquire()
    assert e.value.status == 503 and e.value.retry_after is None
    with pytest.raises(NoAccountAvailable) as e:
        active_pool().acquire()
    assert e.value.status == 503 and "no accounts" in e.value.message


def test_expired_token_is_not_picked():
    clock = FakeClock()
    pool = active_pool("a", "b", clock=clock)
    pool.accounts["a"].token = None
    assert set(names(pool, 5)) == {"b"}


def test_release_happens_exactly_once():
    pool = active_pool("a")
    lease = pool.acquire()
    assert pool.accounts["a"].in_flight == 1
    lease.release()
    lease.release()
    assert pool.accounts["a"].in_flight == 0


def test_apply_keeps_state_of_unchanged_accounts():
    clock = FakeClock()
    pool = active_pool("a", "b", clock=clock)
    a = pool.accounts["a"]
    pool.mark_cooldown(a, 50)
    a.served = 7
    changes = pool.apply([config("a"), config("b", "gho_new"), config("c")])
    assert pool.accounts["a"] is a and a.served == 7 and a.cooldown_until > clock.now() and a.token
    assert [x.name for x in changes.credential_changed] == ["b"] and pool.accounts["b"].token is None
    assert [x.name for x in changes.added] == ["c"]
    changes = pool.apply([config("c"), config("a", enabled=False)])
    assert [x.name for x in changes.removed] == ["b"] and [x.name for x in changes.disabled] == ["a"]
    assert list(pool.accounts) == ["c", "a"] and pool.accounts["a"].base_state is State.DISABLED
    assert not pool.apply([config("c"), config("a", enabled=False)])


def test_removed_account_in_flight_finishes_normally():
    pool = active_pool("a")
    lease = pool.acquire()
    account = lease.account
    pool.apply([])
    lease.release()
    assert account.in_flight == 0
    with pytest.raises(NoAccountAvailable):
        pool.acquire()


def test_ready_lists_follow_changes_made_anywhere():
    """Picks use cached ready lists; every way an account stops (or starts) being pickable must show at once."""
    clock = FakeClock()
    pool = active_pool("a", "b", clock=clock)
    a, b = pool.accounts["a"], pool.accounts["b"]
    assert set(names(pool, 4)) == {"a", "b"}
    a.cooldown_until = clock.now() + 5  # set directly, as an operator command does
    assert set(names(pool, 4)) == {"b"}
    clock.advance(6)  # time alone ends the cooldown
    assert set(names(pool, 4)) == {"a", "b"}
    b.base_state = State.STARTING  # a 401 took b's token away
    assert set(names(pool, 4)) == {"a"}
    give_token(b, clock, lifetime=10)
    assert set(names(pool, 6)) == {"a", "b"}
    clock.advance(11)  # time alone expires b's token
    assert set(names(pool, 4)) == {"a"}
    pool.apply([config("a")])
    pool.apply([config("a"), config("c")])
    give_token(pool.accounts["c"], clock)
    assert set(names(pool, 4)) == {"a", "c"}


def test_least_busy_stays_exact_with_cached_order():
    clock = FakeClock()
    pool = active_pool(*"abcdefgh", clock=clock)
    leases = []
    for _ in range(24):  # 3 per account, whatever the order of picks
        leases.append(pool.acquire())
        clock.advance(0.001)
    assert {a.in_flight for a in pool.accounts.values()} == {3}
    for lease in leases[::2]:
        lease.release()
    for _ in range(12):
        loads = {a.name: a.in_flight for a in pool.accounts.values()}
        picked = pool.acquire().account
        assert loads[picked.name] == min(loads.values())  # the least busy, though it is not the least recently used
