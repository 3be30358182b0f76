"""End to end: bad accounts files (tests/hostile_accounts.py) through real mitmdump. At start-up each stops mitmdump
with one line naming the file; hot-reloaded into a running proxy under traffic, each is ignored with that same line
while the old pool keeps serving. No output ever holds a token."""

from __future__ import annotations

import os
import re
import shutil
import threading

import pytest
from copilot_pool.runtime.accounts_file import AccountsFileError, load_accounts_file
from e2e import ALICE, BOB, pool_proxy, upstream
from hostile_accounts import cases
from mitmdump_process import chat, write_accounts

SPECIAL = [
    "encoded utf-16",
    "encoded utf-32-be",
    "bad UTF-8 b'\\xff' in a token",
    "10 MB of whitespace",
    "10 MB name",
    "lists 100000 deep",
    "objects 5000 deep",
    "a 100000-digit weight",
    "lone surrogate in github_token",
    "token 'gho_S\u00c9CRET0002'",
    "token 'gho_SECRET0006\\r\\nX-Injected: 1'",
    "token file 'gho_\u79d8\u5bc6\u79d8\u5bc6'",
    "env token 'gho_S\u00c9CRET0002'",
    "env name 'gho_SECRETASNAME0009'",
    "token file /dev/zero",
    "token file /dev/urandom",
    "token file a FIFO",
    "token file a directory",
    "token file a symlink loop",
    "token file a 10 MB file",
    "accounts file a FIFO",
    "accounts file a directory",
    "accounts file a symlink to /dev/zero",
    "thousands of wrong entries",
]
ALL = {c.name: c for c in cases()}
START_UP = [ALL[name] for name in SPECIAL[::3]] + [c for c in cases() if c.name.startswith("random bytes")][:2]
RELOADED = [ALL[name] for name in SPECIAL] + [c for c in cases()[::25] if c.valid is False and not c.environ]


def refusal(case, path) -> str:
    """The one line the pool gives for the case's file at `path` (the loader run here, in the test)."""
    with pytest.raises(AccountsFileError) as e:
        load_accounts_file(path, case.environ)
    return str(e.value)


def assert_no_secret(case, text: str) -> None:
    for secret in case.forbidden():
        assert secret not in text, (case.name, secret)


@pytest.mark.parametrize("case", START_UP, ids=lambda c: c.name)
def test_a_bad_accounts_file_stops_mitmdump_with_one_line(start_proxy, fake, tmp_path, case):
    path = case.write(tmp_path)
    expected = refusal(case, path)
    try:
        proxy = start_proxy({"pool_accounts": path, **upstream(fake)}, env=case.environ)
        returncode, output = proxy.process.wait(15), proxy.output()
    except AssertionError as e:  # exited before it listened
        returncode, output = 1, str(e)
    assert returncode == 1
    assert [line for line in output.splitlines() if line.endswith(f"] pool: {expected}")], output[-2000:]
    assert_no_secret(case, output)


def install(case, folder, watched) -> None:
    """Put the case's accounts file at the watched path in one rename, the way editors save."""
    path = case.write(folder)
    if watched.is_dir() and not watched.is_symlink():
        shutil.rmtree(watched)
    elif path.is_dir():
        watched.unlink()
    os.rename(path, watched)


def test_bad_files_hot_reloaded_under_traffic_change_nothing(start_proxy, fake, tmp_path):
    env = {k: v for c in RELOADED for k, v in c.environ.items()}
    proxy = pool_proxy(start_proxy, fake, tmp_path, [ALICE], env=env)
    watched = tmp_path / "accounts.json"
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def traffic():
        with proxy.client() as client:
            while not stop.is_set():
                response = chat(client)
                results.append((response.status_code, response.headers.get("x-fake-account", "")))

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        for i, case in enumerate(RELOADED):
            folder = tmp_path / f"case{i}"
            folder.mkdir()
            start = len(proxy.lines)
            install(case, folder, watched)
            expected = refusal(case, watched)
            proxy.wait_for(
                re.escape(f"accounts file change ignored, the pool keeps its accounts: {expected}"), 5, start
            )
        served_before = len(results)
        write_accounts(watched, [ALICE, BOB])  # and a good file still applies
        proxy.wait_for(r"account bob active", start=start)
    finally:
        stop.set()
        thread.join(15)
    assert served_before > 20 and all(status == 200 for status, _ in results), results[-5:]
    assert {who for _, who in results[:served_before]} == {"alice"}
    for case in RELOADED:
        assert_no_secret(case, proxy.output())
