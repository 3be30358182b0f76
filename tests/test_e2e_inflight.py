"""End to end: a request counts out of its account exactly once on every path, seen through the status page."""

from __future__ import annotations

import threading
import time

import httpx
from e2e import pool_proxy
from mitmdump_process import chat, wait_until


def in_flight(client) -> dict[str, int]:
    return {a["name"]: a["in_flight"] for a in client.get("http://copilot-pool/status.json").json()["accounts"]}


def test_client_disconnects_release_their_account(start_proxy, fake, tmp_path):
    proxy = pool_proxy(start_proxy, fake, tmp_path)
    with proxy.client() as status:
        fake.set_delay(3.0)

        # 1. clients that give up long before upstream answers
        def impatient_request():
            with proxy.client(timeout=1.0) as impatient:
                try:
                    chat(impatient)
                except httpx.TimeoutException:
                    pass

        started = time.monotonic()
        threads = [threading.Thread(target=impatient_request) for _ in range(3)]
        for thread in threads:
            thread.start()
        wait_until(lambda: sum(in_flight(status).values()) == 3, timeout=2)  # really in flight
        wait_until(lambda: sum(in_flight(status).values()) == 0, timeout=5)
        assert time.monotonic() - started < 2.5  # released when the clients hung up, not when upstream answered
        for thread in threads:
            thread.join()
        fake.set_delay(0)

        # 2. a client that hangs up in the middle of a stream
        with proxy.client() as streamer:
            with streamer.stream(
                "POST",
                "https://api.githubcopilot.com/chat/completions",
                headers={"authorization": "Bearer x"},
                json={"stream": True},
            ) as response:
                lines = response.iter_lines()  # kept: a dropped iterator would close the stream early
                assert next(lines).startswith("data: ")
                assert sum(in_flight(status).values()) == 1
            # leaving the block hangs up with most of the stream unread
        wait_until(lambda: sum(in_flight(status).values()) == 0, timeout=5)

        # 3. upstream drops the connection
        fake.inject("alice", 0)
        fake.inject("bob", 0)
        with proxy.client() as client:
            for _ in range(3):
                chat(client)
        wait_until(lambda: sum(in_flight(status).values()) == 0, timeout=5)
        with proxy.client() as client:
            assert chat(client).status_code == 200
        assert in_flight(status) == {"alice": 0, "bob": 0}
