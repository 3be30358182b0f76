"""No token-exchange storms: whatever the exchange answers and whatever asks for exchanges (the refresh loop, 401s,
pool.refresh, file changes), one account's exchanges stay spaced, on the fake clock over five simulated minutes."""

import asyncio
import json
import math

import pytest
from copilot_pool.core.classify import Outcome, Verdict
from copilot_pool.core.exchange import ExchangeError, parse_exchange_response, token_lifetime
from copilot_pool.core.model import State
from copilot_pool.runtime.clock import FakeClock
from copilot_pool.runtime.service import PoolService
from copilot_pool.runtime.tokens import MAX_CONCURRENT_EXCHANGES, MIN_EXCHANGE_GAP
from helpers import config
from test_tokens import no_models, no_user

MINUTES = 5


def honest(wall):
    return 200, {}, {"token": "tid=t;exp=1:mac", "expires_at": wall + 1800, "refresh_in": 1500}


def answering(**fields):
    def answer(wall):
        status, headers, body = honest(wall)
        body.update({k: v(wall) if callable(v) else v for k, v in fields.items()})
        return status, headers, {k: v for k, v in body.items() if v is not ...}

    return answer


FAULTY = {
    "expires_at in the past": answering(expires_at=lambda wall: wall - 10),
    "expires_at in 1970": answering(expires_at=5),
    "expires_at in a second": answering(expires_at=lambda wall: wall + 1),
    "expires_at in 5 seconds": answering(expires_at=lambda wall: wall + 5),
    "expires_at missing": answering(expires_at=...),
    "expires_at a string": answering(expires_at="soon"),
    "refresh_in 0": answering(refresh_in=0),
    "refresh_in -5": answering(refresh_in=-5),
    "refresh_in -100": answering(refresh_in=-100),
    "refresh_in NaN": answering(refresh_in=math.nan),
    "refresh_in Infinity": answering(refresh_in=math.inf),
    "refresh_in 1": answering(refresh_in=1),
    "refresh_in missing": answering(refresh_in=...),
    "refresh_in null": answering(refresh_in=None),
    "token missing": answering(token=...),
    "token not ASCII": answering(token="tid=\u00e9t\u00e9"),
    "endpoints hostile": answering(endpoints={"api": "https://evil.example", "proxy": 5}),
    "429 Retry-After 30": lambda wall: (429, {"retry-after": "30"}, {"message": "slow down"}),
    "429 Retry-After -5": lambda wall: (429, {"retry-after": "-5"}, {"message": "slow down"}),
    "403 rate limit": lambda wall: (403, {"x-ratelimit-reset": str(int(wall + 40))}, {"message": "API rate limit"}),
    "500": lambda wall: (500, {}, {}),
    "garbage": lambda wall: (200, {}, b"\xff\xfe<html>"),
    "nested 100000 deep": lambda wall: (200, {}, b"[" * 100_000),
}


class AnsweringExchange:
    """The exchange as github.py runs it, minus HTTP: each call parses what `answer` says GitHub sent."""

    def __init__(self, clock, answer):
        self.clock, self.answer, self.times = clock, answer, []

    async def __call__(self, cfg):
        self.times.append(self.clock.now())
        status, headers, body = self.answer(self.clock.wall())
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return parse_exchange_response(status, raw, cfg.account_type, headers=headers, wall_now=self.clock.wall())


async def run(clock, seconds, tick=0.25, every_tick=lambda: None):
    for _ in range(int(seconds / tick)):
        every_tick()
        clock.advance(tick)
        for _ in range(4):
            await asyncio.sleep(0)


async def exchanges_under(answer, *, refused_always=False, refresh_spam=False):
    """Exchange times of one account over MINUTES simulated minutes, with the triggers asked for every tick:
    a 401 on every token it holds (a Copilot API that refuses everything) and pool.refresh."""
    clock = FakeClock()
    exchange = AnsweringExchange(clock, answer)
    service = PoolService(exchange, no_user, no_models, clock)
    service.apply([config("a")])
    service.start()
    account = service.pool.accounts["a"]

    def triggers():
        if refused_always and account.token is not None:
            service.token_refused(account, account.token_generation, "after a 401 from Copilot")
        if refresh_spam:
            service.spawn(service.refresh("a", reason="pool.refresh"))

    try:
        await run(clock, MINUTES * 60, every_tick=triggers)
    finally:
        service.stop()
    return exchange.times, account


