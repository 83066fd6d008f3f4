"""The dnc table: the do-not-call list (suppressing the contacts it names: db.contacts)."""

from __future__ import annotations

import asyncpg


async def add(conn: asyncpg.Connection, numbers: list[str], reason: str | None) -> int:
    """List these numbers (those already listed keep their reason); how many were new."""
    rows = await conn.fetch(
        """INSERT INTO dnc (phone_e164, reason) SELECT n, $2 FROM unnest($1::text[]) AS n
           ON CONFLICT (phone_e164) DO NOTHING RETURNING phone_e164""",
        numbers,
        reason,
    )
    return len(rows)


async def remove(conn: asyncpg.Connection, numbers: list[str]) -> int:
    status = await conn.execute("DELETE FROM dnc WHERE phone_e164 = ANY($1::text[])", numbers)
    return int(status.split()[-1])


async def listing(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT phone_e164, reason, added_at FROM dnc ORDER BY phone_e164")


async def is_listed(conn: asyncpg.Connection, phone_e164: str) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM dnc WHERE phone_e164 = $1)", phone_e164
    )
