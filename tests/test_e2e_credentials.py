"""End to end: a 401 from the Copilot API re-exchanges that account's token through the serialized path."""

from __future__ import annotations

from mitmdump_process import chat, write_accounts

ALICE = {"name": "alice", "github_token": "gho_alice_secret_0001"}


def test_401_refreshes_the_token(start_proxy, fake, tmp_path):
    path = write_accounts(tmp_path / "accounts.json", [ALICE])
    proxy = start_proxy({"pool_accounts": path, "pool_github_api": fake.base_url})
    proxy.wait_for(r"account alice active")
    fake.expire_tokens("alice")  # upstream no longer accepts the token the pool holds
    stale = set(fake.issued_tokens())
    with proxy.client() as client:
        first = chat(client)
        proxy.wait_for(r"account alice active \(.*after a 401 from Copilot\)")
        second = chat(client)
    assert first.status_code == 401 or first.status_code == 200  # a failover-capable pool may already cure it
    assert second.status_code == 200
    assert fake.exchanges("alice") == 2
    assert fake.entries()[-1].credential not in stale
