import json

import pytest
from copilot_pool.runtime.accounts_file import AccountsFileError, legacy_account, load_accounts_file

SECRET = "gho_SECRETVALUE123"


def write(tmp_path, data, name="accounts.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def error_for(tmp_path, data, environ=None):
    with pytest.raises(AccountsFileError) as e:
        load_accounts_file(write(tmp_path, data), environ or {})
    message = str(e.value)
    assert SECRET not in message and str(tmp_path) in message
    return message


def test_all_token_sources(tmp_path, monkeypatch):
    (tmp_path / "bob.token").write_text("gho_bob\n")
    path = write(
        tmp_path,
        {
            "accounts": [
                {"name": "alice", "github_token": "gho_alice"},
                {"name": "bob", "github_token_file": "bob.token", "account_type": "business"},
                {"name": "carol", "github_token_env": "CAROL", "enabled": False},
            ]
        },
    )
    configs = load_accounts_file(path, {"CAROL": "gho_carol"})
    assert [(c.name, c.github_token, c.account_type, c.enabled) for c in configs] == [
        ("alice", "gho_alice", "individual", True),
        ("bob", "gho_bob", "business", True),
        ("carol", "gho_carol", "individual", False),
    ]
    assert "gho_alice" not in repr(configs)


def test_example_file_is_valid(monkeypatch, tmp_path):
    import pathlib

    example = pathlib.Path(__file__).parent.parent / "accounts.example.json"
    data = json.loads(example.read_text())
    fields = {k for entry in data["accounts"] for k in entry}
    assert fields >= {"name", "github_token", "github_token_file", "github_token_env", "account_type", "enabled"}


@pytest.mark.parametrize(
    "data,expected",
    [
        ('{"accounts": [', "not valid JSON"),
        (
            {"accounts": [{"name": "a", "github_token": SECRET, "colour": "red"}]},
            "accounts[0] 'a': field 'colour': unknown field",
        ),
        ({"accounts": [{"name": "a"}]}, "accounts[0] 'a': set exactly one of"),
        ({"accounts": [{"name": "a", "github_token": SECRET, "github_token_env": "X"}]}, "set exactly one of"),
        (
            {"accounts": [{"name": "a", "github_token": 123}]},
            "accounts[0] 'a': field 'github_token': Input should be a valid string",
        ),
        ({"accounts": [{"name": "a", "github_token": SECRET, "enabled": "yes"}]}, "field 'enabled'"),
        ({"accounts": [{"name": "a", "github_token": SECRET, "account_type": "gold"}]}, "field 'account_type'"),
        (
            {"accounts": [{"name": "a", "github_token": SECRET}, {"name": "a", "github_token": SECRET}]},
            "accounts[1] 'a': field 'name': duplicate",
        ),
        ({"accounts": [{"name": "", "github_token": SECRET}]}, "accounts[0]: field 'name'"),
        ({"accounts": [{"name": "a", "github_token": "gho_x\r\nX-Evil: 1"}]}, "whitespace or control"),
        ({"accounts": [{"name": "a", "github_token": "gho_x\u00e9"}]}, "not printable ASCII"),
        ({"acounts": []}, "top level: field 'acounts': unknown field"),
        ([], "top level"),
    ],
)
def test_errors_name_file_account_and_field(tmp_path, data, expected):
    assert expected in error_for(tmp_path, data)


def test_missing_env_and_file(tmp_path):
    assert "environment variable NOPE is not set" in error_for(
        tmp_path, {"accounts": [{"name": "a", "github_token_env": "NOPE"}]}
    )
    missing = f"field 'github_token_file': {tmp_path / 'missing.token'} cannot be read (No such file"
    assert missing in error_for(tmp_path, {"accounts": [{"name": "a", "github_token_file": "missing.token"}]})


def test_missing_file(tmp_path):
    with pytest.raises(AccountsFileError, match="nope.json cannot be read"):
        load_accounts_file(tmp_path / "nope.json")


def test_legacy_token_sources(tmp_path):
    token_file = tmp_path / "github_token"
    token_file.write_text("gho_fromfile\n")
    assert legacy_account(str(token_file), {"GH_TOKEN": "gho_env"}).github_token == "gho_env"
    assert legacy_account(str(token_file), {"GITHUB_TOKEN": "gho_env2"}).github_token == "gho_env2"
    assert legacy_account(str(token_file), {}).github_token == "gho_fromfile"
    assert legacy_account(str(tmp_path / "none"), {}) is None


def test_concurrency_weight_priority(tmp_path):
    path = write(
        tmp_path,
        {
            "accounts": [
                {"name": "alice", "github_token": "gho_a", "max_concurrency": 4, "weight": 3, "priority": 1},
                {"name": "bob", "github_token": "gho_b"},
            ]
        },
    )
    alice, bob = load_accounts_file(path, {})
    assert (alice.max_concurrency, alice.weight, alice.priority) == (4, 3, 1)
    assert (bob.max_concurrency, bob.weight, bob.priority) == (None, 1, 0)
    message = error_for(tmp_path, {"accounts": [{"name": "alice", "github_token": SECRET, "weight": 0}]})
    assert "accounts[0] 'alice': field 'weight'" in message
    message = error_for(tmp_path, {"accounts": [{"name": "alice", "github_token": SECRET, "max_concurrency": "2"}]})
    assert "field 'max_concurrency'" in message
