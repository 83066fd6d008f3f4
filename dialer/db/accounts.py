"""The accounts table: each provider account's shared limiter row, loaded and stored whole.

The arithmetic lives in dispatch.limiter; this module only reads the row under a lock (so every
process on every machine changes it in turn) and writes back what the limiter decided.
"""

from __future__ import annotations

import asyncpg

from dialer.dispatch.limiter import AccountLimits, LimiterState

_STATE = """SELECT rate_per_s, rate_factor, channels, tat, last_429_at, throttle_streak,
                   now() AS now
            FROM accounts WHERE name = $1"""


async def register(conn: asyncpg.Connection, limits: AccountLimits) -> None:
    """Create or refresh the account's row from configuration: its figure, the rate aimed at
    and its channels."""
    await conn.execute(
        """INSERT INTO accounts (name, kind, rate_per_s, channels, configured_rate_per_s)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (name) DO UPDATE SET kind = $2, rate_per_s = $3, channels = $4,
               configured_rate_per_s = $5, updated_at = now()""",
        limits.name,
        limits.kind,
        limits.aimed_rate_per_s,
        limits.channels,
        limits.rate_per_s,
    )


async def lock_state(
    conn: asyncpg.Connection, account: str, *, skip_locked: bool = False
) -> LimiterState | None:
    """The account's limiter row, locked until the transaction ends; with `skip_locked`, None
    when another process holds it (come back later). None too for an unregistered account."""
    row = await conn.fetchrow(
        _STATE + (" FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"), account
    )
    if row is None:
        return None
    return LimiterState(
        aimed_rate_per_s=row["rate_per_s"],
        rate_factor=row["rate_factor"],
        channels=row["channels"],
        tat=row["tat"],
        last_429_at=row["last_429_at"],
        throttle_streak=row["throttle_streak"],
        now=row["now"],
    )


async def store_state(conn: asyncpg.Connection, account: str, state: LimiterState) -> None:
    """Write back the limiter's decision (call under the lock of lock_state)."""
    await conn.execute(
        """UPDATE accounts SET tat = $2, rate_factor = $3, throttle_streak = $4,
               last_429_at = $5, updated_at = now()
           WHERE name = $1""",
        account,
        state.tat,
        state.rate_factor,
        state.throttle_streak,
        state.last_429_at,
    )


async def paced_rates(conn: asyncpg.Connection) -> dict[str, float]:
    """Each account's paced rate now (requests per second)."""
    return dict(await conn.fetch("SELECT name, paced_rate_per_s FROM accounts"))
