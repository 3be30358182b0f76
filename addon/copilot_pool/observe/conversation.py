"""A Copilot API request body as a conversation: model, tools, and the turns, for each API's own shape.

`chat` (/chat/completions), `responses` (/responses, also the WebSocket's `response.create`), `messages`
(Anthropic's /v1/messages) and `completions` (code completions: prompt and suffix).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class ToolCall:
    name: str
    arguments: str
    id: str = ""


@dataclass
class Turn:
    role: str  # system, developer, user, assistant, tool, reasoning, prompt, suffix
    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    ref: str = ""  # the tool call a result answers
    notes: list[str] = field(default_factory=list)  # what is there but not shown: images, encrypted reasoning


@dataclass
class Conversation:
    api: str
    model: str = ""
    stream: bool = False
    tools: list[str] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)  # max_tokens 4096, previous_response_id ..., ...
    turns: list[Turn] = field(default_factory=list)


SETTINGS = ("max_tokens", "max_output_tokens", "temperature", "top_p", "n", "previous_response_id", "tool_choice")


def parse(api: str, body: dict) -> Conversation:
    conversation = Conversation(api, str(body.get("model") or ""), body.get("stream") is True)
    conversation.tools = [name for tool in _list(body.get("tools")) if (name := _tool_name(tool))]
    conversation.settings = [f"{key} {_compact(body[key])}" for key in SETTINGS if body.get(key) is not None]
    if isinstance(body.get("reasoning"), dict) and body["reasoning"].get("effort"):
        conversation.settings.append(f"reasoning {body['reasoning']['effort']}")
    conversation.turns = {"chat": _chat, "responses": _responses, "messages": _messages, "completions": _completions}[
        api
    ](body)
    return conversation


def _chat(body: dict) -> list[Turn]:
    turns = []
    for message in _list(body.get("messages")):
        if not isinstance(message, dict):
            continue
        turn = Turn(str(message.get("role") or "?"), *_parts(message.get("content")))
        turn.ref = str(message.get("tool_call_id") or "")
        for call in _list(message.get("tool_calls")):
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                turn.calls.append(
                    ToolCall(str(function.get("name")), _text(function.get("arguments")), call.get("id", ""))
                )
        turns.append(turn)
    return turns


def _responses(body: dict) -> list[Turn]:
    turns = [Turn("instructions", body["instructions"])] if isinstance(body.get("instructions"), str) else []
    items = body.get("input")
    if isinstance(items, str):
        return [*turns, Turn("user", items)]
    for item in _list(items):
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message" or "role" in item and kind not in ("function_call", "function_call_output"):
            turns.append(Turn(str(item.get("role") or "?"), *_parts(item.get("content"))))
        elif kind in ("function_call", "custom_tool_call"):
            call = ToolCall(
                str(item.get("name")), _text(item.get("arguments", item.get("input"))), item.get("call_id", "")
            )
            _assistant(turns).calls.append(call)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            turns.append(Turn("tool", _text(item.get("output")), ref=str(item.get("call_id") or "")))
        elif kind == "reasoning":
            summary = " ".join(s.get("text", "") for s in _list(item.get("summary")) if isinstance(s, dict))
            notes = ["encrypted reasoning"] if item.get("encrypted_content") else []
            turns.append(Turn("reasoning", summary, notes=notes))
        else:
            turns.append(Turn(str(kind), notes=[f"{kind} item"]))
    return turns


def _messages(body: dict) -> list[Turn]:
    system = body.get("system")
    turns = [Turn("system", *_parts(system))] if system else []
    for message in _list(body.get("messages")):
        if not isinstance(message, dict):
            continue
        role, content = str(message.get("role") or "?"), message.get("content")
        if isinstance(content, str):
            turns.append(Turn(role, content))
            continue
        turn = Turn(role)
        for block in _list(content):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "tool_use":
                turn.calls.append(ToolCall(str(block.get("name")), _text(block.get("input")), block.get("id", "")))
            elif kind == "tool_result":
                turns.append(Turn("tool", *_parts(block.get("content")), ref=str(block.get("tool_use_id") or "")))
            elif kind in ("thinking", "redacted_thinking"):
                turns.append(Turn("reasoning", block.get("thinking", ""), notes=[] if "thinking" in block else [kind]))
            else:
                text, notes = _parts([block])
                turn.text, turn.notes = _join(turn.text, text), turn.notes + notes
        if turn.text or turn.calls or turn.notes:
            turns.append(turn)
    return turns


def _completions(body: dict) -> list[Turn]:
    turns = [Turn("prompt", body["prompt"])] if isinstance(body.get("prompt"), str) else []
    if isinstance(body.get("suffix"), str) and body["suffix"]:
        turns.append(Turn("suffix", body["suffix"]))
    extra = body.get("extra")
    if isinstance(extra, dict) and extra.get("language"):
        turns.insert(0, Turn("language", str(extra["language"])))
    return turns


def _parts(content) -> tuple[str, list[str]]:
    """Text and notes of a content value: a string, or a list of parts (text, images, files, ...)."""
    if isinstance(content, str):
        return content, []
    text, notes = "", []
    for part in _list(content):
        if isinstance(part, str):
            text = _join(text, part)
        elif isinstance(part, dict):
            if isinstance(part.get("text"), str):
                text = _join(text, part["text"])
            elif isinstance(part.get("content"), str | list):
                text = _join(text, _parts(part["content"])[0])
            else:
                notes.append(str(part.get("type", "part")))
    return text, notes


def _assistant(turns: list[Turn]) -> Turn:
    """The assistant turn a Responses function_call item belongs to (the last one, or a new one)."""
    if not turns or turns[-1].role != "assistant":
        turns.append(Turn("assistant"))
    return turns[-1]


def _tool_name(tool) -> str | None:
    if not isinstance(tool, dict):
        return None
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else tool.get("name")
    return str(name) if name else str(tool.get("type")) if tool.get("type") else None


def _text(value) -> str:
    return value if isinstance(value, str) else "" if value is None else json.dumps(value, ensure_ascii=False)


def _compact(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _join(a: str, b: str) -> str:
    return f"{a}\n{b}" if a and b else a or b


def _list(value) -> list:
    return value if isinstance(value, list) else []
