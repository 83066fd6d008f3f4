"""The reconciler: closes what our own crashes and the providers' silences leave open.

- A reservation whose lease expired was never sent (the send is a compare-and-set on the lease):
  it becomes `not_dialed` and the contact may be dialed again.
- An attempt past its `settle_by` without a final event is looked up with the provider's status
  API where the adapter has one; otherwise (or if the provider does not know) it is closed as
  `unknown`, freeing its channel. It is never redialed because of that: `unknown` counts as an
  attempt and waits for the campaign's `unknown` delay.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

import aiohttp
import asyncpg

from dialer.campaigns import SETTLE_GRACE, CampaignCache
from dialer.policy.states import is_terminal
from dialer.providers.base import Provider
from dialer.settle import apply_event, settle

log = logging.getLogger("dialer.reconcile")
BATCH = 500


async def reconcile_once(
    pool: asyncpg.Pool,
    campaigns: CampaignCache,
    adapters: dict[str, Provider],
    session: aiohttp.ClientSession | None,
) -> Counter[str]:
    actions: Counter[str] = Counter()
    async with pool.acquire() as conn:
        expired = await conn.fetch(
            """SELECT id FROM attempts WHERE state = 'reserved' AND lease_expires_at < now()
               LIMIT $1""",
            BATCH,
        )
        for row in expired:
            async with conn.transaction():
                if await settle(
                    conn,
                    campaigns,
                    row["id"],
                    "not_dialed",
                    error="reservation expired unsent",
                    from_states=("reserved",),
                ):
                    actions["released"] += 1
        silent = await conn.fetch(
            """SELECT id, account, provider_call_id, state FROM attempts
               WHERE state IN ('dialing', 'accepted', 'ringing', 'in-progress')
                 AND settle_by < now()
               ORDER BY settle_by LIMIT $1""",
            BATCH,
        )
        for row in silent:
            actions[await _resolve(conn, campaigns, adapters, session, row)] += 1
    for action, count in actions.items():
        log.info("reconciled", extra={"action": action, "count": count})
    return actions


async def _resolve(conn, campaigns, adapters, session, row) -> str:
    adapter = adapters.get(row["account"])
    event = None
    if adapter is not None and session is not None and row["provider_call_id"]:
        event = await adapter.fetch_status(session, row["provider_call_id"])
    if event is not None and is_terminal(event.status):
        await apply_event(conn, campaigns, row["account"], row["id"], event)
        return "settled_from_provider"
    if event is not None:  # the provider says it is still going: give it one more grace period
        await conn.execute(
            "UPDATE attempts SET settle_by = now() + $2::interval WHERE id = $1",
            row["id"],
            SETTLE_GRACE,
        )
        return "extended"
    reason = "no final event from the provider" + (
        "" if row["provider_call_id"] else " and no call id (crash or timeout while sending)"
    )
    async with conn.transaction():
        done = await settle(conn, campaigns, row["id"], "unknown", error=reason)
    if done:
        log.warning("attempt closed as unknown", extra={"attempt": row["id"], "reason": reason})
    return "unknown" if done else "raced"


RECONCILE_EVERY = timedelta(seconds=5)
