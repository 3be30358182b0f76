"""The addon's options: declared once, read in `configure` into one frozen `Settings` that the hooks use.

`--set` parses only str, int, bool and Sequence[str] options (a float option aborts mitmproxy's start-up), and a
misspelled `--set` name is ignored silently, so every option is declared here with its bounds and checked on each
change.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from urllib.parse import urlparse

from mitmproxy import exceptions
from mitmproxy.utils import human

from ..core.endpoints import EndpointPolicy
from ..core.strategies import DEFAULT_STRATEGY, STRATEGIES
from ..core.text import quote
from ..github import DEFAULT_GITHUB_API
from ..runtime import state
from ..runtime.service import DEFAULT_AFFINITY_TTL, DEFAULT_MODELS_REFRESH, DEFAULT_QUOTA_POLL

PREFIX = "pool_"  # option name = PREFIX + field name


@dataclass(frozen=True)
class Settings:
    accounts: str = ""
    strategy: str = DEFAULT_STRATEGY
    github_api: str = DEFAULT_GITHUB_API
    github_token_file: str = "~/.local/share/copilot-api/github_token"
    cooldown: int = 60
    max_attempts: int = 3
    max_wait: int = 30
    affinity_ttl: int = DEFAULT_AFFINITY_TTL
    quota_poll: int = DEFAULT_QUOTA_POLL
    models_refresh: int = DEFAULT_MODELS_REFRESH
    storm_accounts: int = 2
    user_daily_credits: int = 0
    log_summary: int = 0
    allow_open_proxy: bool = False
    extra_endpoints: tuple[str, ...] = ()
    relay: bool = True
    stream_store: str = "4m"
    state: str = state.DEFAULT
    share_tokens: bool = False

    @functools.cached_property
    def endpoints(self) -> EndpointPolicy:
        """Where pool credentials may go (core/endpoints.py): GitHub's Copilot hosts, the GHE.com tenant's, and
        the extra bases. Raises ValueError for an extra base that is not scheme://host:port."""
        return EndpointPolicy.from_options(self.github_api, self.extra_endpoints)

    @property
    def stream_store_bytes(self) -> int:
        return _size(self.stream_store)


HELP = {
    "accounts": "Path of the accounts file (JSON). Unset: a single account from GH_TOKEN, GITHUB_TOKEN or "
    "pool_github_token_file.",
    "strategy": "How to pick an account per request.",
    "github_api": "Base URL of the GitHub API used for the Copilot token exchange and quota "
    "(GitHub Enterprise data residency: https://api.<tenant>.ghe.com).",
    "github_token_file": "Legacy single-token file, used when pool_accounts is unset.",
    "cooldown": "Seconds to cool an account after a 429 that carries no Retry-After.",
    "max_attempts": "Accounts a request may try (429, 402, 401, connection error: the next one) before its answer "
    "goes back to the client.",
    "max_wait": "Seconds a request may wait, in line, for an account when none can take it now "
    "(0: answer 429 at once).",
    "affinity_ttl": "Seconds a conversation (X-Interaction-Id, else VScode-SessionId) stays bound to its account "
    "after its last turn (0: no affinity).",
    "quota_poll": "Seconds between asking /copilot_internal/user for the quota of accounts whose answers did not "
    "report it lately (0: never ask).",
    "models_refresh": "Seconds between fetching each account's /models catalogue again (0: only after each token "
    "exchange and when an answer says it is stale).",
    "storm_accounts": "Distinct accounts that, limited within a minute by a limit that may be the integration's or "
    "this address's (integration_rate_limited, rate_limited), make the pool hold all requests instead of rotating "
    "(0: never hold).",
    "user_daily_credits": "AI credits each proxyauth user may spend per UTC day; past it the pool answers 429 "
    "(0: no cap).",
    "log_summary": "Seconds between summary log lines of the pool's state (0: none).",
    "allow_open_proxy": "Run even when listening on a non-loopback address without proxyauth.",
    "extra_endpoints": "More endpoint bases (exact scheme://host:port) a token exchange may name and pool "
    "credentials may go to, besides GitHub's https Copilot hosts: for a local test upstream, or a "
    "Copilot-compatible gateway you run. Repeat the option for each.",
    "relay": "Send pooled streaming requests through the in-process relay, so that every attempt streams and a "
    "failed first connection fails over (false: the first attempt is mitmproxy's own, re-sent answers arrive "
    "buffered).",
    "stream_store": "How much of each pooled streamed answer to keep in the flow for mitmweb and -w files "
    "(like 4m, 512k; 0: none).",
    "state": "Where the pool keeps what it learns (cooldowns, failures, quotas, credits and usage, conversation "
    "and session bindings): sqlite (a file under $XDG_DATA_HOME/copilot-pool, else ~/.local/share/copilot-pool), "
    "sqlite:PATH, redis://HOST:PORT/DB or rediss://... (shared by every proxy naming it; the password from "
    "COPILOT_POOL_REDIS_PASSWORD), or memory (forgotten at exit). Read at start-up.",
    "share_tokens": "With pool_state=redis://...: share Copilot tokens through Redis, so the proxies sharing it "
    "do one token exchange per account instead of one each (the tokens are then kept in Redis: protect it).",
}
TYPES = {"extra_endpoints": Sequence[str]}  # the others: the type of their default
BOUNDS = {
    "cooldown": (1, 86400),
    "max_attempts": (1, 10),
    "max_wait": (0, 3600),
    "affinity_ttl": (0, 7 * 86400),
    "quota_poll": (0, 86400),
    "models_refresh": (0, 86400),
    "storm_accounts": (0, 100),
    "user_daily_credits": (0, 10**9),
    "log_summary": (0, 86400),
}
CHOICES = {"strategy": list(STRATEGIES)}


def declare(loader) -> None:
    for f in fields(Settings):
        typespec = TYPES.get(f.name, type(f.default))
        loader.add_option(PREFIX + f.name, typespec, f.default, HELP[f.name], choices=CHOICES.get(f.name))


def read(options) -> Settings:
    """The current options as Settings; raise OptionsError naming the option when one is out of bounds."""
    values = {f.name: getattr(options, PREFIX + f.name) for f in fields(Settings)}
    settings = Settings(**{**values, "extra_endpoints": tuple(values["extra_endpoints"])})
    for name, (low, high) in BOUNDS.items():
        value = getattr(settings, name)
        if not low <= value <= high:
            raise exceptions.OptionsError(f"{PREFIX}{name}: must be between {low} and {high}, got {value}")
    try:
        _size(settings.stream_store)
    except ValueError:
        raise exceptions.OptionsError(
            f"{PREFIX}stream_store: not a size like 4m or 512k: {settings.stream_store!r}"
        ) from None
    try:
        state.check(settings.state)
    except ValueError as e:
        raise exceptions.OptionsError(f"{PREFIX}state: {e}") from None
    if settings.share_tokens and not state.is_shared(settings.state):
        raise exceptions.OptionsError(
            f"{PREFIX}share_tokens: tokens are shared only through Redis; set pool_state=redis://HOST:PORT/DB "
            f"(pool_state is {settings.state!r})"
        )
    parsed = urlparse(settings.github_api)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise exceptions.OptionsError(f"{PREFIX}github_api: not an http(s) URL: {quote(settings.github_api)}")
    try:
        settings.endpoints  # noqa: B018 - built (and checked) once here, not on the first request
    except ValueError as e:
        raise exceptions.OptionsError(f"{PREFIX}extra_endpoints: {e}") from None
    return settings


@functools.lru_cache(maxsize=8)
def _size(text: str) -> int:
    return human.parse_size(text) or 0
