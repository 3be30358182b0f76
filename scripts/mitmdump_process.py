"""Run the real thing: mitmdump as a subprocess with the pool addon, and HTTPS clients that trust its CA.

The one way the end-to-end tests, the demo and the benchmarks start mitmdump. Readiness is read from the pool's
own status page (`http://copilot-pool/status.json`, answered inside mitmdump), not from its log text.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "addon" / "pool.py"
MITMDUMP = Path(sys.executable).parent / "mitmdump"
MITMWEB = Path(sys.executable).parent / "mitmweb"
COPILOT_POOL = Path(sys.executable).parent / "copilot-pool"  # the launcher: adds the addon itself (addon=False)
MITMDUMP_UVLOOP = (sys.executable, "-m", "copilot_pool.mitm.launch")  # plain mitmdump on the launcher's loop
LISTENING = re.compile(r"HTTP\(S\) proxy listening at .*?:(\d+)")  # mitmproxy's own line: the port it got
WEB_LISTENING = re.compile(r"Web server listening at (\S+)")
STATUS_URL = "http://copilot-pool/status.json"
PROXY_ENV_VARS = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
    "GH_TOKEN",
    "GITHUB_TOKEN",
)


class Mitmdump:
    """One mitmdump process (or mitmweb: `command=(str(MITMWEB),)`); its output is collected line by line in `lines`."""

    def __init__(
        self,
        confdir: Path,
        options: dict[str, object],
        env: dict[str, str] | None = None,
        addon: bool | Path = True,  # True: this checkout's addon/pool.py; a path: that script instead
        args: list[str] = (),
        command: tuple[str, ...] = (str(MITMDUMP),),
        timeout: float = 15.0,
    ):
        self.confdir = confdir
        auth = str(options.get("proxyauth", ""))
        self.proxyauth = auth if ":" in auth and not auth.startswith("@") else ""  # USER:PASS, for the status page
        settings = {
            "confdir": confdir,
            "listen_host": "127.0.0.1",
            "listen_port": 0,
            "connection_strategy": "lazy",
            **options,
        }
        cmd = [str(c) for c in command]
        if addon:
            cmd += ["-s", str(ADDON if addon is True else addon)]
        for key, value in settings.items():
            for item in value if isinstance(value, list | tuple) else [value]:  # a list: one --set per item
                cmd += ["--set", f"{key}={item}"]
        cmd += list(args)
        process_env = {k: v for k, v in os.environ.items() if k not in PROXY_ENV_VARS}
        # the pool's default state file (pool_state=sqlite) goes under the confdir, never the user's data directory
        process_env["XDG_DATA_HOME"] = str(confdir / "data")
        process_env.update(env or {})
        self.lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=process_env, cwd=ROOT
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.port = int(self.wait_for(LISTENING, timeout).group(1))

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for(self, pattern: str | re.Pattern, timeout: float = 15.0, start: int = 0) -> re.Match:
        """Wait for an output line matching `pattern` (from line index `start`); fail with the output so far."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    if m := regex.search(line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(f"mitmdump never printed {regex.pattern!r}; output:\n" + self.output())
                self._changed.wait(min(left, 0.2))

    @property
    def web_url(self) -> str:
        """mitmweb's address, with its access token."""
        return self.wait_for(WEB_LISTENING).group(1)

    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    @property
    def ca(self) -> str:
        return str(self.confdir / "mitmproxy-ca-cert.pem")

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(
            proxy=f"http://127.0.0.1:{self.port}",
            verify=ssl.create_default_context(cafile=self.ca),
            trust_env=False,
            **{"timeout": 15, **kw},
        )

    def async_client(self, **kw) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            proxy=f"http://127.0.0.1:{self.port}",
            verify=ssl.create_default_context(cafile=self.ca),
            trust_env=False,
            **{"timeout": 15, **kw},
        )

    def status(self) -> dict:
        """The pool's status page as JSON (through the proxy, plain HTTP: no CA needed)."""
        auth = f"{self.proxyauth}@" if self.proxyauth else ""
        with httpx.Client(proxy=f"http://{auth}127.0.0.1:{self.port}", trust_env=False, timeout=10) as client:
            response = client.get(STATUS_URL)
        response.raise_for_status()
        return response.json()

    def wait_accounts(
        self, names: list[str] | None = None, states: tuple[str, ...] = ("active",), timeout: float = 30.0
    ) -> dict:
        """Wait until each named account (default: all) is in one of `states`; the status page then."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            seen = {a["name"]: a["state"] for a in status["accounts"]}
            wanted = seen if names is None else names
            if seen and all(seen.get(name) in states for name in wanted):
                return status
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"accounts never reached {states}: {seen}; output:\n" + self.output()[-3000:])
            time.sleep(0.02)

    def stop(self) -> int:
        return stop_process(self.process)


def read_flows(path: Path, *args: str, addon: bool = True) -> str:
    """What `mitmdump -n -r PATH` (with the pool addon: its content view) prints for saved flows."""
    cmd = [str(MITMDUMP), "-n", "-r", str(path), *(["-s", str(ADDON)] if addon else []), *args]
    env = {k: v for k, v in os.environ.items() if k not in PROXY_ENV_VARS}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    return done.stdout + done.stderr


def stop_process(process: subprocess.Popen) -> int:
    """Terminate a child politely, then firmly; return its exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def write_accounts(path: Path, accounts: list[dict]) -> Path:
    """Replace the accounts file atomically, the way editors and tools do, readable by its owner only."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"accounts": accounts}))
    tmp.chmod(0o600)  # it holds GitHub tokens
    os.replace(tmp, path)
    return path


def chat(
    client: httpx.Client,
    credential: str = "tid=client-own-token",
    host: str = "api.individual.githubcopilot.com",
    **body,
) -> httpx.Response:
    return client.post(
        f"https://{host}/chat/completions",
        headers={"authorization": f"Bearer {credential}", "copilot-integration-id": "vscode-chat"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], **body},
    )


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")
