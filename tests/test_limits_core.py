"""Limits, AI credits and account safety in the pure core: scoped cooldowns, pacing, storms, easing back in,
credits, budgets and who spent what."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from copilot_pool.core.classify import Outcome, Verdict, classify
from copilot_pool.core.limits import EASE_DONE, Pacer, Scope
from copilot_pool.core.pool import NoAccount, Unavailable, Want
from copilot_pool.core.usage import Ledger, Tail, nano_aiu
from copilot_pool.runtime.clock import FakeClock
from helpers import config, pool_of

WALL = 1_700_000_000.0
OK = Verdict(Outcome.OK, 200)


def limited(code, headers=None):
    body = json.dumps({"error": {"message": "limited", "code": code}}).encode()
    return classify(429, {"retry-after": "30"} if headers is None else headers, body, WALL, 60)


def test_429s_are_scoped_by_what_they_say():
    model = limited("user_model_rate_limited")
    assert (model.scope, model.reason, model.cooldown, model.pool_wide) == (
        Scope.MODEL,
        "user_model_rate_limited",
        30,
        False,
    )
    assert limited("user_global_rate_limited").scope is Scope.ACCOUNT
    assert limited("integration_rate_limited").pool_wide and limited("rate_limited").pool_wide
    assert not limited("user_global_rate_limited").pool_wide
    assert limited("user_model_rate_limited:gpt-5").scope is Scope.MODEL  # details after the colon
    assert limited("extension_blocked", {}).cooldown == 300
    reset = WALL + 7200
    weekly = {"retry-after": "30", "x-usage-ratelimit-weekly": urlencode({"ent": 100, "rem": 0, "rst": _iso(reset)})}
    v = limited("user_weekly_rate_limited", weekly)
    assert (v.reason, v.scope) == ("weekly limit", Scope.ACCOUNT) and v.cooldown == pytest.approx(7200)
    session = {"x-usage-ratelimit-session": urlencode({"ent": 50, "rem": 0.0, "rst": _iso(WALL + 900)})}
    assert limited("rate_limited", session).cooldown == pytest.approx(900)  # its headers name the reset


def _iso(epoch):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_model_limit_leaves_the_account_serving_other_models():
    clock = FakeClock()
    pool = pool_of(config("a"), config("b"), clock=clock)
    a = pool.accounts["a"]
    recorded = pool.record(a, limited("user_model_rate_limited"), model="gpt-5")
    assert recorded.scope is Scope.MODEL and recorded.cooling_until == clock.now() + 30
    gpt5 = Want(model="gpt-5", endpoint="/chat/completions")
    assert {pool.acquire(gpt5).account.name for _ in range(6)} == {"b"}
    other = Want(model="gpt-4o", endpoint="/chat/completions")
    assert "a" in {lease.account.name for lease in (pool.acquire(other) for _ in range(6))}
    assert (
        pool.record(a, limited("user_model_rate_limited", {"retry-after": "5"}), "gpt-5").cooling_until
        == clock.now() + 30
    )
    pool.cool(pool.accounts["b"], 10)
    with pytest.raises(NoAccount) as e:
        pool.acquire(gpt5)
    assert e.value.reason is Unavailable.COOLING and e.value.recovers_in == pytest.approx(10)
    clock.advance(31)
    assert pool.acquire(gpt5).account.name == "a"


def test_distinct_accounts_limited_back_to_back_hold_the_whole_pool():
    clock = FakeClock()
    pool = pool_of(config("a"), config("b"), config("c"), clock=clock)
    a, b = pool.accounts["a"], pool.accounts["b"]
    assert pool.record(a, limited("integration_rate_limited", {"retry-after": "40"})).pool_held_until is None
    assert (
        pool.record(a, limited("integration_rate_limited", {"retry-after": "40"})).pool_held_until is None
    )  # same account
    assert pool.acquire().account.name in {"b", "c"}
    held = pool.record(b, limited("rate_limited", {"retry-after": "20"})).pool_held_until
    assert held == pytest.approx(clock.now() + 20)  # the earliest of the two accounts' ends
    with pytest.raises(NoAccount) as e:
        pool.acquire()  # c is healthy, but rotating to it would only add a 429
    assert e.value.reason is Unavailable.POOL_LIMITED and e.value.recovers_in == pytest.approx(20) and e.value.waitable
    clock.advance(21)
    assert pool.acquire().account.name in {"b", "c"}  # a's own 40 s still run
    pool.storms.accounts = 0  # pool_storm_accounts=0: never hold
    clock.advance(100)
    pool.record(a, limited("integration_rate_limited"))
    assert pool.record(b, limited("integration_rate_limited")).pool_held_until is None


def test_limits_far_apart_are_the_accounts_own():
    clock = FakeClock()
    pool = pool_of(config("a"), config("b"), clock=clock)
    pool.record(pool.accounts["a"], limited("rate_limited", {"retry-after": "1"}))
    clock.advance(61)
    assert pool.record(pool.accounts["b"], limited("rate_limited", {"retry-after": "1"})).pool_held_until is None


def test_an_account_out_of_a_cooldown_eases_back_in():
    clock = FakeClock()
    pool = pool_of(config("a"), clock=clock)
    a = pool.accounts["a"]
    pool.record(a, limited("user_global_rate_limited", {"retry-after": "5"}))
    clock.advance(6)
    first = pool.acquire()
    with pytest.raises(NoAccount) as e:
        pool.acquire()  # one request at a time at first
    assert e.value.reason is Unavailable.BUSY
    pool.record(a, OK)
    first.release()
    allowed = []
    while a.ease is not None:
        leases = []
        try:
            while True:
                leases.append(pool.acquire())
        except NoAccount:
            pass
        allowed.append(len(leases))
        for lease in leases:
            pool.record(a, OK)
            lease.release()
    assert allowed == [2, 4, 8]  # slow start: the allowance doubles with each round of answers
    assert len([pool.acquire() for _ in range(EASE_DONE + 4)]) == EASE_DONE + 4  # back to normal: no cap


def test_the_pacer_learns_the_rate_between_two_limits():
    pacer = Pacer()
    assert pacer.ready(0.0)
    pacer.limited(10.0, rests=1.0)  # the first limit: nothing measured yet; the account rests a second
    assert pacer.rate is None
    for _ in range(20):
        pacer.succeeded()
    pacer.limited(15.0)  # 20 through in the 4 s since the rest ended
    assert pacer.rate == pytest.approx(0.95 * 5) and pacer.measured
    pacer.started(15.0)
    assert not pacer.ready(15.1) and pacer.ready(15.0 + 1 / pacer.rate)
    before = pacer.rate
    pacer.succeeded()
    assert pacer.rate > before  # probing upwards, slowly
    pacer.limited(15.5)
    assert pacer.rate == pytest.approx(0.95 * 1 / 0.5)


def test_a_paced_account_waits_its_turn():
    clock = FakeClock()
    pool = pool_of(config("a"), clock=clock)
    a = pool.accounts["a"]
    pool.record(a, limited("user_global_rate_limited", {"retry-after": "1"}))
    clock.advance(2)
    for _ in range(4):
        pool.record(a, OK)
    # 4 through from the end of the first rest (t=1) to the end of this one (t=3): 2/s, paced at 1.9/s
    pool.record(a, limited("user_global_rate_limited", {"retry-after": "1"}))
    clock.advance(1)
    pool.acquire().release()  # easing allows one in flight; the pace allows the next 1/1.9 s later
    with pytest.raises(NoAccount) as e:
        pool.acquire()
    assert e.value.reason is Unavailable.BUSY and e.value.recovers_in == pytest.approx(1 / 1.9, rel=0.01)
    clock.advance(1 / 1.9)
    pool.acquire()


def test_random_429s_that_reopen_at_once_never_slow_the_account():
    """retry-after-ms: 20 on one answer in ten (the overhead benchmark's churn): nothing to pace. Pacing on them
    measured the pacer's own rate, each 429 slowed it again, and 60 requests a second fell to 5."""
    clock = FakeClock()
    pool = pool_of(config("a"), clock=clock)
    a = pool.accounts["a"]
    for n in range(1000):
        lease = pool.acquire()
        clock.advance(0.01)
        churned = n % 10 == 9
        pool.record(a, limited("user_global_rate_limited", {"retry-after-ms": "20"}) if churned else OK)
        lease.release()
        clock.advance(0.02 if churned else 0.0)
    assert a.pacers.get(None) is None or a.pacers[None].rate is None
    assert a.rate_limited == 100 and a.served == 900


def test_plan_mates_start_from_a_measured_pace():
    clock = FakeClock()
    pool = pool_of(config("a"), config("b"), config("c", account_type="business"), clock=clock)
    a, b, c = (pool.accounts[n] for n in "abc")
    pool.token_received(
        c, c.token.__class__("tid=c", c.token.expires_at, c.token.refresh_at, "https://x", "https://x", "biz")
    )
    pool.record(a, limited("user_global_rate_limited", {"retry-after": "1"}))
    clock.advance(3)
    for _ in range(10):
        pool.record(a, OK)
    pool.record(a, limited("user_global_rate_limited", {"retry-after": "1"}))  # a measured 10 in 3 s
    assert a.pacers[None].rate == pytest.approx(0.95 * 10 / 3)
    assert b.pacers[None].rate == pytest.approx(0.95 * 10 / 3)  # same plan: paced before it meets the limit itself
    assert c.pacers.get(None) is None or c.pacers[None].rate is None  # another plan, other limits


def test_credits_per_account_and_model_and_a_budget():
    clock = FakeClock()
    pool = pool_of(config("a", credit_budget=0.5), config("b"), clock=clock)
    a = pool.accounts["a"]
    pool.credits_spent(a, "gpt-5", 300_000_000)
    pool.credits_spent(a, "claude", 150_000_000)
    assert a.credits == {"gpt-5": 300_000_000, "claude": 150_000_000}
    assert "a" in {pool.acquire().account.name for _ in range(6)}
    pool.credits_spent(a, "gpt-5", 60_000_000)  # 0.51 of 0.5 credits
    assert {pool.acquire().account.name for _ in range(6)} == {"b"}
    pool.apply([config("a", credit_budget=2.0), config("b")])  # a raised budget: back at once
    assert "a" in {pool.acquire().account.name for _ in range(6)}


def test_usage_is_read_from_the_end_of_an_answer():
    assert nano_aiu(b'{"choices": [], "copilot_usage": {"total_nano_aiu": 12345, "token_details": []}}') == 12345
    assert nano_aiu(b'data: {"x": 1}\n\ndata: {"copilot_usage": {"total_nano_aiu":7}}\n\ndata: [DONE]\n\n') == 7
    assert nano_aiu(b'{"error": {"code": "x"}}') is None and nano_aiu(b"") is None
    tail = Tail()
    for chunk in [b"a" * 10_000, b'data: {"copilot_usage": {"total_nano_aiu": 99}}\n\n', b"x" * 100, b""]:
        assert tail(chunk) == chunk  # passed through unchanged
    assert nano_aiu(tail.data) == 99 and len(tail.data) <= 16 * 1024


def test_the_ledger_counts_per_user_and_per_day():
    ledger = Ledger()
    ledger.spent("ann", 2 * 10**9, 1, WALL)
    ledger.spent("ann", None, 0, WALL)
    ledger.spent("ben", 10**9, 0, WALL)
    assert (ledger.users["ann"].requests, ledger.users["ann"].nano, ledger.users["ann"].rate_limited) == (
        2,
        2 * 10**9,
        1,
    )
    assert ledger.spent_today("ann", WALL) == 2 * 10**9 and ledger.spent_today("ann", WALL + 86400) == 0
    assert ledger.spent_today("nobody", WALL) == 0


def test_the_quota_strategy_prefers_the_most_headroom():
    from copilot_pool.core.quota import Quota

    pool = pool_of(config("a", credit_budget=10), config("b"), config("c"), strategy="quota")
    a, b, c = (pool.accounts[n] for n in "abc")
    pool.credits_spent(a, "m", 9 * 10**9)  # 10% of its budget left
    pool.quota_seen(b, Quota(300, 50.0, False, None, 0))
    pool.quota_seen(c, Quota(-1, 100.0, False, None, 0))  # unlimited
    assert pool.acquire().account is c
    pool.quota_seen(c, Quota(300, 5.0, False, None, 0))
    assert {pool.acquire().account.name for _ in range(4)} == {"b"}
