"""The mitmproxy layer: options, hooks and commands mapped onto the pure pool core.

Read top to bottom, a pooled request goes: `request` (pick an account, swap the credential, send it to that
account's endpoint) -> `responseheaders` (stream SSE) -> `response` (a 429 becomes a cooldown, a 401 a token
refresh; count the request out; redact the credential kept in the flow) or `error` (count it out, redact).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import httpx
from mitmproxy import command, ctx, exceptions, http

from . import watch
from .accounts import AccountConfig, AccountsFileError, legacy_account, load_accounts_file
from .cooldown import retry_after_seconds
from .pool import Lease, NoAccountAvailable
from .routing import Route, route_for, sends_github_token
from .service import PoolService, UnknownAccount
from .strategies import DEFAULT_STRATEGY, STRATEGIES
from .tokens import DEFAULT_GITHUB_API, http_exchange

log = logging.getLogger("copilot_pool")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per token exchange is noise in mitmproxy's log

DEFAULT_TOKEN_FILE = "~/.local/share/copilot-api/github_token"
DEFAULT_COOLDOWN = 60
COOLING_MARKER = ":hourglass:"


class CopilotPool:
    def __init__(self) -> None:
        # The addon's own client ignores HTTPS_PROXY: it often points at this very proxy.
        self.client = httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(20.0))
        self.service = PoolService(http_exchange(self.client, lambda: ctx.options.pool_github_api))
        self.passthrough = True  # no account source configured: leave all traffic alone
        self.leases: dict[str, Lease] = {}  # flow id -> the account it holds, until response or error
        self.background: set[asyncio.Task] = set()
        self.watcher_task: asyncio.Task | None = None

    # -- options ------------------------------------------------------------------------------------

    def load(self, loader) -> None:
        loader.add_option("pool_accounts", str, "", "Path of the accounts file (JSON). Unset: a single account from GH_TOKEN, GITHUB_TOKEN or pool_github_token_file.")
        loader.add_option("pool_strategy", str, DEFAULT_STRATEGY, "How to pick an account per request.", choices=list(STRATEGIES))
        loader.add_option("pool_github_api", str, DEFAULT_GITHUB_API, "Base URL of the GitHub API used for the Copilot token exchange (GitHub Enterprise data residency: https://api.<tenant>.ghe.com).")
        loader.add_option("pool_github_token_file", str, DEFAULT_TOKEN_FILE, "Legacy single-token file, used when pool_accounts is unset.")
        loader.add_option("pool_cooldown", int, DEFAULT_COOLDOWN, "Seconds to cool an account after a 429 that carries no Retry-After.")

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "pool_strategy" in updated:
            try:
                self.service.pool.set_strategy(opts.pool_strategy)
            except ValueError as e:
                raise exceptions.OptionsError(f"pool_strategy: {e}") from None
        if "pool_cooldown" in updated and opts.pool_cooldown < 1:
            raise exceptions.OptionsError(f"pool_cooldown: must be at least 1 second, got {opts.pool_cooldown}")
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

    def done(self) -> None:
        if self.watcher_task:
            self.watcher_task.cancel()
        self.service.stop()
        for task in self.background:
            task.cancel()
        for lease in self.leases.values():
            lease.release()
        self.leases.clear()

    # -- flows --------------------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or self.passthrough:
            return  # another addon (proxyauth) already answered, or there is no pool
        req = flow.request
        route = route_for(req.scheme, req.host, req.host_header, req.method, req.path)
        if route is None:
            return
        try:
            lease = self.service.pool.acquire()
        except NoAccountAvailable as e:
            flow.response = _error_response(e)
            flow.comment = f"pool: no account ({e.code})"
            flow.marked = COOLING_MARKER if e.status == 429 else ":no_entry:"
            return
        account, token = lease.account, lease.account.token
        assert token is not None  # acquire only hands out accounts holding a valid token
        base = token.api_endpoint if route is Route.API else token.proxy_endpoint
        credential = account.config.github_token if sends_github_token(req.headers.get("authorization")) else token.value
        req.url = base.rstrip("/") + req.path
        req.headers["authorization"] = f"Bearer {credential}"
        self.leases[flow.id] = lease
        flow.metadata["copilot_pool.account"] = account.name
        flow.comment = f"pool: {account.name} ({lease.reason})"

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if (
            flow.id in self.leases
            and response is not None
            and response.status_code == 200
            and response.headers.get("content-type", "").startswith("text/event-stream")
        ):
            response.stream = True  # relay SSE events as they come, never buffer them

    def response(self, flow: http.HTTPFlow) -> None:
        lease = self.leases.pop(flow.id, None)
        if lease is None:
            return
        account, response = lease.account, flow.response
        assert response is not None
        if response.status_code == 429:
            hint = retry_after_seconds(response.headers, self.service.clock.wall())
            seconds = hint if hint is not None else ctx.options.pool_cooldown
            self.service.pool.mark_cooldown(account, seconds)
            account.rate_limited += 1
            remaining = self.service.pool.cooldown_remaining(account)
            flow.marked = COOLING_MARKER
            flow.comment += f" -> 429, {account.name} cooling {remaining:.0f}s"
        elif response.status_code == 401:
            flow.marked = ":warning:"
            flow.comment += f" -> 401, refreshing {account.name}'s token"
            self._spawn(self.service.refresh(account.name, invalidate=True, reason="after a 401 from Copilot"))
        elif 200 <= response.status_code < 300:
            account.served += 1
        lease.release()
        _redact(flow, account.name)

    def error(self, flow: http.HTTPFlow) -> None:
        lease = self.leases.pop(flow.id, None)
        if lease is not None:
            lease.release()
            _redact(flow, lease.account.name)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

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


def _error_response(e: NoAccountAvailable) -> http.Response:
    headers = {"content-type": "application/json"}
    if e.retry_after is not None:
        headers["retry-after"] = str(e.retry_after)
    body = json.dumps({"error": {"message": e.message, "code": e.code}})
    return http.Response.make(e.status, body, headers)


def _redact(flow: http.HTTPFlow, name: str) -> None:
    """Keep no pool credential in the flow that mitmdump prints, mitmweb shows and `-w` saves."""
    flow.request.headers["authorization"] = f"Bearer <pool:{name}>"
