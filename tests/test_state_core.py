"""The pure side of the kept state: what transitions note for the store, and the transitions that take back
what a store holds (kept before a restart, or seen by another proxy)."""

from __future__ import annotations

import pytest
from copilot_pool.core.classify import Outcome, Verdict
from copilot_pool.core.kept import (
    POOL,
    Cooled,
    account_counters,
    cooldowns_of,
    facts_of,
    fingerprint,
    grown,
    to_wall,
)
from copilot_pool.core.model import State
from copilot_pool.core.pool import Pool
from copilot_pool.core.quota import Quota
from copilot_pool.core.usage import Ledger
from copilot_pool.runtime.clock import FakeClock
from helpers import config, give_token, pool_of

OK = Verdict(Outcome.OK, 200)


def test_transitions_note_what_is_worth_keeping_and_the_stores_own_note_nothing():
    pool = pool_of(config("alice"), config("bob"))
    pool.take_kept()
    alice, bob = pool.accounts["alice"], pool.accounts["bob"]
    pool.acquire().release()  # picking and releasing changes nothing worth keeping
    assert pool.take_kept() == set()
    pool.record(alice, OK)
    pool.cool(bob, 30)
    assert pool.take_kept() == {"alice", "bob"} and pool.take_kept() == set()
    pool.hold(pool.clock.now() + 10, "storm")
    assert pool.take_kept() == {POOL}
    pool.cooldown_shared(Cooled("alice", None, pool.clock.wall() + 60, "elsewhere"))
    pool.usage_merged(alice, {"served": 3})
    pool.others_in_flight({"alice": 2})
    assert pool.take_kept() == set()  # what came from a store is there already


def test_a_shared_cooldown_only_extends_unless_it_is_the_operators_word():
    pool = pool_of(config("alice"))
    alice, clock = pool.accounts["alice"], pool.clock
    pool.cool(alice, 100, "mine")
    pool.cooldown_shared(Cooled("alice", None, clock.wall() + 50, "shorter"))
    assert alice.cooldown_until == pytest.approx(clock.now() + 100) and alice.cooldown_reason == "mine"
    pool.cooldown_shared(Cooled("alice", None, clock.wall() + 500, "longer"))
    assert alice.cooldown_until == pytest.approx(clock.now() + 500) and alice.cooldown_reason == "longer"
    assert alice.ease == 1  # out of it, it eases back in as after its own 429
    pool.cooldown_shared(Cooled("alice", None, clock.wall(), "", exact=True))  # pool.cooldown alice 0, elsewhere
    assert alice.pickable(clock.now())
    pool.cooldown_shared(Cooled("alice", "gpt-5", clock.wall() + 40, "user_model_rate_limited"))
    assert alice.resting_until("gpt-5") == pytest.approx(clock.now() + 40) and alice.pickable(clock.now())
    pool.cooldown_shared(Cooled(POOL, None, clock.wall() + 20, "storm elsewhere"))
    assert pool.held is not None and pool.held.reason == "storm elsewhere"
    pool.cooldown_shared(Cooled("nobody", None, clock.wall() + 20, "unknown account"))  # ignored


def test_cooldowns_are_exported_on_the_wall_clock():
    clock = FakeClock(start=50.0, wall_offset=1_800_000_000.0)
    pool = pool_of(config("alice"), clock=clock)
    alice = pool.accounts["alice"]
    pool.cool(alice, 30, "user_global_rate_limited")
    pool.cool(alice, 90, "user_model_rate_limited", model="gpt-5")
    assert cooldowns_of(alice, clock) == [
        Cooled("alice", None, 1_800_000_080.0, "user_global_rate_limited"),
        Cooled("alice", "gpt-5", 1_800_000_140.0, "user_model_rate_limited"),
    ]
    clock.advance(31)
    assert [c.model for c in cooldowns_of(alice, clock)] == ["gpt-5"]  # what has ended is not kept


def test_a_restored_failure_holds_only_for_the_credential_it_was_learnt_with():
    before = pool_of(config("alice"))
    before.fail(before.accounts["alice"], "403 no_copilot_access")
    facts = facts_of(before.accounts["alice"], before.clock)
    assert facts["failed"] == "403 no_copilot_access" and facts["credential"] == fingerprint(config("alice"))
    assert "gho_alice" not in str(facts)  # a digest, never the token

    same = Pool(FakeClock())
    same.apply([config("alice")])
    same.restore(same.accounts["alice"], facts)
    assert same.accounts["alice"].base_state is State.FAILED
    assert same.accounts["alice"].last_failure == "403 no_copilot_access"

    renewed = Pool(FakeClock())
    renewed.apply([config("alice", "gho_a_new_token")])
    renewed.restore(renewed.accounts["alice"], facts)
    assert renewed.accounts["alice"].base_state is State.STARTING  # a new credential gets its exchange

    serving = pool_of(config("alice"))
    serving.restore(serving.accounts["alice"], facts)
    assert serving.accounts["alice"].base_state is State.ACTIVE  # it holds a token already: its view is newer


