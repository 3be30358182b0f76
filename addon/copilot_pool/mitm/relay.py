"""The relay: an HTTP server inside mitmproxy's event loop, on loopback, that makes a streaming request's attempts.

mitmproxy streams only a response it reads from a server; an answer an addon makes arrives in one piece. So a
pooled streaming request is diverted here (`divert`, request hook): mitmproxy sends it to the relay, the relay
makes the attempts with failover (mitm/relayed.py) and streams the first good answer back, which mitmproxy
streams to the client. Every attempt streams, and a refused first connection fails over like any other.

Who may use it: only mitmproxy's own connection for a diverted flow. Each diverted request carries a ticket, 32
random bytes drawn for it alone; the relay serves a ticket once, and only on the connection mitmproxy opened for
that flow (its local address is the peer the relay sees). Another local program has no ticket, and a leaked one
is useless to it. The request mitmproxy sends carries no credential (`Bearer <pool:NAME>`): the relay adds it
when it calls the account's endpoint, taken from the pool, never from the bytes it received.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from mitmproxy import http

from .. import LOGGER_NAME
from ..core.bodies import asks_for_stream
from ..runtime import tasks
from . import http1, relayed
from .attempts import Attempts, Pooled
from .upstream import Exchange, UpstreamPool

log = logging.getLogger(LOGGER_NAME)

TICKET = "x-copilot-pool-relay"
HOST = "127.0.0.1"


@dataclass(eq=False)
class Claim:
    """A diverted request, waiting for mitmproxy to bring it to the relay."""

    flow: http.HTTPFlow
    pooled: Pooled
    url: str  # where its first attempt goes (the account's endpoint, from attempts._target)
    credential: str
    target: tuple[str, str, int]  # the request's scheme, host and port before it was diverted


class Relay:
    def __init__(self, attempts: Attempts) -> None:
        self.attempts = attempts
        self.port: int | None = None  # None: not listening (yet); requests go upstream directly
        self.claims: dict[str, Claim] = {}  # ticket -> request
        self.tickets: dict[str, str] = {}  # flow id -> ticket, until the relay has the request
        self.upstream = UpstreamPool()
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._starting: asyncio.Task | None = None

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._starting = tasks.start(self._listen(), "copilot-pool relay")

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(self), HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.port = None
        if self._starting is not None:
            self._starting.cancel()
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.abort()  # cancels its attempts, which release their leases
        self.claims.clear()
        self.tickets.clear()
        self.upstream.close()

    # -- request hook -------------------------------------------------------------------------------

    def divert(self, flow: http.HTTPFlow) -> None:
        """Send a pooled streaming request to the relay instead of to its account's endpoint."""
        pooled = self.attempts.pooled.get(flow.id)
        req = flow.request
        if (
            pooled is None
            or self.port is None
            or not self.attempts.settings.relay
            or flow.server_conn.via is not None  # upstream proxy mode: mitmproxy would send it there, not here
            or not asks_for_stream(req.raw_content or b"")  # a compressed body is not looked into: direct path
        ):
            return
        ticket = secrets.token_urlsafe(32)
        credential = req.headers["authorization"].removeprefix("Bearer ")
        self.claims[ticket] = Claim(flow, pooled, req.url, credential, (req.scheme, req.host, req.port))
        self.tickets[flow.id] = ticket
        pooled.relayed = True
        req.headers["authorization"] = f"Bearer <pool:{pooled.lease.account.name}>"
        req.headers[TICKET] = ticket
        req.scheme, req.port = "http", self.port
        req.host = HOST

    def forget(self, flow: http.HTTPFlow) -> None:
        """The flow ended (answer or error): a request mitmproxy never brought here is undiverted."""
        ticket = self.tickets.pop(flow.id, None)  # cheaper than a header lookup on every flow
        claim = self.claims.pop(ticket, None) if ticket is not None else None
        if claim is not None:
            _undivert(claim)

    # -- a request arrives ----------------------------------------------------------------------------

    def claim(self, ticket: str | None, peer: tuple) -> Claim | None:
        """The diverted request this ticket names, if it comes on mitmproxy's own connection for that flow."""
        claim = self.claims.get(ticket) if ticket else None
        if claim is None or tuple(claim.flow.server_conn.sockname or ())[:2] != tuple(peer)[:2]:
            return None
        del self.claims[ticket]
        self.tickets.pop(claim.flow.id, None)
        _undivert(claim)
        return claim


