"""What the benchmarks share: the fake upstream as its own process, mitmdump set-ups, a fixed-concurrency load
generator, percentiles, the pool's in-flight count and process memory.

The fake runs as a separate process (its CLI) so that neither it nor the load generator steals the other's GIL;
mitmdump runs as a subprocess exactly as users run it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # the helpers the tests use too; not a package

from fake_copilot import endpoint_bases  # noqa: E402
from mitmdump_process import (  # noqa: E402
    COPILOT_POOL,
    MITMDUMP,
    MITMDUMP_UVLOOP,
    PROXY_ENV_VARS,
    Mitmdump,
    stop_process,
    write_accounts,
)
from redis_process import RedisServer  # noqa: E402, F401 - the benchmarks' Redis, as the tests'

STREAM_SSE = ROOT / "benchmarks" / "stream_sse.py"
COPILOT_HOST = "api.individual.githubcopilot.com"
CLIENT_CREDENTIAL = "gho_benchmark_client_own_token"  # a GitHub-kind credential, as the Copilot CLI sends
CHAT_BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
# mitmdump prints every flow by default; into a pipe read by the loaded benchmark process that blocks mitmdump's
# writes now and then, noise that is the same with and without the addon. Logs (the pool's own lines) still print.
QUIET = {"flow_detail": 0}


class Upstream:
    """scripts/fake_copilot.py as its own process, with `accounts` individual accounts (bench0, bench1, ...)."""

    def __init__(
        self,
        accounts: int = 3,
        *,
        delay_ms: float = 0.0,
        exchange_delay_ms: float = 0.0,
        churn_429: float = 0.0,
        churn_retry_ms: int = 20,
        stream_chunks: int = 5,
        stream_interval_ms: float = 20.0,
        args: tuple[str, ...] = (),
    ) -> None:
        self.accounts = [
            {"name": f"bench{i}", "github_token": f"gho_bench_{i:04d}_{os.getpid()}"} for i in range(accounts)
        ]
        cmd = [
            sys.executable,
            str(ROOT / "scripts" / "fake_copilot.py"),
            "--port",
            "0",
            "--delay-ms",
            str(delay_ms),
            "--exchange-delay-ms",
            str(exchange_delay_ms),
            "--churn-429",
            str(churn_429),
            "--churn-retry-ms",
            str(churn_retry_ms),
            "--stream-chunks",
            str(stream_chunks),
            "--stream-interval-ms",
            str(stream_interval_ms),
        ]
        for a in self.accounts:
            cmd += ["--account", f"{a['name']}={a['github_token']}"]
        cmd += list(args)
        env = {k: v for k, v in os.environ.items() if k not in PROXY_ENV_VARS}
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("fake copilot listening at "):
            self.stop()
            raise RuntimeError(f"fake upstream did not start: {line!r}")
        self.base_url = line.split()[-1]

    def log(self) -> list[dict]:
        """Every request the fake answered (its /_fake/log)."""
        with httpx.Client(trust_env=False, timeout=30) as client:
            return client.get(f"{self.base_url}/_fake/log").json()

    def pool_options(self) -> dict:
        """The pool's options for this fake: its GitHub API and its plain-http endpoints, trusted."""
        return {"pool_github_api": self.base_url, "pool_extra_endpoints": endpoint_bases(self.base_url)}

    def stop(self) -> None:
        stop_process(self.process)


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="copilot-pool-bench-"))


# How a pool proxy starts (keyword arguments of Mitmdump): as users run it, and without one lever or another.
SHIPPED = {"command": (str(COPILOT_POOL),), "addon": False}  # scripts/run: the launcher, on uvloop
ON_ASYNCIO = {**SHIPPED, "env": {"COPILOT_POOL_LOOP": "asyncio"}}  # the launcher, told to keep asyncio's loop
AS_SCRIPT = {"command": (str(MITMDUMP),)}  # `mitmdump -s addon/pool.py`: asyncio, mitmdump's own defaults


