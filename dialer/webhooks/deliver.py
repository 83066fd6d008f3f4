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

import aiohttp
import asyncpg

from dialer.config import WebhookConfig
from dialer.db import webhooks
from dialer.db.outage import DATABASE_FAILURES
from dialer.metrics import WEBHOOK_DELIVERIES
from dialer.redaction import redact
from dialer.wakeups import Wakeups
from dialer.webhooks.schedule import retry_at
from dialer.webhooks.signing import message_id, signed_headers

log = logging.getLogger("dialer.webhooks")
BATCH = 100  # deliveries leased per round, all sent at once
LEASE_S = 30.0  # longer than a round may take (REQUEST_TIMEOUT_S): one process sends it
REQUEST_TIMEOUT_S = 10.0
# The outbox drained (a round leased less than a batch): look again when deliveries to the
# endpoint are written (PostgreSQL's notice, dialer.wakeups), GATHER_S after it so that the
# writes of that moment go in one round, not one each; or after HEARD_IDLE_S while the process
# hears notices (retries that come due, a notice lost), IDLE_S while it cannot. Asking every
# 0.5 s was 9.5 statements a settled call with calls of minutes; a round at each notice, 3.4
# at 50 calls a second (bench/RESULTS.md).
IDLE_S = 0.5
HEARD_IDLE_S = 5.0
GATHER_S = 0.5
MAX_ANSWER = 64 * 1024  # of a receiver's answer, what is read (and ignored)


def body_of(row: asyncpg.Record) -> bytes:
    """The delivered JSON: Standard Webhooks' recommended envelope (type, timestamp, data)."""
    envelope = {
        "type": row["type"],
        "timestamp": row["created_at"].isoformat(),
        "data": json.loads(row["payload"]),
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()


async def post(
    session: aiohttp.ClientSession, url: str, key: bytes, row: asyncpg.Record, install: str
) -> str | None:
    """One signed POST; None if delivered, else why not (any answer but 2xx, a redirect
    included, is a failure to retry)."""
    body = body_of(row)
    headers = signed_headers(key, message_id(install, row["event_id"]), int(time.time()), body)
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        ) as answer:
            await answer.content.read(MAX_ANSWER)
            return None if 200 <= answer.status < 300 else f"HTTP {answer.status}"
    except TimeoutError:
        return f"no answer within {REQUEST_TIMEOUT_S:g} s"
    except aiohttp.ClientError as exc:
        return redact(f"{type(exc).__name__}: {exc}")[:300]


async def deliver_round(
    pool: asyncpg.Pool, session: aiohttp.ClientSession, hook: WebhookConfig, install: str
) -> int:
    """Lease, send and mark one batch; how many deliveries were tried."""
    endpoint = hook.endpoint
    async with pool.acquire() as conn:
        rows = await webhooks.lease_due(conn, endpoint, BATCH, LEASE_S)
    if not rows:
        return 0
    url, key = str(hook.url), hook.key
    errors = await asyncio.gather(*(post(session, url, key, row, install) for row in rows))
    delivered = [row["event_id"] for row, error in zip(rows, errors, strict=True) if not error]
    failed = [(row, error) for row, error in zip(rows, errors, strict=True) if error]
    now = rows[0]["now"]
    retries = [retry_at(row["tries"], row["since"], now) for row, _ in failed]
    async with pool.acquire() as conn, conn.transaction():
        if delivered:
            await webhooks.mark_delivered(conn, endpoint, delivered)
        if failed:
            await webhooks.mark_failed(
                conn,
                endpoint,
                [row["event_id"] for row, _ in failed],
                retries,
                [error for _, error in failed],
            )
    exhausted = [
        row["event_id"] for (row, _), when in zip(failed, retries, strict=True) if not when
    ]
    WEBHOOK_DELIVERIES.labels(endpoint, "delivered").inc(len(delivered))
    WEBHOOK_DELIVERIES.labels(endpoint, "failed").inc(len(failed) - len(exhausted))
    WEBHOOK_DELIVERIES.labels(endpoint, "exhausted").inc(len(exhausted))
    if failed:
        log.warning(
            "webhook deliveries failed",
            extra={"endpoint": endpoint, "failed": len(failed), "error": failed[0][1]},
        )
    if exhausted:
        log.error(
            "webhook deliveries exhausted their retries (kept: dialer webhooks replay)",
            extra={"endpoint": endpoint, "events": exhausted[:20], "count": len(exhausted)},
        )
    return len(rows)


async def deliver_forever(
    pool: asyncpg.Pool, hook: WebhookConfig, due: Wakeups | None = None
) -> None:
    """Deliver to `hook` until cancelled; a round that fails (database away) is logged and
    tried again: the outbox keeps everything meanwhile. Once it is drained it waits for `due`
    to say deliveries to the endpoint were written (or its timeout)."""
    due = due or Wakeups()
    connector = aiohttp.TCPConnector(limit=BATCH)
    install: str | None = None
    async with aiohttp.ClientSession(connector=connector) as session:
        while True:
            try:
                if install is None:
                    async with pool.acquire() as conn:
                        install = await webhooks.install_id(conn)
                tried = await deliver_round(pool, session, hook, install)
            except DATABASE_FAILURES as exc:
                log.error(
                    "webhook round failed",
                    extra={"endpoint": hook.endpoint, "error": f"{type(exc).__name__}: {exc}"},
                )
                tried = 0
            if tried < BATCH:
                await due.wait(hook.endpoint, IDLE_S, HEARD_IDLE_S, GATHER_S)


async def keep_endpoints_forever(pool: asyncpg.Pool, names: list[str]) -> None:
    """Every minute, say which endpoints this process has in its dialer.toml, and forget the
    ones no process has named for an hour (db.webhooks.keep_endpoints)."""
    while True:
        try:
            async with pool.acquire() as conn:
                gone = await webhooks.keep_endpoints(conn, names)
            if gone:
                log.warning(
                    "webhook endpoints removed from every dialer.toml: forgotten",
                    extra={"count": gone},
                )
        except DATABASE_FAILURES as exc:
            log.error("webhook endpoints not refreshed", extra={"error": f"{type(exc).__name__}"})
        await asyncio.sleep(webhooks.SEEN_EVERY_S)
