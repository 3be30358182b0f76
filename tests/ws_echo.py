"""A WebSocket echo server (wsproto over plain sockets, a thread per connection) and a client that talks to it
through an HTTP proxy: for the tests that check mitmproxy still relays WebSockets."""

from __future__ import annotations

import socket
import socketserver
import threading

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Request, TextMessage


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while data := self.request.recv(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    self.request.sendall(ws.send(AcceptConnection()))
                elif isinstance(event, Message):
                    self.request.sendall(ws.send(TextMessage(f"echo: {event.data}")))
                elif isinstance(event, CloseConnection):
                    self.request.sendall(ws.send(event.response()))
                    return


class EchoServer:
    def __init__(self) -> None:
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def echo_through_proxy(proxy_port: int, server_port: int, texts: list[str]) -> list[str]:
    """Open ws://127.0.0.1:server_port/ through the proxy (absolute-form upgrade), send each text, return answers."""
    ws = WSConnection(ConnectionType.CLIENT)
    answers: list[str] = []
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as sock:
        sock.sendall(ws.send(Request(host=f"127.0.0.1:{server_port}", target=f"http://127.0.0.1:{server_port}/")))
        pending = list(texts)
        while True:
            data = sock.recv(65536)
            if not data:
                return answers
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection | TextMessage):
                    if isinstance(event, TextMessage):
                        answers.append(event.data)
                    if pending:
                        sock.sendall(ws.send(Message(data=pending.pop(0))))
                    else:
                        sock.sendall(ws.send(CloseConnection(code=1000)))
                elif isinstance(event, CloseConnection):
                    return answers
