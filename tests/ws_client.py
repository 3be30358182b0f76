"""A small blocking WebSocket client (wsproto over a socket), directly or through mitmproxy: a CONNECT tunnel,
then TLS trusting the proxy's CA, as the Copilot CLI opens `GET /responses`."""

from __future__ import annotations

import json
import socket
import ssl

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)


class Refused(Exception):
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(f"upgrade refused: {status}")
        self.status, self.headers, self.body = status, headers, body


class WebSocket:
    def __init__(
        self,
        host: str,
        path: str,
        headers: dict[str, str],
        *,
        via: tuple[int, str] | None = None,
        port: int = 443,
        timeout: float = 15.0,
    ) -> None:
        """`via`: (proxy port on 127.0.0.1, its CA file): tunnel through it with TLS to `host`; else plain TCP to
        host:port."""
        if via is None:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        else:
            proxy_port, ca = via
            raw = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
            raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = raw.recv(4096)
                if not chunk:
                    raise ConnectionError("proxy closed the tunnel")
                reply += chunk
            if b" 200" not in reply.split(b"\r\n", 1)[0]:
                raise ConnectionError(f"CONNECT refused: {reply[:80]!r}")
            self.sock = ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname=host)
        self.ws = WSConnection(ConnectionType.CLIENT)
        extra = [(k.encode(), v.encode()) for k, v in headers.items()]
        authority = host if via is not None else f"{host}:{port}"
        self.sock.sendall(self.ws.send(Request(host=authority, target=path, extra_headers=extra)))
        self._pending: list = []
        self.response_headers: dict[str, str] = {}
        while True:
            event = self._next()
            if isinstance(event, AcceptConnection):
                self.response_headers = {k.decode().lower(): v.decode() for k, v in event.extra_headers}
                return
            if isinstance(event, RejectConnection):
                status = event.status_code
                found = {k.decode().lower(): v.decode() for k, v in event.headers}
                body = b""
                more = event.has_body
                while more:
                    data = self._next()
                    if isinstance(data, RejectData):
                        body += data.data
                        more = not data.body_finished
                self.sock.close()
                raise Refused(status, found, body)

    def _next(self):
        while not self._pending:
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            self._pending.extend(self.ws.events())
            if not data and not self._pending:
                raise ConnectionError("connection closed")
        return self._pending.pop(0)

    def send(self, message: dict) -> None:
        self.sock.sendall(self.ws.send(TextMessage(json.dumps(message))))

    def receive(self) -> dict:
        """The next text message, as JSON; pings are answered on the way."""
        text = ""
        while True:
            event = self._next()
            if isinstance(event, Ping):
                self.sock.sendall(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                raise ConnectionError(f"closed by the server ({event.code})")
            elif isinstance(event, TextMessage):
                text += event.data
                if event.message_finished:
                    return json.loads(text)

    def call(self, message: dict) -> list[dict]:
        """Send one `response.create` and collect its events up to `response.completed` (or an error)."""
        self.send(message)
        events = []
        while True:
            event = self.receive()
            events.append(event)
            if event.get("type") in ("response.completed", "error"):
                return events

    def close(self) -> None:
        try:
            self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
            self.sock.recv(1024)
        except OSError:
            pass
        finally:
            self.sock.close()
