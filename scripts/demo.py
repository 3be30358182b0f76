#!/usr/bin/env python3
"""A demo of copilot-pool with no real accounts: the bundled fake Copilot upstream, three fake accounts,
real mitmdump with the pool addon, and real HTTPS requests through it.

    python scripts/demo.py            # shows pooling, a 429 cooldown and streaming, then keeps the proxy up
    python scripts/demo.py --once     # the same, then exits
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from fake_copilot import FakeCopilot  # scripts/ is on sys.path: it is this script's folder
from mitmdump_process import Mitmdump, chat, write_accounts

ACCOUNTS = [("alice", "individual"), ("bob", "business"), ("carol", "individual")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="exit after the demo instead of keeping the proxy up")
    parser.add_argument("--port", type=int, default=8080, help="proxy port (0: any free port)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="copilot-pool-demo-"))
    fake = FakeCopilot(stream_chunks=4, stream_interval=0.25)
    accounts = []
    for name, account_type in ACCOUNTS:
        token = f"gho_demo_{name}_{int(time.time())}"
        fake.add_account(name, token, account_type)
        accounts.append({"name": name, "github_token": token, "account_type": account_type})
    fake.start()
    accounts_file = write_accounts(workdir / "accounts.json", accounts)
    print(f"fake Copilot upstream (GitHub token exchange + Copilot API) at {fake.base_url}")
    print(f"accounts file {accounts_file}: {', '.join(name for name, _ in ACCOUNTS)}")

    proxy = Mitmdump(
        workdir / "mitmproxy",
        # memory: the demo's made-up accounts leave no state behind in the user's data directory
        {
            "pool_accounts": accounts_file,
            "pool_github_api": fake.base_url,
            "pool_extra_endpoints": fake.endpoint_bases(),  # the fake's plain-http Copilot API: trusted for the demo
            "listen_port": args.port,
            "pool_state": "memory",
        },
    )
    try:
        proxy.wait_accounts([name for name, _ in ACCOUNTS])
        print(f"mitmdump with the pool addon at http://127.0.0.1:{proxy.port} (CA: {proxy.ca})\n")
        with proxy.client() as client:
            show_pooling(client)
            show_cooldown(client, fake)
            show_streaming(client)
        print("\nwhat mitmdump logged about the pool:")
        for line in proxy.lines:
            if "pool:" in line:
                print("  " + line)
        if args.once:
            return 0
        print(
            f"\nThe proxy stays up. Try it (Ctrl-C to stop):\n"
            f"  curl --proxy http://127.0.0.1:{proxy.port} --cacert {proxy.ca} \\\n"
            f"       -H 'authorization: Bearer anything' -H 'content-type: application/json' \\\n"
            f"       -d '{{\"messages\": []}}' https://api.githubcopilot.com/chat/completions"
        )
        proxy.process.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        proxy.stop()
        fake.stop()


def show_pooling(client) -> None:
    print("1. six chat completions; the client sends its own token, the pool swaps in an account's:")
    for i in range(6):
        response = chat(client)
        print(f"   request {i + 1}: {response.status_code}, served by {response.headers.get('x-fake-account')}")


def show_cooldown(client, fake: FakeCopilot) -> None:
    fake.inject("carol", 429, headers={"retry-after": "30"})
    print("\n2. carol is rate limited by upstream (429, Retry-After: 30); the pool cools her, sends the request")
    print("   again on another account, and the client never sees the 429:")
    seen = len(fake.entries())
    for i in range(6):
        response = chat(client)
        print(f"   request {i + 1}: {response.status_code}, served by {response.headers.get('x-fake-account')}")
    answers = [f"{e.account} {e.status}" for e in fake.entries()[seen:] if not e.path.startswith("/copilot_internal")]
    print(f"   upstream answered, in order: {', '.join(answers)}")


def show_streaming(client) -> None:
    print("\n3. a streamed answer (SSE) relayed event by event as upstream sends them:")
    start = time.monotonic()
    with client.stream(
        "POST",
        "https://api.githubcopilot.com/chat/completions",
        headers={"authorization": "Bearer anything"},
        json={"stream": True, "messages": []},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                content = json.loads(line[6:])["choices"][0]["delta"]["content"]
                print(f"   +{time.monotonic() - start:.2f}s  {content}")


if __name__ == "__main__":
    sys.exit(main())
