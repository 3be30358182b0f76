"""Notice when the accounts file (or a token file it names) changes, however it was written.

Polling `stat` by path sees in-place writes and the atomic renames editors and tools use alike (a rename gives
the path a new inode), needs no platform-specific watcher, and costs one syscall per file per interval.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from .. import LOGGER_NAME
from . import tasks
from .clock import Clock

log = logging.getLogger(LOGGER_NAME)

POLL_INTERVAL = 0.5  # changes apply within 2 s: one poll plus the token exchange


def stat_key(paths: Iterable[Path]) -> tuple:
    """What identifies the current version of these files: inode, size and mtime; None for a missing file."""
    key = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            key.append(None)
        else:
            key.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(key)


class FileWatcher:
    """Calls `on_change` whenever the files named by `paths()` look different from the last look."""

    def __init__(
        self,
        paths: Callable[[], list[Path]],
        on_change: Callable[[], None],
        clock: Clock,
        interval: float = POLL_INTERVAL,
    ) -> None:
        self.paths = paths
        self.on_change = on_change
        self.clock = clock
        self.interval = interval
        self._last = stat_key(paths())

    def start(self) -> asyncio.Task:
        return tasks.start(self.run(), "copilot-pool accounts watcher")

    async def run(self) -> None:
        while True:
            await self.clock.sleep(self.interval)
            self.check()

    def check(self) -> bool:
        key = stat_key(self.paths())
        if key == self._last:
            return False
        # Remember what was seen before reading: a write racing with the read shows up at the next poll.
        # (If the change names new token files, the next poll's key differs too: one harmless no-op re-apply.)
        self._last = key
        try:
            self.on_change()
        except Exception:  # one bad change must not end the watch
            log.exception("pool: applying the accounts file change failed")
        return True
