import asyncio

import pytest
from copilot_pool.core.exchange import Exchanged, ExchangeError, parse_exchange_response
from copilot_pool.core.model import State
from copilot_pool.runtime.clock import FakeClock
from copilot_pool.runtime.service import PoolService, UnknownAccount
from helpers import config


async def no_user(config):
    raise ValueError("no quota in these tests")


async def no_models(config, token):
    raise ValueError("no catalogues in these tests")


def service_with(exchange, clock):
    return PoolService(exchange, no_user, no_models, clock)


class ScriptedExchange:
    """Answers exchanges from a script of results; counts calls and the most concurrent ones."""

    def __init__(self, clock, *results, delay=0.0, refresh_in=1500):
        self.clock, self.results, self.delay, self.refresh_in = clock, list(results), delay, refresh_in
        self.calls = 0
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}

    async def __call__(self, cfg):
        self.calls += 1
        self.in_flight[cfg.name] = self.in_flight.get(cfg.name, 0) + 1
        self.max_in_flight[cfg.name] = max(self.max_in_flight.get(cfg.name, 0), self.in_flight[cfg.name])
        try:
            await asyncio.sleep(self.delay)
            result = self.results.pop(0) if self.results else "ok"
            if isinstance(result, Exception):
                raise result
            return Exchanged(
                f"tid={cfg.name}-{self.calls}",
                self.refresh_in,
                self.clock.wall() + 1800,
                "https://api.x",
                "https://proxy.x",
                "sku_x",
            )
        finally:
            self.in_flight[cfg.name] -= 1


def transient():
    return ExchangeError("token exchange answered 502", permanent=False)


def permanent():
    return ExchangeError("GitHub rejected the token (401)", permanent=True)


async def started(exchange, *names, clock):
    service = service_with(exchange, clock)
    service.apply([config(n) for n in names])
    service.start()
    await asyncio.sleep(0.01)
    return service


async def test_each_account_gets_its_own_token_and_loop():
    clock = FakeClock()
    exchange = ScriptedExchange(clock)
    service = await started(exchange, "a", "b", clock=clock)
    try:
        a, b = service.pool.accounts["a"], service.pool.accounts["b"]
        assert a.base_state is b.base_state is State.ACTIVE
        assert a.token.value != b.token.value
        assert set(service.keeper.loops) == {"a", "b"}
        # VS Code's rule: the local lifetime is refresh_in + 60 s on our clock, refreshed before refresh_in
        assert a.token.expires_at == pytest.approx(clock.now() + 1560, abs=2)
        assert a.token.refresh_at < clock.now() + 1500
    finally:
        service.stop()


async def test_loop_refreshes_before_expiry():
    clock = FakeClock()
    exchange = ScriptedExchange(clock)
    service = service_with(exchange, clock)
    service.apply([config("a")])
    account = service.pool.accounts["a"]
    service.start()
    await asyncio.sleep(0.01)
    tokens = [account.token]
    for _ in range(3):
        assert clock.now() < account.token.refresh_at < account.token.expires_at
        clock.advance(account.token.refresh_at - clock.now() + 0.1)
        await asyncio.sleep(0.01)
        assert account.token is not tokens[-1] and account.token.expires_at > clock.now()
        tokens.append(account.token)
    assert exchange.calls == 4 and account.base_state is State.ACTIVE
    service.stop()


async def test_loop_retries_with_backoff_before_the_token_runs_out():
    clock = FakeClock()
    exchange = ScriptedExchange(clock, "ok", transient(), transient(), "ok")
    service = await started(exchange, "a", clock=clock)
    account = service.pool.accounts["a"]
    first = account.token
    clock.advance(first.refresh_at - clock.now() + 0.1)
    await asyncio.sleep(0.01)
    assert exchange.calls == 2 and account.token is first and account.base_state is State.ACTIVE
    for _ in range(2):
        clock.advance(3)  # backoff: about 1 s, then about 2 s
        await asyncio.sleep(0.01)
    assert exchange.calls == 4 and account.token is not first
    assert clock.now() < first.expires_at
    service.stop()


async def test_failed_refresh_keeps_working_token_and_retries():
    clock = FakeClock()
    exchange = ScriptedExchange(clock, "ok", transient(), transient(), "ok")
    service = service_with(exchange, clock)
    service.apply([config("a")])
    account = service.pool.accounts["a"]
    assert await service.keeper.refresh(account)
    first = account.token
    clock.advance(1.3)  # replacing a token seconds old waits one backoff step (1 s +-20%)
    assert not await service.keeper.refresh(account)
    assert account.token is first and account.base_state is State.ACTIVE
    assert account.last_failure == "token exchange answered 502"
    assert service.pool.acquire().account is account  # still serving with the old token


