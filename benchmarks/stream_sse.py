"""Benchmark-only mitmdump script for the plain-mitmdump baseline of the streaming benchmark: relay
`text/event-stream` answers as they come, exactly as the pool addon does for pooled flows.

(`stream_large_bodies` cannot stand in: it streams the request body too, which moves the upstream connection
before `map_remote` has rewritten the URL, and it only streams once a threshold is buffered.)
"""

from mitmproxy import http


class StreamSSE:
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response and flow.response.headers.get("content-type", "").startswith("text/event-stream"):
            flow.response.stream = True


addons = [StreamSSE()]
