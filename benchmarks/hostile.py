#!/usr/bin/env python3
"""Hostile inputs, measured through real mitmdump (issue 15). Three parts, each printing JSON:

.venv/bin/python benchmarks/hostile.py storms [--seconds 30]    token exchanges per account per second under
                                                                  each faulty exchange answer / Copilot API
.venv/bin/python benchmarks/hostile.py scale [--accounts 10000]   start-up, serving and reload with many accounts
.venv/bin/python benchmarks/hostile.py files [--start-up 50]      the 500 generated bad accounts files,
                                                                  hot-reloaded into a running proxy under
                                                                  traffic (all) and at start-up (a sample)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from pathlib import Path

from common import QUIET, Upstream, dump, machine, ms, percentile, workdir
from fake_copilot import DROP, FakeCopilot, endpoint_bases
from mitmdump_process import Mitmdump, chat, write_accounts

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hostile_accounts import cases  # noqa: E402

FAULTS = {  # account name -> what its token exchange answers instead of the honest answer (None: the API 401s)
    "api_refuses_all": None,
    "expires_at_past": {"fields": {"expires_at": lambda now: int(now) - 10}},
    "expires_at_1970": {"fields": {"expires_at": 5}},
    "expires_in_1s": {"fields": {"expires_at": lambda now: int(now) + 1}},
    "refresh_in_0": {"fields": {"refresh_in": 0}},
    "refresh_in_-5": {"fields": {"refresh_in": -5}},
    "refresh_in_-100": {"fields": {"refresh_in": -100}},
    "refresh_in_NaN": {"body_json": '{"token":"tid=x","expires_at":9999999999,"refresh_in":NaN}'},
    "refresh_in_missing": {"fields": {"refresh_in": DROP}},
    "refresh_in_1": {"fields": {"refresh_in": 1}},
    "endpoints_hostile": {"fields": {"endpoints": {"api": "https://evil.example", "proxy": 5}}},
    "exchange_429_retry_after_30": {"status": 429, "headers": {"Retry-After": "30"}},
    "exchange_429_no_hint": {"status": 429},
    "exchange_500": {"status": 500},
}


class Traffic:
    """One client sending chats back to back; latencies and statuses with their send times."""

    def __init__(self, proxy: Mitmdump, pause: float = 0.0) -> None:
        self.results: list[tuple[float, float, int]] = []  # (sent, seconds, status)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(proxy, pause), daemon=True)
        self._thread.start()

    def _run(self, proxy: Mitmdump, pause: float) -> None:
        with proxy.client(timeout=60) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    status = chat(client).status_code
                except Exception:  # noqa: BLE001 - a timeout is a result here
                    status = 0
                self.results.append((sent, time.monotonic() - sent, status))
                time.sleep(pause)

    def stop(self) -> list[tuple[float, float, int]]:
        self._stop.set()
        self._thread.join(60)
        return self.results


def latency(results, since: float = -1.0, until: float = float("inf")) -> dict:
    picked = [r for r in results if since <= r[0] < until]
    seconds = [r[1] for r in picked]
    return {
        "requests": len(picked),
        "ok": sum(r[2] == 200 for r in picked),
        "p50_ms": ms(percentile(seconds, 50)) if seconds else None,
        "p99_ms": ms(percentile(seconds, 99)) if seconds else None,
    }


def storms(seconds: float) -> dict:
    fake = FakeCopilot()
    accounts = [{"name": "healthy", "github_token": "gho_healthy_0001"}]
    fake.add_account("healthy", accounts[0]["github_token"])
    for i, (name, fault) in enumerate(FAULTS.items()):
        token = f"gho_storm_{i:04d}"
        fake.add_account(name, token)
        accounts.append({"name": name, "github_token": token})
        if fault is None:
            fake.refuse_all(name)
        elif "body_json" in fault:
            fake.set_exchange_answer(name, body=fault["body_json"].encode())
        else:
            fake.set_exchange_answer(name, **fault)
    fake.start()
    work = workdir()
    proxy = Mitmdump(
        work / "confdir",
        {
            **QUIET,
            "pool_accounts": write_accounts(work / "accounts.json", accounts),
            "pool_github_api": fake.base_url,
            "pool_extra_endpoints": fake.endpoint_bases(),
        },
    )
    try:
        proxy.wait_accounts(["healthy"])
        started = time.time()
        traffic = Traffic(proxy)
        time.sleep(seconds)
        results = traffic.stop()
        window = time.time() - started
    finally:
        proxy.stop()
        fake.stop()
    per_account = {}
    for account in accounts:
        times = fake.exchange_times(account["name"])
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        per_account[account["name"]] = {
            "exchanges": len(times),
            "per_second": round(len(times) / window, 3),
            "shortest_gap_s": round(min(gaps), 2) if gaps else None,
            "gaps_s": [round(g, 1) for g in gaps],
        }
    return {
        "part": "storms",
        "machine": machine(),
        "seconds": round(window, 1),
        "client": latency(results),
        "exchanges": per_account,
    }


def scale(count: int) -> dict:
    upstream = Upstream(count)
    work = workdir()
    accounts = upstream.accounts
    path = write_accounts(work / "accounts.json", accounts[:-1])  # the last one is added by a reload
    spawned = time.monotonic()
    proxy = Mitmdump(work / "confdir", {**QUIET, "pool_accounts": path, **upstream.pool_options()})
    listening = time.monotonic()
    try:
        traffic = Traffic(proxy, pause=0.05)
        first_ok = None
        while True:
            # counted from the log: the status page of 10,000 accounts is itself half a second of work
            active = sum(" active (sku " in line for line in list(proxy.lines))
            if first_ok is None and any(r[2] == 200 for r in traffic.results):
                first_ok = next(r[0] + r[1] for r in traffic.results if r[2] == 200)
            if active == count - 1:
                break
            if time.monotonic() - listening > 600:
                raise RuntimeError(f"only {active} active after 600 s")
            time.sleep(0.5)
        all_active = time.monotonic()
        time.sleep(3)
        steady_from = time.monotonic()
        time.sleep(5)
        start = len(proxy.lines)
        reload_started = time.monotonic()
        write_accounts(path, accounts)  # one more account
        proxy.wait_for(rf"account {accounts[-1]['name']} active", timeout=60, start=start)
        reload_applied = time.monotonic()
        time.sleep(2)
        noop_started = time.monotonic()
        write_accounts(path, list(reversed(accounts)))  # the same set: a no-op, after reading and validating it
        time.sleep(3)
        noop_until = time.monotonic()
        status_started = time.monotonic()
        proxy.status()
        status_took = time.monotonic() - status_started
        results = traffic.stop()
    finally:
        proxy.stop()
        upstream.stop()
    return {
        "part": "scale",
        "machine": machine(),
        "accounts": count,
        "spawn_to_listening_ms": ms(listening - spawned),
        "listening_to_first_chat_ms": ms(first_ok - listening) if first_ok else None,
        "listening_to_all_active_ms": ms(all_active - listening),
        "chats_during_start_up": latency(results, listening, all_active),
        "chats_steady": latency(results, steady_from, reload_started),
        "reload_one_added_applied_ms": ms(reload_applied - reload_started),
        "chats_during_reload": latency(results, reload_started, reload_applied + 1),
        "chats_during_no_op_reload": latency(results, noop_started, noop_until),
        "status_json_ms": ms(status_took),
    }


def install(case, folder: Path, watched: Path) -> None:
    path = case.write(folder)
    if watched.is_dir() and not watched.is_symlink():
        os.rmdir(watched)
    elif path.is_dir():
        watched.unlink()
    os.rename(path, watched)


def files(start_up: int) -> dict:
    from copilot_pool.runtime.accounts_file import AccountsFileError, load_accounts_file

    fake = FakeCopilot()
    fake.add_account("alice", "gho_alice_secret_0001")
    fake.start()
    work = workdir()
    options = {**QUIET, "pool_github_api": fake.base_url, "pool_extra_endpoints": endpoint_bases(fake.base_url)}
    watched = work / "accounts.json"
    write_accounts(watched, [{"name": "alice", "github_token": "gho_alice_secret_0001"}])
    generated = cases()
    env = {k: v for c in generated for k, v in c.environ.items() if "\x00" not in v}
    outcomes = {"ignored with one line": 0, "applied (valid)": 0, "problems": []}
    proxy = Mitmdump(work / "confdir", {**options, "pool_accounts": watched}, env=env)
    reload_times = []
    try:
        proxy.wait_accounts(["alice"])
        traffic = Traffic(proxy, pause=0.02)
        for i, case in enumerate(generated):
            if case.valid is not False or case.environ:
                continue  # a valid file would replace the pool; env cases need their own process (start-up)
            folder = work / f"case{i}"
            folder.mkdir()
            start = len(proxy.lines)
            began = time.monotonic()
            install(case, folder, watched)
            try:
                load_accounts_file(watched)
                outcomes["problems"].append((case.name, "accepted"))
                continue
            except AccountsFileError as e:
                expected = str(e)
            try:
                proxy.wait_for(re.escape(f"change ignored, the pool keeps its accounts: {expected}"), 10, start)
                outcomes["ignored with one line"] += 1
                reload_times.append(time.monotonic() - began)
            except AssertionError:
                outcomes["problems"].append((case.name, "no line"))
        results = traffic.stop()
        output = proxy.output()
    finally:
        proxy.stop()
    leaked = [c.name for c in generated for s in c.forbidden() if s in output]
    start_up_results = {"exited 1 with one line": 0, "problems": []}
    sample = generated[:: max(1, len(generated) // start_up)][:start_up]
    for i, case in enumerate(c for c in sample if c.valid is False):
        folder = work / f"start{i}"
        folder.mkdir()
        path = case.write(folder)
        try:
            load_accounts_file(path, case.environ)
            continue
        except AccountsFileError as e:
            expected = str(e)
        try:
            started = Mitmdump(work / f"confdir{i}", {**options, "pool_accounts": path}, env=case.environ)
            code, text = started.process.wait(20), started.output()
        except AssertionError as e:
            code, text = 1, str(e)
        ok = code == 1 and any(line.endswith(f"] pool: {expected}") for line in text.splitlines())
        if ok and not any(s in text for s in case.forbidden()):
            start_up_results["exited 1 with one line"] += 1
        else:
            start_up_results["problems"].append(case.name)
    fake.stop()
    return {
        "part": "files",
        "machine": machine(),
        "cases": len(generated),
        "hot_reload": {
            **outcomes,
            "tried": outcomes["ignored with one line"] + len(outcomes["problems"]),
            "seconds_to_the_line_p50": round(percentile(reload_times, 50), 2) if reload_times else None,
            "seconds_to_the_line_max": round(max(reload_times), 2) if reload_times else None,
            "traffic": latency(results),
            "cases_whose_secret_leaked": leaked,
        },
        "start_up": {
            **start_up_results,
            "tried": start_up_results["exited 1 with one line"] + len(start_up_results["problems"]),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    sub.add_parser("storms").add_argument("--seconds", type=float, default=30.0)
    sub.add_parser("scale").add_argument("--accounts", type=int, default=10_000)
    sub.add_parser("files").add_argument("--start-up", type=int, default=50)
    a = parser.parse_args()
    if a.part == "storms":
        dump(storms(a.seconds))
    elif a.part == "scale":
        dump(scale(a.accounts))
    else:
        dump(files(a.start_up))


if __name__ == "__main__":
    main()
