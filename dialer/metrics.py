"""Prometheus metrics: counters kept by each process, gauges read from the database.

Counters count what this process did (scrape every `run` and `serve`; Prometheus sums them).
Gauges describe the shared state (channels held, effective rate, contacts due) and are read
from PostgreSQL at scrape time, so every process reports the same, true figures.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import asyncpg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from dialer.campaigns import from_row
from dialer.db import campaigns as stored
from dialer.db import contacts, reporting, webhooks
from dialer.db.types import Connection
from dialer.shared_answers import SharedAnswers

if TYPE_CHECKING:  # the web server is imported where one is made, not for the counters
    from aiohttp import web

log = logging.getLogger("dialer.metrics")
REGISTRY = CollectorRegistry()

DIALS = Counter(
    "dialer_dials",
    "Attempts settled, by account, campaign and outcome",
    ["account", "campaign", "outcome"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "dialer_rate_limited", "Create-call requests answered 429", ["account"], registry=REGISTRY
)
AMBIGUOUS = Counter(
    "dialer_ambiguous",
    "Create-call requests with no definite answer (5xx, timeout): left to reconcile",
    ["account"],
    registry=REGISTRY,
)
CALLBACKS = Counter(
    "dialer_callbacks",
    "Provider callbacks received, by result (stored, repeated, refused)",
    ["account", "result"],
    registry=REGISTRY,
)
CALLBACK_SECONDS = Histogram(
    "dialer_callback_seconds",
    "Time to verify, store and apply one callback (until the 2xx)",
    ["account"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
RECONCILE_FAILURES = Counter(
    "dialer_reconciler_failures",
    "Items (an attempt, or an account's look-ups) the reconciler could not handle this round;"
    " each is retried later",
    ["what"],
    registry=REGISTRY,
)
RECONCILED = Counter(
    "dialer_reconciler_actions",
    "What the reconciler did (released, settled_from_provider, unknown, ...)",
    ["action"],
    registry=REGISTRY,
)
CHANNELS_IN_USE = Gauge(
    "dialer_channels_in_use", "Channels held by live attempts", ["account"], registry=REGISTRY
)
CHANNELS_LIMIT = Gauge(
    "dialer_channels_limit", "The account's channels", ["account"], registry=REGISTRY
)
RATE_EFFECTIVE = Gauge(
    "dialer_rate_effective_per_second",
    "Requests per second the account is paced at now (lowered after 429s)",
    ["account"],
    registry=REGISTRY,
)
RATE_LIMIT = Gauge(
    "dialer_rate_limit_per_second",
    "The account's configured rate",
    ["account"],
    registry=REGISTRY,
)
ACCOUNT_HELD = Gauge(
    "dialer_account_held_seconds",
    "Seconds until the account may send again after a provider's 429 asked it to wait"
    " (Retry-After; 0: not held)",
    ["account"],
    registry=REGISTRY,
)
CONTACTS_DUE = Gauge(
    "dialer_contacts_due",
    "Contacts due now (db.due: pending, not do-not-call, retry delay over, window open)",
    ["campaign"],
    registry=REGISTRY,
)


WEBHOOK_DELIVERIES = Counter(
    "dialer_webhook_deliveries",
    "Webhook deliveries tried, by endpoint and result (delivered, failed, exhausted)",
    ["endpoint", "result"],
    registry=REGISTRY,
)
WEBHOOKS_WAITING = Gauge(
    "dialer_webhooks_waiting",
    "Webhook deliveries not yet made, by endpoint and state (pending; exhausted: retries"
    " used up, kept for `dialer webhooks replay`)",
    ["endpoint", "state"],
    registry=REGISTRY,
)

CALLER_ID = {  # from caller_id_health, per account, caller id and period (day, week)
    column: Gauge(
        f"dialer_caller_id_{column}",
        f"A caller id's {meaning} over the period (day, week)",
        ["account", "caller_id", "period"],
        registry=REGISTRY,
    )
    for column, meaning in (
        ("attempts", "attempts"),
        ("answer_rate", "share of calls a person answered"),
        ("machine_rate", "share of answered calls a machine answered"),
        ("short_call_rate", "share of answered calls shorter than 6 s"),
    )
}


async def refresh_gauges(conn: Connection) -> None:
    """Read the shared state into the gauges."""
    for row in await reporting.account_gauges(conn):
        CHANNELS_IN_USE.labels(row["name"]).set(row["in_use"])
        CHANNELS_LIMIT.labels(row["name"]).set(row["channels"])
        RATE_EFFECTIVE.labels(row["name"]).set(row["paced_rate_per_s"])
        ACCOUNT_HELD.labels(row["name"]).set(row["held_s"] or 0)
        if row["configured_rate_per_s"] is not None:  # NULL: registered by an older version
            RATE_LIMIT.labels(row["name"]).set(row["configured_rate_per_s"])
    due: dict[str, int] = {}
    for row in await stored.all_active(conn):
        try:
            campaign = from_row(row)
        except ValueError as exc:  # a spec this version cannot read: that campaign only
            log.error(
                "campaign spec unreadable", extra={"campaign": row["name"], "error": str(exc)}
            )
            continue
        due[campaign.name] = await contacts.count_due(conn, campaign.id, campaign.rules)
    CONTACTS_DUE.clear()
    for name, count in due.items():
        CONTACTS_DUE.labels(name).set(count)
    WEBHOOKS_WAITING.clear()
    for row in await webhooks.counts(conn):
        for state in ("pending", "exhausted"):
            WEBHOOKS_WAITING.labels(row["endpoint"], state).set(row[state])
    health = await reporting.caller_id_health(conn)
    for gauge in CALLER_ID.values():
        gauge.clear()
    for row in health:
        for column, gauge in CALLER_ID.items():
            if row[column] is not None:
                gauge.labels(row["account"], row["caller_id"], row["period"]).set(row[column])


def metrics_handler(pool: asyncpg.Pool):
    """An aiohttp handler for GET /metrics, refreshing the database gauges first: one refresh
    at a time however many scrape at once, on `pool` (503 when its connections stay busy)."""
    from aiohttp import web  # here: settling a call counts in this module's counters too

    shared = SharedAnswers(0.0)  # one refresh at a time, shared by whoever asks meanwhile

    async def scrape() -> bytes:
        try:
            conn = await pool.acquire(timeout=5)
        except TimeoutError:
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "2"}) from None
        try:
            await refresh_gauges(conn)
        finally:
            await pool.release(conn)
        return generate_latest(REGISTRY)

    async def handler(request: web.Request) -> web.Response:
        body = await shared.get("metrics", scrape)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handler


def metrics_app(pool: asyncpg.Pool) -> web.Application:
    """A small app with only GET /metrics (for `dialer run --metrics-port`)."""
    from aiohttp import web

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics_handler(pool))])
    return app
