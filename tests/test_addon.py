"""The mitmproxy layer in process, with mitmproxy's own test helpers (no network)."""

from __future__ import annotations

import asyncio
import json

import pytest
from copilot_pool.mitm.addon import CopilotPool
from copilot_pool.runtime.clock import FakeClock
from helpers import give_token
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow, tutils
from test_tokens import ScriptedExchange, no_models, no_user


@pytest.fixture
async def addon(tmp_path):
    accounts = tmp_path / "accounts.json"
    accounts.write_text(
        json.dumps({"accounts": [{"name": "alice", "github_token": "gho_a"}, {"name": "bob", "github_token": "gho_b"}]})
    )
    clock = FakeClock()
    pool_addon = CopilotPool(clock, ScriptedExchange(clock), no_user, no_models)
    with taddons.context(pool_addon) as tctx:
        tctx.configure(pool_addon, pool_accounts=str(accounts), pool_github_token_file=str(tmp_path / "none"))
        pool = pool_addon.service.pool
        for account in pool.accounts.values():
            give_token(pool, account)
        pool_addon.tctx = tctx
        pool_addon.accounts_path = accounts
        yield pool_addon


def pooled_flow():
    flow = tflow.tflow()
    flow.request = tutils.treq(
        scheme=b"https",
        host="api.githubcopilot.com",
        port=443,
        path=b"/chat/completions",
        method=b"POST",
        headers=((b"host", b"api.githubcopilot.com"), (b"authorization", b"Bearer tid=client")),
    )
    return flow


async def test_request_swaps_credential_and_records_account(addon):
    flow = pooled_flow()
    await addon.request(flow)
    name = flow.metadata["copilot_pool.account"]
    assert flow.request.headers["authorization"] == f"Bearer tid={name}"
    assert flow.request.url == "https://api.individual.githubcopilot.com/chat/completions"
    assert name in flow.comment and "least-busy" in flow.comment
    flow.response = tutils.tresp(status_code=200)
    await addon.response(flow)
    assert flow.request.headers["authorization"] == f"Bearer <pool:{name}>"
    assert addon.service.pool.accounts[name].in_flight == 0 and addon.service.pool.accounts[name].served == 1
    assert not addon.attempts.pooled


async def test_error_releases_exactly_once(addon):
    flows = [pooled_flow() for _ in range(4)]
    for flow in flows:
        await addon.request(flow)
    assert sum(a.in_flight for a in addon.service.pool.accounts.values()) == 4
    for flow in flows:
        addon.error(flow)  # client disconnect, killed flow, upstream error: all end here
        addon.error(flow)
        await addon.response(flow)
    assert sum(a.in_flight for a in addon.service.pool.accounts.values()) == 0
    assert not addon.attempts.pooled


async def test_429_becomes_cooldown_with_hint_or_option(addon):
    addon.tctx.configure(addon, pool_cooldown=77, pool_max_attempts=1)
    for headers, expected in [({"retry-after": "12"}, 12), ({}, 77)]:
        flow = pooled_flow()
        await addon.request(flow)
        account = addon.service.pool.accounts[flow.metadata["copilot_pool.account"]]
        flow.response = tutils.tresp(
            status_code=429, headers=tuple((k.encode(), v.encode()) for k, v in headers.items())
        )
        await addon.response(flow)
        assert account.cooldown_until - addon.service.clock.now() == pytest.approx(expected)
        assert flow.marked and f"cooling {expected}s" in flow.comment and account.rate_limited == 1


async def test_passthrough_flows_are_untouched(addon):
    flow = tflow.tflow()
    before = flow.request.copy()
    await addon.request(flow)
    await addon.response(flow)
    assert flow.request.get_state() == before.get_state() and not flow.comment


async def test_response_already_set_by_another_addon_is_left_alone(addon):
    flow = pooled_flow()
    flow.response = tutils.tresp(status_code=407)
    await addon.request(flow)
    assert "copilot_pool.account" not in flow.metadata


def test_status_and_commands(addon):
    lines = addon.commands.status()
    assert (
        len(lines) == 3
        and lines[-1].startswith("state: sqlite ")
        and lines[0].startswith("alice state=active in_flight=0")
    )
    with pytest.raises(exceptions.CommandError, match="no account named 'nobody'"):
        addon.commands.refresh("nobody")
    addon.accounts_path.write_text("{broken")
    with pytest.raises(exceptions.CommandError, match="reload failed, pool unchanged"):
        addon.commands.reload()
    assert set(addon.service.pool.accounts) == {"alice", "bob"}


def test_option_errors_name_the_option(addon):
    with pytest.raises(exceptions.OptionsError, match="pool_cooldown"):
        addon.tctx.configure(addon, pool_cooldown=0)
    with pytest.raises(exceptions.OptionsError, match="pool_github_api"):
        addon.tctx.configure(addon, pool_github_api="ftp://x")
    with pytest.raises(exceptions.OptionsError, match="pool_extra_endpoints: not a scheme://host:port base: 'ftp://x'"):
        addon.tctx.configure(addon, pool_extra_endpoints=["http://127.0.0.1:1", "ftp://x"])
    with pytest.raises(exceptions.OptionsError, match=r"pool_github_api: not an http\(s\) URL: 'x+'\.\.\. \(100000"):
        addon.tctx.configure(addon, pool_github_api="x" * 100_000)  # a short prefix of the value, not all of it
    with pytest.raises(exceptions.OptionsError, match="pool_share_tokens: tokens are shared only through Redis"):
        addon.tctx.configure(addon, pool_share_tokens=True)  # the fixture's pool_state is sqlite


