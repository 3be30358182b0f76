"""Auto-model sessions: each `Copilot-Session-Token` belongs to the account that minted it.

`POST /auto` and `POST /models/session` answer with a `session_token` that the service accepts only through
the account that minted it (through another: `401 Invalid auto-mode selector`). The pool learns each token
from the minting answer and sends every later request carrying it to that account. Tokens are kept as
digests, never as values; bounded, and each is forgotten when it expires.
"""

from __future__ import annotations

import hashlib

from .bindings import Bindings
from .clock import Clock
from .parse import finite_float, json_object

SESSION_HEADER = "copilot-session-token"
MINTING_PATHS = frozenset({"/auto", "/models/session"})
SELECTOR_REFUSED = "Invalid auto-mode selector"  # what the service says of a token it cannot use here
DEFAULT_TTL = 3600.0  # a minting answer without expires_at
MAX_TTL = 24 * 3600.0
MAX_ENTRIES = 10_000


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def minted(body: bytes | None) -> tuple[str, float | None] | None:
    """`(session_token, expires_at epoch seconds or None)` from a minting answer, or None."""
    data = json_object(body)
    token = data.get("session_token")
    if not isinstance(token, str) or not token:
        return None
    return token, finite_float(data.get("expires_at"))


class Sessions(Bindings):
    """Session token digest -> (account name, expiry on the pool clock)."""

    def __init__(self, clock: Clock, max_entries: int = MAX_ENTRIES) -> None:
        super().__init__(clock, max_entries)

    def bind(self, token: str, account: str, expires_at: float | None) -> None:
        """The account minted `token`, valid until `expires_at` (epoch seconds; None: an hour)."""
        now = self.clock.now()
        ttl = DEFAULT_TTL if expires_at is None else expires_at - self.clock.wall()
        key = digest(token)
        self._put(key, account, now + min(max(ttl, 1.0), MAX_TTL))
        self.changed.add(key)

    def merge(self, key: str, account: str, expires: float) -> None:
        """A session minted before a restart or through another proxy (its digest; `expires` on this pool's clock)."""
        if expires > self.clock.now() and key not in self._entries:
            self._put(key, account, min(expires, self.clock.now() + MAX_TTL))

    def _put(self, key: str, account: str, expires: float) -> None:
        self._entries[key] = (account, expires)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self.changed.discard(self._entries.popitem(last=False)[0])  # notes stay as bounded as the entries

    def account_for(self, token: str) -> str | None:
        """The minting account's name, or None for a token the pool never saw minted (or expired)."""
        key = digest(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self.clock.now():
            del self._entries[key]
            return None
        return entry[0]
