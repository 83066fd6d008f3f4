"""Erasures and loads take turns (dialer.db.erasure.ERASURE_LOCK_KEY): a number erased while a
load is writing it is never left in contacts, dialable."""

from __future__ import annotations

import asyncio

from dialer.db import erasure
from dialer.db.connect import connect
from dialer.db.consent import privacy_key
from dialer.erasure import phone_key
from dialer.forget import forget
from tests.db.lock_cuts import until_waiting_on_a_lock

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