def test_restored_quota_and_paces_keep_their_age_and_yield_to_newer_ones():
    before = pool_of(config("alice"))
    alice = before.accounts["alice"]
    before.quota_seen(alice, Quota(300, 40.0, False, None, before.clock.now() - 10))
    before.record(alice, Verdict(Outcome.RATE_LIMITED, 429, cooldown=5.0, reason="rate_limited"))
    before.record(alice, OK)
    before.clock.advance(20)
    before.record(alice, Verdict(Outcome.RATE_LIMITED, 429, cooldown=5.0, reason="rate_limited"))
    facts = facts_of(alice, before.clock)

    clock = FakeClock(start=7.0, wall_offset=before.clock.wall() - 7.0)  # another process: another monotonic clock
    after = Pool(clock)
    after.apply([config("alice")])
    restored = after.accounts["alice"]
    after.restore(restored, facts)
    assert restored.quota.percent_remaining == 40.0
    assert to_wall(clock, restored.quota.observed_at) == pytest.approx(to_wall(before.clock, alice.quota.observed_at))
    assert restored.pacers[None].rate == pytest.approx(alice.pacers[None].rate)
    assert to_wall(clock, restored.pacers[None].next_at) == pytest.approx(
        to_wall(before.clock, alice.pacers[None].next_at)
    )
    newer = Quota(300, 90.0, False, None, clock.now())
    after.quota_seen(restored, newer)
    after.restore(restored, facts)
    assert restored.quota is newer


def test_usage_counted_elsewhere_adds_up_and_the_budget_sees_it():
    pool = pool_of(config("alice", credit_budget=1.0))
    alice, clock = pool.accounts["alice"], pool.clock
    pool.credits_spent(alice, "gpt-5", 400_000_000)
    this_month = alice.month
    pool.usage_merged(alice, {"served": 4, "rate_limited": 1, "credits:gpt-5": 700_000_000})
    assert (alice.served, alice.rate_limited, alice.credits) == (4, 1, {"gpt-5": 1_100_000_000})
    assert alice.month_nano == 400_000_000  # only the month's own counter counts towards the budget ...
    pool.usage_merged(alice, {f"month:{this_month}": 700_000_000, "month:1999-01": 10**12})
    assert alice.month_nano == 1_100_000_000 and alice.budget_until > clock.now()  # ... and now it is spent
    assert account_counters(alice)[f"month:{this_month}"] == 1_100_000_000


def test_grown_is_what_each_counter_added_and_never_less():
    assert grown({"served": 5, "month:2026-12": 3}, {"served": 2, "month:2026-11": 9}) == {
        "served": 3,
        "month:2026-12": 3,
    }
    assert grown({"served": 2}, {"served": 5}) == {}


def test_least_busy_counts_what_other_proxies_have_in_flight():
    pool = pool_of(config("alice"), config("bob"), config("carol"))
    pool.others_in_flight({"alice": 3, "bob": 1})
    assert pool.acquire().account.name == "carol"
    assert pool.acquire().account.name == "bob"  # bob 1 elsewhere vs carol 1 here vs alice 3: tie, bob less recent
    pool.others_in_flight({})
    assert pool.accounts["alice"].busy == 0


def test_bindings_merge_by_their_latest_use_and_sessions_by_digest():
    from copilot_pool.core.affinity import Affinity
    from copilot_pool.core.sessions import Sessions, digest

    clock = FakeClock()
    affinity = Affinity(clock, ttl=600)
    affinity.put("conv", "alice")
    assert affinity.take_changed() == {"conv": ("alice", clock.now())} and affinity.take_changed() == {}
    affinity.merge("conv", "bob", clock.now() - 5)  # older than ours: ignored
    assert affinity.get("conv") == "alice"
    affinity.merge("conv", "bob", clock.now() + 1)
    affinity.merge("stale", "bob", clock.now() - 601)  # past the TTL
    assert affinity.get("conv") == "bob" and affinity.get("stale") is None and affinity.take_changed() == {}

    sessions = Sessions(clock)
    sessions.merge(digest("token-minted-elsewhere"), "carol", clock.now() + 60)
    assert sessions.account_for("token-minted-elsewhere") == "carol" and sessions.take_changed() == {}
    sessions.bind("mine", "alice", clock.wall() + 100)
    assert list(sessions.take_changed()) == [digest("mine")]


def test_the_ledger_merges_what_users_spent_elsewhere():
    ledger = Ledger()
    wall = 1_800_000_000.0
    ledger.spent("dev", 5, False, wall)
    assert ledger.take_changed() == {"dev"}
    ledger.merged("dev", {"requests": 2, "nano": 7, "day:2027-01-15": 7}, wall)
    spender = ledger.user("dev")
    assert (spender.requests, spender.nano, ledger.spent_today("dev", wall)) == (3, 12, 12)
    assert ledger.take_changed() == set()


def test_kept_state_holds_no_token():
    pool = pool_of(config("alice", "gho_secret_never_kept"))
    alice = pool.accounts["alice"]
    give_token(pool, alice)
    pool.cool(alice, 10)
    pool.record(alice, OK)
    assert "secret" not in str(facts_of(alice, pool.clock)) + str(cooldowns_of(alice, pool.clock))
    assert "tid=" not in str(facts_of(alice, pool.clock))
