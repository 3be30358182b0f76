"""A Copilot API answer, whole (JSON) or reassembled from its event stream: text, reasoning, tool calls, why it
stopped, usage and credits. One function per API shape; unknown fields are ignored, never fatal."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .conversation import ToolCall
from .sse import Event

NANO_AIU = 1e9  # per AI credit


@dataclass
class Answer:
    api: str
    model: str = ""
    text: str = ""
    reasoning: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    finish: str = ""
    usage: dict = field(default_factory=dict)
    credits: float | None = None
    error: str = ""
    events: int = 0  # 0: a JSON answer
    complete: bool = True  # a stream that reached its final event


def from_json(api: str, body: dict) -> Answer:
    answer = Answer(api, str(body.get("model") or ""), usage=_dict(body.get("usage")), credits=_credits(body))
    answer.error = _error(body)
    if api in ("chat", "completions"):
        choice = next(iter(_list(body.get("choices"))), {})
        message = _dict(choice.get("message"))
        answer.text = _str(message.get("content")) or _str(choice.get("text"))
        answer.reasoning = _str(message.get("reasoning_text") or message.get("reasoning_content"))
        for call in _list(message.get("tool_calls")):
            function = _dict(call.get("function"))
            answer.calls.append(
                ToolCall(_str(function.get("name")), _str(function.get("arguments")), call.get("id", ""))
            )
        answer.finish = _str(choice.get("finish_reason"))
    elif api == "responses":
        _responses_output(answer, body)
    elif api == "messages":
        for block in _list(body.get("content")):
            kind = block.get("type")
            if kind == "text":
                answer.text += _str(block.get("text"))
            elif kind == "thinking":
                answer.reasoning += _str(block.get("thinking"))
            elif kind == "tool_use":
                answer.calls.append(
                    ToolCall(_str(block.get("name")), _json_text(block.get("input")), block.get("id", ""))
                )
        answer.finish = _str(body.get("stop_reason"))
    return answer


def from_events(api: str, events: list[Event], ended: bool) -> Answer:
    """Reassemble a stream; `ended`: the stored text ends where an event ends."""
    answer = Answer(api, events=len(events), complete=False)
    {"chat": _chat_events, "completions": _chat_events, "responses": _responses_events, "messages": _messages_events}[
        api
    ](answer, events)
    answer.complete = answer.complete and ended
    return answer


def _chat_events(answer: Answer, events: list[Event]) -> None:
    calls: dict[int, ToolCall] = {}
    for event in events:
        if event.data.strip() == "[DONE]":
            answer.complete = True
            continue
        data = event.json()
        if data is None:
            continue
        answer.model = _str(data.get("model")) or answer.model
        answer.error = _error(data) or answer.error
        answer.usage = _dict(data.get("usage")) or answer.usage
        answer.credits = _credits(data) if _credits(data) is not None else answer.credits
        for choice in _list(data.get("choices"))[:1]:
            delta = _dict(choice.get("delta"))
            answer.text += _str(delta.get("content")) or _str(choice.get("text"))
            answer.reasoning += _str(delta.get("reasoning_text") or delta.get("reasoning_content"))
            for piece in _list(delta.get("tool_calls")):
                call = calls.setdefault(piece.get("index", len(calls)), ToolCall("", ""))
                function = _dict(piece.get("function"))
                call.id = piece.get("id") or call.id
                call.name = _str(function.get("name")) or call.name
                call.arguments += _str(function.get("arguments"))
            answer.finish = _str(choice.get("finish_reason")) or answer.finish
    answer.calls = [calls[i] for i in sorted(calls)]


def _responses_events(answer: Answer, events: list[Event]) -> None:
    calls: dict[str, ToolCall] = {}  # by item id
    for event in events:
        data = event.json()
        if data is None:
            continue
        kind = data.get("type") or event.name
        item = _dict(data.get("item"))
        if kind == "response.output_text.delta":
            answer.text += _str(data.get("delta"))
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            answer.reasoning += _str(data.get("delta"))
        elif (
            kind in ("response.output_item.added", "response.output_item.done") and item.get("type") == "function_call"
        ):
            call = calls.setdefault(_str(item.get("id")), ToolCall("", "", _str(item.get("call_id"))))
            call.name = _str(item.get("name")) or call.name
            call.arguments = _str(item.get("arguments")) or call.arguments
        elif kind == "response.function_call_arguments.delta":
            calls.setdefault(_str(data.get("item_id")), ToolCall("", "")).arguments += _str(data.get("delta"))
        elif kind == "response.function_call_arguments.done":
            calls.setdefault(_str(data.get("item_id")), ToolCall("", "")).arguments = _str(data.get("arguments"))
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            final = _dict(data.get("response"))
            answer.complete = True
            answer.usage = _dict(final.get("usage")) or answer.usage
            credits = _credits(data)
            answer.credits = credits if credits is not None else _credits(final)
            answer.error = _error(final) or answer.error
            answer.finish = _finish(final)
        elif kind == "error":
            answer.error = _str(data.get("message")) or _error(data)
        response = _dict(data.get("response"))
        answer.model = _str(response.get("model")) or answer.model
    answer.calls = list(calls.values())


def _messages_events(answer: Answer, events: list[Event]) -> None:
    blocks: dict[int, str] = {}  # index -> block type
    calls: dict[int, ToolCall] = {}
    for event in events:
        data = event.json()
        if data is None:
            continue
        kind = data.get("type") or event.name
        if kind == "message_start":
            message = _dict(data.get("message"))
            answer.model = _str(message.get("model"))
            answer.usage = _dict(message.get("usage"))
        elif kind == "content_block_start":
            block = _dict(data.get("content_block"))
            blocks[data.get("index", 0)] = block.get("type", "")
            if block.get("type") == "tool_use":
                calls[data.get("index", 0)] = ToolCall(_str(block.get("name")), "", _str(block.get("id")))
        elif kind == "content_block_delta":
            delta, index = _dict(data.get("delta")), data.get("index", 0)
            answer.text += _str(delta.get("text"))
            answer.reasoning += _str(delta.get("thinking"))
            if index in calls:
                calls[index].arguments += _str(delta.get("partial_json"))
        elif kind == "message_delta":
            answer.finish = _str(_dict(data.get("delta")).get("stop_reason")) or answer.finish
            answer.usage = {**answer.usage, **_dict(data.get("usage"))}
            answer.credits = _credits(data) if _credits(data) is not None else answer.credits
        elif kind == "message_stop":
            answer.complete = True
        elif kind == "error":
            answer.error = _error(data)
    answer.calls = [calls[i] for i in sorted(calls)]


def _responses_output(answer: Answer, body: dict) -> None:
    for item in _list(body.get("output")):
        kind = item.get("type")
        if kind == "message":
            answer.text += "".join(_str(part.get("text")) for part in _list(item.get("content")))
        elif kind == "reasoning":
            answer.reasoning += " ".join(_str(part.get("text")) for part in _list(item.get("summary")))
        elif kind in ("function_call", "custom_tool_call"):
            arguments = _str(item.get("arguments")) or _str(item.get("input"))
            answer.calls.append(ToolCall(_str(item.get("name")), arguments, _str(item.get("call_id"))))
    answer.finish = _finish(body)


def _finish(response: dict) -> str:
    """A Responses answer's status, with the reason when it is incomplete."""
    reason = _str(_dict(response.get("incomplete_details")).get("reason"))
    return f"{_str(response.get('status'))} ({reason})" if reason else _str(response.get("status"))


def _credits(body: dict) -> float | None:
    nano = _dict(body.get("copilot_usage")).get("total_nano_aiu")
    return nano / NANO_AIU if isinstance(nano, int | float) and not isinstance(nano, bool) else None


def _error(body: dict) -> str:
    error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        return f"{code}: {error.get('message', '')}" if code else _str(error.get("message"))
    return _str(error) if isinstance(error, str) else ""


def _json_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False) if value else ""


def _str(value) -> str:
    return value if isinstance(value, str) else ""


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
