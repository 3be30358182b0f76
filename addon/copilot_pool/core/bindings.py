"""What conversation affinity and auto-model sessions share: a bounded table of key -> (account, moment), in
least-recently-bound order, that notes which keys changed for the state keeper (runtime/state/keeper.py)."""

from __future__ import annotations

from collections import OrderedDict

from .clock import Clock


class Bindings:
    def __init__(self, clock: Clock, max_entries: int) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()  # key -> (account, a moment)
        self.changed: set[str] = set()  # keys bound since the state store last took them

    def __len__(self) -> int:
        return len(self._entries)

    def take_changed(self) -> dict[str, tuple[str, float]]:
        """The keys bound (or seen again) since the last call: key -> (account, moment on the pool clock)."""
        changed, self.changed = self.changed, set()
        return {key: self._entries[key] for key in changed if key in self._entries}

    def note_all(self) -> None:
        """Every binding counts as changed: a store that lost them gets them all again."""
        self.changed.update(self._entries)
