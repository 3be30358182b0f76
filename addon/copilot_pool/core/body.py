"""What the pool needs to know of a request body on the hot path, found without parsing the JSON.

Bodies run to 50 KB and more (instructions, tool definitions, the conversation); `json.loads` takes a millisecond
of them, `bytes.find` tens of microseconds, and the top-level keys are found in the first or last few KB. A key
inside a JSON string is escaped (`\\"stream\\"`), so `"stream"` only matches real keys; a nested object with the
same key is rare and harmless here (a stream request that is not one still works through the relay; the model
only labels the flow).
"""

from __future__ import annotations

import re

_MODEL_VALUE = re.compile(rb'\s*:\s*"([^"\\]{1,100})"')
EDGE = 4096  # top-level keys sit at the start or the end of a body (before or after the messages): look there first


def asks_for_stream(body: bytes) -> bool:
    """True when the body has `"stream": true` (an SSE answer is coming)."""
    for at in _keys(body, b'"stream"'):
        rest = body[at + 8 : at + 24].lstrip()
        if rest.startswith(b":") and rest[1:].lstrip().startswith(b"true"):
            return True
    return False


def model_of(body: bytes) -> str | None:
    """The `"model"` the request names, if any."""
    for at in _keys(body, b'"model"'):
        if m := _MODEL_VALUE.match(body, at + 7):
            return m.group(1).decode("utf-8", "replace")
    return None


def _keys(body: bytes, key: bytes):
    """Where `key` starts: in the first EDGE bytes, in the last, then in between (skimming 50 KB takes 40 µs)."""
    n = len(body)
    if n <= 2 * EDGE:  # all of it is edge
        at = body.find(key)
        while at != -1:
            yield at
            at = body.find(key, at + 1)
        return
    head, tail = EDGE, n - EDGE
    for start, end in ((0, head), (tail, n), (head, tail)):
        bound = min(n, end + len(key) - 1)  # a key may start just before `end` and run past it
        at = body.find(key, start, bound)
        while at != -1:
            yield at
            at = body.find(key, at + 1, bound)


_NANO_AIU = re.compile(rb'"total_nano_aiu"\s*:\s*([0-9]+(?:\.[0-9]+)?)')
CREDIT = 1e9  # nano-AIU per AI credit


def credits_of(answer: bytes) -> float | None:
    """AI credits an answer reports (`copilot_usage.total_nano_aiu`: top level of a JSON answer, in the last
    event of a stream), or None. Looked for from the end: the usage comes last."""
    at = answer.rfind(b'"total_nano_aiu"')
    m = _NANO_AIU.match(answer, at) if at != -1 else None
    return float(m.group(1)) / CREDIT if m else None
