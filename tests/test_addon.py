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
def addon(tmp_path):
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({"accounts": [{"name": "alice", "github_token": "gho_a"}, {"name": "bob", "github_token": "gho_b"}]}))
    pool_addon = CopilotPool()
    with taddons.context(pool_addon) as tctx:
        tctx.configure(pool_addon, pool_accounts=str(accounts), pool_github_token_file=str(tmp_path / "none"))
        clock = FakeClock()
        pool_addon.service.pool.clock = pool_addon.service.clock = clock
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


def test_request_swaps_credential_and_records_account(addon):
    flow = pooled_flow()
    addon.request(flow)
    name = flow.metadata["copilot_pool.account"]
    assert flow.request.headers["authorization"] == f"Bearer tid={name}"
    assert flow.request.url == "https://api.example/chat/completions"
    assert name in flow.comment and "least-busy" in flow.comment
    flow.response = tutils.tresp(status_code=200)
    addon.response(flow)
    assert flow.request.headers["authorization"] == f"Bearer <pool:{name}>"
    assert addon.service.pool.accounts[name].in_flight == 0 and addon.service.pool.accounts[name].served == 1


def test_error_releases_exactly_once(addon):
    flows = [pooled_flow() for _ in range(4)]
    for flow in flows:
        addon.request(flow)
    assert sum(a.in_flight for a in addon.service.pool.accounts.values()) == 4
    for flow in flows:
        addon.error(flow)  # client disconnect, killed flow, upstream error: all end here
        addon.error(flow)
        addon.response(flow)
    assert sum(a.in_flight for a in addon.service.pool.accounts.values()) == 0
    assert not addon.leases


def test_429_becomes_cooldown_with_hint_or_option(addon):
    addon.tctx.configure(addon, pool_cooldown=77)
    for headers, expected in [({"retry-after": "12"}, 12), ({}, 77)]:
        flow = pooled_flow()
        addon.request(flow)
        account = addon.service.pool.accounts[flow.metadata["copilot_pool.account"]]
        flow.response = tutils.tresp(status_code=429, headers=tuple((k.encode(), v.encode()) for k, v in headers.items()))
        addon.response(flow)
        assert addon.service.pool.cooldown_remaining(account) == pytest.approx(expected)
        assert flow.marked and f"cooling {expected}s" in flow.comment and account.rate_limited == 1


def test_passthrough_flows_are_untouched(addon):
    flow = tflow.tflow()
    before = flow.request.copy()
    addon.request(flow)
    addon.response(flow)
    assert flow.request.get_state() == before.get_state() and not flow.comment


def test_response_already_set_by_another_addon_is_left_alone(addon):
    flow = pooled_flow()
    flow.response = tutils.tresp(status_code=407)
    addon.request(flow)
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
