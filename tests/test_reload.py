"""Hot reload in the core: the account-set signature, the file watcher, and applying without side effects."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from pathlib import Path

from copilot_pool.core.model import signature
from copilot_pool.core.pool import PoolChanges
from copilot_pool.runtime.accounts_file import load_accounts_file
from copilot_pool.runtime.clock import FakeClock
from copilot_pool.runtime.watch import FileWatcher
from helpers import config
from test_tokens import ScriptedExchange, service_with


def test_signature_is_stable_under_reordering_and_formatting(tmp_path):
    a, b = config("a"), config("b", account_type="business")
    assert signature([a, b]) == signature([b, a])
    inline = tmp_path / "inline.json"
    inline.write_text(json.dumps({"accounts": [{"name": "a", "github_token": "gho_same"}]}))
    via_file = tmp_path / "via_file.json"
    (tmp_path / "a.token").write_text("gho_same\n")
    via_file.write_text(json.dumps({"accounts": [{"github_token_file": "a.token", "name": "a"}]}, indent=4))
    # where a token comes from, key order and whitespace do not matter to the pool
    assert signature(load_accounts_file(inline)) == signature(load_accounts_file(via_file))


def test_signature_changes_with_every_relevant_field():
    base = config("a")
    variants = [
        replace(base, name="b"),
        replace(base, github_token="gho_other"),
        replace(base, account_type="business"),
        replace(base, enabled=False),
    ]
    signatures = {signature([base])} | {signature([v]) for v in variants}
    assert len(signatures) == 1 + len(variants)
    assert signature([base]) != signature([base, config("c")]) != signature([])


def test_signature_holds_no_token():
    assert "gho_a" not in signature([config("a")])


async def test_same_account_set_is_a_no_op():
    clock = FakeClock()
    exchange = ScriptedExchange(clock)
    service = service_with(exchange, clock)
    service.start()
    service.apply([config("a")])
    await asyncio.sleep(0.01)
    assert exchange.calls == 1
    assert service.apply([config("a")]) == PoolChanges()
    await asyncio.sleep(0.01)
    assert exchange.calls == 1
    service.apply([config("a", "gho_changed")])
    await asyncio.sleep(0.01)
    clock.advance(1.3)  # replacing a token seconds old waits one backoff step (1 s +-20%)
    await asyncio.sleep(0.01)
    assert exchange.calls == 2 and service.pool.accounts["a"].config.github_token == "gho_changed"
    service.stop()


def test_watcher_sees_writes_renames_and_deletes(tmp_path):
    path = tmp_path / "accounts.json"
    path.write_text("one")
    seen = []
    watcher = FileWatcher(lambda: [path], lambda: seen.append(path.read_text() if path.exists() else None), FakeClock())
    assert not watcher.check()
    path.write_text("two, longer")  # in place
    assert watcher.check() and seen[-1] == "two, longer"
    tmp = tmp_path / "accounts.json.tmp"
    tmp.write_text("three, renamed")  # atomic replace, as editors do
    os.replace(tmp, path)
    assert watcher.check() and seen[-1] == "three, renamed"
    assert not watcher.check()
    path.unlink()
    assert watcher.check() and seen[-1] is None


def test_watcher_survives_a_failing_callback(tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    calls = []

    def boom():
        calls.append(1)
        raise RuntimeError("bad")

    watcher = FileWatcher(lambda: [path], boom, FakeClock())
    path.write_text("xy")
    assert watcher.check() and calls == [1]


async def test_watcher_polls_on_the_clock(tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    clock = FakeClock()
    seen = []
    watcher = FileWatcher(lambda: [Path(path)], lambda: seen.append(1), clock, interval=0.5)
    task = asyncio.create_task(watcher.run())
    await asyncio.sleep(0)
    path.write_text("changed")
    assert seen == []
    clock.advance(0.5)
    await asyncio.sleep(0)
    assert seen == [1]
    task.cancel()
