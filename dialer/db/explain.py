"""Read-only queries behind `dialer explain`: one number's contacts, calls, list entries."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from dialer.db.types import Connection


async def contacts_of(conn: Connection, phone: str, campaign: str | None) -> list[asyncpg.Record]:
    """The number's contacts (in the named campaign, else in every one), with their campaign."""
    return await conn.fetch(
        """SELECT c.id, c.state, c.attempts, c.next_attempt_at, c.timezone, c.jurisdiction,
                  c.last_outcome, k.id AS campaign_id, k.name AS campaign, k.account, k.status,
                  k.status_reason, k.spec, k.created_at
           FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
           WHERE c.phone_e164 = $1 AND ($2::text IS NULL OR k.name = $2)
           ORDER BY k.id""",
        phone,
        campaign,
    )


async def calls_of(conn: Connection, phone: str, before: datetime) -> list[asyncpg.Record]:
    """Every attempt to the number that reached the dialing stage before `before`, oldest
    first, with its subject and the rules its claim checked."""
    return await conn.fetch(
        """SELECT a.id, a.requested_at, a.ended_at, a.state, a.outcome, a.subject,
                  a.rules_checked, k.name AS campaign
           FROM attempts a JOIN campaigns k ON k.id = a.campaign_id
           WHERE a.phone_e164 = $1 AND a.requested_at IS NOT NULL AND a.requested_at < $2
             AND a.state <> 'not_dialed'
           ORDER BY a.requested_at""",
        phone,
        before,
    )


async def listing(conn: Connection, phone: str) -> asyncpg.Record | None:
    """The number's do-not-call entry, if it has one."""
    return await conn.fetchrow(
        """SELECT d.reason, d.added_at, d.registry, d.registered_on, c.as_of
           FROM dnc d LEFT JOIN dnc_registry_copies c ON c.id = d.copy_id
           WHERE d.phone_e164 = $1""",
        phone,
    )
