"""`pool_state=memory`: the state lives only as long as the process (as before there were stores). It merges
like the real stores, so the keeper behaves the same on it; the tests use it to stand in for them."""

from __future__ import annotations

import time
from collections.abc import Callable

from ...core.kept import Counters, added
from .store import Batch, Loaded, StoreDown


class MemoryStore:
    backend = "memory"
    where = "this process"
    shared = False

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self.held = Loaded()
        self.down = False  # the tests' outage switch
        self.written: list[Batch] = []  # every batch applied, in order
        self._ids: set[str] = set()

    async def connect(self) -> None:
        self._check()

    async def load(self) -> Loaded:
        self._check()
        now = self.wall()
        held = self.held
        return Loaded(
            [c for c in held.cooldowns if c.until > now],
            dict(held.facts),
            {owner: dict(totals) for owner, totals in held.counters.items()},
            dict(held.affinity),
            {k: v for k, v in held.sessions.items() if v[1] > now},
        )

    async def write(self, batch: Batch) -> dict[str, Counters]:
        self._check()
        held = self.held
        if batch.id not in self._ids:
            self._ids.add(batch.id)
            self.written.append(batch)
            for cooled in batch.cooldowns:
                seen = next((c for c in held.cooldowns if (c.owner, c.model) == (cooled.owner, cooled.model)), None)
                if seen is None or cooled.exact or cooled.until > seen.until:
                    held.cooldowns = [c for c in held.cooldowns if c is not seen] + [cooled]
            held.facts.update(batch.facts)
            for owner, growth in batch.counters.items():
                held.counters[owner] = added(held.counters.get(owner, {}), growth)
            for key, binding in batch.affinity.items():
                if key not in held.affinity or held.affinity[key][1] <= binding[1]:
                    held.affinity[key] = binding
            held.sessions.update(batch.sessions)
        return {owner: dict(held.counters.get(owner, {})) for owner in batch.counters}

    async def close(self) -> None:
        pass

    def _check(self) -> None:
        if self.down:
            raise StoreDown("the memory store is switched off")
