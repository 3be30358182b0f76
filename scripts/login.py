#!/usr/bin/env python3
"""Sign a GitHub account in with the device flow and add it to the accounts file (or update its token).

    .venv/bin/python scripts/login.py --accounts accounts.json [--name alice]

Prints a code to enter at github.com/login/device, waits for approval, then writes the account's GitHub
token into the accounts file (mode 0600). The token is never printed. The name and account type default
to the GitHub login and Copilot plan of the account that approved.
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import COPILOT_CLIENT_ID, DEFAULT_GITHUB_API, DEFAULT_GITHUB_URL, client, copilot_user, json_object
from accounts_store import upsert_account
from copilot_pool.runtime.accounts_file import AccountsFileError

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PLAN_TYPES = {"business": "business", "enterprise": "enterprise"}


class LoginFailed(Exception):
    pass


def device_login(http, github_url: str, client_id: str, say=print, sleep=time.sleep) -> str:
    """Run GitHub's device flow; return the GitHub token, or raise LoginFailed saying why."""
    base = github_url.rstrip("/")
    accept = {"accept": "application/json"}
    code = _json(
        http.post(f"{base}/login/device/code", data={"client_id": client_id, "scope": "read:user"}, headers=accept)
    )
    if "device_code" not in code:
        raise LoginFailed(
            f"GitHub refused to start the device flow: {code.get('error_description') or code.get('error') or code}"
        )
    say(f"Open {code['verification_uri']} and enter the code {code['user_code']}")
    interval = float(code.get("interval") or 5)
    deadline = time.monotonic() + float(code.get("expires_in") or 900)
    while time.monotonic() < deadline:
        sleep(interval)
        answer = _json(
            http.post(
                f"{base}/login/oauth/access_token",
                headers=accept,
                data={"client_id": client_id, "device_code": code["device_code"], "grant_type": DEVICE_GRANT},
            )
        )
        if token := answer.get("access_token"):
            return token
        error = answer.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":  # GitHub says by how much; RFC 8628 says 5 s more
            interval = float(answer.get("interval") or interval + 5)
            continue
        raise LoginFailed(
            {
                "expired_token": "the code expired before it was entered; run the login again",
                "access_denied": "the sign-in was denied",
            }.get(error, f"GitHub answered {error}: {answer.get('error_description', '')}")
        )
    raise LoginFailed("the code expired before it was entered; run the login again")


def _json(response) -> dict:
    try:
        data = response.json()
    except ValueError:
        raise LoginFailed(f"{response.request.url} answered {response.status_code} with no JSON") from None
    return data if isinstance(data, dict) else {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--accounts", default="accounts.json", help="accounts file to add the account to (default: accounts.json)"
    )
    p.add_argument("--name", help="account name in the pool (default: the GitHub login)")
    p.add_argument(
        "--account-type", choices=["individual", "business", "enterprise"], help="default: from the Copilot plan"
    )
    p.add_argument("--github-url", default=DEFAULT_GITHUB_URL, help="GitHub web base URL, for the device flow")
    p.add_argument(
        "--github-api", default=DEFAULT_GITHUB_API, help="GitHub API base URL, to look up the login and plan"
    )
    p.add_argument(
        "--client-id", default=COPILOT_CLIENT_ID, help="OAuth app client id (default: the Copilot editors' app)"
    )
    a = p.parse_args(argv)

    with client() as http:
        try:
            token = device_login(
                http, a.github_url, a.client_id, say=lambda text: print(text, file=sys.stderr, flush=True)
            )
        except LoginFailed as e:
            print(f"login failed: {e}", file=sys.stderr)
            return 1
        user = copilot_user(http, a.github_api, token)
    info = json_object(user) if user.status_code == 200 else {}
    if not info:
        print(
            f"warning: the Copilot user lookup answered {user.status_code}: this account may have no Copilot access",
            file=sys.stderr,
        )
    name = a.name or info.get("login")
    if not name:
        print("login failed: could not learn the GitHub login; pass --name", file=sys.stderr)
        return 1
    account_type = a.account_type or PLAN_TYPES.get(str(info.get("copilot_plan")), "individual")
    try:
        action = upsert_account(a.accounts, name, token, account_type)
    except AccountsFileError as e:
        print(f"login failed: {e}", file=sys.stderr)
        return 1
    print(f"{action} account {name} ({account_type}, plan {info.get('copilot_plan', '?')}) in {a.accounts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
