"""The accounts table: each provider account's shared limiter row, loaded and stored whole.

The arithmetic lives in dispatch.limiter; this module only reads the row under a lock (so every
process on every machine changes it in turn) and writes back what the limiter decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from dialer.db.standing import SENDS_MAY_COMMIT_SQL
from dialer.db.types import Connection
from dialer.dispatch.limiter import AccountLimits, LimiterState


def sendable_sql(alias: str) -> str:
    """The one SQL test that an account may send now: no operator's pause, no rest after its
    API failed (dispatch.account_health)."""
    return (
        f"({alias}.paused_reason IS NULL"
        f" AND ({alias}.down_until IS NULL OR {alias}.down_until <= now()))"
    )


_STATE_COLUMNS = f"""rate_per_s, rate_factor, channels, tat, last_429_at, throttle_streak,
                    now() AS now, {sendable_sql("accounts")} AS sendable, next_slot"""
_STATE = f"SELECT {_STATE_COLUMNS} FROM accounts WHERE name = $1"
_STATE_TO_SEND = f"""SELECT {_STATE_COLUMNS}, {SENDS_MAY_COMMIT_SQL} AS may_commit
                     FROM accounts WHERE name = $1 FOR UPDATE"""


@dataclass(frozen=True)
class AccountGlance:
    """An account's limiter row and its channels' use, read without a lock: what a claim
    expects to be able to give before it picks contacts (dispatch.claim)."""

    state: LimiterState
    live: int  # live attempts, each holding a channel
    waiting: int  # of them, reserved and not yet sent


_GLANCE = f"""SELECT {_STATE_COLUMNS}, use.live, use.waiting
              FROM accounts,
                   LATERAL (SELECT count(*) AS live,
                                   count(*) FILTER (WHERE a.state = 'reserved') AS waiting
                            FROM attempts a
                            WHERE a.account = $1 AND a.live) use
              WHERE name = $1"""


async def register(conn: Connection, limits: AccountLimits) -> None:
    """Create or refresh the account's row from configuration: its figure, the rate aimed at
    and its channels."""
    await conn.execute(
        """INSERT INTO accounts (name, kind, rate_per_s, channels, configured_rate_per_s,
                                late_placement_s)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (name) DO UPDATE SET kind = $2, rate_per_s = $3, channels = $4,
               configured_rate_per_s = $5, late_placement_s = $6, updated_at = now()""",
        limits.name,
        limits.kind,
        limits.aimed_rate_per_s,
        limits.channels,
        limits.rate_per_s,
        limits.late_placement_s,
    )


async def lock_state(
    conn: Connection, account: str, *, skip_locked: bool = False
) -> LimiterState | None:
    """The account's limiter row, locked until the transaction ends; with `skip_locked`, None
    when another process holds it (come back later). None too for an unregistered account."""
    row = await conn.fetchrow(
        _STATE + (" FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"), account
    )
    return None if row is None else _state_of(row)


@dataclass(frozen=True)
class SendingState:
    """The account's limiter row, locked to commit sends, and whether sends may commit now:
    false while a change of who may be called is being written (db.standing)."""

    limits: LimiterState
    may_commit: bool


async def lock_state_to_send(conn: Connection, account: str) -> SendingState | None:
    """lock_state, for a transaction that commits sends next: it also takes db.standing's lock
    shared when it is free, so that the next statement's snapshot sees every change of
    standing stamped before it; None for an unregistered account."""
    row = await conn.fetchrow(_STATE_TO_SEND, account)
    return None if row is None else SendingState(_state_of(row), row["may_commit"])


async def glance(conn: Connection, account: str) -> AccountGlance | None:
    """The account's limiter row and how many of its attempts are live and waiting, as
    committed now, with no lock taken; None for an unregistered account."""
    row = await conn.fetchrow(_GLANCE, account)
    if row is None:
        return None
    return AccountGlance(_state_of(row), row["live"], row["waiting"])


def _state_of(row: asyncpg.Record) -> LimiterState:
    return LimiterState(
        aimed_rate_per_s=row["rate_per_s"],
        rate_factor=row["rate_factor"],
        channels=row["channels"],
        tat=row["tat"],
        last_429_at=row["last_429_at"],
        throttle_streak=row["throttle_streak"],
        now=row["now"],
        sendable=row["sendable"],
        next_slot=row["next_slot"],
    )


async def store_state(conn: Connection, account: str, state: LimiterState) -> None:
    """Write back the limiter's decision (call under the lock of lock_state)."""
    await conn.execute(
        """UPDATE accounts SET tat = $2, rate_factor = $3, throttle_streak = $4,
               last_429_at = $5, next_slot = $6, updated_at = now()
           WHERE name = $1""",
        account,
        state.tat,
        state.rate_factor,
        state.throttle_streak,
        state.last_429_at,
        state.next_slot,
    )


