#!/usr/bin/env python3
"""Import the GitHub tokens Copilot editor plugins keep into the accounts file.

    .venv/bin/python scripts/import_editor_tokens.py --accounts accounts.json

Reads `github-copilot/apps.json` and the older `hosts.json` under $XDG_CONFIG_HOME (default ~/.config), as
written by VS Code, JetBrains, copilot.vim and copilot.lua. Each github.com sign-in becomes an account named
after its GitHub user (added, or its token updated). Tokens are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from accounts_store import upsert_account
from copilot_pool.runtime.accounts_file import AccountsFileError

FILES = ("apps.json", "hosts.json")


def config_dir(environ=os.environ) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "github-copilot"


def editor_tokens(folder: Path) -> tuple[list[tuple[str | None, str]], list[str]]:
    """([(user, token)] for github.com, deduplicated by token; [notes on what was skipped])."""
    found: dict[str, str | None] = {}
    notes = []
    for name in FILES:
        path = folder / name
        if not path.exists():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            notes.append(f"{path}: unreadable ({type(e).__name__}), skipped")
            continue
        for key, entry in data.items() if isinstance(data, dict) else []:
            host = key.split(":", 1)[0]
            token = entry.get("oauth_token") if isinstance(entry, dict) else None
            if not isinstance(token, str) or not token:
                continue
            if host != "github.com":
                notes.append(
                    f"{path}: sign-in for {host} skipped (point pool_github_api at its API and add it by hand)"
                )
                continue
            user = entry.get("user")
            found.setdefault(token, user if isinstance(user, str) and user else None)
    return [(user, token) for token, user in found.items()], notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--accounts", default="accounts.json", help="accounts file to add the accounts to (default: accounts.json)"
    )
    p.add_argument(
        "--config-dir",
        type=Path,
        help="folder holding apps.json / hosts.json (default: $XDG_CONFIG_HOME/github-copilot)",
    )
    p.add_argument(
        "--account-type", choices=["individual", "business", "enterprise"], help="type for the imported accounts"
    )
    a = p.parse_args(argv)
    folder = a.config_dir or config_dir()
    tokens, notes = editor_tokens(folder)
    for note in notes:
        print(note, file=sys.stderr)
    if not tokens:
        print(f"no GitHub Copilot sign-in found in {folder / FILES[0]} or {folder / FILES[1]}", file=sys.stderr)
        return 1
    for index, (user, token) in enumerate(tokens):
        name = user or ("editor" if index == 0 else f"editor-{index + 1}")
        try:
            action = upsert_account(a.accounts, name, token, a.account_type)
        except AccountsFileError as e:
            print(e, file=sys.stderr)
            return 1
        print(f"{action} account {name} in {a.accounts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