def assert_spaced(times, at_most):
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(times) <= at_most, (len(times), gaps)
    assert all(gap >= MIN_EXCHANGE_GAP * 0.8 for gap in gaps), gaps


@pytest.mark.parametrize("name", FAULTY)
async def test_a_faulty_exchange_answer_is_retried_with_backoff(name):
    times, account = await exchanges_under(FAULTY[name])
    # backoff 1, 2, 4 ... 60 s: about 10 exchanges in 5 minutes (429/403 with a hint: every 30-40 s)
    assert_spaced(times, at_most=14)
    if name not in ("endpoints hostile", "refresh_in 1", "refresh_in Infinity", "expires_at in 5 seconds"):
        assert account.base_state is State.STARTING and account.token is None  # never "active" without a token
        assert account.last_failure


async def test_retry_after_of_a_429_is_honoured():
    times, _ = await exchanges_under(FAULTY["429 Retry-After 30"])
    assert all(b - a >= 30 for a, b in zip(times, times[1:], strict=False)), times


async def test_a_copilot_api_that_refuses_every_token_gets_exponentially_fewer_exchanges():
    times, account = await exchanges_under(honest, refused_always=True)
    assert_spaced(times, at_most=12)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[5] > 20 and "its token is only" in account.last_failure  # 1, 2, 4, 8, 16, 32 ... (jitter)


@pytest.mark.parametrize("name", ["honest", *FAULTY])
async def test_pool_refresh_in_a_loop_is_paced_too(name):
    answer = honest if name == "honest" else FAULTY[name]
    times, _ = await exchanges_under(answer, refresh_spam=True, refused_always=True)
    assert_spaced(times, at_most=14)


async def test_steps_start_again_once_a_token_served():
    clock = FakeClock()
    exchange = AnsweringExchange(clock, honest)
    service = PoolService(exchange, no_user, no_models, clock)
    service.apply([config("a")])
    account = service.pool.accounts["a"]

    async def refresh_now():
        task = asyncio.ensure_future(service.keeper.refresh(account))
        while not task.done():
            await run(clock, 0.25)
        assert task.result()
        return exchange.times[-1] - exchange.times[-2] if len(exchange.times) > 1 else None

    gaps = [await refresh_now() for _ in range(6)][1:]  # re-exchanging young tokens climbs the steps
    assert gaps[-1] > 12 and gaps == sorted(gaps), gaps  # 1, 2, 4, 8, 16 (+-20%)
    service.pool.record(account, Verdict(Outcome.OK, 200))  # the token served
    assert await refresh_now() < 1.5  # back to the first step


def test_token_lifetime_follows_refresh_in_on_the_local_clock():
    from copilot_pool.core.exchange import Exchanged

    wall = 1_700_000_000.0

    def lifetime(refresh_in, expires_in):
        return token_lifetime(Exchanged("t", refresh_in, wall + expires_in, None, None, ""), wall)

    assert lifetime(1500, 1800) == (1560, 1440)  # VS Code: refresh_in + 60 s, refreshed a minute early
    assert lifetime(1500, 600) == (600, 540)  # never beyond what the server allows
    assert lifetime(1, 1800) == (61, 30.5)  # a tiny refresh_in: no sooner than half the lifetime
    assert lifetime(1e12, 1e12)[0] == 24 * 3600  # an absurd promise is not believed
    for refresh_in, expires_in in ((1500, -1), (1500, 0), (1500, 1.5)):
        with pytest.raises(ExchangeError) as e:
            lifetime(refresh_in, expires_in)
        assert not e.value.permanent


async def test_exchanges_run_with_bounded_concurrency():
    clock = FakeClock()
    running, peak = 0, 0

    async def slow_exchange(cfg):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        _, _, body = honest(clock.wall())
        return parse_exchange_response(200, json.dumps(body).encode(), wall_now=clock.wall())

    service = PoolService(slow_exchange, no_user, no_models, clock)
    service.apply([config(f"a{i}") for i in range(200)])
    service.start()
    for _ in range(200):
        await asyncio.sleep(0.002)
        if all(a.base_state is State.ACTIVE for a in service.pool.accounts.values()):
            break
    service.stop()
    assert all(a.base_state is State.ACTIVE for a in service.pool.accounts.values())
    assert peak == MAX_CONCURRENT_EXCHANGES
