"""End to end: the Copilot content view on flows recorded through the pool, in mitmdump and in mitmweb (headless
Chromium), and the streamed answer stored in the flow it renders."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import copilot_shapes as shapes
from browser import png_pixels, run_chromium
from e2e import ALICE, pool_proxy
from mitmdump_process import MITMWEB, read_flows
from mitmproxy import io

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "copilot-view.png"


def record(start_proxy, fake, tmp_path) -> tuple[Path, list[str]]:
    """A streamed agent-mode turn (instructions, tools, a tool call and its result) through the pool, saved."""
    saved = tmp_path / "flows.mitm"
    fake.cost_nano = (25_000_000, 25_000_000)  # 0.025 credits an answer, for the view to show
    proxy = pool_proxy(start_proxy, fake, tmp_path, accounts=(ALICE,), save_stream_file=saved)
    with proxy.client() as client:
        with client.stream(
            "POST",
            "https://api.githubcopilot.com/chat/completions",
            headers={"authorization": "Bearer tid=client"},
            json=shapes.CHAT_REQUEST,
        ) as response:
            response.read()
    proxy.stop()
    secrets = fake.issued_tokens() + [ALICE["github_token"]]
    return saved, secrets


def test_mitmdump_prints_the_conversation_and_the_reassembled_answer(start_proxy, fake, tmp_path):
    saved, secrets = record(start_proxy, fake, tmp_path)
    out = read_flows(saved, "--set", "flow_detail=4")
    assert "claude-sonnet-4 · chat/completions · stream · 2 tools · 4 turns" in out
    assert "tools: read_file, run_in_terminal" in out and "more characters folded]" in out
    assert '→ read_file({"path":"main.py"})  [call_1]' in out
    answer = "".join(f"chunk {i} from alice" for i in range(5))
    assert "answer · claude-sonnet-4 · streamed, 6 events · finish: stop" in out and answer in out
    assert "usage: in 10 · out 5 · 0.025 credits" in out
    assert not any(secret in out for secret in secrets)
    plain = read_flows(saved, "--set", "flow_detail=4", addon=False)
    assert answer not in plain  # without the view, mitmdump shows the raw events


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mitmweb_shows_the_conversation(start_proxy, fake, tmp_path):
    saved, secrets = record(start_proxy, fake, tmp_path)
    with open(saved, "rb") as f:
        (flow,) = [f for f in io.FlowReader(f).stream() if f.request.path == "/chat/completions"]
    web = start_proxy(
        {"rfile": saved, "web_port": free_port(), "web_open_browser": "false"},  # the printed URL has the token
        command=(str(MITMWEB),),
    )
    views = {}
    for tab in ("request", "response"):
        url = f"{web.web_url}#/flows/{flow.id}/{tab}"
        shot = tmp_path / f"{tab}.png"
        budget = "--virtual-time-budget=10000"
        result = run_chromium(
            None, url, tmp_path / f"p-{tab}", f"--screenshot={shot}", "--window-size=1280,800", budget
        )
        assert shot.exists(), result.stderr[-2000:]
        views[tab] = (shot, run_chromium(None, url, tmp_path / f"d-{tab}", "--dump-dom", budget).stdout)
    request_dom, answer_dom = views["request"][1], views["response"][1]
    assert "Copilot" in request_dom and "── user ──" in request_dom and "What does main.py print?" in request_dom
    assert "tools: read_file, run_in_terminal" in request_dom
    assert "chunk 0 from alicechunk 1 from alice" in answer_dom and "0.025 credits" in answer_dom
    for _, dom in views.values():
        assert not any(secret in dom for secret in secrets)
    pixels = png_pixels(views["request"][0])
    assert len(pixels) > 20 and max(pixels.values()) < 0.95 * sum(pixels.values())  # a page, not a blank
    if os.environ.get("UPDATE_SCREENSHOT"):  # the README's picture: UPDATE_SCREENSHOT=1 ./scripts/test -k mitmweb
        SCREENSHOT.write_bytes(views["request"][0].read_bytes())
