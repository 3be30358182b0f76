"""Reading and rewriting a pooled request's headers and target in one pass each.

mitmproxy's `Headers` finds a name by lower-casing every field, once per lookup or assignment, and assigning
`req.host` or `req.port` rewrites the Host header again each time: about ten passes over the client's headers
per pooled request. These do the same work once, with the same result as mitmproxy's own accessors
(tests/test_rewrite.py holds them to it).
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from mitmproxy import http
from mitmproxy.net.http import url

HOST = frozenset({b"host"})  # rewritten when the client sent one, as `req.host = ...` does; never added


def pick(headers: http.Headers, names: frozenset[bytes]) -> dict[str, str]:
    """The headers named (lower-case) that are present, folded as `Headers.get` folds repeated ones."""
    found: dict[str, str] = {}
    for name, value in headers.fields:
        lower = name.lower()
        if lower in names:
            key, text = lower.decode(), value.decode("utf-8", "surrogateescape")
            found[key] = f"{found[key]}, {text}" if key in found else text
    return found


def replace(headers: http.Headers, values: dict[bytes, bytes], if_present: frozenset[bytes] = frozenset()) -> None:
    """`headers[name] = value` for each name (lower-case): the first field of a name keeps its place and
    spelling, later ones go, a missing name is appended (unless it is one of `if_present`)."""
    fields, done = [], set()
    for field in headers.fields:
        lower = field[0].lower()
        if lower not in values:
            fields.append(field)
        elif lower not in done:
            fields.append((field[0], values[lower]))
            done.add(lower)
    fields += [(name, value) for name, value in values.items() if name not in done and name not in if_present]
    headers.fields = tuple(fields)


def point_at(req: http.Request, base: str, path: str, authorization: str) -> None:
    """`req.url = base + path` and `req.headers["authorization"] = authorization`: scheme, host and port, the
    Host header (when there is one) and the authority (HTTP/2, absolute-form) follow the endpoint."""
    scheme, host, port, prefix, hostport = _endpoint(base)
    req.data.scheme, req.data.host, req.data.port = scheme, host, port
    if req.data.authority:
        req.data.authority = hostport
    values = {b"authorization": authorization.encode("utf-8", "surrogateescape"), b"host": hostport}
    replace(req.headers, values, if_present=HOST)
    if prefix:
        req.path = prefix + path


@functools.lru_cache(maxsize=256)
def _endpoint(base: str) -> tuple[bytes, str, int, str, bytes]:
    """An endpoint parsed once: scheme, host, port, path prefix and the Host header's value."""
    parts = urlsplit(base)
    scheme, host = parts.scheme, parts.hostname or ""
    port = parts.port or url.default_port(scheme) or 80
    return scheme.encode(), host, port, parts.path.rstrip("/"), url.hostport(scheme, host, port).encode("idna")
