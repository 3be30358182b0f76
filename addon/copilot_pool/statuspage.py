"""The status page, served by the proxy itself at a reserved host name (as mitmproxy serves mitm.it).

`http://copilot-pool/` (HTML), `/status.json`, `/metrics` (Prometheus text format), through the proxy.
The request is answered in the `request` hook, so it never leaves mitmproxy; with `proxyauth` set, mitmproxy
asks for proxy credentials first. Also keeps each account's premium quota from the answers it sees.
"""

from __future__ import annotations

import logging

from mitmproxy import http

from .addon import CopilotPool
from .redact import LOGGER_NAME
from .status import RecentEvents, render_html, render_json, render_metrics, snapshot

STATUS_HOST = "copilot-pool"
PAGES = {
    "/": (render_html, "text/html; charset=utf-8"),
    "/status.json": (render_json, "application/json"),
    "/metrics": (render_metrics, "text/plain; version=0.0.4; charset=utf-8"),
}


class StatusPage:
    def __init__(self, pool: CopilotPool) -> None:
        self.pool = pool
        self.events = RecentEvents()

    def load(self, loader) -> None:
        logging.getLogger(LOGGER_NAME).addHandler(self.events)

    def done(self) -> None:
        logging.getLogger(LOGGER_NAME).removeHandler(self.events)

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or STATUS_HOST not in (flow.request.host, flow.request.pretty_host):
            return  # proxyauth may have answered 407 already
        page = PAGES.get(flow.request.path.split("?", 1)[0])
        if flow.request.method not in ("GET", "HEAD"):
            flow.response = http.Response.make(405, b"GET only\n", {"content-type": "text/plain", "allow": "GET, HEAD"})
        elif page is None:
            flow.response = http.Response.make(404, b"not found: try /, /status.json or /metrics\n", {"content-type": "text/plain"})
        else:
            render, content_type = page
            snap = snapshot(self.pool.service, self.events, self.pool.passthrough)
            flow.response = http.Response.make(200, render(snap), {"content-type": content_type, "cache-control": "no-store"})
        flow.comment = "copilot-pool status page"
