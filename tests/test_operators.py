"""Operators' view, pure parts and the mitmproxy layer in process: redaction, state log, status page, guard,
commands."""

from __future__ import annotations

import json
import logging
import re

import pytest
from copilot_pool.core import quota
from copilot_pool.core.classify import Outcome, Verdict
from copilot_pool.core.model import CopilotToken, State
from copilot_pool.mitm.addon import CopilotPool
from copilot_pool.mitm.guard import exposure_problem, is_loopback, readable_by_others
from copilot_pool.observe.redact import RedactFilter, redact
from copilot_pool.observe.statelog import CooldownLog, summary_line
from copilot_pool.observe.status import RecentEvents, state_text
from copilot_pool.runtime.clock import FakeClock
from helpers import active_pool, give_token
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow, tutils
from test_tokens import ScriptedExchange, no_models, no_user

COPILOT_TOKEN = "tid=0123abcd;exp=1700000000;sku=copilot_for_individuals_subscriber;proxy-ep=127.0.0.1:1;8kp=1:deadbeef"
GITHUB_TOKENS = ["gho_16C7e42F292c6912E7710c838347Ae178B4a", "ghu_abc123", "ghp_XYZ_987", "github_pat_11ABCDEFG_xyz"]


@pytest.mark.parametrize("token", GITHUB_TOKENS + [COPILOT_TOKEN])
def test_redact_masks_every_token_shape(token):
    text = f'Authorization: Bearer {token}, "{token}" ({token})'
    masked = redact(text)
    assert token not in masked and masked.count("***") == 3
    assert redact("pool: account alice active (sku x)") == "pool: account alice active (sku x)"


def test_redact_filter_masks_arguments_and_exceptions():
    logger = logging.getLogger("copilot_pool.test_redact")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addFilter(RedactFilter())
    events = RecentEvents()
    logger.addHandler(events)
    logger.info("sent %s to %s", GITHUB_TOKENS[0], "api")
    try:
        raise ValueError(f"bad token {COPILOT_TOKEN}")
    except ValueError:
        logger.exception("exchange broke")
    messages = " ".join(e["message"] for e in events.events)
    assert "sent gho_*** to api" in messages and "ValueError: bad token tid=***" in messages
    assert GITHUB_TOKENS[0] not in messages and COPILOT_TOKEN not in messages


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_cooldown_log_reports_start_move_and_end():
    clock = FakeClock()
    pool = active_pool("alice", "bob", clock=clock)
    logger = logging.getLogger("copilot_pool.test_cooldownlog")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = Lines()
    logger.addHandler(handler)
    cooldowns = CooldownLog(pool, logger)
    alice, bob = pool.accounts["alice"], pool.accounts["bob"]

    assert cooldowns.sweep() == []
    pool.cool(alice, 30, "user_global_rate_limited")
    [line] = cooldowns.sweep()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
    assert re.fullmatch(rf"pool: account alice cooling until {stamp} \(30s\): user_global_rate_limited", line)
    clock.advance(10)
    pool.cool(alice, 5)  # cooldowns only extend: nothing moved
    assert cooldowns.sweep() == []
    pool.cool(alice, 100, "weekly limit")
    assert cooldowns.sweep()[0].endswith("(100s): weekly limit")
    clock.advance(101)
    assert cooldowns.sweep() == ["pool: account alice active again: cooldown over"]
    assert cooldowns.sweep() == []
    pool.cool(bob, 10)
    cooldowns.sweep()
    pool.fail(bob, "GitHub rejected the token (401)")  # its failure has its own line, where it happens
    assert cooldowns.sweep() == []
    assert [r.getMessage() for r in handler.records] == [
        line,
        handler.records[1].getMessage(),
        "pool: account alice active again: cooldown over",
        handler.records[3].getMessage(),
    ]
    assert all(r.levelno == logging.INFO for r in handler.records)
    pool.cool(alice, 20, "user_model_rate_limited", model="gpt-5")  # alice keeps serving the other models
    model_line = cooldowns.sweep()[0]
    assert re.fullmatch(
        rf"pool: account alice cooling for gpt-5 until {stamp} \(20s\): user_model_rate_limited", model_line
    )
    clock.advance(21)
    assert cooldowns.sweep() == ["pool: account alice serves gpt-5 again: cooldown over"]
    pool.hold(clock.now() + 5, "integration_rate_limited on 2 accounts at once")
    assert cooldowns.sweep() == []  # its start is logged where it happens, with why
    clock.advance(6)
    assert cooldowns.sweep() == ["pool: the hold on the whole pool is over; accounts ease back in"]


