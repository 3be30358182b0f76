"""A mitmproxy script the event-loop tests load beside the pool: it reports what the pool relies on of the loop
mitmproxy runs it on (which loop, the eager task factory) and whether a task made in `done` starts at once, as
CopilotPool.done needs for closing its HTTP clients."""

import asyncio
import logging

log = logging.getLogger(__name__)


class LoopProbe:
    def running(self) -> None:
        loop = asyncio.get_running_loop()
        eager = loop.get_task_factory() is asyncio.eager_task_factory
        log.info(f"probe: loop {type(loop).__module__.split('.')[0]}, eager tasks {eager}")

    def done(self) -> None:
        asyncio.get_running_loop().create_task(self._closing())

    async def _closing(self) -> None:
        log.info("probe: a task made in done started at once")  # before its first await, as an aclose() does
        await asyncio.sleep(0)


addons = [LoopProbe()]
