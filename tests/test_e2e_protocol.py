"""End to end, today's Copilot protocol through real mitmdump: auto-model sessions bound to their account, the
Responses API over a WebSocket, models per account, 421 recovery, answers editors trust."""

from __future__ import annotations

import time

import pytest
from e2e import ALICE, BOB, inference, pool_proxy
from mitmdump_process import chat, wait_until
from ws_client import Refused, WebSocket

API = "api.individual.githubcopilot.com"
SELECTOR = "Invalid auto-mode selector"


def with_catalogues(proxy, names=("alice", "bob")):
    """Once every named account's catalogue is in (the pool fetches it right after the token exchange)."""
    wait_until(lambda: all(a["models"] for a in proxy.status()["accounts"] if a["name"] in names))
    return proxy


def mint(client, path="/auto"):
    body = {"prompt": "hi", "has_image": False} if path == "/auto" else {"auto_mode": {"model_hints": ["auto"]}}
    response = client.post(f"https://{API}{path}", json=body, headers={"authorization": "Bearer gho_cli_users_own"})
    assert response.status_code == 200, response.text
    return response.json()["session_token"], response.headers["x-fake-account"]


def turn(client, session, model="gpt-5-mini"):
    return client.post(
        f"https://{API}/responses",
        json={"model": model, "input": "next"},
        headers={"authorization": "Bearer gho_cli_users_own", "copilot-session-token": session},
    )


def test_an_auto_session_stays_on_the_account_that_minted_it(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, pool_strategy="round-robin")
    with proxy.client() as client:
        session, minter = mint(client)
        served = [turn(client, session) for _ in range(6)]
        assert [(r.status_code, r.headers["x-fake-account"]) for r in served] == [(200, minter)] * 6
        _, other_minter = mint(client, "/models/session")  # round-robin: the next mint is the other account's
    assert other_minter != minter
    assert not [e for e in inference(fake) if e.status == 401]  # never sent through a foreign account
    assert fake.sessions()[session] == minter


def test_when_the_sessions_account_cools_the_client_mints_again_elsewhere(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, pool_strategy="round-robin")
    with proxy.client() as client:
        session, minter = mint(client)
        fake.inject(minter, 429, headers={"retry-after": "120"})
        refused = turn(client, session)
        # the 429 cooled the minter; the token works through no other account: the pool says so, as the service would
        assert refused.status_code == 401 and SELECTOR in refused.text and "x-github-request-id" in refused.headers
        before = len(inference(fake))
        again = turn(client, session)
        assert again.status_code == 401 and len(inference(fake)) == before  # answered by the pool at once
        fresh, new_minter = mint(client)
        assert new_minter != minter
        assert all(turn(client, fresh).headers["x-fake-account"] == new_minter for _ in range(3))
        unknown = turn(client, "session_minted_elsewhere")
        assert unknown.status_code == 401 and SELECTOR in unknown.text
    refusals = [e for e in inference(fake) if e.status == 401]
    assert refusals == []  # no selector 401 ever came from upstream: the pool never sent a token elsewhere
    assert fake.exchanges(minter) == 1  # a session refusal is not a credential failure: no re-exchange


def test_a_session_refused_upstream_is_passed_through_without_penalty(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, accounts=(ALICE,))
    with proxy.client() as client:
        session, _ = mint(client)
        fake.inject("alice", 401, body=b"Invalid auto-mode selector")
        refused = turn(client, session)
        assert refused.status_code == 401 and refused.text == SELECTOR  # the service's own answer
        assert turn(client, session).status_code == 200  # the account was not cooled or refreshed
    assert fake.exchanges("alice") == 1
    assert [a["state"] for a in proxy.status()["accounts"]] == ["active"]


def in_flight(proxy):
    return {a["name"]: a["in_flight"] for a in proxy.status()["accounts"]}


def test_a_websocket_conversation_runs_on_one_account_and_holds_it_until_closed(start_proxy, fake, tmp_path):
    fake.set_models("bob", ["gpt-4o", "gpt-5-mini"])  # bob has no WebSocket model: only alice can take the socket
    proxy = with_catalogues(pool_proxy(start_proxy, fake, tmp_path))
    socket = WebSocket(API, "/responses", {"authorization": "Bearer gho_cli_users_own"}, via=(proxy.port, proxy.ca))
    try:
        first = socket.call({"type": "response.create", "model": "gpt-5.4", "input": "hi", "initiator": "user"})
        assert first[-1]["type"] == "response.completed"
        assert in_flight(proxy) == {"alice": 1, "bob": 0}  # the socket, not its handshake, holds the account
        rid = first[-1]["response"]["id"]
        for _ in range(2):  # the tool-call turns reuse the socket: their response ids live on its connection
            follow = socket.call({"type": "response.create", "model": "gpt-5.4", "previous_response_id": rid})
            assert follow[-1]["type"] == "response.completed"
            rid = follow[-1]["response"]["id"]
    finally:
        socket.close()
    wait_until(lambda: in_flight(proxy) == {"alice": 0, "bob": 0})
    assert [(w["account"], len(w["messages"])) for w in fake.websockets] == [("alice", 3)]
    upgrade = next(e for e in fake.entries() if e.path == "/responses")
    assert upgrade.credential == ALICE["github_token"]  # the pool's credential, not the client's


