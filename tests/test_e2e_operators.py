"""End to end, operators' view: the status page in a real browser, guard rails, steering attempts, leaks."""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path

import httpx
import pytest
from browser import pixels_near, png_pixels, run_chromium
from e2e import ALICE, BOB, CAROL, pool_proxy, upstream
from mitmdump_process import chat, write_accounts

BADGES = {"active": (0x1A, 0x7F, 0x37), "cooling": (0xBF, 0x87, 0x00), "failed": (0xCF, 0x22, 0x2E)}
CAPTURE = Path(__file__).resolve().parent / "capture_upstream.py"


def start_pool(start_proxy, fake, tmp_path, accounts, wait=("alice", "bob"), **options):
    return pool_proxy(start_proxy, fake, tmp_path, accounts, wait=wait, states=("active", "failed"), **options)


def test_status_page_in_headless_chromium(start_proxy, fake, tmp_path):
    fake.add_account("carol", CAROL["github_token"])
    fake.revoke("carol")
    proxy = start_pool(start_proxy, fake, tmp_path, (ALICE, BOB, CAROL), wait=("alice", "bob", "carol"))
    fake.inject("alice", 429, headers={"retry-after": "600"})
    with proxy.client() as client:
        for _ in range(10):  # least-busy may pick bob first; alice's 429 is failed over, the client sees 200
            assert chat(client).status_code == 200
            if any((e.account, e.status) == ("alice", 429) for e in fake.entries()):
                break
    proxy.wait_for(r"pool: account alice cooling until")

    shot = tmp_path / "status.png"
    result = run_chromium(
        proxy.port, "http://copilot-pool/", tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,800"
    )
    assert shot.exists(), result.stderr[-2000:]
    colours = png_pixels(shot)
    # each state badge is a solid block of its colour: the page was served, styled and rendered
    for state, rgb in BADGES.items():
        assert pixels_near(colours, rgb) > 500, (state, colours.most_common(8))
    proxy.wait_for(r"GET http://copilot-pool/")  # it went through the proxy

    dom = run_chromium(proxy.port, "http://copilot-pool/", tmp_path / "profile2", "--dump-dom").stdout
    assert 'id="account-carol"' in dom and "GitHub rejected the token" in dom and "cooling until" in dom
    for secret in fake.issued_tokens() + [ALICE["github_token"], BOB["github_token"], CAROL["github_token"]]:
        assert secret not in dom


def test_status_json_metrics_and_https(start_proxy, fake, tmp_path):
    proxy = start_pool(start_proxy, fake, tmp_path, (ALICE, BOB))
    with proxy.client() as client:
        for _ in range(4):
            assert chat(client).status_code == 200
        status = client.get("http://copilot-pool/status.json").json()
        metrics = client.get("http://copilot-pool/metrics")
        over_tls = client.get("https://copilot-pool/status.json")
    accounts = {a["name"]: a for a in status["accounts"]}
    assert set(accounts) == {"alice", "bob"} and sum(a["served"] for a in accounts.values()) == 4
    assert all(a["state"] == "active" and 1500 < a["token_expires_in_s"] <= 1860 for a in accounts.values())
    # the fake sends x-quota-snapshot-premium_interactions with every answer
    assert all(a["quota"]["entitlement"] == 300 for a in accounts.values() if a["served"])
    assert any("pool: account alice active" in e["message"] for e in status["events"])
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "copilot_pool_accounts 2" in metrics.text
    assert over_tls.status_code == 200 and over_tls.json()["strategy"] == "least-busy"


def test_status_page_requires_proxyauth_when_set(start_proxy, fake, tmp_path):
    proxy = start_pool(start_proxy, fake, tmp_path, (ALICE,), wait=("alice",), proxyauth="op:secret-pass")
    with httpx.Client(proxy=f"http://127.0.0.1:{proxy.port}", trust_env=False) as anonymous:
        assert anonymous.get("http://copilot-pool/status.json").status_code == 407
    with httpx.Client(proxy=f"http://op:secret-pass@127.0.0.1:{proxy.port}", trust_env=False) as operator:
        assert operator.get("http://copilot-pool/status.json").json()["accounts"][0]["name"] == "alice"


