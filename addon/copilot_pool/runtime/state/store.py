"""What every state store offers the keeper (runtime/state/keeper.py): load it all, write a batch, and for a
store several proxies share, a heartbeat and the other proxies' news.

Records are core/kept.py's, on the wall clock. A store merges as the records say: a cooldown only grows (the
operator's exact word aside), facts are replaced, counters are added to, a binding's latest use wins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from ...core.kept import Cooled, Counters

Binding = tuple[str, float]  # (account, epoch seconds: a conversation's last turn, a session's expiry)


class StoreError(Exception):
    """The store cannot be used at all (a locked file, one from a newer version): said at start-up, naming it."""


class StoreDown(Exception):
    """The store cannot be reached now (Redis down, the file busy): the proxy carries on with its own view."""


@dataclass
class Batch:
    """What changed since the last write. Idempotent by `id`: a batch whose answer was lost is sent again as is."""

    id: str
    cooldowns: list[Cooled] = field(default_factory=list)
    facts: dict[str, dict] = field(default_factory=dict)  # owner (account name, or kept.POOL) -> its facts
    counters: dict[str, Counters] = field(default_factory=dict)  # owner -> growth to add ({}: only read the total)
    affinity: dict[str, Binding] = field(default_factory=dict)  # conversation key -> (account, last turn)
    sessions: dict[str, Binding] = field(default_factory=dict)  # session token digest -> (account, expiry)

    def __bool__(self) -> bool:
        return bool(self.cooldowns or self.facts or self.counters or self.affinity or self.sessions)


@dataclass
class Loaded:
    """Everything a store holds (what is still in force)."""

    cooldowns: list[Cooled] = field(default_factory=list)
    facts: dict[str, dict] = field(default_factory=dict)
    counters: dict[str, Counters] = field(default_factory=dict)  # owner -> totals
    affinity: dict[str, Binding] = field(default_factory=dict)
    sessions: dict[str, Binding] = field(default_factory=dict)


@dataclass
class News:
    """What another proxy sharing the store just did."""

    cooldowns: list[Cooled] = field(default_factory=list)
    affinity: dict[str, Binding] = field(default_factory=dict)
    sessions: dict[str, Binding] = field(default_factory=dict)
    counters: list[str] = field(default_factory=list)  # owners whose totals grew


class Store(Protocol):
    backend: str  # "sqlite", "redis", "memory"
    where: str  # the file or server, without secrets
    shared: bool  # several proxies use it at once: heartbeat and news

    async def connect(self) -> None:
        """Open (and for a file, migrate) the store; raise StoreError (unusable) or StoreDown (try later)."""

    async def load(self) -> Loaded: ...

    async def write(self, batch: Batch) -> dict[str, Counters]:
        """Apply the batch; return the totals of every owner in `batch.counters`."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class SharedToken:
    """A Copilot token another proxy exchanged (only with pool_share_tokens): `lifetime` is what is left of it on
    the store's clock, `refresh_lead` how long before its end it is due for refresh."""

    token: str = field(repr=False)
    lifetime: float
    refresh_lead: float
    api_endpoint: object
    proxy_endpoint: object
    sku: str


class TokenShare(Protocol):
    """Copilot tokens shared by the proxies on one store, so that N proxies do one exchange per account. Each is
    kept with a digest of the credential it was exchanged with, and is only taken for that credential."""

    async def shared_token(self, account: str, credential: str) -> SharedToken | None: ...

    async def claim_exchange(self, account: str, seconds: float) -> bool:
        """True: this proxy exchanges the account's token now (the others wait for it, up to `seconds`)."""

    async def share_token(self, account: str, credential: str, token: SharedToken) -> None: ...


class SharedStore(Store, Protocol):
    async def heartbeat(self, in_flight: dict[str, int]) -> tuple[dict[str, int], list[str]]:
        """Say this proxy is alive with its requests in flight per account; return the other live proxies'
        in flight per account, and every live proxy's id."""

    def news(self) -> AsyncIterator[News]:
        """The other proxies' news as it comes; raises StoreDown when the connection is lost."""
