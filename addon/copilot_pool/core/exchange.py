"""The Copilot token exchange's answer, parsed and judged: a token with its endpoints, or why there is none."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .model import AccountConfig, CopilotToken
from .parse import json_object

DEFAULT_API_ENDPOINTS = {
    "individual": "https://api.individual.githubcopilot.com",
    "business": "https://api.business.githubcopilot.com",
    "enterprise": "https://api.enterprise.githubcopilot.com",
}


@dataclass(frozen=True)
class Exchanged:
    """The token exchange's answer, before it is put on the pool clock."""

    token: str = field(repr=False)
    refresh_in: float
    expires_at: float  # server epoch seconds
    api_endpoint: str
    proxy_endpoint: str
    sku: str


# What the runtime is given to talk to GitHub (github.py has the HTTP implementations).
Exchange = Callable[[AccountConfig], Awaitable[Exchanged]]  # the Copilot token exchange
FetchUser = Callable[[AccountConfig], Awaitable[object]]  # the JSON answer of /copilot_internal/user
FetchModels = Callable[[AccountConfig, CopilotToken], Awaitable[bytes]]  # the account's own /models answer


class ExchangeError(Exception):
    """The exchange failed. `permanent`: GitHub refused the credential, retrying will not help."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def parse_exchange_response(status: int, body: bytes, account_type: str) -> Exchanged:
    data = json_object(body)
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
