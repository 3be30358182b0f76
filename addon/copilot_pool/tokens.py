"""Copilot tokens: the exchange with GitHub, and the keeper that holds every account's token fresh.

All credential changes (the refresh loop, a new token in the accounts file, `pool.refresh`, a 401 on a
pooled request) go through `TokenKeeper.refresh`, serialized per account.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from . import tasks
from .accounts import AccountConfig
from .clock import Clock
from .pool import Account, CopilotToken, Pool, State

log = logging.getLogger("copilot_pool")

DEFAULT_GITHUB_API = "https://api.github.com"
EXCHANGE_PATH = "/copilot_internal/v2/token"
EXCHANGE_HEADERS = {
    "accept": "application/json",
    "editor-version": "vscode/1.104.0",
    "editor-plugin-version": "copilot-chat/0.31.0",
    "user-agent": "copilot-pool/0.1",
    "x-github-api-version": "2025-04-01",
}
LOCAL_EXPIRY_SLACK = 60.0  # VS Code: trust refresh_in on the local clock, plus a minute, not the server's clock
MAX_BACKOFF = 60.0


@dataclass(frozen=True)
class Exchanged:
    """The token exchange's answer, before it is put on the pool clock."""

    token: str
    refresh_in: float
    expires_at: float  # server epoch seconds
    api_endpoint: str
    proxy_endpoint: str
    sku: str


class ExchangeError(Exception):
    """The exchange failed. `permanent`: GitHub refused the credential, retrying will not help."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


Exchange = Callable[[AccountConfig], Awaitable[Exchanged]]

DEFAULT_API_ENDPOINTS = {
    "individual": "https://api.individual.githubcopilot.com",
    "business": "https://api.business.githubcopilot.com",
    "enterprise": "https://api.enterprise.githubcopilot.com",
}


def http_exchange(client: httpx.AsyncClient, github_api: Callable[[], str]) -> Exchange:
    """The real exchange: GET {github_api}/copilot_internal/v2/token with the account's GitHub token."""

    async def exchange(config: AccountConfig) -> Exchanged:
        url = github_api().rstrip("/") + EXCHANGE_PATH
        headers = {**EXCHANGE_HEADERS, "authorization": f"token {config.github_token}"}
        try:
            response = await client.get(url, headers=headers)
        except httpx.HTTPError as e:
            raise ExchangeError(f"token exchange failed: {type(e).__name__}", permanent=False) from None
        return parse_exchange_response(response.status_code, response.content, config.account_type)

    return exchange


def parse_exchange_response(status: int, body: bytes, account_type: str) -> Exchanged:
    data = _json_object(body)
    if status == 401:
        raise ExchangeError("GitHub rejected the token (401): it is invalid or revoked; replace it", permanent=True)
    if status in (403, 404):
        message = str(data.get("message", ""))
        if "rate limit" in message.lower():
            raise ExchangeError(f"GitHub API rate limit during token exchange ({status})", permanent=False)
        details = data.get("error_details")
        notification = details.get("notification_id") if isinstance(details, dict) else None
        raise ExchangeError(f"no Copilot access ({status} {notification or message or 'forbidden'})", permanent=True)
    if status != 200:
        raise ExchangeError(f"token exchange answered {status}", permanent=False)
    try:
        token = data["token"]
        refresh_in = float(data.get("refresh_in") or 1500)
        expires_at = float(data["expires_at"])
        if not isinstance(token, str) or not token:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise ExchangeError("token exchange answer lacks token/expires_at", permanent=False) from None
    endpoints = data.get("endpoints") if isinstance(data.get("endpoints"), dict) else {}
    api = endpoints.get("api") or DEFAULT_API_ENDPOINTS.get(account_type, DEFAULT_API_ENDPOINTS["individual"])
    return Exchanged(token, refresh_in, expires_at, api, endpoints.get("proxy") or api, str(data.get("sku", "")))


