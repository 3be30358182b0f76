#!/usr/bin/env python3
"""A strict fake of the GitHub token exchange and the Copilot API, served on loopback.

One server plays both GitHub (``/copilot_internal/...``) and the Copilot inference hosts.
Accounts of type "individual" are handed ``http://127.0.0.1:PORT`` as ``endpoints.api``;
"business" and "enterprise" get ``http://localhost:PORT``. Same server, different Host
header: a credential presented on the wrong host gets 421, like the real service, so
tests can tell whether a client honoured the account's ``endpoints.api``.

Like the service, every successful answer reports its cost in AI credits (``copilot_usage.total_nano_aiu``:
top level in JSON, in the last event of a stream or WebSocket answer; the fake keeps its own sum per account
and model), hidden per-account and per-model token buckets answer 429 with the codes and hints the
service uses, and each account has its own model catalogue (``/models``; a model it lacks gets
``model_not_supported``), auto-model session tokens (``POST /auto``, ``/models/session``) work only
through the account that minted them (otherwise ``401 Invalid auto-mode selector``), and
``GET /responses`` upgrades to a WebSocket that answers each ``response.create`` message with the
Responses API's events, keeping response ids per connection.

For the real clients (tests/test_e2e_real_*.py): ``/copilot_internal/user`` names the account's seat and
``endpoints`` (the Copilot CLI calls that host), catalogue entries carry every field the language server
requires of them, and inline code completions stream as SSE.

Stdlib plus wsproto (which mitmproxy brings). Used in-process by tests (``from fake_copilot import
FakeCopilot``) and as a CLI by demos and benchmarks (``python scripts/fake_copilot.py --help``).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import hashlib
import hmac
import json
import math
import random
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import h11
import wsproto
import wsproto.events

ACCOUNT_TYPES = ("individual", "business", "enterprise")
SKUS = {
    "individual": "copilot_for_individuals_subscriber",
    "business": "copilot_for_business_seat",
    "enterprise": "copilot_enterprise_seat",
}
PREMIUM_ENTITLEMENT = 300
SEATS = {  # /copilot_internal/user's access_type_sku
    "individual": "plus_monthly_subscriber_quota",
    "business": "copilot_for_business_seat_quota",
    "enterprise": "copilot_enterprise_seat_quota",
}

# Inference routes: path -> (method, kind). Completions for a model are matched by regex.
ROUTES = {
    "/chat/completions": ("POST", "chat"),
    "/v1/chat/completions": ("POST", "chat"),
    "/responses": ("POST", "responses"),
    "/v1/messages": ("POST", "messages"),
    "/embeddings": ("POST", "embeddings"),
    "/models": ("GET", "models"),
    "/auto": ("POST", "auto"),
    "/models/session": ("POST", "session"),
    "/models/session/intent": ("POST", "intent"),
}
# The endpoint each kind is called on, as `supported_endpoints` names it; the model a kind defaults to.
KIND_ENDPOINTS = {
    "chat": "/chat/completions",
    "responses": "/responses",
    "messages": "/v1/messages",
    "embeddings": "/embeddings",
    "ws": "ws:/responses",
}
DEFAULT_MODEL = {"messages": "claude-sonnet-4", "embeddings": "text-embedding-3-small", "ws": "gpt-5.4"}


def model_entry(model: str, vendor: str = "OpenAI", endpoints: list | None = None, kind: str = "chat") -> dict:
    """A `/models` entry with the fields the Copilot language server requires of each (it drops a catalogue
    missing any): name, version, model_picker_enabled, capabilities {type, family, tokenizer, object}, object.
    `endpoints` None: no `supported_endpoints` field (any HTTP endpoint, never a WebSocket)."""
    entry = {
        "id": model,
        "name": model,
        "vendor": vendor,
        "version": model,
        "object": "model",
        "preview": False,
        "model_picker_enabled": kind == "chat",
        "capabilities": {"type": kind, "family": model, "tokenizer": "o200k_base", "object": "model_capabilities"},
    }
    return entry if endpoints is None else {**entry, "supported_endpoints": endpoints}


DEFAULT_MODELS = [  # every account's catalogue unless a test gives it another (set_models)
    model_entry("gpt-4o", "Azure OpenAI", ["/chat/completions", "/responses"]),
    model_entry("gpt-5-mini", "Azure OpenAI", ["/chat/completions", "/responses"]),
    model_entry("gpt-5.4", "OpenAI", ["/responses", "ws:/responses"]),
    model_entry("claude-sonnet-4", "Anthropic", ["/chat/completions", "/v1/messages"]),
    model_entry("text-embedding-3-small", "Azure OpenAI", kind="embeddings"),
    model_entry("gpt-41-copilot", "Azure OpenAI", kind="completion"),  # inline completions (the language server)
]
BILLED_KINDS = {"chat", "responses", "messages", "embeddings", "completions"}  # answers that report AI credits
SELECTOR_REFUSED = b"Invalid auto-mode selector"  # the service's whole answer to a session token it cannot use
SESSION_TTL = 3600
ENGINE_COMPLETIONS = re.compile(r"^/v1/engines/([^/]+)/completions$")
PREMIUM_KINDS = {"chat", "responses", "messages"}  # each 2xx costs one premium interaction

UNAUTHORIZED = {"error": {"message": "unauthorized: token expired or invalid", "code": "unauthorized"}}
RATE_LIMITED = {  # the per-account fixed window (set_rate_limit) and the benchmarks' churn: a per-user limit
    "error": {"message": "Sorry, you have exceeded your rate limit.", "code": "user_global_rate_limited"}
}
BAD_CREDENTIALS = {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
NO_COPILOT = {
    "message": "Resource not accessible by integration",
    "error_details": {
        "url": "https://github.com/features/copilot",
        "message": "You do not have access to GitHub Copilot.",
        "title": "Get started with GitHub Copilot",
        "notification_id": "no_copilot_access",
    },
}


@dataclasses.dataclass
class LogEntry:
    time: float
    method: str
    host: str
    path: str
    account: str | None
    credential_kind: str | None  # "copilot" | "github" | None
    status: int  # 0 = connection dropped on purpose
    credential: str | None  # raw credential value, so tests can check it never leaks
    request_id: str | None = None  # the client's X-Request-Id, so tests can follow one request


@dataclasses.dataclass
class _Account:
    name: str
    github_token: str
    account_type: str
    copilot: bool
    revoked: bool = False
    exchanges: int = 0
    served: int = 0
    premium_used: int = 0
    models: list = dataclasses.field(default_factory=lambda: [dict(m) for m in DEFAULT_MODELS])


@dataclasses.dataclass
class _Bucket:
    burst: float
    per_second: float
    code: str
    state: dict = dataclasses.field(default_factory=dict)  # (account, model) -> (tokens, last refill)


@dataclasses.dataclass
class _Issued:
    account: str
    expires_at: float  # exact; the int reported to clients is floored so it never overstates validity
    api_host: str  # host part of the endpoints.api the token was issued with
    valid: bool = True


@dataclasses.dataclass
class _DeviceCode:
    account: str | None  # None: nobody approves it (it expires)
    client_id: str
    expires_at: float
    interval: float
    pending: int  # authorization_pending answers left before the verdict
    slow_down: int  # slow_down answers left after those
    deny: bool
    last_poll: float = 0.0
    done: bool = False


DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclasses.dataclass
class _Injection:
    status: int
    remaining: int
    headers: dict
    body: bytes
    fault: str = "drop"  # status 0 only: which connection fault (CONNECTION_FAULTS)


# Connection faults an inference request can be answered with (inject_fault): nothing an HTTP client can use.
CONNECTION_FAULTS = ("drop", "reset", "garbage")  # closed before a byte, reset mid-body, a status line that is no HTTP
DROP = object()  # in an exchange answer's fields: leave this field out


@dataclasses.dataclass
class _ExchangeAnswer:
    """How the token exchange answers one account instead of the honest answer (set_exchange_answer)."""

    status: int = 200
    headers: dict = dataclasses.field(default_factory=dict)
    fields: dict = dataclasses.field(default_factory=dict)  # merged into the honest answer; a callable gets now
    body: bytes | None = None  # sent as is instead of any JSON


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def endpoint_bases(base_url: str) -> list[str]:
    """The fake's two plain-http API bases (individual accounts get 127.0.0.1, the others localhost): what the
    pool must be told to trust (pool_extra_endpoints), since they are no https Copilot host."""
    port = urlsplit(base_url).port
    return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]


def _host_only(host_header: str) -> str | None:
    """'localhost:8787' -> 'localhost', '[::1]:80' -> '::1'."""
    try:
        return urlsplit("//" + host_header.strip()).hostname
    except ValueError:
        return None


def _next_reset() -> datetime.datetime:
    """Premium quota resets on the first day of next month, UTC."""
    now = datetime.datetime.now(datetime.UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime.datetime(year, month, 1, tzinfo=datetime.UTC)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 makes concurrent benchmarks wait on SYN retries


class FakeCopilot:
    def __init__(
        self,
        host="127.0.0.1",
        port=0,
        *,
        token_ttl=1800,
        refresh_in=1500,
        rate_limit=None,
        rate_window=60.0,
        delay=0.0,
        stream_chunks=5,
        stream_interval=0.02,
    ):
        self.host, self.port = host, port
        self.token_ttl, self.refresh_in = token_ttl, refresh_in
        self.delay = delay  # seconds before answering each inference request
        self.exchange_delay = 0.0  # seconds before answering each token exchange
        self.churn_429 = 0.0  # fraction of would-be 2xx inference answers turned into 429 (benchmarks)
        self.churn_retry_ms = 20  # their `retry-after-ms` hint
        self.cost_nano = (1_000_000, 90_000_000)  # what one answer costs, drawn at random (0.001-0.09 credits)
        self.auto_model = "gpt-5-mini"  # the model auto-model sessions select, when the account's catalogue has it
        self.stream_chunks, self.stream_interval = stream_chunks, stream_interval
        self.base_url = ""
        self.log: list[LogEntry] = []
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(32)
        self._accounts: dict[str, _Account] = {}
        self._by_github: dict[str, str] = {}  # github token -> account name
        self._tokens: dict[str, _Issued] = {}  # copilot token -> issue record (never removed)
        self._sessions: dict[str, tuple[str, float]] = {}  # session token -> (minting account, expires at)
        self.websockets: list[dict] = []  # one record per WebSocket: account, messages, closed
        self._injections: dict[str, collections.deque[_Injection]] = {}
        self._exchange_answers: dict[str, _ExchangeAnswer] = {}  # hostile or broken token exchange answers
        self._refuse_all: set[str] = set()  # accounts whose every inference request gets 401
        self._rl_default: tuple[int | None, float] = (rate_limit, rate_window)
        self._rl_account: dict[str, tuple[int | None, float]] = {}
        self._rl_state: dict[str, list] = {}  # account -> [window_start, admitted count]
        self._buckets: dict[tuple[str, str | None], _Bucket] = {}  # (account or "*", model or None) -> bucket
        self._nano: dict[tuple[str, str], int] = collections.Counter()  # (account, model) -> nano-AIU billed
        self._conns: set[socket.socket] = set()
        self._refusing: dict[str, socket.socket] = {}  # account -> a bound socket that never listens
        # GitHub's device flow: interval and slow_down step are seconds (GitHub: 5 and +5; tests use less)
        self.device_interval, self.device_slow_down_step, self.device_expires_in = 5.0, 5.0, 900.0
        self._device_plans: collections.deque[tuple[str, int, int, bool]] = collections.deque()
        self._device_codes: dict[str, _DeviceCode] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle -------------------------------------------------------------------

    def start(self) -> str:
        if self._server is not None:
            raise RuntimeError("already started")
        server = _Server((self.host, self.port), _Handler)
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self.port = server.server_address[1]
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-copilot", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        # Handler threads of idle keep-alive connections would otherwise linger until the
        # client hangs up; cut them so a stopped fake really is gone.
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)
        self._server = self._thread = None
        for sock in self._refusing.values():
            sock.close()
        self._refusing.clear()

    # ----- configuration -----------------------------------------------------------------

    def api_base(self, account_type: str) -> str:
        if account_type not in ACCOUNT_TYPES:
            raise ValueError(f"unknown account type {account_type!r}")
        host = "127.0.0.1" if account_type == "individual" else "localhost"
        return f"http://{host}:{self.port}"

    def add_account(self, name: str, github_token: str, account_type: str = "individual", copilot: bool = True) -> None:
        if account_type not in ACCOUNT_TYPES:
            raise ValueError(f"unknown account type {account_type!r}")
        with self._lock:
            owner = self._by_github.get(github_token)
            if owner is not None and owner != name:
                raise ValueError("GitHub token already belongs to another account")
            old = self._accounts.get(name)
            if old is not None:
                self._by_github.pop(old.github_token, None)
            self._accounts[name] = _Account(name, github_token, account_type, copilot)
            self._by_github[github_token] = name

    def set_bucket(
        self, burst: float, per_second: float, account: str = "*", model: str | None = None, code: str | None = None
    ) -> None:
        """A hidden token bucket, as the service's limits are: `burst` requests at once, refilled at `per_second`.
        Per account ("*": each account its own), or for one model on it. Empty: 429 with the code
        (`user_global_rate_limited`; `user_model_rate_limited` for a model) and the time to the next token."""
        code = code or ("user_model_rate_limited" if model else "user_global_rate_limited")
        with self._lock:
            self._buckets[(account, model)] = _Bucket(burst, per_second, code)

    def credits(self, account: str | None = None, model: str | None = None) -> int:
        """Nano-AIU the fake billed, for an account and/or model (None: all)."""
        with self._lock:
            return sum(n for (a, m), n in self._nano.items() if account in (None, a) and model in (None, m))

    def set_rate_limit(self, limit: int | None, window: float = 60.0, account: str | None = None) -> None:
        """limit=None means unlimited. A per-account setting (even None) overrides the default."""
        with self._lock:
            if account is None:
                self._rl_default = (limit, window)
                self._rl_state.clear()
            else:
                self._get(account)
                self._rl_account[account] = (limit, window)
                self._rl_state.pop(account, None)

    def inject(
        self, account: str, status: int, count: int = 1, headers: dict | None = None, body: bytes | dict | None = None
    ) -> None:
        if body is None:
            body = {"error": {"message": f"injected {status}", "code": "injected"}}
        raw = body if isinstance(body, bytes) else _json(body)
        with self._lock:
            self._get(account)
            self._injections.setdefault(account, collections.deque()).append(
                _Injection(status, count, dict(headers or {}), raw)
            )

    def inject_fault(self, account: str, fault: str, count: int = 1) -> None:
        """The account's next `count` inference requests end in a connection fault instead of an answer."""
        if fault not in CONNECTION_FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        with self._lock:
            self._get(account)
            self._injections.setdefault(account, collections.deque()).append(_Injection(0, count, {}, b"", fault))

    def set_exchange_answer(
        self,
        account: str,
        *,
        status: int = 200,
        headers: dict | None = None,
        fields: dict | None = None,
        body: bytes | None = None,
    ) -> None:
        """From now on the account's token exchange answers `status` with `headers`; a 200 is the honest answer
        with `fields` merged in (`endpoints`, `expires_at`, `refresh_in`, ...; a callable value is called with the
        time, DROP leaves the field out), or `body` as is. `clear_exchange_answer` restores the honest answer."""
        with self._lock:
            self._get(account)
            self._exchange_answers[account] = _ExchangeAnswer(status, dict(headers or {}), dict(fields or {}), body)

    def clear_exchange_answer(self, account: str) -> None:
        with self._lock:
            self._exchange_answers.pop(account, None)

    def refuse_all(self, account: str, on: bool = True) -> None:
        """401 to every inference request with the account's credentials, though its exchange still works."""
        with self._lock:
            self._get(account)
            (self._refuse_all.add if on else self._refuse_all.discard)(account)

    def exchange_times(self, account: str) -> list[float]:
        """When each token exchange request of the account arrived, whatever it was answered."""
        with self._lock:
            return [e.time for e in self.log if e.account == account and e.path.startswith("/copilot_internal/v2/")]

    def endpoint_bases(self) -> list[str]:
        return endpoint_bases(self.base_url)

    def revoke(self, account: str) -> None:
        with self._lock:
            self._get(account).revoked = True
            self._invalidate(account)

    def expire_tokens(self, account: str) -> None:
        with self._lock:
            self._get(account)
            self._invalidate(account)

    def move(self, account: str, account_type: str) -> None:
        """The account's endpoint moves (as after a plan change): its tokens now work only on the new host, so
        a client still using the old endpoint gets 421 until it exchanges again."""
        with self._lock:
            acct = self._get(account)
            acct.account_type = account_type
            host = urlsplit(self.api_base(account_type)).hostname
            for issued in self._tokens.values():
                if issued.account == account:
                    issued.api_host = host

    def set_models(self, account: str, models: list) -> None:
        """The account's catalogue: model ids (any endpoint but WebSockets) or whole /models entries."""
        with self._lock:
            self._get(account).models = [m if isinstance(m, dict) else model_entry(m) for m in models]

    def sessions(self) -> dict[str, str]:
        """Session token -> the account that minted it."""
        with self._lock:
            return {token: s[0] for token, s in self._sessions.items()}

    def set_delay(self, seconds: float) -> None:
        self.delay = seconds

    def refuse_connections(self, account: str) -> None:
        """Tokens exchanged from now on send `account` to an endpoint that refuses every connection (a port bound
        but never listening: the kernel answers RST), like an unreachable API host."""
        with self._lock:
            self._get(account)
            if account not in self._refusing:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind((self.host, 0))
                self._refusing[account] = sock

    def approve_device_login(self, account: str, pending: int = 1, slow_down: int = 0, deny: bool = False) -> None:
        """The next device code goes to `account`: `pending` polls answer authorization_pending, then `slow_down`
        polls answer slow_down, then the account's GitHub token (or access_denied with deny=True).
        Polling faster than the interval also earns slow_down, as on GitHub. Unplanned codes never get approved."""
        with self._lock:
            self._get(account)
            self._device_plans.append((account, pending, slow_down, deny))

    # ----- inspection --------------------------------------------------------------------

    def entries(self) -> list[LogEntry]:
        with self._lock:
            return list(self.log)

    def exchanges(self, name: str) -> int:
        with self._lock:
            return self._get(name).exchanges

    def served_by(self, account: str) -> int:
        with self._lock:
            return self._get(account).served

    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    # ----- internals (call with self._lock held) ------------------------------------------

    def _get(self, name: str) -> _Account:
        try:
            return self._accounts[name]
        except KeyError:
            raise KeyError(f"unknown account {name!r}") from None

    def _invalidate(self, account: str) -> None:
        for issued in self._tokens.values():
            if issued.account == account:
                issued.valid = False

    def _github_account(self, token: str | None) -> _Account | None:
        name = self._by_github.get(token) if token else None
        return self._accounts.get(name) if name else None

    def _issue(self, acct: _Account) -> dict:
        now = time.time()
        expires_at = int(now + self.token_ttl)
        api = self.api_base(acct.account_type)
        if refusing := self._refusing.get(acct.name):
            host, port = refusing.getsockname()
            api = f"http://{host}:{port}"
        netloc = urlsplit(api).netloc
        sku = SKUS[acct.account_type]
        fields = f"tid={secrets.token_hex(16)};exp={expires_at};sku={sku};proxy-ep={netloc}"
        mac = hmac.new(self._secret, fields.encode(), hashlib.sha256).hexdigest()
        token = f"{fields};8kp=1:{mac}"
        self._tokens[token] = _Issued(acct.name, now + self.token_ttl, urlsplit(api).hostname)
        acct.exchanges += 1
        return {
            "token": token,
            "expires_at": expires_at,
            "refresh_in": int(min(self.refresh_in, self.token_ttl)),  # never past expiry
            "endpoints": {
                "api": api,
                "proxy": api,
                "telemetry": f"{api}/_telemetry",
                "origin-tracker": f"{api}/_origin-tracker",
            },
            "sku": sku,
            "chat_enabled": True,
            "individual": acct.account_type == "individual",
        }

    def _exchange_answer(self, acct: _Account) -> tuple[int, dict, bytes]:
        """The exchange's (status, headers, body) for the account: honest, or as set_exchange_answer says."""
        answer = self._exchange_answers.get(acct.name)
        if answer is not None and answer.status != 200:
            return answer.status, answer.headers, answer.body if answer.body is not None else _json(RATE_LIMITED)
        if not acct.copilot:
            return 403, {}, _json(NO_COPILOT)
        issued = self._issue(acct)
        if answer is None:
            return 200, {}, _json(issued)
        if answer.body is not None:
            return 200, answer.headers, answer.body
        now = time.time()
        for key, value in answer.fields.items():
            issued[key] = value(now) if callable(value) else value
        return 200, answer.headers, _json({k: v for k, v in issued.items() if v is not DROP})

    def _user_info(self, acct: _Account) -> dict:
        remaining, pct = self._quota(acct)
        unlimited = {
            "entitlement": 0,
            "remaining": 0,
            "percent_remaining": 100.0,
            "unlimited": True,
            "overage_permitted": False,
        }
        api = self.api_base(acct.account_type)
        return {
            "login": acct.name,
            "copilot_plan": acct.account_type if acct.copilot else "none",
            # what the Copilot CLI reads to call the account's own host and to know it holds a seat
            "access_type_sku": SEATS[acct.account_type] if acct.copilot else "no_access",
            "chat_enabled": acct.copilot,
            "assigned_date": "2025-01-01T00:00:00Z",
            "can_signup_for_limited": False,
            "analytics_tracking_id": hashlib.sha256(acct.name.encode()).hexdigest()[:32],
            "organization_login_list": [],
            "endpoints": {"api": api, "proxy": api, "telemetry": f"{api}/_telemetry", "origin-tracker": api},
            "quota_reset_date": _next_reset().strftime("%Y-%m-%d"),
            "quota_snapshots": {
                "premium_interactions": {
                    "entitlement": PREMIUM_ENTITLEMENT,
                    "remaining": remaining,
                    "percent_remaining": pct,
                    "unlimited": False,
                    "overage_permitted": False,
                },
                "chat": dict(unlimited),
                "completions": dict(unlimited),
            },
        }

    def _rate_limited(self, name: str, now: float) -> int | None:
        """Admit the request (count it) or return the Retry-After seconds. Fixed windows."""
        limit, window = self._rl_account.get(name, self._rl_default)
        if limit is None:
            return None
        state = self._rl_state.get(name)
        if state is None or now >= state[0] + window:
            state = self._rl_state[name] = [now, 0]
        if state[1] >= limit:
            return max(1, math.ceil(state[0] + window - now))
        state[1] += 1
        return None

    def _mint_session(self, account: str) -> str:
        token = f"session_{secrets.token_hex(16)}"
        self._sessions[token] = (account, time.time() + SESSION_TTL)
        return token

    def _session_ok(self, token: str | None, account: str) -> bool:
        """A session token works only through the account that minted it, until it expires."""
        minted = self._sessions.get(token) if token else None
        return minted is not None and minted[0] == account and time.time() < minted[1]

    def _take_token(self, account: str, model: str) -> tuple[str, float] | None:
        """Admit the request against the hidden buckets, or (code, seconds to the next token)."""
        now = time.monotonic()
        for key in ((account, None), ("*", None), (account, model), ("*", model)):
            bucket = self._buckets.get(key)
            if bucket is None:
                continue
            state_key = (account, key[1])
            tokens, seen = bucket.state.get(state_key, (bucket.burst, now))
            tokens = min(bucket.burst, tokens + (now - seen) * bucket.per_second)
            if tokens < 1:
                bucket.state[state_key] = (tokens, now)
                return bucket.code, (1 - tokens) / bucket.per_second
            bucket.state[state_key] = (tokens - 1, now)
        return None

    def _bill(self, account: str, model: str) -> dict:
        """What one answer cost: random, so that only an exact sum of the reported values matches the fake's."""
        nano = random.randint(*self.cost_nano)
        with self._lock:
            self._nano[(account, model)] += nano
        return {"total_nano_aiu": nano, "token_details": [{"token_type": "input", "nano_aiu": nano // 3}]}

    def _quota(self, acct: _Account) -> tuple[int, float]:
        remaining = max(0, PREMIUM_ENTITLEMENT - acct.premium_used)
        return remaining, round(100.0 * remaining / PREMIUM_ENTITLEMENT, 1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer has Content-Length or is chunked
    server_version = "fake-copilot/1.0"
    sys_version = ""

    # Quiet: the default writes an access-log line to stderr for every request.
    def log_message(self, format, *args):
        pass

    def setup(self):
        super().setup()
        # Without TCP_NODELAY, Nagle holds a small SSE event back while the previous small
        # write (the headers) waits for a delayed ACK: ~40 ms of fake first-chunk latency.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fake: FakeCopilot = self.server.fake
        with self.fake._lock:
            self.fake._conns.add(self.connection)

    def finish(self):
        with self.fake._lock:
            self.fake._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle(self):
        try:
            super().handle()
        except OSError:
            pass  # client went away, or stop() cut the connection
        except Exception:
            traceback.print_exc()  # a bug in the fake; tracebacks carry no header values

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # ----- plumbing ------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        hdrs = {"Content-Type": "application/json", "x-github-request-id": _request_id(), **(headers or {})}
        for k, v in hdrs.items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self, account, kind, status, credential) -> None:  # call with the lock held
        self.fake.log.append(
            LogEntry(
                time.time(),
                self.command,
                self.headers.get("Host", ""),
                self.path,
                account,
                kind,
                status,
                credential,
                self.headers.get("X-Request-Id"),
            )
        )

    def _credential(self, schemes: tuple[str, ...]) -> str | None:
        scheme, _, value = self.headers.get("Authorization", "").strip().partition(" ")
        value = value.strip()
        return value if scheme.lower() in schemes and value else None

    def _dispatch(self) -> None:
        # Always consume the whole body, or the next request on this keep-alive connection
        # would be parsed from its leftovers. Like the real API, chunked uploads are refused.
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            return self._send(411, _json({"message": "Length Required"}))
        try:
            body = self.rfile.read(max(0, int(self.headers.get("Content-Length") or 0)))
        except ValueError:
            self.close_connection = True
            return self._send(400, _json({"message": "bad Content-Length"}))
        path = urlsplit(self.path).path
        if path == "/_fake/log" and self.command == "GET":
            return self._send(200, _json([dataclasses.asdict(e) for e in self.fake.entries()]))
        if path in ("/copilot_internal/v2/token", "/copilot_internal/user") and self.command == "GET":
            return self._github(path)
        if path in ("/login/device/code", "/login/oauth/access_token") and self.command == "POST":
            return self._device_flow(path, body)
        if path == "/responses" and self.headers.get("Upgrade", "").lower() == "websocket":
            return self._websocket()
        route = ROUTES.get(path)
        match = ENGINE_COMPLETIONS.match(path)
        if match:
            route = ("POST", "completions")
        if route is None or self.command != route[0]:  # not inference: e.g. /mcp/readonly, /auto
            with self.fake._lock:
                self._record(None, None, 404, self._credential(("bearer", "token")))
            return self._send(404, _json({"error": {"message": "not found", "code": "not_found"}}))
        self._inference(route[1], match.group(1) if match else None, body)

    # ----- GitHub side --------------------------------------------------------------------

    def _github(self, path: str) -> None:
        f = self.fake
        token = self._credential(("token", "bearer"))
        if path.endswith("/token") and f.exchange_delay:
            time.sleep(f.exchange_delay)
        with f._lock:
            acct = f._github_account(token)
            name = acct.name if acct else None
            kind = "github" if acct else None
            headers: dict = {}
            if acct is None or acct.revoked:
                status, body = 401, _json(BAD_CREDENTIALS)
            elif path.endswith("/token"):
                status, headers, body = f._exchange_answer(acct)
            else:
                status, body = 200, _json(f._user_info(acct))
            self._record(name, kind, status, token)
        self._send(status, body, headers)

    # ----- GitHub's OAuth device flow ------------------------------------------------------

    def _device_flow(self, path: str, body: bytes) -> None:
        f = self.fake
        if "json" in self.headers.get("Content-Type", ""):
            try:
                params = {k: str(v) for k, v in json.loads(body or b"{}").items()}
            except (ValueError, AttributeError):
                params = {}
        else:
            params = {k: v[0] for k, v in parse_qs(body.decode("latin-1")).items()}
        now = time.time()
        with f._lock:
            if not params.get("client_id"):
                status, payload, account = (
                    400,
                    {"error": "unauthorized_client", "error_description": "client_id missing"},
                    None,
                )
            elif path == "/login/device/code":
                account, pending, slow_down, deny = (
                    f._device_plans.popleft() if f._device_plans else (None, 0, 0, False)
                )
                device_code = secrets.token_hex(20)
                user_code = f"{secrets.token_hex(2).upper()}-{secrets.token_hex(2).upper()}"
                f._device_codes[device_code] = _DeviceCode(
                    account, params["client_id"], now + f.device_expires_in, f.device_interval, pending, slow_down, deny
                )
                status, payload = (
                    200,
                    {
                        "device_code": device_code,
                        "user_code": user_code,
                        "verification_uri": f"{f.base_url}/login/device",
                        "expires_in": f.device_expires_in,
                        "interval": f.device_interval,
                    },
                )
            else:
                code = f._device_codes.get(params.get("device_code", ""))
                status, payload, account = 200, self._poll(code, params, now), code.account if code else None
            self._record(account, None, status, None)
        if "application/json" in self.headers.get("Accept", ""):
            return self._send(status, _json(payload))
        self._send(status, urlencode(payload).encode(), {"Content-Type": "application/x-www-form-urlencoded"})

    def _poll(self, code: _DeviceCode | None, params: dict, now: float) -> dict:  # call with the lock held
        f = self.fake
        if params.get("grant_type") != DEVICE_GRANT:
            return {"error": "unsupported_grant_type", "error_description": f"grant_type must be {DEVICE_GRANT}"}
        if code is None or code.done or code.client_id != params["client_id"]:
            return {"error": "incorrect_device_code", "error_description": "The device_code provided is not valid."}
        if now >= code.expires_at:
            return {"error": "expired_token", "error_description": "The device_code has expired."}
        too_fast = code.last_poll and now - code.last_poll < code.interval
        code.last_poll = now
        if too_fast or (code.account and not code.pending and code.slow_down):
            if not too_fast:
                code.slow_down -= 1
            code.interval += f.device_slow_down_step
            return {
                "error": "slow_down",
                "error_description": "Too many requests have been made in the same timeframe.",
                "interval": code.interval,
            }
        if code.account is None or code.pending:
            code.pending = max(0, code.pending - 1)
            return {
                "error": "authorization_pending",
                "error_description": "The authorization request is still pending.",
            }
        code.done = True
        if code.deny:
            return {"error": "access_denied", "error_description": "The authorization request was denied."}
        return {"access_token": f._accounts[code.account].github_token, "token_type": "bearer", "scope": "read:user"}

    # ----- Copilot side -------------------------------------------------------------------

    def _inference(self, kind: str, engine: str | None, body: bytes) -> None:
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = None
        acct, status, payload, headers, fault = self._decide(kind, engine, request)
        if status == 0:  # an injected connection fault: nothing an HTTP client can use
            return self._connection_fault(fault)
        if payload is not None:
            return self._send(status, payload, headers)
        model = engine or request.get("model") or DEFAULT_MODEL.get(kind, "gpt-4o")
        if kind in SSE_EVENTS and request.get("stream") is True:
            return self._stream(kind, acct.name, model, headers)
        self._send(200, _json(self._answer(kind, acct, model, request)), headers)

    def _decide(self, kind: str, engine: str | None, request) -> tuple[_Account | None, int, bytes | None, dict, str]:
        """Judge one Copilot call as the service would: (account, status, refusal body or None, headers, the
        connection fault when status is 0). A 2xx comes back without a body, to be built outside the lock."""
        f = self.fake
        cred = self._credential(("bearer",))
        bad_json = not isinstance(request, dict)
        request = {} if bad_json else request
        headers: dict = {}
        fault = "drop"
        with f._lock:
            acct, cred_kind, issued = None, None, f._tokens.get(cred) if cred else None
            if issued is not None:
                acct, cred_kind = f._accounts.get(issued.account), "copilot"
                ok = issued.valid and time.time() < issued.expires_at
                expected_host = issued.api_host
            else:
                acct = f._github_account(cred)
                cred_kind = "github" if acct else None
                ok = acct is not None and not acct.revoked
                expected_host = urlsplit(f.api_base(acct.account_type)).hostname if acct else None
            ok = ok and (acct is None or acct.name not in f._refuse_all)
            if acct is not None:
                headers["x-fake-account"] = acct.name
            session = self.headers.get("Copilot-Session-Token")
            model = engine or request.get("model") or DEFAULT_MODEL.get(kind, "gpt-4o")
            if not ok or acct is None:
                status, payload = 401, _json(UNAUTHORIZED)
            elif cred_kind == "github" and not acct.copilot:
                status, payload = (
                    403,
                    _json({"error": {"message": "no access to GitHub Copilot", "code": "no_copilot_access"}}),
                )
            elif _host_only(self.headers.get("Host", "")) != expected_host:
                status, payload = (
                    421,
                    _json(
                        {
                            "error": {
                                "message": f"misdirected request: credential is for {expected_host}",
                                "code": "misdirected_request",
                            }
                        }
                    ),
                )
            elif (session or kind == "intent") and not f._session_ok(session, acct.name):
                status, payload = 401, SELECTOR_REFUSED
                headers["Content-Type"] = "text/plain"
            elif kind != "models" and (queue := f._injections.get(acct.name)):
                # injected answers win over everything but auth, host and session checks; a catalogue fetch
                # (the pool's own, right after each exchange) never uses up a test's injected failure
                inj = queue[0]
                inj.remaining -= 1
                if inj.remaining <= 0:
                    queue.popleft()
                status, payload, fault = inj.status, inj.body, inj.fault
                headers.update(inj.headers)
            elif bad_json:
                status, payload = (
                    400,
                    _json({"error": {"message": "invalid JSON body", "code": "invalid_request_body"}}),
                )
            elif (refusal := _model_refusal(acct, kind, model)) is not None:
                status, payload = 400, _json(refusal)
            elif (retry := f._rate_limited(acct.name, time.time())) is not None:
                status, payload = 429, _json(RATE_LIMITED)
                headers["Retry-After"] = str(retry)
            elif kind in BILLED_KINDS and (empty := f._take_token(acct.name, model)) is not None:
                code, wait = empty
                message = "Sorry, you have been rate-limited. Please wait a moment before trying again."
                status, payload = 429, _json({"error": {"message": message, "code": code}})
                headers.update(
                    {
                        "Retry-After": str(max(1, math.ceil(wait))),
                        "retry-after-ms": str(math.ceil(wait * 1000)),
                        "x-ratelimit-exceeded": f"{code}:{model}",
                    }
                )
            elif f.churn_429 and random.random() < f.churn_429:
                status, payload = 429, _json(RATE_LIMITED)
                headers["retry-after-ms"] = str(f.churn_retry_ms)
            else:
                status, payload = 200, None  # built outside the lock
            if acct is not None and 200 <= status < 300:
                acct.served += 1
                if kind in PREMIUM_KINDS:
                    acct.premium_used += 1
            if acct is not None and status:
                _, pct = f._quota(acct)
                headers["x-quota-snapshot-premium_interactions"] = urlencode(
                    {
                        "ent": PREMIUM_ENTITLEMENT,
                        "ov": "0.0",
                        "ovPerm": "false",
                        "rem": pct,
                        "rst": _next_reset().strftime("%Y-%m-%dT%H:%M:%SZ"),
                    }
                )
            # Logged at arrival (the decision is made then), so the log shows when requests came and how many
            # were in flight at once; the answer takes `delay` after that.
            self._record(acct.name if acct else None, cred_kind, status, cred)
        if f.delay:
            time.sleep(f.delay)
        return acct, status, payload, headers, fault

    def _answer(self, kind: str, acct: _Account, model: str, request: dict) -> dict:
        if kind == "models":
            with self.fake._lock:
                return {"object": "list", "data": [{"object": "model", **m} for m in acct.models]}
        if kind in ("auto", "session"):
            with self.fake._lock:
                token = self.fake._mint_session(acct.name)
                selected = next((m for m in acct.models if m["id"] == self.fake.auto_model), acct.models[0])
            answer = {"session_token": token, "expires_at": int(time.time()) + SESSION_TTL}
            if kind == "auto":
                return {**answer, "selected_model": {"object": "model", **selected}}
            return {**answer, "selected_model": selected["id"], "available_models": [m["id"] for m in acct.models]}
        if kind == "intent":
            return {"ok": True}
        answer = _answer(kind, acct.name, model, request)
        if kind in BILLED_KINDS:
            answer["copilot_usage"] = self.fake._bill(acct.name, model)
        return answer

    def _connection_fault(self, fault: str) -> None:
        self.close_connection = True
        try:
            if fault == "reset":  # a head promising a body, half of it, then a TCP reset
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
                self.wfile.write(b'{"choices": [')
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                return
            if fault == "garbage":
                self.wfile.write(b"HTTP/1.1 two hundred\r\n\r\n")
                self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _stream(self, kind: str, account: str, model: str, headers: dict) -> None:
        self.send_response(200)
        for k, v in {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
            "x-github-request-id": _request_id(),
            **headers,
        }.items():
            self.send_header(k, str(v))
        self.end_headers()
        f = self.fake
        events = list(SSE_EVENTS[kind](account, model, f.stream_chunks))
        billed = [e for _, e, _ in events if "copilot_usage" in e] or [events[-1][1]]  # the usage rides late
        billed[-1]["copilot_usage"] = f._bill(account, model)
        try:
            for i, (name, event, paced) in enumerate(events):
                if paced and i:
                    time.sleep(f.stream_interval)  # text arrives paced; the bookkeeping events around it at once
                event["sent_at"] = time.time()
                self._chunk((b"event: %s\n" % name.encode() if name else b"") + b"data: " + _json(event) + b"\n\n")
            if kind in DONE_KINDS:
                self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # client hung up mid-stream

    # ----- the Responses API over a WebSocket ---------------------------------------------

    def _websocket(self) -> None:
        """`GET /responses` with Upgrade: the same checks as an HTTP call, then one `response.create` per text
        message, answered with the Responses events. Response ids belong to this connection only."""
        acct, status, payload, headers, _ = self._decide("ws", None, {})
        if status != 200 or acct is None:
            return self._send(status or 502, payload or b"", headers)
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        request = h11_request(self.command, self.path, self.headers)
        ws.initiate_upgrade_connection(request.headers, request.target)
        self.wfile.write(ws.send(wsproto.events.AcceptConnection()))
        self.wfile.flush()
        record = {"account": acct.name, "messages": [], "closed": False}
        with self.fake._lock:
            self.fake.websockets.append(record)
        own_ids: set[str] = set()
        text = ""
        try:
            while True:
                data = self.rfile.read1(65536)
                if not data:
                    break
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, wsproto.events.TextMessage):
                        text += event.data
                        if event.message_finished:
                            self._ws_call(ws, acct, text, own_ids, record)
                            text = ""
                    elif isinstance(event, wsproto.events.Ping):
                        self.wfile.write(ws.send(event.response()))
                    elif isinstance(event, wsproto.events.CloseConnection):
                        self.wfile.write(ws.send(event.response()))
                        self.wfile.flush()
                        return
        except OSError:
            pass
        finally:
            record["closed"] = True
            self.close_connection = True

    def _ws_call(self, ws, acct: _Account, text: str, own_ids: set[str], record: dict) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        record["messages"].append(message)
        f = self.fake
        if not isinstance(message, dict) or message.get("type") != "response.create":
            events = [_ws_error("invalid_request", "expected a response.create message")]
        elif (previous := message.get("previous_response_id")) and previous not in own_ids:
            events = [_ws_error("previous_response_not_found", "input item does not belong to this connection")]
        elif (refusal := _model_refusal(acct, "ws", message.get("model") or "gpt-5.4")) is not None:
            events = [_ws_error(refusal["error"]["code"], refusal["error"]["message"])]
        else:
            with f._lock:
                acct.served += 1
                if message.get("initiator", "user") == "user":
                    acct.premium_used += 1
            model = message.get("model") or "gpt-5.4"
            events = [event for _, event, _ in _responses_events(acct.name, model, f.stream_chunks)]
            events[-1]["copilot_usage"] = f._bill(acct.name, model)  # response.completed says what it cost
            own_ids.add(events[0]["response"]["id"])
        for i, event in enumerate(events):
            if i:
                time.sleep(f.stream_interval)
            event["sent_at"] = time.time()
            self.wfile.write(ws.send(wsproto.events.TextMessage(json.dumps(event))))
            self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        # One write per event, flushed at once, so each event is its own network read.
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class ByteRecorder:
    """A listener nothing should ever reach: it accepts connections, records every byte that arrives on each
    (a TLS ClientHello counts), and answers nothing. Tests point hostile endpoints at it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._server = socket.create_server((host, 0), backlog=64)
        self._server.settimeout(0.1)
        self.port = self._server.getsockname()[1]
        self.connections: list[bytearray] = []  # what each connection sent
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, name="byte-recorder", daemon=True)]
        self._threads[0].start()

    @property
    def bytes_received(self) -> int:
        with self._lock:
            return sum(len(c) for c in self.connections)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            record = bytearray()
            with self._lock:
                self.connections.append(record)
            thread = threading.Thread(target=self._read, args=(conn, record), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _read(self, conn: socket.socket, record: bytearray) -> None:
        conn.settimeout(0.2)
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                with self._lock:
                    record += data

    def stop(self) -> None:
        self._stop.set()
        self._server.close()
        for thread in self._threads:
            thread.join(2)


def _chat_events(account: str, model: str, chunks: int):
    """Chat completion chunks, one piece of text each; usage and cost ride on the last (finish_reason) chunk.
    Every generator yields (event name or None, event, paced): paced events come `stream_interval` apart."""
    cid = f"chatcmpl-{secrets.token_hex(12)}"
    for i in range(chunks):
        last = i == chunks - 1
        delta = {
            "index": 0,
            "delta": {"content": f"chunk {i} from {account}"},
            "finish_reason": "stop" if last else None,
        }
        event = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        event["choices"] = [delta]
        if last:
            event["usage"] = {"prompt_tokens": 10, "completion_tokens": chunks, "total_tokens": 10 + chunks}
            event["copilot_usage"] = None  # what it cost: filled in when it is sent (FakeCopilot._bill)
        yield None, event, True


def _responses_events(account: str, model: str, chunks: int):
    """The Responses API's named events: created, a message item with text deltas, completed with usage and cost."""
    response = {"id": f"resp_{secrets.token_hex(12)}", "object": "response", "model": model, "status": "in_progress"}
    item = {"type": "message", "id": f"msg_{secrets.token_hex(12)}", "role": "assistant", "content": []}
    yield "response.created", {"type": "response.created", "response": {**response, "output": []}}, True
    yield "response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}, False
    text = ""
    for i in range(chunks):
        delta = f"chunk {i} from {account} "
        text += delta
        event = {"type": "response.output_text.delta", "item_id": item["id"], "output_index": 0, "delta": delta}
        yield "response.output_text.delta", event, True
    done = {**item, "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]}
    yield "response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": done}, False
    usage = {"input_tokens": 10, "output_tokens": chunks, "total_tokens": 10 + chunks}
    completed = {**response, "status": "completed", "output": [done], "usage": usage}
    event = {"type": "response.completed", "response": completed, "copilot_usage": None}
    yield "response.completed", event, False


def _messages_events(account: str, model: str, chunks: int):
    """Anthropic's Messages events: message_start, one text block in deltas, message_delta (stop, usage), stop."""
    message = {"id": f"msg_{secrets.token_hex(12)}", "type": "message", "role": "assistant", "model": model}
    message |= {"content": [], "stop_reason": None, "usage": {"input_tokens": 10, "output_tokens": 0}}
    yield "message_start", {"type": "message_start", "message": message}, True
    block = {"type": "text", "text": ""}
    yield "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}, False
    for i in range(chunks):
        delta = {"type": "text_delta", "text": f"chunk {i} from {account} "}
        yield "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}, True
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}, False
    stop = {"stop_reason": "end_turn", "stop_sequence": None}
    event = {"type": "message_delta", "delta": stop, "usage": {"output_tokens": chunks}, "copilot_usage": None}
    yield "message_delta", event, False
    yield "message_stop", {"type": "message_stop"}, False


def _answer(kind: str, account: str, model: str, request: dict) -> dict:
    """Plausible minimal non-streaming bodies for each inference kind."""
    text = f"hello from {account}"
    now = int(time.time())
    if kind == "chat":
        return {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": now,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        }
    if kind == "responses":
        return {
            "id": f"resp_{secrets.token_hex(12)}",
            "object": "response",
            "created_at": now,
            "status": "completed",
            "model": model,
            "output": [
                {
                    "type": "message",
                    "id": f"msg_{secrets.token_hex(12)}",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ],
            "usage": {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13},
        }
    if kind == "messages":
        return {
            "id": f"msg_{secrets.token_hex(12)}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 3},
        }
    if kind == "embeddings":
        inputs = request.get("input", [""])
        n = len(inputs) if isinstance(inputs, list) else 1
        return {
            "object": "list",
            "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, 0.4]} for i in range(n)],
            "usage": {"prompt_tokens": n, "total_tokens": n},
        }
    return {
        "id": f"cmpl-{secrets.token_hex(12)}",
        "object": "text_completion",
        "created": now,
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
    }


def _model_refusal(acct: _Account, kind: str, model: str) -> dict | None:
    """The service's 400 for a model the account's catalogue lacks, or lacks on this endpoint."""
    endpoint = KIND_ENDPOINTS.get(kind)
    if endpoint is None:
        return None
    entry = next((m for m in acct.models if m.get("id") == model), None)
    if entry is None:
        return {"error": {"message": "The requested model is not supported.", "code": "model_not_supported"}}
    listed = entry.get("supported_endpoints")
    if (endpoint in listed) if isinstance(listed, list) else not endpoint.startswith("ws:"):
        return None
    return {"error": {"message": f"{model} does not support {endpoint}", "code": "unsupported_api_for_model"}}


def _completion_events(account: str, model: str, chunks: int):
    """Inline code completions (`/v1/engines/<model>/completions`, stream): the text in pieces, then a stop."""
    cid = f"cmpl-{secrets.token_hex(12)}"
    text = completion_text(account)
    size = max(1, -(-len(text) // chunks))
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        choice = {"index": 0, "text": piece, "finish_reason": "stop" if last else None, "logprobs": None}
        yield None, {"id": cid, "created": int(time.time()), "model": model, "choices": [choice]}, True


def completion_text(account: str) -> str:
    """What an inline completion of `account` inserts: a line of code naming the account that wrote it."""
    return f"return 'hello from {account}'"


# Streamed answers ("stream": true) by kind; the chat and completion streams end with `data: [DONE]`.
SSE_EVENTS = {
    "chat": _chat_events,
    "completions": _completion_events,
    "responses": _responses_events,
    "messages": _messages_events,
}
DONE_KINDS = {"chat", "completions"}


def _ws_error(code: str, message: str) -> dict:
    return {"type": "error", "error": {"code": code, "message": message}}


def _request_id() -> str:
    return f"FAKE:{secrets.token_hex(2).upper()}:{secrets.token_hex(4).upper()}"


def h11_request(method: str, target: str, headers) -> h11.Request:
    """The upgrade request as wsproto reads it (http.server has parsed it already)."""
    return h11.Request(method=method, target=target, headers=[(k, v) for k, v in headers.items()])


# ----- CLI -------------------------------------------------------------------------------


def _account_arg(spec: str) -> tuple[str, str, str]:
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError("expected NAME=GITHUB_TOKEN[:TYPE]")
    token, _, kind = rest.rpartition(":")
    if kind in ACCOUNT_TYPES and token:
        return name, token, kind
    return name, rest, "individual"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Fake GitHub + Copilot upstream for tests and benchmarks.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument(
        "--account",
        type=_account_arg,
        action="append",
        default=[],
        metavar="NAME=GITHUB_TOKEN[:TYPE]",
        help="TYPE: individual (default), business, enterprise",
    )
    p.add_argument("--rate-limit", type=int, default=None, help="inference requests per account per window")
    p.add_argument("--rate-window", type=float, default=60.0, help="seconds")
    p.add_argument("--delay-ms", type=float, default=0.0, help="before each inference answer")
    p.add_argument("--exchange-delay-ms", type=float, default=0.0, help="before each token exchange answer")
    p.add_argument(
        "--churn-429",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="answer this fraction of would-be successful inference requests with 429",
    )
    p.add_argument("--churn-retry-ms", type=int, default=20, help="retry-after-ms of those churn 429s")
    p.add_argument("--token-ttl", type=int, default=1800)
    p.add_argument("--refresh-in", type=int, default=1500)
    p.add_argument("--stream-chunks", type=int, default=5)
    p.add_argument("--stream-interval-ms", type=float, default=20.0)
    p.add_argument("--bucket", metavar="BURST/PER_SECOND", help="a hidden token bucket on each account")
    p.add_argument(
        "--model-bucket",
        action="append",
        default=[],
        metavar="MODEL=BURST/PER_SECOND",
        help="a hidden token bucket for one model on each account",
    )
    a = p.parse_args(argv)

    fake = FakeCopilot(
        a.host,
        a.port,
        token_ttl=a.token_ttl,
        refresh_in=a.refresh_in,
        rate_limit=a.rate_limit,
        rate_window=a.rate_window,
        delay=a.delay_ms / 1000,
        stream_chunks=a.stream_chunks,
        stream_interval=a.stream_interval_ms / 1000,
    )
    fake.exchange_delay = a.exchange_delay_ms / 1000
    fake.churn_429, fake.churn_retry_ms = a.churn_429, a.churn_retry_ms
    for name, token, kind in a.account:
        fake.add_account(name, token, kind)
    if a.bucket:
        burst, rate = (float(x) for x in a.bucket.split("/"))
        fake.set_bucket(burst, rate)
    for spec in a.model_bucket:
        model, _, limits = spec.partition("=")
        burst, rate = (float(x) for x in limits.split("/"))
        fake.set_bucket(burst, rate, model=model)

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"fake copilot listening at {fake.start()}", flush=True)
    while not done.wait(0.5):  # a timed wait keeps the main thread responsive to signals
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
