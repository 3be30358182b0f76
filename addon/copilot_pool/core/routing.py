"""Which requests the pool serves, and which kind of credential the client sent.

Only HTTPS requests to Copilot API hosts on inference paths are pooled. Everything else passes through
untouched, so pool credentials never reach another host or a non-inference path such as `/mcp/readonly`.
"""

from __future__ import annotations

import re
from enum import Enum

COPILOT_API_HOSTS = frozenset(
    {
        "api.githubcopilot.com",
        "api.individual.githubcopilot.com",
        "api.business.githubcopilot.com",
        "api.enterprise.githubcopilot.com",
    }
)
COPILOT_PROXY_HOSTS = frozenset(
    {
        "copilot-proxy.githubusercontent.com",
        "proxy.githubcopilot.com",
        "proxy.individual.githubcopilot.com",
        "proxy.business.githubcopilot.com",
        "proxy.enterprise.githubcopilot.com",
    }
)
API_INFERENCE = frozenset(
    {
        ("POST", "/chat/completions"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/responses"),
        ("POST", "/v1/messages"),
        ("POST", "/embeddings"),
        ("GET", "/models"),
        # auto-model sessions: minted by one account, then bound to it (core/sessions.py)
        ("POST", "/auto"),
        ("POST", "/models/session"),
        ("POST", "/models/session/intent"),
    }
)
WEBSOCKET_PATHS = frozenset({"/responses"})  # `GET /responses` upgraded: the Responses API over a WebSocket
CODE_COMPLETIONS = re.compile(r"^/v1/engines/[A-Za-z0-9._-]+/completions$")
GITHUB_TOKEN_PREFIXES = ("gho_", "ghu_", "ghp_", "github_pat_")


class Route(Enum):
    API = "api"  # goes to the account's endpoints.api
    PROXY = "proxy"  # inline code completions: the account's endpoints.proxy


def route_for(
    scheme: str,
    host: str,
    host_header: str | None,
    method: str,
    path: str,
    websocket: bool = False,
    websocket_paths: frozenset[str] | set[str] = WEBSOCKET_PATHS,
) -> Route | None:
    """The pooled route for a request, or None to pass it through untouched.

    `host` is where the connection goes; a Host header that names another host is not trusted. `websocket`:
    the request asks to upgrade; only `GET` on a path some catalogue lists as `ws:` (or `/responses`) is pooled.
    """
    if scheme != "https":
        return None
    host = host.lower()
    if host_header is not None and host_header.lower().rsplit(":", 1)[0] != host:
        return None
    path = path.split("?", 1)[0]
    if host in COPILOT_API_HOSTS and websocket:
        return Route.API if method == "GET" and path in websocket_paths else None
    if host in COPILOT_API_HOSTS and (method, path) in API_INFERENCE:
        return Route.API
    if host in COPILOT_PROXY_HOSTS and not websocket and method == "POST" and CODE_COMPLETIONS.match(path):
        return Route.PROXY
    return None


def sends_github_token(authorization: str | None) -> bool:
    """True when the client authenticates with a GitHub token (the Copilot CLI), False for a Copilot token."""
    if not authorization:
        return False
    scheme, _, credential = authorization.strip().partition(" ")
    return credential.strip().startswith(GITHUB_TOKEN_PREFIXES)
