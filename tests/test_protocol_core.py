"""The pure pieces of the protocol work: reading `model`, catalogues, session bindings, what a request wants."""

from __future__ import annotations

import json

import pytest
from copilot_pool.core.bodies import model_of
from copilot_pool.core.catalogue import Catalogue, merged, parse_models
from copilot_pool.core.pool import NoAccount, Unavailable, Want
from copilot_pool.core.sessions import Sessions, minted
from copilot_pool.runtime.clock import FakeClock
from helpers import config, pool_of

LONG = [{"role": "user", "content": 'code: {"model": "not-this", "x": [1, 2]} \\" ' * 200}]
TOOLS = [
    {"type": "function", "function": {"name": "pick", "parameters": {"properties": {"model": {"type": "string"}}}}}
]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-5.4", "messages": LONG, "stream": True},
        {"messages": LONG, "model": "gpt-5.4", "stream": True, "n": 1},
        {"messages": LONG, "model": "gpt-5.4", "tools": TOOLS},  # neither end is plain: parsed whole
        {"tools": TOOLS, "messages": LONG, "model": "gpt-5.4"},
        {"stream": False, "model": "gpt-5.4"},
    ],
)
def test_model_is_read_from_where_clients_put_it(body):
    for separators in ((",", ":"), (", ", ": ")):
        assert model_of(json.dumps(body, separators=separators).encode()) == "gpt-5.4"


def test_model_of_odd_bodies():
    assert model_of(json.dumps({"messages": LONG}).encode()) is None  # only a nested "model" in the text
    assert model_of(b"") is None and model_of(b"not json") is None and model_of(b"[1]") is None
    assert model_of(b'{"model": 5}') is None
    assert model_of(b'{"a": "\\"model\\": \\"fake\\"", "model": "real"}') == "real"  # escaped text is not a key
    assert model_of(b'{"a": {"model": "inner"}, "model": "outer"}') == "outer"


def test_catalogue_serves_models_on_their_endpoints():
    catalogue = parse_models(
        json.dumps(
            {
                "data": [
                    {"id": "gpt-5.4", "supported_endpoints": ["/responses", "ws:/responses"]},
                    {"id": "gpt-4o"},  # no field: the HTTP endpoints
                    {"no": "id"},
                ]
            }
        ).encode(),
        now=1.0,
    )
    assert set(catalogue.entries) == {"gpt-5.4", "gpt-4o"}
    assert catalogue.serves("gpt-5.4", "/responses") and not catalogue.serves("gpt-5.4", "/chat/completions")
    assert catalogue.serves("gpt-4o", "/chat/completions") and not catalogue.serves("gpt-4o", "ws:/responses")
    assert catalogue.serves(None, "ws:/responses") and not catalogue.serves("o1", None)
    assert catalogue.websocket_paths == {"/responses"}
    assert parse_models(b'{"data": "nope"}', 0) is None and parse_models(b"garbage", 0) is None


def test_merged_catalogue_has_one_entry_per_model_with_every_endpoint():
    a = Catalogue({"m": {"id": "m", "supported_endpoints": ["/responses"]}, "x": {"id": "x"}}, 0)
    b = Catalogue(
        {"m": {"id": "m", "supported_endpoints": ["/responses", "ws:/responses"], "model_picker_enabled": True}}, 0
    )
    listing = merged([a, b])
    assert [e["id"] for e in listing["data"]] == ["m", "x"]
    assert listing["data"][0]["supported_endpoints"] == ["/responses", "ws:/responses"]
    assert listing["data"][0]["model_picker_enabled"] is True
    assert a.entries["m"]["supported_endpoints"] == ["/responses"]  # the accounts' own catalogues are untouched


def test_sessions_bind_expire_and_keep_no_token():
    clock = FakeClock()
    sessions = Sessions(clock, max_entries=2)
    sessions.bind("session_secret_1", "alice", clock.wall() + 60)
    assert sessions.account_for("session_secret_1") == "alice" and sessions.account_for("other") is None
    assert "session_secret_1" not in repr(sessions._entries)
    clock.advance(61)
    assert sessions.account_for("session_secret_1") is None
    sessions.bind("s2", "bob", None)  # no expiry given: an hour
    sessions.bind("s3", "bob", clock.wall() - 5)  # already past: a second, not forever
    sessions.bind("s4", "carol", None)  # over the bound: the oldest goes
    assert sessions.account_for("s2") is None and sessions.account_for("s4") == "carol"
    assert minted(b'{"session_token": "t", "expires_at": 1700000000}') == ("t", 1700000000.0)
    assert minted(b'{"session_token": ""}') is None and minted(b"nope") is None


def test_a_session_request_gets_its_account_or_none():
    clock = FakeClock()
    pool = pool_of(config("a"), config("b"), clock=clock)
    for _ in range(5):
        assert pool.acquire(Want(only="b")).account.name == "b"
    pool.cool(pool.accounts["b"], 30)
    with pytest.raises(NoAccount) as e:
        pool.acquire(Want(only="b"))
    assert e.value.reason is Unavailable.SESSION_LOST and not e.value.waitable
    pool.invalidate(pool.accounts["a"])  # a new token on its way: worth waiting for
    with pytest.raises(NoAccount) as e:
        pool.acquire(Want(only="a"))
    assert e.value.reason is Unavailable.STARTING and e.value.waitable
    with pytest.raises(NoAccount) as e:
        pool.acquire(Want(only="gone"))
    assert e.value.reason is Unavailable.SESSION_LOST


def test_model_routing_and_a_model_nobody_serves():
    pool = pool_of(config("a"), config("b"), config("c"))
    catalogue = Catalogue({"claude": {"id": "claude", "supported_endpoints": ["/v1/messages"]}}, 0)
    pool.catalogue_received(pool.accounts["a"], Catalogue({"gpt": {"id": "gpt"}}, 0))
    pool.catalogue_received(pool.accounts["b"], catalogue)
    want = Want(model="claude", endpoint="/v1/messages")
    assert {pool.acquire(want).account.name for _ in range(10)} <= {"b", "c"}  # c's catalogue is unknown: any
    pool.catalogue_received(pool.accounts["c"], Catalogue({"gpt": {"id": "gpt"}}, 0))
    assert {pool.acquire(want).account.name for _ in range(10)} == {"b"}
    assert pool.acquire(Want(prefer="a", model="claude", endpoint="/v1/messages")).account.name == "b"
    with pytest.raises(NoAccount) as e:
        pool.acquire(Want(model="claude", endpoint="/chat/completions"))
    assert e.value.reason is Unavailable.UNSERVED
    pool.cool(pool.accounts["b"], 10)
    with pytest.raises(NoAccount) as e:
        pool.acquire(want)
    assert e.value.reason is Unavailable.COOLING  # judged on the accounts that serve it


def test_a_sessions_account_cooling_for_its_model_loses_the_session():
    pool = pool_of(config("a"), config("b"))
    pool.cool(pool.accounts["a"], 30, "user_model_rate_limited", model="gpt-5-mini")
    assert pool.acquire(Want(only="a", model="gpt-4o", endpoint="/responses")).account.name == "a"
    with pytest.raises(NoAccount) as e:
        pool.acquire(Want(only="a", model="gpt-5-mini", endpoint="/responses"))
    assert e.value.reason is Unavailable.SESSION_LOST  # the client mints again, on an account that can serve
