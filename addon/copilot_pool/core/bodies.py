"""What the pool needs of a request body (its `model`, whether it asks for a stream), without parsing 50 KB of
conversation on every request.

Clients put `model` either before the messages or after them. When no nesting, escape or odd quote stands
between the key and one end of the object, the key is certainly top-level and its value is read from there;
otherwise the body is parsed whole (json.loads: C speed, still exact).
"""

from __future__ import annotations

import json
import re

_KEY = b'"model"'
NEAR = 4096  # bytes from either end of the body where clients put `model`
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
_STRUCTURE = re.compile(rb"[{}\[\]\\]")


def model_of(body: bytes | None) -> str | None:
    if not body or body[:1] != b"{":
        return _parsed(body)
    first = body.find(_KEY, 0, NEAR)
    match = _MODEL.match(body, first) if first > 0 else None
    if match and _plain(body, 1, first):
        return match.group(1).decode("utf-8", "replace")
    end = len(body.rstrip()) - 1  # the object's closing brace
    last = body.rfind(_KEY, max(0, end - NEAR))
    match = _MODEL.match(body, last) if last > 0 else None
    if match and body[end : end + 1] == b"}" and _plain(body, match.end(), end):
        return match.group(1).decode("utf-8", "replace")
    return _parsed(body) if _KEY in body else None


def asks_for_stream(body: bytes | None) -> bool:
    """True when the body has a top-level-looking `"stream": true` (an SSE answer is coming). A key inside a JSON
    string is escaped (`\\"stream\\"`), so only real keys match; a nested one is rare and harmless (a request
    that streams nothing still works through the relay)."""
    if not body:
        return False
    for at in _keys(body, b'"stream"'):
        rest = body[at + 8 : at + 24].lstrip()
        if rest.startswith(b":") and rest[1:].lstrip().startswith(b"true"):
            return True
    return False


def _keys(body: bytes, key: bytes):
    """Where `key` starts: in the first NEAR bytes, in the last, then in between."""
    n = len(body)
    if n <= 2 * NEAR:
        spans = [(0, n)]
    else:
        spans = [(0, NEAR), (n - NEAR, n), (NEAR, n - NEAR)]
    for start, end in spans:
        bound = min(n, end + len(key) - 1)  # a key may start just before `end` and run past it
        at = body.find(key, start, bound)
        while at != -1:
            yield at
            at = body.find(key, at + 1, bound)


def _plain(body: bytes, start: int, end: int) -> bool:
    """No brace, bracket or backslash between start and end, and an even number of quotes: what lies there is
    `"key": scalar` pairs of the same object."""
    return _STRUCTURE.search(body, start, end) is None and body.count(b'"', start, end) % 2 == 0


def _parsed(body: bytes | None) -> str | None:
    try:
        data = json.loads(body or b"")
    except (ValueError, RecursionError):
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None
