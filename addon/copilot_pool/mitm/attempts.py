"""The attempts of one pooled request, from the first (mitmproxy's own connection) to the final answer.

`begin` (request hook) picks an account, or waits in line for one, swaps its credential in and points the
request at its endpoint. `settle` (response hook) judges each answer (core/classify.py) and records it on the
account (Pool.record: served, or cooling), and while the answer says "try another account", nothing reached
the client yet and attempts remain, sends the request again on another account with the addon's own client.
`failed` (error hook) counts the attempt out. Every attempt holds its own lease and releases it exactly once;
the credential kept in the flow is redacted once its answer is in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from mitmproxy import flow as mitmflow
from mitmproxy import http

from .. import LOGGER_NAME
from ..core.affinity import conversation_key
from ..core.classify import Outcome, Verdict, classify, connection_error
from ..core.endpoints import Endpoint, UntrustedEndpoint, trusted_endpoint
from ..core.model import Account, Lease
from ..core.pool import NoAccount, Unavailable
from ..core.quota import from_headers
from ..core.routing import Route, sends_github_token
from ..runtime.service import PoolService
from . import answers
from .settings import Settings

log = logging.getLogger(LOGGER_NAME)

COOLING_MARKER = ":hourglass:"
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
    exclude: list[Account] = field(default_factory=list)  # not to be tried again for this request
    refused: list[Account] = field(default_factory=list)  # answered 401: may serve once more, on a new token
    attempts: list[dict] = field(default_factory=list)  # what each attempt got, for flow.metadata

    def switch(self, lease: Lease) -> None:
        self.lease.release()
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
        conversation = conversation_key(req.headers)
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
        pooled = Pooled(lease, route, req.path, sends_github_token(req.headers.get("authorization")), conversation)
        try:
            endpoint, credential = self._target(pooled)
        except UntrustedEndpoint as e:
            lease.release()
            log.error(f"pool: account {lease.account.name}: {e}")
            flow.response = answers.untrusted_endpoint()
            flow.comment = f"pool: {lease.account.name}'s endpoint refused"
            return
        self.pooled[flow.id] = pooled
        _point_at(req, endpoint, pooled.path)
        req.headers["authorization"] = f"Bearer {credential}"
        flow.metadata["copilot_pool.account"] = lease.account.name
        flow.comment = f"pool: {_picked(lease, waited)}"

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
        while verdict.failover and not response.stream and self._attempts_left(pooled, verdict):
            try:
                # Cooling, failed and refreshing accounts are not picked; when none can serve, wait in line.
                lease, waited = await self.service.waits.acquire(self.settings.max_wait, exclude=pooled.exclude)
            except NoAccount as e:
                flow.comment += f"; no other account ({answers.code(e)})"
                if e.reason is not Unavailable.EXHAUSTED or verdict.refresh:
                    flow.response = answers.no_account(e)  # nothing can serve now: the pool's own answer says when
                    verdict = Verdict(Outcome.OTHER, flow.response.status_code)
                break
            pooled.switch(lease)
            try:
                endpoint, credential = self._target(pooled)
            except UntrustedEndpoint as e:
                log.error(f"pool: account {lease.account.name}: {e}")
                flow.comment += f"; {lease.account.name}'s endpoint refused"
                pooled.exclude.append(lease.account)
                continue
            flow.comment += f"; retried on {_picked(lease, waited)}"
            try:
                status, headers, body = await self._resend(flow.request, endpoint.url(pooled.path), credential)
            except httpx.HTTPError as e:
                verdict = self._judge_connection_error(flow, pooled, type(e).__name__)
                continue
            flow.response = answers.resent(status, headers, body)
            verdict = self._judge(flow, pooled, status, flow.response.headers, _error_body(flow.response))
        if verdict.refresh:  # every try ended in a 401: no client should see a 401 the pool's token earned
            flow.response = answers.no_account(NoAccount(Unavailable.EXHAUSTED))
        if len(pooled.tried) > 1 and verdict.outcome is Outcome.OK:
            flow.comment += ", buffered"
            flow.marked = ":repeat:"

    def _attempts_left(self, pooled: Pooled, verdict: Verdict) -> bool:
        """pool_max_attempts in all, and one more after a 401 on the last of them: the request never met a
        valid token, so it is owed a try on a freshly exchanged one."""
        return len(pooled.tried) < self.settings.max_attempts + (1 if verdict.refresh else 0)

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
        pooled.answered(account, verdict)
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
        pooled = self.pooled.pop(flow.id, None)
        if pooled is not None:
            pooled.lease.release()
            flow.comment += f" -> {flow.error.msg if flow.error else 'error'}"
            if _upstream_failed(flow):
                flow.comment += f", {self._connection_failed(pooled.lease.account)}"
            _redact(flow, pooled.lease.account.name)


def _picked(lease: Lease, waited: float) -> str:
    """'alice (least-busy among 3 ready, 0 in flight, waited 1.2s)'"""
    return f"{lease.account.name} ({lease.reason}{f', waited {waited:.1f}s' if waited else ''})"


def _point_at(req: http.Request, endpoint: Endpoint, path: str) -> None:
    """`req.url = endpoint.url(path)` at a third of the cost: the endpoint was parsed once, by the guard."""
    req.scheme, req.port = endpoint.scheme, endpoint.port
    req.host = endpoint.host  # last: it rewrites the Host header (and :authority) from scheme, host and port
    req.path = path


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
    flow.request.headers["authorization"] = f"Bearer <pool:{name}>"