def exits_with(start_proxy, options):
    try:
        proxy = start_proxy(options)
    except AssertionError as e:  # exited before it listened
        return 1, str(e)
    return proxy.process.wait(15), proxy.output()


@pytest.mark.parametrize("listen_host", ["0.0.0.0", ""])
def test_refuses_an_open_proxy(start_proxy, fake, tmp_path, listen_host):
    path = write_accounts(tmp_path / "accounts.json", [ALICE])
    returncode, output = exits_with(start_proxy, {"listen_host": listen_host, "pool_accounts": path, **upstream(fake)})
    assert returncode == 1
    assert "pool: refusing to run: mode 'regular' listens on" in output and "pool_allow_open_proxy" in output
    assert fake.exchanges("alice") == 0  # mitmproxy exits before the pool starts: no account ever holds a token


def test_open_listener_with_proxyauth_or_override_starts(start_proxy, tmp_path):
    for options in (
        {"listen_host": "0.0.0.0", "proxyauth": "u:p"},
        {"listen_host": "0.0.0.0", "pool_allow_open_proxy": "true"},
    ):
        proxy = start_proxy(options)
        assert proxy.process.poll() is None and "refusing" not in proxy.output()
        proxy.stop()


def test_warns_about_a_readable_accounts_file(start_proxy, fake, tmp_path):
    path = write_accounts(tmp_path / "accounts.json", [ALICE])
    path.chmod(0o644)
    proxy = start_proxy({"pool_accounts": path, **upstream(fake)})
    proxy.wait_for(rf"accounts file {path} is readable by group or others \(mode 0644\).*chmod 600")


# -- steering pool credentials elsewhere ----------------------------------------------------------------

BODY = b'{"model":"gpt-4o","messages":[]}'


