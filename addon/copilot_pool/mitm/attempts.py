"""The attempts of one pooled request, from the first (mitmproxy's own connection) to the final answer.

`begin` (request hook) picks an account, or waits in line for one, swaps its credential in and points the
request at its endpoint. `settle` (response hook) judges each answer (core/classify.py) and records it on the
account (Pool.record: served, or cooling), and while the answer says "try another account", nothing reached
the client yet and attempts remain, sends the request again on another account with the addon's own client.
`failed` (error hook) counts the attempt out. Every attempt holds its own lease and releases it exactly once;
the credential kept in the flow is redacted once its answer is in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from mitmproxy import http

from ..core.affinity import CONVERSATION_HEADERS, conversation_key
from ..core.classify import Outcome, Verdict, classify, connection_error
from ..core.model import Account, Lease
from ..core.pool import NoAccount, Unavailable
from ..core.quota import from_headers
from ..core.routing import Route, sends_github_token
from ..runtime.service import PoolService
from . import answers, rewrite
from .settings import Settings

COOLING_MARKER = ":hourglass:"
READ = frozenset({b"authorization", *(name.encode() for name in CONVERSATION_HEADERS)})  # of the client's request
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
    token_generation: int = 0  # the current account's token generation when the attempt was sent
    tried: list[Account] = field(default_factory=list)  # one entry per attempt
    exclude: list[Account] = field(default_factory=list)  # not to be tried again (connection errors)
    attempts: list[dict] = field(default_factory=list)  # what each attempt got, for flow.metadata

    def switch(self, lease: Lease) -> None:
        self.lease.release()
        self.lease = lease


class Attempts:
    def __init__(self, service: PoolService) -> None:
        self.service = service
        self.settings = Settings()  # the addon's current settings, replaced on every configure
        self.pooled: dict[str, Pooled] = {}  # flow id -> its request's attempts, until response or error
        # Re-sent inference requests: answers can take minutes; many run at once. trust_env=False: HTTPS_PROXY
        # often points at this very proxy.
        self.upstream = httpx.AsyncClient(
            trust_env=False,
            timeout=httpx.Timeout(600.0, connect=10.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )

    def close(self) -> None:
        """Count out every attempt still open (mitmproxy is stopping)."""
        for pooled in self.pooled.values():
            pooled.lease.release()
        self.pooled.clear()

    # -- request ------------------------------------------------------------------------------------

    async def begin(self, flow: http.HTTPFlow, route: Route) -> None:
        req = flow.request
        read = rewrite.pick(req.headers, READ)
        conversation = conversation_key(read)
        try:
            prefer = self.service.affinity.get(conversation)
            lease, waited = await self.service.waits.acquire(self.settings.max_wait, prefer=prefer)
        except NoAccount as e:
            flow.response = answers.no_account(e)
            flow.comment = f"pool: no account ({answers.code(e)})"
            flow.marked = COOLING_MARKER if flow.response.status_code == 429 else ":no_entry:"
            return
        if flow.error or not flow.live:
            lease.release()  # the client went away while we waited
            return
        pooled = Pooled(lease, route, req.path, sends_github_token(read.get("authorization")), conversation)
        self.pooled[flow.id] = pooled
        base, credential = self._target(pooled)
        rewrite.point_at(req, base, pooled.path, f"Bearer {credential}")
        flow.metadata["copilot_pool.account"] = lease.account.name
        flow.comment = f"pool: {_picked(lease, waited)}"

    def _target(self, pooled: Pooled) -> tuple[str, str]:
        """The endpoint the current attempt goes to and the credential it carries."""
        account, token = pooled.lease.account, pooled.lease.account.token
        assert token is not None  # acquire only hands out accounts holding a valid token
        pooled.tried.append(account)
        pooled.token_generation = account.token_generation
        base = token.api_endpoint if pooled.route is Route.API else token.proxy_endpoint
        credential = account.config.github_token if pooled.github_credential else token.value
        return base, credential

    # -- responseheaders ----------------------------------------------------------------------------

    def stream_sse(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if (
            flow.id in self.pooled
            and response is not None
            and response.status_code == 200
            and response.headers.get("content-type", "").startswith("text/event-stream")
        ):
            response.stream = True  # relay SSE events as they come, never buffer them

    # -- response -----------------------------------------------------------------------------------

    async def settle(self, flow: http.HTTPFlow) -> None:
        pooled = self.pooled.pop(flow.id, None)
        if pooled is None:
            return
        try:
            await self._fail_over(flow, pooled)
        finally:
            pooled.lease.release()
            flow.metadata["copilot_pool.account"] = pooled.lease.account.name
            flow.metadata["copilot_pool.attempts"] = pooled.attempts
            _redact(flow, pooled.lease.account.name)

    async def _fail_over(self, flow: http.HTTPFlow, pooled: Pooled) -> None:
        """Act on the answer; while it says "try another account", nothing reached the client yet and attempts
        remain, send the request again on another account and make that answer the flow's (buffered)."""
        response = flow.response
        assert response is not None
        verdict = self._judge(flow, pooled, response.status_code, response.headers, _error_body(response))
        while verdict.failover and not response.stream and len(pooled.tried) < self.settings.max_attempts:
            try:
                # Cooling, failed and refreshing accounts are not picked; when none can serve, wait in line.
                lease, waited = await self.service.waits.acquire(self.settings.max_wait, exclude=pooled.exclude)
            except NoAccount as e:
                flow.comment += f"; no other account ({answers.code(e)})"
                if e.reason is not Unavailable.EXHAUSTED:
                    flow.response = answers.no_account(e)  # nothing can serve now: the pool's own answer says when
                break
            pooled.switch(lease)
            base, credential = self._target(pooled)
            flow.comment += f"; retried on {_picked(lease, waited)}"
            try:
                status, headers, body = await self._resend(flow.request, base.rstrip("/") + pooled.path, credential)
            except httpx.HTTPError as e:
                verdict = self._judge_connection_error(flow, pooled, type(e).__name__)
                pooled.exclude.append(lease.account)
                continue
            flow.response = answers.resent(status, headers, body)
            verdict = self._judge(flow, pooled, status, flow.response.headers, _error_body(flow.response))
        if len(pooled.tried) > 1 and verdict.outcome is Outcome.OK:
            flow.comment += ", buffered"
            flow.marked = ":repeat:"

    def _judge(
        self, flow: http.HTTPFlow, pooled: Pooled, status: int, headers: Mapping[str, str], body: bytes | None
    ) -> Verdict:
        """Classify one attempt's answer and apply it to its account: cooldown, token refresh, quota, credit."""
        service, account = self.service, pooled.lease.account
        verdict = classify(status, headers, body, service.clock.wall(), self.settings.cooldown)
        quota = from_headers(headers, service.clock.now())
        if quota is not None:
            service.pool.quota_seen(account, quota)
        cooling_until = service.pool.record(account, verdict)  # a 429 or 402 becomes a cooldown here
        note = f" -> {verdict.describe()}"
        if cooling_until is not None:
            note += f", {account.name} cooling {cooling_until - service.clock.now():.0f}s"
            flow.marked = COOLING_MARKER
        elif verdict.refresh:
            flow.marked = ":warning:"
            note += f", refreshing {account.name}'s token"
            service.token_refused(account, pooled.token_generation, f"after a {status} from Copilot")
        elif verdict.outcome is Outcome.OK:
            service.affinity.put(pooled.conversation, account.name)
        flow.comment += note
        pooled.attempts.append({"account": account.name, "status": status, "outcome": str(verdict.outcome)})
        return verdict

    def _judge_connection_error(self, flow: http.HTTPFlow, pooled: Pooled, what: str) -> Verdict:
        flow.comment += f" -> connection error ({what})"
        pooled.attempts.append(
            {"account": pooled.lease.account.name, "status": 0, "outcome": str(Outcome.CONNECTION_ERROR)}
        )
        return connection_error()

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
        pooled = self.pooled.pop(flow.id, None)
        if pooled is not None:
            pooled.lease.release()
            flow.comment += f" -> {flow.error.msg if flow.error else 'error'}"
            _redact(flow, pooled.lease.account.name)


def _picked(lease: Lease, waited: float) -> str:
    """'alice (least-busy among 3 ready, 0 in flight, waited 1.2s)'"""
    return f"{lease.account.name} ({lease.reason}{f', waited {waited:.1f}s' if waited else ''})"


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
