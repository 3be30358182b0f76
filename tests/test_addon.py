"""The mitmproxy layer in process, with mitmproxy's own test helpers (no network)."""

from __future__ import annotations

import json

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow, tutils

from copilot_pool.addon import CopilotPool
from copilot_pool.clock import FakeClock
from helpers import give_token


@pytest.fixture
async def addon(tmp_path):
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({"accounts": [{"name": "alice", "github_token": "gho_a"}, {"name": "bob", "github_token": "gho_b"}]}))
    pool_addon = CopilotPool()
    with taddons.context(pool_addon) as tctx:
        tctx.configure(pool_addon, pool_accounts=str(accounts), pool_github_token_file=str(tmp_path / "none"))
        clock = FakeClock()
        pool_addon.service.pool.clock = pool_addon.service.clock = pool_addon.affinity.clock = clock
        for account in pool_addon.service.pool.accounts.values():
            give_token(account, clock)
        pool_addon.tctx = tctx
        pool_addon.accounts_path = accounts
        yield pool_addon


def pooled_flow():
    flow = tflow.tflow()
    flow.request = tutils.treq(scheme=b"https", host="api.githubcopilot.com", port=443, path=b"/chat/completions", method=b"POST",
                               headers=((b"host", b"api.githubcopilot.com"), (b"authorization", b"Bearer tid=client")))
    return flow


async def test_request_swaps_credential_and_records_account(addon):
    flow = pooled_flow()
    await addon.request(flow)
    name = flow.metadata["copilot_pool.account"]
    assert flow.request.headers["authorization"] == f"Bearer tid={name}"
    assert flow.request.url == "https://api.example/chat/completions"
    assert name in flow.comment and "least-busy" in flow.comment
    flow.response = tutils.tresp(status_code=200)
    await addon.response(flow)
    assert flow.request.headers["authorization"] == f"Bearer <pool:{name}>"
    assert addon.service.pool.accounts[name].in_flight == 0 and addon.service.pool.accounts[name].served == 1


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
    assert not addon.pooled


async def test_429_becomes_cooldown_with_hint_or_option(addon):
    addon.tctx.configure(addon, pool_cooldown=77, pool_max_attempts=1)
    for headers, expected in [({"retry-after": "12"}, 12), ({}, 77)]:
        flow = pooled_flow()
        await addon.request(flow)
        account = addon.service.pool.accounts[flow.metadata["copilot_pool.account"]]
        flow.response = tutils.tresp(status_code=429, headers=tuple((k.encode(), v.encode()) for k, v in headers.items()))
        await addon.response(flow)
        assert addon.service.pool.cooldown_remaining(account) == pytest.approx(expected)
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
    lines = addon.status()
    assert len(lines) == 2 and lines[0].startswith("alice state=active in_flight=0")
    assert "error: no account named 'nobody'" in addon.refresh("nobody")
    addon.accounts_path.write_text("{broken")
    assert addon.reload().startswith("reload failed, pool unchanged")
    assert set(addon.service.pool.accounts) == {"alice", "bob"}


def test_option_errors_name_the_option(addon):
    with pytest.raises(exceptions.OptionsError, match="pool_cooldown"):
        addon.tctx.configure(addon, pool_cooldown=0)
    with pytest.raises(exceptions.OptionsError, match="pool_github_api"):
        addon.tctx.configure(addon, pool_github_api="ftp://x")


async def test_quota_headers_are_tracked_and_shown_in_status(addon):
    flow = pooled_flow()
    await addon.request(flow)
    name = flow.metadata["copilot_pool.account"]
    flow.response = tutils.tresp(status_code=200, headers=((b"x-quota-snapshot-premium_interactions", b"ent=300&ov=0.0&ovPerm=false&rem=90.0&rst=2025-12-01T00%3A00%3A00Z"),))
    await addon.response(flow)
    line = next(line for line in addon.status() if line.startswith(name))
    assert "quota=270/300" in line


async def test_quota_poll_asks_only_about_accounts_not_heard_from_lately():
    from copilot_pool.quota import Quota, poll_forever
    from helpers import active_pool

    clock = FakeClock()
    pool = active_pool("a", "b", clock=clock)
    asked = []

    async def fetch(config):
        asked.append(config.name)
        return {"quota_snapshots": {"premium_interactions": {"entitlement": 300, "percent_remaining": 10.0}}}

    import asyncio

    task = asyncio.create_task(poll_forever(lambda: pool.accounts.values(), fetch, clock, lambda: 300))
    for _ in range(3):
        await asyncio.sleep(0)
    clock.advance(100)
    pool.accounts["a"].quota = Quota(300, 50.0, False, None, clock.now())  # a answered a request: fresh
    clock.advance(199)
    for _ in range(3):
        await asyncio.sleep(0)
    assert asked == []
    clock.advance(1)
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    assert asked == ["b"] and pool.accounts["b"].quota.remaining == 30


async def test_request_goes_to_the_endpoint_with_host_header_port_and_prefix(addon):
    from dataclasses import replace

    for account in addon.service.pool.accounts.values():
        account.token = replace(account.token, api_endpoint="http://127.0.0.1:8443/base/")
    flow = pooled_flow()
    flow.request.path = "/chat/completions?x=1"
    await addon.request(flow)
    assert flow.request.url == "http://127.0.0.1:8443/base/chat/completions?x=1"
    assert flow.request.headers["host"] == "127.0.0.1:8443"