async def paced_rates(conn: Connection) -> dict[str, float]:
    """Each account's paced rate now (requests per second)."""
    rows = await conn.fetch("SELECT name, paced_rate_per_s FROM accounts")
    return {row["name"]: row["paced_rate_per_s"] for row in rows}


async def note_hold(conn: Connection, account: str, until: datetime, asked_s: float | None) -> None:
    """A 429 holds the account until `until` (what the provider asked: `asked_s`)."""
    await conn.execute(
        """UPDATE accounts SET held_until = greatest($2, held_until), held_asked_s = $3
           WHERE name = $1""",
        account,
        until,
        asked_s,
    )


async def hold(conn: Connection, account: str) -> asyncpg.Record | None:
    """The account's hold by a provider's 429, if it lasts now: (held_until, held_asked_s,
    seconds left)."""
    return await conn.fetchrow(
        """SELECT held_until, held_asked_s,
                  extract(epoch FROM held_until - now())::float8 AS left_s
           FROM accounts WHERE name = $1 AND held_until > now()""",
        account,
    )


async def rest(conn: Connection, account: str, seconds: float, reason: str) -> None:
    """The account's API failed: no new sends for `seconds` (every process), with the reason;
    its streak of rests grows (dispatch.account_health.rest_s reads it)."""
    await conn.execute(
        """UPDATE accounts SET down_until = greatest(down_until, now() + make_interval(
                   secs => $2::float8)),
               down_reason = $3, down_streak = down_streak + 1, last_error = $3,
               last_error_at = now()
           WHERE name = $1""",
        account,
        seconds,
        reason,
    )


async def down_streak(conn: Connection, account: str) -> int:
    """How many rests in a row the account has had (0 once it worked again)."""
    return await conn.fetchval("SELECT down_streak FROM accounts WHERE name = $1", account) or 0


async def recovered(conn: Connection, account: str) -> bool:
    """The account's API worked again: its rest and streak end. Whether it was resting."""
    result = await conn.execute(
        """UPDATE accounts SET down_until = NULL, down_reason = NULL, down_streak = 0
           WHERE name = $1 AND (down_streak > 0 OR down_until IS NOT NULL)""",
        account,
    )
    return result != "UPDATE 0"


async def pause(conn: Connection, account: str, reason: str) -> bool:
    """An operator pauses the account: no new sends until resumed. False if unknown."""
    result = await conn.execute(
        "UPDATE accounts SET paused_reason = $2, paused_at = now() WHERE name = $1",
        account,
        reason,
    )
    return result != "UPDATE 0"


async def resume(conn: Connection, account: str) -> bool:
    """An operator resumes the account, ending its pause and any rest. False if unknown."""
    result = await conn.execute(
        """UPDATE accounts SET paused_reason = NULL, paused_at = NULL, down_until = NULL,
               down_reason = NULL, down_streak = 0
           WHERE name = $1""",
        account,
    )
    return result != "UPDATE 0"


_STATUS = """
SELECT x.name, x.kind, x.configured_rate_per_s AS rate_per_s, x.paced_rate_per_s,
       x.channels,
       (SELECT count(*) FROM attempts a WHERE a.account = x.name AND a.live) AS live_calls,
       x.paused_reason, x.paused_at,
       CASE WHEN x.down_until > now() THEN x.down_until END AS resting_until,
       CASE WHEN x.down_until > now() THEN x.down_reason END AS resting_reason,
       x.down_streak, x.last_error, x.last_error_at,
       CASE WHEN x.held_until > now() THEN x.held_until END AS held_until,
       CASE WHEN x.paused_reason IS NOT NULL THEN 'paused'
            WHEN x.down_until > now() THEN 'resting'
            WHEN x.held_until > now() THEN 'held'
            ELSE 'sending' END AS health
FROM accounts x
WHERE $1::text[] IS NULL OR x.name = ANY($1::text[])
ORDER BY x.name
"""


async def statuses(conn: Connection, names: list[str] | None) -> list[asyncpg.Record]:
    """Each account's kind, limits, live calls and health (all, or those in `names`)."""
    return await conn.fetch(_STATUS, names)
