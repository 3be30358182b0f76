"""Session affinity: the turns of one conversation stay on the account that served it.

Responses item ids, `previous_response_id` and thinking signatures belong to one account, so a conversation
moves only when its account cannot serve (cooling, failed, gone). Bounded: least recently used entries go
first, and an entry idle longer than the TTL is forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping

from .bindings import Bindings
from .clock import Clock

CONVERSATION_HEADERS = ("x-interaction-id", "vscode-sessionid")
MAX_ENTRIES = 10_000


def conversation_key(headers: Mapping[str, str]) -> str | None:
    """`X-Interaction-Id` (one per conversation), else `VScode-SessionId` (one per editor session)."""
    for name in CONVERSATION_HEADERS:
        value = headers.get(name)
        if value:
            return f"{name}:{value}"
    return None


class Affinity(Bindings):
    """Conversation key -> (account name, last seen)."""

    def __init__(self, clock: Clock, ttl: float, max_entries: int = MAX_ENTRIES) -> None:
        super().__init__(clock, max_entries)
        self.ttl = ttl

    def get(self, key: str | None) -> str | None:
        if key is None or self.ttl <= 0:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.clock.now() - entry[1] > self.ttl:
            del self._entries[key]
            return None
        return entry[0]

    def put(self, key: str | None, account: str) -> None:
        if key is None or self.ttl <= 0:
            return
        self._put(key, account, self.clock.now())
        self.changed.add(key)

    def merge(self, key: str, account: str, seen: float) -> None:
        """A binding kept before a restart or made through another proxy (`seen` on this pool's clock): the
        latest turn wins."""
        entry = self._entries.get(key)
        if self.ttl > 0 and (entry is None or entry[1] < seen) and self.clock.now() - seen <= self.ttl:
            self._put(key, account, seen)

    def _put(self, key: str, account: str, seen: float) -> None:
        now = self.clock.now()
        self._entries[key] = (account, seen)
        self._entries.move_to_end(key)
        while self._entries:  # the oldest first: drop the expired and anything over the bound
            _, seen = next(iter(self._entries.values()))
            if len(self._entries) <= self.max_entries and now - seen <= self.ttl:
                break
            self.changed.discard(self._entries.popitem(last=False)[0])  # notes stay as bounded as the entries
