#!/usr/bin/env python3
"""A strict fake of the GitHub token exchange and the Copilot API, served on loopback.

One server plays both GitHub (``/copilot_internal/...``) and the Copilot inference hosts.
Accounts of type "individual" are handed ``http://127.0.0.1:PORT`` as ``endpoints.api``;
"business" and "enterprise" get ``http://localhost:PORT``. Same server, different Host
header: a credential presented on the wrong host gets 421, like the real service, so
tests can tell whether a client honoured the account's ``endpoints.api``.

Stdlib only. Used in-process by tests (``from fake_copilot import FakeCopilot``) and as
a CLI by demos and benchmarks (``python scripts/fake_copilot.py --help``).
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
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

ACCOUNT_TYPES = ("individual", "business", "enterprise")
SKUS = {
    "individual": "copilot_for_individuals_subscriber",
    "business": "copilot_for_business_seat",
    "enterprise": "copilot_enterprise_seat",
}
PREMIUM_ENTITLEMENT = 300

# Inference routes: path -> (method, kind). Completions for a model are matched by regex.
ROUTES = {
    "/chat/completions": ("POST", "chat"),
    "/v1/chat/completions": ("POST", "chat"),
    "/responses": ("POST", "responses"),
    "/v1/messages": ("POST", "messages"),
    "/embeddings": ("POST", "embeddings"),
    "/models": ("GET", "models"),
}
ENGINE_COMPLETIONS = re.compile(r"^/v1/engines/([^/]+)/completions$")
PREMIUM_KINDS = {"chat", "responses", "messages"}  # each 2xx costs one premium interaction
NANO_AIU = 25_000_000  # what each answer reports it cost (copilot_usage.total_nano_aiu): 0.025 AI credits

UNAUTHORIZED = {"error": {"message": "unauthorized: token expired or invalid", "code": "unauthorized"}}
RATE_LIMITED = {
    "error": {"message": "Sorry, you've exhausted this model's rate limit.", "code": "user_model_rate_limited"}
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


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


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
        self.stream_chunks, self.stream_interval = stream_chunks, stream_interval
        self.base_url = ""
        self.log: list[LogEntry] = []
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(32)
        self._accounts: dict[str, _Account] = {}
        self._by_github: dict[str, str] = {}  # github token -> account name
        self._tokens: dict[str, _Issued] = {}  # copilot token -> issue record (never removed)
        self._injections: dict[str, collections.deque[_Injection]] = {}
        self._rl_default: tuple[int | None, float] = (rate_limit, rate_window)
        self._rl_account: dict[str, tuple[int | None, float]] = {}
        self._rl_state: dict[str, list] = {}  # account -> [window_start, admitted count]
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

    def revoke(self, account: str) -> None:
        with self._lock:
            self._get(account).revoked = True
            self._invalidate(account)

    def expire_tokens(self, account: str) -> None:
        with self._lock:
            self._get(account)
            self._invalidate(account)

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

    def _user_info(self, acct: _Account) -> dict:
        remaining, pct = self._quota(acct)
        unlimited = {
            "entitlement": 0,
            "remaining": 0,
            "percent_remaining": 100.0,
            "unlimited": True,
            "overage_permitted": False,
        }
        return {
            "login": acct.name,
            "copilot_plan": acct.account_type if acct.copilot else "none",
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
        hdrs = {"Content-Type": "application/json", **(headers or {})}
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
            if acct is None or acct.revoked:
                status, payload = 401, BAD_CREDENTIALS
            elif path.endswith("/token"):
                status, payload = (200, f._issue(acct)) if acct.copilot else (403, NO_COPILOT)
            else:
                status, payload = 200, f._user_info(acct)
            self._record(name, kind, status, token)
        self._send(status, _json(payload))

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
        f = self.fake
        if f.delay:
            time.sleep(f.delay)
        cred = self._credential(("bearer",))
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = None
        bad_json = not isinstance(request, dict)
        request = {} if bad_json else request
        headers: dict = {}
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
            if acct is not None:
                headers["x-fake-account"] = acct.name
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
            elif queue := f._injections.get(acct.name):
                inj = queue[0]  # injected answers win over everything but auth and host checks
                inj.remaining -= 1
                if inj.remaining <= 0:
                    queue.popleft()
                status, payload = inj.status, inj.body
                headers.update(inj.headers)
            elif bad_json:
                status, payload = (
                    400,
                    _json({"error": {"message": "invalid JSON body", "code": "invalid_request_body"}}),
                )
            elif (retry := f._rate_limited(acct.name, time.time())) is not None:
                status, payload = 429, _json(RATE_LIMITED)
                headers["Retry-After"] = str(retry)
            elif f.churn_429 and random.random() < f.churn_429:
                status, payload = 429, _json(RATE_LIMITED)
                headers["retry-after-ms"] = str(f.churn_retry_ms)
            else:
                status, payload = 200, None  # built below, outside the lock
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
            # Logged at decision time, so a client that has any answer already finds it in the log.
            self._record(acct.name if acct else None, cred_kind, status, cred)
            chunks, interval = f.stream_chunks, f.stream_interval

        if status == 0:  # injected connection drop: no status line, nothing at all
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if payload is not None:
            return self._send(status, payload, headers)
        model = engine or request.get("model") or "gpt-4o"
        if kind in SSE_EVENTS and request.get("stream") is True:
            return self._stream(SSE_EVENTS[kind](acct.name, model, chunks), headers, interval, kind in DONE_KINDS)
        self._send(200, _json(_answer(kind, acct.name, model, request)), headers)

    def _stream(self, events, headers: dict, interval: float, done: bool) -> None:
        self.send_response(200)
        for k, v in {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
            **headers,
        }.items():
            self.send_header(k, str(v))
        self.end_headers()
        try:
            for i, (name, event, paced) in enumerate(events):
                if paced and i:
                    time.sleep(interval)  # text arrives paced; the bookkeeping events around it at once
                event["sent_at"] = time.time()
                self._chunk((b"event: %s\n" % name.encode() if name else b"") + b"data: " + _json(event) + b"\n\n")
            if done:
                self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # client hung up mid-stream

    def _chunk(self, data: bytes) -> None:
        # One write per event, flushed at once, so each event is its own network read.
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def _usage_cost() -> dict:
    return {"total_nano_aiu": NANO_AIU, "token_details": [{"token_type": "output", "token_count": 3}]}


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
            event["copilot_usage"] = _usage_cost()
        yield None, event, True


def _completion_events(account: str, model: str, chunks: int):
    cid = f"cmpl-{secrets.token_hex(12)}"
    for i in range(chunks):
        choice = {
            "index": 0,
            "text": f"chunk {i} from {account} ",
            "finish_reason": "stop" if i == chunks - 1 else None,
        }
        yield None, {"id": cid, "object": "text_completion", "model": model, "choices": [choice]}, True


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
    event = {"type": "response.completed", "response": completed, "copilot_usage": _usage_cost()}
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
    event = {"type": "message_delta", "delta": stop, "usage": {"output_tokens": chunks}, "copilot_usage": _usage_cost()}
    yield "message_delta", event, False
    yield "message_stop", {"type": "message_stop"}, False


# Streamed answers ("stream": true) by kind; the chat and completion streams end with `data: [DONE]`.
SSE_EVENTS = {
    "chat": _chat_events,
    "completions": _completion_events,
    "responses": _responses_events,
    "messages": _messages_events,
}
DONE_KINDS = {"chat", "completions"}


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
            "copilot_usage": _usage_cost(),
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
            "copilot_usage": _usage_cost(),
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
            "copilot_usage": _usage_cost(),
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
    if kind == "models":
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "vendor": v, "capabilities": {"type": "chat", "family": m}}
                for m, v in (("gpt-4o", "Azure OpenAI"), ("claude-sonnet-4", "Anthropic"))
            ],
        }
    return {
        "id": f"cmpl-{secrets.token_hex(12)}",
        "object": "text_completion",
        "created": now,
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
    }


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
