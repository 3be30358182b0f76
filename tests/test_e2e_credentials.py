"""End to end: a 401 from the Copilot API re-exchanges that account's token through the serialized path."""

from __future__ import annotations

from e2e import ALICE, pool_proxy
from mitmdump_process import chat


def test_401_refreshes_the_token(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, [ALICE])
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
