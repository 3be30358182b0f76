"""End to end with the real Copilot language server (npm `@github/copilot-language-server`, pinned in tests/npm),
driven over LSP as an editor drives it, through real mitmdump with the pool, against the fake upstream. The server
exchanges its own user's GitHub token for a Copilot token; the pool swaps an account's Copilot token in for the
inline completion, and the pool's own answers read as GitHub's.
"""

from __future__ import annotations

import pytest
from e2e import ALICE, BOB
from fake_copilot import completion_text
from lsp_client import LspClient
from mitmdump_process import chat
from real_clients import USER, Rig, binary, through

POOL = {ALICE["name"], BOB["name"]}
SOURCE = "def greet():\n    "
FIREWALL = "does not appear to originate from GitHub"


@pytest.fixture
def rig(tmp_path):
    binary("copilot-language-server")  # skip early without the client
    rig = Rig(tmp_path / "rig", [ALICE, BOB], pool_strategy="round-robin")
    yield rig
    rig.close()


@pytest.fixture
def editor(rig, tmp_path):
    """The language server, initialized and signed in as USER (GH_COPILOT_TOKEN), with main.py open."""
    project = tmp_path / "project"
    project.mkdir()
    source = project / "main.py"
    source.write_text(SOURCE)
    server = LspClient(
        [str(binary("copilot-language-server")), "--stdio"],
        through(rig.proxy, tmp_path / "client", GH_COPILOT_TOKEN=USER[1]),
        cwd=str(project),
    )
    try:
        server.request(
            "initialize",
            {
                "processId": None,
                "workspaceFolders": [{"uri": project.as_uri(), "name": "project"}],
                "capabilities": {"workspace": {"workspaceFolders": True}},
                "initializationOptions": {
                    "editorInfo": {"name": "copilot-pool-tests", "version": "1.0"},
                    "editorPluginInfo": {"name": "copilot-pool-tests", "version": "1.0"},
                },
            },
        )
        server.notify("initialized", {})
        server.notify("workspace/didChangeConfiguration", {"settings": {"telemetry": {"telemetryLevel": "off"}}})
        status = server.request("checkStatus", {})
        assert status["status"] == "OK", rig.masked(f"{status}\n{server.transcript()}")
        server.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": source.as_uri(), "languageId": "python", "version": 1, "text": SOURCE}},
        )
        server.source = source
        yield server
    finally:
        server.close()


def complete(server: LspClient) -> list[dict]:
    """An inline completion at the end of main.py, as an editor asks for one while the user types."""
    lines = SOURCE.split("\n")
    result = server.request(
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": server.source.as_uri(), "version": 1},
            "position": {"line": len(lines) - 1, "character": len(lines[-1])},
            "context": {"triggerKind": 2},
            "formattingOptions": {"tabSize": 4, "insertSpaces": True},
        },
        timeout=90,
    )
    return result["items"]


def completions(entries) -> list:
    return [e for e in entries if e.path.startswith("/v1/engines/")]


def logged(server: LspClient) -> str:
    return "\n".join(n["params"]["message"] for n in server.notifications if n["method"] == "window/logMessage")


def test_an_inline_completion_is_served_by_a_pool_account(rig, editor):
    items = complete(editor)
    served = completions(rig.fake.entries())
    assert len(served) == 1, rig.masked(editor.transcript())
    account = served[0].account
    # the fake knows whose token it got: an account of the pool's, not the one the server exchanged for itself
    assert account in POOL and served[0].credential_kind == "copilot" and served[0].status == 200
    assert [item["insertText"] for item in items] == [completion_text(account)]
    own = [e for e in rig.fake.entries() if e.path == "/copilot_internal/v2/token" and e.account == USER[0]]
    assert own, "the server never exchanged its own token"
    asked = [r for r in rig.requests() if r["path"].startswith("/v1/engines/")]
    assert [(r["host"], r["pooled"]) for r in asked] == [("proxy.individual.githubcopilot.com", account)]
    assert FIREWALL not in logged(editor)


def test_the_pools_own_429_reads_as_githubs_answer(rig, editor):
    for name in POOL:
        rig.fake.inject(name, 429, headers={"retry-after": "600"})
    with rig.proxy.client() as client:
        assert chat(client).status_code == 429  # tried on both: both cooling now
    rig.proxy.wait_accounts(list(POOL), states=("cooling",))
    before = len(rig.fake.entries())
    assert complete(editor) == []
    assert completions(rig.fake.entries()[before:]) == []  # the pool answered: no account could serve
    log = logged(editor)
    # the server shows the pool's own message, as it shows GitHub's: the answer carries an x-github-request-id
    assert "Response status was 429" in log and "pool_all_cooling" in log, rig.masked(editor.transcript())
    assert "Retry in 6" in log  # and it waits as long as the pool's Retry-After says (about 600 s)
    shown = editor.wait_notification("didChangeStatus", lambda p: "429" in p.get("message", ""))
    assert shown["kind"] == "Warning" and "pool_all_cooling" in shown["message"]
    assert FIREWALL not in log and FIREWALL not in shown["message"]
