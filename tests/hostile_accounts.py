"""500 accounts files an attacker or an unlucky operator could hand the pool, generated from a fixed seed.

Each case writes its files into a folder and says which secrets it holds (token values that must never appear in
a message, also not escaped) and whether the file is valid after all (a few are: the checks must not refuse
everything). Used by tests/test_hostile_accounts.py (every case, in process; a sample through real mitmdump at
start-up and by hot reload) and benchmarks/hostile_accounts.py (every case through real mitmdump).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

COUNT = 500
SEED = 15


@dataclass
class Case:
    name: str
    write: Callable[[Path], Path] = field(repr=False)  # folder -> the accounts file
    secrets: list[str] = field(default_factory=list)
    valid: bool | None = False  # None: either way (a random mutation may still be a valid file)
    environ: dict[str, str] = field(default_factory=dict)

    def forbidden(self) -> list[str]:
        """Every form of a secret that must not appear: as is, and as an escaped message would show it."""
        return sorted({form for s in self.secrets for form in (s, ascii(s)[1:-1], s[:12])})


def _document(*entries: dict) -> bytes:
    return json.dumps({"accounts": list(entries)}).encode()


def _file(data: bytes | str, name: str = "accounts.json") -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return path

    return write


def _with_token_file(token_file: Callable[[Path], str], entry: dict | None = None) -> Callable[[Path], Path]:
    """An account whose github_token_file is what `token_file(folder)` makes (a path, maybe odd)."""

    def write(folder: Path) -> Path:
        path = folder / "accounts.json"
        path.write_bytes(_document({"name": "alice", "github_token_file": token_file(folder), **(entry or {})}))
        return path

    return write


def _fifo(folder: Path) -> str:
    os.mkfifo(folder / "token.fifo")
    return str(folder / "token.fifo")


def _link_loop(folder: Path) -> str:
    (folder / "a").symlink_to(folder / "b")
    (folder / "b").symlink_to(folder / "a")
    return str(folder / "a")


def _accounts_fifo(folder: Path) -> Path:
    os.mkfifo(folder / "accounts.json")
    return folder / "accounts.json"


def _accounts_symlink(target: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        (folder / "accounts.json").symlink_to(target)
        return folder / "accounts.json"

    return write


def _accounts_dir(folder: Path) -> Path:
    (folder / "accounts.json").mkdir()
    return folder / "accounts.json"


def _token_file_with(data: bytes) -> Callable[[Path], str]:
    def write(folder: Path) -> str:
        (folder / "alice.token").write_bytes(data)
        return str(folder / "alice.token")  # absolute: the accounts file may be moved elsewhere

    return write


def cases() -> list[Case]:
    rng = random.Random(SEED)
    out: list[Case] = []
    secret = "gho_HOSTILESECRET0001"
    good = {"name": "alice", "github_token": secret}

    # -- valid after all ------------------------------------------------------------------------------------
    out.append(Case("valid", _file(_document(good)), [secret], valid=True))
    out.append(Case("valid with a UTF-8 BOM", _file(b"\xef\xbb\xbf" + _document(good)), [secret], valid=True))
    many = [{"name": f"a{i}", "github_token": f"gho_many{i:05d}"} for i in range(10_000)]
    out.append(Case("valid, 10000 accounts", _file(_document(*many)), ["gho_many00042"], valid=True))

    # -- encodings ------------------------------------------------------------------------------------------
    text = json.dumps({"accounts": [good]})
    for encoding in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "cp1252", "latin-1"):
        data = text.replace("alice", "al\u00efce").encode(encoding)
        out.append(Case(f"encoded {encoding}", _file(data), [secret]))
    for raw in (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"):
        out.append(Case(f"bad UTF-8 {raw!r} in a token", _file(_document(good).replace(b"0001", raw)), [secret]))
    for key in ("name", "github_token", "github_token_env", "github_token_file", "account_type", "colour"):
        entry = {**good, key: "x\ud800y"} if key != "github_token" else {"name": "alice", "github_token": "\udfff"}
        data = json.dumps({"accounts": [entry]}).encode()  # a lone surrogate, \\u-escaped: valid JSON text
        out.append(Case(f"lone surrogate in {key}", _file(data), [secret]))

    # -- sizes ----------------------------------------------------------------------------------------------
    out.append(Case("10 MB of whitespace", _file(_document(good) + b" " * 10_000_000), [secret]))
    out.append(Case("10 MB name", _file(_document({**good, "name": "n" * 10_000_000})), [secret]))
    out.append(Case("10 MB unknown key", _file(_document({**good, "k" * 5_000_000: 1})), [secret]))
    out.append(Case("3 MB token", _file(_document({"name": "alice", "github_token": "gho_" + "t" * 3_000_000})), []))
    out.append(Case("empty file", _file(b"")))
    out.append(Case("whitespace only", _file(b" \n\t ")))
    for digits in (4301, 100_000):
        out.append(Case(f"a {digits}-digit weight", _file(b'{"accounts": [{"weight": ' + b"9" * digits + b"}]}")))

    # -- nesting --------------------------------------------------------------------------------------------
    for depth in (100, 999, 1000, 5000, 20_000, 100_000):
        out.append(Case(f"lists {depth} deep", _file(b"[" * depth + b"]" * depth)))
        out.append(Case(f"objects {depth} deep", _file(b'{"a":' * depth + b"1" + b"}" * depth)))
        out.append(Case(f"unclosed {depth} deep", _file(b"[" * depth)))
        nested = b'{"accounts": [{"name": "alice", "github_token": "gho_x", "weight": ' + b"[" * depth + b"]" * depth
        out.append(Case(f"a field {depth} deep", _file(nested + b"}]}")))

    # -- JSON syntax ----------------------------------------------------------------------------------------
    for name, data in {
        "truncated": _document(good)[:-7],
        "trailing comma": b'{"accounts": [{"name": "alice", "github_token": "' + secret.encode() + b'",}]}',
        "comment": b'// tokens\n{"accounts": []}',
        "NaN weight": b'{"accounts": [{"name": "alice", "github_token": "gho_x", "weight": NaN}]}',
        "single quotes": b"{'accounts': []}",
        "null": b"null",
        "a string": b'"accounts"',
        "a number": b"42",
        "a list": b"[]",
        "accounts null": b'{"accounts": null}',
        "accounts an object": b'{"accounts": {"alice": {}}}',
        "control character in a string": b'{"accounts": [{"name": "al\x01ice", "github_token": "gho_x"}]}',
        "NUL in the file": _document(good).replace(b"alice", b"al\x00ice"),
    }.items():
        out.append(Case(f"syntax: {name}", _file(data), [secret]))

    # -- wrong types and values -----------------------------------------------------------------------------
    wrong = [None, True, 0, -1, 1.5, 10**20, "", "x" * 300, [], ["a"], {}, {"a": 1}]
    # (key, value) pairs of that list that are fine after all: an unset optional source, a long but printable
    # token, an in-range number
    fine = {("github_token", "x" * 300), ("github_token_file", None), ("github_token_env", None), ("enabled", True)}
    fine |= {("max_concurrency", v) for v in (None, 10**20, 101, 1001)} | {("weight", 101), ("priority", 0)}

    for key in ("name", "github_token", "github_token_file", "github_token_env", "account_type", "enabled"):
        for value in wrong:
            entry = {**good, key: value} if key != "github_token" else {"name": "alice", key: value}
            ok = (
                not isinstance(value, list | dict)
                and (key, value) in fine
                and (type(value) is not bool) ^ (key == "enabled")
            )
            out.append(Case(f"{key} = {str(value)[:20]!r}", _file(_document(entry)), [secret], valid=ok))
    for key in ("max_concurrency", "weight", "priority"):
        for value in (*wrong, 101, 1001, -5):
            ok = not isinstance(value, list | dict) and (key, value) in fine and type(value) is not bool
            out.append(Case(f"{key} = {str(value)[:20]!r}", _file(_document({**good, key: value})), [secret], valid=ok))
    for name in ("al ice", "-alice", "alice\n", "al/ice", "\u00e4lice", "a" * 65):
        out.append(Case(f"name {name[:20]!r}", _file(_document({**good, "name": name})), [secret]))
    out.append(Case("a token-shaped name", _file(_document({**good, "name": "gho_" + "s" * 60})), [secret], valid=True))
    out.append(Case("duplicate names", _file(_document(good, good)), [secret]))
    out.append(Case("two token sources", _file(_document({**good, "github_token_env": "X"})), [secret]))
    out.append(Case("no token source", _file(_document({"name": "alice"}))))
    out.append(Case("thousands of wrong entries", _file(_document(*[{"name": 5}] * 20_000))))

    # -- tokens that cannot go into a header ----------------------------------------------------------------
    bad_tokens = [
        "gho_S\u00c9CRET0002",
        "gho_\u79d8\u5bc6\u79d8\u5bc6",
        "gho_SECRET\u200b0003",
        "gho_SECRET\x7f0004",
        "gho_SE CRET0005",
        "gho_SECRET0006\r\nX-Injected: 1",
        "\u202egho_SECRET0007",
        "gho_SECRET\x000008",
    ]
    for token in bad_tokens:
        out.append(Case(f"token {token!r}", _file(_document({"name": "alice", "github_token": token})), [token]))
        env = {"ALICE_TOKEN": token}
        doc = _document({"name": "alice", "github_token_env": "ALICE_TOKEN"})
        out.append(Case(f"env token {token!r}", _file(doc), [token], environ=env))
        out.append(Case(f"token file {token!r}", _with_token_file(_token_file_with(token.encode())), [token]))
        latin1 = _token_file_with(token.encode("latin-1", "replace"))  # '?' stands in for what latin-1 lacks
        out.append(Case(f"token file latin-1 {token!r}", _with_token_file(latin1), valid=None))
    for env_name in ("gho_SECRETASNAME0009", "A B", "A\u00e9", "1ABC", "A" * 300, "X\nY"):
        doc = _document({"name": "alice", "github_token_env": env_name})
        secrets = [env_name] if env_name.startswith("gho_") else []
        out.append(Case(f"env name {env_name[:20]!r}", _file(doc), secrets))

    # -- token files and accounts files that are no small regular file ------------------------------------
    for name, token_file in {
        "/dev/zero": lambda folder: "/dev/zero",
        "/dev/urandom": lambda folder: "/dev/urandom",
        "/dev/null": lambda folder: "/dev/null",
        "/dev/full": lambda folder: "/dev/full",
        "a FIFO": _fifo,
        "a directory": lambda folder: str(folder),
        "a symlink loop": _link_loop,
        "missing": lambda folder: str(folder / "missing.token"),
        "a NUL in the path": lambda folder: str(folder / "alice\x00.token"),
        "a 10 MB file": _token_file_with(b"gho_" + b"z" * 10_000_000),
        "an empty file": _token_file_with(b""),
        "random bytes": _token_file_with(bytes(rng.randrange(256) for _ in range(200))),
        "two tokens": _token_file_with(b"gho_first\ngho_second\n"),
        "a 5000-char path": lambda folder: "p" * 5000,
    }.items():
        out.append(Case(f"token file {name}", _with_token_file(token_file)))
    out.append(Case("accounts file a FIFO", _accounts_fifo))
    out.append(Case("accounts file a directory", _accounts_dir))
    for target in ("/dev/zero", "/dev/urandom", "/dev/null", "/nonexistent"):
        out.append(Case(f"accounts file a symlink to {target}", _accounts_symlink(target)))

    # -- random bytes, and random mutations of a valid file -------------------------------------------------
    while len(out) < COUNT:
        n = len(out)
        if n % 2:
            data = bytes(rng.randrange(256) for _ in range(rng.choice((1, 16, 256, 4096))))
            out.append(Case(f"random bytes #{n}", _file(data)))
        else:
            data = bytearray(_document(good, {"name": "bob", "github_token": "gho_HOSTILESECRET0002"}))
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            out.append(Case(f"mutated #{n}", _file(bytes(data)), [secret, "gho_HOSTILESECRET0002"], valid=None))
    return out[:COUNT]