def _undivert(claim: Claim) -> None:
    """The flow shows the real upstream URL again, and no ticket."""
    req = claim.flow.request
    req.headers.pop(TICKET, None)
    scheme, host, port = claim.target
    req.scheme, req.port = scheme, port
    req.host = host  # last: it rewrites the Host header


class Connection(asyncio.Protocol):
    """One connection from mitmproxy: HTTP/1.1 (http1.py), kept alive, one request at a time."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.peer: tuple = ()
        self.task: asyncio.Task | None = None
        self.source: Exchange | None = None  # the upstream answer being piped here
        self.closed = False
        self._in = b""  # what arrived and is not yet part of a request
        self._request: http1.Head | None = None
        self._body: http1.Body | None = None  # the request's body: skipped (the flow holds it)
        self._out: list[bytes] = []  # written on flush
        self._chunked = False  # how the answer being sent is framed
        self._answering = False  # its head is written

    # -- asyncio.Protocol -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports subclass no asyncio class
        self.peer = transport.get_extra_info("peername") or ()
        self.relay._connections.add(self)

    def data_received(self, data: bytes) -> None:
        self._in += data
        try:
            self._next_request()
        except ValueError:
            self.abort()  # not what mitmproxy sends

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.relay._connections.discard(self)
        if self.task is not None:
            self.task.cancel()  # mitmproxy hung up (the client went away): stop the attempt, free the account

    def pause_writing(self) -> None:
        if self.source is not None:
            self.source.pause(True)  # mitmproxy reads slower than upstream sends: read upstream no faster

    def resume_writing(self) -> None:
        if self.source is not None:
            self.source.pause(False)

    # -- requests ---------------------------------------------------------------------------------------

    def _next_request(self) -> None:
        """Read until a whole request is in, then serve it (its body is the flow's: skipped here)."""
        if self.task is not None or self.closed:
            return  # mitmproxy sends the next request only after the answer
        if self._request is None:
            self._request, self._in = http1.take_head(self._in)
            if self._request is None:
                return
            self._body = http1.body_of(self._request)
        assert self._body is not None
        self._body.feed(self._in)
        self._in = self._body.rest if self._body.done else b""
        if self._body.done:
            self.task = tasks.start(self._serve(self._request), "copilot-pool relay request")

    async def _serve(self, request: http1.Head) -> None:
        ticket = request.get(TICKET.encode())
        claim = self.relay.claim(ticket.decode("ascii", "replace") if ticket else None, self.peer)
        if claim is None:
            log.warning(f"pool: relay refused a request from {self.peer[:2]}: no valid ticket")
            self.whole(403, [(b"content-type", b"text/plain"), (b"connection", b"close")], b"forbidden\n")
            self.closed = True
            return self.transport.close() if self.transport else None  # after the 403 is out
        try:
            await relayed.answer(
                self.relay.attempts, self.relay.upstream, claim.flow, claim.pooled, claim.url, claim.credential, self
            )
        except ConnectionError:
            return self.abort()  # upstream cut the stream, or mitmproxy left: cut ours too
        except Exception as e:
            log.error(f"pool: relay failed: {e!r}")
            if self._answering:
                return self.abort()  # an answer half sent cannot be mended
            self.whole(502, [(b"content-type", b"text/plain")], b"copilot-pool relay failed\n")
        finally:
            claim.pooled.lease.release()
            self.task = None
        self._request = self._body = None
        self._answering = False
        self._next_request()  # keep-alive: the next request may already be here

    # -- the answer (what relayed.answer writes) ----------------------------------------------------------

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self._answering = True
        self._chunked = not any(k.lower() == b"content-length" for k, _ in headers)
        if self._chunked:
            headers = [*headers, (b"transfer-encoding", b"chunked")]
        self._out.append(http1.response_head(status, headers))

    def data(self, chunk: bytes) -> None:
        if chunk:
            self._out.append(http1.chunk(chunk) if self._chunked else chunk)

    def end(self) -> None:
        if self._chunked:
            self._out.append(http1.LAST_CHUNK)
        self._chunked = False

    def flush(self) -> None:
        if self._out and not self.closed and self.transport is not None:
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def whole(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        headers = [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"transfer-encoding")]
        self.head(status, [*headers, (b"content-length", str(len(body)).encode())])
        self.data(body)
        self.end()
        self.flush()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
