"""pool_share_tokens, in the token keeper: proxies sharing a store do one exchange per account. The share here is
an in-memory stand-in with the Redis store's contract (tests/test_e2e_shared_state.py runs the real one)."""

import asyncio
import dataclasses

from copilot_pool.core.model import State
from copilot_pool.runtime.clock import FakeClock
from copilot_pool.runtime.state.store import SharedToken, StoreDown
from helpers import config
from test_tokens import ScriptedExchange, service_with


class MemoryShare:
    """Tokens by account, each with its credential digest and its end on the clock; claims by account."""

    def __init__(self, clock, down=False):
        self.clock, self.down = clock, down
        self.tokens: dict[str, tuple[str, SharedToken, float]] = {}
        self.claims: dict[str, float] = {}

    def _reachable(self):
        if self.down:
            raise StoreDown("ConnectionError: refused")

    async def shared_token(self, account, credential):
        self._reachable()
        kept = self.tokens.get(account)
        if kept is None or kept[0] != credential or kept[2] <= self.clock.now():
            return None
        t = kept[1]
        return SharedToken(t.token, kept[2] - self.clock.now(), t.refresh_lead, t.api_endpoint, t.proxy_endpoint, t.sku)

    async def claim_exchange(self, account, seconds):
        self._reachable()
        if self.claims.get(account, -1) > self.clock.now():
            return False
        self.claims[account] = self.clock.now() + seconds
        return True

    async def share_token(self, account, credential, token):
        self._reachable()
        self.tokens[account] = (credential, token, self.clock.now() + token.lifetime)
        self.claims.pop(account, None)


class NamedExchange(ScriptedExchange):
    """Each proxy's tokens are its own: tid=PROXY.ACCOUNT-N."""

    proxies = 0

    def __init__(self, clock, **kw):
        super().__init__(clock, **kw)
        NamedExchange.proxies += 1
        self.proxy = NamedExchange.proxies

    async def __call__(self, cfg):
        exchanged = await super().__call__(cfg)
        return dataclasses.replace(exchanged, token=exchanged.token.replace("tid=", f"tid={self.proxy}."))


def proxy(clock, share, *names, delay=0.0, github_token=None):
    exchange = NamedExchange(clock, delay=delay)
    service = service_with(exchange, clock)
    service.apply([config(n, github_token) for n in names])
    service.keeper.share = share
    return service, exchange


async def settle():
    for _ in range(5):
        await asyncio.sleep(0.01)


async def one_after_the_other(clock, share):
    """Proxies A and B on one share, each with alice: B starts once A holds its token."""
    a, b = proxy(clock, share, "alice"), proxy(clock, share, "alice")
    for service, _ in (a, b):
        service.start()
        await settle()
    return a, b


async def test_the_second_proxy_takes_the_token_the_first_exchanged():
    clock = FakeClock()
    (a, exchange_a), (b, exchange_b) = await one_after_the_other(clock, MemoryShare(clock))
    token_a, token_b = a.pool.accounts["alice"].token, b.pool.accounts["alice"].token
    assert (exchange_a.calls, exchange_b.calls) == (1, 0)
    assert token_b.value == token_a.value and b.pool.accounts["alice"].base_state is State.ACTIVE
    assert abs(token_b.refresh_at - token_a.refresh_at) < 0.01  # due together: one of them exchanges then
    a.stop(), b.stop()


async def test_proxies_starting_together_wait_for_the_one_that_claimed_the_exchange():
    clock = FakeClock()
    share = MemoryShare(clock)
    proxies = [proxy(clock, share, "alice", "bob", delay=0.05) for _ in range(3)]
    for service, _ in proxies:
        service.start()
    for _ in range(10):  # the claim holders' exchanges take 50 ms; the others look again every CLAIM_POLL
        await asyncio.sleep(0.02)
        clock.advance(0.2)
    assert sum(exchange.calls for _, exchange in proxies) == 2  # alice once, bob once
    for name in ("alice", "bob"):
        assert len({service.pool.accounts[name].token.value for service, _ in proxies}) == 1
    for service, _ in proxies:
        service.stop()


async def test_a_refused_token_is_replaced_once_and_the_others_take_the_replacement():
    clock = FakeClock()
    (a, exchange_a), (b, exchange_b) = await one_after_the_other(clock, MemoryShare(clock))
    old = a.pool.accounts["alice"].token.value
    clock.advance(120)  # past the backoff step that guards a young token
    assert await a.refresh("alice", invalidate=True, reason="401")  # A's copy was refused: the shared one is old
    new = a.pool.accounts["alice"].token.value
    assert new != old and exchange_a.calls == 2
    assert await b.refresh("alice", invalidate=True, reason="401")  # B met the same refusal: it takes A's new one
    assert b.pool.accounts["alice"].token.value == new and exchange_b.calls == 0
    a.stop(), b.stop()


async def test_a_token_for_another_credential_or_an_unreachable_share_means_exchanging_here():
    clock = FakeClock()
    share = MemoryShare(clock)
    a, _ = proxy(clock, share, "alice")
    other, exchange_other = proxy(clock, share, "alice", github_token="ghu_another_credential")
    a.start()
    await settle()
    other.start()
    await settle()
    assert exchange_other.calls == 1  # never the token of a credential it does not hold
    assert other.pool.accounts["alice"].token.value != a.pool.accounts["alice"].token.value

    down, exchange_down = proxy(clock, MemoryShare(clock, down=True), "alice")
    down.start()
    await settle()
    assert exchange_down.calls == 1 and down.pool.accounts["alice"].base_state is State.ACTIVE
    a.stop(), other.stop(), down.stop()


async def test_a_shared_token_due_for_refresh_is_not_taken():
    clock = FakeClock()
    share = MemoryShare(clock)
    a, _ = proxy(clock, share, "alice")
    a.start()
    await settle()
    a.stop()
    token = a.pool.accounts["alice"].token
    clock.advance(token.refresh_at - clock.now() - 30)  # 30 s before it is due
    b, exchange_b = proxy(clock, share, "alice")
    b.start()
    await settle()
    assert exchange_b.calls == 1 and b.pool.accounts["alice"].token.value != token.value
    b.stop()
