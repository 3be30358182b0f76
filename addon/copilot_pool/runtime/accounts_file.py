"""Where accounts come from: the accounts file (parsed, validated, secrets resolved) or the legacy single token.

Every error is one line that names the file, the account and the field, and never carries a token's value:
pydantic's own messages embed the offending input, so they are rebuilt here from `loc` and `msg` only, and any
value a message names is a short escaped prefix (core/text.py). Whatever is wrong with a file (not a regular
file, too large, not UTF-8, not JSON, nested too deeply, a wrong field) is the same kind of refusal.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from ..core.model import AccountConfig
from ..core.routing import GITHUB_TOKEN_PREFIXES
from ..core.text import printable, quote
from .files import FileProblem, read_limited

AccountType = Literal["individual", "business", "enterprise"]
LEGACY_ACCOUNT_NAME = "default"
TOKEN_ENV_VARS = ("GH_TOKEN", "GITHUB_TOKEN")
TOKEN_SOURCES = ("github_token", "github_token_file", "github_token_env")  # exactly one per account
MAX_ACCOUNTS_FILE = 8 * 1024 * 1024  # bytes: 10,000 accounts with every field set take about 2 MB
MAX_TOKEN_FILE = 4096  # bytes: a GitHub token is 40 to 100 characters
MAX_TOKEN = 1024  # characters
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")  # printable ASCII without space: what a header can carry
MAX_PROBLEMS = 3  # a file with thousands of wrong entries gets a line, not a page


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

    name: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NAME_PATTERN)]
    github_token: Annotated[str, StringConstraints(max_length=MAX_TOKEN)] | None = None
    github_token_file: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    github_token_env: Annotated[str, StringConstraints(max_length=256, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = (
        None
    )
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
        raw = read_limited(path, MAX_ACCOUNTS_FILE)
    except FileProblem as e:
        raise AccountsFileError(f"{where_file(path)} {e}") from None
    return parse_accounts(raw, path, environ)


def where_file(path: Path) -> str:
    return f"accounts file {printable(str(path))}"


def parse_accounts(raw: bytes | str, path: Path, environ: dict[str, str]) -> list[AccountConfig]:
    where = where_file(path)
    data = json_document(raw, where)
    try:
        parsed = AccountsDocument.model_validate(data)
    except ValidationError as e:
        problems = [_describe(err, data) for err in e.errors()[:MAX_PROBLEMS]]
        if e.error_count() > MAX_PROBLEMS:
            problems.append(f"and {e.error_count() - MAX_PROBLEMS} more problem(s)")
        raise AccountsFileError(f"{where}: " + "; ".join(problems)) from None
    except RecursionError:
        raise AccountsFileError(f"{where}: not valid JSON (nested too deeply)") from None

    seen: set[str] = set()
    configs = []
    for index, entry in enumerate(parsed.accounts):
        where = f"accounts[{index}] {quote(entry.name, 64)}"
        if entry.name in seen:
            raise AccountsFileError(
                f"accounts file {printable(str(path))}: {where}: field 'name': duplicate account name"
            )
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


def json_document(raw: bytes | str, where: str) -> object:
    """The JSON in the file; any way it is not (encoding, syntax, nesting, a number too long) is one refusal."""
    if isinstance(raw, bytes):
        if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or raw[:4] == b"\x00\x00\xfe\xff" or b"\x00" in raw[:4]:
            raise AccountsFileError(f"{where}: not UTF-8 text (it looks like UTF-16 or UTF-32; save it as UTF-8)")
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise AccountsFileError(
                f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start} is no UTF-8)"
            ) from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise AccountsFileError(f"{where}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise AccountsFileError(f"{where}: not valid JSON (nested too deeply)") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise AccountsFileError(f"{where}: not valid JSON ({type(e).__name__})") from None


def _describe(err: Any, data: Any) -> str:
    """'accounts[1] 'bob': field 'enabled': Input should be a valid boolean' (never the input value; a name only
    when it is a valid one, a key from the file as a short escaped prefix)."""
    loc = list(err["loc"])
    where = "top level"
    if loc[:1] == ["accounts"] and len(loc) >= 2 and isinstance(loc[1], int):
        index = loc[1]
        name = None
        try:
            name = data["accounts"][index].get("name")
        except (KeyError, IndexError, TypeError, AttributeError):
            pass
        valid = isinstance(name, str) and len(name) <= 64 and re.fullmatch(NAME_PATTERN, name)
        where = f"accounts[{index}]" + (f" {quote(name, 64)}" if valid else "")
        loc = loc[2:]
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    if loc:
        return f"{where}: field {quote('.'.join(str(p) for p in loc))}: {msg}"
    return f"{where}: {msg}"


def _resolve_token(entry: AccountEntry, path: Path, environ: dict[str, str], where: str) -> tuple[str, Path | None]:
    token_path = None
    file = where_file(path)
    if entry.github_token is not None:
        token, source = entry.github_token, "github_token"
    elif entry.github_token_env is not None:
        source = "github_token_env"
        token = environ.get(entry.github_token_env, "")
        if not token.strip():
            variable = entry.github_token_env
            if variable.startswith(GITHUB_TOKEN_PREFIXES):  # a token where its variable's name belongs: not echoed
                why = "names no environment variable but looks like a token itself; put the token in a variable"
            else:
                why = f"environment variable {variable} is not set"
            raise AccountsFileError(f"{file}: {where}: field {source!r}: {why}")
    else:
        source = "github_token_file"
        try:
            token_path = (path.parent / Path(entry.github_token_file).expanduser()).resolve()
            token = read_token_file(token_path)
        except (FileProblem, ValueError, OSError, RuntimeError) as e:  # resolve: a loop of symlinks, a NUL
            shown = printable(str(token_path or entry.github_token_file), 120)
            why = e if isinstance(e, FileProblem) else "cannot be read (not a usable path)"
            raise AccountsFileError(f"{file}: {where}: field {source!r}: {shown} {why}") from None
    token = token.strip()
    problem = token_problem(token)
    if problem:
        raise AccountsFileError(f"{file}: {where}: field {source!r}: {problem}")
    return token, token_path


def read_token_file(path: Path) -> str:
    """A token file's text; FileProblem when it is no small regular file (never its content in the message)."""
    raw = read_limited(path, MAX_TOKEN_FILE)
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise FileProblem("holds a token that is not printable ASCII") from None


