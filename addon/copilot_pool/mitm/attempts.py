"""The attempts of one pooled request, from the first (mitmproxy's own connection) to the final answer.

`begin` (request hook) works out what the request needs (its session token's account, its model, its
conversation's account), picks an account or waits in line for one, swaps its credential in and points the
request at its endpoint. `settle` (response hook) judges each answer (core/classify.py) and records it on the
account (Pool.record: served, or cooling), and while the answer says "try another account", nothing reached
the client yet and attempts remain, sends the request again on another account with the addon's own client.
A WebSocket keeps its account until it closes (`closed`). `failed` (error hook) counts the attempt out. Every
attempt holds its own lease and releases it exactly once; the credential kept in the flow is redacted once its
answer is in. A streaming request diverted to the relay (mitm/relay.py) makes its attempts there, with `_judge`
and `_switch` from here; `settle` then only records.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from mitmproxy import flow as mitmflow
from mitmproxy import http

from .. import LOGGER_NAME
from ..core.affinity import CONVERSATION_HEADERS, conversation_key
from ..core.bodies import model_of
from ..core.catalogue import MODEL_ENDPOINTS, merged, websocket_endpoint
from ..core.classify import Outcome, Verdict, classify, connection_error
from ..core.endpoints import Endpoint, UntrustedEndpoint, trusted_endpoint
from ..core.limits import Scope
from ..core.model import Account, Lease, State
from ..core.parse import json_object
from ..core.pool import NoAccount, Unavailable, Want
from ..core.quota import from_headers, usage_limits
from ..core.routing import WEBSOCKET_PATHS, Route, sends_github_token
from ..core.sessions import MINTING_PATHS, SESSION_HEADER, minted
from ..core.usage import NANO_PER_CREDIT, TAIL, credits, nano_aiu, next_day_start
from ..observe.statelog import local_time
from ..runtime.service import PoolService
from . import answers, rewrite, story, streamstore
from .settings import Settings

log = logging.getLogger(LOGGER_NAME)

COOLING_MARKER = ":hourglass:"
# What `begin` reads of the client's request, in one pass over its headers.
READ = frozenset(
    {b"authorization", b"content-encoding", SESSION_HEADER.encode(), *(name.encode() for name in CONVERSATION_HEADERS)}
)
# Not forwarded when we send a request again ourselves: hop-by-hop, or recomputed by the client.
NOT_RESENT = frozenset(
    {
        b"host",
        b"content-length",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"transfer-encoding",
        b"te",
        b"upgrade",
        b"authorization",
    }
)


@dataclass(eq=False)
class Pooled:
    """One pooled client request: the attempt in progress and the ones before it."""

    lease: Lease  # the current attempt's claim
    route: Route
    path: str  # as the client sent it: every attempt goes to its account's endpoint + this
    github_credential: bool  # the client sent a GitHub token (Copilot CLI), not a Copilot token
    conversation: str | None
    want: Want  # what every attempt needs of its account
    websocket: bool = False  # an upgrade: mitmproxy's own connection only, no re-send
    model: str | None = None  # what the body asks for: scopes cooldowns, counts credits
    user: str | None = None  # the proxy user (proxyauth) it is counted to
    store: streamstore.StreamStore | None = None  # a streamed answer: what of it is kept (and its end's credits)
    rate_limited: int = 0  # upstream 429s its attempts met
    token_generation: int = 0  # the current account's token generation when the attempt was sent
    tried: list[Account] = field(default_factory=list)  # one entry per attempt
    exclude: list[Account] = field(default_factory=list)  # not to be tried again for this request
    refused: list[Account] = field(default_factory=list)  # answered 401: may serve once more, on a new token
    attempts: list[dict] = field(default_factory=list)  # what each attempt got, for flow.metadata
    relayed: bool = False  # its attempts are made, and judged, by the relay

    def switch(self, lease: Lease) -> None:
        self.lease.release()  # exactly once: a no-op when the attempt was already counted out
        self.lease = lease

    def answered(self, account: Account, verdict: Verdict) -> None:
        """An account that answered is not tried again for this request (whatever its cooldown says), except
        once after a 401: with its freshly exchanged token."""
        if verdict.refresh and account not in self.refused:
            self.refused.append(account)
        elif account not in self.exclude:
            self.exclude.append(account)


class Attempts:
    def __init__(self, service: PoolService) -> None:
        self.service = service
        self.settings = Settings()  # the addon's current settings, replaced on every configure
        self.pooled: dict[str, Pooled] = {}  # flow id -> its request's attempts, until response or error
        self.sockets: dict[str, Pooled] = {}  # flow id -> an open WebSocket's attempt, until it closes
        self._listing: tuple[tuple[int, int], dict | None, frozenset[str]] = ((-1, -1), None, WEBSOCKET_PATHS)
        # Re-sent inference requests: answers can take minutes; many run at once. trust_env=False: HTTPS_PROXY
        # often points at this very proxy.
        self.upstream = httpx.AsyncClient(
            trust_env=False,
            timeout=httpx.Timeout(600.0, connect=10.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )

    def close(self) -> None:
        """Count out every attempt still open (mitmproxy is stopping)."""
        for pooled in [*self.pooled.values(), *self.sockets.values()]:
            pooled.lease.release()
        self.pooled.clear()
        self.sockets.clear()

    # -- the pool's catalogue ------------------------------------------------------------------------

    def catalogue(self) -> tuple[dict | None, frozenset[str]]:
        """The merged `/models` answer of the accounts that can serve (None while no catalogue is known) and
        every path some catalogue lists as a WebSocket; rebuilt only when a catalogue or a state changed."""
        pool = self.service.pool
        key = (pool.catalogues_version, pool.version)
        if self._listing[0] != key:
            usable = [
                a.catalogue
                for a in pool.accounts.values()
                if a.catalogue is not None and a.base_state not in (State.FAILED, State.DISABLED)
            ]
            paths = frozenset().union(WEBSOCKET_PATHS, *(c.websocket_paths for c in usable))
            self._listing = (key, merged(usable) if usable else None, paths)
        return self._listing[1], self._listing[2]

    # -- request ------------------------------------------------------------------------------------

    async def begin(self, flow: http.HTTPFlow, route: Route, websocket: bool = False) -> None:
        req = flow.request
        path = req.path.split("?", 1)[0]
        if path == "/models" and req.method == "GET":
            listing, _ = self.catalogue()
            if listing is not None:  # every model some account serves, in one answer
                flow.response = answers.made(200, json.dumps(listing))
                flow.comment = f"pool: /models merged from the accounts' catalogues ({len(listing['data'])} models)"
                return
        read = rewrite.pick(req.headers, READ)  # one pass over the client's headers
        conversation = conversation_key(read)
        user = _proxy_user(flow)
        if user is not None and (capped := self._over_daily_cap(user)) is not None:
            flow.response = capped
            flow.comment = f"pool: {user} has spent the daily cap of {self.settings.user_daily_credits} credits"
            return
        model = model_of(req.raw_content) if path in MODEL_ENDPOINTS and "content-encoding" not in read else None
        want = self._want(read, path, websocket, conversation, model)
        if want is None:
            flow.response = answers.session_refused()
            flow.comment = "pool: session token the pool never saw minted -> 401, the client mints a new one"
            return
        try:
            lease, waited = await self.service.waits.acquire(self.settings.max_wait, want)
        except NoAccount as e:
            self._no_account(flow, e, want)
            flow.comment = f"pool: no account ({answers.code(e)})"
            return
        if flow.error or not flow.live:
            lease.release()  # the client went away while we waited
            return
        credential_kind = sends_github_token(read.get("authorization"))
        pooled = Pooled(lease, route, req.path, credential_kind, conversation, want, websocket, model, user)
        try:
            endpoint, credential = self._target(pooled)
        except UntrustedEndpoint as e:
            lease.release()
            log.error(f"pool: account {lease.account.name}: {e}")
            flow.response = answers.untrusted_endpoint()
            flow.comment = f"pool: {lease.account.name}'s endpoint refused"
            return
        self.pooled[flow.id] = pooled
        rewrite.point_at(req, endpoint.base, pooled.path, f"Bearer {credential}")
        flow.metadata["copilot_pool.account"] = lease.account.name
        flow.comment = f"pool: {_picked(lease, waited)}"

    def _want(
        self, read: dict[str, str], path: str, websocket: bool, conversation: str | None, model: str | None
    ) -> Want | None:
        """What the request needs of an account; None for a session token whose account the pool never saw.
        `read`: the client's headers this needs (READ)."""
        only = None
        if session := read.get(SESSION_HEADER):
            only = self.service.sessions.account_for(session)
            if only is None:
                return None
        prefer = self.service.affinity.get(conversation)
        if websocket:
            return Want(prefer, only, endpoint=websocket_endpoint(path))
        if model is None:
            return Want(prefer, only)
        return Want(prefer, only, model, MODEL_ENDPOINTS[path])

    def _over_daily_cap(self, user: str) -> http.Response | None:
        """The pool's own 429 once the proxy user spent the per-user daily cap (pool_user_daily_credits)."""
        cap = self.settings.user_daily_credits
        wall = self.service.clock.wall()
        if not cap or self.service.ledger.spent_today(user, wall) < cap * NANO_PER_CREDIT:
            return None
        wait = max(1, math.ceil(next_day_start(wall) - wall))
        message = (
            f"{user} has spent its daily cap of {cap} AI credits (pool_user_daily_credits); it resets at 00:00 UTC."
        )
        return answers.error(429, "pool_user_daily_cap", message, {"retry-after": str(wait)})

    def _no_account(self, flow: http.HTTPFlow, e: NoAccount, want: Want) -> None:
        flow.response = self.no_account_answer(e, want)
        flow.marked = COOLING_MARKER if flow.response.status_code == 429 else ":no_entry:"

    def no_account_answer(self, e: NoAccount, want: Want) -> http.Response:
        """The pool's own answer when no account takes a request that wants `want`."""
        if want.only is not None and e.reason is not Unavailable.BUSY:
            e = NoAccount(Unavailable.SESSION_LOST)  # whatever kept its account away, the token works nowhere else
        plans = ", ".join(f"{a.name}: {a.token.sku if a.token else '?'}" for a in self.service.pool.accounts.values())
        return answers.no_account(e, want.model, want.endpoint, plans)

    def _target(self, pooled: Pooled) -> tuple[Endpoint, str]:
        """The endpoint the current attempt goes to and the credential it carries; raise UntrustedEndpoint
        (nothing is sent) when pool credentials may not go there (core/endpoints.py)."""
        account, token = pooled.lease.account, pooled.lease.account.token
        assert token is not None  # acquire only hands out accounts holding a valid token
        pooled.tried.append(account)
        pooled.token_generation = account.token_generation
        base = token.api_endpoint if pooled.route is Route.API else token.proxy_endpoint
        credential = account.config.github_token if pooled.github_credential else token.value
        return trusted_endpoint(self.service.endpoints, base), credential

    # -- responseheaders ----------------------------------------------------------------------------

    def stream_sse(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        pooled = self.pooled.get(flow.id)
        if (
            pooled is not None
            and response is not None
            and response.status_code == 200
            and response.headers.get("content-type", "").startswith("text/event-stream")
        ):
            # relay SSE events as they come, never buffered; keep the first MBs for mitmweb and the end, where
            # the usage event is, for the credits
            pooled.store = streamstore.stream(response, self.settings.stream_store_bytes)

    # -- response -----------------------------------------------------------------------------------

    async def settle(self, flow: http.HTTPFlow) -> None:
        pooled = self.pooled.pop(flow.id, None)
        if pooled is None:
            return
        try:
            if not pooled.relayed:
                await self._fail_over(flow, pooled)
            self._learn_session(flow, pooled)
            self._count(flow, pooled)
        finally:
            if pooled.websocket and flow.response is not None and flow.response.status_code == 101:
                self.sockets[flow.id] = pooled  # the account serves the socket until it closes
                flow.comment += ", WebSocket open"
            else:
                pooled.lease.release()
            flow.metadata["copilot_pool.account"] = pooled.lease.account.name
            flow.metadata["copilot_pool.attempts"] = pooled.attempts
            _redact(flow, pooled.lease.account.name)
            streamstore.keep(flow)
            story.tell(flow, pooled.lease.account.name, pooled.model, flow.metadata.get("copilot_pool.credits"))

    def _learn_session(self, flow: http.HTTPFlow, pooled: Pooled) -> None:
        """An auto-model session minted: its token works only through the account that minted it."""
        response = flow.response
        if pooled.path.split("?", 1)[0] in MINTING_PATHS and response is not None and 200 <= response.status_code < 300:
            session = minted(response.get_content(strict=False))
            if session is not None:
                self.service.sessions.bind(session[0], pooled.lease.account.name, session[1])
                flow.comment += f", session bound to {pooled.lease.account.name}"

    def _count(self, flow: http.HTTPFlow, pooled: Pooled) -> None:
        """What the answer cost (its `copilot_usage`), to its account and model and to the proxy user."""
        response = flow.response
        nano = None
        if response is not None and 200 <= response.status_code < 300:
            end = pooled.store.tail.data if pooled.store else (response.get_content(strict=False) or b"")[-TAIL:]
            nano = nano_aiu(end)
        if nano is not None:
            self.service.pool.credits_spent(pooled.lease.account, pooled.model, nano)
            flow.metadata["copilot_pool.credits"] = credits(nano)
        if pooled.user is not None:
            self.service.ledger.spent(pooled.user, nano, pooled.rate_limited, self.service.clock.wall())

    def socket_message(self, flow: http.HTTPFlow) -> None:
        """A WebSocket message: an answer's last event carries its usage (websocket_message)."""
        pooled = self.sockets.get(flow.id)
        message = flow.websocket.messages[-1] if pooled is not None and flow.websocket else None
        if message is None or message.from_client or b"total_nano_aiu" not in message.content:
            return
        nano = nano_aiu(message.content[-TAIL:])
        if nano is not None:
            model = json_object(message.content).get("response", {}).get("model")
            self.service.pool.credits_spent(pooled.lease.account, model if isinstance(model, str) else None, nano)
            if pooled.user is not None:
                self.service.ledger.spent(pooled.user, nano, 0, self.service.clock.wall())
            flow.metadata["copilot_pool.credits"] = flow.metadata.get("copilot_pool.credits", 0) + credits(nano)

    def closed(self, flow: http.HTTPFlow) -> None:
        """A pooled WebSocket closed (websocket_end): its account is free again."""
        pooled = self.sockets.pop(flow.id, None)
        if pooled is not None:
            pooled.lease.release()
            messages = len(flow.websocket.messages) if flow.websocket else 0
            flow.comment += f" -> WebSocket closed after {messages} message(s)"

    async def _fail_over(self, flow: http.HTTPFlow, pooled: Pooled) -> None:
        """Act on the answer; while it says "try another account", nothing reached the client yet and attempts
        remain, send the request again on another account and make that answer the flow's (buffered)."""
        response = flow.response
        assert response is not None
        verdict = self._judge(flow, pooled, response.status_code, response.headers, _error_body(response))
        resendable = not response.stream and not pooled.websocket  # our client re-sends neither
        while verdict.failover and resendable and self._attempts_left(pooled, verdict):
            try:
                endpoint, credential = await self._switch(flow, pooled)
            except NoAccount as e:
                if e.reason is not Unavailable.EXHAUSTED or verdict.refresh:
                    self._no_account(flow, e, pooled.want)  # nothing can serve now: the pool's own answer says why
                    verdict = Verdict(Outcome.OTHER, flow.response.status_code)
                break
            try:
                status, headers, body = await self._resend(flow.request, endpoint.url(pooled.path), credential)
            except httpx.HTTPError as e:
                verdict = self._judge_connection_error(flow, pooled, type(e).__name__)
                continue
            flow.response = answers.resent(status, headers, body)
            verdict = self._judge(flow, pooled, status, flow.response.headers, _error_body(flow.response))
        if verdict.refresh and resendable:  # every try ended in a 401: no client sees a 401 the pool's token earned
            flow.response = answers.no_account(NoAccount(Unavailable.EXHAUSTED))
        if len(pooled.tried) > 1 and verdict.outcome is Outcome.OK:
            flow.comment += ", buffered"
            flow.marked = ":repeat:"

    def _attempts_left(self, pooled: Pooled, verdict: Verdict) -> bool:
        """pool_max_attempts in all, and one more after a 401 on the last of them: the request never met a
        valid token, so it is owed a try on a freshly exchanged one."""
        return len(pooled.tried) < self.settings.max_attempts + (1 if verdict.refresh else 0)

    async def _switch(self, flow: http.HTTPFlow, pooled: Pooled) -> tuple[Endpoint, str]:
        """Move the request to another account that has what it needs (its session's, one serving its model):
        the endpoint and credential of its next attempt. The attempt before is over, so its lease goes first.
        Cooling, failed and refreshing accounts are not picked; when none can serve, wait in line. Raises
        NoAccount (noted in the comment) when waiting does not help."""
        pooled.lease.release()
        while True:
            try:
                lease, waited = await self.service.waits.acquire(self.settings.max_wait, pooled.want, pooled.exclude)
            except NoAccount as e:
                flow.comment += f"; no other account ({answers.code(e)})"
                raise
            pooled.switch(lease)
            try:
                endpoint, credential = self._target(pooled)
            except UntrustedEndpoint as e:
                log.error(f"pool: account {lease.account.name}: {e}")
                flow.comment += f"; {lease.account.name}'s endpoint refused"
                pooled.exclude.append(lease.account)
                lease.release()
                continue
            flow.comment += f"; retried on {_picked(lease, waited)}"
            return endpoint, credential

    def _judge(
        self, flow: http.HTTPFlow, pooled: Pooled, status: int, headers: Mapping[str, str], body: bytes | None
    ) -> Verdict:
        """Classify one attempt's answer and apply it to its account: cooldown, token refresh, quota, credit."""
        service, account = self.service, pooled.lease.account
        verdict = classify(status, headers, body, service.clock.wall(), self.settings.cooldown)
        now = service.clock.now()
        if (quota := from_headers(headers, now)) is not None:
            service.pool.quota_seen(account, quota)
        if limits := usage_limits(headers, now):
            service.pool.usage_limits_seen(account, limits)
        recorded = service.pool.record(account, verdict, pooled.model)  # a 429 or 402 becomes a cooldown here
        note = f" -> {verdict.describe()}"
        if recorded.cooling_until is not None:
            pooled.rate_limited += verdict.outcome is Outcome.RATE_LIMITED
            scope = f" for {pooled.model}" if recorded.scope is Scope.MODEL else ""
            note += f", {account.name} cooling {recorded.cooling_until - now:.0f}s{scope} ({verdict.reason})"
            flow.marked = COOLING_MARKER
            if recorded.pool_held_until is not None:
                note += f"; the whole pool holds {recorded.pool_held_until - now:.0f}s"
                log.warning(
                    f"pool: {verdict.reason} on {service.pool.storms.accounts} accounts within "
                    f"{service.pool.storms.window:.0f}s: a limit on the whole pool (the integration's or this "
                    f"address's), not on one account; no more rotation, requests wait until "
                    f"{local_time(service.clock.wall() + recorded.pool_held_until - now)}"
                )
        elif verdict.refresh:
            flow.marked = ":warning:"
            note += f", refreshing {account.name}'s token"
            service.token_refused(account, pooled.token_generation, f"after a {status} from Copilot")
        elif verdict.recatalogue:
            note += f", fetching {account.name}'s models again"
            service.pool.model_refused(account, pooled.model)  # nor for the next, until its catalogue is in
            service.catalogues.refresh(account)
        elif verdict.outcome is Outcome.OK:
            service.affinity.put(pooled.conversation, account.name)
        flow.comment += note
        pooled.attempts.append({"account": account.name, "status": status, "outcome": str(verdict.outcome)})
        pooled.answered(account, verdict)  # not tried again for this request (a 401: once, on a new token)
        return verdict

    def _judge_connection_error(self, flow: http.HTTPFlow, pooled: Pooled, what: str) -> Verdict:
        account = pooled.lease.account
        flow.comment += f" -> connection error ({what}), {self._connection_failed(account)}"
        pooled.attempts.append({"account": account.name, "status": 0, "outcome": str(Outcome.CONNECTION_ERROR)})
        verdict = connection_error()
        pooled.answered(account, verdict)
        return verdict

    def _connection_failed(self, account: Account) -> str:
        """The account's endpoint failed us before an answer: it cools, longer each time in a row."""
        until = self.service.pool.connection_failed(account)
        return f"{account.name} cooling {until - self.service.clock.now():.0f}s"

    async def _resend(self, request: http.Request, url: str, credential: str) -> tuple[int, httpx.Headers, bytes]:
        headers = [(k, v) for k, v in request.headers.fields if k.lower() not in NOT_RESENT]
        headers.append((b"authorization", f"Bearer {credential}".encode()))
        outgoing = self.upstream.build_request(request.method, url, headers=headers, content=request.raw_content or b"")
        answer = await self.upstream.send(outgoing, stream=True)
        try:
            body = b"".join([chunk async for chunk in answer.aiter_raw()])  # as sent: content-encoding intact
        finally:
            await answer.aclose()
        return answer.status_code, answer.headers, body

    # -- error --------------------------------------------------------------------------------------

    def failed(self, flow: http.HTTPFlow) -> None:
        pooled = self.pooled.pop(flow.id, None) or self.sockets.pop(flow.id, None)
        if pooled is not None:
            pooled.lease.release()
            flow.comment += f" -> {flow.error.msg if flow.error else 'error'}"
            if _upstream_failed(flow) and not pooled.relayed:  # the relay judges its own upstream
                flow.comment += f", {self._connection_failed(pooled.lease.account)}"
            _redact(flow, pooled.lease.account.name)
            streamstore.keep(flow)  # what arrived before the stream broke


def _proxy_user(flow: http.HTTPFlow) -> str | None:
    """The user name the client gave proxyauth (mitmproxy keeps it in the flow's metadata), if any."""
    auth = flow.metadata.get("proxyauth")
    return auth[0] if isinstance(auth, tuple) and auth and isinstance(auth[0], str) else None


def _picked(lease: Lease, waited: float) -> str:
    """'alice (least-busy among 3 ready, 0 in flight, waited 1.2s)'"""
    return f"{lease.account.name} ({lease.reason}{f', waited {waited:.1f}s' if waited else ''})"


# The error hook also fires when the client goes away or the flow is killed: no fault of the account's.
CLIENT_SIDE_ERRORS = ("Client disconnected", mitmflow.Error.KILLED_MESSAGE, "Request body exceeds")


def _upstream_failed(flow: http.HTTPFlow) -> bool:
    """The flow ended in an error on the account's side: refused, closed before a byte, reset mid-body, an
    answer that is no HTTP."""
    return flow.error is not None and not flow.error.msg.startswith(CLIENT_SIDE_ERRORS)


def _error_body(response: http.Response) -> bytes | None:
    """The body of a 4xx answer, decoded, for the error code in it; None when streamed or undecodable."""
    if response.stream or not 400 <= response.status_code < 500:
        return None
    try:
        return response.content
    except ValueError:
        return None


def _redact(flow: http.HTTPFlow, name: str) -> None:
    """Keep no pool credential in the flow that mitmdump prints, mitmweb shows and `-w` saves."""
    rewrite.replace(flow.request.headers, {b"authorization": f"Bearer <pool:{name}>".encode()})
