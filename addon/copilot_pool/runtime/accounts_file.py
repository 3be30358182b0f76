"""Where accounts come from: the accounts file (parsed, validated, secrets resolved) or the legacy single token.

Every error names the file, the account and the field, and never carries a token's value:
pydantic's own messages embed the offending input, so they are rebuilt here from `loc` and `msg` only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from ..core.model import AccountConfig

AccountType = Literal["individual", "business", "enterprise"]
LEGACY_ACCOUNT_NAME = "default"
TOKEN_ENV_VARS = ("GH_TOKEN", "GITHUB_TOKEN")
TOKEN_SOURCES = ("github_token", "github_token_file", "github_token_env")  # exactly one per account


class AccountsFileError(ValueError):
    """The accounts file cannot be used; the message is safe to show (it holds no secret)."""


class AccountSource(Protocol):
    """Where the pool's account set comes from, and which files to watch for changes to it."""

    def load(self) -> list[AccountConfig]: ...

    def files(self, configs: list[AccountConfig]) -> list[Path]: ...


class AccountsFile:
    def __init__(self, path: str) -> None:
        self.path = Path(path).expanduser()

    def load(self) -> list[AccountConfig]:
        return load_accounts_file(self.path)

    def files(self, configs: list[AccountConfig]) -> list[Path]:
        return [self.path, *(Path(c.token_file) for c in configs if c.token_file)]


class LegacyToken:
    """No accounts file: one account from GH_TOKEN, GITHUB_TOKEN or the token file (maybe none)."""

    def __init__(self, token_file: str) -> None:
        self.token_file = token_file

    def load(self) -> list[AccountConfig]:
        account = legacy_account(self.token_file)
        return [account] if account else []

    def files(self, configs: list[AccountConfig]) -> list[Path]:
        return [Path(self.token_file).expanduser()]


class AccountEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")]
    github_token: str | None = None
    github_token_file: str | None = None
    github_token_env: str | None = None
    account_type: AccountType = "individual"
    enabled: bool = True
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    weight: Annotated[int, Field(ge=1, le=1000)] = 1
    priority: Annotated[int, Field(ge=0, le=100)] = 0
    credit_budget: Annotated[float, Field(gt=0, le=10**9)] | None = None

    @model_validator(mode="after")
    def _one_token_source(self) -> AccountEntry:
        sources = [s for s in TOKEN_SOURCES if getattr(self, s)]
        if len(sources) != 1:
            raise ValueError(f"set exactly one of {', '.join(TOKEN_SOURCES)}")
        return self


class AccountsDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    accounts: list[AccountEntry]


def load_accounts_file(path: str | Path, environ: dict[str, str] | None = None) -> list[AccountConfig]:
    """Read, validate and resolve the accounts file; raise AccountsFileError naming what is wrong."""
    path = Path(path).expanduser()
    environ = os.environ if environ is None else environ
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as e:
        raise AccountsFileError(f"accounts file {path}: cannot read it ({e.strerror or e})") from None
    return parse_accounts(raw, path, environ)


def parse_accounts(raw: str, path: Path, environ: dict[str, str]) -> list[AccountConfig]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise AccountsFileError(
            f"accounts file {path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
        ) from None
    try:
        parsed = AccountsDocument.model_validate(data)
    except ValidationError as e:
        raise AccountsFileError(
            f"accounts file {path}: " + "; ".join(_describe(err, data) for err in e.errors())
        ) from None

    seen: set[str] = set()
    configs = []
    for index, entry in enumerate(parsed.accounts):
        where = f"accounts[{index}] {entry.name!r}"
        if entry.name in seen:
            raise AccountsFileError(f"accounts file {path}: {where}: field 'name': duplicate account name")
        seen.add(entry.name)
        token, token_file = _resolve_token(entry, path, environ, where)
        configs.append(
            AccountConfig(
                entry.name,
                token,
                entry.account_type,
                entry.enabled,
                max_concurrency=entry.max_concurrency,
                weight=entry.weight,
                priority=entry.priority,
                credit_budget=entry.credit_budget,
                token_file=str(token_file) if token_file else None,
            )
        )
    return configs


def _describe(err: Any, data: Any) -> str:
    """'accounts[1] "bob": field 'enabled': Input should be a valid boolean' (never the input value)."""
    loc = list(err["loc"])
    where = "top level"
    if loc[:1] == ["accounts"] and len(loc) >= 2 and isinstance(loc[1], int):
        index = loc[1]
        name = None
        try:
            name = data["accounts"][index].get("name")
        except (KeyError, IndexError, TypeError, AttributeError):
            pass
        where = f"accounts[{index}]" + (f" {name!r}" if isinstance(name, str) else "")
        loc = loc[2:]
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    if loc:
        return f"{where}: field {'.'.join(str(p) for p in loc)!r}: {msg}"
    return f"{where}: {msg}"


def _resolve_token(entry: AccountEntry, path: Path, environ: dict[str, str], where: str) -> tuple[str, Path | None]:
    token_path = None
    if entry.github_token is not None:
        token, source = entry.github_token, "github_token"
    elif entry.github_token_env is not None:
        source = "github_token_env"
        token = environ.get(entry.github_token_env, "")
        if not token.strip():
            raise AccountsFileError(
                f"accounts file {path}: {where}: field {source!r}: "
                f"environment variable {entry.github_token_env} is not set"
            )
    else:
        source = "github_token_file"
        token_path = (path.parent / Path(entry.github_token_file).expanduser()).resolve()
        try:
            token = token_path.read_text(encoding="utf-8")
        except OSError as e:
            raise AccountsFileError(
                f"accounts file {path}: {where}: field {source!r}: cannot read {token_path} ({e.strerror or e})"
            ) from None
    token = token.strip()
    problem = token_problem(token)
    if problem:
        raise AccountsFileError(f"accounts file {path}: {where}: field {source!r}: {problem}")
    return token, token_path


def token_problem(token: str) -> str | None:
    """Why a GitHub token cannot be sent in a header, or None."""
    if not token:
        return "the token is empty"
    if any(c.isspace() or not c.isprintable() for c in token):
        return "the token contains whitespace or control characters"
    return None


def legacy_account(token_file: str, environ: dict[str, str] | None = None) -> AccountConfig | None:
    """The single-token pool used when no accounts file is set: GH_TOKEN, GITHUB_TOKEN, then the token file."""
    environ = os.environ if environ is None else environ
    for var in TOKEN_ENV_VARS:
        token = environ.get(var, "").strip()
        if token and not token_problem(token):
            return AccountConfig(LEGACY_ACCOUNT_NAME, token)
    if token_file:
        try:
            token = Path(token_file).expanduser().read_text(encoding="utf-8").strip()
        except OSError:
            return None
        if not token_problem(token):
            return AccountConfig(LEGACY_ACCOUNT_NAME, token)
    return None
