"""Streamed answers kept in the flow: mitmproxy stores no body of a streamed response, so mitmweb, `-w` files and
the Copilot view would show none. The response's `stream` callable passes each chunk on untouched and keeps the
first `pool_stream_store` bytes; once the stream has ended they become the flow's body. It also keeps the last
few KB whatever the limit: the usage (the answer's AI credits) rides on the last event."""

from __future__ import annotations

from mitmproxy import http

from ..core.usage import Tail


class StreamStore:
    """A response's `stream` callable: returns each chunk unchanged, keeps at most `limit` bytes of them."""

    __slots__ = ("limit", "size", "chunks", "truncated", "tail")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.chunks: list[bytes] = []
        self.truncated = False
        self.tail = Tail()

    def __call__(self, chunk: bytes) -> bytes:
        self.tail(chunk)
        if chunk and not self.truncated:
            kept = chunk[: self.limit - self.size]  # the chunk itself (no copy) while it fits
            self.truncated = len(kept) < len(chunk)
            self.chunks.append(kept)
            self.size += len(kept)
        return chunk


def stream(response: http.Response, limit: int) -> StreamStore:
    """Relay the answer as it comes, keeping up to `limit` bytes of it (0: none) and its end."""
    store = response.stream = StreamStore(limit)
    return store


def keep(flow: http.HTTPFlow) -> None:
    """The stored part of a streamed answer becomes the flow's body; a cut is noted in the flow's metadata."""
    store = flow.response.stream if flow.response is not None else None
    if isinstance(store, StreamStore) and store.limit > 0:
        flow.response.raw_content = b"".join(store.chunks)
        if store.truncated:
            flow.metadata["copilot_pool.stream_truncated_at"] = store.limit
