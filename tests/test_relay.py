"""The relay's door, in process: which requests it takes, what they carry to it, and who may bring them."""

from __future__ import annotations

import json

from copilot_pool.core.bodies import asks_for_stream, model_of
from copilot_pool.core.usage import credits, nano_aiu
from copilot_pool.mitm.relay import TICKET
from copilot_pool.mitm.streamstore import StreamStore
from test_addon import addon, pooled_flow  # noqa: F401 - the fixture, reused

MITMPROXY_SIDE = ("127.0.0.1", 50123)  # the local address of mitmproxy's connection to the relay


def streaming_flow(body: dict | None = None):
    flow = pooled_flow()
    flow.request.content = json.dumps(body or {"model": "gpt-4o", "stream": True, "messages": []}).encode()
    flow.server_conn.sockname = MITMPROXY_SIDE
    return flow


async def diverted(addon):  # noqa: F811
    addon.relay.port = 40404  # as if listening
    flow = streaming_flow()
    await addon.request(flow)
    return flow


async def test_a_streaming_request_goes_to_the_relay_without_a_credential(addon):  # noqa: F811
    flow = await diverted(addon)
    name = flow.metadata["copilot_pool.account"]
    assert flow.request.url == "http://127.0.0.1:40404/chat/completions"
    assert flow.request.headers["authorization"] == f"Bearer <pool:{name}>"  # the relay adds the credential
    (claim,) = addon.relay.claims.values()
    assert (
        claim.url == "https://api.individual.githubcopilot.com/chat/completions" and claim.credential == f"tid={name}"
    )
    assert len(flow.request.headers[TICKET]) >= 43  # 32 random bytes


async def test_json_requests_and_relay_off_go_straight_upstream(addon):  # noqa: F811
    addon.relay.port = 40404
    json_flow = streaming_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": '"stream": true'}]})
    await addon.request(json_flow)
    addon.tctx.configure(addon, pool_relay=False)
    off = streaming_flow()
    await addon.request(off)
    for flow in (json_flow, off):
        assert (
            flow.request.url == "https://api.individual.githubcopilot.com/chat/completions"
            and TICKET not in flow.request.headers
        )
    assert not addon.relay.claims


async def test_a_ticket_works_once_and_only_on_mitmproxys_own_connection(addon):  # noqa: F811
    flow = await diverted(addon)
    ticket = flow.request.headers[TICKET]
    assert addon.relay.claim("forged", MITMPROXY_SIDE) is None
    assert addon.relay.claim(ticket, ("127.0.0.1", 50999)) is None  # another program holding the ticket
    claim = addon.relay.claim(ticket, MITMPROXY_SIDE)
    assert claim is not None and claim.flow is flow
    assert (
        flow.request.url == "https://api.individual.githubcopilot.com/chat/completions"
        and TICKET not in flow.request.headers
    )
    assert addon.relay.claim(ticket, MITMPROXY_SIDE) is None  # spent


async def test_a_flow_that_ends_before_it_reaches_the_relay_is_undiverted(addon):  # noqa: F811
    flow = await diverted(addon)
    addon.error(flow)  # the client went away while mitmproxy connected
    assert not addon.relay.claims and TICKET not in flow.request.headers
    assert flow.request.url == "https://api.individual.githubcopilot.com/chat/completions"
    assert sum(a.in_flight for a in addon.service.pool.accounts.values()) == 0


def test_body_sniffing_finds_real_keys_only():
    assert asks_for_stream(b'{"messages": [], "stream" :  true}')
    assert not asks_for_stream(b'{"stream": false, "messages": [{"content": "\\"stream\\": true"}]}')
    assert model_of(b'{"messages": [{"content": "\\"model\\": \\"x\\""}], "model": "claude-sonnet-4"}') == (
        "claude-sonnet-4"
    )
    assert model_of(b'{"tools": [{"properties": {"model": {"type": "string"}}}]}') is None
    pad = b" " * 5000  # top-level keys are looked for at both ends first, then in between, and across the seams
    for at in range(4080, 4100):
        body = b"{" + b" " * at + b'"stream": true, "model": "m"' + pad + b"}"
        assert asks_for_stream(body) and model_of(body) == "m", at
    assert asks_for_stream(b"{" + pad + pad + b'"stream": true' + pad + pad + b"}")
    assert credits(nano_aiu(b'data: {"copilot_usage": {"total_nano_aiu": 25000000}}\n\ndata: [DONE]\n\n')) == 0.025
    assert nano_aiu(b'{"usage": {}}') is None


def test_stream_store_passes_everything_and_keeps_a_bounded_prefix():
    store = StreamStore(10)
    assert [store(c) for c in (b"abcd", b"efgh", b"ijkl", b"mn")] == [b"abcd", b"efgh", b"ijkl", b"mn"]
    assert b"".join(store.chunks) == b"abcdefghij" and store.truncated
