"""The api_requests table: answers kept under an `Idempotency-Key`, so that a repeated request
changes nothing and gets the first answer."""

from __future__ import annotations

import asyncpg

from dialer.db.types import Connection


async def claim(conn: Connection, key: str, request: str) -> asyncpg.Record | None:
    """Take `key` for this request in the caller's transaction; None if taken now, else the
    earlier request's row. A concurrent request with the same key waits here until the first
    commits (then sees its row) or rolls back (then takes the key)."""
    taken = await conn.fetchval(
        """INSERT INTO api_requests (key, request, status, answer) VALUES ($1, $2, 0, '{}')
           ON CONFLICT (key) DO NOTHING RETURNING true""",
        key,
        request,
    )
    if taken:
        return None
    return await conn.fetchrow(
        "SELECT request, status, answer::text AS answer FROM api_requests WHERE key = $1", key
    )


async def answer(conn: Connection, key: str, status: int, document: dict) -> None:
    await conn.execute(
        "UPDATE api_requests SET status = $2, answer = $3 WHERE key = $1",
        key,
        status,
        document,
    )
