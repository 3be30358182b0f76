"""Shared by the operator scripts: the GitHub API calls they make."""

from __future__ import annotations

import httpx
from copilot_pool.core.parse import json_object as parse_json_object
from copilot_pool.github import DEFAULT_GITHUB_API as DEFAULT_GITHUB_API  # re-exported for the scripts
from copilot_pool.github import EXCHANGE_HEADERS, USER_PATH

DEFAULT_GITHUB_URL = "https://github.com"
COPILOT_CLIENT_ID = "Iv1.b507a08c87ecfe98"  # the GitHub app editors' Copilot plugins sign in with


def client() -> httpx.Client:
    # trust_env=False: HTTPS_PROXY often points at the pool itself
    return httpx.Client(
        trust_env=False, timeout=httpx.Timeout(20.0), headers={"user-agent": EXCHANGE_HEADERS["user-agent"]}
    )


def copilot_user(http: httpx.Client, github_api: str, github_token: str) -> httpx.Response:
    """GET /copilot_internal/user: login, copilot_plan and quota snapshots of the token's owner."""
    headers = {**EXCHANGE_HEADERS, "authorization": f"token {github_token}"}
    return http.get(github_api.rstrip("/") + USER_PATH, headers=headers)


def json_object(response: httpx.Response) -> dict:
    """The response's JSON object, or {} when it is not one."""
    return parse_json_object(response.content)
