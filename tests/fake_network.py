"""Test addon, loaded after the pool addon: the network the real Copilot clients see is the fake upstream.

The clients talk to GitHub's and Copilot's real host names. Requests the pool serves already go to a pool
account's endpoint (the fake); the ones it leaves alone (api.github.com, `/mcp/readonly`, telemetry, ...) are
sent to the fake here, as the same account type's host would serve them. The fake's answers name its own
loopback addresses as `endpoints`; here they become the real host names again, so the clients keep talking to
GitHub's names through the proxy (and the pool still decides what is pooled). Nothing ever leaves the machine:
any other host is answered 599 here.

Every answer is appended to `fake_network_log` (JSON lines: host, method, path, the account the pool picked, the
status, a few headers that matter to the protocol, never a value that could be a secret), and one more line when
a WebSocket closes.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from mitmproxy import ctx, http

GITHUB_HOSTS = {"api.github.com"}
LOOPBACK = {"127.0.0.1", "localhost"}
COPILOT_DOMAIN = ".githubcopilot.com"
PUBLIC = {  # endpoints key -> the real host of each account type (the fake serves individual on 127.0.0.1)
    "api": "https://api.{kind}.githubcopilot.com",
    "proxy": "https://proxy.{kind}.githubcopilot.com",
    "telemetry": "https://telemetry.{kind}.githubcopilot.com",
    "origin-tracker": "https://origin-tracker.{kind}.githubcopilot.com",
}
NOTED = ("copilot-integration-id", "x-initiator", "openai-intent", "upgrade")  # values kept: plain words
PRESENT = ("copilot-session-token", "authorization")  # only whether they were sent: they are credentials


class FakeNetwork:
    def load(self, loader):
        loader.add_option("fake_upstream", str, "", "base URL of the fake GitHub + Copilot upstream")
        loader.add_option("fake_network_log", str, "", "JSON lines file: every request the clients made")

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        flow.metadata["fake_network.host"] = flow.request.pretty_host  # before the pool points it elsewhere

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return  # answered inside mitmproxy: the status page, the pool's own answers
        req = flow.request
        host = req.pretty_host.lower()
        pooled = "copilot_pool.account" in flow.metadata  # already pointed at its account's endpoint: the fake
        if not pooled and (host in GITHUB_HOSTS or host.endswith(COPILOT_DOMAIN)):
            fake = urlsplit(ctx.options.fake_upstream)
            business = ".business." in host or ".enterprise." in host
            req.scheme, req.port = "http", fake.port
            req.host = "localhost" if business else "127.0.0.1"  # the fake tells account types apart by host
            flow.metadata["fake_network.redirected"] = True
        if req.host not in LOOPBACK:
            flow.response = http.Response.make(599, b"not on the test network", {"content-type": "text/plain"})

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get("fake_network.redirected"):
            _publish_endpoints(flow.response)
        self._note(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._note(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        messages = flow.websocket.messages if flow.websocket else []
        self._note(flow, websocket_messages=len(messages))

    def _note(self, flow: http.HTTPFlow, **extra) -> None:
        if not ctx.options.fake_network_log:
            return
        req = flow.request
        record = {
            "host": flow.metadata.get("fake_network.host", req.pretty_host),
            "method": req.method,
            "path": req.path.split("?", 1)[0],
            "pooled": flow.metadata.get("copilot_pool.account"),
            "status": flow.response.status_code if flow.response else None,
            "error": flow.error.msg if flow.error else None,
            "headers": {
                **{name: req.headers[name] for name in NOTED if name in req.headers},
                **{name: "<present>" for name in PRESENT if name in req.headers},
            },
            **extra,
        }
        with open(ctx.options.fake_network_log, "a") as f:
            f.write(json.dumps(record) + "\n")


def _publish_endpoints(response: http.Response | None) -> None:
    """The fake's `endpoints` (its loopback addresses) named as the real service names them."""
    if response is None or "json" not in response.headers.get("content-type", ""):
        return
    try:
        data = json.loads(response.get_content(strict=False) or b"")
    except ValueError:
        return
    endpoints = data.get("endpoints") if isinstance(data, dict) else None
    if not isinstance(endpoints, dict):
        return
    for key, url in list(endpoints.items()):
        if key in PUBLIC and isinstance(url, str):
            kind = "business" if urlsplit(url).hostname == "localhost" else "individual"
            endpoints[key] = PUBLIC[key].format(kind=kind)
    response.set_content(json.dumps(data).encode())


addons = [FakeNetwork()]
