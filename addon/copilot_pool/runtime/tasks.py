"""Background tasks in mitmproxy's event loop. mitmproxy logs no exception of a task it did not start, so each
one started here logs its own crash."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

from .. import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)


def start(coro: Coroutine, name: str) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    task.add_done_callback(_log_crash)
    return task


def _log_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(f"pool: {task.get_name()} crashed: {task.exception()!r}")
