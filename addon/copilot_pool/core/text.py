"""How messages show values they did not choose (a hostile endpoint, a key from the accounts file, a path):
a short prefix, escaped to printable ASCII, so no value can make a line long, split it, or smuggle control
characters into a terminal. Never pass a secret here: a prefix of a token is still a secret."""

from __future__ import annotations

SHORT = 40  # characters of a value a message quotes


def quote(value: object, limit: int = SHORT) -> str:
    """`'https://evil.example'`, `'aaaaaaaa'... (10485760 chars)`, `5`, `a list`: safe in a one-line message."""
    if isinstance(value, str):
        shown = ascii(value[:limit])
        return shown if len(value) <= limit else f"{shown}... ({len(value)} chars)"
    if value is None or isinstance(value, bool | int | float):
        return ascii(value)[:limit]
    return f"a {type(value).__name__}"


def printable(text: str, limit: int = 200) -> str:
    """`text` without quotes when it is short printable ASCII (a path as the operator wrote it), else escaped
    and cut like `quote`."""
    if len(text) <= limit and text.isascii() and text.isprintable():
        return text
    shown = ascii(text[:limit])[1:-1]
    return shown if len(text) <= limit else f"{shown}... ({len(text)} chars)"
