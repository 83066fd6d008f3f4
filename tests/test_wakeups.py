"""Loops woken by PostgreSQL's notices (dialer.wakeups): claim loops as channels free (every
statement that closes an attempt says so), deliverers as deliveries are written; heard on a
connection of its own, and heard again after that connection is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from dialer.calls import CallEvent
from dialer.campaigns import CampaignCache
from dialer.db.attempts import CHANNEL_FREED
from dialer.dispatch.claim import register_account
from dialer.dispatch.limiter import AccountLimits
from dialer.settle import Settlement, apply_finals, settle
from dialer.wakeups import Wakeups, listen
from tests.callbacks.test_callbacks import new_attempt

HEARD_WITHIN_S = 30.0  # a bound for a busy machine; a notice comes in milliseconds


async def listening_backend(conn: asyncpg.Connection, other_than: int | None = None) -> int:
    """The backend of this database whose last statement was the LISTEN, done (and not
    `other_than`), once there is one. Of this database: the tests running beside this one have
    listeners of their own."""
    for _ in range(int(HEARD_WITHIN_S / 0.01)):
        pid = await conn.fetchval(
            """SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND state = 'idle'
               AND datname = current_database()
               AND pid <> pg_backend_pid() AND pid IS DISTINCT FROM $1""",
            other_than,
        )
        if pid is not None:
            return pid
        await asyncio.sleep(0.01)
    raise AssertionError("no backend listens")


async def test_a_wait_ends_when_told_and_a_notice_since_the_last_wait_is_kept() -> None:
    wakeups = Wakeups()
    assert await wakeups.wait("a", 0.0) is False  # nothing freed: the timeout ends it
    wakeups.heard("a")  # freed while nobody waited
    assert await wakeups.wait("a", HEARD_WITHIN_S) is True
    waiting = asyncio.create_task(wakeups.wait("a", HEARD_WITHIN_S))
    await asyncio.sleep(0)
    wakeups.heard("b")  # another account's
    wakeups.heard("a")
    assert await waiting is True
    assert await wakeups.wait("b", HEARD_WITHIN_S) is True
    assert await wakeups.wait("a", 0.0) is False  # told once, woken once


async def test_work_told_while_gathering_is_taken_with_the_first() -> None:
    """A wait that gathers: what is told during its gather is seen by the round that follows,
    so it does not end the next wait at once; what is told after the wait ended does."""
    wakeups = Wakeups()
    wakeups.heard("a")
    waiting = asyncio.create_task(wakeups.wait("a", HEARD_WITHIN_S, gather_s=0.2))
    await asyncio.sleep(0.05)  # the wait is gathering now
    wakeups.heard("a")  # a second channel freed in the same moment
    assert await waiting is True
    assert await wakeups.wait("a", 0.0) is False
    wakeups.heard("a")
    assert await wakeups.wait("a", 0.0, gather_s=0.01) is True


async def test_every_closing_statement_wakes_the_loop_of_its_account(
    own_db: asyncpg.Connection, own_database_url: str, tmp_path: Path
) -> None:
    """An attempt closed one by one (settle) and a batch of final words (apply_finals) each
    notify their account at commit; a connection lost is listened on again."""
    await register_account(own_db, AccountLimits("sim-main", "sim", 100.0, 1.0, 10))
    pool = await asyncpg.create_pool(own_database_url, min_size=0, max_size=1)
    wakeups = Wakeups()
    listening = asyncio.create_task(listen(pool, {CHANNEL_FREED: wakeups}, again_s=0.01))
    try:
        await asyncio.wait_for(wakeups.listening.wait(), HEARD_WITHIN_S)
        one, two, three = [await new_attempt(own_db, tmp_path) for _ in range(3)]
        async with own_db.transaction():
            await settle(own_db, CampaignCache(), one, Settlement("busy"))
            assert not await wakeups.wait("sim-main", 0.0)  # not before the commit
        assert await wakeups.wait("sim-main", HEARD_WITHIN_S)

        listener = await listening_backend(own_db)
        await own_db.execute("SELECT pg_terminate_backend($1)", listener)
        await listening_backend(own_db, other_than=listener)  # it listens again, elsewhere

        finals = [
            ("sim-main", two, CallEvent("no-answer", "two", "CALL2")),
            ("sim-main", three, CallEvent("busy", "three", "CALL3")),
        ]
        assert await apply_finals(own_db, CampaignCache(), finals) == ["stored", "stored"]
        assert await wakeups.wait("sim-main", HEARD_WITHIN_S)
        assert not await wakeups.wait("sim-main", 0.0)  # one notice for the batch's account
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await pool.close()
