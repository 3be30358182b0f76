"""Runs the cooldown log (cooling until when, cooldown over) and the optional periodic summary line."""

from __future__ import annotations

import asyncio
import logging

from .. import LOGGER_NAME
from ..core.pool import Pool
from ..observe.statelog import CooldownLog, summary_line
from ..runtime import tasks

log = logging.getLogger(LOGGER_NAME)

SWEEP_INTERVAL = 0.25  # seconds: how soon a state change shows in the log


class StateWatch:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.cooldowns = CooldownLog(pool, log)
        self.summary_every = 0  # seconds between summary lines; 0: none (pool_log_summary)
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = tasks.start(self._loop(), "copilot-pool cooldown log")

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_summary = loop.time()
        while True:
            try:
                self.cooldowns.sweep()
                if self.summary_every and loop.time() - last_summary >= self.summary_every:
                    last_summary = loop.time()
                    log.info(summary_line(self.pool))
            except Exception as e:  # keep reporting whatever one sweep tripped over
                log.error(f"pool: cooldown log failed: {e!r}")
            await asyncio.sleep(SWEEP_INTERVAL)
