"""Pausing, resuming and canceling campaigns; the circuit breaker; campaign status for people."""

from __future__ import annotations

import logging

import asyncpg

from dialer.errors import ConflictError, NotFoundError

log = logging.getLogger("dialer.campaign")

BREAKER_WINDOW = 50  # the last N settled attempts
BREAKER_MINIMUM = 20  # too few to judge below this


async def _campaign(conn: asyncpg.Connection, name: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT id, status FROM campaigns WHERE name = $1 FOR UPDATE", name)
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
        await conn.execute(
            """UPDATE campaigns SET status = $2, status_reason = $3, updated_at = now()
               WHERE id = $1""",
            row["id"],
            target,
            reason,
        )
        message = f"campaign {name}: {row['status']} -> {target}"
        if action == "cancel":
            status = await conn.execute(
                """UPDATE contacts SET state = 'canceled', updated_at = now()
                   WHERE campaign_id = $1 AND state = 'pending'""",
                row["id"],
            )
            message += f"; {status.split()[-1]} waiting contacts canceled (calls in flight settle)"
    log.info("campaign status changed", extra={"campaign": name, "status": target})
    return message


async def trip_breaker_if_failing(conn: asyncpg.Connection, campaign_id: int) -> str | None:
    """Pause the campaign if more than half of its last 50 settled attempts failed or were
    rejected (a broken caller id, a suspended route): better a paused campaign than thousands of
    failed calls. Returns the reason when it trips."""
    row = await conn.fetchrow(
        """SELECT count(*) AS settled,
                  count(*) FILTER (WHERE outcome IN ('failed', 'rejected')) AS bad
           FROM (SELECT outcome FROM attempts
                 WHERE campaign_id = $1 AND outcome IS NOT NULL AND outcome <> 'not_dialed'
                 ORDER BY ended_at DESC NULLS LAST LIMIT $2) recent""",
        campaign_id,
        BREAKER_WINDOW,
    )
    if row["settled"] < BREAKER_MINIMUM or row["bad"] * 2 <= row["settled"]:
        return None
    reason = (
        f"circuit breaker: {row['bad']} of the last {row['settled']} attempts failed or were"
        " rejected; check the account, caller id and route, then `dialer campaign resume`"
    )
    tripped = await conn.execute(
        """UPDATE campaigns SET status = 'paused', status_reason = $2, updated_at = now()
           WHERE id = $1 AND status = 'active'""",
        campaign_id,
        reason,
    )
    if tripped.endswith("1"):
        log.error("campaign paused", extra={"campaign_id": campaign_id, "reason": reason})
        return reason
    return None
