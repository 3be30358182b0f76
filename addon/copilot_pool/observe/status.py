"""What operators see: a status snapshot of the pool, as JSON, an HTML page, Prometheus metrics and command lines.

The snapshot is built field by field from the pool's state and never holds a token; each rendering is
passed through `redact` as well, so even a token-shaped failure reason cannot reach a page.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections import deque

from ..core.model import Account, State
from ..core.pool import Pool
from ..core.quota import Quota
from ..core.usage import Ledger, credits
from .redact import redact
from .statelog import local_time


class RecentEvents(logging.Handler):
    """The addon's latest log lines (already redacted by the logger's filter), newest last."""

    def __init__(self, size: int = 50) -> None:
        super().__init__(logging.INFO)
        self.events: deque[dict] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(
            {
                "time": local_time(record.created),
                "level": record.levelname.lower(),
                "message": redact(record.getMessage()),
            }
        )


def snapshot(
    pool: Pool, events: RecentEvents, passthrough: bool, ledger: Ledger | None = None, state: dict | None = None
) -> dict:
    now, wall = pool.clock.now(), pool.clock.wall()
    held = pool.held if pool.held is not None and pool.held.until > now else None
    users = ledger.users.items() if ledger is not None else ()
    return {
        "generated_at": local_time(wall),
        "strategy": pool.strategy.name,
        "passthrough": passthrough,
        "state": state,  # the state store: backend, where, connected, the proxies sharing it
        "pool_held": {
            "remaining_s": math.ceil(held.until - now),
            "until": local_time(wall + held.until - now),
            "reason": held.reason,
        }
        if held
        else None,
        "accounts": [_account(a, now, wall) for a in pool.accounts.values()],
        "users": [
            {
                "name": name,
                "requests": u.requests,
                "credits_used": credits(u.nano),
                "rate_limited": u.rate_limited,
                "credits_today": credits(ledger.spent_today(name, wall)) if ledger else 0,
            }
            for name, u in sorted(users)
        ],
        "events": list(events.events),
    }


def _account(a: Account, now: float, wall: float) -> dict:
    state = a.state(now)
    cooldown = max(0.0, a.cooldown_until - now)
    token = a.token
    return {
        "name": a.name,
        "state": state.value,
        "in_flight": a.in_flight,
        "in_flight_elsewhere": a.elsewhere,  # through the other proxies sharing the state
        "cooldown_remaining_s": math.ceil(cooldown),
        "cooling_until": local_time(wall + cooldown) if cooldown else None,
        "token_expires_in_s": max(0, math.floor(token.expires_at - now)) if token else None,
        "sku": token.sku if token else None,
        "api_endpoint": token.api_endpoint if token else None,
        "served": a.served,
        "rate_limited": a.rate_limited,
        "failures": a.failures,
        "last_failure": a.last_failure if state in (State.FAILED, State.STARTING) else None,
        "last_used_s_ago": None if a.last_used == -math.inf else round(now - a.last_used),
        "quota": _quota(a.quota, now, wall),
        "models": sorted(a.catalogue.entries) if a.catalogue else None,  # what its /models answer lists
        "cooldowns": _cooldowns(a, now, wall),
        "credits_used": credits(sum(a.credits.values())),
        "credits_by_model": {model: credits(nano) for model, nano in sorted(a.credits.items())},
        "credit_budget": a.config.credit_budget,
        "credits_this_month": credits(a.month_nano),
        "usage_limits": {kind: _quota(limit, now, wall) for kind, limit in sorted(a.usage_limits.items())},
        "pace_per_s": round(pacer.rate, 3) if (pacer := a.pacers.get(None)) and pacer.rate else None,
        "easing": a.ease,
    }


def _cooldowns(a: Account, now: float, wall: float) -> list[dict]:
    """Every cooldown in force, with its scope and what caused it."""
    found = []
    if a.cooldown_until > now:
        found.append(("account", None, a.cooldown_reason or "rate limited", a.cooldown_until))
    if a.budget_until > now:
        found.append(("account", None, "credit budget spent", a.budget_until))
    found += [("model", m, c.reason, c.until) for m, c in sorted(a.model_cooldowns.items()) if c.until > now]
    return [
        {
            "scope": scope,
            "model": model,
            "reason": reason,
            "remaining_s": math.ceil(until - now),
            "until": local_time(wall + until - now),
        }
        for scope, model, reason, until in found
    ]


def _quota(quota: Quota | None, now: float, wall: float) -> dict | None:
    """The account's last premium quota (tracked by the pool from answers and /copilot_internal/user)."""
    if quota is None:
        return None
    return {
        "entitlement": quota.entitlement,  # -1: unlimited
        "remaining_percent": quota.percent_remaining,
        "overage_permitted": quota.overage_permitted,
        "resets_at": local_time(quota.resets_at) if quota.resets_at is not None else None,
        "seen_at": local_time(wall - (now - quota.observed_at)),
    }


