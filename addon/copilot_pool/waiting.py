"""Wait instead of failing: requests that find no account are held, in arrival order, until one can serve.

A request waits only when waiting can help (accounts are cooling and the first recovers within its wait,
accounts are busy at their `max_concurrency`, or a token is being exchanged) and at most `max_wait` seconds.
While anyone waits, newcomers queue behind them instead of overtaking. One dispatcher task serves the head
of the queue whenever a lease ends, and otherwise checks again every POLL seconds or when a cooldown ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field

from . import tasks
from .pool import Account, Lease, NoAccountAvailable, Pool

log = logging.getLogger("copilot_pool")

POLL = 0.25


@dataclass(eq=False)
class _Waiter:
    prefer: str | None
    exclude: Collection[Account]
    deadline: float
    future: asyncio.Future = field(repr=False)


class WaitQueue:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._queue: deque[_Waiter] = deque()
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task | None = None

    def __len__(self) -> int:
        return sum(1 for w in self._queue if not w.future.done())

    def wake(self) -> None:
        """Something changed (a lease ended, accounts changed): look at the queue again."""
        if self._queue:
            self._wake.set()

    async def acquire(
        self, max_wait: float, prefer: str | None = None, exclude: Collection[Account] = ()
    ) -> tuple[Lease, float]:
        """A lease now, or after waiting in line; returns it with the seconds waited. Raises NoAccountAvailable
        when waiting cannot help or takes longer than `max_wait`."""
        if not self._queue:
            try:
                return self.pool.acquire(exclude, prefer), 0.0
            except NoAccountAvailable as e:
                if not _can_wait(e, max_wait):
                    raise
        start = self.pool.clock.now()
        waiter = _Waiter(prefer, exclude, start + max_wait, asyncio.get_running_loop().create_future())
        self._queue.append(waiter)
        self._wake.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = tasks.start(self._dispatch(), "copilot-pool wait queue")
        try:
            lease = await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                waiter.future.result().release()  # served just as we were cancelled: give it back
            waiter.future.cancel()
            raise
        return lease, self.pool.clock.now() - start

    def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        for waiter in self._queue:
            waiter.future.cancel()
        self._queue.clear()

    async def _dispatch(self) -> None:
        while True:
            while self._queue and self._queue[0].future.done():
                self._queue.popleft()  # cancelled, or already answered
            if not self._queue:
                return
            self._wake.clear()
            delay = self._serve()
            if self._queue:
                await self._sleep_or_wake(delay)

    def _serve(self) -> float:
        """Hand out leases in arrival order; fail waiters whose wait is over or cannot end in time. Returns
        the seconds until the next look. A waiter that excluded accounts (tried them) does not hold up those
        behind it, who may use those accounts."""
        now = self.pool.clock.now()
        waiting: deque[_Waiter] = deque()
        next_look = POLL
        nothing_free: NoAccountAvailable | None = None  # what an unrestricted waiter got: the same for the rest
        for waiter in self._queue:
            if waiter.future.done():
                continue
            if nothing_free is not None and not waiter.exclude:
                e = nothing_free
            else:
                try:
                    waiter.future.set_result(self.pool.acquire(waiter.exclude, waiter.prefer))
                    continue
                except NoAccountAvailable as error:
                    e = error
                    if not waiter.exclude:
                        nothing_free = e
            left = waiter.deadline - now
            if left <= 0 or not _can_wait(e, left):
                waiter.future.set_exception(_copy(e))
                continue
            waiting.append(waiter)
            next_look = min(next_look, left, e.recovers_in if e.recovers_in is not None else POLL)
        self._queue = waiting
        return max(0.001, next_look)

    async def _sleep_or_wake(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self.pool.clock.sleep(delay))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeper, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            woken.cancel()


def _can_wait(e: NoAccountAvailable, max_wait: float) -> bool:
    return max_wait > 0 and e.waitable and (e.recovers_in is None or e.recovers_in <= max_wait)


def _copy(e: NoAccountAvailable) -> NoAccountAvailable:
    return NoAccountAvailable(e.status, e.code, e.message, e.retry_after, recovers_in=e.recovers_in, waitable=e.waitable)

