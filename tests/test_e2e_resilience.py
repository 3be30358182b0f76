"""End to end: failover, waiting, affinity and tiers through real mitmdump against the fake injecting failures."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from e2e import inference, pool_proxy
from fake_copilot import FakeCopilot
from mitmdump_process import chat

ACCOUNTS = [
    {"name": "alice", "github_token": "gho_alice_secret_0001"},
    {"name": "bob", "github_token": "gho_bob_secret_0002", "account_type": "business"},
    {"name": "carol", "github_token": "gho_carol_secret_0003"},
    {"name": "dave", "github_token": "gho_dave_secret_0004", "account_type": "business"},
]
QUOTA_BODY = {"error": {"message": "You have exceeded your premium request allowance", "code": "quota_exceeded"}}


@pytest.fixture
def fake4():
    upstream = FakeCopilot(stream_chunks=3, stream_interval=0.02)
    for account in ACCOUNTS:
        upstream.add_account(account["name"], account["github_token"], account.get("account_type", "individual"))
    upstream.start()
    yield upstream
    upstream.stop()


def stopped_clean(proxy) -> None:
    """Every lease was released: nothing in flight, nobody waiting, once all clients have their answers."""
    proxy.stop()
    assert "pool: stopping with 0 request(s) in flight, 0 waiting" in proxy.output(), proxy.output()[-3000:]


def test_failover_under_concurrent_clients(start_proxy, fake4, tmp_path):
    proxy = pool_proxy(start_proxy, fake4, tmp_path, accounts=ACCOUNTS, pool_max_attempts=4)
    fake4.inject("alice", 429, headers={"retry-after": "120"})
    fake4.inject("bob", 402, body=QUOTA_BODY)
    fake4.inject("carol", 401)
    fake4.inject("dave", 500, count=2)

    def client_run(n):
        with proxy.client() as client:
            return [chat(client).status_code for _ in range(n)]

    with ThreadPoolExecutor(8) as pool:
        statuses = [s for batch in pool.map(client_run, [4] * 8) for s in batch]
    # every 429, 402 and 401 was failed over; the two 500s are upstream's and were passed through
    assert sorted(statuses) == [200] * 30 + [500] * 2
    log = [(e.account, e.status, e.credential) for e in inference(fake4)]
    for name, status in (("alice", 429), ("bob", 402)):
        # requests already on their way when the pool heard the answer may still arrive; none picked later
        cooled_at = next(e.time for e in inference(fake4) if (e.account, e.status) == (name, status))
        late = [e for e in inference(fake4) if e.account == name and e.time > cooled_at + 0.5]
        assert not late, f"{name} got a request while cooling"
    carol_401 = next(c for a, s, c in log if (a, s) == ("carol", 401))
    # (carol's token was seconds old when refused: the new exchange may wait a backoff step, not a storm)
    proxy.wait_for(r"pool: account carol active \(.*after a 401 from Copilot\)")
    with proxy.client() as client:
        assert [chat(client).status_code for _ in range(8)] == [200] * 8
    log = [(e.account, e.status, e.credential) for e in inference(fake4)]
    assert fake4.exchanges("carol") == 2  # the 401 led to a new token ...
    assert any(a == "carol" and s == 200 and c != carol_401 for a, s, c in log)  # ... that carol serves with
    proxy.wait_for(r"pool: account bob cooling until \S+ \(\d+s\)")
    assert fake4.served_by("alice") + fake4.served_by("bob") < 16  # cooled early: most went elsewhere
    stopped_clean(proxy)


def test_dropped_connection_on_a_retry_fails_over_and_tiers_order_the_accounts(start_proxy, fake4, tmp_path):
    saved = tmp_path / "flows.mitm"
    tiers = [{**a, "priority": i} for i, a in enumerate(ACCOUNTS[:3])]  # alice first, then bob, then carol
    proxy = pool_proxy(start_proxy, fake4, tmp_path, accounts=tiers, save_stream_file=saved)
    fake4.inject("alice", 429, headers={"retry-after": "60"})
    fake4.inject("bob", 0)  # bob drops the connection without a word
    with proxy.client() as client:
        response = chat(client)
        assert (response.status_code, response.headers["x-fake-account"]) == (200, "carol")
        assert [(e.account, e.status) for e in inference(fake4)] == [("alice", 429), ("bob", 0), ("carol", 200)]
        # bob's dropped connection cooled it for a backoff step (about a second): tier 2 serves meanwhile
        assert chat(client).headers["x-fake-account"] == "carol"
        proxy.wait_for(r"pool: account bob active again: cooldown over")
        assert chat(client).headers["x-fake-account"] == "bob"  # alice still cooling: tier 1 serves
        # a first attempt is mitmproxy's own connection: when it drops, mitmproxy answers 502 itself
        fake4.inject("bob", 0)
        assert chat(client).status_code == 502
        assert chat(client).headers["x-fake-account"] == "carol"  # bob cools again, so tier 2 serves
    stopped_clean(proxy)
    from mitmproxy import io

    with open(saved, "rb") as f:
        flow = next(f for f in io.FlowReader(f).stream() if f.request.path == "/chat/completions")
    assert [(a["account"], a["status"]) for a in flow.metadata["copilot_pool.attempts"]] == [
        ("alice", 429),
        ("bob", 0),
        ("carol", 200),
    ]
    assert (
        flow.metadata["copilot_pool.account"] == "carol"
        and flow.request.headers["authorization"] == "Bearer <pool:carol>"
    )
    assert (
        "alice cooling 60s" in flow.comment and "retried on bob" in flow.comment and "retried on carol" in flow.comment
    )


def test_waiting_requests_go_in_arrival_order(start_proxy, fake4, tmp_path):
    fake4.set_delay(0.3)
    proxy = pool_proxy(start_proxy, fake4, tmp_path, accounts=[{**ACCOUNTS[0], "max_concurrency": 1}])
    results = {}

    def send(i):
        with proxy.client() as client:
            response = client.post(
                "https://api.githubcopilot.com/chat/completions",
                json={"messages": []},
                headers={"authorization": "Bearer x", "x-request-id": f"r{i}"},
            )
            results[i] = response.status_code

    threads = []
    for i in range(5):
        threads.append(threading.Thread(target=send, args=(i,)))
        threads[-1].start()
        time.sleep(0.1)  # arrive one after another, while the first is still being answered
    for thread in threads:
        thread.join(30)
    assert results == {i: 200 for i in range(5)}
    assert [e.request_id for e in inference(fake4)] == [f"r{i}" for i in range(5)]
    stopped_clean(proxy)


def test_a_short_cooldown_is_waited_out_instead_of_failing(start_proxy, fake4, tmp_path):
    proxy = pool_proxy(start_proxy, fake4, tmp_path, accounts=ACCOUNTS[:1])
    fake4.inject("alice", 429, headers={"retry-after": "2"})
    with proxy.client() as client:
        # the rate-limited request is not sent to alice again (a failover never re-picks an account that
        # answered it): it gets her 429 at once
        start = time.monotonic()
        limited = chat(client)
        assert limited.status_code == 429 and time.monotonic() - start < 1.5
        # the next request waits in line for alice's short cooldown instead of failing
        response = chat(client)
        waited = time.monotonic() - start
    assert response.status_code == 200 and 1.5 < waited < 10
    assert [(e.account, e.status) for e in inference(fake4)] == [("alice", 429), ("alice", 200)]
    stopped_clean(proxy)


def test_affinity_keeps_a_conversation_on_its_account_and_moves_it_when_it_cools(start_proxy, fake4, tmp_path):
    proxy = pool_proxy(start_proxy, fake4, tmp_path, accounts=ACCOUNTS[:3])

    def turn(client, conversation="conv-1"):
        response = client.post(
            "https://api.githubcopilot.com/chat/completions",
            json={"messages": []},
            headers={"authorization": "Bearer x", "x-interaction-id": conversation},
        )
        assert response.status_code == 200
        return response.headers["x-fake-account"]

    with proxy.client() as client:
        first = [turn(client) for _ in range(20)]
        others = {turn(client, f"other-{i}") for i in range(6)}  # without affinity the load spreads
        assert len(set(first)) == 1 and len(others) > 1
        fake4.inject(first[0], 429, headers={"retry-after": "120"})
        moved = [turn(client) for _ in range(5)]
    assert first[0] not in moved and len(set(moved)) == 1
    stopped_clean(proxy)
