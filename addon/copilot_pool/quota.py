"""Premium quota: what an account has left, read passively from response headers or from `/copilot_internal/user`.

Copilot answers carry `x-quota-snapshot-premium_interactions` (or `-premium_models`, `-chat`): URL-encoded
`ent` (entitlement, -1 = unlimited), `rem` (percent remaining), `ov`, `ovPerm` (overage permitted), `rst`
(reset time), the fields VS Code reads (chatQuotaServiceImpl.ts).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

import httpx

from .accounts import AccountConfig
from .clock import Clock

if TYPE_CHECKING:
    from .pool import Account

log = logging.getLogger("copilot_pool")

SNAPSHOT_HEADERS = (
    "x-quota-snapshot-premium_interactions",
    "x-quota-snapshot-premium_models",
    "x-quota-snapshot-chat",
)
USER_PATH = "/copilot_internal/user"


@dataclass(frozen=True)
class Quota:
    entitlement: int  # premium requests per period; -1: unlimited
    percent_remaining: float
    overage_permitted: bool
    resets_at: float | None  # epoch seconds (wall clock), when known
    observed_at: float  # pool clock

    @property
    def unlimited(self) -> bool:
        return self.entitlement < 0

    @property
    def remaining(self) -> float:
        """Premium requests left (inf when unlimited)."""
        if self.unlimited:
            return math.inf
        return self.entitlement * self.percent_remaining / 100

    def describe(self) -> str:
        if self.unlimited:
            return "unlimited"
        return f"{self.remaining:.0f}/{self.entitlement}"


def from_headers(headers: Mapping[str, str], now: float) -> Quota | None:
    """The quota in a Copilot response's headers, or None when it carries none (or garbage)."""
    for name in SNAPSHOT_HEADERS:
        value = headers.get(name)
        if value:
            fields = _form_fields(value)
            try:
                entitlement = int(float(fields["ent"]))
                percent = float(fields["rem"])
            except (KeyError, ValueError):
                return None
            if not math.isfinite(percent):
                return None
            return Quota(
                entitlement,
                min(max(percent, 0.0), 100.0),
                fields.get("ovPerm", "").lower() == "true",
                parse_reset(fields.get("rst")),
                now,
            )
    return None


def _form_fields(value: str) -> dict[str, str]:
    """`ent=300&rem=97.5&rst=...` -> a dict; a plain split, as parse_qs costs more than the rest of a request's
    handling in the addon (this runs on every pooled answer)."""
    fields = {}
    for part in value.split("&"):
        key, _, raw = part.partition("=")
        fields[key] = unquote_plus(raw) if "%" in raw or "+" in raw else raw
    return fields


def from_user_info(data: object, now: float) -> Quota | None:
    """The premium quota in a `/copilot_internal/user` answer."""
    try:
        snapshot = data["quota_snapshots"]["premium_interactions"]  # type: ignore[index]
        unlimited = bool(snapshot.get("unlimited"))
        entitlement = -1 if unlimited else int(snapshot["entitlement"])
        percent = 100.0 if unlimited else float(snapshot["percent_remaining"])
        reset = parse_reset(data.get("quota_reset_date_utc") or data.get("quota_reset_date"))  # type: ignore[union-attr]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return Quota(entitlement, min(max(percent, 0.0), 100.0), bool(snapshot.get("overage_permitted")), reset, now)


def parse_reset(value: str | None) -> float | None:
    """'2025-12-01T00:00:00Z' or '2025-12-01' -> epoch seconds (UTC when no zone is given)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


# -- polling /copilot_internal/user --------------------------------------------------------------

FetchUser = Callable[[AccountConfig], Awaitable[object]]


def http_fetch_user(client: httpx.AsyncClient, github_api: Callable[[], str]) -> FetchUser:
    """GET {github_api}/copilot_internal/user with the account's GitHub token; the JSON answer."""

    async def fetch(config: AccountConfig) -> object:
        url = github_api().rstrip("/") + USER_PATH
        response = await client.get(url, headers={"authorization": f"token {config.github_token}", "accept": "application/json"})
        if response.status_code != 200:
            raise ValueError(f"{USER_PATH} answered {response.status_code}")
        return json.loads(response.content)

    return fetch


async def poll_forever(
    accounts: Callable[[], Iterable[Account]], fetch: FetchUser, clock: Clock, interval: Callable[[], float]
) -> None:
    """Every `interval()` seconds, ask `/copilot_internal/user` for the quota of each account whose quota was
    not seen (passively or by polling) within that interval. One account at a time: this is background work."""
    while True:
        every = interval()
        await clock.sleep(every if every > 0 else 60.0)
        if every <= 0:
            continue  # polling is off (pool_quota_poll=0); look again in a minute in case it is turned on
        for account in list(accounts()):
            if account.token is None or (account.quota is not None and clock.now() - account.quota.observed_at < every):
                continue  # only accounts that work, and only when the headers have not told us lately
            config = account.config
            try:
                quota = from_user_info(await fetch(config), clock.now())
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a failed poll only leaves the quota unknown
                log.info(f"pool: quota of {account.name} unknown: {type(e).__name__}")
                continue
            if quota is not None and account.config is config:
                account.quota = quota