def raw_request(proxy, connect_host: str | None, target: str, host: str, marker: str, credential: str) -> bytes:
    """Send one request by hand: through a CONNECT tunnel (TLS) or straight to the proxy, in any form."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    try:
        if connect_host:
            sock.sendall(f"CONNECT {connect_host}:443 HTTP/1.1\r\nHost: {connect_host}:443\r\n\r\n".encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            sock = ssl.create_default_context(cafile=proxy.ca).wrap_socket(sock, server_hostname=connect_host)
        sock.sendall(
            f"POST {target} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {credential}\r\nx-test-marker: {marker}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\nConnection: close\r\n\r\n".encode()
            + BODY
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer
    finally:
        sock.close()


STEERING = [
    # marker, CONNECT host (None: straight to the proxy), request target, Host header
    ("other-host", "evil.example", "/chat/completions", "evil.example"),
    ("mcp-readonly", "api.githubcopilot.com", "/mcp/readonly", "api.githubcopilot.com"),
    ("copilot-internal", "api.github.com", "/copilot_internal/user", "api.github.com"),
    ("plain-http", None, "http://api.githubcopilot.com/chat/completions", "api.githubcopilot.com"),
    ("host-header-elsewhere", "api.githubcopilot.com", "/chat/completions", "evil.example"),
    ("host-header-copilot", "evil.example", "/chat/completions", "api.githubcopilot.com"),
    (
        "absolute-form-elsewhere-in-tunnel",
        "api.githubcopilot.com",
        "https://evil.example/chat/completions",
        "evil.example",
    ),
    (
        "absolute-form-copilot-in-foreign-tunnel",
        "evil.example",
        "https://api.githubcopilot.com/chat/completions",
        "api.githubcopilot.com",
    ),
    ("absolute-form-copilot-host-elsewhere", None, "https://api.githubcopilot.com/chat/completions", "evil.example"),
]


def test_pool_credentials_cannot_be_steered_elsewhere(start_proxy, fake, tmp_path):
    capture = tmp_path / "capture.jsonl"
    proxy = start_pool(start_proxy, fake, tmp_path, (ALICE, BOB), capture_file=capture, args=["-s", str(CAPTURE)])
    for credential in ("tid=client-own-copilot-token", "gho_client_own_github_token"):
        for marker, connect_host, target, host in STEERING:
            raw_request(proxy, connect_host, target, host, f"{marker}/{credential[:3]}", credential)
        # a legitimate request in the same run, so the capture is known to see pooled requests too
        raw_request(
            proxy,
            "api.githubcopilot.com",
            "/chat/completions",
            "api.githubcopilot.com",
            f"pooled/{credential[:3]}",
            credential,
        )

    records = [json.loads(line) for line in capture.read_text().splitlines()]
    by_marker = {r["marker"]: r for r in records if r["marker"]}
    assert len(by_marker) == 2 * (len(STEERING) + 1), sorted(by_marker)
    for marker, record in by_marker.items():
        if marker.startswith("pooled/"):
            assert record["authorization"] not in (
                "Bearer tid=client-own-copilot-token",
                "Bearer gho_client_own_github_token",
            )
        else:  # every steering attempt left with the client's own credential, untouched
            assert record["authorization"] in (
                "Bearer tid=client-own-copilot-token",
                "Bearer gho_client_own_github_token",
            ), marker

    secrets = set(fake.issued_tokens()) | {ALICE["github_token"], BOB["github_token"]}
    endpoints = {("http", "127.0.0.1", fake.port), ("http", "localhost", fake.port)}
    for record in records:  # wherever a pool credential went: an account's own endpoint, an inference path
        if any(s in (record["authorization"] or "") for s in secrets):
            assert (record["scheme"], record["host"], record["port"]) in endpoints and record[
                "path"
            ] == "/chat/completions", record
    for entry in fake.entries():  # and the fake accepted it there: the right account on the right host (no 421)
        if entry.credential in secrets and not entry.path.startswith("/copilot_internal/v2/token"):
            # the requests themselves, and the pool's own fetch of each account's model catalogue
            assert entry.status == 200 and entry.path in ("/chat/completions", "/models"), entry


# -- nothing leaks ----------------------------------------------------------------------------------------


def test_no_token_in_output_saved_flows_or_logs(start_proxy, fake, tmp_path):
    fake.add_account("carol", CAROL["github_token"])
    fake.revoke("carol")
    saved = tmp_path / "flows.mitm"
    proxy = start_pool(
        start_proxy,
        fake,
        tmp_path,
        (ALICE, BOB, CAROL),
        wait=("alice", "bob", "carol"),
        flow_detail=3,
        termlog_verbosity="debug",
        save_stream_file=saved,
        pool_log_summary=1,
    )
    fake.inject("alice", 429, headers={"retry-after": "2"})
    fake.inject("bob", 401)
    with proxy.client() as client:
        bodies = []
        for credential in ("tid=client-own", "gho_cli_users_own"):
            for _ in range(3):
                bodies.append(chat(client, credential=credential).text)
            bodies.append(chat(client, credential=credential, stream=True).text)
            bodies.append(
                client.get(
                    "https://api.githubcopilot.com/models", headers={"authorization": f"Bearer {credential}"}
                ).text
            )
        for page in ("/", "/status.json", "/metrics"):
            bodies.append(client.get(f"http://copilot-pool{page}").text)
    proxy.wait_for(r"pool: summary: 3 account\(s\)")
    proxy.wait_for(r"pool: account bob active", start=len(proxy.lines) // 2)  # re-exchanged after the 401
    proxy.stop()

    from mitmproxy import io

    with open(saved, "rb") as f:
        flows = list(io.FlowReader(f).stream())
    assert len(flows) >= 13
    everything = "\n".join(
        [proxy.output(), saved.read_bytes().decode("latin-1"), *bodies, *(repr(f.get_state()) for f in flows)]
    )
    secrets = fake.issued_tokens() + [ALICE["github_token"], BOB["github_token"], CAROL["github_token"]]
    assert len(fake.issued_tokens()) >= 3
    for secret in secrets:
        assert secret not in everything
        assert secret.split(";")[0] not in everything  # not even the token's tid