def test_summary_line_counts_states():
    pool = active_pool("alice", "bob", "carol")
    pool.cool(pool.accounts["bob"], 10)
    pool.disable(pool.accounts["carol"])
    for _ in range(7):
        pool.record(pool.accounts["alice"], Verdict(Outcome.OK, 200))
    for _ in range(2):
        pool.record(pool.accounts["bob"], Verdict(Outcome.RATE_LIMITED, 429, cooldown=10))
    assert (
        summary_line(pool)
        == "pool: summary: 3 account(s) (1 active, 1 cooling, 1 disabled); 0 in flight, 7 served, 2 429s"
    )


@pytest.fixture
def addon_with_tokens(tmp_path):
    accounts = tmp_path / "accounts.json"
    accounts.write_text(
        json.dumps(
            {
                "accounts": [
                    {"name": "alice", "github_token": GITHUB_TOKENS[0]},
                    {"name": "bob", "github_token": "gho_bob"},
                ]
            }
        )
    )
    clock = FakeClock()
    pool_addon = CopilotPool(clock, ScriptedExchange(clock), no_user, no_models)
    with taddons.context(pool_addon) as tctx:
        tctx.configure(pool_addon, pool_accounts=str(accounts), pool_github_token_file=str(tmp_path / "none"))
        for account in pool_addon.service.pool.accounts.values():
            give_token(pool_addon.service.pool, account)
        yield pool_addon, pool_addon.status_page, clock


def status_flow(path: str, method: str = "GET"):
    flow = tflow.tflow()
    flow.request = tutils.treq(
        scheme=b"http",
        host="copilot-pool",
        port=80,
        path=path.encode(),
        method=method.encode(),
        headers=((b"host", b"copilot-pool"),),
    )
    return flow


def test_status_page_renders_json_html_metrics_without_tokens(addon_with_tokens):
    pool_addon, page, clock = addon_with_tokens
    pool = pool_addon.service.pool
    alice = pool.accounts["alice"]
    pool.token_received(
        alice,
        CopilotToken(
            COPILOT_TOKEN,
            alice.token.expires_at,
            alice.token.refresh_at,
            "https://api.example",
            "https://proxy.example",
            "sku1",
        ),
    )
    for _ in range(3):
        pool.record(pool.accounts["bob"], Verdict(Outcome.RATE_LIMITED, 429, cooldown=90))
    pool.fail(alice, f"refused {GITHUB_TOKENS[0]}")  # even a token-shaped reason is masked
    pool.quota_seen(
        pool.accounts["bob"],
        quota.from_headers(
            {"x-quota-snapshot-premium_interactions": "ent=300&ov=0.0&ovPerm=false&rem=42.0&rst=x"}, clock.now()
        ),
    )

    bodies = {}
    for path in ("/", "/status.json", "/metrics"):
        flow = status_flow(path)
        page.answer(flow)
        assert flow.response.status_code == 200
        bodies[path] = flow.response.text
    for body in bodies.values():
        assert COPILOT_TOKEN not in body and GITHUB_TOKENS[0] not in body and "gho_bob" not in body
    status = json.loads(bodies["/status.json"])
    accounts = {a["name"]: a for a in status["accounts"]}
    assert accounts["alice"]["state"] == "failed" and accounts["alice"]["last_failure"] == "refused gho_***"
    assert accounts["bob"]["state"] == "cooling" and accounts["bob"]["cooldown_remaining_s"] == 90
    assert accounts["bob"]["quota"]["remaining_percent"] == 42.0 and accounts["bob"]["token_expires_in_s"] == 3600
    assert 'copilot_pool_account_state{account="bob",state="cooling"} 1' in bodies["/metrics"]
    assert 'copilot_pool_account_rate_limited_total{account="bob"} 3' in bodies["/metrics"]
    assert 'copilot_pool_account_premium_remaining_percent{account="bob"} 42.0' in bodies["/metrics"]
    for line in bodies["/metrics"].splitlines():  # Prometheus text format: comments or `name{labels} number`
        assert line.startswith("# ") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? -?[0-9.]+", line), line
    assert '<span class="state cooling">cooling</span>' in bodies["/"] and "42% of 300" in bodies["/"]


