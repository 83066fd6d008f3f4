"""The database server itself: its clock (every time the dialer decides by) and a health ping."""

from __future__ import annotations

from datetime import datetime

import asyncpg


async def now(conn: asyncpg.Connection) -> datetime:
    return await conn.fetchval("SELECT now()")


async def ping(conn: asyncpg.Connection) -> None:
    await conn.fetchval("SELECT 1")
