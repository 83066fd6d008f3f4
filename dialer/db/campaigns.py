"""The campaigns table: finding campaigns, and every change of their status.

A campaign's status is read at each claim and in the send compare-and-set, so a change here
takes effect for every process within a second.
"""

from __future__ import annotations

import asyncpg

from dialer.db import stalled, webhooks
from dialer.db.types import Connection, one

_ROW = "SELECT id, name, account, spec FROM campaigns"


async def by_id(conn: Connection, campaign_id: int) -> asyncpg.Record | None:
    """(id, name, account, spec) of the campaign, or None."""
    return await conn.fetchrow(_ROW + " WHERE id = $1", campaign_id)


async def by_name(conn: Connection, name: str) -> asyncpg.Record | None:
    """(id, name, account, spec, status, status_reason) of the campaign, or None."""
    return await conn.fetchrow(
        "SELECT id, name, account, spec, status, status_reason FROM campaigns WHERE name = $1",
        name,
    )


async def by_names(conn: Connection, names: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(_ROW + " WHERE name = ANY($1::text[])", names)


async def all_active(conn: Connection) -> list[asyncpg.Record]:
    return await conn.fetch(_ROW + " WHERE status = 'active' ORDER BY id")


async def exists(conn: Connection, name: str) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM campaigns WHERE name = $1)", name)


async def status_of(conn: Connection, campaign_id: int) -> str | None:
    return await conn.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign_id)


# Said by PostgreSQL at the commit of every statement that changes a campaign's status
# (migration 0037's trigger), with an empty payload: a process that keeps which campaigns are
# active reads them again (dispatch.pg_store).
CAMPAIGN_STATUS = "dialer_campaign_status"


async def active_among(conn: Connection, ids: list[int]) -> set[int]:
    """Which of these campaigns are `active` now."""
    rows = await conn.fetch(
        "SELECT id FROM campaigns WHERE id = ANY($1::bigint[]) AND status = 'active'", ids
    )
    return {r["id"] for r in rows}


async def lock_by_name(conn: Connection, name: str) -> asyncpg.Record | None:
    """(id, spec, status) of the campaign, row-locked until the transaction ends; or None.

    The lock keeps out whoever else takes it (another load, a pause or cancel) but not the
    attempts dialing writes meanwhile: their foreign-key checks take KEY SHARE on the row,
    which FOR UPDATE would hold off for a whole load (past lock_timeout, and `dialer run`
    took that for the database being away). NO KEY UPDATE holds them off only if the
    campaign's id or name changed, which nothing does."""
    return await conn.fetchrow(_LOCK_BY_NAME, name)


_LOCK_BY_NAME = "SELECT id, spec, status FROM campaigns WHERE name = $1 FOR NO KEY UPDATE"


async def lock_by_name_for_load(conn: Connection, name: str) -> asyncpg.Record | None:
    """lock_by_name for a load, which may wait for another load of the campaign: one stopped
    part way through a COPY is ended meanwhile (db.stalled), not waited for for ever."""
    return await stalled.fetchrow_past_stalled_loads(conn, _LOCK_BY_NAME, name)


async def insert_new(conn: Connection, name: str, account: str, spec: dict) -> int | None:
    """The new campaign's id; None if another session created one of that name meanwhile (an
    insert still in progress is waited for: None once it commits; a load that made it and
    stopped part way through a COPY is ended meanwhile, db.stalled, and this one is made)."""
    row = await stalled.fetchrow_past_stalled_loads(
        conn,
        """INSERT INTO campaigns (name, account, spec) VALUES ($1, $2, $3)
           ON CONFLICT (name) DO NOTHING RETURNING id""",
        name,
        account,
        spec,
    )
    return row["id"] if row else None


async def replace_spec(conn: Connection, campaign_id: int, account: str, spec: dict) -> None:
    await conn.execute(
        "UPDATE campaigns SET spec = $2, account = $3, updated_at = now() WHERE id = $1",
        campaign_id,
        spec,
        account,
    )


