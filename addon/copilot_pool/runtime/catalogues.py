"""Each account's model catalogue: its own `/models` answer, fetched after every new token, every
`interval()` seconds, and when an answer says it is stale (a 421, `model_not_supported`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine

from .. import LOGGER_NAME
from ..core.catalogue import parse_models
from ..core.endpoints import EndpointPolicy, UntrustedEndpoint, trusted_endpoint
from ..core.exchange import FetchModels
from ..core.model import Account, State
from ..core.pool import Pool
from .clock import Clock

log = logging.getLogger(LOGGER_NAME)


class CatalogueKeeper:
    def __init__(
        self,
        pool: Pool,
        fetch: FetchModels,
        clock: Clock,
        spawn: Callable[[Coroutine], object],
        endpoints: Callable[[], EndpointPolicy],
    ) -> None:
        self.pool = pool
        self.endpoints = endpoints  # the one guard on where a Copilot token may go (core/endpoints.py)
        self.fetch = fetch
        self.clock = clock
        self.spawn = spawn
        self._fetching: set[str] = set()  # one fetch at a time per account

    def refresh(self, account: Account) -> None:
        """Fetch the account's catalogue soon (unless a fetch is already under way)."""
        if account.name not in self._fetching and account.token is not None:
            self._fetching.add(account.name)
            self.spawn(self._fetch(account))

    async def _fetch(self, account: Account) -> None:
        config, token = account.config, account.token
        try:
            assert token is not None
            trusted_endpoint(self.endpoints(), token.api_endpoint)
            catalogue = parse_models(await self.fetch(config, token), self.clock.now())
        except asyncio.CancelledError:
            raise
        except UntrustedEndpoint:
            return  # said when the endpoint was refused; nothing is sent there
        except Exception as e:  # noqa: BLE001 - a failed fetch keeps the catalogue the account had
            log.info(f"pool: models of {account.name} unknown for now: {type(e).__name__}: {str(e)[:80]}")
            return
        finally:
            self._fetching.discard(account.name)
        if catalogue is None:
            log.info(f"pool: models of {account.name} unknown for now: its /models answer holds no list")
        elif account.config is config and self.pool.accounts.get(account.name) is account:
            before = account.catalogue
            self.pool.catalogue_received(account, catalogue)
            if before is None or set(before.entries) != set(catalogue.entries):
                log.info(f"pool: account {account.name} serves {len(catalogue.entries)} model(s)")

    async def run(self, interval: Callable[[], float]) -> None:
        """Fetch again every `interval()` seconds (0: only after token exchanges and stale answers)."""
        while True:
            every = interval()
            await self.clock.sleep(every if every > 0 else 60.0)
            if every <= 0:
                continue
            for account in list(self.pool.accounts.values()):
                seen = account.catalogue
                if account.base_state is State.ACTIVE and (seen is None or self.clock.now() - seen.fetched_at >= every):
                    self.refresh(account)
