#!/usr/bin/env python3
"""Run every benchmark, one after another, and print a Markdown summary (the README's Benchmarks section).

    .venv/bin/python benchmarks/run_all.py            # a few minutes on 2 cores
    .venv/bin/python benchmarks/run_all.py --quick    # fewer rounds, for a smoke check

Full results go to benchmarks/results/latest.json and the summary to benchmarks/results/latest.md.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import concurrency
import hooks
import instructions
import overhead
import profiling
import scaling
import startup
import streaming
from common import machine

RESULTS = Path(__file__).resolve().parent / "results"


def benchmarks(quick: bool, baselines: tuple[Path, ...] = ()) -> dict:
    q = quick
    return {
        "overhead": lambda: overhead.run(
            rounds=2 if q else 6, seconds=1.5, baselines=baselines, states=overhead.STATES
        ),
        "instructions": lambda: {"skipped": "--quick"} if q else instructions.run(baselines=baselines),
        "streaming": lambda: streaming.run(rounds=2 if q else 4, streams=20 if q else 40),
        "concurrency": lambda: concurrency.run(count=3 if q else 6),
        "concurrency_plain": lambda: concurrency.run(count=3 if q else 6, plain=True),
        "scaling": lambda: scaling.run(ops=4000 if q else 20000),
        "hooks": lambda: hooks.run(requests=500 if q else 2000),
        "startup": lambda: startup.run(runs=1 if q else 3),
        "profile": lambda: profiling.run(seconds=5 if q else 10),
    }


def summary(r: dict, started: dict, seconds: float) -> str:
    out = [
        f"Machine: {started['nproc']} cores (`nproc`), load average {started['loadavg_1m']} at the start; "
        f"Python {started['python']}; all benchmarks took {seconds:.0f} s.",
        "",
    ]
    o = r["overhead"]
    s = o["settings"]
    out += [
        "#### Overhead",
        "",
        f"Upstream delay {s['upstream_delay_ms']:.0f} ms, {s['rounds']} interleaved rounds of "
        f"{s['seconds_per_round']} s per mode; churn: {s['churn_429']:.0%} of upstream answers are 429 with "
        f"`retry-after-ms: {s['churn_retry_after_ms']}`.",
        "",
        "| concurrency | mode | req/s | p50 ms | p99 ms | answers |",
        "|---|---|---|---|---|---|",
    ]
    for level, block in o["by_concurrency"].items():
        for mode, m in block["modes"].items():
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(m["statuses"].items()))
            out.append(f"| {level} | {mode} | {m['req_per_s']} | {m['p50_ms']} | {m['p99_ms']} | {answers} |")
    out += ["", "| concurrency | comparison | throughput ratio | per round | p50 difference ms | per round |"]
    out.append("|---|---|---|---|---|---|")
    for level, block in o["by_concurrency"].items():
        for c in block["comparisons"]:
            out.append(
                f"| {level} | {c['what']}: {c['mode']} / {c['other']} | **{c['throughput_ratio_median']}** | "
                f"{c['throughput_ratio_by_round']} | **{c['p50_delta_ms_median']}** | {c['p50_delta_ms_by_round']} |"
            )
    ins = r["instructions"]
    out += ["", "#### Instructions per request", ""]
    if "skipped" in ins:
        out.append(f"Skipped ({ins['skipped']})")
    else:
        out += [
            f"callgrind, inside mitmdump: median of {ins['settings']['rounds']} rotated rounds of "
            f"{ins['settings']['requests_per_round']} requests one after another (idle timers taken out), a count "
            "that other load on the machine hardly moves.",
            "",
            "| mode | instructions per request | per round |",
            "|---|---|---|",
            *(
                f"| {mode} | {n:,} | {', '.join(f'{x:,}' for x in ins['by_round'][mode])} |"
                for mode, n in ins["instructions_per_request"].items()
            ),
            "",
            "Ratios: " + ", ".join(f"{k} **{v}**" for k, v in ins["ratios"].items()) + ".",
        ]
    st = r["streaming"]
    out += [
        "",
        "#### Streaming",
        "",
        f"First SSE event, from the upstream's `sent_at` to the client "
        f"({st['settings']['rounds']} rounds x {st['settings']['streams_per_round']} streams per path, "
        f"{st['failed_streams']} failed; churn: {st['settings']['churn_429']:.0%} of upstream answers are 429s, "
        "failed over to another account).",
        "",
        "| path | p50 ms | p90 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for path, v in st["first_chunk_ms"].items():
        out.append(f"| {path} | {v['p50']} | {v['p90']} | {v['p99']} |")
    out += [
        "",
        f"pool minus plain mitmdump, median of per-round p50s: **{st['pool_minus_mitmdump_p50_ms_median']} ms**",
    ]
    c, cp = r["concurrency"], r["concurrency_plain"]
    cs = c["settings"]

    def rss(x: dict) -> str:
        return (
            f"idle {x['rss_idle_kib'] // 1024} MiB, "
            f"after each wave {[k // 1024 for k in x['rss_after_each_wave_kib']]} "
            f"MiB, growth over the last half {x['rss_growth_last_half_kib'] / 1024:.1f} MiB"
        )

    out += [
        "",
        "#### Concurrency",
        "",
        f"{cs['waves']} waves of {cs['streams']} concurrent SSE streams "
        f"({cs['events_per_stream']} events, {cs['event_interval_ms']:.0f} ms apart) through the pool: "
        f"**{c['failed_streams']} failed**; in flight (from the status page) peaked at {c['peak_in_flight']} and was "
        f"{c['in_flight_after_each_wave']} after each wave. mitmdump's VmRSS with the pool: {rss(c)}; "
        f"plain mitmdump, same waves ({cp['failed_streams']} failed): {rss(cp)}.",
    ]
    sc = r["scaling"]
    sizes = sc["settings"]["sizes"]
    out += [
        "",
        "#### Pool scaling",
        "",
        f"Pure core, per request (acquire, quota seen, release), {sc['settings']['in_flight']} in flight; "
        "p50 / p99 in µs.",
        "",
        "| strategy | " + " | ".join(f"{n} accounts" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for strategy, by_size in sc["per_request"].items():
        cells = [f"{by_size[str(n)]['p50_us']} / {by_size[str(n)]['p99_us']}" for n in sizes]
        out.append(f"| {strategy} | " + " | ".join(cells) + " |")
    out += [
        "",
        f"Memory: {sc['memory_bytes_per_account']} bytes per account (config, state and token). "
        f"Target p99 <= {sc['target_p99_us_at_largest']} µs at {sizes[-1]}: "
        f"worst is {sc['worst_p99_us_at_largest']} µs.",
    ]
    h = r["hooks"]
    out += [
        "",
        "#### The addon's hooks",
        "",
        f"In process, request + responseheaders + response on Copilot CLI-shaped flows: **{h['us_per_request_best']} "
        f"µs** per pooled request, best of {h['settings']['batches']} batches of {h['settings']['requests_per_batch']} "
        f"(each batch: {h['us_per_request_by_batch']} µs).",
    ]
    su = r["startup"]
    out += [
        "",
        "#### Start-up",
        "",
        f"{su['settings']['accounts']} accounts, token exchange {su['settings']['exchange_delay_ms']:.0f} ms "
        f"each: all active {[x['all_active_after_listening_ms'] for x in su['runs']]} ms after mitmdump listens "
        f"(target {su['target_ms']} ms).",
    ]
    p = r["profile"]
    if "skipped" in p:
        out += ["", "#### Profile", "", f"Skipped ({p['skipped']})"]
    else:
        out += [
            "",
            "#### Profile",
            "",
            f"py-spy, {p['settings']['seconds']:.0f} s at concurrency {p['settings']['concurrency']}, "
            f"{p['settings']['churn_429']:.0%} churn, {p['busy_samples']} busy samples: the addon's code is "
            f"**{p['addon_inclusive_pct']}%** of mitmdump's busy time.",
            "",
            "| addon function (inclusive) | % | hottest functions (self) | % |",
            "|---|---|---|---|",
        ]
        addon = list(p["addon_functions_inclusive_pct"].items())[:6]
        top = list(p["top_self_pct"].items())[:6]
        for i in range(max(len(addon), len(top))):
            a = addon[i] if i < len(addon) else ("", "")
            t = top[i] if i < len(top) else ("", "")
            out.append(f"| {a[0]} | {a[1]} | {t[0]} | {t[1]} |")
    return "\n".join(out) + "\n"


def summarise_file(path: Path = RESULTS / "latest.json") -> str:
    """The summary of saved results (after editing the summary's format, without re-running)."""
    saved = json.loads(path.read_text())
    return summary(saved, saved["machine_at_start"], saved["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a smoke check, not figures to publish")
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        help="another revision's addon/pool.py, measured beside this one (repeatable): git worktree add /tmp/old REV",
    )
    a = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every benchmark stops its processes
    started, begin = machine(), time.monotonic()
    RESULTS.mkdir(exist_ok=True)
    results = {}
    for name, bench in benchmarks(a.quick, tuple(a.baseline)).items():
        t = time.monotonic()
        print(f"{name} ...", flush=True)
        results[name] = bench()
        print(f"{name} done in {time.monotonic() - t:.0f} s", flush=True)
        (RESULTS / "partial.json").write_text(json.dumps(results, indent=2))  # kept should a later one fail
    seconds = time.monotonic() - begin
    (RESULTS / "latest.json").write_text(
        json.dumps(
            {"machine_at_start": started, "machine_at_end": machine(), "seconds": round(seconds), **results}, indent=2
        )
    )
    text = summary(json.loads(json.dumps(results)), started, seconds)
    (RESULTS / "latest.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