def token_problem(token: str) -> str | None:
    """Why a GitHub token cannot be sent in a header, or None. Never quotes the token."""
    if not token:
        return "the token is empty"
    if len(token) > MAX_TOKEN:
        return f"the token is longer than {MAX_TOKEN} characters"
    if not TOKEN_CHARACTERS.fullmatch(token):
        return "the token is not printable ASCII (or has whitespace or control characters inside)"
    return None


def legacy_account(token_file: str, environ: dict[str, str] | None = None) -> AccountConfig | None:
    """The single-token pool used when no accounts file is set: GH_TOKEN, GITHUB_TOKEN, then the token file.
    None when none is set; AccountsFileError, naming the source, when the one found is unusable."""
    environ = os.environ if environ is None else environ
    for var in TOKEN_ENV_VARS:
        token = environ.get(var, "").strip()
        if token:
            problem = token_problem(token)
            if problem:
                raise AccountsFileError(f"environment variable {var}: {problem}")
            return AccountConfig(LEGACY_ACCOUNT_NAME, token)
    if not token_file:
        return None
    path = Path(token_file).expanduser()
    if not os.path.lexists(path):
        return None
    try:
        token = read_token_file(path).strip()
    except FileProblem as e:
        raise AccountsFileError(f"pool_github_token_file {printable(str(path))} {e}") from None
    problem = token_problem(token)
    if problem:
        raise AccountsFileError(f"pool_github_token_file {printable(str(path))}: {problem}")
    return AccountConfig(LEGACY_ACCOUNT_NAME, token)
