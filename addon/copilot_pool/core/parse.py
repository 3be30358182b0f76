"""Small, forgiving parsers for what upstream sends: they return None (or {}) instead of raising."""

from __future__ import annotations

import json
import math


def finite_float(value: object) -> float | None:
    """A finite number from a header value or JSON field; None for garbage, NaN and infinities."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def json_object(body: bytes | str | None) -> dict:
    """The JSON object in `body`, or {} when it is empty, not JSON, or not an object."""
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