async def test_permanent_failure_marks_failed_and_stops_loop():
    clock = FakeClock()
    exchange = ScriptedExchange(clock, permanent())
    service = await started(exchange, "a", clock=clock)
    account = service.pool.accounts["a"]
    await asyncio.sleep(0.01)
    assert account.base_state is State.FAILED and "401" in account.last_failure
    assert service.keeper.loops["a"].done() and exchange.calls == 1
    service.stop()


async def test_fifty_concurrent_triggers_one_exchange_at_a_time_and_lock_map_empties():
    clock = FakeClock()
    exchange = ScriptedExchange(clock, delay=0.005)
    service = service_with(exchange, clock)
    service.apply([config("a"), config("b")])
    a, b = service.pool.accounts["a"], service.pool.accounts["b"]
    results = await asyncio.gather(
        *[service.keeper.refresh(a, invalidate=True) for _ in range(50)], service.keeper.refresh(b)
    )
    assert all(results)
    assert exchange.max_in_flight == {"a": 1, "b": 1}  # never two exchanges in flight for one account
    assert exchange.calls < 10  # waiting triggers reuse the exchange that finished while they waited
    assert service.keeper._locks == {}


async def test_invalidate_takes_account_out_until_new_token():
    clock = FakeClock()
    exchange = ScriptedExchange(clock, "ok", delay=0.01)
    service = service_with(exchange, clock)
    service.apply([config("a")])
    account = service.pool.accounts["a"]
    await service.keeper.refresh(account)
    task = asyncio.create_task(service.keeper.refresh(account, invalidate=True))
    await asyncio.sleep(0)
    assert account.base_state is State.STARTING and account.token is None
    clock.advance(1.3)  # the second exchange waits out one backoff step
    assert await task and account.base_state is State.ACTIVE


async def test_credential_change_restarts_exchange_and_discards_stale_answer():
    clock = FakeClock()
    exchange = ScriptedExchange(clock, delay=0.02)
    service = await started(exchange, "a", clock=clock)
    await asyncio.sleep(0.05)
    account = service.pool.accounts["a"]
    service.apply([config("a", "gho_new")])
    assert account.base_state is State.STARTING and account.token is None
    await asyncio.sleep(0)
    clock.advance(1.3)
    await asyncio.sleep(0.05)
    assert account.base_state is State.ACTIVE and exchange.calls == 2
    service.stop()


async def test_removed_account_loop_stops():
    clock = FakeClock()
    service = await started(ScriptedExchange(clock), "a", "b", clock=clock)
    loop_a = service.keeper.loops["a"]
    service.apply([config("b")])
    await asyncio.sleep(0)
    assert loop_a.cancelled() and set(service.keeper.loops) == {"b"}
    service.stop()


async def test_unknown_account_is_named():
    service = service_with(ScriptedExchange(FakeClock()), FakeClock())
    with pytest.raises(UnknownAccount, match="'nobody'"):
        await service.refresh("nobody")


def test_parse_exchange_response_classifies():
    ok = parse_exchange_response(
        200, b'{"token":"t","expires_at":2,"refresh_in":3,"endpoints":{"api":"https://a"},"sku":"s"}', "individual"
    )
    assert (ok.token, ok.api_endpoint, ok.proxy_endpoint, ok.sku) == ("t", "https://a", None, "s")  # judged later
    for status, body, is_permanent in [
        (401, b"{}", True),
        (403, b'{"message":"x","error_details":{"notification_id":"no_copilot_access"}}', True),
        (403, b'{"message":"API rate limit exceeded"}', False),
        (500, b"", False),
        (200, b"not json", False),
        (200, b'{"token":"t","expires_at":2}', False),  # no refresh_in: no way to know when to refresh
    ]:
        with pytest.raises(ExchangeError) as e:
            parse_exchange_response(status, body, "individual")
        assert e.value.permanent is is_permanent, (status, body)


async def test_a_stuck_exchange_does_not_block_other_accounts():
    clock = FakeClock()
    release_a = asyncio.Event()
    fast = ScriptedExchange(clock)

    async def exchange(cfg):
        if cfg.name == "a":
            await release_a.wait()
        return await fast(cfg)

    service = service_with(exchange, clock)
    service.apply([config("a"), config("b")])
    stuck = asyncio.create_task(service.keeper.refresh(service.pool.accounts["a"]))
    await asyncio.sleep(0)
    assert await asyncio.wait_for(service.keeper.refresh(service.pool.accounts["b"]), 1)
    assert not stuck.done() and service.pool.accounts["a"].base_state is State.STARTING
    release_a.set()
    assert await stuck and service.keeper._locks == {}
