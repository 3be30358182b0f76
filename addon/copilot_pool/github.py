"""The HTTP calls the pool makes itself, as async callables the runtime takes: the Copilot token exchange and
`/copilot_internal/user` (the account's GitHub token, to `pool_github_api` and nowhere else), and an account's
model catalogue (its Copilot token, to its own trusted API endpoint). Each reads at most MAX_ANSWER bytes of an
answer (an exchange answer is a few hundred)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

from .core.exchange import Exchange, Exchanged, ExchangeError, FetchModels, FetchUser, parse_exchange_response
from .core.model import AccountConfig, CopilotToken
from .runtime.tokens import MAX_CONCURRENT_EXCHANGES

DEFAULT_GITHUB_API = "https://api.github.com"
EXCHANGE_PATH = "/copilot_internal/v2/token"
USER_PATH = "/copilot_internal/user"
MODELS_PATH = "/models"
MAX_ANSWER = 1024 * 1024
EXCHANGE_HEADERS = {
    "accept": "application/json",
    "editor-version": "vscode/1.104.0",
    "editor-plugin-version": "copilot-chat/0.31.0",
    "user-agent": "copilot-pool/0.1",
    "x-github-api-version": "2025-04-01",
}


def client() -> httpx.AsyncClient:
    # trust_env=False: HTTPS_PROXY often points at this very proxy.
    return httpx.AsyncClient(
        trust_env=False,
        timeout=httpx.Timeout(20.0),
        limits=httpx.Limits(max_connections=MAX_CONCURRENT_EXCHANGES + 4, max_keepalive_connections=16),
    )


class TooLarge(Exception):
    pass


async def _get(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> tuple[int, httpx.Headers, bytes]:
    """GET, reading at most MAX_ANSWER bytes of the body; raise TooLarge beyond."""
    async with http.stream("GET", url, headers=headers) as response:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER:
                raise TooLarge
        return response.status_code, response.headers, bytes(body)


def http_exchange(http: httpx.AsyncClient, github_api: Callable[[], str]) -> Exchange:
    """The real exchange: GET {github_api}/copilot_internal/v2/token with the account's GitHub token."""

    async def exchange(config: AccountConfig) -> Exchanged:
        url = github_api().rstrip("/") + EXCHANGE_PATH
        headers = {**EXCHANGE_HEADERS, "authorization": f"token {config.github_token}"}
        try:
            status, answer_headers, body = await _get(http, url, headers)
        except TooLarge:
            raise ExchangeError(f"token exchange answer larger than {MAX_ANSWER} bytes", permanent=False) from None
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise ExchangeError(f"token exchange failed: {type(e).__name__}", permanent=False) from None
        return parse_exchange_response(status, body, config.account_type, headers=answer_headers, wall_now=time.time())

    return exchange


def http_fetch_user(http: httpx.AsyncClient, github_api: Callable[[], str]) -> FetchUser:
    """GET {github_api}/copilot_internal/user with the account's GitHub token; the JSON answer."""

    async def fetch(config: AccountConfig) -> object:
        url = github_api().rstrip("/") + USER_PATH
        status, _, body = await _get(
            http, url, {"authorization": f"token {config.github_token}", "accept": "application/json"}
        )
        if status != 200:
            raise ValueError(f"{USER_PATH} answered {status}")
        return json.loads(body)

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
