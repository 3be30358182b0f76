"""Shared by the end-to-end tests: the fake's accounts, the options that point the pool at a fake, and a pool
proxy started on them."""

from __future__ import annotations

from mitmdump_process import write_accounts

ALICE = {"name": "alice", "github_token": "gho_alice_secret_0001"}
BOB = {"name": "bob", "github_token": "gho_bob_secret_0002", "account_type": "business"}
CAROL = {"name": "carol", "github_token": "gho_carol_secret_0003"}


def upstream(fake) -> dict:
    """Options pointing the pool at `fake`: its GitHub API, and its plain-http bases as trusted endpoints (the fake's
    exchange names them; without pool_extra_endpoints the pool would refuse them as no Copilot host)."""
    return {"pool_github_api": fake.base_url, "pool_extra_endpoints": fake.endpoint_bases()}


def pool_proxy(
    start_proxy, fake, tmp_path, accounts=(ALICE, BOB), *, wait=None, states=("active",), args=(), env=None, **options
):
    """mitmdump with the pool on `accounts` (written to tmp_path/accounts.json), once each account named in
    `wait` (default: all) is in one of `states`, as its status page says."""
    path = write_accounts(tmp_path / "accounts.json", list(accounts))
    proxy = start_proxy({"pool_accounts": path, **upstream(fake), **options}, env=env, args=list(args))
    proxy.wait_accounts(list(wait) if wait is not None else [a["name"] for a in accounts], states)
    return proxy


def inference(fake):
    """What the fake served on the Copilot API, without the token exchanges and the pool's catalogue fetches."""
    return [e for e in fake.entries() if not e.path.startswith("/copilot_internal") and e.path != "/models"]
