from collections import Counter

import pytest
from copilot_pool.core.classify import Outcome, Verdict
from copilot_pool.core.model import State
from copilot_pool.core.pool import NoAccount, PoolChanges, Unavailable
from copilot_pool.runtime.clock import FakeClock
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
    held = []
    while len({lease.account.name for lease in held}) < 3:  # a and c each get a request in flight, b none
        lease = pool.acquire()
        held.append(lease)
        if lease.account.name == "b":
            lease.release()
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
    pool.cool(pool.accounts["a"], 30)
    assert pool.accounts["a"].state(clock.now()) is State.COOLING
    assert set(names(pool, 10)) == {"b"}
    clock.advance(30.5)
    assert "a" in names(pool, 10)


def test_cooldowns_only_extend():
    clock = FakeClock()
    pool = active_pool("a", clock=clock)
    account = pool.accounts["a"]
    until = pool.cool(account, 100)
    assert pool.cool(account, 5) == until
    assert pool.cool(account, 200) == clock.now() + 200


def test_all_cooling_gives_429_with_earliest_recovery():
    clock = FakeClock()
    pool = active_pool("a", "b", clock=clock)
    pool.cool(pool.accounts["a"], 40)
    pool.cool(pool.accounts["b"], 12.2)
    with pytest.raises(NoAccount) as e:
        pool.acquire()
    assert e.value.reason is Unavailable.COOLING and e.value.recovers_in == pytest.approx(12.2) and e.value.waitable


def test_none_usable_gives_503():
    pool = active_pool("a")
    pool.fail(pool.accounts["a"], "GitHub rejected the token")
    with pytest.raises(NoAccount) as e:
        pool.acquire()
    assert e.value.reason is Unavailable.UNUSABLE and e.value.recovers_in is None and not e.value.waitable
    with pytest.raises(NoAccount) as e:
        active_pool().acquire()
    assert e.value.reason is Unavailable.EMPTY


def test_expired_token_is_not_picked():
    clock = FakeClock()
    pool = active_pool("a", "b", clock=clock)
    pool.invalidate(pool.accounts["a"])
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
    pool.cool(a, 50)
    for _ in range(7):
        pool.record(a, Verdict(Outcome.OK, 200))
    changes = pool.apply([config("a"), config("b", "gho_new"), config("c")])
    assert pool.accounts["a"] is a and a.served == 7 and a.cooldown_until > clock.now() and a.token
    assert [x.name for x in changes.credential_changed] == ["b"] and pool.accounts["b"].token is None
    assert [x.name for x in changes.added] == ["c"]
    changes = pool.apply([config("c"), config("a", enabled=False)])
    assert [x.name for x in changes.removed] == ["b"] and [x.name for x in changes.disabled] == ["a"]
    assert list(pool.accounts) == ["c", "a"] and pool.accounts["a"].base_state is State.DISABLED
    assert pool.apply([config("c"), config("a", enabled=False)]) == PoolChanges()


def test_removed_account_in_flight_finishes_normally():
    pool = active_pool("a")
    lease = pool.acquire()
    account = lease.account
    pool.apply([])
    lease.release()
    assert account.in_flight == 0
    with pytest.raises(NoAccount):
        pool.acquire()


def test_ready_lists_follow_changes_made_anywhere():
    """Picks use cached ready lists; every way an account stops (or starts) being pickable must show at once."""
    clock = FakeClock()
    pool = active_pool("a", "b", clock=clock)
    a, b = pool.accounts["a"], pool.accounts["b"]
    assert set(names(pool, 4)) == {"a", "b"}
    pool.set_cooldown(a, 5)  # as an operator command does
    assert set(names(pool, 4)) == {"b"}
    clock.advance(6)  # time alone ends the cooldown
    assert set(names(pool, 4)) == {"a", "b"}
    pool.invalidate(b)  # a 401 took b's token away
    assert set(names(pool, 4)) == {"a"}
    give_token(pool, b, lifetime=10)
    assert set(names(pool, 6)) == {"a", "b"}
    clock.advance(11)  # time alone expires b's token
    assert set(names(pool, 4)) == {"a"}
    pool.apply([config("a")])
    pool.apply([config("a"), config("c")])
    give_token(pool, pool.accounts["c"])
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


def test_every_transition_bumps_only_its_own_pools_version_and_tells_its_listener():
    clock = FakeClock()
    pool, other = active_pool("a", clock=clock), active_pool("x", clock=clock)
    told = []
    pool.listener = lambda: told.append(pool.version)
    a, before = pool.accounts["a"], other.version
    for transition in (
        lambda: pool.cool(a, 10),
        lambda: pool.set_cooldown(a, 0),
        lambda: pool.invalidate(a),
        lambda: give_token(pool, a),
        lambda: pool.disable(a),
        lambda: pool.enable(a),
        lambda: pool.fail(a, "refused"),
        lambda: pool.apply([config("a", "gho_new")]),
    ):
        version = pool.version
        transition()
        assert pool.version == version + 1 and told[-1] == pool.version
    assert other.version == before
    give_token(pool, pool.accounts["a"])
    told.clear()
    version = pool.version
    pool.acquire().release()
    assert told == [version]  # a lease's end tells the listener (a waiter may take the account), no version bump
