"""The text of the Copilot content view: a request as a conversation, an answer (whole or streamed) as what the
model said, WebSocket `/responses` messages one by one. Plain text; long instructions are folded."""

from __future__ import annotations

import json
import re
import textwrap

from . import answer as answers
from . import conversation, sse
from .answer import Answer
from .conversation import Conversation, Turn

API_PATHS = (("/chat/completions", "chat"), ("/responses", "responses"), ("/v1/messages", "messages"))
ENGINE = re.compile(r"/v1/engines/([^/]+)/completions$")
API_NAMES = {
    "chat": "chat/completions",
    "responses": "responses",
    "messages": "v1/messages",
    "completions": "completion",
}
INSTRUCTIONS = {"system", "developer", "instructions"}
WRAP = 72
FOLD = {"instructions": (600, 300), "text": (6000, 3000), "call": (1500, 1000), "prompt": (2000, 1200)}  # longer: keep


def api_of(path: str) -> str | None:
    """Which API a request path belongs to (a prefix before it is the endpoint's own), or None."""
    path = path.split("?", 1)[0]
    for suffix, api in API_PATHS:
        if path.endswith(suffix):
            return api
    return "completions" if ENGINE.search(path) else None


def request_text(api: str, body: bytes, path: str = "") -> str:
    parsed = conversation.parse(api, json_object(body))
    if not parsed.model and (engine := ENGINE.search(path.split("?", 1)[0])):
        parsed.model = engine.group(1)  # a code completion names its model in the path
    return render_conversation(parsed)


def answer_text(api: str, body: bytes, stored_limit: int | None = None) -> str:
    if sse.looks_like_sse(body):
        events, ended = sse.parse(body.decode("utf-8", "replace"))
        reply = answers.from_events(api, events, ended)
    else:
        reply = answers.from_json(api, json_object(body))
    text = render_answer(reply)
    if stored_limit:
        text += f"\n⚠ only the first {stored_limit:,} bytes of this stream were kept (pool_stream_store)"
    return text


def websocket_text(from_client: bool, body: bytes) -> str:
    """One message of a `/responses` WebSocket: the client's `response.create`, or one event of the answer."""
    data = json_object(body)
    kind = str(data.get("type") or "?")
    if from_client:
        return f"{kind}\n{render_conversation(conversation.parse('responses', data))}"
    if isinstance(data.get("response"), dict) and kind in (
        "response.completed",
        "response.incomplete",
        "response.failed",
    ):
        reply = answers.from_json("responses", data["response"])
        reply.credits = answers.from_json("responses", data).credits or reply.credits
        return f"{kind}\n{render_answer(reply)}"
    if isinstance(data.get("delta"), str):
        return f"{kind}: {json.dumps(data['delta'], ensure_ascii=False)}"
    rest = {k: v for k, v in data.items() if k != "type"}
    return f"{kind} {_fold(json.dumps(rest, ensure_ascii=False), 'call')}" if rest else kind


def render_conversation(c: Conversation) -> str:
    head = [c.model or "(no model)", API_NAMES[c.api], "stream" if c.stream else ""]
    head += [_count(len(c.tools), "tool"), _count(len(c.turns), "turn") if c.api != "completions" else ""]
    lines = [" · ".join(h for h in head if h)]
    if c.settings:
        lines.append("settings: " + ", ".join(c.settings))
    if c.tools:
        lines.append("tools: " + ", ".join(c.tools))
    for turn in c.turns:
        lines += ["", _heading(turn), *_turn_lines(turn)]
    return "\n".join(lines)


def render_answer(a: Answer) -> str:
    head = [
        "answer",
        a.model,
        f"streamed, {_count(a.events, 'event')}" if a.events else "",
        a.finish and f"finish: {a.finish}",
    ]
    lines = [" · ".join(h for h in head if h)]
    if a.error:
        lines.append(f"error: {a.error}")
    if a.reasoning:
        lines += ["", "── reasoning ──", _fold(a.reasoning, "text")]
    if a.text or a.calls:
        role = "completion" if a.api == "completions" else "assistant"
        lines += ["", f"── {role} ──", *_turn_lines(Turn(role, a.text, a.calls))]
    if usage := _usage(a.usage, a.credits):
        lines += ["", usage]
    if a.events and not a.complete:
        lines.append("⚠ the stream ends before its final event: cut off, or still running")
    if a.events:
        lines.append("(the raw events: the Raw view)")
    return "\n".join(lines)


def json_object(body: bytes) -> dict:
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _heading(turn: Turn) -> str:
    return f"── {turn.role}{f' [{turn.ref}]' if turn.ref else ''} ──"


def _turn_lines(turn: Turn) -> list[str]:
    lines = [_fold(turn.text, "instructions" if turn.role in INSTRUCTIONS else "text")] if turn.text else []
    longer_than, keep = FOLD["prompt"]
    if turn.role == "prompt" and len(turn.text) > longer_than:  # a code completion: the cursor is at the end
        lines = [f"[{len(turn.text) - keep:,} earlier characters folded] …{turn.text[-keep:]}"]
    for call in turn.calls:
        lines.append(f"→ {call.name}({_fold(call.arguments, 'call')})" + (f"  [{call.id}]" if call.id else ""))
    lines += [f"({note})" for note in turn.notes]
    return lines


def _fold(text: str, kind: str) -> str:
    longer_than, keep = FOLD[kind]
    if len(text) <= longer_than:
        return text
    head = textwrap.fill(text[:keep], WRAP) if kind == "instructions" else text[:keep]  # a preview, in lines
    return f"{head}… [{len(text) - keep:,} more characters folded]"


def _usage(usage: dict, credits: float | None) -> str:
    """Tokens in, out, cached and reasoning, in whichever API's names; and the credits the answer cost."""

    def first(*paths: str) -> int | None:
        for path in paths:
            value = usage
            for key in path.split("."):
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    parts = [
        ("in", first("prompt_tokens", "input_tokens")),
        ("out", first("completion_tokens", "output_tokens")),
        (
            "cached",
            first(
                "prompt_tokens_details.cached_tokens", "input_tokens_details.cached_tokens", "cache_read_input_tokens"
            ),
        ),
        ("reasoning", first("completion_tokens_details.reasoning_tokens", "output_tokens_details.reasoning_tokens")),
    ]
    shown = [f"{name} {value:,}" for name, value in parts if value is not None]
    if credits is not None:
        shown.append(f"{credits:.4g} credits")
    return "usage: " + " · ".join(shown) if shown else ""


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}" if n else ""
