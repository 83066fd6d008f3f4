"""The live dashboard of `dialer serve`: one page at `/`, and the JSON it reads under `/api/`.

- `GET /api/campaigns`: every campaign with progress, outcomes, its account's current request
  rate and channels against their limits, whether its calling window is open, and when its next
  contact is due. Read-only, no token (it shows counts, never numbers or names).
- `POST /api/campaigns/{name}/{pause|resume|cancel}`: needs `Authorization: Bearer
  <admin_token>` (from dialer.toml); without an admin_token configured, control is disabled.
The page is one self-contained HTML file (no external asset): it polls the JSON every 2 s.
Every response of the server carries nosniff, no framing and a Content-Security-Policy that
lets the page run only its own script and style (by hash) and talk only to this server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from functools import cache
from importlib import resources

import asyncpg
from aiohttp import web

from dialer.account_status import account_status
from dialer.api.problems import PROBLEM, problem
from dialer.campaign_control import set_status
from dialer.campaign_spec import is_campaign_name
from dialer.campaigns import from_row
from dialer.config import DialerConfig
from dialer.db import campaigns as stored
from dialer.db import contacts, reporting, server, webhooks
from dialer.db.types import Connection
from dialer.errors import DialerError, http_status_of
from dialer.policy.due import FirstInLine, next_due
from dialer.policy.states import CONTACT_STATES, TALLIES
from dialer.providers.secrets import same_secret
from dialer.redaction import redact_value
from dialer.shared_answers import SharedAnswers
from dialer.waiting import why_not_dialed

log = logging.getLogger("dialer.dashboard")
POOL = web.AppKey("dashboard_pool", asyncpg.Pool)
SHARED = web.AppKey("dashboard_answers", SharedAnswers)
SHARED_FOR_S = 1.0  # the page polls every 2 s; any number of viewers share one query a second
ACQUIRE_S = 5.0
ADMIN_TOKEN = web.AppKey("admin_token", str)
JSON_PREFIX = "/api/campaigns"  # where dialer.web mounts dashboard_app
DIAL_CAP = web.AppKey("dashboard_dial_cap", int)
# A slow answer (a campaign of a million contacts) is kept until computing it has taken at
# most this share of the time: the page polls every 2 s, the database is not kept busy.
BUSY_SHARE = 0.2
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16"'
    ' rx="3" fill="#1d2330"/><path d="M5 4h3a4 4 0 0 1 0 8H5z" fill="none" stroke="#2e9d5b"'
    ' stroke-width="2"/></svg>'
)
ACTIONS = ("pause", "resume", "cancel")


async def campaigns(request: web.Request) -> web.Response:
    """Every campaign, computed at most once a second whoever asks (a flood of viewers costs
    one query a second, on the dashboard's own connections)."""
    body = await request.app[SHARED].get("campaigns", lambda: _campaigns(request.app[POOL]))
    return web.Response(body=body, content_type="application/json")


async def _campaigns(pool: asyncpg.Pool) -> bytes:
    async with _connection(pool) as conn:
        rows = await reporting.dashboard_rows(conn)
        firsts = await contacts.first_due_per_zone(conn, [r["id"] for r in rows])
        waiting = await webhooks.counts(conn)
        accounts = await account_status(conn, None)
        now = await server.now(conn)
    by_campaign: dict[int, list[FirstInLine]] = {}
    for first in firsts:
        by_campaign.setdefault(first.campaign_id, []).append(first)
    shown = [_shown(r, by_campaign.get(r["id"], [])) for r in rows]
    hooks = [
        {"endpoint": w["endpoint"], "pending": w["pending"], "exhausted": w["exhausted"]}
        for w in waiting
    ]
    shown_accounts = [
        {k: v.isoformat(timespec="seconds") if isinstance(v, datetime) else v for k, v in a.items()}
        for a in accounts
    ]
    answer = {
        "as_of": now.isoformat(timespec="seconds"),
        "campaigns": shown,
        "webhooks": hooks,
        "accounts": shown_accounts,
    }
    return json.dumps(redact_value(answer)).encode()


def _shown(row: asyncpg.Record, firsts: list[FirstInLine]) -> dict:
    """One campaign for the page; a stored spec this version cannot read (written by an older
    one) shows as that campaign's error instead of taking the whole page down."""
    try:
        return _campaign(row, firsts)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        log.error("campaign spec unreadable", extra={"campaign": row["name"], "error": str(exc)})
        return {
            "name": row["name"],
            "account": row["account"],
            "status": row["status"],
            "error": f"stored campaign spec is not readable: {str(exc).splitlines()[0]}",
        }


def _campaign(row: asyncpg.Record, firsts: list[FirstInLine]) -> dict:
    campaign = from_row(row)
    now: datetime = row["now"]
    zone = campaign.spec.timezone
    window_open = campaign.rules.is_open(now, zone)
    next_change = (
        campaign.rules.closes_at(now, zone) if window_open else campaign.rules.next_open(now, zone)
    )
    due = next_due(firsts, {campaign.id: campaign.rules}, now)
    finished = row["done"] + row["exhausted"] + row["failed"] + row["suppressed"] + row["canceled"]
    return {
        "name": row["name"],
        "account": row["account"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        "contacts": row["contacts"],
        "finished": finished,
        "progress": round(finished / row["contacts"], 4) if row["contacts"] else 0,
        "states": {k: row[k] for k in CONTACT_STATES},
        "outcomes": {t.word: row[t.column] for t in TALLIES},
        "answer_rate": _rate(row["answer_rate"]),
        "human_answer_rate": _rate(row["human_answer_rate"]),
        "machine_answer_rate": _rate(row["machine_answer_rate"]),
        "rate": {
            "now_per_s": float(row["rate_now"] or 0),
            "paced_per_s": row["rate_paced"],
            "limit_per_s": row["rate_limit"],
        },
        "channels": {"in_use": row["channels_in_use"], "limit": row["channel_limit"]},
        "account_hold": (
            {
                "until": row["held_until"].isoformat(),
                "retry_after_asked_s": row["held_asked_s"],
            }
            if row["held_until"]
            else None
        ),
        "window": {
            "open": window_open,
            "timezone": zone,
            "changes_at": next_change.isoformat() if next_change else None,
        },
        "next_due": due[0].isoformat() if due else None,
    }


def _rate(value: float | Decimal | None) -> float | None:
    return float(value) if value is not None else None


async def charts(request: web.Request) -> web.Response:
    """One campaign's pictures: its account's requests and channels per minute over the last
    hour against their limits, and its outcomes by hour (counts only, like the list)."""
    name = request.match_info["name"]
    if not is_campaign_name(name):
        return problem(404, f"no such campaign: {name}")
    body = await request.app[SHARED].get(f"charts:{name}", lambda: _charts(request.app[POOL], name))
    if body is None:
        return problem(404, f"no such campaign: {name}")
    return web.Response(body=body, content_type="application/json")


async def _charts(pool: asyncpg.Pool, name: str) -> bytes | None:
    async with _connection(pool) as conn:
        row = await stored.by_name(conn, name)
        if row is None:
            return None
        minutes = await reporting.account_minutes(conn, row["account"])
        hours = await reporting.campaign_hours(conn, row["id"])
        zone = _zone_of(row)
        slots = await reporting.hour_slots(conn, zone)
        now = await server.now(conn)
    first = minutes[0] if minutes else None
    return json.dumps(
        {
            "name": row["name"],
            "account": row["account"],
            "as_of": now.isoformat(timespec="seconds"),
            "timezone": zone,
            "hour_slots": [h.isoformat() for h in slots],
            "request_limit_per_min": first["request_limit"] if first else None,
            "channel_limit": first["channel_limit"] if first else None,
            "minutes": [
                {
                    "minute": m["minute"].isoformat(),
                    "requests": m["requests"],
                    "channels": m["peak_channels"],
                }
                for m in minutes
            ],
            "hours": [
                {"hour": h["hour"].isoformat(), "outcome": h["outcome"], "attempts": h["attempts"]}
                for h in hours
            ],
        }
    ).encode()


async def waiting(request: web.Request) -> web.Response:
    """Why one campaign's waiting contacts are not dialed now (dialer.waiting): counts and
    figures only, like the list."""
    name = request.match_info["name"]
    if not is_campaign_name(name):
        return problem(404, f"no such campaign: {name}")
    app = request.app
    body = await app[SHARED].get(
        f"waiting:{name}", lambda: _waiting(app[POOL], name, app[DIAL_CAP])
    )
    if body is None:
        return problem(404, f"no such campaign: {name}")
    return web.Response(body=body, content_type="application/json")


async def _waiting(pool: asyncpg.Pool, name: str, dial_cap: int) -> bytes | None:
    async with _connection(pool) as conn:
        row = await stored.by_name(conn, name)
        if row is None:
            return None
        why = await why_not_dialed(conn, from_row(row), dial_cap=dial_cap)
    return json.dumps(why.to_json()).encode()


async def favicon(request: web.Request) -> web.Response:
    return web.Response(
        text=FAVICON,
        content_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


def _zone_of(row: asyncpg.Record) -> str:
    """The campaign's timezone as stored (UTC if its spec cannot be read)."""
    try:
        return from_row(row).spec.timezone
    except ValueError:
        return "UTC"


async def control(request: web.Request) -> web.Response:
    expected = request.app[ADMIN_TOKEN]
    if not expected:
        return problem(403, "control is disabled: set admin_token in dialer.toml")
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not same_secret(given, expected):
        log.warning("dashboard control refused", extra={"reason": "bad or missing admin token"})
        return problem(
            401, "bad or missing admin token: type the admin_token of dialer.toml in the box above"
        )
    name, action = request.match_info["name"], request.match_info["action"]
    if not is_campaign_name(name):
        return problem(404, f"no such campaign: {name}")
    if action not in ACTIONS:
        return problem(404, f"unknown action {action!r} (pause, resume or cancel)")
    try:
        async with _connection(request.app[POOL]) as conn:
            message = await set_status(conn, name, action)
    except DialerError as exc:
        return problem(http_status_of(exc), exc.message)
    log.info("dashboard control", extra={"campaign": name, "action": action})
    return web.json_response({"ok": True, "message": message})


@cache
def _page() -> tuple[str, str]:
    """The page, and the policy that allows exactly its inline script and style."""
    html = resources.files("dialer.dashboard").joinpath("page.html").read_text(encoding="utf-8")

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        digests = [base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in blocks]
        return " ".join(f"'sha256-{d}'" for d in digests)

    policy = (
        f"default-src 'none'; script-src {hashes('script')}; style-src-elem {hashes('style')};"
        " style-src-attr 'unsafe-inline'; connect-src 'self'; img-src 'self' data:;"
        " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html, policy


API_POLICY = "default-src 'none'; frame-ancestors 'none'"


async def page(request: web.Request) -> web.Response:
    html, policy = _page()
    response = web.Response(text=html, content_type="text/html")
    response.headers["Content-Security-Policy"] = policy
    return response


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, errors included: no MIME sniffing, no framing, no referrer, and a
    policy that allows nothing unless the page set its own."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Content-Security-Policy", API_POLICY)
    response.headers.setdefault("Cache-Control", "no-store")


@asynccontextmanager
async def _connection(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """One of the dashboard's connections, or 503 when all are busy for ACQUIRE_S (its share
    is bounded: the dashboard never takes the callbacks' connections)."""
    try:
        conn = await pool.acquire(timeout=ACQUIRE_S)
    except TimeoutError:
        raise web.HTTPServiceUnavailable(
            text=json.dumps(
                {"type": "about:blank", "title": "Busy", "status": 503, "detail": "busy: try again"}
            ),
            content_type=PROBLEM,
            headers={"Retry-After": "2"},
        ) from None
    try:
        yield conn
    finally:
        await pool.release(conn)


@web.middleware
async def _database_away(request: web.Request, handler) -> web.StreamResponse:
    """The dashboard's JSON with the database away: 503, never a traceback."""
    try:
        return await handler(request)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.error("dashboard request failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        response = problem(503, "the database cannot answer now")
        response.headers["Retry-After"] = "5"
        return response


def dashboard_app(
    pool: asyncpg.Pool, admin_token: str | None, *, dial_cap: int | None = None
) -> web.Application:
    """The dashboard's JSON and control, to be mounted at JSON_PREFIX (dialer.web): its pool,
    its shared answers, its admin token, and its 503 for a database away. The page itself
    (`page`, `favicon`) is served at the root."""
    app = web.Application()
    app[POOL] = pool
    app[SHARED] = SharedAnswers(SHARED_FOR_S, busy_share=BUSY_SHARE)
    app[ADMIN_TOKEN] = admin_token or ""
    app[DIAL_CAP] = dial_cap or DialerConfig().max_dials_per_number_per_day
    app.middlewares.append(_database_away)
    app.add_routes(
        [
            web.get("", campaigns),
            web.get("/{name}/charts", charts),
            web.get("/{name}/waiting", waiting),
            web.post("/{name}/{action}", control),
        ]
    )
    return app
