"""Bodies in the shapes the Copilot API and its clients use (VS Code chat, the Copilot CLI, the language server),
for the content view's tests: requests with long instructions, tools, tool calls and results; answers whole and
streamed, with tool calls, usage and copilot_usage; one stream cut off in the middle of an event."""

from __future__ import annotations

import json

SYSTEM = "You are an expert AI programming assistant, working with a user in the VS Code editor. " * 40


def sse(*events: dict | str, named: bool = False) -> bytes:
    out = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        name = f"event: {event['type']}\n" if named and isinstance(event, dict) else ""
        out.append(f"{name}data: {data}\n\n")
    return "".join(out).encode()


CHAT_REQUEST = {
    "model": "claude-sonnet-4",
    "stream": True,
    "max_tokens": 16000,
    "tools": [
        {"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "run_in_terminal", "parameters": {"type": "object"}}},
    ],
    "messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": [{"type": "text", "text": "What does main.py print?"}]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": '{"path":"main.py"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": 'print("hello")'},
    ],
}
CHAT_STREAM = sse(
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "It prints "}}], "model": "claude-sonnet-4"},
    {"choices": [{"index": 0, "delta": {"content": "hello. Let me run it."}}]},
    {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {"index": 0, "id": "call_2", "function": {"name": "run_in_terminal", "arguments": ""}}
                    ]
                },
            }
        ]
    },
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"command":'}}]}}]},
    {
        "choices": [
            {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"python main.py"}'}}]}}
        ]
    },
    {
        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 40, "prompt_tokens_details": {"cached_tokens": 1024}},
        "copilot_usage": {"total_nano_aiu": 31000000, "token_details": []},
    },
    "[DONE]",
)
CHAT_ANSWER = {
    "model": "gpt-4o-2024-11-20",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 3},
    "copilot_usage": {"total_nano_aiu": 25000000},
}

RESPONSES_REQUEST = {
    "model": "gpt-5.4",
    "instructions": SYSTEM,
    "stream": True,
    "reasoning": {"effort": "medium"},
    "tools": [{"type": "function", "name": "apply_patch"}, {"type": "web_search"}],
    "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix the typo in README"}]},
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "Look first."}],
            "encrypted_content": "gAAA",
        },
        {"type": "function_call", "call_id": "call_9", "name": "apply_patch", "arguments": '{"patch":"..."}'},
        {"type": "function_call_output", "call_id": "call_9", "output": "Done."},
    ],
}
RESPONSES_STREAM = sse(
    {"type": "response.created", "response": {"id": "resp_1", "model": "gpt-5.4", "status": "in_progress"}},
    {"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": "msg_1"}},
    {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Fixed "},
    {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "the typo."},
    {
        "type": "response.output_item.added",
        "output_index": 1,
        "item": {"type": "function_call", "id": "fc_1", "call_id": "call_10", "name": "apply_patch", "arguments": ""},
    },
    {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": '{"patch":'},
    {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": '"*** Begin Patch"}'},
    {
        "type": "response.completed",
        "response": {
            "id": "resp_1",
            "model": "gpt-5.4",
            "status": "completed",
            "usage": {"input_tokens": 900, "output_tokens": 60, "output_tokens_details": {"reasoning_tokens": 32}},
        },
        "copilot_usage": {"total_nano_aiu": 120000000},
    },
    named=True,
)
RESPONSES_ANSWER = {
    "model": "gpt-5.4",
    "status": "incomplete",
    "incomplete_details": {"reason": "max_output_tokens"},
    "output": [{"type": "message", "content": [{"type": "output_text", "text": "Partial answer"}]}],
    "usage": {"input_tokens": 5, "output_tokens": 7},
}

MESSAGES_REQUEST = {
    "model": "claude-opus-4.5",
    "max_tokens": 8192,
    "system": [{"type": "text", "text": SYSTEM}],
    "tools": [{"name": "grep", "input_schema": {"type": "object"}}],
    "messages": [
        {"role": "user", "content": "Where is main defined?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Search for it.", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "grep", "input": {"pattern": "def main"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "app.py:3"}]},
    ],
}
MESSAGES_STREAM = sse(
    {"type": "message_start", "message": {"model": "claude-opus-4.5", "usage": {"input_tokens": 300}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "In app.py, line 3."}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_2", "name": "grep", "input": {}},
    },
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"pattern"'}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ': "main("}'}},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 25}},
    {"type": "message_stop"},
    named=True,
)

COMPLETION_REQUEST = {
    "prompt": "# main.py\n" + "import os\n" * 2000 + "def main():\n    ",
    "suffix": "\n\nif __name__ == '__main__':\n    main()\n",
    "max_tokens": 500,
    "extra": {"language": "python"},
}
COMPLETION_STREAM = sse(
    {"choices": [{"index": 0, "text": "print(", "finish_reason": None}]},
    {"choices": [{"index": 0, "text": "'hi')", "finish_reason": "stop"}]},
    "[DONE]",
)

# a stream cut in the middle of its third event (the connection broke, or the stored part ended there)
CUT_STREAM = CHAT_STREAM[: CHAT_STREAM.index(b"data: ", CHAT_STREAM.index(b"hello. Let me")) + 30]

WS_CREATE = {"type": "response.create", "model": "gpt-5.4", "input": [{"role": "user", "content": "hi"}]}
WS_DELTA = {"type": "response.output_text.delta", "delta": "Hel"}
WS_COMPLETED = {
    "type": "response.completed",
    "response": {
        "model": "gpt-5.4",
        "status": "completed",
        "output": [{"type": "message", "content": [{"text": "Hi"}]}],
    },
    "copilot_usage": {"total_nano_aiu": 5000000},
}
