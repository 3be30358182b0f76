"""Add or update accounts in the accounts file, for the login and import scripts.

The file is rewritten atomically (a temp file in the same folder, then rename) and always with mode 0600,
since it holds GitHub tokens. A file that is not a valid accounts document is never overwritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from copilot_pool.runtime.accounts_file import (
    MAX_ACCOUNTS_FILE,
    TOKEN_SOURCES,
    AccountEntry,
    AccountsFileError,
    json_document,
    where_file,
)
from copilot_pool.runtime.files import FileProblem, read_limited
from pydantic import ValidationError


def upsert_account(path: str | Path, name: str, github_token: str, account_type: str | None = None) -> str:
    """Put the account into the file: 'added', 'updated' (same name, new token or type) or 'unchanged'."""
    path = Path(path).expanduser()
    document = _read(path)
    accounts = document["accounts"]
    entry = {"name": name, "github_token": github_token, **({"account_type": account_type} if account_type else {})}
    try:
        AccountEntry.model_validate(entry)
    except ValidationError as e:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) or "entry" for err in e.errors())
        raise AccountsFileError(f"accounts file {path}: account {name!r}: invalid {fields}") from None
    existing = next((a for a in accounts if isinstance(a, dict) and a.get("name") == name), None)
    if existing is None:
        accounts.append(entry)
        action = "added"
    else:
        before = dict(existing)
        for source in TOKEN_SOURCES:
            existing.pop(source, None)
        existing.update(entry)
        action = "unchanged" if existing == before else "updated"
    if action != "unchanged" or _mode(path) & 0o077:
        _write(path, document)
    return action


def _read(path: Path) -> dict:
    if not os.path.lexists(path):
        return {"accounts": []}
    try:
        raw = read_limited(path, MAX_ACCOUNTS_FILE)
    except FileProblem as e:
        raise AccountsFileError(f"{where_file(path)} {e}; left as it is") from None
    try:
        document = json_document(raw, where_file(path))
    except AccountsFileError as e:
        raise AccountsFileError(f"{e}; left as it is") from None
    if not isinstance(document, dict) or not isinstance(document.get("accounts"), list):
        raise AccountsFileError(f"accounts file {path}: expected an object with an 'accounts' list; left as it is")
    return document


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777 if path.exists() else 0


def _write(path: Path, document: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(document, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # whatever the umask said
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