def _json_object(body: bytes) -> dict:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class TokenKeeper:
    """One refresh loop per account inside the running event loop, and the one serialized refresh path."""

    def __init__(self, pool: Pool, exchange: Exchange, clock: Clock) -> None:
        self.pool = pool
        self.exchange = exchange
        self.clock = clock
        self.loops: dict[str, asyncio.Task] = {}
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # name -> (lock, [waiters])
        self.exchanges_in_flight: dict[str, int] = {}

    # -- loops --------------------------------------------------------------------------------------

    def start(self, account: Account) -> None:
        """(Re)start the account's refresh loop; its first step is an exchange."""
        self.stop(account.name)
        self.loops[account.name] = tasks.start(self._loop(account), f"copilot-pool refresh loop of {account.name}")

    def stop(self, name: str) -> None:
        task = self.loops.pop(name, None)
        if task is not None:
            task.cancel()

    def stop_all(self) -> None:
        for name in list(self.loops):
            self.stop(name)

    async def _loop(self, account: Account) -> None:
        failures = 0
        while True:
            token, now = account.token, self.clock.now()
            if account.base_state is State.ACTIVE and token is not None and token.refresh_at > now:
                await self.clock.sleep(token.refresh_at - now)  # another trigger may refresh meanwhile
                continue
            if await self.refresh(account, reason="refresh" if account.token else "first exchange"):
                failures = 0
                continue
            if account.base_state in (State.FAILED, State.DISABLED) or self.pool.accounts.get(account.name) is not account:
                return  # GitHub refused the credential: wait for a new one (a file change restarts us)
            failures += 1
            delay = backoff(failures)
            if account.has_valid_token(self.clock.now()):
                # retry well before the working token runs out: a failed refresh never drops it early
                delay = min(delay, max(1.0, (account.token.expires_at - self.clock.now()) / 3))  # type: ignore[union-attr]
            await self.clock.sleep(delay)

    def ensure_loop(self, account: Account) -> None:
        task = self.loops.get(account.name)
        if task is None or task.done():
            self.start(account)

    # -- the serialized path ------------------------------------------------------------------------

    async def refresh(self, account: Account, *, invalidate: bool = False, reason: str = "scheduled") -> bool:
        """Exchange the account's GitHub token for a new Copilot token, one exchange per account at a time.

        `invalidate`: the current token is known bad (a 401, a new credential): the account is not picked
        until it holds a new one. Triggers that waited while another exchange succeeded reuse its result.
        """
        if invalidate and account.base_state is State.ACTIVE:
            account.base_state = State.STARTING
            account.token = None
        seen_generation = account.token_generation
        lock, waiters = self._locks.setdefault(account.name, (asyncio.Lock(), [0]))
        waiters[0] += 1
        try:
            async with lock:
                if account.token_generation != seen_generation and account.base_state is State.ACTIVE:
                    return True  # an exchange finished while we waited: its token is as fresh as ours would be
                return await self._exchange_once(account, reason)
        finally:
            waiters[0] -= 1
            if waiters[0] == 0:
                del self._locks[account.name]

    async def _exchange_once(self, account: Account, reason: str) -> bool:
        if account.base_state is State.DISABLED or account.name not in self.pool.accounts:
            return False
        if not account.has_valid_token(self.clock.now()):
            account.base_state = State.STARTING
        config = account.config
        self.exchanges_in_flight[account.name] = self.exchanges_in_flight.get(account.name, 0) + 1
        try:
            exchanged = await self.exchange(config)
        except ExchangeError as e:
            return self._exchange_failed(account, config, e)
        finally:
            self.exchanges_in_flight[account.name] -= 1
            if not self.exchanges_in_flight[account.name]:
                del self.exchanges_in_flight[account.name]
        if account.config is not config or account.base_state is State.DISABLED:
            return False  # the credential changed or the account was disabled while we asked: discard
        account.token = self._on_pool_clock(exchanged)
        account.token_generation += 1
        was = account.base_state
        account.base_state = State.ACTIVE
        if was is not State.ACTIVE:
            remaining = account.token.expires_at - self.clock.now()
            log.info(f"pool: account {account.name} active (sku {exchanged.sku or '?'}, token valid {remaining / 60:.0f} min, {reason})")
        return True

    def _exchange_failed(self, account: Account, config: AccountConfig, error: ExchangeError) -> bool:
        if account.config is not config:
            return False
        account.last_failure = error.reason
        if error.permanent:
            self.pool.mark_failure(account, error.reason)
            account.token = None
            log.error(f"pool: account {account.name} failed: {error.reason}")
        else:
            account.failures += 1
            log.warning(f"pool: account {account.name}: {error.reason}; retrying")
        return False

    def _on_pool_clock(self, exchanged: Exchanged) -> CopilotToken:
        now, wall = self.clock.now(), self.clock.wall()
        lifetime = exchanged.refresh_in + LOCAL_EXPIRY_SLACK
        server_left = exchanged.expires_at - wall
        if 0 < server_left < lifetime:  # a short-lived token: never outlive what the server says
            lifetime = server_left
        margin = min(60.0, exchanged.refresh_in * 0.1)
        return CopilotToken(
            exchanged.token,
            expires_at=now + lifetime,
            refresh_at=now + max(1.0, min(exchanged.refresh_in, lifetime) - margin),
            api_endpoint=exchanged.api_endpoint,
            proxy_endpoint=exchanged.proxy_endpoint,
            sku=exchanged.sku,
        )


def backoff(failures: int) -> float:
    """Exponential backoff with +-20% jitter: 1, 2, 4 ... 60 s."""
    return min(MAX_BACKOFF, 2.0 ** (failures - 1)) * random.uniform(0.8, 1.2)

