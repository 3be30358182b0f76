"""End to end with the real Copilot CLI (npm `@github/copilot`, pinned in tests/npm): `copilot -p ... --model auto`
through real mitmdump with the pool, against the fake upstream. The CLI signs in as its own user; the pool serves
every inference call on a pool account, auto-model sessions stay on the account that minted them, the WebSocket
`/responses` runs on one account, and when a session's account cools the CLI mints again on another.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from e2e import ALICE, BOB
from mitmdump_process import wait_until
from real_clients import USER, Rig, binary, through

POOL = {ALICE["name"]: ALICE["github_token"], BOB["name"]: BOB["github_token"]}
PROMPT = "Say hello."
QUIET = ["--no-auto-update", "--disable-client-telemetry", "--silent", "--no-color", "--no-custom-instructions"]
INFERENCE = {"/auto", "/models/session", "/models/session/intent", "/responses", "/chat/completions"}
POOLS_OWN = {"/copilot_internal/v2/token", "/copilot_internal/user"}  # the pool's GitHub calls for its accounts


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    binary("copilot")  # skip the module early without the client
    rig = Rig(tmp_path_factory.mktemp("real-cli"), [ALICE, BOB], pool_strategy="round-robin")
    yield rig
    rig.close()


def copilot(rig: Rig, tmp: Path, *args: str) -> tuple[str, list[dict], list]:
    """Run one prompt; return the CLI's answer, what it asked for meanwhile, and what the fake served meanwhile.
    Fails with the CLI's own words (and its log) unless it exits 0."""
    seen, served = len(rig.requests()), len(rig.fake.entries())
    (tmp / "work").mkdir(parents=True, exist_ok=True)
    cmd = [str(binary("copilot")), "-p", PROMPT, *args, *QUIET, "--log-dir", str(tmp / "logs")]
    done = subprocess.run(
        cmd,
        env=through(rig.proxy, tmp, GH_TOKEN=USER[1]),
        cwd=tmp / "work",
        capture_output=True,
        text=True,
        timeout=240,
    )
    logs = "\n".join(p.read_text(errors="replace") for p in sorted((tmp / "logs").glob("*.log")))
    assert done.returncode == 0, rig.masked(f"exit {done.returncode}\n{done.stdout}\n{done.stderr}\n{logs[-4000:]}")
    return done.stdout, rig.requests(seen), rig.fake.entries()[served:]


def pooled(requests: list[dict]) -> list[tuple[str, str, str | None, int]]:
    """(method, path, the account the pool picked, status) of the CLI's inference calls, in order."""
    return [(r["method"], r["path"], r["pooled"], r["status"]) for r in requests if r["path"] in INFERENCE]


def assert_only_pool_credentials_upstream(requests: list[dict], served: list) -> None:
    """Every inference call reached the fake with its account's own GitHub token (the CLI sends its GitHub token;
    the pool swaps in the account's); pool credentials went nowhere else but the pool's own GitHub calls, and the
    CLI's own sign-in reached only what is not pooled."""
    inference = [e for e in served if e.path.split("?")[0] in INFERENCE]
    assert inference and all(e.account in POOL and e.credential == POOL[e.account] for e in inference), inference
    elsewhere = [e for e in served if e.path.split("?")[0] not in INFERENCE | POOLS_OWN]
    assert not [e.path for e in elsewhere if e.credential in POOL.values()]
    assert any(e.credential == USER[1] for e in elsewhere)
    assert not [r["path"] for r in requests if r["pooled"] and r["path"] not in INFERENCE]


def test_auto_model_session_is_minted_and_served_on_one_account(rig, tmp_path):
    answer, requests, served = copilot(rig, tmp_path, "--model", "auto")
    calls = pooled(requests)
    assert [c[:2] for c in calls] == [("POST", "/auto"), ("POST", "/responses")], calls
    minter = calls[0][2]
    # round-robin would send the next call to the other account: the session token keeps it on its minter
    assert minter in POOL and calls == [("POST", "/auto", minter, 200), ("POST", "/responses", minter, 200)]
    assert f"from {minter}" in answer
    turn = next(r for r in requests if r["path"] == "/responses")
    assert "copilot-session-token" in turn["headers"] and turn["headers"]["copilot-integration-id"]
    assert minter in rig.fake.sessions().values()
    assert_only_pool_credentials_upstream(requests, served)
    assert not [e for e in served if e.status == 401], "a session token reached an account that did not mint it"


def test_a_websocket_model_runs_its_conversation_on_one_account(rig, tmp_path):
    sockets = len(rig.fake.websockets)
    answer, requests, served = copilot(rig, tmp_path, "--model", "gpt-5.4")  # its entry lists ws:/responses
    upgrades = [r for r in requests if r["path"] == "/responses" and r["headers"].get("upgrade") == "websocket"]
    assert upgrades and {r["status"] for r in upgrades} == {101}, pooled(requests)
    socket = rig.fake.websockets[sockets]
    assert upgrades[0]["pooled"] == socket["account"] and socket["account"] in POOL
    assert [m["type"] for m in socket["messages"]] == ["response.create"] and socket["closed"]
    assert f"from {socket['account']}" in answer
    assert_only_pool_credentials_upstream(requests, served)
    wait_until(lambda: set(rig.in_flight().values()) == {0}, timeout=30)  # the socket let its account go on close


def test_an_auto_session_over_the_websocket_stays_on_its_minting_account(rig, tmp_path):
    rig.fake.auto_model = "gpt-5.4"  # the session picks a WebSocket model
    try:
        sockets = len(rig.fake.websockets)
        answer, requests, served = copilot(rig, tmp_path, "--model", "auto")
    finally:
        rig.fake.auto_model = "gpt-5-mini"
    minter = next(r["pooled"] for r in requests if r["path"] == "/auto")
    upgrade = next(r for r in requests if r["path"] == "/responses")
    assert upgrade["headers"].get("upgrade") == "websocket" and "copilot-session-token" in upgrade["headers"]
    assert (upgrade["pooled"], upgrade["status"]) == (minter, 101)
    assert rig.fake.websockets[sockets]["account"] == minter and f"from {minter}" in answer
    assert_only_pool_credentials_upstream(requests, served)


def test_when_the_sessions_account_cools_the_cli_mints_again_on_another(tmp_path):
    binary("copilot")
    # alice (tier 0) takes every mint while she can; bob (tier 1) only when she cannot
    rig = Rig(tmp_path / "rig", [ALICE, {**BOB, "priority": 1}])
    try:
        rig.fake.set_rate_limit(1, 120, account="alice")  # her first call is her last for two minutes
        answer, requests, served = copilot(rig, tmp_path / "cli", "--model", "auto")
        status = {a["name"]: a["state"] for a in rig.proxy.status()["accounts"]}
    finally:
        rig.close()
    assert pooled(requests) == [
        ("POST", "/auto", "alice", 200),
        ("POST", "/responses", "alice", 401),  # alice's 429 cooled her: the pool's selector 401, not the 429
        ("POST", "/auto", "bob", 200),  # the CLI minted again, on the account that can serve
        ("POST", "/responses", "bob", 200),
    ]
    assert "from bob" in answer and status == {"alice": "cooling", "bob": "active"}
    upstream = [(e.account, e.path, e.status) for e in served if e.path in INFERENCE]
    assert upstream == [
        ("alice", "/auto", 200),
        ("alice", "/responses", 429),
        ("bob", "/auto", 200),
        ("bob", "/responses", 200),
    ]
    assert rig.fake.exchanges("alice") == 1  # a lost session is not a credential failure: no re-exchange
    assert_only_pool_credentials_upstream(requests, served)
