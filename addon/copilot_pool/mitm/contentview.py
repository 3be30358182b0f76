"""The `Copilot` content view: Copilot API flows in mitmweb, the console and `mitmdump --set flow_detail=4` read
as a conversation (observe/transcript.py), chosen automatically for them; the Raw and JSON views stay one click away.

A flow is a Copilot API flow when the pool served it (its metadata names the account) or it goes to a Copilot
host; the path says which API. Bodies that are neither JSON nor an event stream leave the choice to other views.
"""

from __future__ import annotations

from mitmproxy import contentviews, http
from mitmproxy.contentviews import Metadata

from ..core.routing import COPILOT_API_HOSTS, COPILOT_PROXY_HOSTS
from ..observe import transcript
from ..observe.sse import looks_like_sse

PRIORITY = 2  # above the JSON view (1)


class CopilotContentview(contentviews.Contentview):
    name = "Copilot"

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        if _api(metadata) is None or not data:
            return -1
        head = data.lstrip()[:1]
        if head == b"{" or (metadata.websocket_message is None and looks_like_sse(data)):
            return PRIORITY
        return -1

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        api = _api(metadata)
        if api is None:
            raise ValueError("not a Copilot API flow")
        if metadata.websocket_message is not None:
            return transcript.websocket_text(metadata.websocket_message.from_client, data)
        if isinstance(metadata.http_message, http.Request):
            return transcript.request_text(api, data, metadata.http_message.path)
        flow = metadata.flow
        cut = flow.metadata.get("copilot_pool.stream_truncated_at") if flow is not None else None
        return transcript.answer_text(api, data, cut)


def _api(metadata: Metadata) -> str | None:
    flow = metadata.flow
    if not isinstance(flow, http.HTTPFlow):
        return None
    if "copilot_pool.account" not in flow.metadata and flow.request.pretty_host not in COPILOT_HOSTS:
        return None
    return transcript.api_of(flow.request.path)


COPILOT_HOSTS = COPILOT_API_HOSTS | COPILOT_PROXY_HOSTS
view = CopilotContentview()


def register() -> None:
    contentviews.add(view)  # replaces the one a previous load of the script registered (same name)
