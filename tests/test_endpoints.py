"""Where pool credentials may go (core/endpoints.py): exact https Copilot hosts, the GHE.com tenant's, the operator's
extra bases; everything else is refused, whatever shape it comes in."""

import pytest
from copilot_pool.core.endpoints import (
    EndpointPolicy,
    UntrustedEndpoint,
    parse_endpoint,
    trusted_endpoint,
)
from copilot_pool.core.routing import COPILOT_API_HOSTS, COPILOT_PROXY_HOSTS

GITHUB = EndpointPolicy()

HOSTILE = [
    "https://evil.example",
    "https://api.githubcopilot.com.evil.example",
    "https://evilgithubcopilot.com",
    "https://githubcopilot.com",
    "https://user@evil.example",
    "https://user@api.githubcopilot.com",
    "https://api.githubcopilot.com@evil.example",
    "https://user:pass@api.githubcopilot.com",
    "http://api.githubcopilot.com",  # a Copilot host, but plain http
    "ftp://api.githubcopilot.com",
    "https://140.82.112.21",  # a bare IP
    "https://2130706433",  # 127.0.0.1 as one number
    "https://[::1]",
    "https://api.githubcopilot.com:8443",
    "https://api.githubcopilot.com:99999",  # a port out of range
    "https://api.githubcopilot.com:abc",  # a port that is no number
    "https://api.githubcopilot.com:0",
    "https://api.githubcopilot.com.",  # trailing dot: another name to a resolver, another host to a comparison
    "https://api.githubcopilot.com/v1",  # a path
    "https://api.githubcopilot.com?x=1",
    "https://api.githubcopilot.com#frag",
    "https://api.githubcopilot.com\\@evil.example",
    "https://evil.example\\.api.githubcopilot.com",
    " https://api.githubcopilot.com",
    "https://api.githubcopilot.com\n",
    "https://api.githubcopilot.com\t.evil.example",  # urlsplit drops tabs: refused before it parses
    "https://api.githubcopilot.com%2eevil.example",
    "https://\u0430pi.githubcopilot.com",  # Cyrillic a
    "https://api.githubcopilot.com\u3002evil.example",  # ideographic full stop
    "//api.githubcopilot.com",
    "api.githubcopilot.com",
    "https://" + "a" * 5000 + ".githubcopilot.com",
    5,
    1.5,
    True,
    ["https://api.githubcopilot.com"],
    {"url": "https://api.githubcopilot.com"},
]


@pytest.mark.parametrize("host", sorted(COPILOT_API_HOSTS | COPILOT_PROXY_HOSTS))
def test_every_github_copilot_host_is_trusted_in_canonical_form(host):
    for value in (f"https://{host}", f"https://{host}/", f"https://{host}:443", f"HTTPS://{host.upper()}"):
        assert GITHUB.accept(value) == f"https://{host}"


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_refused(value):
    assert GITHUB.accept(value) is None
    with pytest.raises(UntrustedEndpoint) as e:
        trusted_endpoint(GITHUB, value if isinstance(value, str) else str(value))
    assert len(str(e.value)) < 200  # a short prefix, whatever the value's size


def test_a_ghe_tenant_trusts_its_own_copilot_hosts_only():
    acme = EndpointPolicy.from_options("https://api.acme.ghe.com")
    assert acme.accept("https://copilot-api.acme.ghe.com") == "https://copilot-api.acme.ghe.com"
    assert acme.accept("https://copilot-proxy.acme.ghe.com") == "https://copilot-proxy.acme.ghe.com"
    assert acme.accept("https://api.githubcopilot.com") == "https://api.githubcopilot.com"
    for other in ("https://copilot-api.other.ghe.com", "https://copilot-api.acme.ghe.com.evil", "https://acme.ghe.com"):
        assert acme.accept(other) is None, other
    assert acme.default_api("business") == "https://copilot-api.acme.ghe.com"
    # only an exact https://api.<tenant>.ghe.com names a tenant
    for github_api in (
        "https://api.acme.ghe.com.evil.example",
        "http://api.acme.ghe.com",
        "https://x.api.acme.ghe.com",
    ):
        policy = EndpointPolicy.from_options(github_api)
        assert policy.tenant is None and policy.accept("https://copilot-api.acme.ghe.com") is None, github_api
    assert GITHUB.accept("https://copilot-api.acme.ghe.com") is None


def test_extra_bases_are_exact_scheme_host_and_port():
    policy = EndpointPolicy.from_options("https://api.github.com", ["http://127.0.0.1:8787", "http://localhost:8787/"])
    assert policy.accept("http://127.0.0.1:8787") == "http://127.0.0.1:8787"
    assert policy.accept("http://LOCALHOST:8787/") == "http://localhost:8787"
    for near in ("http://127.0.0.1:8788", "https://127.0.0.1:8787", "http://127.0.0.2:8787", "http://127.0.0.1"):
        assert policy.accept(near) is None, near
    for bad in ("127.0.0.1:8787", "http://u@127.0.0.1:1", "http://127.0.0.1:1/path", "http://h:x", ""):
        with pytest.raises(ValueError, match="not a scheme://host:port base"):
            EndpointPolicy.from_options("https://api.github.com", [bad])


def test_choose_falls_back_to_the_account_type_default_and_names_what_it_refused():
    hostile = "https://evil.example/" + "x" * 10_000
    chosen = GITHUB.choose(hostile, None, "business")
    assert (chosen.api, chosen.proxy) == ("https://api.business.githubcopilot.com",) * 2
    assert chosen.refused == (f"endpoints.api '{hostile[:40]}'... (10021 chars)",)  # 40 characters, escaped
    chosen = GITHUB.choose("https://api.githubcopilot.com", ["https://proxy.githubcopilot.com"], "individual")
    assert (chosen.api, chosen.proxy, chosen.refused) == (
        "https://api.githubcopilot.com",
        "https://api.githubcopilot.com",  # a refused proxy falls back to the (trusted) API base
        ("endpoints.proxy a list",),
    )
    ok = GITHUB.choose("https://api.githubcopilot.com", "https://copilot-proxy.githubusercontent.com", "individual")
    assert (ok.proxy, ok.refused) == ("https://copilot-proxy.githubusercontent.com", ())
    assert GITHUB.choose(None, "", "enterprise") == GITHUB.choose(None, None, "enterprise")  # absent: no refusal
    assert GITHUB.choose(None, None, "enterprise").api == "https://api.enterprise.githubcopilot.com"


def test_the_guard_hands_out_parsed_endpoints_and_caches_them():
    trusted_endpoint.cache_clear()
    endpoint = trusted_endpoint(GITHUB, "https://api.individual.githubcopilot.com")
    assert (endpoint.scheme, endpoint.host, endpoint.port) == ("https", "api.individual.githubcopilot.com", 443)
    assert endpoint.url("/chat/completions?x=1") == "https://api.individual.githubcopilot.com/chat/completions?x=1"
    assert trusted_endpoint(GITHUB, "https://api.individual.githubcopilot.com") is endpoint
    assert trusted_endpoint.cache_info().hits == 1
    v6 = EndpointPolicy.from_options("https://api.github.com", ["http://[::1]:9000"])
    assert trusted_endpoint(v6, "http://[::1]:9000").url("/x") == "http://[::1]:9000/x"


def test_parse_endpoint_rebuilds_what_it_checked():
    assert parse_endpoint("https://API.githubcopilot.com:443/").base == "https://api.githubcopilot.com"
    assert parse_endpoint("http://localhost:80").base == "http://localhost"
