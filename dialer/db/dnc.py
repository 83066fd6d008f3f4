"""The dnc table: the do-not-call list (suppressing the contacts it names: db.contacts)."""

from __future__ import annotations

from datetime import date, datetime

from dialer.db.types import Connection, Stream, stream


async def add(
    conn: Connection, numbers: list[str], reason: str | None, added_at: datetime | None = None
) -> int:
    """List these numbers as of `added_at` (db.standing's stamp; by default the transaction's
    start), those already listed keeping their reason and time; how many were new."""
    rows = await conn.fetch(
        """INSERT INTO dnc (phone_e164, reason, added_at)
           SELECT n, $2, coalesce($3, now()) FROM unnest($1::text[]) AS n
           ON CONFLICT (phone_e164) DO NOTHING RETURNING phone_e164""",
        numbers,
        reason,
        added_at,
    )
    return len(rows)


async def add_from_registry(
    conn: Connection,
    numbers: list[str],
    registered_on: list[date | None],
    reason: str | None,
    registry: str,
    copy_id: int,
    added_at: datetime,
) -> int:
    """List numbers from a registry's copy as of `added_at`; how many were new. A number
    already listed keeps its reason and first registry, and learns its registration day if it
    had none; one already from this registry is marked as seen in this copy."""
    rows = await conn.fetch(
        """INSERT INTO dnc AS d (phone_e164, reason, registry, registered_on, copy_id, added_at)
           SELECT n, $3, $4, r, $5, $6 FROM unnest($1::text[], $2::date[]) AS u (n, r)
           ON CONFLICT (phone_e164) DO UPDATE SET
               registry = coalesce(d.registry, excluded.registry),
               registered_on = CASE WHEN coalesce(d.registry, excluded.registry) = excluded.registry
                                    THEN coalesce(d.registered_on, excluded.registered_on)
                                    ELSE d.registered_on END,
               copy_id = CASE WHEN coalesce(d.registry, excluded.registry) = excluded.registry
                              THEN excluded.copy_id ELSE d.copy_id END
           RETURNING (xmax = 0) AS inserted""",
        numbers,
        registered_on,
        reason,
        registry,
        copy_id,
        added_at,
    )
    return sum(1 for r in rows if r["inserted"])


async def remove(conn: Connection, numbers: list[str]) -> int:
    status = await conn.execute("DELETE FROM dnc WHERE phone_e164 = ANY($1::text[])", numbers)
    return int(status.split()[-1])


async def listing(conn: Connection) -> Stream:
    """The list in number order, streamed (read it in the caller's transaction)."""
    return await stream(
        conn,
        "SELECT phone_e164, coalesce(reason, '') AS reason, added_at FROM dnc ORDER BY phone_e164",
    )


async def listed_count(conn: Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM dnc")


async def is_listed(conn: Connection, phone_e164: str) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM dnc WHERE phone_e164 = $1)", phone_e164
    )
