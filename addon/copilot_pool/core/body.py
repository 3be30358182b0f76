"""What the pool needs to know of a request body on the hot path, found without parsing the JSON.

Bodies run to 50 KB and more (instructions, tool definitions, the conversation); `bytes.find` skims them in
microseconds where `json.loads` takes a millisecond. A key inside a JSON string is escaped (`\\"stream\\"`), so
`"stream"` only matches real keys; a nested object with the same key is rare and harmless here (a stream
request that is not one still works through the relay; the model only labels the flow).
"""

from __future__ import annotations

import re

_MODEL_VALUE = re.compile(rb'\s*:\s*"([^"\\]{1,100})"')


def asks_for_stream(body: bytes) -> bool:
    """True when the body has `"stream": true` (an SSE answer is coming)."""
    at = body.find(b'"stream"')
    while at != -1:
        rest = body[at + 8 : at + 24].lstrip()
        if rest.startswith(b":") and rest[1:].lstrip().startswith(b"true"):
            return True
        at = body.find(b'"stream"', at + 8)
    return False


def model_of(body: bytes) -> str | None:
    """The `"model"` the request names, if any."""
    at = body.find(b'"model"')
    while at != -1:
        if m := _MODEL_VALUE.match(body, at + 7):
            return m.group(1).decode("utf-8", "replace")
        at = body.find(b'"model"', at + 7)
    return None


_NANO_AIU = re.compile(rb'"total_nano_aiu"\s*:\s*([0-9]+(?:\.[0-9]+)?)')
CREDIT = 1e9  # nano-AIU per AI credit


def credits_of(answer: bytes) -> float | None:
    """AI credits an answer reports (`copilot_usage.total_nano_aiu`: top level of a JSON answer, in the last
    event of a stream), or None. Looked for from the end: the usage comes last."""
    at = answer.rfind(b'"total_nano_aiu"')
    m = _NANO_AIU.match(answer, at) if at != -1 else None
    return float(m.group(1)) / CREDIT if m else None
