"""Benchmark-only mitmdump script, loaded beside the pool addon (`-s addon/pool.py -s benchmarks/probe.py`).

In-flight counts live inside the mitmdump process and `pool.status` can only be called from within it, so this
script answers `GET http://copilot-pool.probe/in-flight` (sent through the proxy) with the totals that
`pool.status` reports. It reads the addon only through that public command, never its internals.
"""

from __future__ import annotations

import json
import logging
import re

from mitmproxy import ctx, http

PROBE_HOST = "copilot-pool.probe"
log = logging.getLogger("copilot_pool.probe")
FIELD = re.compile(r"\b(state|in_flight)=(\S+)")


class Probe:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.request.pretty_host != PROBE_HOST:
            return
        lines = ctx.master.commands.call("pool.status")
        in_flight, states = 0, {}
        for line in lines:
            fields = dict(FIELD.findall(line))
            in_flight += int(fields.get("in_flight", 0))
            if "state" in fields:
                states[fields["state"]] = states.get(fields["state"], 0) + 1
        body = {"in_flight": in_flight, "accounts": sum(states.values()), "states": states}
        log.info(f"probe: {json.dumps(body)}")
        flow.response = http.Response.make(200, json.dumps(body), {"content-type": "application/json"})


addons = [Probe()]
