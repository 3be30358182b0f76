"""Where pool credentials may go: the one trust rule for every upstream URL the pool builds.

An account's Copilot token, and for GitHub-token clients its long-lived GitHub token, leave the proxy only for an
`https` Copilot API or proxy host of GitHub's (the tenant's own Copilot hosts too when `pool_github_api` is
`https://api.<tenant>.ghe.com`), or for a base the operator listed in `pool_extra_endpoints`. The token exchange
names an account's endpoints, but its answer is no trust anchor: `pool_github_api` may point at any tenant or at an
intercepting middlebox. So every value is parsed, rebuilt from its parts and its host compared exactly, never by
substring; what is sent on is the rebuilt base, so no other parser can read the value differently.

`EndpointPolicy.choose` judges an exchange's `endpoints` once per exchange; `trusted_endpoint` is the guard every
place that builds an upstream URL calls (cached: the hot path pays a dictionary look-up).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .routing import COPILOT_API_HOSTS, COPILOT_PROXY_HOSTS
from .text import quote

DEFAULT_API_ENDPOINTS = {
    "individual": "https://api.individual.githubcopilot.com",
    "business": "https://api.business.githubcopilot.com",
    "enterprise": "https://api.enterprise.githubcopilot.com",
}
# GHE.com data residency (GitHub API at https://api.<tenant>.ghe.com). Public Copilot clients (opencode, pi,
# copilot-api forks) use copilot-api.<tenant>.ghe.com; the proxy name is the same pattern, unverified. A wrong guess
# is a change to these two lines.
TENANT_COPILOT_HOSTS = ("copilot-api.{tenant}.ghe.com", "copilot-proxy.{tenant}.ghe.com")
TENANT_DEFAULT_API = "https://copilot-api.{tenant}.ghe.com"
GHE_TENANT_API = re.compile(r"https://api\.([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)\.ghe\.com/?")
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL = 2048
URL_CHARACTERS = re.compile(r"[\x21-\x5b\x5d-\x7e]+")  # printable ASCII, no space, no backslash


class UntrustedEndpoint(ValueError):
    """A URL the pool was about to send a credential to is not trusted (the message quotes a short prefix)."""


@dataclass(frozen=True)
class Endpoint:
    """scheme://host:port, parsed; `base` is the canonical text the pool sends requests to."""

    scheme: str
    host: str  # lower case; an IPv6 address without brackets
    port: int

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if self.port == DEFAULT_PORTS[self.scheme] else f":{self.port}")

    def url(self, path: str) -> str:
        return self.base + path


def parse_endpoint(value: object) -> Endpoint | None:
    """`scheme://host[:port]` with nothing else (no userinfo, path, query or fragment), or None."""
    if not isinstance(value, str) or len(value) > MAX_URL or not URL_CHARACTERS.fullmatch(value):
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # a port that is no number, or out of range
        return None
    if (
        parts.scheme not in DEFAULT_PORTS
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or "?" in value
        or "#" in value
        or not parts.hostname
        or port == 0
    ):
        return None
    return Endpoint(parts.scheme, parts.hostname, DEFAULT_PORTS[parts.scheme] if port is None else port)


def ghe_tenant(github_api: str) -> str | None:
    """'acme' for https://api.acme.ghe.com, else None."""
    match = GHE_TENANT_API.fullmatch(github_api.lower())
    return match.group(1) if match else None


@dataclass(frozen=True)
class Chosen:
    """An account's endpoints after the policy judged its exchange answer; `refused` names what was not taken."""

    api: str
    proxy: str
    refused: tuple[str, ...] = ()


@dataclass(frozen=True)
class EndpointPolicy:
    hosts: frozenset[str] = COPILOT_API_HOSTS | COPILOT_PROXY_HOSTS  # trusted over https on port 443
    extra: frozenset[Endpoint] = field(default_factory=frozenset)  # the operator's pool_extra_endpoints
    tenant: str | None = None  # GHE.com tenant named by pool_github_api

    @classmethod
    def from_options(cls, github_api: str, extra_bases: Iterable[str] = ()) -> EndpointPolicy:
        """Raise ValueError naming a base of `extra_bases` that is not scheme://host[:port]."""
        tenant = ghe_tenant(github_api)
        hosts = cls.hosts | {h.format(tenant=tenant) for h in TENANT_COPILOT_HOSTS} if tenant else cls.hosts
        extra = set()
        for base in extra_bases:
            endpoint = parse_endpoint(base)
            if endpoint is None:
                raise ValueError(f"not a scheme://host:port base: {quote(base)}")
            extra.add(endpoint)
        return cls(frozenset(hosts), frozenset(extra), tenant)

    def accept(self, value: object) -> str | None:
        """The canonical base of a trusted endpoint value, or None."""
        endpoint = parse_endpoint(value)
        if endpoint is None:
            return None
        trusted = endpoint in self.extra or (
            endpoint.scheme == "https" and endpoint.port == 443 and endpoint.host in self.hosts
        )
        return endpoint.base if trusted else None

    def default_api(self, account_type: str) -> str:
        """Where an account goes when its exchange names no (trusted) endpoint."""
        if self.tenant:
            return TENANT_DEFAULT_API.format(tenant=self.tenant)
        return DEFAULT_API_ENDPOINTS.get(account_type, DEFAULT_API_ENDPOINTS["individual"])

    def choose(self, api: object, proxy: object, account_type: str) -> Chosen:
        """The account's API and proxy bases from its exchange's `endpoints.api` / `endpoints.proxy`: a value that
        is absent takes the default (the API base for the proxy), one that is refused too, and is named."""
        refused = []

        def pick(key: str, value: object, fallback: str) -> str:
            if value is None or value == "":
                return fallback
            accepted = self.accept(value)
            if accepted is None:
                refused.append(f"endpoints.{key} {quote(value)}")
                return fallback
            return accepted

        chosen_api = pick("api", api, self.default_api(account_type))
        return Chosen(chosen_api, pick("proxy", proxy, chosen_api), tuple(refused))


@functools.lru_cache(maxsize=1024)
def trusted_endpoint(policy: EndpointPolicy, base: str) -> Endpoint:
    """The guard of every upstream URL the pool builds with a pool credential: the endpoint `base` names when
    `policy` trusts it; else raise UntrustedEndpoint."""
    accepted = policy.accept(base)
    if accepted is None:
        raise UntrustedEndpoint(f"refusing to send pool credentials to {quote(base)}: not a trusted Copilot endpoint")
    return parse_endpoint(accepted)  # type: ignore[return-value]
