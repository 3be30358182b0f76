"""End to end, the state several proxies share: real mitmdump processes on one real Redis server."""

from __future__ import annotations

import threading
import time

import httpx
import redis
from e2e import ALICE, BOB, inference, pool_proxy
from mitmdump_process import chat, wait_until
from redis_process import RedisServer, free_port
from test_e2e_protocol import mint, turn


def account(proxy, name):
    return next(a for a in proxy.status()["accounts"] if a["name"] == name)


def limit(code):
    return {"error": {"message": "Sorry, you have been rate-limited.", "code": code}}


def two_proxies(start_proxy, fake, tmp_path, redis_server, a=(ALICE, BOB), b=(ALICE, BOB), **options):
    """Proxies A and B, each with accounts of its own file, on one Redis; once each sees the other."""
    options = {"pool_state": redis_server.url, **options}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    proxy_a = pool_proxy(start_proxy, fake, tmp_path / "a", accounts=a, **options)
    proxy_b = pool_proxy(start_proxy, fake, tmp_path / "b", accounts=b, **options)
    for proxy in (proxy_a, proxy_b):
        wait_until(lambda proxy=proxy: len(proxy.status()["state"]["proxies"]) == 2, timeout=5)
    return proxy_a, proxy_b


def slow_requests(proxy, count, results):
    """`count` requests through `proxy` in threads of their own; their answers' accounts go to `results`."""

    def send():
        with proxy.client(timeout=30) as client:
            try:
                results.append(chat(client).headers.get("x-fake-account"))
            except httpx.TransportError as e:  # its proxy was killed
                results.append(type(e).__name__)

    threads = [threading.Thread(target=send) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_a_429_seen_by_one_proxy_keeps_the_other_off_that_account_within_a_second(
    start_proxy, fake, tmp_path, redis_server
):
    proxy_a, proxy_b = two_proxies(
        start_proxy, fake, tmp_path, redis_server, pool_strategy="round-robin", pool_max_wait=0
    )
    assert proxy_a.status()["state"] | {"proxies": None} == {
        "backend": "redis",
        "where": redis_server.url,
        "connected": True,
        "proxy": proxy_a.status()["state"]["proxy"],
        "proxies": None,
        "problem": None,
        "conversations": 0,
        "sessions": 0,
        "tokens_shared": False,
    }
    fake.inject("alice", 429, headers={"retry-after": "120"}, body=limit("user_global_rate_limited"))
    with proxy_a.client() as client:
        assert chat(client).status_code == 200  # alice's 429, failed over to bob
    seen = time.monotonic()
    wait_until(lambda: account(proxy_b, "alice")["state"] == "cooling", timeout=1.0, interval=0.02)
    assert time.monotonic() - seen < 1.0
    [cooldown] = account(proxy_b, "alice")["cooldowns"]
    assert cooldown["reason"] == "user_global_rate_limited" and 110 < cooldown["remaining_s"] <= 120
    before = len(inference(fake))
    with proxy_b.client() as client:
        assert {chat(client).headers["x-fake-account"] for _ in range(4)} == {"bob"}
    assert {e.account for e in inference(fake)[before:]} == {"bob"}  # B never asked alice
    # extend-only across proxies: B's shorter limit on alice does not shorten what A saw
    fake.inject("bob", 429, headers={"retry-after": "30"}, body=limit("user_global_rate_limited"))
    with proxy_b.client() as client:
        assert chat(client).status_code == 429  # bob limited, alice cooling: nothing left on B
    wait_until(lambda: account(proxy_a, "bob")["state"] == "cooling", timeout=1.0)
    assert account(proxy_a, "alice")["cooldowns"][0]["remaining_s"] > 100


def test_least_busy_counts_the_other_proxys_requests_and_a_killed_proxy_stops_counting(
    start_proxy, fake, tmp_path, redis_server
):
    proxy_a, proxy_b = two_proxies(start_proxy, fake, tmp_path, redis_server, a=(ALICE,))
    fake.set_delay(8.0)
    on_a: list = []
    slow_requests(proxy_a, 3, on_a)  # all three on alice: A has no other account
    wait_until(lambda: account(proxy_b, "alice")["in_flight_elsewhere"] == 3, timeout=3)
    on_b: list = []
    threads = []
    for n in range(3):  # one at a time, each once B counts it in flight
        threads += slow_requests(proxy_b, 1, on_b)
        wait_until(lambda n=n: account(proxy_b, "bob")["in_flight"] + account(proxy_b, "alice")["in_flight"] == n + 1)
    assert (account(proxy_b, "bob")["in_flight"], account(proxy_b, "alice")["in_flight"]) == (3, 0)
    metrics = proxy_b.client().get("http://copilot-pool/metrics").text
    assert 'copilot_pool_account_in_flight_elsewhere{account="alice"} 3' in metrics
    assert 'copilot_pool_state_connected{backend="redis"} 1' in metrics and "copilot_pool_state_proxies 2" in metrics

    proxy_a.process.kill()  # streams open, no goodbye
    killed = time.monotonic()
    wait_until(lambda: account(proxy_b, "alice")["in_flight_elsewhere"] == 0, timeout=5, interval=0.1)
    assert time.monotonic() - killed < 4.0  # the heartbeat's 3 s, and half a second between heartbeats
    assert len(proxy_b.status()["state"]["proxies"]) == 1
    fake.set_delay(0)
    for thread in threads:
        thread.join(30)
    assert on_b == ["bob"] * 3


def test_a_conversation_and_a_session_started_on_one_proxy_continue_on_their_account_through_the_other(
    start_proxy, fake, tmp_path, redis_server
):
    proxy_a, proxy_b = two_proxies(start_proxy, fake, tmp_path, redis_server, pool_strategy="round-robin")
    conversation = {"x-interaction-id": "conversation-1"}
    with proxy_a.client() as client:
        first = chat(client)  # round-robin: A's first request goes to alice
        assert first.headers["x-fake-account"] == "alice"
        session, minter = mint(client)  # ... its second to bob
        assert minter == "bob"
        started = client.post(
            "https://api.individual.githubcopilot.com/chat/completions",
            headers={"authorization": "Bearer x", **conversation},
            json={"model": "gpt-4o", "messages": []},
        )
    assert started.headers["x-fake-account"] == "alice"
    wait_until(lambda: proxy_b.status()["state"] | {} and proxy_b.status()["state"]["sessions"] == 1, timeout=2)
    wait_until(lambda: proxy_b.status()["state"]["conversations"] == 1, timeout=2)
    with proxy_b.client() as client:
        assert chat(client).headers["x-fake-account"] == "alice"  # B's round-robin now points at bob ...
        again = client.post(
            "https://api.individual.githubcopilot.com/chat/completions",
            headers={"authorization": "Bearer x", **conversation},
            json={"model": "gpt-4o", "messages": []},
        )
        assert again.headers["x-fake-account"] == "alice"  # ... yet the conversation stays on alice
        assert turn(client, session).status_code == 200  # and the session finds bob, its minter
    assert fake.sessions()[session] == "bob"


def test_redis_killed_mid_run_every_request_succeeds_and_state_merges_back(start_proxy, fake, tmp_path, redis_server):
    proxy_a, proxy_b = two_proxies(start_proxy, fake, tmp_path, redis_server, pool_strategy="round-robin")
    with proxy_a.client() as client:
        assert chat(client).status_code == 200
    redis_server.kill()
    proxy_a.wait_for(r"pool: state store redis://\S+ unreachable .*; this proxy carries on with its own view")
    fake.inject("alice", 429, headers={"retry-after": "120"}, body=limit("user_global_rate_limited"))
    statuses = []
    for proxy in (proxy_a, proxy_b, proxy_a, proxy_b):
        with proxy.client() as client:
            statuses += [chat(client).status_code for _ in range(5)]
    assert statuses == [200] * 20
    assert not proxy_a.status()["state"]["connected"] and proxy_a.status()["state"]["problem"]
    assert account(proxy_a, "alice")["state"] == "cooling"  # its own view goes on

    redis_server.start()
    for proxy in (proxy_a, proxy_b):
        proxy.wait_for(r"pool: state store redis://\S+ is back after \d+s; merged", timeout=10)
    wait_until(lambda: account(proxy_b, "alice")["state"] == "cooling", timeout=2)  # A's cooldown reached B
    ok = [e.account for e in inference(fake) if e.status == 200]
    fake_served = {name: ok.count(name) for name in ("alice", "bob")}

    def totals_agree():
        a, b = ({n: account(p, n)["served"] for n in ("alice", "bob")} for p in (proxy_a, proxy_b))
        return a == b == fake_served

    wait_until(totals_agree, timeout=3)  # what each counted during the outage adds up on both
    for proxy in (proxy_a, proxy_b):
        assert sum(" unreachable " in line for line in proxy.output().splitlines()) == 1  # said once per outage


def test_a_proxy_started_while_redis_is_down_serves_and_joins_once_it_is_up(start_proxy, fake, tmp_path):
    port = free_port()
    proxy = pool_proxy(start_proxy, fake, tmp_path, pool_state=f"redis://127.0.0.1:{port}/0")
    proxy.wait_for(r"pool: state in redis redis://127\.0\.0\.1:\d+/0 \(not reachable yet\)")
    with proxy.client() as client:
        assert [chat(client).status_code for _ in range(3)] == [200] * 3
    assert proxy.status()["state"]["connected"] is False
    server = RedisServer(tmp_path / "late-redis", port)
    try:
        proxy.wait_for(r"pool: state store redis://\S+ is back after \d+s", timeout=10)
        wait_until(lambda: proxy.status()["state"]["connected"])
        served = sum(account(proxy, n)["served"] for n in ("alice", "bob"))
        wait_until(lambda: _total_served(server) == served, timeout=3)  # what it counted alone is in Redis now
        assert sum(" unreachable " in line for line in proxy.output().splitlines()) == 1  # one outage, one line
    finally:
        server.stop()


def _total_served(server):
    client = redis.Redis(port=server.port, decode_responses=True)
    return sum(int(client.hget(key, "served") or 0) for key in client.scan_iter("copilot-pool:counters:account:*"))


def _redis_values(server):
    """Every key and value in the Redis server, as text."""
    client = redis.Redis(port=server.port, decode_responses=True)
    found = {}
    for key in client.scan_iter("*"):
        read = {"string": client.get, "hash": client.hgetall, "set": client.smembers}.get(client.type(key))
        found[key] = str(read(key)) if read else ""
    return found


def test_no_token_is_kept_in_redis_unless_tokens_are_shared(start_proxy, fake, tmp_path, redis_server):
    proxy_a, proxy_b = two_proxies(start_proxy, fake, tmp_path, redis_server, pool_strategy="round-robin")
    for proxy in (proxy_a, proxy_b):
        with proxy.client() as client:
            assert [chat(client).status_code for _ in range(4)] == [200] * 4
        assert proxy.status()["state"]["tokens_shared"] is False
    wait_until(lambda: any(k.startswith("copilot-pool:counters:") for k in _redis_values(redis_server)))
    held = _redis_values(redis_server)
    assert not [k for k, v in held.items() if "tid=" in v or "gho_" in v or "token:" in k]
    assert (fake.exchanges("alice"), fake.exchanges("bob")) == (2, 2)  # each proxy exchanged its own


def test_shared_tokens_two_proxies_exchange_each_account_once_and_replace_a_refused_token_once(
    start_proxy, fake, tmp_path, redis_server
):
    proxy_a, proxy_b = two_proxies(
        start_proxy, fake, tmp_path, redis_server, pool_strategy="round-robin", pool_share_tokens="true"
    )
    served = {}
    for proxy in (proxy_a, proxy_b):
        assert proxy.status()["state"]["tokens_shared"] is True
        with proxy.client() as client:
            served[proxy] = [chat(client) for _ in range(4)]
    assert all(r.status_code == 200 for rs in served.values() for r in rs)
    assert {r.headers["x-fake-account"] for rs in served.values() for r in rs} == {"alice", "bob"}
    assert (fake.exchanges("alice"), fake.exchanges("bob")) == (1, 1)  # one exchange per account for both
    held = _redis_values(redis_server)
    assert sorted(k for k, v in held.items() if "tid=" in v) == ["copilot-pool:token:alice", "copilot-pool:token:bob"]
    assert not [k for k, v in held.items() if "gho_" in v]  # GitHub tokens never
    proxy_b.wait_for(r"pool: account alice active \(.*, exchanged by another proxy\)", timeout=1)

    fake.expire_tokens("alice")  # Copilot refuses alice's token, on both proxies
    for proxy in (proxy_a, proxy_b):
        with proxy.client() as client:
            assert [chat(client).status_code for _ in range(2)] == [200, 200]  # alice's 401 fails over to bob
        wait_until(lambda proxy=proxy: account(proxy, "alice")["state"] == "active", timeout=10)
    for proxy in (proxy_a, proxy_b):
        with proxy.client() as client:
            assert {chat(client).headers["x-fake-account"] for _ in range(4)} == {"alice", "bob"}
    assert fake.exchanges("alice") == 2  # replaced once, for both proxies
