"""Tests for the fake GitHub + Copilot upstream (scripts/fake_copilot.py)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fake_copilot import DEFAULT_MODELS, FakeCopilot, completion_text

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"

ALICE, BOB, CAROL = "gho_alice_secret", "gho_bob_secret", "gho_carol_secret"


def make_fake(**kwargs) -> FakeCopilot:
    fake = FakeCopilot(**kwargs)
    fake.add_account("alice", ALICE)  # individual -> 127.0.0.1
    fake.add_account("bob", BOB, "business")  # business   -> localhost
    fake.add_account("carol", CAROL, copilot=False)
    fake.start()
    return fake


@pytest.fixture
def fake():
    f = make_fake(stream_chunks=4, stream_interval=0.03)
    yield f
    f.stop()


@pytest.fixture
def client():
    with httpx.Client(trust_env=False, timeout=5) as c:
        yield c


def exchange(client, fake, github_token):
    return client.get(f"{fake.base_url}/copilot_internal/v2/token", headers={"Authorization": f"token {github_token}"})


def token_for(client, fake, github_token):
    r = exchange(client, fake, github_token)
    assert r.status_code == 200, r.text
    return r.json()


def chat(client, base, credential, **body):
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    return client.post(
        f"{base}/chat/completions",
        headers=headers,
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], **body},
    )


def test_exchange_success(fake, client):
    before = time.time()
    data = token_for(client, fake, ALICE)
    assert data["token"].startswith("tid=") and ";8kp=1:" in data["token"]
    assert before + 1790 <= data["expires_at"] <= time.time() + 1800
    assert data["refresh_in"] == 1500
    assert data["endpoints"]["api"] == fake.api_base("individual") == f"http://127.0.0.1:{fake.port}"
    assert data["sku"] == "copilot_for_individuals_subscriber" and data["individual"] is True
    assert fake.exchanges("alice") == 1 and fake.issued_tokens() == [data["token"]]
    # Bearer accepted too; every token is unique; business accounts get the localhost endpoint.
    r = client.get(f"{fake.base_url}/copilot_internal/v2/token", headers={"Authorization": f"Bearer {BOB}"})
    assert r.status_code == 200
    assert r.json()["endpoints"]["api"] == f"http://localhost:{fake.port}"
    assert r.json()["token"] != data["token"]


def test_exchange_failures(fake, client):
    r = exchange(client, fake, "gho_unknown")
    assert r.status_code == 401 and r.json()["message"] == "Bad credentials"
    assert client.get(f"{fake.base_url}/copilot_internal/v2/token").status_code == 401
    r = exchange(client, fake, CAROL)
    assert r.status_code == 403
    assert r.json()["error_details"]["notification_id"] == "no_copilot_access"
    fake.revoke("alice")
    assert exchange(client, fake, ALICE).status_code == 401
    assert fake.exchanges("carol") == 0 and fake.exchanges("alice") == 0


def test_inference_with_issued_token(fake, client):
    token = token_for(client, fake, ALICE)["token"]
    r = chat(client, fake.base_url, token)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "hello from alice"
    assert r.headers["x-fake-account"] == "alice"
    assert "rem=99.7" in r.headers["x-quota-snapshot-premium_interactions"]
    assert fake.served_by("alice") == 1
    models = client.get(f"{fake.base_url}/models", headers={"Authorization": f"Bearer {token}"})
    assert [m["id"] for m in models.json()["data"]] == [m["id"] for m in DEFAULT_MODELS]
    for path in ("/responses", "/v1/messages", "/embeddings", "/v1/engines/gpt-4o/completions"):
        assert (
            client.post(
                fake.base_url + path, headers={"Authorization": f"Bearer {token}"}, json={"input": "x"}
            ).status_code
            == 200
        ), path
    # Non-inference paths on the same host are 404; quota went down by the premium calls.
    r = client.post(f"{fake.base_url}/mcp/readonly", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404
    user = client.get(f"{fake.base_url}/copilot_internal/user", headers={"Authorization": f"token {ALICE}"}).json()
    assert user["quota_snapshots"]["premium_interactions"]["remaining"] == 297  # chat, responses, messages


def test_expired_token_is_rejected():
    fake = make_fake(token_ttl=1)
    try:
        with httpx.Client(trust_env=False, timeout=5) as client:
            token = token_for(client, fake, ALICE)["token"]
            assert chat(client, fake.base_url, token).status_code == 200
            time.sleep(1.2)
            r = chat(client, fake.base_url, token)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    finally:
        fake.stop()


def test_expire_tokens_and_revoke(fake, client):
    token = token_for(client, fake, ALICE)["token"]
    fake.expire_tokens("alice")
    assert chat(client, fake.base_url, token).status_code == 401
    token = token_for(client, fake, ALICE)["token"]  # a fresh one works again
    assert chat(client, fake.base_url, token).status_code == 200
    fake.revoke("alice")
    assert chat(client, fake.base_url, token).status_code == 401
    assert chat(client, fake.base_url, ALICE).status_code == 401


def test_missing_or_unknown_auth(fake, client):
    r = chat(client, fake.base_url, None)
    assert r.status_code == 401 and r.json()["error"]["message"] == "unauthorized: token expired or invalid"
    assert chat(client, fake.base_url, "tid=forged;8kp=1:00").status_code == 401
    entry = fake.entries()[-1]
    assert entry.account is None and entry.credential_kind is None and entry.status == 401


def test_github_token_as_credential(fake, client):
    r = chat(client, fake.base_url, ALICE)
    assert r.status_code == 200 and r.headers["x-fake-account"] == "alice"
    entry = fake.entries()[-1]
    assert (entry.account, entry.credential_kind, entry.credential) == ("alice", "github", ALICE)


def test_wrong_host_is_421(fake, client):
    token = token_for(client, fake, BOB)["token"]
    assert chat(client, fake.base_url, token).status_code == 421  # 127.0.0.1: wrong
    assert chat(client, fake.api_base("business"), token).status_code == 200  # localhost: right
    assert chat(client, fake.base_url, BOB).status_code == 421  # GitHub token too
    alice = token_for(client, fake, ALICE)["token"]
    assert chat(client, fake.api_base("business"), alice).status_code == 421


def test_rate_limit(fake, client):
    fake.set_rate_limit(2, window=30)
    token = token_for(client, fake, ALICE)["token"]
    assert [chat(client, fake.base_url, token).status_code for _ in range(2)] == [200, 200]
    r = chat(client, fake.base_url, token)
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 30
    assert r.json()["error"]["code"] == "user_global_rate_limited"
    assert r.headers["x-fake-account"] == "alice"
    bob = token_for(client, fake, BOB)["token"]  # per account: bob still has his budget
    assert chat(client, fake.api_base("business"), bob).status_code == 200
    fake.set_rate_limit(None, account="alice")  # per-account override beats the default
    assert chat(client, fake.base_url, token).status_code == 200


def test_rate_limit_window_resets():
    fake = make_fake(rate_limit=1, rate_window=0.3)
    try:
        with httpx.Client(trust_env=False, timeout=5) as client:
            assert chat(client, fake.base_url, ALICE).status_code == 200
            r = chat(client, fake.base_url, ALICE)
            assert r.status_code == 429 and r.headers["Retry-After"] == "1"
            time.sleep(0.35)
            assert chat(client, fake.base_url, ALICE).status_code == 200
    finally:
        fake.stop()


def test_churn_turns_a_fraction_of_successes_into_short_429s(fake, client):
    fake.churn_429, fake.churn_retry_ms = 1.0, 15
    r = chat(client, fake.base_url, ALICE)
    assert r.status_code == 429 and r.headers["retry-after-ms"] == "15" and r.headers["x-fake-account"] == "alice"
    assert chat(client, fake.base_url, "gho_nobody").status_code == 401  # auth still comes first
    fake.churn_429 = 0.25
    statuses = [chat(client, fake.base_url, ALICE).status_code for _ in range(200)]
    assert set(statuses) == {200, 429} and 20 <= statuses.count(429) <= 80  # 50 expected; p(outside) < 1e-5


def test_inject(fake, client):
    token = token_for(client, fake, ALICE)["token"]
    fake.set_rate_limit(0)  # injections take precedence over rate limiting
    fake.inject("alice", 503, count=2, headers={"Retry-After": "7"})
    for _ in range(2):
        r = chat(client, fake.base_url, token)
        assert r.status_code == 503 and r.headers["Retry-After"] == "7"
    assert chat(client, fake.base_url, token).status_code == 429
    fake.set_rate_limit(None)
    fake.inject("alice", 0)
    with pytest.raises(httpx.TransportError):
        chat(client, fake.base_url, token)
    assert fake.entries()[-1].status == 0
    assert chat(client, fake.base_url, token).status_code == 200
    fake.inject("alice", 402, body=b"plain")
    r = chat(client, fake.base_url, token)
    assert (r.status_code, r.content) == (402, b"plain")


def test_sse_arrives_in_chunks(fake, client):
    token = token_for(client, fake, ALICE)["token"]
    chunks = []
    with client.stream(
        "POST",
        f"{fake.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "gpt-4o", "stream": True, "messages": []},
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["transfer-encoding"] == "chunked"
        for chunk in r.iter_raw():
            chunks.append((time.time(), chunk))
    assert len(chunks) > 1
    text = b"".join(c for _, c in chunks).decode()
    assert text.endswith("data: [DONE]\n\n")
    events = [e[len("data: ") :] for e in text.split("\n\n") if e]
    assert len(events) == 5
    first = json.loads(events[0])
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"]["content"] == "chunk 0 from alice"
    assert chunks[0][0] - first["sent_at"] < 0.5
    assert chunks[-1][0] - chunks[0][0] >= 0.08  # spread over 3 intervals of 30 ms
    # keep-alive: the same connection serves the next request
    assert chat(client, fake.base_url, token).status_code == 200


def test_log_records_account_and_kind(fake, client):
    token = token_for(client, fake, ALICE)["token"]
    chat(client, fake.base_url, token)
    chat(client, fake.base_url, ALICE)
    log = fake.entries()
    assert [(e.method, e.path, e.account, e.credential_kind, e.status) for e in log] == [
        ("GET", "/copilot_internal/v2/token", "alice", "github", 200),
        ("POST", "/chat/completions", "alice", "copilot", 200),
        ("POST", "/chat/completions", "alice", "github", 200),
    ]
    assert log[1].credential == token and log[1].host == f"127.0.0.1:{fake.port}"
    served = client.get(f"{fake.base_url}/_fake/log").json()
    assert [e["credential_kind"] for e in served] == ["github", "copilot", "github"]


def test_cli_serves_and_exits_cleanly():
    proc = subprocess.Popen(
        [
            sys.executable,
            str(SCRIPTS / "fake_copilot.py"),
            "--port",
            "0",
            "--account",
            f"dave={ALICE}:enterprise",
            "--stream-interval-ms",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("fake copilot listening at http://127.0.0.1:")
        base = line.split()[-1]
        with httpx.Client(trust_env=False, timeout=5) as client:
            r = client.get(f"{base}/copilot_internal/v2/token", headers={"Authorization": f"token {ALICE}"})
            assert r.json()["sku"] == "copilot_enterprise_seat"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=5)
    assert proc.returncode == 0
    assert out == "" and ALICE not in err


def test_device_flow_is_strict_like_github(fake):
    fake.device_interval, fake.device_slow_down_step = 0.2, 0.3
    with httpx.Client(base_url=fake.base_url) as c:
        form = c.post("/login/device/code", data={"client_id": "Iv1.x", "scope": "read:user"})
        assert form.headers["content-type"] == "application/x-www-form-urlencoded"  # JSON only when asked for
        fake.approve_device_login("alice", pending=1)
        code = c.post("/login/device/code", data={"client_id": "Iv1.x"}, headers={"accept": "application/json"}).json()
        poll = {
            "client_id": "Iv1.x",
            "device_code": code["device_code"],
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        }

        def ask(**over):
            return c.post(
                "/login/oauth/access_token", data={**poll, **over}, headers={"accept": "application/json"}
            ).json()

        assert ask(grant_type="password")["error"] == "unsupported_grant_type"
        assert ask(client_id="Iv1.other")["error"] == "incorrect_device_code"
        assert ask()["error"] == "authorization_pending"  # the planned pending answer
        too_fast = ask()
        assert too_fast["error"] == "slow_down" and too_fast["interval"] == pytest.approx(0.5)
        time.sleep(0.55)
        answer = ask()
        assert answer.get("access_token") == ALICE, answer
        assert ask()["error"] == "incorrect_device_code"  # a code is good for one token


def test_catalogues_are_per_account_and_refuse_what_they_lack(fake, client):
    fake.set_models("bob", ["gpt-4o", {"id": "gpt-5.4", "supported_endpoints": ["/responses", "ws:/responses"]}])
    alice, bob = token_for(client, fake, ALICE)["token"], token_for(client, fake, BOB)["token"]
    bob_base = fake.api_base("business")
    listed = client.get(f"{bob_base}/models", headers={"Authorization": f"Bearer {bob}"}).json()["data"]
    assert [m["id"] for m in listed] == ["gpt-4o", "gpt-5.4"] and listed[0]["object"] == "model"
    refused = chat(client, bob_base, bob, model="claude-sonnet-4")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "model_not_supported"
    wrong_api = client.post(
        f"{bob_base}/chat/completions",
        headers={"Authorization": f"Bearer {bob}"},
        json={"model": "gpt-5.4", "messages": []},
    )
    assert wrong_api.status_code == 400 and wrong_api.json()["error"]["code"] == "unsupported_api_for_model"
    assert chat(client, fake.base_url, alice, model="claude-sonnet-4").status_code == 200  # alice has it
    assert "x-github-request-id" in refused.headers


def test_session_tokens_work_only_through_the_minting_account(fake, client):
    alice, bob = token_for(client, fake, ALICE)["token"], token_for(client, fake, BOB)["token"]
    minted = client.post(f"{fake.base_url}/auto", headers={"Authorization": f"Bearer {alice}"}, json={"prompt": "hi"})
    assert minted.status_code == 200
    session = minted.json()["session_token"]
    assert minted.json()["expires_at"] > time.time() and minted.json()["selected_model"]["id"] == "gpt-5-mini"
    assert fake.sessions() == {session: "alice"}

    def responses(base, credential, token):
        return client.post(
            f"{base}/responses",
            json={"model": "gpt-5-mini", "input": "hi"},
            headers={"Authorization": f"Bearer {credential}", "Copilot-Session-Token": token},
        )

    assert responses(fake.base_url, alice, session).status_code == 200
    foreign = responses(fake.api_base("business"), bob, session)
    assert (foreign.status_code, foreign.text) == (401, "Invalid auto-mode selector")
    assert responses(fake.base_url, alice, "session_unknown").status_code == 401
    second = client.post(
        f"{fake.base_url}/models/session",
        headers={"Authorization": f"Bearer {alice}"},
        json={"auto_mode": {"model_hints": ["auto"]}},
    ).json()
    assert second["selected_model"] == "gpt-5-mini" and "gpt-4o" in second["available_models"]
    intent = client.post(
        f"{fake.base_url}/models/session/intent",
        json={},
        headers={"Authorization": f"Bearer {alice}", "Copilot-Session-Token": second["session_token"]},
    )
    assert intent.status_code == 200


def test_responses_stream_as_sse_events(fake, client):
    token = token_for(client, fake, ALICE)["token"]
    with client.stream(
        "POST",
        f"{fake.base_url}/responses",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "gpt-4o", "input": "hi", "stream": True},
    ) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert r.headers["content-type"] == "text/event-stream"
    assert [e["type"] for e in events][0] == "response.created" and events[-1]["type"] == "response.completed"
    assert (
        "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        == (events[-1]["response"]["output"][0]["content"][0]["text"])
    )


def test_websocket_responses_keep_response_ids_per_connection(fake, client):
    from ws_client import Refused, WebSocket

    token = token_for(client, fake, ALICE)["token"]
    socket = WebSocket("127.0.0.1", "/responses", {"Authorization": f"Bearer {token}"}, port=fake.port)
    first = socket.call({"type": "response.create", "model": "gpt-5.4", "input": "hi", "initiator": "user"})
    assert [e["type"] for e in first][0] == "response.created" and first[-1]["type"] == "response.completed"
    rid = first[-1]["response"]["id"]
    second = socket.call({"type": "response.create", "model": "gpt-5.4", "previous_response_id": rid, "input": []})
    assert second[-1]["type"] == "response.completed"
    socket.close()
    other = WebSocket("127.0.0.1", "/responses", {"Authorization": f"Bearer {token}"}, port=fake.port)
    lost = other.call({"type": "response.create", "model": "gpt-5.4", "previous_response_id": rid, "input": []})
    assert lost[-1]["type"] == "error" and lost[-1]["error"]["code"] == "previous_response_not_found"
    other.close()
    assert [len(w["messages"]) for w in fake.websockets] == [2, 1] and all(
        w["account"] == "alice" for w in fake.websockets
    )
    with pytest.raises(Refused) as refused:
        WebSocket("127.0.0.1", "/responses", {"Authorization": "Bearer tid=nobody"}, port=fake.port)
    assert refused.value.status == 401


def test_code_completions_stream_as_sse(fake, client):
    token = token_for(client, fake, ALICE)["token"]
    with client.stream(
        "POST",
        f"{fake.base_url}/v1/engines/gpt-41-copilot/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"prompt": "def add(a, b):\n    ", "stream": True},
    ) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert r.headers["content-type"] == "text/event-stream" and lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:])["choices"][0] for line in lines[:-1]]
    assert len(chunks) > 1 and "".join(c["text"] for c in chunks) == completion_text("alice")
    assert [c["finish_reason"] for c in chunks][-2:] == [None, "stop"]


def test_catalogue_entries_carry_what_the_language_server_requires(fake, client):
    token = token_for(client, fake, ALICE)["token"]
    fake.set_models("bob", ["gpt-4o"])
    listed = client.get(f"{fake.base_url}/models", headers={"Authorization": f"Bearer {token}"}).json()["data"]
    assert {m["capabilities"]["type"] for m in listed} == {"chat", "embeddings", "completion"}
    for entry in [*listed, *fake._accounts["bob"].models]:
        assert {"id", "name", "version", "model_picker_enabled", "object", "capabilities"} <= set(entry)
        assert {"type", "family", "tokenizer", "object"} <= set(entry["capabilities"])
    assert "supported_endpoints" not in fake._accounts["bob"].models[0]  # a bare id: any HTTP endpoint


def test_user_info_names_the_accounts_own_endpoint_and_seat(fake, client):
    for token, api in ((ALICE, fake.api_base("individual")), (BOB, fake.api_base("business"))):
        user = client.get(f"{fake.base_url}/copilot_internal/user", headers={"Authorization": f"token {token}"})
        assert user.json()["endpoints"]["api"] == api and user.json()["chat_enabled"] is True
        assert user.json()["access_type_sku"]
    carol = client.get(f"{fake.base_url}/copilot_internal/user", headers={"Authorization": f"token {CAROL}"}).json()
    assert carol["chat_enabled"] is False and carol["access_type_sku"] == "no_access"


def test_auto_sessions_select_the_configured_model(fake, client):
    token = token_for(client, fake, ALICE)["token"]
    fake.auto_model = "gpt-5.4"
    minted = client.post(f"{fake.base_url}/auto", headers={"Authorization": f"Bearer {token}"}, json={"prompt": "hi"})
    assert minted.json()["selected_model"]["id"] == "gpt-5.4"
    assert "ws:/responses" in minted.json()["selected_model"]["supported_endpoints"]
