"""The one mitmproxy addon: options in, hooks out. The work is done by the parts it holds.

Read top to bottom, a pooled request goes: `request` (the status page answers its own host; a Copilot inference
call gets an account: mitm/attempts.py; a streaming one is diverted to the relay, mitm/relay.py, which makes its
attempts) -> `responseheaders` (stream SSE) -> `response` (judge the answer, fail over) or `error` (count the
attempt out).
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import ctx, exceptions, http

from .. import LOGGER_NAME, github
from ..core.exchange import Exchange, FetchModels, FetchUser
from ..core.routing import route_for
from ..runtime.accounts_file import AccountsFile, AccountsFileError, LegacyToken
from ..runtime.clock import Clock, SystemClock
from ..runtime.service import PoolService
from ..runtime.state import open_store
from . import contentview, settings
from .attempts import Attempts
from .commands import PoolCommands
from .guard import Guard
from .relay import Relay
from .statewatch import StateWatch
from .statuspage import StatusPage

log = logging.getLogger(LOGGER_NAME)
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per token exchange is noise in mitmproxy's log

ACCOUNT_OPTIONS = {"pool_accounts", "pool_github_token_file"}


class CopilotPool:
    def __init__(
        self,
        clock: Clock | None = None,
        exchange: Exchange | None = None,
        fetch_user: FetchUser | None = None,
        fetch_models: FetchModels | None = None,
    ) -> None:
        self.settings = settings.Settings()
        self._github = github.client()
        github_api = lambda: self.settings.github_api  # noqa: E731 - read at each call: the option may change
        self.service = PoolService(
            exchange or github.http_exchange(self._github, github_api),
            fetch_user or github.http_fetch_user(self._github, github_api),
            fetch_models or github.http_fetch_models(self._github),
            clock or SystemClock(),
        )
        self.passthrough = True  # no account source configured: leave all traffic alone
        self.store_for: str | None = None  # the pool_state the service's store was made for
        self.attempts = Attempts(self.service)
        self.relay = Relay(self.attempts)
        self.status_page = StatusPage(
            self.service.pool, self.service.ledger, lambda: self.passthrough, lambda: self.service.state.status()
        )
        self.state_watch = StateWatch(self.service.pool)
        self.guard = Guard()
        self.commands = PoolCommands(self.service, self._load_accounts, lambda: self.passthrough)

    # -- life cycle ---------------------------------------------------------------------------------

    def load(self, loader) -> None:
        settings.declare(loader)
        self.commands.register(loader)
        self.status_page.attach()
        contentview.register()

    def configure(self, updated: set[str]) -> None:
        new = settings.read(ctx.options)
        self.guard.check(ctx.options, updated, self.service.running)
        if "pool_state" in updated and new.state != self.settings.state and self.service.running:
            raise exceptions.OptionsError("pool_state: read at start-up only; restart mitmproxy to change it")
        self.settings = self.attempts.settings = new
        self.service.trust(new.endpoints)
        self.service.pool.set_strategy(new.strategy)
        self.service.affinity.ttl = new.affinity_ttl
        self.service.quota_poll_interval = new.quota_poll
        self.service.models_refresh_interval = new.models_refresh
        self.service.pool.storms.accounts = new.storm_accounts
        self.state_watch.summary_every = new.log_summary
        if self.store_for != new.state and not self.service.running:
            self.service.use_store(open_store(new.state))
            self.store_for = new.state
        self.service.share_tokens(new.share_tokens)
        if updated & ACCOUNT_OPTIONS:
            try:
                self._load_accounts()
            except AccountsFileError as e:
                # A bad accounts file changes nothing: at start-up its error log stops mitmdump (status 1); later
                # mitmproxy rolls the option change back and shows why.
                if self.service.running:
                    raise exceptions.OptionsError(str(e)) from None
                log.error(f"pool: {e}")

    def _load_accounts(self) -> None:
        """Apply the account set the options name; raise AccountsFileError, changing nothing, when it is bad."""
        source = (
            AccountsFile(self.settings.accounts)
            if self.settings.accounts
            else LegacyToken(self.settings.github_token_file)
        )
        changes = self.service.use(source)
        accounts = self.service.pool.accounts
        self.passthrough = not self.settings.accounts and not accounts
        if self.passthrough:
            log.warning(
                "pool: no accounts configured, passing all traffic through untouched. "
                "Set pool_accounts=<accounts.json>, GH_TOKEN, or pool_github_token_file."
            )
        elif changes.added and not self.service.running:
            log.info(f"pool: {len(accounts)} account(s) loaded, strategy {self.service.pool.strategy.name}")

    async def running(self) -> None:
        log.info(f"pool: running on the {type(asyncio.get_running_loop()).__module__.split('.')[0]} event loop")
        if not await self.service.open_state():
            return  # a state store that cannot be used: logged as an error, so mitmproxy stops
        self.service.start()
        self.state_watch.start()
        self.relay.start()

    def done(self) -> None:
        in_flight = sum(a.in_flight for a in self.service.pool.accounts.values())
        log.info(f"pool: stopping with {in_flight} request(s) in flight, {len(self.service.waits)} waiting")
        self.state_watch.stop()
        started = self.service.running
        self.service.stop()
        self.relay.stop()
        self.attempts.close()
        # done must stay synchronous; mitmproxy runs tasks eagerly, so the last write and the closes start now
        loop = asyncio.get_running_loop()
        if started:
            loop.create_task(self.service.state.close())
        self.status_page.detach()
        for client in (self._github, self.attempts.upstream):
            loop.create_task(client.aclose())

    # -- flows --------------------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return  # another addon (proxyauth) already answered
        req = flow.request
        host_header = req.host_header  # a scan of the headers: once
        if self.status_page.answer(flow, host_header) or self.passthrough:
            return
        websocket = req.method == "GET" and req.headers.get("upgrade", "").lower() == "websocket"
        _, websocket_paths = self.attempts.catalogue() if websocket else (None, frozenset())
        route = route_for(req.scheme, req.host, host_header, req.method, req.path, websocket, websocket_paths)
        if route is not None:
            await self.attempts.begin(flow, route, websocket)
            if not websocket:
                self.relay.divert(flow)  # a streaming request: its attempts run in the relay, each one streamed

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self.attempts.stream_sse(flow)

    async def response(self, flow: http.HTTPFlow) -> None:
        self.relay.forget(flow)
        await self.attempts.settle(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.relay.forget(flow)
        self.attempts.failed(flow)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        self.attempts.socket_message(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self.attempts.closed(flow)
