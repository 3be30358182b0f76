"""The `copilot-pool` launcher runs mitmproxy on uvloop (or asyncio, when told or when uvloop is missing), and what
the pool relies on of mitmproxy holds on either loop: TLS interception, async hooks (failover re-sends from the
response hook), SSE relayed as it comes, client disconnects counted out, WebSockets relayed, the eager task
factory (CopilotPool.done starts closing its clients in a task made there), a clean stop. It prints no line per
flow and serves no mitm.it unless asked."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from e2e import ALICE, BOB, upstream
from mitmdump_process import COPILOT_POOL, MITMDUMP_UVLOOP, chat, write_accounts
from ws_echo import EchoServer, echo_through_proxy

PROBE = Path(__file__).with_name("loop_probe.py")
CHAT_URL = "https://api.individual.githubcopilot.com/chat/completions"
STREAM = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def launch(start_proxy, fake, tmp_path, loop: str, env: dict | None = None, options: dict | None = None):
    """`copilot-pool` with ALICE and BOB, the loop probe beside the pool, COPILOT_POOL_LOOP=loop."""
    accounts = write_accounts(tmp_path / "accounts.json", [ALICE, BOB])
    proxy = start_proxy(
        {"pool_accounts": accounts, **upstream(fake), **(options or {})},
        env={"COPILOT_POOL_LOOP": loop, **(env or {})},
        command=(str(COPILOT_POOL),),
        addon=False,  # the launcher adds it
        args=["-s", str(PROBE)],
    )
    proxy.wait_accounts(["alice", "bob"])
    return proxy


def in_flight(proxy) -> int:
    return sum(account["in_flight"] for account in proxy.status()["accounts"])


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_the_pool_works_on_the_loop_the_launcher_installs(start_proxy, fake, tmp_path, loop):
    proxy = launch(start_proxy, fake, tmp_path, loop)
    proxy.wait_for(f"pool: running on the {loop} event loop")
    proxy.wait_for(f"probe: loop {loop}, eager tasks True")
    with proxy.client() as client:
        assert chat(client, "gho_client_own").status_code == 200  # TLS intercepted with the confdir's CA
        fake.inject("alice", 429, headers={"retry-after": "30"})
        answers = [chat(client, "gho_client_own") for _ in range(2)]  # one goes to alice: re-sent on bob
        assert [a.status_code for a in answers] == [200, 200]
        assert [e.status for e in fake.entries() if e.account == "alice"][-1] == 429
        with client.stream("POST", CHAT_URL, headers={"authorization": "Bearer tid=x"}, json=STREAM) as r:
            arrivals = [time.monotonic() for chunk in r.iter_raw() if b"data: " in chunk]
    assert len(arrivals) >= 3 and arrivals[-1] - arrivals[0] > 0.4  # events came as sent (0.15 s apart), not at once
    assert proxy.stop() == 0
    assert "probe: a task made in done started at once" in proxy.output()
    assert "pool: stopping with 0 request(s) in flight" in proxy.output()
    assert "Traceback" not in proxy.output() and "was destroyed but it is pending" not in proxy.output()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_client_leaving_mid_stream_is_counted_out_and_websockets_relay(start_proxy, fake, tmp_path, loop):
    proxy = launch(start_proxy, fake, tmp_path, loop)
    with proxy.client() as client:
        with client.stream("POST", CHAT_URL, headers={"authorization": "Bearer tid=x"}, json=STREAM) as r:
            chunks = r.iter_raw()  # held: a dropped iterator would close the stream at once
            assert b"data: " in next(chunks)
            assert in_flight(proxy) == 1
        deadline = time.monotonic() + 5  # closed after the first event: mitmproxy's error hook ends the lease
        while in_flight(proxy) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert in_flight(proxy) == 0
    echo = EchoServer()
    try:
        assert echo_through_proxy(proxy.port, echo.port, ["one", "two"]) == ["echo: one", "echo: two"]
    finally:
        echo.stop()


def test_without_uvloop_the_launcher_falls_back_to_asyncio(start_proxy, fake, tmp_path):
    blocker = tmp_path / "no-uvloop"
    (blocker / "uvloop").mkdir(parents=True)
    (blocker / "uvloop" / "__init__.py").write_text("raise ImportError('uvloop is not installed here')\n")
    proxy = launch(start_proxy, fake, tmp_path, "uvloop", env={"PYTHONPATH": str(blocker)})
    proxy.wait_for("pool: running on the asyncio event loop")
    with proxy.client() as client:
        assert chat(client).status_code == 200


def test_plain_mitmdump_through_the_launcher_module_runs_on_uvloop(start_proxy, tmp_path):
    """What the benchmarks call `mitmdump + uvloop`: no pool, the same loop."""
    proxy = start_proxy({}, command=MITMDUMP_UVLOOP, addon=False, args=["-s", str(PROBE)])
    proxy.wait_for("probe: loop uvloop, eager tasks True")
    assert "pool:" not in proxy.output()


def test_the_launcher_prints_no_line_per_flow_and_serves_no_mitm_it_unless_asked(start_proxy, fake, tmp_path):
    quiet = launch(start_proxy, fake, tmp_path, "uvloop")
    with quiet.client() as client:
        assert chat(client).status_code == 200
        assert client.get("http://mitm.it/").status_code == 502  # no onboarding app: sent on, to no such host
    asked = launch(start_proxy, fake, tmp_path, "uvloop", options={"flow_detail": 1, "onboarding": "true"})
    with asked.client() as client:
        assert chat(client).status_code == 200
        assert client.get("http://mitm.it/").status_code == 200
    asked.wait_for(r"POST \S+/chat/completions")  # the line of the flow, as sent upstream
    assert quiet.stop() == 0 and "/chat/completions" not in quiet.output()
