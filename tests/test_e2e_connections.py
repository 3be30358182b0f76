"""Upstream connections: mitmproxy keeps one connection per account endpoint for each client connection and
reuses it (keep-alive), whichever accounts the pool alternates between."""

from e2e import pool_proxy
from mitmdump_process import chat


def test_one_upstream_connection_per_account_endpoint_per_client_connection(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, pool_strategy="round-robin")  # alice: 127.0.0.1, bob: localhost
    before = len(proxy.lines)
    with proxy.client() as client:  # one keep-alive client connection
        served = [chat(client, "gho_client_own").headers["x-fake-account"] for _ in range(10)]
    assert served.count("alice") == served.count("bob") == 5
    proxy.wait_for("client disconnect", start=before)
    connects = [line.split("server connect ")[1] for line in proxy.lines[before:] if "server connect" in line]
    assert sorted(c.split(":")[0] for c in connects) == ["127.0.0.1", "localhost"]
