from __future__ import annotations

import pytest
from e2e import ALICE, BOB
from fake_copilot import FakeCopilot
from mitmdump_process import Mitmdump
from redis_process import RedisServer


@pytest.fixture
def fake():
    upstream = FakeCopilot(stream_chunks=5, stream_interval=0.15)
    for account in (ALICE, BOB):
        upstream.add_account(account["name"], account["github_token"], account.get("account_type", "individual"))
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture
def start_proxy(tmp_path):
    """Start mitmdump (with the pool addon unless addon=False); every one started is stopped afterwards. Each keeps
    its state in the default place (pool_state=sqlite) under a data directory of its own, unless told otherwise."""
    started: list[Mitmdump] = []

    def start(options: dict | None = None, env: dict | None = None, **kw) -> Mitmdump:
        confdir = tmp_path / f"confdir{len(started)}"
        options = {"pool_github_token_file": str(tmp_path / "no-token-file"), **(options or {})}
        env = {"XDG_DATA_HOME": str(tmp_path / f"data{len(started)}"), **(env or {})}
        proxy = Mitmdump(confdir, options, env, **kw)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server of the test's own on a free loopback port."""
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()
