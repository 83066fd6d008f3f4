"""The reconcilers' turn (migration 0038): one reconciler round at a time across every process."""

from __future__ import annotations

from datetime import timedelta

from dialer.db.types import Connection


async def take(conn: Connection, within: timedelta) -> bool:
    """Take the turn if no process took it within `within` (True); else leave it (False)."""
    taken = await conn.fetchval(
        """UPDATE reconciler_turns SET taken_at = now()
           WHERE name = 'rounds' AND taken_at <= now() - $1::interval
           RETURNING true""",
        within,
    )
    return taken is True
