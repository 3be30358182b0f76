"""HTTP/1.1 framing for the relay, on both of its sides: a message head, and a body by Content-Length, chunked or
until the connection closes. What the relay needs and no more: it talks to mitmproxy and to Copilot's endpoints.

Why not h11: parsing a request and writing a streamed answer through it took 163 µs, reading that answer 129 µs
(timeit, typical shapes), most of a relayed stream's own cost; this does the same framing in a fraction of it.
Anything malformed raises ValueError, and the relay then drops the connection.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import NamedTuple

MAX_HEAD = 64 * 1024
MAX_LINE = 4096  # a chunk-size or trailer line

type Headers = list[tuple[bytes, bytes]]  # names lower-cased


class Head(NamedTuple):
    first_line: bytes  # "POST /path HTTP/1.1" or "HTTP/1.1 200 OK"
    headers: Headers

    def get(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


def take_head(buf: bytes) -> tuple[Head | None, bytes]:
    """A complete head off the front of `buf` and what follows it, or (None, buf) while it is incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end == -1:
        if len(buf) > MAX_HEAD:
            raise ValueError("head too large")
        return None, buf
    lines = buf[:end].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b"\n" in line or b"\r" in line:
            raise ValueError(f"bad header line {line[:40]!r}")
        headers.append((name.lower(), value.strip()))
    if b"\n" in lines[0] or b"\r" in lines[0]:
        raise ValueError("bad first line")
    return Head(lines[0], headers), buf[end + 4 :]


def status_of(head: Head) -> int:
    version, _, rest = head.first_line.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(rest) < 3 or not rest[:3].isdigit():
        raise ValueError(f"bad status line {head.first_line[:40]!r}")
    return int(rest[:3])


def body_of(head: Head, status: int | None = None) -> Body:
    """How the message's body is framed (`status`: it is an answer, whose body may run until the connection ends)."""
    if status is not None and (status < 200 or status in (204, 304)):
        return Body(0)
    encoding = head.get(b"transfer-encoding")
    if encoding is not None:
        if encoding.lower().rsplit(b",", 1)[-1].strip() != b"chunked":
            raise ValueError("unsupported transfer-encoding")
        return Body(chunked=True)
    length = head.get(b"content-length")
    if length is not None:
        if not length.isdigit():
            raise ValueError("bad content-length")
        return Body(int(length))
    return Body(None if status is not None else 0)


_DATA, _DATA_END, _SIZE, _TRAILER = range(4)


class Body:
    """One body's framing: `feed` takes what arrived and returns the body's bytes in it (chunks unwrapped);
    `done` once it ended, `rest` then holds what came after it. Length None: it ends with the connection."""

    __slots__ = ("left", "chunked", "done", "rest", "_state", "_buf")

    def __init__(self, length: int | None = 0, chunked: bool = False) -> None:
        self.left, self.chunked = length, chunked
        self.done = length == 0 and not chunked
        self.rest = b""
        self._state = _SIZE if chunked else _DATA
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self.left is None and not self.chunked:
            return [data] if data else []
        buf, at, out = self._buf + data if self._buf else data, 0, []
        while not self.done and at < len(buf):
            if self._state == _DATA:
                piece = buf[at : at + self.left]
                out.append(piece)
                at += len(piece)
                self.left -= len(piece)
                if not self.left:
                    self._state, self.done = (_DATA_END, False) if self.chunked else (_DATA, True)
            elif self._state == _DATA_END:
                if len(buf) - at < 2:
                    break
                if buf[at : at + 2] != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
                at, self._state = at + 2, _SIZE
            else:
                end = buf.find(b"\r\n", at)
                if end == -1:
                    if len(buf) - at > MAX_LINE:
                        raise ValueError("chunk line too long")
                    break
                line, at = buf[at:end], end + 2
                if self._state == _SIZE:
                    size = line.split(b";", 1)[0].strip()
                    if not size or any(c not in b"0123456789abcdefABCDEF" for c in size):
                        raise ValueError(f"bad chunk size {line[:20]!r}")
                    self.left = int(size, 16)
                    self._state = _DATA if self.left else _TRAILER
                elif not line:
                    self.done = True  # the empty line after the last chunk (and any trailers)
        if self.done:
            self.rest, self._buf = buf[at:], b""
        else:
            self._buf = buf[at:]
        return out


def response_head(status: int, headers: Headers) -> bytes:
    try:
        reason = HTTPStatus(status).phrase.encode()
    except ValueError:
        reason = b""
    lines = b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers)
    return b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason, lines)


def request_head(method: str, target: str, headers: Headers) -> bytes:
    lines = b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers)
    return b"%s %s HTTP/1.1\r\n%s\r\n" % (method.encode(), target.encode(), lines)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)  # never empty: that would end the body


LAST_CHUNK = b"0\r\n\r\n"