def render_json(snap: dict) -> str:
    return redact(json.dumps(snap, indent=2))


# -- Prometheus text format -------------------------------------------------------------------------

METRICS = [
    # name, type, help, value of one account's snapshot
    ("copilot_pool_account_in_flight", "gauge", "Requests in flight on the account.", lambda a: a["in_flight"]),
    (
        "copilot_pool_account_in_flight_elsewhere",
        "gauge",
        "Requests in flight on the account through the other proxies sharing the state.",
        lambda a: a["in_flight_elsewhere"],
    ),
    (
        "copilot_pool_account_requests_total",
        "counter",
        "Requests the account served with a 2xx.",
        lambda a: a["served"],
    ),
    ("copilot_pool_account_rate_limited_total", "counter", "429 answers the account got.", lambda a: a["rate_limited"]),
    (
        "copilot_pool_account_failures_total",
        "counter",
        "Token exchange failures of the account.",
        lambda a: a["failures"],
    ),
    (
        "copilot_pool_account_cooldown_seconds",
        "gauge",
        "Seconds until the account's cooldown ends.",
        lambda a: a["cooldown_remaining_s"],
    ),
    (
        "copilot_pool_account_token_expiry_seconds",
        "gauge",
        "Seconds until the account's Copilot token expires.",
        lambda a: a["token_expires_in_s"],
    ),
    (
        "copilot_pool_account_premium_remaining_percent",
        "gauge",
        "Premium quota left, from the last x-quota-snapshot header.",
        lambda a: a["quota"]["remaining_percent"] if a["quota"] else None,
    ),
]


USER_METRICS = [
    ("copilot_pool_user_requests_total", "Pooled requests of the proxy user.", "requests"),
    ("copilot_pool_user_credits_total", "AI credits the proxy user's answers reported.", "credits_used"),
    ("copilot_pool_user_rate_limited_total", "Upstream 429s the proxy user's requests met.", "rate_limited"),
]


def render_metrics(snap: dict) -> str:
    accounts = snap["accounts"]
    held = snap["pool_held"]
    out = [
        "# HELP copilot_pool_accounts Accounts in the pool.",
        "# TYPE copilot_pool_accounts gauge",
        f"copilot_pool_accounts {len(accounts)}",
        "# HELP copilot_pool_held_seconds Seconds until a limit on the whole pool ends (0: none).",
        "# TYPE copilot_pool_held_seconds gauge",
        f"copilot_pool_held_seconds {held['remaining_s'] if held else 0}",
        *_state_metrics(snap["state"]),
        "# HELP copilot_pool_account_state 1 for the account's current state, 0 for the others.",
        "# TYPE copilot_pool_account_state gauge",
    ]
    for a in accounts:
        for state in State:
            out.append(
                f'copilot_pool_account_state{{account="{_label(a["name"])}",state="{state.value}"}} '
                f"{int(a['state'] == state.value)}"
            )
    for name, kind, help_text, value in METRICS:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for a in accounts:
            v = value(a)
            if v is not None:
                out.append(f'{name}{{account="{_label(a["name"])}"}} {v}')
    out += [
        "# HELP copilot_pool_account_credits_total AI credits the account's answers reported, by model.",
        "# TYPE copilot_pool_account_credits_total counter",
    ]
    for a in accounts:
        for model, spent in a["credits_by_model"].items():
            out.append(
                f'copilot_pool_account_credits_total{{account="{_label(a["name"])}",model="{_label(model)}"}} {spent}'
            )
    for name, help_text, field in USER_METRICS:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        out += [f'{name}{{user="{_label(u["name"])}"}} {u[field]}' for u in snap["users"]]
    return redact("\n".join(out) + "\n")


