import pytest
from copilot_pool.core.routing import Route, route_for, sends_github_token

API = "api.individual.githubcopilot.com"


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/chat/completions"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/responses"),
        ("POST", "/v1/messages"),
        ("POST", "/embeddings"),
        ("GET", "/models"),
        ("POST", "/chat/completions?x=1"),
        ("POST", "/auto"),
        ("POST", "/models/session"),
        ("POST", "/models/session/intent"),
    ],
)
def test_inference_paths_are_pooled(method, path):
    assert route_for("https", API, API, method, path) is Route.API


@pytest.mark.parametrize(
    "scheme,host,host_header,method,path",
    [
        ("https", API, API, "POST", "/mcp/readonly"),
        ("https", API, API, "POST", "/models/session/other"),
        ("https", API, API, "GET", "/responses"),  # not an upgrade: not a Copilot call
        ("https", API, API, "GET", "/chat/completions"),
        ("https", API, API, "POST", "/chat/completions/../../mcp/readonly"),
        ("https", "api.github.com", None, "POST", "/chat/completions"),
        ("https", "evil.example", API, "POST", "/chat/completions"),
        ("https", API, "evil.example", "POST", "/chat/completions"),
        ("http", API, API, "POST", "/chat/completions"),
        ("https", "api.githubcopilot.com.evil.example", None, "POST", "/chat/completions"),
    ],
)
def test_everything_else_passes_through(scheme, host, host_header, method, path):
    assert route_for(scheme, host, host_header, method, path) is None


def test_code_completions_on_proxy_host():
    assert (
        route_for(
            "https", "copilot-proxy.githubusercontent.com", None, "POST", "/v1/engines/gpt-4o-copilot/completions"
        )
        is Route.PROXY
    )
    assert (
        route_for("https", "copilot-proxy.githubusercontent.com", None, "POST", "/v1/engines/x/../completions") is None
    )


def test_host_header_with_port_is_the_same_host():
    assert route_for("https", API, f"{API}:443", "GET", "/models") is Route.API


def test_credential_kind():
    for token in ("gho_abc", "ghu_abc", "ghp_abc", "github_pat_abc"):
        assert sends_github_token(f"Bearer {token}")
    assert not sends_github_token("Bearer tid=abc;exp=1:ff")
    assert not sends_github_token(None)


def test_websocket_upgrades_are_pooled_only_on_listed_paths():
    assert route_for("https", API, API, "GET", "/responses", websocket=True) is Route.API
    assert route_for("https", API, API, "GET", "/chat/completions", websocket=True) is None
    assert route_for("https", API, API, "GET", "/chat/completions", True, {"/chat/completions"}) is Route.API
    assert route_for("https", API, API, "POST", "/responses", websocket=True) is None
    assert (
        route_for("https", "copilot-proxy.githubusercontent.com", None, "POST", "/v1/engines/m/completions", True)
        is None
    )
