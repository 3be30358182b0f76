"""The HTTP calls the pool makes itself, as async callables the runtime takes: the Copilot token exchange and
`/copilot_internal/user` (the account's GitHub token, to `pool_github_api` and nowhere else), and an account's
model catalogue (its Copilot token, to its own API endpoint)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from .core.exchange import Exchange, Exchanged, ExchangeError, FetchModels, FetchUser, parse_exchange_response
from .core.model import AccountConfig, CopilotToken

DEFAULT_GITHUB_API = "https://api.github.com"
EXCHANGE_PATH = "/copilot_internal/v2/token"
USER_PATH = "/copilot_internal/user"
MODELS_PATH = "/models"
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


def http_fetch_models(http: httpx.AsyncClient) -> FetchModels:
    """GET {endpoints.api}/models with the account's Copilot token, as the editors ask for their model picker."""

    async def fetch(config: AccountConfig, token: CopilotToken) -> bytes:
        headers = {
            **EXCHANGE_HEADERS,
            "copilot-integration-id": "vscode-chat",
            "authorization": f"Bearer {token.value}",
        }
        response = await http.get(token.api_endpoint.rstrip("/") + MODELS_PATH, headers=headers)
        if response.status_code != 200:
            raise ValueError(f"{MODELS_PATH} answered {response.status_code}")
        return response.content

    return fetch