async def set_status(conn: Connection, campaign_id: int, status: str, reason: str | None) -> None:
    await conn.execute(
        """UPDATE campaigns SET status = $2, status_reason = $3, updated_at = now()
           WHERE id = $1""",
        campaign_id,
        status,
        reason,
    )


async def leave_active(conn: Connection, campaign_id: int, status: str, reason: str) -> bool:
    """Move the campaign from `active` to `status` (paused, completed) with `reason`; whether
    it was active. Completing it writes its `campaign.finished` webhook event."""
    async with conn.transaction():
        changed = await conn.execute(
            """UPDATE campaigns SET status = $2, status_reason = $3, updated_at = now()
               WHERE id = $1 AND status = 'active'""",
            campaign_id,
            status,
            reason,
        )
        if changed.endswith(" 1") and status == "completed":
            await webhooks.record_finished(conn, [campaign_id])
    return changed.endswith(" 1")


async def pause_account(conn: Connection, account: str, reason: str) -> None:
    """Pause every active campaign of the account."""
    await conn.execute(
        """UPDATE campaigns SET status = 'paused', status_reason = $2, updated_at = now()
           WHERE account = $1 AND status = 'active'""",
        account,
        reason,
    )


async def goal_progress(conn: Connection, campaign_id: int) -> tuple[int, float | None]:
    """(calls answered by a person: outcome completed, provider-reported cost so far)."""
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE state = 'completed') AS answered, sum(cost) AS cost
           FROM attempts WHERE campaign_id = $1""",
        campaign_id,
    )
    row = one(row, "goal progress")
    cost = row["cost"]
    return row["answered"], float(cost) if cost is not None else None


async def complete_finished(conn: Connection, ids: list[int]) -> None:
    """Mark `completed` those of these active campaigns that have no contact left to dial
    (with their `campaign.finished` webhook events)."""
    async with conn.transaction():
        # A load holds its campaign's row until it commits. Wait for it here, so that the
        # check below, a statement of its own and so with a snapshot of its own, sees what it
        # loaded. (Waiting inside the UPDATE, PostgreSQL would re-check the row but read the
        # contacts as they were before: a campaign just given contacts would complete.)
        await conn.execute(
            """SELECT 1 FROM campaigns WHERE id = ANY($1::bigint[]) AND status = 'active'
               ORDER BY id FOR NO KEY UPDATE""",
            ids,
        )
        done = await conn.fetch(
            """UPDATE campaigns k SET status = 'completed', updated_at = now()
               WHERE k.id = ANY($1::bigint[]) AND k.status = 'active'
                 AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.campaign_id = k.id
                                 AND c.state IN ('pending', 'dialing'))
               RETURNING k.id""",
            ids,
        )
        await webhooks.record_finished(conn, [r["id"] for r in done])


async def delete(conn: Connection, campaign_id: int) -> None:
    """Remove the campaign and its contacts (contacts have no foreign key: they go first)."""
    async with conn.transaction():
        await conn.execute("DELETE FROM contacts WHERE campaign_id = $1", campaign_id)
        await conn.execute("DELETE FROM campaigns WHERE id = $1", campaign_id)


async def reopen_finished(conn: Connection, campaign_id: int) -> tuple[bool, str | None]:
    """A load gave the campaign contacts to dial: if it had completed because every contact
    was final (complete_finished, which gives no reason), it is active again. (whether it
    was reopened, the reason it stays completed: a goal met, say; None if it is not)."""
    row = await conn.fetchrow(
        """WITH reopened AS (
               UPDATE campaigns SET status = 'active', updated_at = now()
               WHERE id = $1 AND status = 'completed' AND status_reason IS NULL
               RETURNING id)
           SELECT EXISTS (SELECT 1 FROM reopened) AS reopened,
                  CASE WHEN status = 'completed' THEN status_reason END AS completed_because
           FROM campaigns WHERE id = $1""",
        campaign_id,
    )
    row = one(row, "reopen a finished campaign")
    return row["reopened"], None if row["reopened"] else row["completed_because"]