def test_a_refused_websocket_upgrade_passes_through(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, accounts=(ALICE,))
    fake.inject("alice", 429, headers={"retry-after": "30"})
    with pytest.raises(Refused) as refused:
        WebSocket(API, "/responses", {"authorization": "Bearer gho_x"}, via=(proxy.port, proxy.ca))
    assert refused.value.status == 429  # the client falls back to POST /responses
    assert in_flight(proxy) == {"alice": 0}
    assert [a["state"] for a in proxy.status()["accounts"]] == ["cooling"]


def test_a_model_only_one_account_serves_goes_to_it_and_models_are_merged(start_proxy, fake, tmp_path):
    fake.set_models("alice", ["gpt-4o", "gpt-5-mini"])
    fake.set_models("bob", ["gpt-4o", "claude-sonnet-4"])
    proxy = with_catalogues(pool_proxy(start_proxy, fake, tmp_path, pool_strategy="round-robin"))
    with proxy.client() as client:
        served = [chat(client, model="claude-sonnet-4") for _ in range(6)]
        assert {(r.status_code, r.headers["x-fake-account"]) for r in served} == {(200, "bob")}
        spread = {chat(client, model="gpt-4o").headers["x-fake-account"] for _ in range(4)}
        assert spread == {"alice", "bob"}
        before = len(fake.entries())
        listing = client.get(f"https://{API}/models", headers={"authorization": "Bearer tid=x"})
        assert len(fake.entries()) == before  # the pool answered from the catalogues it holds
        assert [m["id"] for m in listing.json()["data"]] == ["gpt-4o", "gpt-5-mini", "claude-sonnet-4"]
        assert "x-github-request-id" in listing.headers
        nobody = chat(client, model="o9-preview")
        assert nobody.status_code == 400 and nobody.json()["error"]["code"] == "model_not_supported"
        message = nobody.json()["error"]["message"]
        assert (
            "'o9-preview'" in message
            and "copilot_for_business_seat" in message
            and "x-github-request-id" in nobody.headers
        )
    assert not [e for e in inference(fake) if e.status == 400]  # no request reached an account lacking its model


def test_a_stale_catalogue_is_fetched_again_and_the_request_goes_elsewhere(start_proxy, fake, tmp_path):
    proxy = with_catalogues(pool_proxy(start_proxy, fake, tmp_path, pool_strategy="round-robin"))
    fake.set_models("alice", ["gpt-4o"])  # alice loses claude; the pool still thinks she has it
    with proxy.client() as client:
        answers = [chat(client, model="claude-sonnet-4") for _ in range(4)]
    assert {(r.status_code, r.headers["x-fake-account"]) for r in answers} == {(200, "bob")}
    wait_until(
        lambda: "claude-sonnet-4" not in next(a for a in proxy.status()["accounts"] if a["name"] == "alice")["models"]
    )
    assert [e.status for e in inference(fake) if e.account == "alice"] == [400]  # one miss, then routed around


def test_421_re_exchanges_the_token_and_sends_the_request_again(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, accounts=(ALICE,))
    with proxy.client() as client:
        assert chat(client).status_code == 200
        fake.move("alice", "business")  # alice's endpoint moved: her token now works only on the new host
        response = chat(client)
    assert (response.status_code, response.headers["x-fake-account"]) == (200, "alice")
    statuses = [(e.status, e.host.split(":")[0]) for e in inference(fake)]
    assert statuses == [(200, "127.0.0.1"), (421, "127.0.0.1"), (200, "localhost")]
    assert fake.exchanges("alice") == 2


def test_pool_answers_carry_a_request_id_and_copilots_error_shape(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, accounts=(ALICE,), pool_max_wait=0)
    fake.inject("alice", 429, headers={"retry-after": "60"})
    with proxy.client() as client:
        chat(client)
        start = time.monotonic()
        response = chat(client)
    assert time.monotonic() - start < 5
    assert response.status_code == 429 and response.headers["retry-after"] and "x-github-request-id" in response.headers
    assert set(response.json()) == {"error"} and set(response.json()["error"]) == {"message", "code"}


def test_the_merged_catalogue_covers_accounts_on_other_plans(start_proxy, fake, tmp_path):
    fake.set_models("bob", [{"id": "gpt-5.4", "supported_endpoints": ["/responses"]}])
    proxy = with_catalogues(pool_proxy(start_proxy, fake, tmp_path))
    with proxy.client() as client:
        listing = client.get(f"https://{API}/models", headers={"authorization": "Bearer gho_x"}).json()["data"]
    gpt54 = next(m for m in listing if m["id"] == "gpt-5.4")
    assert gpt54["supported_endpoints"] == ["/responses", "ws:/responses"]  # one entry, every account's endpoints
    assert len([m for m in listing if m["id"] == "gpt-5.4"]) == 1 and BOB["name"] in {
        a["name"] for a in proxy.status()["accounts"]
    }