def revision_name(script: Path) -> str:
    """'pool at 2791e01': the short commit of the checkout holding `script`, else its path."""
    found = subprocess.run(
        ["git", "-C", str(script.parent), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return f"pool at {found.stdout.strip() if found.returncode == 0 else script}"


def revision(script: Path) -> dict:
    """Another revision's addon (PATH/addon/pool.py), started as `mitmdump -s PATH/addon/pool.py` (as AS_SCRIPT):
    its own copilot_pool package comes first on sys.path while mitmproxy loads the script."""
    return {"command": (str(MITMDUMP),), "addon": False, "args": ["-s", str(script)]}


def pool_proxy(
    upstream: Upstream, work: Path, *, options: dict | None = None, timeout: float = 30.0, start: dict = SHIPPED
) -> Mitmdump:
    """mitmdump with the pool addon over all of `upstream`'s accounts, once every account is active; `start`:
    how it is started (SHIPPED, ON_ASYNCIO, AS_SCRIPT, revision(...)). Its state (pool_state) is a SQLite file of
    its own in `work`, the default backend, unless `options` say otherwise (an older revision ignores the option:
    mitmproxy defers options no addon declared)."""
    accounts = write_accounts(work / f"accounts-{time.monotonic_ns()}.json", upstream.accounts)
    state = f"sqlite:{work}/state-{time.monotonic_ns()}.sqlite3"
    proxy = Mitmdump(
        work / f"confdir-{time.monotonic_ns()}",
        {**QUIET, "pool_accounts": accounts, **upstream.pool_options(), "pool_state": state, **(options or {})},
        **start,
    )
    try:
        proxy.wait_accounts(timeout=timeout)
    except AssertionError:
        proxy.stop()
        raise
    return proxy


def plain_proxy(upstream: Upstream, work: Path, *, stream_sse: bool = False, uvloop: bool = False) -> Mitmdump:
    """mitmdump without the addon; the built-in map_remote sends the Copilot host to the fake (plain HTTP, as
    the pool does), so both proxies do the same network work. `stream_sse`: relay event streams as they come;
    `uvloop`: on the launcher's loop."""
    options = {**QUIET, "map_remote": f"|https://{COPILOT_HOST.replace('.', chr(92) + '.')}|{upstream.base_url}"}
    args = ["-s", str(STREAM_SSE)] if stream_sse else []
    command = MITMDUMP_UVLOOP if uvloop else (str(MITMDUMP),)
    return Mitmdump(work / f"confdir-{time.monotonic_ns()}", options, addon=False, args=args, command=command)


@dataclass
class Target:
    """Where a load generator sends its requests: directly to the fake, or through a proxy."""

    name: str
    url: str
    credential: str
    proxy: Mitmdump | None = None

    def client(self, **kw) -> httpx.AsyncClient:
        if self.proxy is None:
            return httpx.AsyncClient(trust_env=False, timeout=30, **kw)
        return httpx.AsyncClient(
            proxy=f"http://127.0.0.1:{self.proxy.port}",
            trust_env=False,
            timeout=30,
            verify=ssl.create_default_context(cafile=self.proxy.ca),
            **kw,
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.credential}", "copilot-integration-id": "vscode-chat"}


def direct_target(upstream: Upstream) -> Target:
    return Target("direct", f"{upstream.base_url}/chat/completions", upstream.accounts[0]["github_token"])


def plain_target(upstream: Upstream, proxy: Mitmdump, name: str = "mitmdump") -> Target:
    return Target(name, f"https://{COPILOT_HOST}/chat/completions", upstream.accounts[0]["github_token"], proxy)


def pool_target(proxy: Mitmdump, name: str = "pool") -> Target:
    return Target(name, f"https://{COPILOT_HOST}/chat/completions", CLIENT_CREDENTIAL, proxy)


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)  # seconds, one per completed request
    statuses: dict[str, int] = field(default_factory=dict)  # "200", "429 upstream", "429 pool", "error ..."
    served_by: dict[str, int] = field(default_factory=dict)  # upstream account -> answers (x-fake-account)
    seconds: float = 0.0

    def count(self, key: str) -> None:
        self.statuses[key] = self.statuses.get(key, 0) + 1


def _status_key(response: httpx.Response) -> str:
    if response.status_code == 429:
        return "429 upstream" if "x-fake-account" in response.headers else "429 pool"
    return str(response.status_code)


async def run_load(target: Target, concurrency: int, seconds: float, warmup: int = 3) -> Sample:
    """`concurrency` workers, each with its own keep-alive connection, send requests back to back for
    `seconds`; the connections are opened and warmed (TLS, mitmproxy's certificate) before the clock starts."""
    sample = Sample()
    clients = [target.client(limits=httpx.Limits(max_connections=1)) for _ in range(concurrency)]
    try:

        async def warm(client: httpx.AsyncClient) -> None:
            for _ in range(warmup):
                await client.post(target.url, headers=target.headers, json=CHAT_BODY)

        try:
            await asyncio.gather(*(warm(c) for c in clients))
        except httpx.HTTPError as e:
            raise RuntimeError(f"{target.name}: a warm-up request failed ({type(e).__name__}: {e})") from e

        async def worker(client: httpx.AsyncClient, deadline: float) -> None:
            while (start := time.perf_counter()) < deadline:
                try:
                    response = await client.post(target.url, headers=target.headers, json=CHAT_BODY)
                except httpx.HTTPError as e:
                    sample.count(f"error {type(e).__name__}")
                    continue
                sample.latencies.append(time.perf_counter() - start)
                sample.count(_status_key(response))
                account = response.headers.get("x-fake-account", "-")
                sample.served_by[account] = sample.served_by.get(account, 0) + 1

        begin = time.perf_counter()
        await asyncio.gather(*(worker(c, begin + seconds) for c in clients))
        sample.seconds = time.perf_counter() - begin
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return sample


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def median(values: list[float]) -> float:
    return percentile(values, 50)


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc/PID/status (VmRSS, KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def in_flight(proxy: Mitmdump) -> int:
    """Requests in flight over all accounts, as the pool inside mitmdump counts them (its status page)."""
    return sum(account["in_flight"] for account in proxy.status()["accounts"])


def machine() -> dict:
    load = os.getloadavg()
    return {"nproc": len(os.sched_getaffinity(0)), "loadavg_1m": round(load[0], 2), "python": sys.version.split()[0]}


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def dump(result: dict) -> None:
    print(json.dumps(result, indent=2))
