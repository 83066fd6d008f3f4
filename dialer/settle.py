"""Moving attempts forward and settling them: the one place outcomes change contacts.

Every change is a compare-and-set: an UPDATE whose WHERE clause only matches an attempt that is
still live (and, for progress events, in a lower state), so repeated, late or reordered events,
and two processes racing, can never move an attempt backwards or settle it twice.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

import asyncpg

from dialer.campaigns import CampaignCache
from dialer.policy.retry import next_step
from dialer.policy.states import LIVE, RANK, is_terminal
from dialer.providers.base import CallEvent

log = logging.getLogger("dialer.settle")


async def settle(
    conn: asyncpg.Connection,
    campaigns: CampaignCache,
    attempt_id: int,
    outcome: str,
    *,
    error: str | None = None,
    duration_s: int | None = None,
    ended_at: datetime | None = None,
    do_not_call: bool = False,
    from_states: tuple[str, ...] = LIVE,
) -> bool:
    """Close a live attempt with `outcome`, free its channel, decide the contact's next step.

    `from_states` narrows which states may be closed: releasing an unsent reservation must
    only ever match `reserved`, so an attempt that was meanwhile sent is never re-armed.
    Returns False if nothing matched (nothing changes). Call inside a transaction.
    """
    row = await conn.fetchrow(
        """UPDATE attempts
           SET state = $2, outcome = $2, slot = NULL, error = coalesce($3, error),
               duration_s = coalesce($4, duration_s), ended_at = coalesce($5, now()),
               updated_at = now()
           WHERE id = $1 AND state = ANY($6::text[])
           RETURNING contact_id, campaign_id, attempt_no, phone_e164""",
        attempt_id,
        outcome,
        error,
        duration_s,
        ended_at,
        list(from_states),
    )
    if row is None:
        return False
    contact = await conn.fetchrow(
        "SELECT attempts, timezone FROM contacts WHERE id = $1 FOR UPDATE", row["contact_id"]
    )
    if outcome == "not_dialed":
        # Nothing reached the provider: the attempt does not count; dial again when allowed.
        await conn.execute(
            """UPDATE contacts SET state = 'pending', attempts = greatest(attempts - 1, 0),
                   updated_at = now()
               WHERE id = $1 AND state = 'dialing'""",
            row["contact_id"],
        )
        return True
    campaign = await campaigns.get(conn, row["campaign_id"])
    now = await conn.fetchval("SELECT now()")
    step = next_step(
        campaign.spec.retry, campaign.rules, outcome, contact["attempts"], now, contact["timezone"]
    )
    await conn.execute(
        """UPDATE contacts SET state = $2, next_attempt_at = $3, last_outcome = $4,
               updated_at = now()
           WHERE id = $1 AND state = 'dialing'""",
        row["contact_id"],
        step.state,
        step.next_attempt_at,
        outcome,
    )
    if do_not_call:
        await conn.execute(
            """INSERT INTO dnc (phone_e164, reason) VALUES ($1, $2)
               ON CONFLICT (phone_e164) DO NOTHING""",
            row["phone_e164"],
            f"provider refused: {error}"[:500],
        )
    log.info(
        "attempt settled",
        extra={
            "attempt": attempt_id,
            "outcome": outcome,
            "contact_next": step.state,
            "next_attempt_at": step.next_attempt_at.isoformat() if step.next_attempt_at else None,
        },
    )
    return True


async def apply_event(
    conn: asyncpg.Connection,
    campaigns: CampaignCache,
    account: str,
    attempt_id: int | None,
    event: CallEvent,
) -> bool:
    """Store a provider event (once) and move its attempt forward. True if the event was new.

    The raw event is stored before anything else, so it is kept even if it changes nothing.
    """
    async with conn.transaction():
        if attempt_id is not None:
            known = await conn.fetchval(
                "SELECT id FROM attempts WHERE id = $1 AND account = $2", attempt_id, account
            )
            attempt_id = known
        if attempt_id is None and event.provider_call_id:
            attempt_id = await conn.fetchval(
                "SELECT id FROM attempts WHERE account = $1 AND provider_call_id = $2",
                account,
                event.provider_call_id,
            )
        stored = await conn.fetchval(
            """INSERT INTO call_events (attempt_id, account, provider_call_id, status, sequence,
                                        dedupe_key, payload)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (account, dedupe_key) DO NOTHING RETURNING id""",
            attempt_id,
            account,
            event.provider_call_id,
            event.status,
            event.sequence,
            event.dedupe_key,
            json.loads(json.dumps(dict(event.payload), default=str)),
        )
        if stored is None or attempt_id is None:
            return stored is not None
        if is_terminal(event.status):
            await settle(
                conn,
                campaigns,
                attempt_id,
                event.status,
                duration_s=event.duration_s,
                ended_at=event.occurred_at,
            )
            if event.provider_call_id:
                await conn.execute(
                    """UPDATE attempts SET provider_call_id = coalesce(provider_call_id, $2),
                           answered_by = coalesce(answered_by, $3)
                       WHERE id = $1""",
                    attempt_id,
                    event.provider_call_id,
                    event.answered_by,
                )
            return True
        lower = [state for state in LIVE if RANK[state] < RANK[event.status]]
        await conn.execute(
            """UPDATE attempts
               SET state = $2, provider_call_id = coalesce(provider_call_id, $3),
                   accepted_at = coalesce(accepted_at, now()),
                   answered_at = CASE WHEN $2 = 'in-progress'
                                      THEN coalesce(answered_at, $4, now()) ELSE answered_at END,
                   answered_by = coalesce(answered_by, $5), updated_at = now()
               WHERE id = $1 AND state = ANY($6::text[])""",
            attempt_id,
            event.status,
            event.provider_call_id,
            event.occurred_at,
            event.answered_by,
            lower,
        )
        return True
