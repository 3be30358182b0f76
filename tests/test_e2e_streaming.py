"""End to end: streaming requests fail over and keep streaming (the relay), through real mitmdump and the fake."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
from pathlib import Path

import httpx
import pytest
from e2e import ALICE, BOB, CAROL, inference, pool_proxy
from fake_copilot import FakeCopilot
from mitmdump_process import wait_until
from mitmproxy import io

TIERS = [{**ALICE, "priority": 0}, {**BOB, "priority": 1}]  # alice is always tried first
STREAM = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
QUOTA = {"error": {"message": "You have exceeded your premium request allowance", "code": "quota_exceeded"}}
FAILURES = {
    "429": lambda fake: fake.inject("alice", 429, headers={"retry-after": "60"}),
    "402": lambda fake: fake.inject("alice", 402, body=QUOTA),
    "401": lambda fake: fake.inject("alice", 401),
    "reset": lambda fake: fake.inject("alice", 0),  # reads the request, then drops the connection without a word
    "refused": lambda fake: fake.refuse_connections("alice"),  # alice's endpoint refuses every connection
}


def read_stream(client: httpx.Client, path: str = "/chat/completions", body: dict = STREAM):
    """(response, [(arrival time, event JSON)], raw body) of one streamed answer."""
    events, raw = [], b""
    with client.stream(
        "POST", f"https://api.githubcopilot.com{path}", headers={"authorization": "Bearer tid=client"}, json=body
    ) as response:
        for line in response.iter_lines():
            raw += line.encode() + b"\n"
            if line.startswith("data: {"):
                events.append((time.time(), json.loads(line[6:])))
    return response, events, raw


def saved_flows(path) -> list:
    with open(path, "rb") as f:
        return [flow for flow in io.FlowReader(f).stream() if flow.request.path.endswith("/completions")]


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_first_attempt_still_streams(start_proxy, fake, tmp_path, failure):
    FAILURES[failure](fake)  # before the proxy starts: a refusing endpoint comes with the token
    saved = tmp_path / "flows.mitm"
    proxy = pool_proxy(start_proxy, fake, tmp_path, accounts=TIERS, save_stream_file=saved, flow_detail=3)
    with proxy.client() as client:
        response, events, _ = read_stream(client)
    assert response.status_code == 200 and response.headers["x-fake-account"] == "bob"
    assert [e["choices"][0]["delta"]["content"] for _, e in events] == [f"chunk {i} from bob" for i in range(5)]
    # streamed, not buffered: the first event was here before upstream sent the last (0.6 s later)
    assert events[0][0] < events[-1][1]["sent_at"] - 0.3
    assert max(arrived - e["sent_at"] for arrived, e in events) < 0.1
    expected_first = {"429": 429, "402": 402, "401": 401, "reset": 0}.get(failure)
    upstream = [(e.account, e.status) for e in inference(fake)]
    assert upstream == ([("alice", expected_first)] if expected_first is not None else []) + [("bob", 200)]

    wait_until(lambda: sum(a["in_flight"] for a in proxy.status()["accounts"]) == 0, timeout=5)
    proxy.stop()
    (flow,) = saved_flows(saved)
    assert flow.request.url == f"{fake.api_base('business')}/chat/completions"  # bob's endpoint, not the relay
    assert flow.request.headers["authorization"] == "Bearer <pool:bob>" and "x-copilot-pool-relay" not in str(
        flow.request.headers
    )
    assert [(a["account"], a["status"]) for a in flow.metadata["copilot_pool.attempts"]] == [
        ("alice", expected_first or 0),
        ("bob", 200),
    ]
    assert flow.metadata["copilot_pool.account"] == "bob" and flow.marked == ":repeat:"
    billed = f"{fake.credits('bob') / 1e9:.3g} credits"  # exactly what the fake billed for that answer
    assert flow.comment.startswith("pool: bob · gpt-4o · 200 · first byte ") and billed in flow.comment
    assert "retried on bob" in flow.comment and flow.comment.endswith(", streamed")
    stored = flow.response.content  # the streamed answer, kept in the flow
    assert stored.count(b"data: {") == 5 and stored.endswith(b"data: [DONE]\n\n")
    everything = proxy.output() + saved.read_bytes().decode("latin-1")
    for token in fake.issued_tokens() + [ALICE["github_token"], BOB["github_token"]]:
        assert token not in everything


def test_each_api_streams_through_the_relay_and_is_stored(start_proxy, fake, tmp_path):
    saved = tmp_path / "flows.mitm"
    proxy = pool_proxy(start_proxy, fake, tmp_path, accounts=TIERS, save_stream_file=saved)
    fake.inject("alice", 429, headers={"retry-after": "1"})  # the retry streams from bob
    with proxy.client() as client:
        for path, model in (("/responses", "gpt-4o"), ("/v1/messages", "claude-sonnet-4")):
            response, events, raw = read_stream(client, path, {**STREAM, "model": model})
            assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
            assert events[0][0] < events[-1][1]["sent_at"]  # the first was here before the last was sent
            assert b"copilot_usage" in raw
    proxy.stop()
    with open(saved, "rb") as f:
        flows = {flow.request.path: flow for flow in io.FlowReader(f).stream()}
    assert flows["/responses"].response.content.count(b"event: response.output_text.delta") == 5
    assert b"event: message_stop" in flows["/v1/messages"].response.content
    assert "alice cooling" in flows["/responses"].comment and "retried on bob" in flows["/responses"].comment


def test_the_stored_stream_is_bounded_by_pool_stream_store(start_proxy, fake, tmp_path):
    saved = tmp_path / "flows.mitm"
    proxy = pool_proxy(start_proxy, fake, tmp_path, accounts=(ALICE,), save_stream_file=saved, pool_stream_store="300")
    with proxy.client() as client:
        _, events, raw = read_stream(client)
    assert len(events) == 5  # the client got it all
    proxy.stop()
    (flow,) = saved_flows(saved)
    assert flow.response.content == raw[:300] and flow.metadata["copilot_pool.stream_truncated_at"] == 300


def test_json_requests_keep_mitmproxys_own_connection(start_proxy, fake, tmp_path):
    saved = tmp_path / "flows.mitm"
    proxy = pool_proxy(start_proxy, fake, tmp_path, accounts=(ALICE,), save_stream_file=saved)
    with proxy.client() as client:
        response = client.post(
            "https://api.githubcopilot.com/chat/completions",
            headers={"authorization": "Bearer tid=client"},
            json={"model": "gpt-4o", "messages": []},
        )
    assert response.status_code == 200
    proxy.stop()
    with open(saved, "rb") as f:
        (flow,) = [f for f in io.FlowReader(f).stream() if f.request.path == "/chat/completions"]
    assert flow.server_conn.address[1] == fake.port  # straight to the account's endpoint, no relay between
    billed = f"{fake.credits('alice') / 1e9:.3g} credits"
    assert flow.comment.startswith("pool: alice · gpt-4o · 200 · first byte ") and billed in flow.comment


def test_the_relay_serves_no_other_program(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, accounts=(ALICE,))
    with proxy.client() as client:
        read_stream(client)  # the relay is up and has served mitmproxy
    (relay,) = listening_ports(proxy.process.pid) - {proxy.port}
    before = len(fake.entries())
    for headers in ("", "x-copilot-pool-relay: forged\r\n", "x-copilot-pool-relay: \r\n"):
        assert raw_request(relay, headers).startswith(b"HTTP/1.1 403 ")
    assert len(fake.entries()) == before  # nothing reached upstream, no credential was used
    proxy.wait_for(r"pool: relay refused a request from .*: no valid ticket")
    with proxy.client() as client:
        assert read_stream(client)[0].status_code == 200  # and mitmproxy's own requests still go through


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
            ports.add(int(fields[1].split(":")[1], 16))
    return ports


def raw_request(port: int, headers: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"POST /chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n{headers}\r\n{{}}".encode())
        return sock.recv(65536)


# six accounts: a failover never goes back to an account that answered, so six attempts need six accounts
CHURNING = [ALICE, BOB, CAROL, *({"name": f"extra{i}", "github_token": f"gho_extra_secret_000{i}"} for i in range(3))]


@pytest.fixture
def churning_fake():
    upstream = FakeCopilot(stream_chunks=4, stream_interval=0.4)  # 1.2 s from the first event to the last
    for account in CHURNING:
        upstream.add_account(account["name"], account["github_token"], account.get("account_type", "individual"))
    upstream.churn_429, upstream.churn_retry_ms = 0.1, 20
    upstream.start()
    yield upstream
    upstream.stop()


def test_200_concurrent_streams_with_10_percent_429s_none_buffered(start_proxy, churning_fake, tmp_path):
    # 6 attempts on 6 accounts: that all of them meet a 429 (10^-6 per request) is not what this test is about
    proxy = pool_proxy(start_proxy, churning_fake, tmp_path, accounts=CHURNING, pool_max_attempts=6)

    async def one(client: httpx.AsyncClient) -> tuple[int, float, float]:
        async with client.stream(
            "POST", "https://api.githubcopilot.com/chat/completions", headers={"authorization": "Bearer x"}, json=STREAM
        ) as response:
            events = []  # (arrival, sent_at)
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    events.append((time.time(), json.loads(line[6:])["sent_at"]))
        first_arrival, last_sent = (events[0][0], events[-1][1]) if events else (math.inf, 0.0)
        return response.status_code, first_arrival, last_sent

    async def run() -> list:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with proxy.async_client(limits=limits, timeout=60) as client:
            return await asyncio.gather(*(one(client) for _ in range(200)))

    results = asyncio.run(run())
    assert [status for status, _, _ in results] == [200] * 200
    buffered = [r for r in results if r[1] >= r[2]]  # first event arrived only after upstream sent the last
    assert buffered == []
    statuses = [e.status for e in inference(churning_fake)]
    assert statuses.count(429) >= 5 and statuses.count(200) == 200  # every 429 was failed over, streaming
    wait_until(lambda: sum(a["in_flight"] for a in proxy.status()["accounts"]) == 0, timeout=10)
    proxy.stop()
    assert "pool: stopping with 0 request(s) in flight, 0 waiting" in proxy.output()
