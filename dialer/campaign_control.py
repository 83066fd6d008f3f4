"""Pausing, resuming and canceling campaigns; the circuit breaker; campaign status for people."""

from __future__ import annotations

import logging

import asyncpg

from dialer.db import attempts, campaigns, contacts
from dialer.dispatch.limiter import BREAKER_WINDOW, breaker_trips
from dialer.errors import ConflictError, NotFoundError

log = logging.getLogger("dialer.campaign")


async def _campaign(conn: asyncpg.Connection, name: str) -> asyncpg.Record:
    row = await campaigns.lock_by_name(conn, name)
    if row is None:
        raise NotFoundError(f"no such campaign: {name} (see `dialer campaign list`)")
    return row


async def set_status(conn: asyncpg.Connection, name: str, action: str) -> str:
    """pause | resume | cancel. Takes effect for every process at its next claim (< 1 s)."""
    allowed = {"pause": ("active",), "resume": ("paused",), "cancel": ("active", "paused")}
    target = {"pause": "paused", "resume": "active", "cancel": "canceled"}[action]
    async with conn.transaction():
        row = await _campaign(conn, name)
        if row["status"] == target:
            return f"campaign {name} is already {target}"
        if row["status"] not in allowed[action]:
            raise ConflictError(f"campaign {name} is {row['status']}; cannot {action} it")
        reason = {"pause": "paused by user", "cancel": "canceled by user"}.get(action)
        await campaigns.set_status(conn, row["id"], target, reason)
        message = f"campaign {name}: {row['status']} -> {target}"
        if action == "cancel":
            canceled = await contacts.cancel_waiting(conn, row["id"])
            message += f"; {canceled} waiting contacts canceled (calls in flight settle)"
    log.info("campaign status changed", extra={"campaign": name, "status": target})
    return message


async def trip_breaker_if_failing(conn: asyncpg.Connection, campaign_id: int) -> str | None:
    """Pause the campaign if more than half of its last 50 settled attempts failed or were
    rejected (a broken caller id, a suspended route): better a paused campaign than thousands of
    failed calls. Returns the reason when it trips."""
    settled, bad = await attempts.recent_outcomes(conn, campaign_id, BREAKER_WINDOW)
    if not breaker_trips(settled, bad):
        return None
    reason = (
        f"circuit breaker: {bad} of the last {settled} attempts failed or were"
        " rejected; check the account, caller id and route, then `dialer campaign resume`"
    )
    if await campaigns.pause_if_active(conn, campaign_id, reason):
        log.error("campaign paused", extra={"campaign_id": campaign_id, "reason": reason})
        return reason
    return None
