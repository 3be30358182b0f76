import json
from urllib.parse import urlencode

import pytest
from copilot_pool.core.classify import MAX_QUOTA_COOLDOWN, QUOTA_COOLDOWN, Outcome, classify, connection_error
from copilot_pool.core.quota import from_headers, from_user_info, parse_reset

WALL = 1_700_000_000.0


def verdict(status, headers=None, body=None):
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return classify(status, headers or {}, raw, WALL, 60)


def snapshot(rem, rst=None, ent=300):
    fields = {"ent": ent, "ov": "0.0", "ovPerm": "false", "rem": rem}
    if rst:
        fields["rst"] = rst
    return {"x-quota-snapshot-premium_interactions": urlencode(fields)}


@pytest.mark.parametrize(
    "status, outcome, failover",
    [
        (200, Outcome.OK, False),
        (304, Outcome.OK, False),
        (400, Outcome.CALLER_ERROR, False),
        (413, Outcome.CALLER_ERROR, False),
        (422, Outcome.CALLER_ERROR, False),
        (466, Outcome.CALLER_ERROR, False),
        (500, Outcome.UPSTREAM_ERROR, False),
        (503, Outcome.UPSTREAM_ERROR, False),
        (403, Outcome.OTHER, False),
        (421, Outcome.MISDIRECTED, True),
        (401, Outcome.UNAUTHORIZED, True),
        (429, Outcome.RATE_LIMITED, True),
        (402, Outcome.QUOTA_EXHAUSTED, True),
    ],
)
def test_table(status, outcome, failover):
    v = verdict(status)
    assert (v.outcome, v.failover) == (outcome, failover)
    assert (v.cooldown is not None) == (status in (402, 429))
    assert v.refresh == (status in (401, 421))


def test_session_refusal_model_errors_and_misdirection():
    refused = verdict(401, body=b"Invalid auto-mode selector")
    assert (refused.outcome, refused.failover, refused.refresh, refused.cooldown) == (
        Outcome.SESSION_REFUSED,
        False,
        False,
        None,
    )  # not a credential failure: no refresh, no failover
    for code in ("model_not_supported", "unsupported_api_for_model"):
        v = verdict(400, body={"error": {"message": "The requested model is not supported.", "code": code}})
        assert (v.outcome, v.failover, v.recatalogue, v.refresh) == (Outcome.MODEL_UNSUPPORTED, True, True, False)
    misdirected = verdict(421, body={"error": {"message": "misdirected", "code": "misdirected_request"}})
    assert misdirected.refresh and misdirected.failover and misdirected.cooldown is None


def test_429_cooldown_from_hint_or_default():
    assert verdict(429, {"retry-after": "12"}).cooldown == 12
    assert verdict(429, {"retry-after-ms": "1500"}).cooldown == 1.5
    assert verdict(429).cooldown == 60
    assert verdict(429, {"retry-after": "999999"}).cooldown == 6 * 3600  # clamped


def test_quota_codes_in_any_4xx_body_mean_quota():
    for code in ("quota_exceeded", "free_quota_exceeded", "overage_limit_reached"):
        v = verdict(429, body={"error": {"message": "no more", "code": code}})
        assert v.outcome is Outcome.QUOTA_EXHAUSTED and v.failover
    assert verdict(403, body={"code": "quota_exceeded"}).outcome is Outcome.QUOTA_EXHAUSTED
    assert verdict(400, body={"error": {"code": "model_max_prompt_tokens_exceeded"}}).outcome is Outcome.CALLER_ERROR
    assert verdict(400, body=b"not json").outcome is Outcome.CALLER_ERROR


def test_quota_cooldown_until_reset_else_long_default():
    reset = "2023-11-15T00:00:00Z"  # WALL is 2023-11-14T22:13:20Z
    assert verdict(402, snapshot(0, reset)).cooldown == pytest.approx(parse_reset(reset) - WALL)
    assert verdict(402, snapshot(0, "2099-01-01T00:00:00Z")).cooldown == MAX_QUOTA_COOLDOWN
    assert verdict(402).cooldown == QUOTA_COOLDOWN
    assert verdict(402, {"retry-after": "300"}).cooldown == 300


def test_connection_error_fails_over_without_penalty():
    v = connection_error()
    assert v.failover and v.cooldown is None and not v.refresh and v.describe() == "connection error (connection error)"


def test_quota_from_headers():
    q = from_headers(snapshot(93.5, "2025-12-01T00:00:00Z"), now=5.0)
    assert (q.entitlement, q.percent_remaining, q.observed_at) == (300, 93.5, 5.0)
    assert q.remaining == pytest.approx(280.5) and q.describe() == "280/300"
    assert q.resets_at == parse_reset("2025-12-01T00:00:00+00:00")
    unlimited = from_headers({"x-quota-snapshot-chat": "ent=-1&rem=100"}, 0)
    assert unlimited.unlimited and unlimited.remaining == float("inf") and unlimited.describe() == "unlimited"
    assert from_headers({}, 0) is None
    assert from_headers({"x-quota-snapshot-premium_interactions": "ent=x&rem=1"}, 0) is None


def test_quota_from_user_info():
    data = {
        "quota_reset_date": "2025-12-01",
        "quota_snapshots": {
            "premium_interactions": {
                "entitlement": 300,
                "remaining": 150,
                "percent_remaining": 50.0,
                "unlimited": False,
                "overage_permitted": True,
            }
        },
    }
    q = from_user_info(data, 1.0)
    assert q.remaining == 150 and q.overage_permitted and q.resets_at == parse_reset("2025-12-01T00:00:00Z")
    assert from_user_info({"quota_snapshots": {}}, 0) is None
    assert from_user_info([], 0) is None
