"""End to end: the accounts file changes under steady traffic from several clients; mitmdump never restarts."""

from __future__ import annotations

import threading
import time

from e2e import ALICE, BOB, CAROL, pool_proxy, upstream
from mitmdump_process import chat, write_accounts

APPLY_WITHIN = 2.0  # seconds from the write to the change being in effect


class Traffic:
    """Clients sending chat completions back to back, each on its own keep-alive connection."""

    def __init__(self, proxy, clients: int = 4):
        self.results: list[tuple[float, float, int, str]] = []  # (sent, answered, status, account or error code)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(proxy,), daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self, proxy):
        with proxy.client() as client:
            while not self._stop.is_set():
                sent = time.time()
                response = chat(client)
                who = response.headers.get("x-fake-account") or response.json()["error"]["code"]
                self.results.append((sent, time.time(), response.status_code, who))
                time.sleep(0.01)

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


def test_accounts_file_changes_under_traffic(start_proxy, fake, tmp_path):
    fake.add_account("carol", CAROL["github_token"])
    proxy = pool_proxy(start_proxy, fake, tmp_path, [ALICE, BOB])
    path = tmp_path / "accounts.json"
    traffic = Traffic(proxy)

    def change(accounts, *expect: str) -> float:
        """Write the file, wait for each expected log line; return when the change was seen in effect."""
        start_line = len(proxy.lines)
        written = time.time()
        write_accounts(path, accounts)
        for pattern in expect:
            proxy.wait_for(pattern, timeout=APPLY_WITHIN, start=start_line)
        seen = time.time()
        assert seen - written <= APPLY_WITHIN
        time.sleep(0.5)  # let traffic run on the new account set
        return seen + 0.2  # requests picked just before the change may still land a moment later

    try:
        time.sleep(0.5)
        change([ALICE, BOB, CAROL], r"account carol active")
        bob_removed = change([ALICE, CAROL], r"account bob removed")
        issued_before = set(fake.issued_tokens())
        alice_new = {**ALICE, "github_token": "gho_alice_new_0004"}
        fake.add_account("alice", alice_new["github_token"])  # rotated at GitHub: the old token stops working
        alice_changed = change([alice_new, CAROL], r"account alice has a new credential", r"account alice active")
        start_line = len(proxy.lines)
        write_accounts(path, [CAROL, alice_new])  # same account set, other order: nothing happens
        time.sleep(1.0)
        assert not any("pool:" in line for line in proxy.lines[start_line:])
        path.write_text('{"accounts": [')  # half-written / invalid
        proxy.wait_for(
            r"accounts file change ignored, the pool keeps its accounts: .*not valid JSON", timeout=APPLY_WITHIN
        )
        time.sleep(0.5)
        empty_written = time.time()
        change([], r"account alice removed", r"account carol removed")
        restored_written = time.time()
        restored = change([alice_new, CAROL], r"account alice active", r"account carol active")
    finally:
        traffic.stop()

    results = traffic.results
    assert len(results) > 100
    # every request got an answer; only the empty pool's clear 503 is a failure, and only while it was empty
    failures = [r for r in results if r[2] != 200]
    assert failures  # the empty account list was really exercised
    assert all(status == 503 and code == "pool_unavailable" for _, _, status, code in failures), failures[:5]
    assert all(empty_written <= answered <= restored for _, answered, _, _ in failures), (
        empty_written,
        restored,
        failures[:3],
        failures[-3:],
    )
    assert any(r[2] == 200 and r[0] > restored_written for r in results)
    served = {who for _, _, status, who in results if status == 200}
    assert served == {"alice", "bob", "carol"}

    # after a change applied, upstream never again saw the removed or replaced credential
    entries = [e for e in fake.entries() if not e.path.startswith("/copilot_internal")]
    assert not [e for e in entries if e.account == "bob" and e.time > bob_removed]
    assert not [e for e in entries if e.account == "alice" and e.time > alice_changed and e.credential in issued_before]
    assert all(e.status == 200 for e in entries)
    assert fake.exchanges("carol") == 2  # once when added, once when restored after the empty list


def test_token_file_change_re_exchanges(start_proxy, fake, tmp_path):
    token_file = tmp_path / "alice.token"
    token_file.write_text(ALICE["github_token"])
    path = write_accounts(tmp_path / "accounts.json", [{"name": "alice", "github_token_file": "alice.token"}])
    proxy = start_proxy({"pool_accounts": path, **upstream(fake)})
    proxy.wait_for(r"account alice active")
    fake.add_account("alice", "gho_alice_rotated_0005")
    issued_before = set(fake.issued_tokens())
    start_line = len(proxy.lines)
    token_file.write_text("gho_alice_rotated_0005\n")
    proxy.wait_for(r"account alice has a new credential", timeout=APPLY_WITHIN, start=start_line)
    proxy.wait_for(r"account alice active", timeout=APPLY_WITHIN, start=start_line)
    with proxy.client() as client:
        assert chat(client).status_code == 200
    assert fake.entries()[-1].credential not in issued_before  # a token exchanged with the rotated GitHub token


def test_invalid_file_at_runtime_keeps_pool_and_pool_reload_too(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path, [ALICE])
    path = tmp_path / "accounts.json"
    write_accounts(path, [{"name": "alice", "github_token": "gho_alice_secret_0001", "bogus": 1}])
    proxy.wait_for(
        r"accounts file change ignored.*accounts\[0\] 'alice': field 'bogus': unknown field", timeout=APPLY_WITHIN
    )
    path.unlink()
    proxy.wait_for(r"accounts file change ignored.*accounts.json cannot be read", timeout=APPLY_WITHIN)
    with proxy.client() as client:
        assert chat(client).status_code == 200
    assert "gho_alice_secret_0001" not in proxy.output()
