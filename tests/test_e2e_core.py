"""End to end: real mitmdump with the addon, the strict fake upstream, HTTPS clients through the proxy."""

from __future__ import annotations

import json
import time

from e2e import ALICE, BOB, inference, pool_proxy, upstream
from mitmdump_process import chat, write_accounts


def test_legacy_token_without_accounts_file(start_proxy, fake):
    proxy = start_proxy(upstream(fake), env={"GH_TOKEN": "gho_alice_secret_0001"})
    proxy.wait_accounts(["default"])
    with proxy.client() as client:
        response = chat(client)
    assert response.status_code == 200, response.text
    assert response.headers["x-fake-account"] == "alice"
    entry = inference(fake)[-1]
    assert entry.credential_kind == "copilot" and entry.credential in fake.issued_tokens()


def test_no_accounts_at_all_passes_traffic_through(start_proxy, fake):
    proxy = start_proxy(upstream(fake))
    proxy.wait_for(r"no accounts configured, passing all traffic through untouched")
    with proxy.client() as client:
        # not a pooled host: reaches the fake untouched, with the client's own credential
        response = client.get(f"{fake.base_url}/models", headers={"authorization": "Bearer gho_alice_secret_0001"})
    assert response.status_code == 200 and fake.entries()[-1].credential == "gho_alice_secret_0001"
    assert fake.exchanges("alice") == 0


