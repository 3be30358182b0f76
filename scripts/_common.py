"""Shared by the operator scripts: the addon package on sys.path, and the GitHub API calls they make."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "addon"))

import httpx  # noqa: E402

from copilot_pool.quota import USER_PATH  # noqa: E402
from copilot_pool.tokens import DEFAULT_GITHUB_API, EXCHANGE_HEADERS  # noqa: E402, F401 (DEFAULT_GITHUB_API: for the scripts)

DEFAULT_GITHUB_URL = "https://github.com"
COPILOT_CLIENT_ID = "Iv1.b507a08c87ecfe98"  # the GitHub app editors' Copilot plugins sign in with


def client() -> httpx.Client:
    # trust_env=False: HTTPS_PROXY often points at the pool itself
    return httpx.Client(trust_env=False, timeout=httpx.Timeout(20.0), headers={"user-agent": EXCHANGE_HEADERS["user-agent"]})


def copilot_user(http: httpx.Client, github_api: str, github_token: str) -> httpx.Response:
    """GET /copilot_internal/user: login, copilot_plan and quota snapshots of the token's owner."""
    headers = {**EXCHANGE_HEADERS, "authorization": f"token {github_token}"}
    return http.get(github_api.rstrip("/") + USER_PATH, headers=headers)


def json_object(response: httpx.Response) -> dict:
    """The response's JSON object, or {} when it is not one."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
