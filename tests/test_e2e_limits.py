"""End to end: limits scoped as the service says, storms stopped, accounts eased back in, AI credits counted
per account, model and proxy user, budgets and daily caps."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import bcrypt
import httpx
from e2e import ALICE, BOB, CAROL, inference, pool_proxy, upstream
from mitmdump_process import chat, write_accounts
from ws_client import WebSocket

API = "api.individual.githubcopilot.com"


def account(proxy, name):
    return next(a for a in proxy.status()["accounts"] if a["name"] == name)


def limit(code):
    return {"error": {"message": "Sorry, you have been rate-limited.", "code": code}}


def test_a_model_limit_cools_that_model_only(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, pool_strategy="round-robin")
    fake.inject("alice", 429, headers={"retry-after": "120"}, body=limit("user_model_rate_limited"))
    with proxy.client() as client:
        gpt4o = [chat(client, model="gpt-4o") for _ in range(4)]
        claude = [chat(client, model="claude-sonnet-4") for _ in range(4)]
    assert {(r.status_code, r.headers["x-fake-account"]) for r in gpt4o} == {(200, "bob")}
    assert {r.headers["x-fake-account"] for r in claude} == {"alice", "bob"}  # alice keeps serving other models
    cooldowns = account(proxy, "alice")["cooldowns"]
    assert [(c["scope"], c["model"], c["reason"]) for c in cooldowns] == [
        ("model", "gpt-4o", "user_model_rate_limited")
    ]
    assert 110 <= cooldowns[0]["remaining_s"] <= 120 and account(proxy, "alice")["state"] == "active"
    proxy.wait_for(r"pool: account alice cooling for gpt-4o until \S+ \(1[12]\ds\): user_model_rate_limited")


def test_a_weekly_limit_cools_the_account_until_its_reset(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path)
    reset = datetime.fromtimestamp(time.time() + 3 * 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    weekly = urlencode({"ent": 1000, "ov": 0, "ovPerm": "false", "rem": 0, "rst": reset})
    fake.inject(
        "alice",
        429,
        headers={"retry-after": "60", "x-usage-ratelimit-weekly": weekly},
        body=limit("user_weekly_rate_limited"),
    )
    with proxy.client() as client:
        for _ in range(4):
            assert chat(client).status_code == 200
    [cooldown] = account(proxy, "alice")["cooldowns"]
    assert cooldown["reason"] == "weekly limit" and 3 * 3600 - 60 <= cooldown["remaining_s"] <= 3 * 3600  # not 60 s
    assert account(proxy, "alice")["usage_limits"]["weekly"]["remaining_percent"] == 0


def test_a_storm_across_two_accounts_stops_rotation(start_proxy, fake, tmp_path):
    fake.add_account("carol", CAROL["github_token"])
    proxy = pool_proxy(
        start_proxy,
        fake,
        tmp_path,
        accounts=(ALICE, BOB, CAROL),
        pool_strategy="round-robin",
        pool_max_attempts=3,
        pool_max_wait=0,
    )
    for name in ("alice", "bob", "carol"):  # the integration's limit: every account would answer 429
        fake.inject(name, 429, headers={"retry-after": "45"}, body=limit("integration_rate_limited"))
    with proxy.client() as client:
        response = chat(client)  # the first account, then the next: both limited by the integration
        again = chat(client)
    assert response.status_code == 429 and response.json()["error"]["code"] == "pool_limited"
    assert 40 <= int(response.headers["retry-after"]) <= 45 and "x-github-request-id" in response.headers
    assert again.status_code == 429  # held: not sent anywhere
    upstream = [(e.account, e.status) for e in inference(fake)]
    assert len(upstream) == 2 and {s for _, s in upstream} == {429}  # the third account was never asked
    assert proxy.status()["pool_held"]["reason"].startswith("integration_rate_limited on 2 accounts")
    proxy.wait_for(r"pool: integration_rate_limited on 2 accounts within 60s: a limit on the whole pool")


def test_an_account_out_of_a_cooldown_is_eased_back_in(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, accounts=(ALICE,), pool_max_wait=30)
    fake.inject("alice", 429, headers={"retry-after": "2"}, body=limit("user_global_rate_limited"))
    with proxy.client() as client:
        assert chat(client).status_code == 429  # no other account: the 429 goes back (a failover never re-picks)
        assert chat(client).status_code == 200  # waited out the 2 s; alice is easing back in
    fake.set_delay(0.4)
    results = []

    def send():
        with proxy.client(timeout=30) as client:
            results.append(chat(client).status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    start = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(40)
    assert results == [200] * 6
    arrivals = sorted(e.time - start for e in inference(fake) if e.time >= start)
    # slow start: one answer in (the waited-out request) allows 2, then 3, ... not all six at once
    assert len([t for t in arrivals if t < 0.3]) <= 2, arrivals
    assert arrivals[-1] > 0.4, arrivals


def test_credits_are_counted_per_account_and_model_exactly(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, pool_strategy="round-robin")
    with proxy.client() as client:
        for model in ("gpt-4o", "claude-sonnet-4", "gpt-4o"):
            response = chat(client, model=model)
            assert response.json()["copilot_usage"]["total_nano_aiu"] > 0
        for _ in range(2):
            with client.stream(
                "POST",
                f"https://{API}/chat/completions",
                headers={"authorization": "Bearer x"},
                json={"model": "gpt-5-mini", "stream": True, "messages": []},
            ) as streamed:
                assert sum(1 for line in streamed.iter_lines() if line.startswith("data: ")) > 3
        client.post(
            f"https://{API}/responses",
            headers={"authorization": "Bearer x"},
            json={"model": "gpt-5-mini", "input": "hi", "stream": True},
        )
    socket = WebSocket(API, "/responses", {"authorization": "Bearer gho_x"}, via=(proxy.port, proxy.ca))
    socket.call({"type": "response.create", "model": "gpt-5.4", "input": "hi"})
    socket.close()
    status = proxy.status()
    for name in ("alice", "bob"):
        by_model = account(proxy, name)["credits_by_model"]
        for model in ("gpt-4o", "claude-sonnet-4", "gpt-5-mini", "gpt-5.4"):
            assert round(by_model.get(model, 0) * 10**9) == fake.credits(name, model), (name, model)
    assert round(sum(a["credits_used"] for a in status["accounts"]) * 10**9) == fake.credits() > 0
    metrics = httpx.get("http://copilot-pool/metrics", proxy=f"http://127.0.0.1:{proxy.port}").text
    assert 'copilot_pool_account_credits_total{account="alice",model="gpt-4o"}' in metrics


def test_a_spent_budget_takes_the_account_out(start_proxy, fake, tmp_path):
    fake.cost_nano = (600_000_000, 600_000_000)  # 0.6 credits an answer
    proxy = pool_proxy(
        start_proxy, fake, tmp_path, accounts=({**ALICE, "credit_budget": 1.0}, BOB), pool_strategy="round-robin"
    )
    with proxy.client() as client:
        served = [chat(client).headers["x-fake-account"] for _ in range(8)]
    assert served.count("alice") == 2 and served[4:] == ["bob"] * 4  # 1.2 of 1.0 credits spent: out
    [cooldown] = account(proxy, "alice")["cooldowns"]
    assert cooldown["reason"] == "credit budget spent" and cooldown["remaining_s"] > 3600  # until the month resets
    assert account(proxy, "alice")["credits_this_month"] == 1.2


def test_who_spent_what_with_two_proxyauth_users(start_proxy, fake, tmp_path):
    htpasswd = tmp_path / "users.htpasswd"
    lines = [
        f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}"
        for user, password in (("ann", "pw-ann"), ("ben", "pw-ben"))
    ]
    htpasswd.write_text("\n".join(lines) + "\n")
    fake.cost_nano = (400_000_000, 400_000_000)
    accounts = write_accounts(tmp_path / "accounts.json", [ALICE, BOB])
    options = {"pool_accounts": accounts, **upstream(fake), "pool_user_daily_credits": 1}
    proxy = start_proxy({**options, "proxyauth": f"@{htpasswd}"})
    ca = proxy.ca

    def client(user):
        import ssl

        return httpx.Client(
            proxy=f"http://{user}:pw-{user}@127.0.0.1:{proxy.port}",
            trust_env=False,
            timeout=15,
            verify=ssl.create_default_context(cafile=ca),
        )

    proxy.proxyauth = "ann:pw-ann"
    proxy.wait_accounts()
    with client("ann") as ann, client("ben") as ben:
        ann_answers = [chat(ann).status_code for _ in range(4)]
        ben_answers = [chat(ben).status_code for _ in range(1)]
        capped = chat(ann)
    assert ann_answers == [200, 200, 200, 429] and ben_answers == [200]  # 1.2 credits > ann's cap of 1
    assert (
        capped.json()["error"]["code"] == "pool_user_daily_cap" and "1 AI credits" in capped.json()["error"]["message"]
    )
    assert int(capped.headers["retry-after"]) <= 86400
    users = {u["name"]: u for u in proxy.status()["users"]}
    assert users["ann"]["credits_used"] == 1.2 and users["ben"]["credits_used"] == 0.4
    assert users["ann"]["requests"] == 3 and users["ben"]["requests"] == 1
    metrics = httpx.get("http://copilot-pool/metrics", proxy=f"http://ann:pw-ann@127.0.0.1:{proxy.port}").text
    assert 'copilot_pool_user_credits_total{user="ann"} 1.2' in metrics
    assert "pw-ann" not in json.dumps(proxy.status())