def _state_metrics(state: dict | None) -> list[str]:
    if state is None:
        return []
    backend = _label(state["backend"])
    return [
        "# HELP copilot_pool_state_connected 1 while the state store (label backend) can be reached.",
        "# TYPE copilot_pool_state_connected gauge",
        f'copilot_pool_state_connected{{backend="{backend}"}} {int(state["connected"])}',
        "# HELP copilot_pool_state_proxies Live proxies sharing the state store, this one included.",
        "# TYPE copilot_pool_state_proxies gauge",
        f"copilot_pool_state_proxies {len(state['proxies'])}",
    ]


def state_text(state: dict) -> str:
    """'redis redis://127.0.0.1:6379/0, connected, shared by 2 proxies (a:1, b:2)'"""
    reach = (
        "connected"
        if state["connected"]
        else f"not reachable: {state['problem']}"
        if state["problem"]
        else "not opened yet"
    )
    proxies = state["proxies"]
    shared = f", shared by {len(proxies)} proxies ({', '.join(proxies)})" if len(proxies) > 1 else ""
    tokens = ", Copilot tokens shared" if state.get("tokens_shared") else ""
    return f"{state['backend']} {state['where']}, {reach}{shared}{tokens}"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# -- HTML ---------------------------------------------------------------------------------------------

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1f2328; background: #ffffff; }
h1 { font-size: 20px; margin: 0 0 4px; } .meta { color: #59636e; margin-bottom: 16px; }
table { border-collapse: collapse; margin-bottom: 24px; }
th, td { padding: 6px 12px; text-align: left; border-bottom: 1px solid #d1d9e0; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.state { display: inline-block; min-width: 72px; padding: 4px 10px; border-radius: 4px; color: #ffffff;
         font-weight: 600; text-align: center; }
.active { background: #1a7f37; } .cooling { background: #bf8700; } .failed { background: #cf222e; }
.starting { background: #0969da; } .disabled { background: #6e7781; }
.events { font: 12px/1.5 ui-monospace, monospace; } .ev-warning { color: #9a6700; } .ev-error { color: #cf222e; }
"""


def render_html(snap: dict) -> str:
    rows = "".join(_row(a) for a in snap["accounts"]) or '<tr><td colspan="11">no accounts</td></tr>'
    events = (
        "".join(
            f'<li class="ev-{_e(e["level"])}">{_e(e["time"])} {_e(e["message"])}</li>' for e in reversed(snap["events"])
        )
        or "<li>none yet</li>"
    )
    mode = " &middot; no accounts configured: all traffic passes through" if snap["passthrough"] else ""
    if snap["state"]:
        mode += f" &middot; state: {_e(state_text(snap['state']))}"
    held = snap["pool_held"]
    if held:
        holds = f"the whole pool holds until {held['until']}: {held['reason']}"
        mode += f' &middot; <span class="ev-error">{_e(holds)}</span>'
    users = "".join(
        f'<tr><td>{_e(u["name"])}</td><td class="num">{u["requests"]}</td><td class="num">{u["credits_used"]:g}</td>'
        f'<td class="num">{u["credits_today"]:g}</td><td class="num">{u["rate_limited"]}</td></tr>'
        for u in snap["users"]
    )
    users_table = (
        "<h2>proxy users</h2><table><thead><tr><th>user</th><th>requests</th><th>credits</th><th>credits today</th>"
        f"<th>429s</th></tr></thead><tbody>{users}</tbody></table>"
        if users
        else ""
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>copilot-pool status</title><style>{STYLE}</style></head>
<body><h1>copilot-pool</h1>
<div class="meta">{_e(snap["generated_at"])} &middot; strategy {_e(snap["strategy"])}
&middot; {len(snap["accounts"])} account(s){mode}
&middot; <a href="/status.json">status.json</a> &middot; <a href="/metrics">metrics</a></div>
<table><thead><tr><th>account</th><th>state</th><th>in flight</th><th>cooldowns</th><th>token expires in</th>
<th>sku</th><th>premium quota</th><th>credits</th><th>requests</th><th>429s</th><th>why</th></tr></thead>
<tbody>{rows}</tbody></table>
{users_table}
<h2>recent events</h2><ul class="events">{events}</ul></body></html>
"""
    return redact(page)


def _row(a: dict) -> str:
    quota = a["quota"]
    quota_text = f"{quota['remaining_percent']:g}% of {quota['entitlement']}" if quota else "-"
    cells = [
        f"<td>{_e(a['name'])}</td>",
        f'<td><span class="state {_e(a["state"])}">{_e(a["state"])}</span></td>',
        f'<td class="num">{a["in_flight"]}</td>',
        f"<td>{_e(_cooldowns_text(a['cooldowns']))}</td>",
        f'<td class="num">{_duration(a["token_expires_in_s"])}</td>',
        f"<td>{_e(a['sku'] or '-')}</td>",
        f"<td>{_e(quota_text)}</td>",
        f'<td class="num">{a["credits_used"]:g}</td>',
        f'<td class="num">{a["served"]}</td>',
        f'<td class="num">{a["rate_limited"]}</td>',
        f"<td>{_e(a['last_failure'] or '')}</td>",
    ]
    return f'<tr id="account-{_e(a["name"])}">{"".join(cells)}</tr>'


def _cooldowns_text(cooldowns: list[dict]) -> str:
    """'2m 00s (rate_limited); gpt-5: 30s (user_model_rate_limited)'"""
    parts = [
        f"{c['model'] + ': ' if c['model'] else ''}{_duration(c['remaining_s'])} ({c['reason']})" for c in cooldowns
    ]
    return "; ".join(parts) or "-"


def _duration(seconds: int | None) -> str:
    if not seconds:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _e(value: object) -> str:
    return html.escape(str(value))


# -- pool.status: one line per account --------------------------------------------------------------


def command_lines(pool: Pool, state: dict | None = None) -> list[str]:
    now = pool.clock.now()
    footer = [redact(f"state: {state_text(state)}")] if state else []
    if not pool.accounts:
        return ["pool: no accounts", *footer]
    lines = []
    for a in pool.accounts.values():
        state = a.state(now)
        fields = [
            f"{a.name}",
            f"state={state.value}",
            f"in_flight={a.in_flight}" + (f"+{a.elsewhere}" if a.elsewhere else ""),
            f"last_used={_ago(now, a.last_used)}",
            f"cooldown={_seconds(a.cooldown_until - now)}{f'({a.cooldown_reason})' if a.cooldown_until > now else ''}",
            *(
                f"cooldown[{model}]={_seconds(c.until - now)}({c.reason})"
                for model, c in sorted(a.model_cooldowns.items())
                if c.until > now
            ),
            f"token_expires={_seconds(a.token.expires_at - now) if a.token else '-'}",
            f"served={a.served}",
            f"429s={a.rate_limited}",
            f"quota={a.quota.describe() if a.quota else '?'}",
            f"credits={credits(sum(a.credits.values())):g}",
        ]
        if a.last_failure and state in (State.FAILED, State.STARTING):
            fields.append(f"reason={a.last_failure!r}")
        lines.append(redact(" ".join(fields)))
    return lines + footer


def _seconds(value: float) -> str:
    return f"{math.ceil(value)}s" if value > 0 else "-"


def _ago(now: float, then: float) -> str:
    return "never" if then == -math.inf else f"{now - then:.0f}s ago"