async def test_quota_headers_are_tracked_and_shown_in_status(addon):
    flow = pooled_flow()
    await addon.request(flow)
    name = flow.metadata["copilot_pool.account"]
    flow.response = tutils.tresp(
        status_code=200,
        headers=(
            (
                b"x-quota-snapshot-premium_interactions",
                b"ent=300&ov=0.0&ovPerm=false&rem=90.0&rst=2025-12-01T00%3A00%3A00Z",
            ),
        ),
    )
    await addon.response(flow)
    line = next(line for line in addon.commands.status() if line.startswith(name))
    assert "quota=270/300" in line


async def test_quota_poll_asks_only_about_accounts_not_heard_from_lately():
    import asyncio

    from copilot_pool.core.quota import Quota
    from copilot_pool.runtime.quota_poll import poll_forever
    from helpers import active_pool

    clock = FakeClock()
    pool = active_pool("a", "b", clock=clock)
    asked = []

    async def fetch(config):
        asked.append(config.name)
        return {"quota_snapshots": {"premium_interactions": {"entitlement": 300, "percent_remaining": 10.0}}}

    task = asyncio.create_task(poll_forever(pool, fetch, clock, lambda: 300))
    for _ in range(3):
        await asyncio.sleep(0)
    clock.advance(100)
    pool.quota_seen(pool.accounts["a"], Quota(300, 50.0, False, None, clock.now()))  # a answered a request: fresh
    clock.advance(199)
    for _ in range(3):
        await asyncio.sleep(0)
    assert asked == []
    clock.advance(1)
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    assert asked == ["b"] and pool.accounts["b"].quota.remaining == 30


async def test_request_goes_to_an_extra_endpoint_with_host_header_and_port(addon):
    addon.tctx.configure(addon, pool_extra_endpoints=["http://127.0.0.1:8443"])
    pool = addon.service.pool
    for account in pool.accounts.values():
        give_token(pool, account, endpoint="http://127.0.0.1:8443")
    flow = pooled_flow()
    flow.request.path = "/chat/completions?x=1"
    await addon.request(flow)
    assert flow.request.url == "http://127.0.0.1:8443/chat/completions?x=1"
    assert flow.request.headers["host"] == "127.0.0.1:8443"


async def test_an_untrusted_endpoint_is_never_pointed_at(addon):
    """Tokens that somehow hold an endpoint the policy does not trust (here: set behind the exchange's back)
    get the pool's own 502; the request keeps its original host and the client's credential."""
    pool = addon.service.pool
    for account in pool.accounts.values():
        give_token(pool, account, endpoint="http://127.0.0.1:8443")  # no pool_extra_endpoints for it
    flow = pooled_flow()
    await addon.request(flow)
    assert flow.response.status_code == 502 and b"pool_endpoint_refused" in flow.response.content
    assert flow.request.host == "api.githubcopilot.com" and flow.request.headers["authorization"] == "Bearer tid=client"
    assert all(a.in_flight == 0 for a in pool.accounts.values()) and not addon.attempts.pooled


async def test_a_401_takes_the_account_out_at_once_and_the_failover_picks_another(addon):
    tiers = [{"name": "alice", "github_token": "gho_a"}, {"name": "bob", "github_token": "gho_b", "priority": 1}]
    addon.accounts_path.write_text(json.dumps({"accounts": tiers}))
    addon.commands.reload()  # same credentials: both keep their tokens; alice is tried first while she can serve
    flow = pooled_flow()
    await addon.request(flow)
    assert flow.metadata["copilot_pool.account"] == "alice"
    addon.attempts._resend = resend = Resend()
    flow.response = tutils.tresp(status_code=401)
    await addon.response(flow)
    # nothing yielded to the event loop between the 401 and the re-send: alice's refused token was out already
    assert resend.accounts == ["bob"] and flow.response.status_code == 200
    assert addon.service.pool.accounts["alice"].token is None


class Resend:
    """Stands in for the re-send over the network: answers 200 and notes whose credential it carried."""

    def __init__(self):
        self.accounts = []

    async def __call__(self, request, url, credential):
        import httpx

        self.accounts.append(credential.removeprefix("tid="))
        return 200, httpx.Headers({"content-type": "application/json"}), b"{}"


@pytest.mark.parametrize(
    "reason, recovers_in, status, code, retry_after",
    [
        ("busy", None, 429, "pool_all_busy", "1"),
        ("cooling", 12.2, 429, "pool_all_cooling", "13"),
        ("starting", None, 503, "pool_unavailable", None),
        ("exhausted", None, 502, "pool_attempts_exhausted", None),
        ("unusable", None, 503, "pool_unavailable", None),
        ("empty", None, 503, "pool_unavailable", None),
    ],
)
def test_the_pools_own_answers_say_why_and_when(reason, recovers_in, status, code, retry_after):
    from copilot_pool.core.pool import NoAccount, Unavailable
    from copilot_pool.mitm import answers

    response = answers.no_account(NoAccount(Unavailable(reason), recovers_in))
    error = json.loads(response.content)["error"]
    assert (response.status_code, error["code"], response.headers.get("retry-after")) == (status, code, retry_after)
    assert error["message"] and "{" not in error["message"]
    if retry_after:
        assert retry_after in error["message"] or reason == "busy"


async def test_done_closes_both_http_clients(addon):
    addon.done()
    await asyncio.sleep(0)
    assert addon._github.is_closed and addon.attempts.upstream.is_closed
