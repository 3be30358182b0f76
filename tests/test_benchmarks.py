"""The benchmarks' own machinery: how they read the pool's in-flight count, and their arithmetic.
(The benchmarks themselves are scripts, never timed tests: benchmarks/run_all.py.)"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from common import in_flight, percentile  # noqa: E402
from e2e import upstream  # noqa: E402
from mitmdump_process import write_accounts  # noqa: E402
from profiling import analyse, where  # noqa: E402


def test_in_flight_counts_a_running_stream_and_then_none(start_proxy, fake, tmp_path):
    accounts = write_accounts(tmp_path / "accounts.json", [{"name": "alice", "github_token": "gho_alice_secret_0001"}])
    proxy = start_proxy({"pool_accounts": accounts, **upstream(fake)})
    proxy.wait_accounts(["alice"])
    assert in_flight(proxy) == 0
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with (
        proxy.client() as client,
        client.stream(
            "POST",
            "https://api.individual.githubcopilot.com/chat/completions",
            headers={"authorization": "Bearer tid=client-own-token"},
            json=body,
        ) as response,
    ):
        chunks = response.iter_raw()
        assert b"data: " in next(chunks)  # the stream is open: its account holds it
        assert in_flight(proxy) == 1
        assert b"[DONE]" in b"".join(chunks)
    assert in_flight(proxy) == 0


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)
    assert percentile([3.0], 99) == 3.0


def test_profile_analysis_attributes_samples_to_the_addon():
    raw = "\n".join(
        [
            "main (/x/addon/copilot_pool/mitm/launch.py:1);run (asyncio/base_events.py:1) ;"
            "request (/x/addon/copilot_pool/addon.py:101);acquire (/x/addon/copilot_pool/pool.py:120) 3",
            "main (/x/addon/copilot_pool/mitm/launch.py:1);run (asyncio/base_events.py:1);"
            "write (/v/lib/python3.12/asyncio/selector_events.py:9) 6",
            "run (asyncio/base_events.py:1);request (/x/addon/copilot_pool/addon.py:101) 1",
        ]
    )
    result = analyse(raw)
    assert result["busy_samples"] == 10 and result["addon_inclusive_pct"] == 40.0
    assert result["addon_functions_inclusive_pct"] == {
        "copilot_pool/addon.py:request": 40.0,
        "copilot_pool/pool.py:acquire": 30.0,
    }
    assert next(iter(result["top_self_pct"].items())) == ("asyncio/selector_events.py:write", 60.0)
    assert where("echo (/v/site-packages/mitmproxy/addons/dumper.py:10)") == "mitmproxy/addons/dumper.py:echo"
