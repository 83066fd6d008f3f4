"""The dnc_registry_copies table: each imported copy of a do-not-call registry, with its date."""

from __future__ import annotations

from datetime import date

import asyncpg

from dialer.db.types import Connection


async def record_copy(
    conn: Connection, registry: str, as_of: date, source: str, sha256: str, numbers: int
) -> int:
    return await conn.fetchval(
        """INSERT INTO dnc_registry_copies (registry, as_of, source, sha256, numbers)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""",
        registry,
        as_of,
        source,
        sha256,
        numbers,
    )


async def newest(conn: Connection, names: list[str]) -> dict[str, date]:
    """The date of the newest copy of each named registry that was ever imported."""
    rows = await conn.fetch(
        """SELECT registry, max(as_of) AS as_of FROM dnc_registry_copies
           WHERE registry = ANY($1::text[]) GROUP BY registry""",
        names,
    )
    return {r["registry"]: r["as_of"] for r in rows}


async def today(conn: Connection) -> date:
    """The UTC date of the database's clock: the day a registry's age is counted on."""
    return await conn.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")


async def summary(conn: Connection) -> list[asyncpg.Record]:
    """Per registry: its newest copy, how many copies, how many numbers it lists now."""
    return await conn.fetch(
        """SELECT c.registry, max(c.as_of) AS as_of, count(*) AS copies,
                  max(c.imported_at) AS imported_at,
                  (SELECT count(*) FROM dnc d WHERE d.registry = c.registry) AS listed
           FROM dnc_registry_copies c GROUP BY c.registry ORDER BY c.registry"""
    )


async def recent_registrations(
    conn: Connection, registry: str, since: date
) -> list[asyncpg.Record]:
    """How many of the registry's numbers were registered on each day from `since` on."""
    return await conn.fetch(
        """SELECT registered_on, count(*) AS numbers FROM dnc
           WHERE registry = $1 AND registered_on >= $2
           GROUP BY registered_on ORDER BY registered_on""",
        registry,
        since,
    )
