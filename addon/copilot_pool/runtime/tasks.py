"""Background tasks in mitmproxy's event loop. mitmproxy logs no exception of a task it did not start, so each
one started here logs its own crash."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

from .. import LOGGER_NAME
from ..core.text import printable

log = logging.getLogger(LOGGER_NAME)


def start(coro: Coroutine, name: str) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    task.add_done_callback(_log_crash)
    return task


def _log_crash(task: asyncio.Task) -> None:
    error = None if task.cancelled() else task.exception()
    if error is not None:  # its type and a short escaped text: an exception's repr may carry any value whole
        log.error(f"pool: {task.get_name()} crashed: {type(error).__name__}: {printable(str(error), 200)}")
