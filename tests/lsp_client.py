"""A small LSP client over a child process's stdio, as an editor drives the Copilot language server.

JSON-RPC 2.0 framed with Content-Length headers. A reader thread answers the server's own requests (configuration,
progress, capability registration) with empty results and keeps every notification, so tests can wait for one.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any


class ResponseError(Exception):
    def __init__(self, method: str, error: dict) -> None:
        super().__init__(f"{method}: {error.get('code')} {error.get('message')}")
        self.error = error


class LspClient:
    def __init__(self, cmd: list[str], env: dict[str, str], cwd: str) -> None:
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd
        )
        self.notifications: list[dict] = []
        self.stderr: list[str] = []
        self._answers: dict[int, dict] = {}
        self._next_id = 0
        self._changed = threading.Condition()
        self._write_lock = threading.Lock()
        self._eof = False
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    # -- sending ------------------------------------------------------------------------------------

    def request(self, method: str, params: Any, timeout: float = 60.0) -> Any:
        with self._changed:
            self._next_id += 1
            rid = self._next_id
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        answer = self._wait(lambda: self._answers.pop(rid, None), timeout, f"an answer to {method}")
        if "error" in answer:
            raise ResponseError(method, answer["error"])
        return answer.get("result")

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def _send(self, message: dict) -> None:
        body = json.dumps(message).encode()
        with self._write_lock:
            self.process.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            self.process.stdin.flush()

    # -- receiving ----------------------------------------------------------------------------------

    def wait_notification(self, method: str, predicate=lambda params: True, timeout: float = 60.0) -> dict:
        """The first notification of `method` whose params satisfy `predicate` (seen already or arriving)."""

        def found():
            return next(
                (n["params"] for n in self.notifications if n["method"] == method and predicate(n["params"])), None
            )

        return self._wait(found, timeout, f"a {method} notification")

    def _wait(self, found, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self._changed:
            while (value := found()) is None:
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(f"the language server never sent {what}; it said:\n{self.transcript()}")
                self._changed.wait(min(left, 0.5))
            return value

    def transcript(self) -> str:
        """What the server said (notifications, stderr), for failure messages."""
        with self._changed:
            said = [json.dumps(n)[:500] for n in self.notifications[-40:]]
            return "\n".join(said + self.stderr[-40:])

    def _read(self) -> None:
        stream = self.process.stdout
        while True:
            length = None
            while (line := stream.readline()) not in (b"\r\n", b"\n"):
                if not line:
                    with self._changed:
                        self._eof = True
                        self._changed.notify_all()
                    return
                name, _, value = line.decode("ascii").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            message = json.loads(stream.read(length or 0))
            if "method" in message and "id" in message:
                self._send({"jsonrpc": "2.0", "id": message["id"], "result": _answer(message)})
            with self._changed:
                if "method" in message and "id" not in message:
                    self.notifications.append(message)
                elif "id" in message and "method" not in message:
                    self._answers[message["id"]] = message
                self._changed.notify_all()

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            with self._changed:
                self.stderr.append(line.decode(errors="replace").rstrip())

    # -- life cycle ---------------------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """shutdown and exit as an editor does, then make sure the process is gone."""
        try:
            if self.process.poll() is None:
                self.request("shutdown", None, timeout=timeout)
                self.notify("exit", None)
                self.process.wait(timeout)
        except (AssertionError, OSError, subprocess.TimeoutExpired, ResponseError):
            pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _answer(message: dict) -> Any:
    """An editor's minimal answer to the server's requests: no settings (one null per item asked), else null."""
    if message["method"] == "workspace/configuration":
        return [None for _ in message.get("params", {}).get("items", [])]
    return None
