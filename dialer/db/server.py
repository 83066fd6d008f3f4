"""The database server itself: its clock (every time the dialer decides by) and a health ping."""

from __future__ import annotations

from datetime import datetime

from dialer.db.types import Connection


async def now(conn: Connection) -> datetime:
    return await conn.fetchval("SELECT now()")


async def ping(conn: Connection) -> None:
    await conn.fetchval("SELECT 1")
