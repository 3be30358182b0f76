"""Runs the cooldown log (cooling until when, cooldown over) and the optional periodic summary line."""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import ctx, exceptions

from . import tasks
from .addon import CopilotPool
from .redact import LOGGER_NAME
from .statelog import CooldownLog, summary_line

log = logging.getLogger(LOGGER_NAME)

SWEEP_INTERVAL = 0.25  # seconds: how soon a state change shows in the log


class StateWatch:
    def __init__(self, pool: CopilotPool) -> None:
        self.cooldowns = CooldownLog(pool.service.pool, log)
        self.pool = pool
        self.task: asyncio.Task | None = None

    def load(self, loader) -> None:
        loader.add_option("pool_log_summary", int, 0, "Seconds between summary log lines of the pool's state; 0: none.")

    def configure(self, updated: set[str]) -> None:
        if "pool_log_summary" in updated and ctx.options.pool_log_summary < 0:
            raise exceptions.OptionsError(f"pool_log_summary: must be 0 (off) or a number of seconds, got {ctx.options.pool_log_summary}")

    def running(self) -> None:
        self.task = tasks.start(self._loop(), "copilot-pool cooldown log")

    def done(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_summary = loop.time()
        while True:
            try:
                self.cooldowns.sweep()
                every = ctx.options.pool_log_summary
                if every and loop.time() - last_summary >= every:
                    last_summary = loop.time()
                    log.info(summary_line(self.pool.service.pool))
            except Exception as e:  # keep reporting whatever one sweep tripped over
                log.error(f"pool: cooldown log failed: {e!r}")
            await asyncio.sleep(SWEEP_INTERVAL)
