"""Erasures and loads take turns (dialer.db.erasure.ERASURE_LOCK_KEY): a number erased while a
load is writing it is never left in contacts, dialable."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from dialer.db import erasure, stalled
from dialer.db.connect import connect
from dialer.db.consent import privacy_key
from dialer.db.outage import CONNECTION_LOST
from dialer.erasure import phone_key
from dialer.forget import forget
from tests.db.lock_cuts import until_waiting_on_a_lock
from tests.db.stalling import load_stopped_mid_copy, wide_load

NUMBER = "+919800000007"


async def test_a_number_erased_while_a_load_writes_it_is_erased_once_the_load_commits(
    own_database_url: str,
) -> None:
    """The load read the erased numbers before the request came, and writes the number after
    it: the erasure waits for the load, then suppresses and erases what it wrote. (Before, the
    erasure missed the uncommitted contact and dropped the number's plain do-not-call row:
    the contact was left pending, with its number, for the next run to dial.)"""
    loading_conn, forgetting, watcher = [await connect(own_database_url) for _ in range(3)]
    try:
        await watcher.execute(
            """INSERT INTO accounts (name, kind, rate_per_s, channels)
               VALUES ('erase', 'sim', 10, 5)"""
        )
        campaign = await watcher.fetchval(
            "INSERT INTO campaigns (name, account, spec) VALUES ('erase', 'erase', '{}')"
            " RETURNING id"
        )
        loading = loading_conn.transaction()
        await loading.start()
        await erasure.keep_erasures_out(loading_conn)  # as the loader does, at its start
        assert not (await erasure.erased_numbers(loading_conn)).keys
        await loading_conn.execute(
            "INSERT INTO contacts (campaign_id, row_no, phone_e164) VALUES ($1, 1, $2)",
            campaign,
            NUMBER,
        )
        erasing = asyncio.ensure_future(forget(forgetting, [NUMBER], "test", wait_s=0))
        await until_waiting_on_a_lock(watcher, forgetting, erasing, "the erasure to wait")
        await loading.commit()
        report = await erasing
        assert [f.erased for f in report.numbers] == [True]
        left = await watcher.fetchrow("SELECT phone_e164, state FROM contacts")
        assert (left["phone_e164"], left["state"]) == (None, "suppressed")
    finally:
        for conn in (loading_conn, forgetting, watcher):
            await conn.close()


async def test_a_load_started_during_an_erasure_reads_the_number_as_erased(
    own_database_url: str,
) -> None:
    """An erasure holds the number (uncommitted) when a load starts: the load waits for it,
    then reads the number among the erased ones and loads it suppressed."""
    erasing_conn, loading_conn, watcher = [await connect(own_database_url) for _ in range(3)]
    try:
        holding = erasing_conn.transaction()
        await holding.start()
        key = phone_key(await privacy_key(erasing_conn), NUMBER)
        await erasure.hold(erasing_conn, [NUMBER], [key], "test")

        async def load_reads() -> frozenset[str]:
            async with loading_conn.transaction():
                await erasure.keep_erasures_out(loading_conn)
                return (await erasure.erased_numbers(loading_conn)).keys

        reading = asyncio.ensure_future(load_reads())
        await until_waiting_on_a_lock(watcher, loading_conn, reading, "the load to wait")
        await holding.commit()
        assert key in await reading
    finally:
        for conn in (erasing_conn, loading_conn, watcher):
            await conn.close()


async def test_an_erasure_ends_a_load_stopped_part_way_through_a_copy(
    own_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load whose bytes stop while PostgreSQL reads one of its COPYs (its process stopped,
    its network cut: here a proxy stops passing them) sits in a statement waiting for its
    client, which PostgreSQL never times out, holding the erasure lock. An erasure waiting for
    it ends it once it has waited past STALLED_LOAD_S (1 s here): the load rolls back whole,
    and the number is erased. (Rows of 2,000 characters make a segment's COPY outgrow the
    socket buffers, so PostgreSQL is left mid-COPY.)"""
    campaign = wide_load(tmp_path, monkeypatch, "c-stopped-copy", "97")
    forgetting, watcher = await connect(own_database_url), await connect(own_database_url)
    try:
        async with load_stopped_mid_copy(own_database_url, campaign) as load:
            report = await asyncio.wait_for(forget(forgetting, [NUMBER], "test", wait_s=0), 120)
            assert [f.erased for f in report.numbers] == [True]
            with pytest.raises(CONNECTION_LOST):
                await asyncio.wait_for(load, 60)
        assert await watcher.fetchval("SELECT count(*) FROM contacts") == 0
    finally:
        for conn in (forgetting, watcher):
            await conn.close()


async def test_an_erasure_with_a_lock_timeout_of_its_own_still_gives_up_after_it(
    own_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's sessions wait for a lock 5 s at most (then 503 and Retry-After): an erasure
    there still gives up after its own lock_timeout while a load that is not stalled holds
    the lock, ends no load, and leaves its session's setting as it was."""
    monkeypatch.setattr(stalled, "LOCK_WAIT_STEP_MS", 100)
    loading_conn, erasing = await connect(own_database_url), await connect(own_database_url)
    try:
        loading = loading_conn.transaction()
        await loading.start()
        await erasure.keep_erasures_out(loading_conn)
        await erasing.execute("SET lock_timeout = '300ms'")
        with pytest.raises(asyncpg.LockNotAvailableError):
            async with erasing.transaction():
                await erasure.take_erasure_lock(erasing)
        assert await erasing.fetchval("SHOW lock_timeout") == "300ms"
        assert await loading_conn.fetchval("SELECT 1") == 1  # the load's session goes on
        await loading.commit()
        async with erasing.transaction():
            await erasure.take_erasure_lock(erasing)
            assert await erasing.fetchval("SHOW lock_timeout") == "300ms"
    finally:
        for conn in (loading_conn, erasing):
            await conn.close()
