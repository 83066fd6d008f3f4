"""Deliver the webhook outbox to one endpoint, at least once, in order per contact.

Each round leases the due deliveries (the oldest pending one of each contact or campaign, so a
contact's events arrive in the order they happened), posts them concurrently, and marks each
delivered (2xx) or failed (anything else: retried on schedule.retry_at, kept as `exhausted`
after 24 hours). A lease is committed before the request is sent, so no transaction is held
open over the network; a process killed or paused mid-delivery leaves leases that expire, and
another round sends those events again with the same `webhook-id`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import aiohttp
import asyncpg

from dialer.config import WebhookConfig
from dialer.db import webhooks
from dialer.metrics import WEBHOOK_DELIVERIES
from dialer.redaction import redact
from dialer.webhooks.schedule import retry_at
from dialer.webhooks.signing import message_id, signed_headers

log = logging.getLogger("dialer.webhooks")
BATCH = 100  # deliveries leased per round, all sent at once
LEASE_S = 30.0  # longer than a round may take (REQUEST_TIMEOUT_S): one process sends it
REQUEST_TIMEOUT_S = 10.0
IDLE_S = 0.5  # nothing due: look again after this
MAX_ANSWER = 64 * 1024  # of a receiver's answer, what is read (and ignored)


@dataclass(frozen=True)
class Outcome:
    event_id: int
    error: str | None  # None: delivered


def body_of(row: asyncpg.Record) -> bytes:
    """The delivered JSON: Standard Webhooks' recommended envelope (type, timestamp, data)."""
    envelope = {
        "type": row["type"],
        "timestamp": row["created_at"].isoformat(),
        "data": json.loads(row["payload"]),
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()


async def post(session: aiohttp.ClientSession, hook: WebhookConfig, row: asyncpg.Record) -> Outcome:
    """One signed POST; any answer but 2xx (a redirect included) is a failure to retry."""
    body = body_of(row)
    headers = signed_headers(hook.key, message_id(row["event_id"]), int(time.time()), body)
    try:
        async with session.post(
            str(hook.url),
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        ) as answer:
            await answer.content.read(MAX_ANSWER)
            if 200 <= answer.status < 300:
                return Outcome(row["event_id"], None)
            return Outcome(row["event_id"], f"HTTP {answer.status}")
    except TimeoutError:
        return Outcome(row["event_id"], f"no answer within {REQUEST_TIMEOUT_S:g} s")
    except aiohttp.ClientError as exc:
        return Outcome(row["event_id"], redact(f"{type(exc).__name__}: {exc}")[:300])


async def deliver_round(
    pool: asyncpg.Pool, session: aiohttp.ClientSession, hook: WebhookConfig
) -> int:
    """Lease, send and mark one batch; how many deliveries were tried."""
    endpoint = hook.endpoint
    async with pool.acquire() as conn:
        rows = await webhooks.lease_due(conn, endpoint, BATCH, LEASE_S)
    if not rows:
        return 0
    outcomes = await asyncio.gather(*(post(session, hook, row) for row in rows))
    by_id = {row["event_id"]: row for row in rows}
    delivered = [o.event_id for o in outcomes if o.error is None]
    failed = [o for o in outcomes if o.error is not None]
    now = rows[0]["now"]
    retries = [
        retry_at(by_id[o.event_id]["tries"], by_id[o.event_id]["since"], now) for o in failed
    ]
    async with pool.acquire() as conn, conn.transaction():
        if delivered:
            await webhooks.mark_delivered(conn, endpoint, delivered)
        if failed:
            await webhooks.mark_failed(
                conn,
                endpoint,
                [o.event_id for o in failed],
                retries,
                [str(o.error) for o in failed],
            )
    WEBHOOK_DELIVERIES.labels(endpoint, "delivered").inc(len(delivered))
    exhausted = [o.event_id for o, when in zip(failed, retries, strict=True) if when is None]
    WEBHOOK_DELIVERIES.labels(endpoint, "failed").inc(len(failed) - len(exhausted))
    WEBHOOK_DELIVERIES.labels(endpoint, "exhausted").inc(len(exhausted))
    if failed:
        log.warning(
            "webhook deliveries failed",
            extra={"endpoint": endpoint, "failed": len(failed), "error": failed[0].error},
        )
    if exhausted:
        log.error(
            "webhook deliveries exhausted their retries (kept: dialer webhooks replay)",
            extra={"endpoint": endpoint, "events": exhausted[:20], "count": len(exhausted)},
        )
    return len(rows)


async def deliver_forever(pool: asyncpg.Pool, hook: WebhookConfig) -> None:
    """Deliver to `hook` until cancelled; a round that fails (database away) is logged and
    tried again: the outbox keeps everything meanwhile."""
    connector = aiohttp.TCPConnector(limit=BATCH)
    async with aiohttp.ClientSession(connector=connector) as session:
        while True:
            try:
                tried = await deliver_round(pool, session, hook)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.error(
                    "webhook round failed",
                    extra={"endpoint": hook.endpoint, "error": f"{type(exc).__name__}: {exc}"},
                )
                tried = 0
            if tried == 0:
                await asyncio.sleep(IDLE_S)
