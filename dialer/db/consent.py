"""The consent ledger's table: appending to the chain (one writer at a time, under an advisory
lock), reading it back in order, and what a revocation withdraws."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from dialer.consent import GENESIS, ConsentEvent, row_hash
from dialer.db.standing import begin_change
from dialer.db.types import Connection
from dialer.erasure import phone_key

LEDGER_LOCK_KEY = 0x636F6E73656E74  # "consent": appends to the chain take turns


async def privacy_key(conn: Connection) -> str:
    return await conn.fetchval("SELECT privacy_key FROM dialer_install")


@dataclass
class ChainAppend:
    """Appends to the chain in the caller's transaction, a batch at a time (an import of a
    million events never holds them all): each batch links to the one before it. Made by
    `begin_append`, which takes the ledger's turn for the rest of the transaction."""

    conn: Connection
    privacy_key: str
    previous: str
    recorded_at: datetime | None  # the standing change's stamp, when revocations are among them

    async def add(self, events: Sequence[ConsentEvent]) -> list[int]:
        """Append `events` after every event added before, in order; their ids."""
        # every id in one round trip, in the order they were given: the chain's order
        ids = [
            r["id"]
            for r in await self.conn.fetch(
                "SELECT nextval('consent_events_id_seq') AS id FROM generate_series(1, $1)"
                " ORDER BY 1",
                len(events),
            )
        ]
        rows = []
        previous = self.previous
        for row_id, event in zip(ids, events, strict=True):
            hashed = (  # the fields row_hash covers, in its order and the table's
                phone_key(self.privacy_key, event.phone_e164),
                event.scope,
                event.action,
                event.source,
                event.evidence_sha256,
                event.occurred_at,
            )
            digest = row_hash(row_id, *hashed, previous)
            rows.append((row_id, event.phone_e164, *hashed, previous, digest, self.recorded_at))
            previous = digest
        await self.conn.executemany(
            """INSERT INTO consent_events (id, phone_e164, phone_key, scope, action, source,
                                           evidence_sha256, occurred_at, prev_hash, row_hash,
                                           recorded_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, coalesce($11, now()))""",
            rows,
        )
        self.previous = previous
        return ids


async def begin_append(conn: Connection, *, revoking: bool) -> ChainAppend:
    """Take the ledger's turn (appends to the chain take turns) for the caller's transaction.
    `revoking`: revocations will be among the events, so no send commits from their
    `recorded_at` until the caller's transaction ends (db.standing): a call is committed
    before it, or sees it."""
    recorded_at = await begin_change(conn) if revoking else None
    await conn.execute("SELECT pg_advisory_xact_lock($1)", LEDGER_LOCK_KEY)
    key = await privacy_key(conn)
    previous = (
        await conn.fetchval("SELECT row_hash FROM consent_events ORDER BY id DESC LIMIT 1")
        or GENESIS
    )
    return ChainAppend(conn, key, previous, recorded_at)


async def append(conn: Connection, events: Sequence[ConsentEvent]) -> list[int]:
    """Append `events` to the chain, in order, in the caller's transaction; their ids."""
    revoking = any(event.action == "revoke" for event in events)
    return await (await begin_append(conn, revoking=revoking)).add(events)


async def chain(conn: Connection) -> AsyncIterator[asyncpg.Record]:
    """Every row of the ledger in id order, streamed (in a transaction of its own)."""
    async with conn.transaction(readonly=True):
        async for row in conn.cursor(
            """SELECT id, phone_key, scope, action, source, evidence_sha256, occurred_at,
                      prev_hash, row_hash
               FROM consent_events ORDER BY id""",
            prefetch=5000,
        ):
            yield row


# A number's standing in a scope: its latest event there is a grant. Used by db.due and by the
# send's compare-and-set, so a revocation stops every process before its next claim or send.
LIVE_GRANT = """EXISTS (
    SELECT 1 FROM consent_events e
    WHERE e.id = (SELECT max(x.id) FROM consent_events x
                  WHERE x.phone_e164 = {phone} AND x.scope = {scope})
      AND e.action = 'grant')"""


async def withdraw_reservations(conn: Connection, phones: list[str], scope: str) -> list[int]:
    """The reservations not yet sent, of these numbers, in campaigns that require consent in
    `scope`: their ids (the caller releases them; a call already sent goes on)."""
    rows = await conn.fetch(
        """SELECT a.id FROM attempts a JOIN campaigns k ON k.id = a.campaign_id
           WHERE a.phone_e164 = ANY($1::text[]) AND a.state = 'reserved'
             AND k.spec ->> 'requires_consent' = $2""",
        phones,
        scope,
    )
    return [r["id"] for r in rows]


async def standing(conn: Connection, phone: str) -> list[asyncpg.Record]:
    """The number's latest event per scope (for `dialer explain`)."""
    return await conn.fetch(
        """SELECT DISTINCT ON (scope) scope, action, source, occurred_at, id
           FROM consent_events WHERE phone_e164 = $1 ORDER BY scope, id DESC""",
        phone,
    )
