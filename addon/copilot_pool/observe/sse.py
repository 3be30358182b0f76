"""Server-sent events, as the Copilot API sends them: `event:` (optional) and `data:` lines, a blank line after each."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    name: str | None  # the `event:` line (Responses, Messages); None for chat and code completions
    data: str

    def json(self) -> dict | None:
        try:
            value = json.loads(self.data)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def looks_like_sse(data: bytes) -> bool:
    return data.lstrip()[:6] in (b"data: ", b"data:{", b"event:") or data.startswith(b":")


def parse(text: str) -> tuple[list[Event], bool]:
    """The events, and whether the text ends where an event ends (False: cut off in the middle of one)."""
    events: list[Event] = []
    name: str | None = None
    data: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            if data:
                events.append(Event(name, "\n".join(data)))
            name, data = None, []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()
        # comments (":") and other fields (id, retry) carry nothing to show
    if data:
        events.append(Event(name, "\n".join(data)))  # an event cut off before its blank line
    return events, not data
