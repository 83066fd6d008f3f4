"""Ending a process's connection while it waits on a lock a test holds: a connection cut at
the worst moment (a failover, a pooler's restart), on a real server, waited for by events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from tests.processes import until


async def dialer_backends_waiting_on_a_lock(watch: asyncpg.Connection, database: str) -> list[int]:
    """The pids of the dialer connections to `database` waiting on a lock. `watch` must not
    be inside a transaction (whose view of pg_stat_activity is one snapshot)."""
    rows = await watch.fetch(
        """SELECT pid FROM pg_stat_activity WHERE datname = $1
           AND application_name = 'dialer' AND wait_event_type = 'Lock'""",
        database,
    )
    return [r["pid"] for r in rows]


async def cut_one_and_see_it_wait_again(
    watch: asyncpg.Connection, database: str, still_going: Callable[[], None]
) -> None:
    """Wait until a dialer connection waits on the lock, end it, and wait until one waits
    again: the process tried again. `still_going` asserts the process is alive meanwhile."""
    while not (pids := await dialer_backends_waiting_on_a_lock(watch, database)):
        still_going()
        await asyncio.sleep(0.05)
    cut = pids[0]
    await watch.fetchval("SELECT pg_terminate_backend($1)", cut)
    while not (pids := await dialer_backends_waiting_on_a_lock(watch, database)) or pids == [cut]:
        still_going()
        await asyncio.sleep(0.05)


async def until_waiting_on_a_lock(
    watch: asyncpg.Connection, session: asyncpg.Connection, work: asyncio.Future, what: str
) -> None:
    """Until `session` waits on a lock, or `work` (what runs on it) has ended without
    waiting: the test then finds out from its result. `watch` is outside any transaction."""
    pid = session.get_server_pid()

    async def waiting_or_done() -> bool:
        if work.done():
            return True
        return await watch.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        )

    await until(waiting_or_done, what)