def test_two_accounts_each_hold_their_own_token_and_serve(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, pool_strategy="round-robin")
    assert fake.exchanges("alice") == 1 and fake.exchanges("bob") == 1
    with proxy.client() as client:
        responses = [chat(client) for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 6
    served = [r.headers["x-fake-account"] for r in responses]
    assert served.count("alice") == 3 and served.count("bob") == 3
    # each request carried its account's own Copilot token to that account's endpoints.api
    issued = set(fake.issued_tokens())
    for entry in inference(fake):
        assert entry.credential in issued and entry.credential_kind == "copilot" and entry.status == 200
        assert entry.host.split(":")[0] == ("127.0.0.1" if entry.account == "alice" else "localhost")
    assert "tid=client-own-token" not in {e.credential for e in fake.entries()}


def test_github_token_clients_get_a_pool_github_token(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path)
    with proxy.client() as client:
        response = chat(client, credential="gho_the_cli_users_own_token")
    assert response.status_code == 200
    entry = inference(fake)[-1]
    assert entry.credential_kind == "github" and entry.credential in {ALICE["github_token"], BOB["github_token"]}


def test_429_cools_the_account_and_next_requests_avoid_it(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path)
    fake.inject(
        "alice",
        429,
        headers={"retry-after": "120"},
        body={"error": {"message": "rate limited", "code": "user_global_rate_limited"}},
    )
    with proxy.client() as client:
        statuses = [(r.status_code, r.headers["x-fake-account"]) for r in (chat(client) for _ in range(8))]
    assert statuses == [(200, "bob")] * 8  # the 429 was failed over: the client never saw it
    upstream = [(e.account, e.status) for e in inference(fake)]
    assert ("alice", 429) in upstream
    assert all(entry == ("bob", 200) for entry in upstream[upstream.index(("alice", 429)) + 1 :])
    proxy.wait_for(r"pool: account alice cooling until \S+ \((120|119)s\)")


def test_all_cooling_answers_429_with_retry_after(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, accounts=(ALICE,), pool_cooldown=45)
    fake.inject("alice", 429)  # no hint: the pool_cooldown option decides
    with proxy.client() as client:
        assert chat(client).status_code == 429
        before = len(fake.entries())
        response = chat(client)
    assert response.status_code == 429 and 40 <= int(response.headers["retry-after"]) <= 45
    assert response.json()["error"]["code"] == "pool_all_cooling"
    assert len(fake.entries()) == before  # answered by the pool, upstream never saw it


def test_sse_arrives_chunk_by_chunk(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path)
    arrivals = []
    with proxy.client() as client:
        with client.stream(
            "POST",
            "https://api.githubcopilot.com/chat/completions",
            headers={"authorization": "Bearer tid=x"},
            json={"stream": True, "messages": []},
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    arrivals.append((time.time(), line))
    assert arrivals[-1][1] == "data: [DONE]" and len(arrivals) == 6
    # the fake sends an event every 150 ms: a buffering proxy would deliver them all at once
    lags = [t - json.loads(line[6:])["sent_at"] for t, line in arrivals[:-1]]
    assert max(lags) < 0.1, lags
    assert arrivals[-2][0] - arrivals[0][0] > 0.4


def test_non_copilot_hosts_and_paths_keep_the_clients_credential(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path)
    with proxy.client() as client:
        response = client.get(f"{fake.base_url}/models", headers={"authorization": "Bearer gho_client_own"})
        assert response.status_code == 401  # the fake does not know the client's token: it was not swapped
        client.get(f"{fake.base_url}/copilot_internal/user", headers={"authorization": "token gho_client_own"})
    assert [e.credential for e in fake.entries()[-2:]] == ["gho_client_own", "gho_client_own"]


def test_no_usable_account_answers_503(start_proxy, fake, tmp_path):
    fake.revoke("alice")
    proxy = start_proxy({"pool_accounts": write_accounts(tmp_path / "a.json", [ALICE]), **upstream(fake)})
    proxy.wait_for(r"pool: account alice failed: GitHub rejected the token")
    with proxy.client() as client:
        response = chat(client)
    assert response.status_code == 503 and response.json()["error"]["code"] == "pool_unavailable"


def test_bad_accounts_file_refuses_to_start(start_proxy, tmp_path):
    path = write_accounts(
        tmp_path / "bad.json", [{"name": "alice", "github_token": "gho_secret_value_x", "colour": "red"}]
    )
    try:
        proxy = start_proxy({"pool_accounts": path})
        returncode = proxy.process.wait(15)
        output = proxy.output()
    except AssertionError as e:  # it may exit before it even listens
        returncode, output = 1, str(e)
    assert returncode == 1
    assert f"accounts file {path}: accounts[0] 'alice': field 'colour': unknown field" in output
    assert "gho_secret_value_x" not in output


def test_refresh_loop_renews_short_lived_tokens(start_proxy, tmp_path):
    from fake_copilot import FakeCopilot

    upstream = FakeCopilot(token_ttl=4, refresh_in=2)
    upstream.add_account("alice", ALICE["github_token"])
    upstream.start()
    try:
        proxy = pool_proxy(start_proxy, upstream, tmp_path, accounts=(ALICE,))
        with proxy.client() as client:
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:  # outlives the first token: only a refresh keeps this at 200
                assert chat(client).status_code == 200
                time.sleep(0.25)
        assert upstream.exchanges("alice") >= 3
    finally:
        upstream.stop()


def test_flow_records_account_and_redacts_credential(start_proxy, fake, tmp_path):
    saved = tmp_path / "flows.mitm"
    proxy = pool_proxy(start_proxy, fake, tmp_path, accounts=(ALICE,), flow_detail=3, save_stream_file=saved)
    fake.inject("alice", 429, headers={"retry-after": "5"})
    with proxy.client() as client:
        chat(client)
    proxy.stop()
    from mitmproxy import io

    with open(saved, "rb") as f:
        flows = list(io.FlowReader(f).stream())
    pooled = [f for f in flows if f.request.path == "/chat/completions"]
    assert pooled and pooled[0].metadata["copilot_pool.account"] == "alice"
    assert "alice" in pooled[0].comment and "429" in pooled[0].comment and pooled[0].marked
    assert pooled[0].request.headers["authorization"] == "Bearer <pool:alice>"
    everything = proxy.output() + saved.read_bytes().decode("latin-1")
    for token in fake.issued_tokens() + [ALICE["github_token"]]:
        assert token not in everything
