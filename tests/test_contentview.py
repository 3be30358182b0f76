"""The Copilot content view on each API's shapes, chosen by mitmproxy's own view selection (no network)."""

from __future__ import annotations

import json

import copilot_shapes as shapes
import pytest
from copilot_pool.mitm import contentview
from mitmproxy import contentviews
from mitmproxy.test import taddons, tflow, tutils


@pytest.fixture(autouse=True)
def context():
    contentview.register()
    with taddons.context():
        yield


def copilot_flow(path: str, request: dict | None, answer: bytes, content_type: str, host="api.githubcopilot.com"):
    flow = tflow.tflow(resp=True)
    flow.request = tutils.treq(scheme=b"https", host=host, port=443, path=path.encode(), method=b"POST")
    flow.request.headers["content-type"] = "application/json"
    flow.request.content = json.dumps(request).encode() if request is not None else b""
    flow.response = tutils.tresp(content=answer)
    flow.response.headers["content-type"] = content_type
    return flow


def shown(flow, message) -> tuple[str | None, str]:
    result = contentviews.prettify_message(message, flow)
    return result.view_name, result.text


def test_chat_request_and_streamed_answer_with_tool_calls():
    flow = copilot_flow("/chat/completions", shapes.CHAT_REQUEST, shapes.CHAT_STREAM, "text/event-stream")
    view, request = shown(flow, flow.request)
    assert view == "Copilot"
    assert request.startswith("claude-sonnet-4 · chat/completions · stream · 2 tools · 4 turns")
    assert "settings: max_tokens 16000" in request and "tools: read_file, run_in_terminal" in request
    assert "── system ──" in request and "more characters folded]" in request  # long instructions folded
    assert len(request) < len(shapes.SYSTEM)
    assert "── user ──\nWhat does main.py print?" in request
    assert '→ read_file({"path":"main.py"})  [call_1]' in request
    assert '── tool [call_1] ──\nprint("hello")' in request
    view, answer = shown(flow, flow.response)
    assert view == "Copilot"
    assert answer.startswith("answer · claude-sonnet-4 · streamed, 7 events · finish: tool_calls")
    assert "It prints hello. Let me run it." in answer
    assert '→ run_in_terminal({"command":"python main.py"})  [call_2]' in answer
    assert "usage: in 1,200 · out 40 · cached 1,024 · 0.031 credits" in answer
    assert "the Raw view" in answer and "⚠" not in answer


def test_responses_request_and_stream():
    flow = copilot_flow("/responses", shapes.RESPONSES_REQUEST, shapes.RESPONSES_STREAM, "text/event-stream")
    request = shown(flow, flow.request)[1]
    assert "settings: reasoning medium" in request and "tools: apply_patch, web_search" in request
    assert "── instructions ──" in request and "folded" in request
    assert "── reasoning ──\nLook first.\n(encrypted reasoning)" in request
    assert '→ apply_patch({"patch":"..."})  [call_9]' in request and "── tool [call_9] ──\nDone." in request
    answer = shown(flow, flow.response)[1]
    assert answer.startswith("answer · gpt-5.4 · streamed, 8 events · finish: completed")
    assert "Fixed the typo." in answer and '→ apply_patch({"patch":"*** Begin Patch"})  [call_10]' in answer
    assert "usage: in 900 · out 60 · reasoning 32 · 0.12 credits" in answer


def test_messages_request_and_stream():
    flow = copilot_flow("/v1/messages", shapes.MESSAGES_REQUEST, shapes.MESSAGES_STREAM, "text/event-stream")
    request = shown(flow, flow.request)[1]
    assert request.startswith("claude-opus-4.5 · v1/messages · 1 tool · 5 turns") and "tools: grep" in request
    assert "── reasoning ──\nSearch for it." in request and '→ grep({"pattern": "def main"})  [toolu_1]' in request
    assert "── tool [toolu_1] ──\napp.py:3" in request
    answer = shown(flow, flow.response)[1]
    assert "finish: tool_use" in answer and "In app.py, line 3." in answer
    assert '→ grep({"pattern": "main("})  [toolu_2]' in answer and "usage: in 300 · out 25" in answer


