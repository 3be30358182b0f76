"""The attempts of a request diverted to the relay, each one streamed.

Like `Attempts._fail_over`, with the same judge and the same choice of the next account, but the relay holds
the client's answer back until an attempt deserves it: a 4xx or 5xx (error bodies are small) is read whole and
judged, and when it says "another account" (429, 402, 401), or the connection failed, the next account gets the
request. Any other answer goes back the moment its head arrives, then chunk by chunk as upstream sends it, from
the upstream socket's own callback (mitm/upstream.py); the judge runs after the first bytes are on their way.
"""

from __future__ import annotations

from typing import Protocol

from mitmproxy import http
from mitmproxy.net import encoding

from ..core.pool import NoAccount, Unavailable
from . import answers
from .attempts import NOT_RESENT, Attempts, Pooled
from .upstream import Commit, Exchange, Sink, UpstreamPool

NOT_RETURNED = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})  # the relay frames the answer itself
DECODED = frozenset({b"content-encoding", b"content-length"})  # what no longer holds for a body sent decoded


class Reply(Sink, Protocol):
    """Where the answer goes: the relay's connection back to mitmproxy."""

    source: Exchange | None  # read no faster than mitmproxy takes it

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...
    def whole(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None: ...


async def answer(
    attempts: Attempts, pool: UpstreamPool, flow: http.HTTPFlow, pooled: Pooled, url: str, credential: str, reply: Reply
) -> None:
    last: tuple[int, list, bytes] | None = None  # the latest answer read whole: passed on when no attempt does better
    while True:
        try:
            exchange = await _send(pool, flow.request, url, credential, lambda e: _commit(e, reply))
        except (OSError, ConnectionError, TimeoutError) as e:
            verdict = attempts._judge_connection_error(flow, pooled, type(e).__name__)
        else:
            headers = http.Headers(exchange.headers)
            try:
                if exchange.committed:
                    attempts._judge(flow, pooled, exchange.status, headers, None)
                    return await _stream(exchange, pool, flow, pooled, reply)
                body = await exchange.whole()
            except BaseException:
                exchange.abort()  # cut off (mitmproxy left, upstream broke): the connection is done for
                raise
            pool.done(exchange)
            body = _decoded(body, headers.get("content-encoding"))
            verdict = attempts._judge(flow, pooled, exchange.status, headers, body)
            last = exchange.status, [(k, v) for k, v in exchange.headers if k not in NOT_RETURNED | DECODED], body
            if not verdict.failover:
                break
        if not attempts._attempts_left(pooled, verdict):
            break
        try:
            endpoint, credential = await attempts._switch(flow, pooled)
        except NoAccount as e:
            if e.reason is not Unavailable.EXHAUSTED or verdict.refresh:
                # nothing can serve now: the pool's own answer says why
                return _own(reply, attempts.no_account_answer(e, pooled.want))
            break
        url = endpoint.url(pooled.path)
        flow.request.url = url  # the flow names the endpoint that answers
    if last is not None and not verdict.refresh:
        return reply.whole(*last)
    # no attempt got an answer, or every one a 401 (no client sees a 401 the pool's token earned)
    _own(reply, answers.no_account(NoAccount(Unavailable.EXHAUSTED)))


async def _send(pool: UpstreamPool, request: http.Request, url: str, credential: str, commit: Commit) -> Exchange:
    headers = [(k, v) for k, v in request.headers.fields if k.lower() not in NOT_RESENT]
    headers.append((b"authorization", f"Bearer {credential}".encode()))
    return await pool.request(request.method, url, headers, request.raw_content or b"", commit)


def _commit(exchange: Exchange, reply: Reply) -> Sink | None:
    """Below 400 the answer is the client's: its head goes back now, its body as it comes (encoding intact)."""
    if exchange.status >= 400:
        return None
    reply.head(exchange.status, [(k, v) for k, v in exchange.headers if k not in NOT_RETURNED])
    reply.source = exchange
    return reply


async def _stream(exchange: Exchange, pool: UpstreamPool, flow: http.HTTPFlow, pooled: Pooled, reply: Reply) -> None:
    if len(pooled.tried) > 1:
        flow.comment += ", streamed"
        flow.marked = ":repeat:"
    try:
        await exchange.whole()  # its end went out with its last chunk
    except ConnectionError as e:
        flow.comment += f"; stream cut ({e})"  # bytes reached the client: no failover now
        raise
    finally:
        reply.source = None
    pool.done(exchange)


def _decoded(body: bytes, content_encoding: str | None) -> bytes:
    if not content_encoding:
        return body
    try:
        return encoding.decode(body, content_encoding)
    except ValueError:
        return body


def _own(reply: Reply, response: http.Response) -> None:
    reply.whole(response.status_code, response.headers.fields, response.content or b"")
