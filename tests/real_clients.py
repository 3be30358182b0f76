"""The real Copilot clients, as scripts/real_clients.sh installs them (pinned by tests/npm/package-lock.json), and
what it takes to run them through the proxy against the fake upstream: a home of their own, the proxy, its CA.

A test that needs a client it cannot find is skipped, naming why (npm missing, the registry unreachable, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import pytest
from copilot_pool.observe.redact import redact
from fake_copilot import FakeCopilot
from mitmdump_process import ROOT, Mitmdump, wait_until, write_accounts

LOCK = ROOT / "tests" / "npm" / "package-lock.json"
FAKE_NETWORK = ROOT / "tests" / "fake_network.py"
USER = ("user", "gho_users_own_token_0009")  # the client's own sign-in: an account of the fake, not of the pool
ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}


def install_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "copilot-pool" / "clients" / hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]


def binary(package: str) -> Path:
    """The platform binary of `@github/<package>` (it runs without a recent Node); skip the test without it."""
    target = f"{platform.system().lower().replace('windows', 'win32')}-{ARCH.get(platform.machine().lower(), '?')}"
    path = install_dir() / "node_modules" / "@github" / f"{package}-{target}" / package
    if not (install_dir() / ".installed").exists():
        why = install_dir().with_suffix(".unavailable")
        reason = why.read_text().strip() if why.exists() else "not installed: run scripts/real_clients.sh"
        pytest.skip(f"real Copilot clients unavailable ({reason})")
    if not path.exists():
        pytest.skip(f"no {package} binary for {target}")
    return path


def home(tmp: Path) -> dict[str, str]:
    """A home of the client's own: nothing it keeps (sign-ins, caches of the user's plan) leaks between tests. The
    CLI's unpacked runtime is shared: its cache links to the one the install unpacked."""
    cache = tmp / "cache"
    (cache / "copilot").mkdir(parents=True, exist_ok=True)
    shared = install_dir() / "xdg-cache" / "copilot" / "pkg"
    if shared.is_dir() and not (cache / "copilot" / "pkg").exists():
        (cache / "copilot" / "pkg").symlink_to(shared)
    return {
        "HOME": str(tmp / "home"),
        "XDG_CONFIG_HOME": str(tmp / "home" / ".config"),
        "XDG_STATE_HOME": str(tmp / "home" / ".local" / "state"),
        "XDG_DATA_HOME": str(tmp / "home" / ".local" / "share"),
        "XDG_CACHE_HOME": str(cache),
    }


def through(proxy: Mitmdump, tmp: Path, **env: str) -> dict[str, str]:
    """A client's whole environment: its own home, the proxy and its CA, nothing inherited but PATH."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **home(tmp),
        "HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}",
        "NODE_EXTRA_CA_CERTS": proxy.ca,
        "NODE_USE_ENV_PROXY": "1",  # the language server's MCP client uses Node's fetch, which ignores HTTPS_PROXY
        "TERM": "dumb",
        "NO_COLOR": "1",
        **env,
    }


class Rig:
    """The fake upstream, and real mitmdump with the pool on `accounts` and the fake network behind it, ready:
    every account active and its catalogue in. The clients sign in as USER, whom the pool does not know."""

    def __init__(self, tmp: Path, accounts: list[dict], **options) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.fake = FakeCopilot(stream_chunks=4, stream_interval=0.02)
        for account in accounts:
            self.fake.add_account(account["name"], account["github_token"], account.get("account_type", "individual"))
        self.fake.add_account(*USER)
        self.fake.start()
        self.log = tmp / "network.jsonl"
        self.log.touch()
        settings = {
            "pool_accounts": write_accounts(tmp / "accounts.json", [dict(a) for a in accounts]),
            "pool_github_api": self.fake.base_url,
            "pool_extra_endpoints": self.fake.endpoint_bases(),  # the fake's plain-http bases, trusted for tests
            "pool_github_token_file": tmp / "no-token-file",
            "pool_state": f"sqlite:{tmp / 'state.sqlite3'}",
            "fake_upstream": self.fake.base_url,
            "fake_network_log": self.log,
            **options,
        }
        try:
            self.proxy = Mitmdump(tmp / "confdir", settings, args=["-s", str(FAKE_NETWORK)])
            names = [a["name"] for a in accounts]
            self.proxy.wait_accounts(names, timeout=60)
            wait_until(lambda: all(a["models"] for a in self.proxy.status()["accounts"]), timeout=30)
        except BaseException:
            self.close()
            raise

    def requests(self, since: int = 0) -> list[dict]:
        """What the clients asked for, as tests/fake_network.py noted it (one line per answer)."""
        return [json.loads(line) for line in self.log.read_text().splitlines()[since:]]

    def in_flight(self) -> dict[str, int]:
        return {a["name"]: a["in_flight"] for a in self.proxy.status()["accounts"]}

    def masked(self, text: str) -> str:
        """`text` with every credential the fake knows masked, for failure messages."""
        for secret in [*self.fake.issued_tokens(), *self.fake.sessions()]:
            text = text.replace(secret, "***")
        return redact(text)

    def close(self) -> None:
        if getattr(self, "proxy", None) is not None:
            self.proxy.stop()
        self.fake.stop()
