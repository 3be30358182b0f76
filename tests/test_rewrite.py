"""The one-pass header and target rewrites give exactly what mitmproxy's own accessors give."""

import pytest
from copilot_pool.mitm import rewrite
from mitmproxy import http
from mitmproxy.test import tutils

FIELDS = (
    (b"Host", b"api.githubcopilot.com"),
    (b"X-Interaction-Id", b"one"),
    (b"authorization", b"Bearer tid=client"),
    (b"x-interaction-id", b"two"),
    (b"User-Agent", b"copilot/1.0"),
)


def test_pick_reads_what_headers_get_reads():
    headers = http.Headers(FIELDS)
    names = frozenset({b"x-interaction-id", b"authorization", b"vscode-sessionid"})
    assert rewrite.pick(headers, names) == {
        "x-interaction-id": headers.get("x-interaction-id"),  # repeated: folded, "one, two"
        "authorization": headers.get("authorization"),
    }


@pytest.mark.parametrize(
    "values",
    [
        {b"authorization": b"Bearer pool"},
        {b"x-interaction-id": b"three", b"content-length": b"0"},  # a repeated name collapses; a missing one is added
    ],
)
def test_replace_writes_what_assignments_write(values):
    expected, headers = http.Headers(FIELDS), http.Headers(FIELDS)
    for name, value in values.items():
        expected[name] = value
    rewrite.replace(headers, values)
    assert headers.fields == expected.fields


def test_replace_if_present_only_rewrites():
    headers = http.Headers(((b"a", b"1"),))
    rewrite.replace(headers, {b"host": b"h", b"a": b"2"}, if_present=frozenset({b"host"}))
    assert headers.fields == ((b"a", b"2"),)


def requests():
    origin = tutils.treq(host="api.githubcopilot.com", port=443, scheme=b"https", headers=FIELDS, path=b"/chat/x")
    absolute = tutils.treq(host="api.githubcopilot.com", port=443, scheme=b"https", headers=FIELDS, path=b"/chat/x")
    absolute.authority = "api.githubcopilot.com"
    h2 = tutils.treq(host="api.githubcopilot.com", port=443, scheme=b"https", headers=FIELDS[1:], path=b"/chat/x")
    h2.http_version, h2.authority = "HTTP/2.0", "api.githubcopilot.com"
    return {"origin-form": origin, "absolute-form": absolute, "HTTP/2": h2}


@pytest.mark.parametrize("kind", ["origin-form", "absolute-form", "HTTP/2"])
@pytest.mark.parametrize(
    "base", ["https://api.individual.githubcopilot.com", "http://127.0.0.1:8443/base/", "https://[::1]:9000"]
)
def test_point_at_is_the_url_setter_and_the_authorization_assignment(kind, base):
    expected, request = requests()[kind], requests()[kind]
    expected.url = base.rstrip("/") + expected.path
    expected.headers["authorization"] = "Bearer tid=pool"
    rewrite.point_at(request, base, request.path, "Bearer tid=pool")
    assert request.data == expected.data  # scheme, host, port, path, authority, every header in its place
    assert request.url == expected.url
