"""Test addon, loaded after the pool addon: records every request exactly as it would leave mitmproxy.

Requests bound for loopback (the fake upstream) go on; any other is answered here with 599, so tests need
no network and can still see what a foreign host would have received.
"""

import json

from mitmproxy import ctx, http


class CaptureUpstream:
    def load(self, loader):
        loader.add_option("capture_file", str, "", "JSON lines file that receives every outgoing request")

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return  # answered inside mitmproxy (status page, pool error, proxyauth): nothing leaves
        r = flow.request
        record = {
            "scheme": r.scheme,
            "host": r.host,
            "port": r.port,
            "host_header": r.host_header,
            "method": r.method,
            "path": r.path,
            "authorization": r.headers.get("authorization"),
            "marker": r.headers.get("x-test-marker"),
        }
        with open(ctx.options.capture_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        if r.host not in ("127.0.0.1", "localhost"):
            flow.response = http.Response.make(599, b"captured, never sent", {"content-type": "text/plain"})


addons = [CaptureUpstream()]
