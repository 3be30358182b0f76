"""Wait instead of failing: requests that find no account are held, in arrival order, until one can serve.

A request waits only when waiting can help (accounts are cooling and the first recovers within its wait,
accounts are busy at their `max_concurrency`, or a token is being exchanged) and at most `max_wait` seconds.
While anyone waits, newcomers queue behind them instead of overtaking.

Like httpcore's connection pool, one synchronous function (`serve`) hands out accounts: it runs on every
change of the pool (the pool's listener: a lease ended, a token arrived, a cooldown was set) and, for what
time alone changes (a cooldown runs out, a waiter's deadline), when a timer on the clock fires.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field

from ..core.model import Account, Lease
from ..core.pool import ANY, NoAccount, Pool, Want
from . import tasks
from .clock import Clock


@dataclass(eq=False)
class _Waiter:
    want: Want
    exclude: Collection[Account]
    deadline: float
    future: asyncio.Future = field(repr=False)


class WaitQueue:
    def __init__(self, pool: Pool, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock
        self._queue: deque[_Waiter] = deque()
        self._timer: asyncio.Task | None = None
        self._timer_at = math.inf

    def __len__(self) -> int:
        return sum(1 for w in self._queue if not w.future.done())

    async def acquire(
        self, max_wait: float, want: Want = ANY, exclude: Collection[Account] = ()
    ) -> tuple[Lease, float]:
        """A lease now, or after waiting in line; returns it with the seconds waited. Raises NoAccount when
        waiting cannot help or takes longer than `max_wait`."""
        if not self._queue:
            try:
                return self.pool.acquire(want, exclude), 0.0
            except NoAccount as e:
                if not _can_wait(e, max_wait):
                    raise
        start = self.clock.now()
        waiter = _Waiter(want, exclude, start + max_wait, asyncio.get_running_loop().create_future())
        self._queue.append(waiter)
        self.serve()
        try:
            lease = await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                waiter.future.result().release()  # served just as we were cancelled: give it back
            waiter.future.cancel()
            raise
        return lease, self.clock.now() - start

    def serve(self) -> None:
        """Hand out leases in arrival order; fail waiters whose wait is over or cannot end in time; set the
        timer for the next moment time alone may change that. A waiter with needs of its own (accounts it
        excluded, a model, a session's account) does not hold up those behind it, who may be served."""
        if not self._queue:
            return
        now = self.clock.now()
        waiting: deque[_Waiter] = deque()
        next_look = math.inf
        nothing_free: NoAccount | None = None  # what an unrestricted waiter got: the same for the rest
        for waiter in self._queue:
            if waiter.future.done():
                continue
            plain = not waiter.exclude and waiter.want.any_account
            if nothing_free is not None and plain:
                e = nothing_free
            else:
                try:
                    waiter.future.set_result(self.pool.acquire(waiter.want, waiter.exclude))
                    continue
                except NoAccount as error:
                    e = error
                    if plain:
                        nothing_free = e
            left = waiter.deadline - now
            if left <= 0 or not _can_wait(e, left):
                waiter.future.set_exception(NoAccount(e.reason, e.recovers_in))
                continue
            waiting.append(waiter)
            next_look = min(next_look, left, e.recovers_in if e.recovers_in is not None else math.inf)
        self._queue = waiting
        if waiting:
            self._wake_at(now + max(0.001, next_look))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for waiter in self._queue:
            waiter.future.cancel()
        self._queue.clear()

    def _wake_at(self, at: float) -> None:
        if self._timer is not None and not self._timer.done():
            if self._timer_at <= at:
                return  # an earlier look is due anyway
            self._timer.cancel()
        self._timer_at = at
        self._timer = tasks.start(self._sleep_then_serve(at), "copilot-pool wait queue")

    async def _sleep_then_serve(self, at: float) -> None:
        await self.clock.sleep(at - self.clock.now())
        self._timer, self._timer_at = None, math.inf
        self.serve()


def _can_wait(e: NoAccount, max_wait: float) -> bool:
    return max_wait > 0 and e.waitable and (e.recovers_in is None or e.recovers_in <= max_wait)
