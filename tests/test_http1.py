"""The relay's HTTP/1.1 framing, checked against h11 (mitmproxy's own HTTP/1 parser) as an independent reference,
and fed in every possible split, as TCP may deliver it."""

from __future__ import annotations

import h11
import pytest
from copilot_pool.mitm import http1

EVENTS = [b'data: {"n": %d}\n\n' % i for i in range(4)]


def h11_chunked_answer() -> bytes:
    """An SSE answer as a server using h11 sends it: chunked, with a chunk extension-free framing."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n")
    server.next_event(), server.next_event()
    out = server.send(h11.Response(status_code=200, headers=[("content-type", "text/event-stream")]))
    out += b"".join(server.send(h11.Data(data=e)) for e in EVENTS)
    return out + server.send(h11.EndOfMessage())


def read_answer(pieces: list[bytes]) -> tuple[int, list[bytes], bytes]:
    """Feed an answer in pieces: its status, its body, what came after it."""
    buf, head, body, out = b"", None, None, []
    for piece in pieces:
        if head is None:
            head, buf = http1.take_head(buf + piece)
            if head is None:
                continue
            body = http1.body_of(head, http1.status_of(head))
            piece = buf
        out += body.feed(piece)
    assert body is not None and body.done
    return http1.status_of(head), out, body.rest


@pytest.mark.parametrize("extra", [b"", b"HTTP/1.1 200 OK\r\n"])
def test_a_chunked_answer_split_anywhere_reads_the_same(extra):
    wire = h11_chunked_answer()
    for cut in range(1, len(wire)):
        status, body, rest = read_answer([wire[:cut], wire[cut:] + extra])
        assert (status, b"".join(body), rest) == (200, b"".join(EVENTS), extra), cut


def test_chunk_extensions_trailers_and_content_length():
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nx-trailer: t\r\n\r\n"
    assert read_answer([wire]) == (200, [b"hello"], b"")
    wire = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 5\r\n\r\nslow!NEXT"
    assert read_answer([wire[:30], wire[30:]]) == (429, [b"slow!"], b"NEXT")


def test_framing_rules():
    def head(*lines: bytes) -> http1.Head:
        parsed, rest = http1.take_head(b"\r\n".join([b"X", *lines]) + b"\r\n\r\n")
        assert parsed is not None and rest == b""
        return parsed

    assert http1.body_of(head(b"Content-Length: 9"), 204).done  # no body, whatever it says
    assert http1.body_of(head(b"Transfer-Encoding: gzip, chunked")).chunked
    assert http1.body_of(head()).done  # a request without a length has no body
    until_close = http1.body_of(head(), 200)
    assert until_close.feed(b"abc") == [b"abc"] and not until_close.done  # an answer runs until the connection ends
    for bad in (b"Transfer-Encoding: gzip", b"Content-Length: -1", b"Content-Length: 1e3"):
        with pytest.raises(ValueError):
            http1.body_of(head(bad))


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nx-a: 1\nx-injected: 2\r\n\r\n",  # a bare LF inside a header line
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n x-folded: 1\r\n\r\n",
    ],
)
def test_malformed_heads_are_refused(wire):
    with pytest.raises(ValueError):
        http1.take_head(wire)


def test_bad_chunks_and_oversized_heads_are_refused():
    for wire in (b"zz\r\n", b"5\r\nhelloXX", b"1" * 5000):
        body = http1.Body(chunked=True)
        with pytest.raises(ValueError):
            body.feed(wire)
    assert http1.take_head(b"GET / HTTP/1.1\r\n")[0] is None  # incomplete: wait for more
    with pytest.raises(ValueError):
        http1.take_head(b"x" * (http1.MAX_HEAD + 1))


def test_what_the_relay_writes_is_what_h11_reads():
    wire = http1.response_head(200, [(b"content-type", b"text/event-stream"), (b"transfer-encoding", b"chunked")])
    wire += b"".join(http1.chunk(e) for e in EVENTS) + http1.LAST_CHUNK
    wire += http1.request_head("POST", "/next", [(b"host", b"h"), (b"content-length", b"0")])  # must not leak in
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="POST", target="/x", headers=[("host", "a"), ("content-length", "0")]))
    client.send(h11.EndOfMessage())
    client.receive_data(wire)
    events = []
    while not isinstance(event := client.next_event(), h11.EndOfMessage):
        events.append(event)
    assert events[0].status_code == 200 and b"".join(e.data for e in events[1:]) == b"".join(EVENTS)
    server = h11.Connection(h11.SERVER)
    server.receive_data(
        http1.request_head("POST", "/chat/completions?x=1", [(b"host", b"h"), (b"content-length", b"2")]) + b"{}"
    )
    request = server.next_event()
    assert (request.method, request.target, server.next_event().data) == (b"POST", b"/chat/completions?x=1", b"{}")
