"""End to end against a hostile or broken upstream: pool credentials go only to trusted endpoints (a second
listener records anything that arrives and must stay empty), token exchanges stay paced whatever the exchange or the
Copilot API answers, broken hints and failing connections are handled, through real mitmdump."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from copilot_pool.core.text import quote
from e2e import ALICE, BOB, inference, pool_proxy
from fake_copilot import DROP, ByteRecorder, FakeCopilot
from mitmdump_process import chat, write_accounts

CAPTURE = Path(__file__).resolve().parent / "capture_upstream.py"


@pytest.fixture
def recorder():
    listener = ByteRecorder()
    yield listener
    listener.stop()


def hostile_endpoints(fake, rec) -> list[object]:
    """Values an exchange might name as endpoints.api: every one must be refused. Those with the recorder's port
    would reach it if they were followed."""
    port = rec.port
    return [
        f"http://127.0.0.1:{port}",  # plain http, not among pool_extra_endpoints
        f"https://127.0.0.1:{port}",
        f"http://localhost:{port}",
        f"http://127.0.0.1:{fake.port}@127.0.0.1:{port}",  # a trusted base as userinfo
        f"http://127.0.0.1:{port}#@127.0.0.1:{fake.port}",
        f"http://127.0.0.1:{port}\\@127.0.0.1:{fake.port}",
        f"http://2130706433:{port}",  # 127.0.0.1 as one number
        f"http://127.1:{port}",
        f"http://0x7f.0.0.1:{port}",
        f"http://[::ffff:127.0.0.1]:{port}",
        f"http://127.0.0.1:{fake.port}:{port}",  # a bad port
        "https://evil.example",
        "https://api.githubcopilot.com.evil.example",
        "https://evilgithubcopilot.com",
        "https://user@evil.example",
        "http://api.individual.githubcopilot.com",  # a Copilot host over plain http
        "https://140.82.112.21",
        5,
        [f"http://127.0.0.1:{port}"],
        {"url": f"http://127.0.0.1:{port}"},
    ]


def hostile_accounts(fake, rec) -> list[dict]:
    """One account per hostile value, its exchange answering that value as endpoints.api (and .proxy)."""
    accounts = []
    for i, value in enumerate(hostile_endpoints(fake, rec)):
        name = f"h{i:02d}"
        token = f"gho_hostile_{i:04d}"
        fake.add_account(name, token)
        fake.set_exchange_answer(name, fields={"endpoints": {"api": value, "proxy": value}})
        accounts.append({"name": name, "github_token": token})
    return accounts


def test_hostile_endpoints_never_receive_a_byte_at_start_up(start_proxy, fake, tmp_path, recorder):
    accounts = hostile_accounts(fake, recorder)
    capture = tmp_path / "capture.jsonl"
    proxy = pool_proxy(
        start_proxy,
        fake,
        tmp_path,
        accounts,
        pool_strategy="round-robin",
        capture_file=capture,
        args=["-s", str(CAPTURE)],
    )
    with proxy.client() as client:
        for _ in range(len(accounts)):
            assert chat(client).status_code == 599  # the capture addon answers for the default Copilot host
            completion = client.post(
                "https://copilot-proxy.githubusercontent.com/v1/engines/gpt/completions",
                headers={"authorization": "Bearer tid=x"},
                json={"prompt": "x"},
            )
            assert completion.status_code == 599
    time.sleep(0.5)
    assert recorder.connections == [] and recorder.bytes_received == 0
    left = [json.loads(line) for line in capture.read_text().splitlines()]
    assert len(left) == 2 * len(accounts)
    # every pooled request left for the account type's default endpoint, https, with a pool credential
    assert {(r["scheme"], r["host"], r["port"]) for r in left} == {("https", "api.individual.githubcopilot.com", 443)}
    assert all(r["authorization"] in {f"Bearer {t}" for t in fake.issued_tokens()} for r in left)
    for i, value in enumerate(hostile_endpoints(fake, recorder)):
        line = proxy.wait_for(rf"pool: account h{i:02d}: refused endpoints\.api (.*) from its token exchange").string
        assert line.count("refused") == 1 and "using https://api.individual.githubcopilot.com" in line
        assert f"endpoints.api {quote(value)}" in line and len(line) < 400  # a short prefix, escaped


def test_hostile_endpoints_by_hot_reload_under_traffic_and_failover(start_proxy, fake, tmp_path, recorder):
    proxy = pool_proxy(start_proxy, fake, tmp_path, [ALICE, BOB], pool_max_attempts=4)
    results: list[int] = []
    stop = threading.Event()

    def traffic():
        with proxy.client() as client:
            while not stop.is_set():
                results.append(chat(client).status_code)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        hostile = hostile_accounts(fake, recorder)
        start = len(proxy.lines)
        write_accounts(tmp_path / "accounts.json", [ALICE, BOB, *hostile])
        proxy.wait_for(rf"account {hostile[-1]['name']}: refused endpoints\.api", start=start)
        # the old accounts' 429s fail over onto hostile accounts: a re-send is the addon's own HTTP client
        for _ in range(3):
            fake.inject("alice", 429, headers={"retry-after": "1"})
            fake.inject("bob", 429, headers={"retry-after": "1"})
            time.sleep(0.4)
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(15)
    assert results and recorder.connections == [] and recorder.bytes_received == 0
    served = [e for e in inference(fake) if e.account in ("alice", "bob") and e.status == 200]
    assert served  # the old pool kept serving throughout


def test_no_exchange_storm_whatever_the_exchange_or_the_api_answers(start_proxy, tmp_path):
    """One healthy account serves traffic while each other account meets a different fault; every faulty one
    exchanges a handful of times in a few seconds (backoff 1, 2, 4 s...), not dozens of times a second."""
    upstream = FakeCopilot()
    healthy = {"name": "healthy", "github_token": "gho_healthy_0001"}
    upstream.add_account("healthy", healthy["github_token"])
    faults = {
        "refuses_all": None,  # the Copilot API answers 401 to everything
        "expired": {"expires_at": lambda now: int(now) - 10},
        "refresh_zero": {"refresh_in": 0},
        "refresh_negative": {"refresh_in": -100},
        "refresh_missing": {"refresh_in": DROP},
        "expires_soon": {"expires_at": lambda now: int(now) + 1},
    }
    accounts = [healthy]
    for i, (name, fields) in enumerate(faults.items()):
        token = f"gho_fault_{i:04d}"
        upstream.add_account(name, token)
        if fields is None:
            upstream.refuse_all(name)
        else:
            upstream.set_exchange_answer(name, fields=fields)
        accounts.append({"name": name, "github_token": token})
    upstream.add_account("limited", "gho_fault_limited")
    upstream.set_exchange_answer("limited", status=429, headers={"Retry-After": "30"})
    accounts.append({"name": "limited", "github_token": "gho_fault_limited"})
    upstream.start()
    try:
        proxy = pool_proxy(
            start_proxy, upstream, tmp_path, accounts, wait=["healthy"], states=("active",), pool_max_wait=5
        )
        started = time.time()
        with proxy.client() as client:
            statuses = []
            while time.time() - started < 8:
                statuses.append(chat(client).status_code)
        window = time.time() - started
    finally:
        upstream.stop()
    assert statuses.count(200) == len(statuses), statuses  # 401s failed over to the healthy account
    for name in [*faults, "limited"]:
        times = upstream.exchange_times(name)
        # backoff 1, 2, 4 s from the start: at most 5 exchanges in 8 s (the 429's Retry-After 30: just one)
        assert 1 <= len(times) <= (1 if name == "limited" else 5), (name, len(times), window)
        assert all(b - a >= 0.8 for a, b in zip(times, times[1:], strict=False)), (name, times)
    assert len(upstream.exchange_times("healthy")) == 1
    status = {a["name"]: a for a in proxy.status()["accounts"]}
    for name in ("expired", "refresh_zero", "refresh_negative", "refresh_missing", "expires_soon", "limited"):
        assert status[name]["state"] == "starting" and status[name]["last_failure"], status[name]


@pytest.mark.parametrize(
    "hint",
    [
        {"retry-after": "-5"},
        {"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"},
        {"retry-after-ms": "-1000"},
        {"retry-after": "soon"},
        {"retry-after": "0"},
    ],
)
def test_a_broken_retry_after_cools_for_pool_cooldown(start_proxy, fake, tmp_path, hint):
    proxy = pool_proxy(start_proxy, fake, tmp_path, [ALICE, BOB], pool_cooldown=60)
    fake.inject("alice", 429, headers=hint, count=1000)  # alice answers every request 429 with a broken hint
    with proxy.client() as client:
        statuses = [chat(client).status_code for _ in range(20)]
    assert statuses == [200] * 20  # the 429 was failed over to bob, never to alice again
    to_alice = [e for e in inference(fake) if e.account == "alice"]
    assert len(to_alice) == 1, to_alice  # cooled for the 60 s pool_cooldown after her one 429
    proxy.wait_for(r"pool: account alice cooling until \S+ \((60|59)s\)")


def test_a_401_on_the_last_attempt_is_retried_on_a_fresh_token(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, [ALICE, BOB], pool_max_attempts=2, pool_strategy="round-robin")
    with proxy.client() as client:
        assert chat(client).headers["x-fake-account"] == "alice"  # round-robin: the next one starts with bob
        fake.inject("bob", 429, headers={"retry-after": "60"})
        fake.inject("alice", 401)  # a token revoked just now: on the last allowed attempt
        response = chat(client)
    assert response.status_code == 200 and response.headers["x-fake-account"] == "alice", response.text
    assert [(e.account, e.status) for e in inference(fake)][-3:] == [("bob", 429), ("alice", 401), ("alice", 200)]
    assert fake.exchanges("alice") == 2


def test_a_401_everywhere_gets_the_pools_answer_not_a_raw_401(start_proxy, fake, tmp_path):
    fake.refuse_all("alice")
    fake.refuse_all("bob")
    proxy = pool_proxy(start_proxy, fake, tmp_path, [ALICE, BOB], pool_max_wait=3)
    with proxy.client() as client:
        response = chat(client)
    assert response.status_code in (502, 503) and response.json()["error"]["code"].startswith("pool_"), response.text


@pytest.mark.parametrize("fault", ["drop", "reset", "garbage"])
def test_an_account_whose_connections_keep_failing_is_cooled_with_backoff(start_proxy, fake, tmp_path, fault):
    proxy = pool_proxy(start_proxy, fake, tmp_path, [ALICE, BOB], pool_strategy="round-robin")
    fake.inject_fault("alice", fault, count=1000)
    with proxy.client() as client:
        statuses = []
        for _ in range(30):
            statuses.append(chat(client).status_code)
            time.sleep(0.1)
    to_alice = [e for e in inference(fake) if e.account == "alice"]
    # without the cooldown round-robin would send her 15 of 30; cooling 1, 2 ... s she gets a few
    assert 1 <= len(to_alice) <= 4, (len(to_alice), statuses)
    assert statuses.count(200) >= 26
    proxy.wait_for(r"pool: account alice cooling until")
