from email.utils import formatdate

from copilot_pool.core.retry_after import MAX_COOLDOWN, retry_after_seconds

NOW = 1_700_000_000.0


def test_seconds():
    assert retry_after_seconds({"retry-after": "17"}, NOW) == 17


def test_http_date():
    date = formatdate(NOW + 90, usegmt=True)
    assert retry_after_seconds({"retry-after": date}, NOW) == 90


def test_milliseconds_win():
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "30"}, NOW) == 1.5


def test_reset_epoch():
    assert retry_after_seconds({"x-ratelimit-reset": str(int(NOW + 42))}, NOW) == 42


def test_clamped_and_garbage():
    assert retry_after_seconds({"retry-after": "99999999"}, NOW) == MAX_COOLDOWN
    assert retry_after_seconds({"retry-after": "-5"}, NOW) is None
    assert retry_after_seconds({"retry-after": "soon"}, NOW) is None
    assert retry_after_seconds({"retry-after": "nan"}, NOW) is None
    assert retry_after_seconds({}, NOW) is None