def test_code_completion_shows_the_end_of_the_prompt_and_the_suffix():
    flow = copilot_flow(
        "/v1/engines/gpt-4o-copilot/completions",
        shapes.COMPLETION_REQUEST,
        shapes.COMPLETION_STREAM,
        "text/event-stream",
    )
    flow.request.host = "proxy.individual.githubcopilot.com"
    request = shown(flow, flow.request)[1]
    assert (
        request.startswith("gpt-4o-copilot · completion\n")
        and "── language ──\npython" in request
        and "earlier characters folded] …" in request
    )
    assert request.split("── suffix ──")[0].rstrip().endswith("def main():")
    assert "if __name__ == '__main__':" in request
    answer = shown(flow, flow.response)[1]
    assert "── completion ──\nprint('hi')" in answer and "finish: stop" in answer


def test_json_answers():
    flow = copilot_flow(
        "/chat/completions",
        {"model": "gpt-4o", "messages": []},
        json.dumps(shapes.CHAT_ANSWER).encode(),
        "application/json",
    )
    answer = shown(flow, flow.response)[1]
    assert answer.startswith("answer · gpt-4o-2024-11-20 · finish: stop") and "Hello!" in answer
    assert "0.025 credits" in answer and "Raw view" not in answer
    flow = copilot_flow("/responses", {"model": "x"}, json.dumps(shapes.RESPONSES_ANSWER).encode(), "application/json")
    assert "finish: incomplete (max_output_tokens)" in shown(flow, flow.response)[1]
    error = {
        "error": {"message": "Sorry, you've exhausted this model's rate limit.", "code": "user_model_rate_limited"}
    }
    flow = copilot_flow("/chat/completions", {"model": "x"}, json.dumps(error).encode(), "application/json")
    assert "error: user_model_rate_limited: Sorry, you've exhausted" in shown(flow, flow.response)[1]


def test_a_cut_stream_says_so():
    flow = copilot_flow("/chat/completions", shapes.CHAT_REQUEST, shapes.CUT_STREAM, "text/event-stream")
    answer = shown(flow, flow.response)[1]
    assert "It prints hello. Let me run it." in answer and "⚠ the stream ends before its final event" in answer
    flow.metadata["copilot_pool.stream_truncated_at"] = 4194304
    assert "only the first 4,194,304 bytes of this stream were kept" in shown(flow, flow.response)[1]


def test_pooled_flows_are_recognised_wherever_they_went():
    flow = copilot_flow(
        "/chat/completions", shapes.CHAT_REQUEST, shapes.CHAT_STREAM, "text/event-stream", host="10.0.0.1"
    )
    assert shown(flow, flow.request)[0] == "JSON"  # a non-Copilot host
    flow.metadata["copilot_pool.account"] = "alice"  # ... unless the pool served it (to the account's endpoint)
    assert shown(flow, flow.request)[0] == "Copilot"


def test_other_bodies_and_paths_fall_back_to_the_default_views():
    flow = copilot_flow("/chat/completions", None, b"<html>502 Bad Gateway</html>", "text/html")
    flow.request.content = b"not json"
    assert shown(flow, flow.request)[0] != "Copilot" and shown(flow, flow.response)[0] != "Copilot"
    flow = copilot_flow("/models", {"a": 1}, b'{"data": []}', "application/json")
    assert shown(flow, flow.request)[0] == "JSON" and shown(flow, flow.response)[0] == "JSON"
    flow = copilot_flow("/chat/completions", {"model": "x"}, b"[1, 2]", "application/json")
    assert shown(flow, flow.response)[0] in ("JSON", "Raw")  # JSON, but no answer object: the view fails, Raw wins


def test_websocket_responses_messages():
    flow = tflow.twebsocketflow()
    flow.request.host, flow.request.path = "api.githubcopilot.com", "/responses"
    ws = flow.websocket
    ws.messages.clear()
    from mitmproxy.websocket import WebSocketMessage

    for from_client, body in ((True, shapes.WS_CREATE), (False, shapes.WS_DELTA), (False, shapes.WS_COMPLETED)):
        ws.messages.append(WebSocketMessage(1, from_client, json.dumps(body).encode()))
    texts = [shown(flow, m) for m in ws.messages]
    assert [view for view, _ in texts] == ["Copilot"] * 3
    assert texts[0][1].startswith("response.create\ngpt-5.4 · responses") and "── user ──\nhi" in texts[0][1]
    assert texts[1][1] == 'response.output_text.delta: "Hel"'
    assert texts[2][1].startswith("response.completed\nanswer · gpt-5.4") and "Hi" in texts[2][1]
    assert "0.005 credits" in texts[2][1]