async def test_status_page_other_paths_and_hosts(addon_with_tokens):
    pool_addon, page, _ = addon_with_tokens
    flow = status_flow("/nope")
    page.answer(flow)
    assert flow.response.status_code == 404
    flow = status_flow("/", method="POST")
    page.answer(flow)
    assert flow.response.status_code == 405
    flow = tflow.tflow()  # another host: not ours
    assert not page.answer(flow) and flow.response is None
    flow = status_flow("/")  # transparent mode: the address is an IP, the Host header names the page
    flow.request.data.host, flow.request.headers["host"] = "10.0.0.1", "copilot-pool:80"
    assert page.answer(flow) and flow.response.status_code == 200
    flow = status_flow("/")
    flow.request.data.host, flow.request.headers["host"] = "10.0.0.1", "copilot-pool.example.com"
    assert not page.answer(flow) and flow.response is None
    flow = status_flow("/")
    flow.response = tutils.tresp(status_code=407)  # proxyauth answered first: left alone
    await pool_addon.request(flow)
    assert flow.response.status_code == 407


def test_operator_commands(addon_with_tokens):
    pool_addon, _, clock = addon_with_tokens
    commands, pool = pool_addon.commands, pool_addon.service.pool
    assert commands.cooldown("alice", 300) == "pool: alice cooling for 300s"
    assert (
        pool.accounts["alice"].state(clock.now()) is State.COOLING
        and pool.accounts["alice"].cooldown_until - clock.now() == 300
    )
    assert commands.cooldown("alice", 0) == "pool: alice's cooldown ended"
    assert pool.accounts["alice"].pickable(clock.now())
    assert commands.disable("bob") == "pool: bob disabled"
    assert all(pool.acquire().account.name == "alice" for _ in range(5))
    assert commands.enable("bob") == "pool: bob active"  # it still holds a valid token
    assert pool.accounts["bob"].pickable(clock.now())
    for command in (
        lambda: commands.cooldown("nobody", 5),
        lambda: commands.enable("nobody"),
        lambda: commands.disable("nobody"),
    ):
        with pytest.raises(exceptions.CommandError, match="^no account named 'nobody' in the pool$"):
            command()
    with pytest.raises(exceptions.CommandError, match="seconds must be 0 or more"):
        commands.cooldown("alice", -1)


def test_command_names_suit_mitmweb(addon_with_tokens):
    from mitmproxy import ctx

    registered = [name for name in ctx.master.commands.commands if name.startswith("pool.")]
    assert set(registered) == {
        "pool.status",
        "pool.reload",
        "pool.refresh",
        "pool.cooldown",
        "pool.enable",
        "pool.disable",
    }
    assert all(re.fullmatch(r"[a-z.]+", name) for name in registered)
    assert ctx.master.commands.call("pool.cooldown", "alice", 5) == "pool: alice cooling for 5s"


@pytest.mark.parametrize(
    "modes, host, auth, refused",
    [
        (["regular"], "127.0.0.1", False, False),
        (["regular"], "localhost", False, False),
        (["regular"], "::1", False, False),
        (["regular"], "", False, True),  # mitmproxy's default: every interface
        (["regular"], "0.0.0.0", False, True),
        (["regular"], "192.168.1.5", True, False),
        (["regular@127.0.0.1:8080", "socks5@0.0.0.0:1080"], "127.0.0.1", False, True),
        (["reverse:https://api.githubcopilot.com"], "0.0.0.0", True, True),  # proxyauth would need Authorization there
        (["local"], "", False, False),
    ],
)
def test_exposure_rules(modes, host, auth, refused):
    problem = exposure_problem(modes, host, auth)
    assert (problem is not None) == refused
    if refused:
        assert "pool_allow_open_proxy" in problem and "listen_host=127.0.0.1" in problem


def test_loopback_and_permissions(tmp_path):
    assert is_loopback("127.0.0.2") and is_loopback("[::1]") and not is_loopback("example.com") and not is_loopback("")
    path = tmp_path / "accounts.json"
    path.write_text("{}")
    path.chmod(0o600)
    assert readable_by_others(str(path)) is None
    path.chmod(0o640)
    assert readable_by_others(str(path)) == 0o640
    assert readable_by_others(str(tmp_path / "missing")) is None


def test_the_state_line_says_where_who_shares_it_and_whether_tokens_are_shared():
    state = {
        "backend": "redis",
        "where": "redis://h:1/0",
        "connected": True,
        "problem": None,
        "proxies": ["a:1", "b:2"],
    }
    assert (
        state_text(state | {"tokens_shared": False}) == "redis redis://h:1/0, connected, shared by 2 proxies (a:1, b:2)"
    )
    assert state_text(state | {"tokens_shared": True}).endswith("(a:1, b:2), Copilot tokens shared")
    assert state_text(state | {"connected": False, "problem": "ConnectionError: refused", "proxies": ["a:1"]}) == (
        "redis redis://h:1/0, not reachable: ConnectionError: refused"
    )
