"""The mitmproxy layer: options, hooks and commands mapped onto the pure pool core.

Read top to bottom, a pooled request goes: `request` (pick an account, or wait in line for one; swap the
credential, send it to that account's endpoint) -> `responseheaders` (stream SSE) -> `response` (classify the
answer; cool, refresh or credit the account; when the answer says "another account" and no byte reached the
client, send it again on another account with our own client; count every attempt out; redact the credential
kept in the flow) or `error` (count it out, redact).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlsplit

import httpx
from mitmproxy import command, ctx, exceptions, http

from . import tasks, watch
from .accounts import AccountConfig, AccountsFileError, legacy_account, load_accounts_file
from .affinity import Affinity, conversation_key
from .classify import Outcome, Verdict, classify, connection_error
from .pool import Account, Lease, NoAccountAvailable
from .quota import from_headers, http_fetch_user, poll_forever
from .routing import Route, route_for, sends_github_token
from .service import PoolService, UnknownAccount
from .strategies import DEFAULT_STRATEGY, STRATEGIES
from .tokens import DEFAULT_GITHUB_API, http_exchange
from .waiting import WaitQueue

log = logging.getLogger("copilot_pool")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per token exchange is noise in mitmproxy's log

DEFAULT_TOKEN_FILE = "~/.local/share/copilot-api/github_token"
DEFAULT_COOLDOWN = 60
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_MAX_WAIT = 30
DEFAULT_AFFINITY_TTL = 3600
DEFAULT_QUOTA_POLL = 300
COOLING_MARKER = ":hourglass:"
# Not forwarded when we send a request again ourselves: hop-by-hop, or recomputed by the client.
NOT_RESENT = frozenset({b"host", b"content-length", b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization", b"transfer-encoding", b"te", b"upgrade"})
NOT_RETURNED = frozenset({b"content-length", b"connection", b"keep-alive", b"transfer-encoding"})


@dataclass(eq=False)
class Pooled:
    """One pooled client request: the attempt in progress and the ones before it."""

    lease: Lease  # the current attempt's claim; every attempt holds its own and releases it exactly once
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


class CopilotPool:
    def __init__(self) -> None:
        # The addon's own clients ignore HTTPS_PROXY: it often points at this very proxy.
        self.client = httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(20.0))
        # Re-sent inference requests: answers can take minutes; many run at once.
        self.upstream = httpx.AsyncClient(
            trust_env=False,
            timeout=httpx.Timeout(600.0, connect=10.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )
        self.service = PoolService(http_exchange(self.client, lambda: ctx.options.pool_github_api))
        self.waits = WaitQueue(self.service.pool)
        self.service.pool.on_release = self.waits.wake
        self.affinity = Affinity(self.service.clock, DEFAULT_AFFINITY_TTL)
        self.passthrough = True  # no account source configured: leave all traffic alone
        self.pooled: dict[str, Pooled] = {}  # flow id -> its request's attempts, until response or error
        self.background: set[asyncio.Task] = set()
        self.watcher_task: asyncio.Task | None = None

    # -- options ------------------------------------------------------------------------------------

    def load(self, loader) -> None:
        loader.add_option("pool_accounts", str, "", "Path of the accounts file (JSON). Unset: a single account from GH_TOKEN, GITHUB_TOKEN or pool_github_token_file.")
        loader.add_option("pool_strategy", str, DEFAULT_STRATEGY, "How to pick an account per request.", choices=list(STRATEGIES))
        loader.add_option("pool_github_api", str, DEFAULT_GITHUB_API, "Base URL of the GitHub API used for the Copilot token exchange and quota (GitHub Enterprise data residency: https://api.<tenant>.ghe.com).")
        loader.add_option("pool_github_token_file", str, DEFAULT_TOKEN_FILE, "Legacy single-token file, used when pool_accounts is unset.")
        loader.add_option("pool_cooldown", int, DEFAULT_COOLDOWN, "Seconds to cool an account after a 429 that carries no Retry-After.")
        loader.add_option("pool_max_attempts", int, DEFAULT_MAX_ATTEMPTS, "Accounts a request may try (429, 402, 401, connection error: the next one) before its answer goes back to the client.")
        loader.add_option("pool_max_wait", int, DEFAULT_MAX_WAIT, "Seconds a request may wait, in line, for an account when none can take it now (0: answer 429 at once).")
        loader.add_option("pool_affinity_ttl", int, DEFAULT_AFFINITY_TTL, "Seconds a conversation (X-Interaction-Id, else VScode-SessionId) stays bound to its account after its last turn (0: no affinity).")
        loader.add_option("pool_quota_poll", int, DEFAULT_QUOTA_POLL, "Seconds between asking /copilot_internal/user for the quota of accounts whose answers did not report it lately (0: never ask).")

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "pool_strategy" in updated:
            try:
                self.service.pool.set_strategy(opts.pool_strategy)
            except ValueError as e:
                raise exceptions.OptionsError(f"pool_strategy: {e}") from None
        for name, low, high in (
            ("pool_cooldown", 1, 86400),
            ("pool_max_attempts", 1, 10),
            ("pool_max_wait", 0, 3600),
            ("pool_affinity_ttl", 0, 7 * 86400),
            ("pool_quota_poll", 0, 86400),
        ):
            value = getattr(opts, name)
            if name in updated and not low <= value <= high:
                raise exceptions.OptionsError(f"{name}: must be between {low} and {high}, got {value}")
        if "pool_affinity_ttl" in updated:
            self.affinity.ttl = opts.pool_affinity_ttl
        if "pool_github_api" in updated:
            parsed = urlparse(opts.pool_github_api)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise exceptions.OptionsError(f"pool_github_api: not an http(s) URL: {opts.pool_github_api!r}")
        if updated & {"pool_accounts", "pool_github_token_file"}:
            self._load_accounts(raise_errors=self.service.running)

    def _load_accounts(self, *, raise_errors: bool) -> bool:
        """Apply the account set the options name. A bad accounts file changes nothing: at start-up its error
        stops mitmdump; later it is raised as an OptionsError, which mitmproxy rolls back and shows."""
        try:
            configs = self._account_configs()
        except AccountsFileError as e:
            if raise_errors:
                raise exceptions.OptionsError(str(e)) from None
            log.error(f"pool: {e}")  # at start-up an error log makes mitmdump exit with status 1
            return False
        if not configs and not ctx.options.pool_accounts:
            log.warning(
                "pool: no accounts configured, passing all traffic through untouched. "
                "Set pool_accounts=<accounts.json>, GH_TOKEN, or pool_github_token_file."
            )
        self._apply(configs)
        if self.service.running:
            self._watch()
        return True

    def _account_configs(self) -> list[AccountConfig]:
        """The accounts the options name: the accounts file, else the legacy single token (maybe none)."""
        if ctx.options.pool_accounts:
            return load_accounts_file(ctx.options.pool_accounts)
        legacy = legacy_account(ctx.options.pool_github_token_file)
        return [legacy] if legacy else []

    def _apply(self, configs: list[AccountConfig]) -> None:
        self.passthrough = not ctx.options.pool_accounts and not configs
        changes = self.service.apply(configs)
        if changes.added and not self.service.running:
            log.info(f"pool: {len(configs)} account(s) loaded, strategy {self.service.pool.strategy.name}")

    # -- hot reload ---------------------------------------------------------------------------------

    def _watched_files(self) -> list[Path]:
        if not ctx.options.pool_accounts:
            return [Path(ctx.options.pool_github_token_file).expanduser()]
        token_files = [a.config.token_file for a in self.service.pool.accounts.values() if a.config.token_file]
        return [Path(ctx.options.pool_accounts).expanduser(), *token_files]

    def _watch(self) -> None:
        if self.watcher_task:
            self.watcher_task.cancel()
        self.watcher_task = watch.start(watch.FileWatcher(self._watched_files, self._files_changed, self.service.clock))

    def _files_changed(self) -> None:
        """Best effort: a missing, half-written or invalid file leaves the running pool exactly as it was."""
        try:
            configs = self._account_configs()
        except AccountsFileError as e:
            log.error(f"pool: accounts file change ignored, the pool keeps its accounts: {e}")
            return
        self._apply(configs)

    def running(self) -> None:
        self.service.start()
        self._watch()
        fetch = http_fetch_user(self.client, lambda: ctx.options.pool_github_api)
        accounts = lambda: self.service.pool.accounts.values()  # noqa: E731
        self._spawn(poll_forever(accounts, fetch, self.service.clock, lambda: ctx.options.pool_quota_poll))

    def done(self) -> None:
        in_flight = sum(a.in_flight for a in self.service.pool.accounts.values())
        log.info(f"pool: stopping with {in_flight} request(s) in flight, {len(self.waits)} waiting")
        if self.watcher_task:
            self.watcher_task.cancel()
        self.service.stop()
        self.waits.close()
        for task in self.background:
            task.cancel()
        for pooled in self.pooled.values():
            pooled.lease.release()
        self.pooled.clear()

    # -- flows --------------------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or self.passthrough:
            return  # another addon (proxyauth) already answered, or there is no pool
        req = flow.request
        route = route_for(req.scheme, req.host, req.host_header, req.method, req.path)
        if route is None:
            return
        conversation = conversation_key(req.headers)
        try:
            lease, waited = await self.waits.acquire(ctx.options.pool_max_wait, prefer=self.affinity.get(conversation))
        except NoAccountAvailable as e:
            flow.response = _error_response(e)
            flow.comment = f"pool: no account ({e.code})"
            flow.marked = COOLING_MARKER if e.status == 429 else ":no_entry:"
            return
        if flow.error or not flow.live:
            lease.release()  # the client went away while we waited
            return
        pooled = Pooled(lease, route, req.path, sends_github_token(req.headers.get("authorization")), conversation)
        self.pooled[flow.id] = pooled
        base, credential = self._target(pooled)
        _point_at(req, base, pooled.path)
        req.headers["authorization"] = f"Bearer {credential}"
        flow.metadata["copilot_pool.account"] = lease.account.name
        flow.comment = f"pool: {lease.account.name} ({lease.reason}{f', waited {waited:.1f}s' if waited else ''})"

    def _target(self, pooled: Pooled) -> tuple[str, str]:
        """The endpoint the current attempt goes to and the credential it carries."""
        account, token = pooled.lease.account, pooled.lease.account.token
        assert token is not None  # acquire only hands out accounts holding a valid token
        pooled.tried.append(account)
        pooled.token_generation = account.token_generation
        base = token.api_endpoint if pooled.route is Route.API else token.proxy_endpoint
        credential = account.config.github_token if pooled.github_credential else token.value
        return base, credential

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if (
            flow.id in self.pooled
            and response is not None
            and response.status_code == 200
            and response.headers.get("content-type", "").startswith("text/event-stream")
        ):
            response.stream = True  # relay SSE events as they come, never buffer them

    async def response(self, flow: http.HTTPFlow) -> None:
        pooled = self.pooled.pop(flow.id, None)
        if pooled is None:
            return
        try:
            await self._settle(flow, pooled)
        finally:
            pooled.lease.release()
            flow.metadata["copilot_pool.account"] = pooled.lease.account.name
            flow.metadata["copilot_pool.attempts"] = pooled.attempts
            _redact(flow, pooled.lease.account.name)

    async def _settle(self, flow: http.HTTPFlow, pooled: Pooled) -> None:
        """Act on the answer; while it says "try another account", nothing reached the client yet and attempts
        remain, send the request again on another account and make that answer the flow's (buffered)."""
        response = flow.response
        assert response is not None
        verdict = self._judge(flow, pooled, response.status_code, response.headers, _error_body(response))
        while verdict.failover and not response.stream and len(pooled.tried) < ctx.options.pool_max_attempts:
            if verdict.refresh:
                await asyncio.sleep(0)  # let the refresh just spawned mark its account as refreshing first
            try:
                # Cooling, failed and refreshing accounts are not picked anyway; when none can serve, wait in line.
                lease, waited = await self.waits.acquire(ctx.options.pool_max_wait, exclude=pooled.exclude)
            except NoAccountAvailable as e:
                flow.comment += f"; no other account ({e.code})"
                if e.code != "pool_attempts_exhausted":
                    flow.response = _error_response(e)  # nothing can serve now: the pool's own answer says when
                break
            pooled.switch(lease)
            base, credential = self._target(pooled)
            url = base.rstrip("/") + pooled.path
            flow.comment += f"; retried on {lease.account.name} ({lease.reason}{f', waited {waited:.1f}s' if waited else ''})"
            try:
                status, headers, body = await self._resend(flow.request, url, credential)
            except httpx.HTTPError as e:
                verdict = self._judge_connection_error(flow, pooled, type(e).__name__)
                pooled.exclude.append(lease.account)
                continue
            flow.response = _make_response(status, headers, body)
            verdict = self._judge(flow, pooled, status, flow.response.headers, _error_body(flow.response))
        if len(pooled.tried) > 1 and verdict.outcome is Outcome.OK:
            flow.comment += ", buffered"
            flow.marked = ":repeat:"

    def _judge(self, flow: http.HTTPFlow, pooled: Pooled, status: int, headers, body: bytes | None) -> Verdict:
        """Classify one attempt's answer and apply it to its account (cooldown, refresh, quota, credit)."""
        pool, account = self.service.pool, pooled.lease.account
        verdict = classify(status, headers, body, self.service.clock.wall(), ctx.options.pool_cooldown)
        quota = from_headers(headers, self.service.clock.now())
        if quota is not None:
            account.quota = quota
        note = f" -> {verdict.describe()}"
        if verdict.cooldown is not None:
            pool.mark_cooldown(account, verdict.cooldown)
            account.rate_limited += 1
            remaining = pool.cooldown_remaining(account)
            note += f", {account.name} cooling {remaining:.0f}s"
            flow.marked = COOLING_MARKER
        elif verdict.refresh:
            flow.marked = ":warning:"
            note += f", refreshing {account.name}'s token"
            if account.token_generation == pooled.token_generation:  # not yet renewed since this attempt went out
                self._spawn(self.service.refresh(account.name, invalidate=True, reason=f"after a {status} from Copilot"))
        elif verdict.outcome is Outcome.OK:
            account.served += 1
            self.affinity.put(pooled.conversation, account.name)
        flow.comment += note
        pooled.attempts.append({"account": account.name, "status": status, "outcome": str(verdict.outcome)})
        return verdict

    def _judge_connection_error(self, flow: http.HTTPFlow, pooled: Pooled, what: str) -> Verdict:
        flow.comment += f" -> connection error ({what})"
        pooled.attempts.append({"account": pooled.lease.account.name, "status": 0, "outcome": str(Outcome.CONNECTION_ERROR)})
        return connection_error()

    async def _resend(self, request: http.Request, url: str, credential: str) -> tuple[int, httpx.Headers, bytes]:
        headers = [(k, v) for k, v in request.headers.fields if k.lower() not in NOT_RESENT and k.lower() != b"authorization"]
        headers.append((b"authorization", f"Bearer {credential}".encode()))
        outgoing = self.upstream.build_request(request.method, url, headers=headers, content=request.raw_content or b"")
        answer = await self.upstream.send(outgoing, stream=True)
        try:
            body = b"".join([chunk async for chunk in answer.aiter_raw()])  # as sent: content-encoding intact
        finally:
            await answer.aclose()
        return answer.status_code, answer.headers, body

    def error(self, flow: http.HTTPFlow) -> None:
        pooled = self.pooled.pop(flow.id, None)
        if pooled is not None:
            pooled.lease.release()
            flow.comment += f" -> {flow.error.msg if flow.error else 'error'}"
            _redact(flow, pooled.lease.account.name)

    def _spawn(self, coro) -> asyncio.Task:
        task = tasks.start(coro, f"copilot-pool {coro.__qualname__}")
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    # -- commands -----------------------------------------------------------------------------------

    @command.command("pool.status")
    def status(self) -> Sequence[str]:
        """One line per account: state, in flight, last used, cooldown, token expiry, served, 429s."""
        if self.passthrough:
            return ["pool: no accounts configured; all traffic passes through"]
        return self.service.status_lines()

    @command.command("pool.reload")
    def reload(self) -> str:
        """Re-read the accounts file now."""
        try:
            self._load_accounts(raise_errors=True)
        except exceptions.OptionsError as e:
            return f"reload failed, pool unchanged: {e}"
        return f"pool: {len(self.service.pool.accounts)} account(s)"

    @command.command("pool.refresh")
    def refresh(self, name: str) -> str:
        """Re-exchange one account's Copilot token now."""
        try:
            self.service.account(name)
        except UnknownAccount as e:
            return f"error: {e}"
        self._spawn(self.service.refresh(name, reason="pool.refresh"))
        return f"pool: refreshing {name}'s token"

    # -- operator commands (names in [a-z.] only: mitmweb's command bar accepts no others) -------------

    @command.command("pool.cooldown")
    def cooldown(self, name: str, seconds: int) -> str:
        """Cool an account for SECONDS from now (0 ends its cooldown)."""
        if seconds < 0:
            return "error: seconds must be 0 or more"
        try:
            self.service.set_cooldown(name, seconds)
        except UnknownAccount as e:
            return f"error: {e}"
        return f"pool: {name} cooling for {seconds}s" if seconds else f"pool: {name}'s cooldown ended"

    @command.command("pool.disable")
    def disable(self, name: str) -> str:
        """Take an account out of the pool until pool.enable (or its entry in the accounts file changes)."""
        try:
            self.service.disable(name)
        except UnknownAccount as e:
            return f"error: {e}"
        return f"pool: {name} disabled"

    @command.command("pool.enable")
    def enable(self, name: str) -> str:
        """Put a disabled account back into the pool."""
        try:
            account = self.service.enable(name)
        except UnknownAccount as e:
            return f"error: {e}"
        return f"pool: {name} {account.base_state.value}"


def _point_at(req: http.Request, base: str, path: str) -> None:
    """`req.url = base + path` at a third of the cost: each endpoint is parsed once, not once per request."""
    scheme, host, port, prefix = _endpoint(base)
    req.scheme, req.port = scheme, port
    req.host = host  # last: it rewrites the Host header (and :authority) from scheme, host and port
    if prefix:
        req.path = prefix + path


@functools.lru_cache(maxsize=256)
def _endpoint(base: str) -> tuple[str, str, int, str]:
    parts = urlsplit(base)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname or "", port, parts.path.rstrip("/")


def _error_response(e: NoAccountAvailable) -> http.Response:
    headers = {"content-type": "application/json"}
    if e.retry_after is not None:
        headers["retry-after"] = str(e.retry_after)
    body = json.dumps({"error": {"message": e.message, "code": e.code}})
    return http.Response.make(e.status, body, headers)


def _make_response(status: int, headers: httpx.Headers, body: bytes) -> http.Response:
    fields = [(k, v) for k, v in headers.raw if k.lower() not in NOT_RETURNED]
    response = http.Response.make(status, b"", fields)
    response.raw_content = body
    response.headers["content-length"] = str(len(body))
    return response


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
