"""The HTTP calls to GitHub, as async callables the runtime takes: the Copilot token exchange and
`/copilot_internal/user`. Each sends the account's GitHub token to `pool_github_api` and nowhere else."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from .core.exchange import Exchange, Exchanged, ExchangeError, FetchUser, parse_exchange_response
from .core.model import AccountConfig

DEFAULT_GITHUB_API = "https://api.github.com"
EXCHANGE_PATH = "/copilot_internal/v2/token"
USER_PATH = "/copilot_internal/user"
EXCHANGE_HEADERS = {
    "accept": "application/json",
    "editor-version": "vscode/1.104.0",
    "editor-plugin-version": "copilot-chat/0.31.0",
    "user-agent": "copilot-pool/0.1",
    "x-github-api-version": "2025-04-01",
}


def client() -> httpx.AsyncClient:
    # trust_env=False: HTTPS_PROXY often points at this very proxy.
    return httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(20.0))


def http_exchange(http: httpx.AsyncClient, github_api: Callable[[], str]) -> Exchange:
    """The real exchange: GET {github_api}/copilot_internal/v2/token with the account's GitHub token."""

    async def exchange(config: AccountConfig) -> Exchanged:
        url = github_api().rstrip("/") + EXCHANGE_PATH
        headers = {**EXCHANGE_HEADERS, "authorization": f"token {config.github_token}"}
        try:
            response = await http.get(url, headers=headers)
        except httpx.HTTPError as e:
            raise ExchangeError(f"token exchange failed: {type(e).__name__}", permanent=False) from None
        return parse_exchange_response(response.status_code, response.content, config.account_type)

    return exchange


def http_fetch_user(http: httpx.AsyncClient, github_api: Callable[[], str]) -> FetchUser:
    """GET {github_api}/copilot_internal/user with the account's GitHub token; the JSON answer."""

    async def fetch(config: AccountConfig) -> object:
        url = github_api().rstrip("/") + USER_PATH
        response = await http.get(
            url, headers={"authorization": f"token {config.github_token}", "accept": "application/json"}
        )
        if response.status_code != 200:
            raise ValueError(f"{USER_PATH} answered {response.status_code}")
        return json.loads(response.content)

    return fetch
