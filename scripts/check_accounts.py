#!/usr/bin/env python3
"""Check every account of the accounts file against GitHub: token exchange, plan, sku, endpoint, premium quota.

    .venv/bin/python scripts/check_accounts.py --accounts accounts.json

One line per account; exits 1 when any account fails. Never prints a token.
"""

from __future__ import annotations

import argparse
import sys
import time

import httpx
from _common import DEFAULT_GITHUB_API, client, copilot_user, json_object
from copilot_pool.core.endpoints import EndpointPolicy
from copilot_pool.core.exchange import ExchangeError, parse_exchange_response
from copilot_pool.core.model import AccountConfig
from copilot_pool.github import EXCHANGE_HEADERS, EXCHANGE_PATH
from copilot_pool.observe.redact import redact
from copilot_pool.runtime.accounts_file import AccountsFileError, load_accounts_file


def check(http: httpx.Client, github_api: str, account: AccountConfig, policy: EndpointPolicy) -> tuple[bool, str]:
    """(ok, one line describing the account)."""
    headers = {**EXCHANGE_HEADERS, "authorization": f"token {account.github_token}"}
    try:
        response = http.get(github_api.rstrip("/") + EXCHANGE_PATH, headers=headers)
        exchanged = parse_exchange_response(
            response.status_code,
            response.content,
            account.account_type,
            headers=response.headers,
            wall_now=time.time(),
        )
        user = copilot_user(http, github_api, account.github_token)
    except ExchangeError as e:
        return False, f"FAILED  {e.reason}"
    except httpx.HTTPError as e:
        return False, f"FAILED  cannot reach {github_api}: {type(e).__name__}"
    info = json_object(user) if user.status_code == 200 else {}
    # the endpoint the pool would use: the exchange's, when the pool trusts it (core/endpoints.py)
    chosen = policy.choose(exchanged.api_endpoint, exchanged.proxy_endpoint, account.account_type)
    refused_parts = exchanged.refused + chosen.refused
    refused = f" (refused {', '.join(refused_parts)})" if refused_parts else ""
    return True, (
        f"ok  plan {info.get('copilot_plan', '?')}, sku {exchanged.sku or '?'}, endpoint {chosen.api}{refused}, "
        f"premium {_premium(info)}"
    )


def _premium(info: dict) -> str:
    snapshots = info.get("quota_snapshots") or {}
    premium = snapshots.get("premium_interactions") or snapshots.get("premium_models")
    if not isinstance(premium, dict):
        return "unknown"
    if premium.get("unlimited"):
        return "unlimited"
    resets = f", resets {info['quota_reset_date']}" if info.get("quota_reset_date") else ""
    left = f"{premium.get('remaining', '?')}/{premium.get('entitlement', '?')} left"
    return f"{left} ({premium.get('percent_remaining', '?')}%){resets}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accounts", default="accounts.json", help="accounts file (default: accounts.json)")
    p.add_argument("--github-api", default=DEFAULT_GITHUB_API, help="GitHub API base URL (the pool_github_api option)")
    p.add_argument(
        "--extra-endpoint",
        action="append",
        default=[],
        metavar="BASE",
        help="an endpoint base the pool trusts besides GitHub's Copilot hosts (the pool_extra_endpoints option)",
    )
    a = p.parse_args(argv)
    try:
        policy = EndpointPolicy.from_options(a.github_api, a.extra_endpoint)
    except ValueError as e:
        print(f"--extra-endpoint: {e}", file=sys.stderr)
        return 2
    try:
        accounts = load_accounts_file(a.accounts)
    except AccountsFileError as e:
        print(e, file=sys.stderr)
        return 2
    failed = 0
    width = max((len(acc.name) for acc in accounts), default=0)
    with client() as http:
        for account in accounts:
            ok, line = check(http, a.github_api, account, policy)
            failed += not ok
            disabled = "" if account.enabled else " (disabled in the file)"
            print(redact(f"{account.name:<{width}}  {line}{disabled}"), flush=True)
    if failed:
        print(f"{failed} of {len(accounts)} account(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
