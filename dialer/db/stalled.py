"""Waiting for a lock a contacts load may hold, and ending a load stopped part way through
one of its COPYs, which would otherwise hold it until someone resumes or kills it.

A load's segment is one COPY of a few MB that takes well under a second. PostgreSQL never
times out a statement waiting for its client: not with statement_timeout (a cancel is not
handled during a client read outside a command wait) nor with the idle-in-transaction limit
(the session is inside a statement). So a load whose process stopped (Ctrl-Z, SIGSTOP, a
suspended machine) or whose network was cut mid-COPY holds its transaction's locks (its
campaign's row, the erasure lock shared) for good. Whoever waits for those locks here ends
such a load, logged, and the load rolls back whole.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from dialer.db.types import Connection

STALLED_LOAD_S = 60.0  # in one segment's COPY, waiting for its client: stopped part way
LOCK_WAIT_STEP_MS = 5000  # how long a waiter waits for the lock before it looks again

log = logging.getLogger("dialer.db")


async def fetchrow_past_stalled_loads(
    conn: Connection, query: str, *args: Any
) -> asyncpg.Record | None:
    """`query`'s row, the query being one that waits for a lock a load may hold, run in the
    caller's transaction in steps (a savepoint each, so a wait that times out is undone
    alone); between steps, loads stalled part way through a COPY are ended. A session with a
    lock_timeout of its own (the API's, the long-running processes') still gives up after
    it, with LockNotAvailableError, its setting left as it was."""
    if not conn.is_in_transaction():  # the lock would end with the savepoint's transaction
        raise RuntimeError("fetchrow_past_stalled_loads is for a transaction held open")
    own_ms = await conn.fetchval(
        "SELECT extract(epoch FROM current_setting('lock_timeout')::interval) * 1000"
    )
    budget_s = float(own_ms) / 1000 if own_ms else None
    step_ms = min(int(own_ms), LOCK_WAIT_STEP_MS) if own_ms else LOCK_WAIT_STEP_MS
    waited_s = 0.0
    while True:
        try:
            async with conn.transaction():
                await conn.execute("SELECT set_config('lock_timeout', $1, true)", str(step_ms))
                row = await conn.fetchrow(query, *args)
                await conn.execute(
                    "SELECT set_config('lock_timeout', $1, true)", str(int(own_ms or 0))
                )
            return row
        except asyncpg.LockNotAvailableError:
            waited_s += step_ms / 1000
            await end_stalled_loads(conn, STALLED_LOAD_S)
            if budget_s is not None and waited_s >= budget_s:
                raise


async def end_stalled_loads(conn: Connection, stalled_s: float) -> None:
    """End the sessions of loads (this role's, in this database) that have sat in one
    segment's COPY waiting for their client for over `stalled_s`: each is logged, and rolls
    back whole. Their process, if it wakes, ends with the lost connection."""
    rows = await conn.fetch(
        """SELECT pid, client_addr::text AS client,
                  round(extract(epoch FROM clock_timestamp() - query_start)) AS seconds,
                  pg_terminate_backend(pid) AS ended
           FROM pg_stat_activity
           WHERE datname = current_database() AND usename = current_user
             AND pid <> pg_backend_pid() AND state = 'active' AND wait_event = 'ClientRead'
             AND (query LIKE 'COPY "contacts"%' OR query LIKE 'COPY "load_stage"%')
             AND query_start < clock_timestamp() - make_interval(secs => $1)""",
        stalled_s,
    )
    for row in (row for row in rows if row["ended"]):  # (not: gone meanwhile)
        log.warning(
            "ended a contacts load stalled for %s s in one COPY, waiting for its client"
            " (PostgreSQL pid %s, client %s): it rolled back whole, freeing what it held",
            row["seconds"],
            row["pid"],
            row["client"] or "local socket",
        )
