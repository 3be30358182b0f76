"""The operator scripts, run as real processes against the fake GitHub upstream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from accounts_store import upsert_account
from copilot_pool.runtime.accounts_file import AccountsFileError, load_accounts_file

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
ALICE_TOKEN, BOB_TOKEN = "gho_alice_secret_0001", "gho_bob_secret_0002"


def run(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environ, **(env or {})},
    )


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# -- accounts file writer -------------------------------------------------------------------------------


def test_upsert_adds_updates_and_keeps_other_entries(tmp_path):
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps({"accounts": [{"name": "carol", "github_token_env": "CAROL", "enabled": False}]}))
    path.chmod(0o644)
    assert upsert_account(path, "alice", ALICE_TOKEN) == "added"
    assert mode(path) == 0o600
    assert upsert_account(path, "alice", ALICE_TOKEN) == "unchanged"
    assert upsert_account(path, "carol", "gho_carol_new", "business") == "updated"
    data = json.loads(path.read_text())["accounts"]
    assert data == [
        {"name": "carol", "enabled": False, "github_token": "gho_carol_new", "account_type": "business"},
        {"name": "alice", "github_token": ALICE_TOKEN},
    ]
    assert [a.name for a in load_accounts_file(path)] == ["carol", "alice"]
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_upsert_never_overwrites_a_bad_file_and_rejects_bad_names(tmp_path):
    path = tmp_path / "accounts.json"
    path.write_text("{not json")
    with pytest.raises(AccountsFileError, match="not valid JSON.*left as it is"):
        upsert_account(path, "alice", ALICE_TOKEN)
    assert path.read_text() == "{not json"
    with pytest.raises(AccountsFileError, match="account 'bad name'") as e:
        upsert_account(tmp_path / "new.json", "bad name", ALICE_TOKEN)
    assert ALICE_TOKEN not in str(e.value) and not (tmp_path / "new.json").exists()


# -- login.py: GitHub's device flow ---------------------------------------------------------------------


@pytest.fixture
def github(fake):
    fake.device_interval = fake.device_slow_down_step = 0.1
    return fake


def login(github, accounts: Path, *args: str) -> subprocess.CompletedProcess:
    return run(
        "login.py", "--accounts", str(accounts), "--github-url", github.base_url, "--github-api", github.base_url, *args
    )


def test_login_adds_the_account_with_mode_0600(github, tmp_path):
    accounts = tmp_path / "accounts.json"
    github.approve_device_login("alice", pending=2, slow_down=1)
    result = login(github, accounts)
    assert result.returncode == 0, result.stderr
    assert f"Open {github.base_url}/login/device and enter the code " in result.stderr
    assert result.stdout.strip() == f"added account alice (individual, plan individual) in {accounts}"
    assert mode(accounts) == 0o600
    [account] = load_accounts_file(accounts)
    assert (account.name, account.github_token, account.account_type) == ("alice", ALICE_TOKEN, "individual")
    polls = [e for e in github.entries() if e.path == "/login/oauth/access_token"]
    assert (
        len(polls) == 4
    )  # pending, pending, slow_down, token: never faster than the interval (that earns extra slow_downs)
    assert ALICE_TOKEN not in result.stdout + result.stderr


def test_login_updates_an_account_and_keeps_the_others(github, tmp_path):
    accounts = tmp_path / "accounts.json"
    accounts.write_text(
        json.dumps(
            {"accounts": [{"name": "alice", "github_token": "gho_old"}, {"name": "carol", "github_token": "gho_c"}]}
        )
    )
    github.approve_device_login("bob", pending=0)
    assert login(github, accounts, "--name", "alice").returncode == 0  # bob's sign-in, stored as "alice"
    github.approve_device_login("bob", pending=1)
    result = login(github, accounts)
    assert result.returncode == 0 and "added account bob (business, plan business)" in result.stdout
    by_name = {a.name: a for a in load_accounts_file(accounts)}
    assert by_name["alice"].github_token == BOB_TOKEN and by_name["carol"].github_token == "gho_c"
    assert by_name["bob"].account_type == "business"


def test_login_denied_or_expired_leaves_the_file_alone(github, tmp_path):
    accounts = tmp_path / "accounts.json"
    accounts.write_text('{"accounts": []}')
    github.approve_device_login("alice", deny=True)
    result = login(github, accounts)
    assert result.returncode == 1 and "login failed: the sign-in was denied" in result.stderr
    github.device_expires_in = 0.5  # nobody approves this one
    result = login(github, accounts)
    assert result.returncode == 1 and "the code expired" in result.stderr
    assert accounts.read_text() == '{"accounts": []}'


# -- import_editor_tokens.py ---------------------------------------------------------------------------


def test_import_editor_tokens_from_xdg_config_home(tmp_path):
    folder = tmp_path / "xdg" / "github-copilot"
    folder.mkdir(parents=True)
    (folder / "apps.json").write_text(
        json.dumps(
            {
                "github.com:Iv1.b507a08c87ecfe98": {
                    "user": "alice",
                    "oauth_token": ALICE_TOKEN,
                    "githubAppId": "Iv1.b507a08c87ecfe98",
                },
                "acme.ghe.com:Iv1.b507a08c87ecfe98": {"user": "alice-acme", "oauth_token": "ghu_acme_token"},
            }
        )
    )
    (folder / "hosts.json").write_text(json.dumps({"github.com": {"user": "bob", "oauth_token": BOB_TOKEN}}))
    accounts = tmp_path / "accounts.json"
    result = run("import_editor_tokens.py", "--accounts", str(accounts), env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"added account alice in {accounts}", f"added account bob in {accounts}"]
    assert "sign-in for acme.ghe.com skipped" in result.stderr
    assert {(a.name, a.github_token) for a in load_accounts_file(accounts)} == {
        ("alice", ALICE_TOKEN),
        ("bob", BOB_TOKEN),
    }
    assert mode(accounts) == 0o600
    for token in (ALICE_TOKEN, BOB_TOKEN, "ghu_acme_token"):
        assert token not in result.stdout + result.stderr
    again = run("import_editor_tokens.py", "--accounts", str(accounts), env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert again.stdout.splitlines() == [
        f"unchanged account alice in {accounts}",
        f"unchanged account bob in {accounts}",
    ]


def test_import_editor_tokens_with_nothing_to_import(tmp_path):
    result = run(
        "import_editor_tokens.py", "--accounts", str(tmp_path / "a.json"), env={"XDG_CONFIG_HOME": str(tmp_path)}
    )
    assert result.returncode == 1 and "no GitHub Copilot sign-in found" in result.stderr
    assert not (tmp_path / "a.json").exists()


# -- check_accounts.py -----------------------------------------------------------------------------------


def trusted(fake) -> list[str]:
    return [arg for base in fake.endpoint_bases() for arg in ("--extra-endpoint", base)]


def test_check_accounts_reports_each_account_and_fails_on_one(fake, tmp_path):
    fake.add_account("carol", "gho_carol_secret_0003")
    fake.revoke("carol")
    accounts = tmp_path / "accounts.json"
    entries = [
        {"name": "alice", "github_token": ALICE_TOKEN},
        {"name": "bob", "github_token": BOB_TOKEN, "account_type": "business"},
    ]
    accounts.write_text(json.dumps({"accounts": entries}))
    result = run("check_accounts.py", "--accounts", str(accounts), "--github-api", fake.base_url, *trusted(fake))
    assert result.returncode == 0, result.stdout + result.stderr
    alice, bob = result.stdout.splitlines()
    assert alice.startswith("alice  ok  plan individual, sku copilot_for_individuals_subscriber, ")
    assert f"endpoint http://127.0.0.1:{fake.port}, premium 300/300 left (100.0%), resets " in alice
    assert bob.startswith("bob    ok  plan business, sku copilot_for_business_seat, endpoint http://localhost:")

    accounts.write_text(
        json.dumps({"accounts": [*entries, {"name": "carol", "github_token": "gho_carol_secret_0003"}]})
    )
    result = run("check_accounts.py", "--accounts", str(accounts), "--github-api", fake.base_url)
    assert result.returncode == 1
    # without the fake's bases trusted, its plain-http endpoints are refused, as the pool would refuse them
    refused = f"endpoint https://api.individual.githubcopilot.com (refused endpoints.api 'http://127.0.0.1:{fake.port}'"
    assert refused in result.stdout
    assert (
        "carol  FAILED  GitHub rejected the token (401)" in result.stdout
        and "1 of 3 account(s) failed" in result.stderr
    )
    everything = result.stdout + result.stderr
    for secret in [ALICE_TOKEN, BOB_TOKEN, "gho_carol_secret_0003", *fake.issued_tokens()]:
        assert secret not in everything
