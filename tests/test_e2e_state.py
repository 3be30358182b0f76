"""End to end, the state that survives a restart: real mitmdump processes on one SQLite file."""

from __future__ import annotations

import sqlite3
import stat
import time

from e2e import ALICE, BOB, inference, pool_proxy, upstream
from mitmdump_process import chat, write_accounts
from test_e2e_protocol import mint, turn

SIX_HOURS = 6 * 3600


def account(proxy, name):
    return next(a for a in proxy.status()["accounts"] if a["name"] == name)


def limit(code):
    return {"error": {"message": "Sorry, you have been rate-limited.", "code": code}}


def test_a_restart_keeps_cooldowns_credits_and_session_bindings(start_proxy, fake, tmp_path):
    state = tmp_path / "state" / "pool.sqlite3"
    options = {"pool_state": f"sqlite:{state}", "pool_strategy": "round-robin"}
    first = pool_proxy(start_proxy, fake, tmp_path, **options)
    fake.inject("alice", 429, headers={"retry-after": str(SIX_HOURS)}, body=limit("user_global_rate_limited"))
    with first.client() as client:
        for model in ("gpt-4o", "claude-sonnet-4", "gpt-4o"):
            assert chat(client, model=model).status_code == 200
        session, minter = mint(client)
    assert minter == "bob"  # alice cools for six hours
    before = {name: account(first, name) for name in ("alice", "bob")}
    assert before["alice"]["cooldowns"][0]["remaining_s"] > SIX_HOURS - 60
    time.sleep(0.5)  # a batch is written every 0.1 s
    assert first.stop() == 0
    assert stat.S_IMODE(state.stat().st_mode) == 0o600

    served_before = len(inference(fake))
    second = pool_proxy(start_proxy, fake, tmp_path, states=("active", "cooling"), **options)
    second.wait_for(r"pool: state in sqlite .*pool\.sqlite3: 1 cooldown\(s\), counters of 2 account\(s\)")
    after = {name: account(second, name) for name in ("alice", "bob")}
    [cooldown] = after["alice"]["cooldowns"]
    assert cooldown["scope"] == "account" and cooldown["reason"] == "user_global_rate_limited"
    assert SIX_HOURS - 120 < cooldown["remaining_s"] <= SIX_HOURS and after["alice"]["state"] == "cooling"
    for name in ("alice", "bob"):
        assert after[name]["credits_by_model"] == before[name]["credits_by_model"]
        assert after[name]["credits_used"] > 0 or name == "alice"
        assert (after[name]["served"], after[name]["rate_limited"]) == (
            before[name]["served"],
            before[name]["rate_limited"],
        )
    with second.client() as client:
        assert turn(client, session).status_code == 200  # the session minted before the restart still finds bob
        assert {chat(client).headers["x-fake-account"] for _ in range(4)} == {"bob"}  # alice rests
    assert {e.account for e in inference(fake)[served_before:]} == {"bob"}
    assert account(second, "bob")["served"] == before["bob"]["served"] + 5  # counting goes on from the totals


def test_a_locked_state_file_stops_the_start_naming_it_and_a_broken_one_is_replaced(start_proxy, fake, tmp_path):
    state = tmp_path / "state.sqlite3"
    holder = sqlite3.connect(state, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds it
    proxy = start_proxy(pool_options(fake, tmp_path, state))
    assert proxy.process.wait(20) == 1
    assert f"pool: state file {state} is locked by another process" in proxy.output()
    holder.execute("ROLLBACK")
    holder.close()

    state.write_bytes(b"\x00garbage, not a database" * 50)
    proxy = start_proxy(pool_options(fake, tmp_path, state))
    proxy.wait_accounts()
    proxy.wait_for(rf"pool: state file {state} was broken; moved it to {state}\.broken-\S+ \(file is not a database\)")
    with proxy.client() as client:
        assert chat(client).status_code == 200
    assert proxy.status()["state"]["connected"] and len(list(tmp_path.glob("state.sqlite3.broken-*"))) == 1


def pool_options(fake, tmp_path, state):
    accounts = write_accounts(tmp_path / "accounts.json", [ALICE, BOB])
    return {"pool_accounts": accounts, **upstream(fake), "pool_state": f"sqlite:{state}"}
