"""`copilot-pool` (and scripts/run): mitmdump with the pool addon, on uvloop's event loop.

mitmproxy runs everything, every flow of every client, in one asyncio event loop; uvloop's (libuv, in C) does the
loop's own work for less CPU than asyncio's. mitmproxy has no switch for it, but starts its loop with
`asyncio.run`, which takes the loop from the event loop policy: installing uvloop's policy first is enough.
Without uvloop (not installed, or `COPILOT_POOL_LOOP=asyncio`) it runs on asyncio's loop, exactly as
`mitmdump -s addon/pool.py` does.

Two of mitmdump's defaults cost CPU on every request for something the pool does not need, so they are off unless
the caller sets them: the line per flow (`flow_detail=0`; the pool's own log lines still print, `--set
flow_detail=1` brings the flows back, mitmweb shows every flow anyway) and the onboarding app at http://mitm.it
(`onboarding=false`: it parses every request's Host header to see whether it is for mitm.it; the CA to trust is
~/.mitmproxy/mitmproxy-ca-cert.pem).

    copilot-pool --set pool_accounts=accounts.json --set listen_host=127.0.0.1   # what scripts/run starts
    python -m copilot_pool.mitm.launch ARGS...   # plain mitmdump, on the same loop (benchmarks)
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from mitmproxy.tools import main as mitmproxy_main

ADDON = Path(__file__).resolve().parents[2] / "pool.py"  # addon/pool.py: the one script, as `mitmdump -s` loads it
LOOP_VARIABLE = "COPILOT_POOL_LOOP"  # "asyncio": keep asyncio's loop (to compare, or to rule uvloop out)
DEFAULTS = {"flow_detail": "0", "onboarding": "false"}  # unless the caller sets them (mitmproxy refuses two values)


def install_event_loop(choice: str | None = None) -> str:
    """Make uvloop the loop `asyncio.run` will create, unless told otherwise or missing; returns the loop used."""
    choice = choice or os.environ.get(LOOP_VARIABLE, "uvloop")
    if choice == "uvloop":
        try:
            import uvloop
        except ImportError:
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    asyncio.set_event_loop_policy(None)
    return "asyncio"


def mitmdump(args: list[str]) -> None:
    """mitmproxy's own mitmdump with `args`, on the loop chosen."""
    install_event_loop()
    mitmproxy_main.mitmdump(args)


def main() -> None:
    """The `copilot-pool` console script: mitmdump with the pool addon and the defaults above."""
    if not ADDON.is_file():
        sys.exit(f"copilot-pool: {ADDON} is missing; install the project from its checkout (pip install -e .)")
    args = sys.argv[1:]
    given = {a.removeprefix("--set=").partition("=")[0] for a in args if "=" in a}  # `--set k=v`, `--set=k=v`
    defaults = [f"--set={k}={v}" for k, v in DEFAULTS.items() if k not in given]
    mitmdump(["-s", str(ADDON), *defaults, *args])


if __name__ == "__main__":
    mitmdump(sys.argv[1:])
