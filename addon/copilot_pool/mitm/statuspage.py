"""The status page, served by the proxy itself at a reserved host name (as mitmproxy serves mitm.it).

`http://copilot-pool/` (HTML), `/status.json`, `/metrics` (Prometheus text format), through the proxy.
The request is answered in the `request` hook, so it never leaves mitmproxy; with `proxyauth` set, mitmproxy
asks for proxy credentials first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mitmproxy import http

from .. import LOGGER_NAME
from ..core.pool import Pool
from ..core.usage import Ledger
from ..observe.status import RecentEvents, render_html, render_json, render_metrics, snapshot

STATUS_HOST = "copilot-pool"
PAGES = {
    "/": (render_html, "text/html; charset=utf-8"),
    "/status.json": (render_json, "application/json"),
    "/metrics": (render_metrics, "text/plain; version=0.0.4; charset=utf-8"),
}


class StatusPage:
    def __init__(
        self, pool: Pool, ledger: Ledger, passthrough: Callable[[], bool], state: Callable[[], dict] | None = None
    ) -> None:
        self.pool = pool
        self.ledger = ledger
        self.passthrough = passthrough
        self.state = state
        self.events = RecentEvents()

    def attach(self) -> None:
        logging.getLogger(LOGGER_NAME).addHandler(self.events)

    def detach(self) -> None:
        logging.getLogger(LOGGER_NAME).removeHandler(self.events)

    def answer(self, flow: http.HTTPFlow, host_header: str | None = None) -> bool:
        """Answer the flow when it asks for the status host; False for every other flow. `host_header`: the
        request's, when the caller read it already."""
        req = flow.request
        if req.host != STATUS_HOST and STATUS_HOST not in (host_header or req.host_header or ""):
            return False  # the common case, decided without parsing the Host header (pretty_host)
        if STATUS_HOST not in (req.host, req.pretty_host):
            return False
        page = PAGES.get(flow.request.path.split("?", 1)[0])
        if flow.request.method not in ("GET", "HEAD"):
            flow.response = http.Response.make(405, b"GET only\n", {"content-type": "text/plain", "allow": "GET, HEAD"})
        elif page is None:
            flow.response = http.Response.make(
                404, b"not found: try /, /status.json or /metrics\n", {"content-type": "text/plain"}
            )
        else:
            render, content_type = page
            snap = snapshot(
                self.pool, self.events, self.passthrough(), self.ledger, self.state() if self.state else None
            )
            flow.response = http.Response.make(
                200, render(snap), {"content-type": content_type, "cache-control": "no-store"}
            )
        flow.comment = "copilot-pool status page"
        return True
