"""Asks `/copilot_internal/user` for the quota of accounts whose answers have not reported it lately."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .. import LOGGER_NAME
from ..core.exchange import FetchUser
from ..core.pool import Pool
from ..core.quota import from_user_info
from .clock import Clock

log = logging.getLogger(LOGGER_NAME)


async def poll_forever(pool: Pool, fetch: FetchUser, clock: Clock, interval: Callable[[], float]) -> None:
    """Every `interval()` seconds, ask for the quota of each account whose quota was not seen (passively or by
    polling) within that interval. One account at a time: this is background work."""
    while True:
        every = interval()
        await clock.sleep(every if every > 0 else 60.0)
        if every <= 0:
            continue  # polling is off (pool_quota_poll=0); look again in a minute in case it is turned on
        for account in list(pool.accounts.values()):
            if account.token is None or (account.quota is not None and clock.now() - account.quota.observed_at < every):
                continue  # only accounts that work, and only when the headers have not told us lately
            config = account.config
            try:
                quota = from_user_info(await fetch(config), clock.now())
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a failed poll only leaves the quota unknown
                log.info(f"pool: quota of {account.name} unknown: {type(e).__name__}")
                continue
            if quota is not None and account.config is config:
                pool.quota_seen(account, quota)
