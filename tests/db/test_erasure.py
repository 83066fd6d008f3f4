"""Erasures and loads take turns (dialer.db.erasure.ERASURE_LOCK_KEY): a number erased while a
load is writing it is never left in contacts, dialable."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from dialer.calls import CallEvent
from dialer.db import erasure, events, stalled
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


# ---- a callback stored while its number is erased ----------------------------------------------


async def _settled_call(conn: asyncpg.Connection) -> int:
    """One settled call to NUMBER (its callbacks may still come late): its attempt's id."""
    await conn.execute(
        """INSERT INTO accounts (name, kind, rate_per_s, channels) VALUES ('late', 'sim', 10, 5)
           ON CONFLICT DO NOTHING"""
    )
    campaign = await conn.fetchval(
        "INSERT INTO campaigns (name, account, spec) VALUES ('late', 'late', '{}') RETURNING id"
    )
    contact = await conn.fetchval(
        """INSERT INTO contacts (campaign_id, row_no, phone_e164, state)
           VALUES ($1, 1, $2, 'done') RETURNING id""",
        campaign,
        NUMBER,
    )
    return await conn.fetchval(
        """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state, outcome,
                                 phone_e164, provider_call_id, requested_at)
           VALUES ($1, $2, 'late', 1, 'completed', 'completed', $3, 'CA-late', now())
           RETURNING id""",
        contact,
        campaign,
        NUMBER,
    )


def _late_callback(n: int) -> CallEvent:
    return CallEvent(status="completed", dedupe_key=f"late-{n}", provider_call_id="CA-late")


CONTENT = {"To": NUMBER, "CallStatus": "completed"}


async def _store(conn: asyncpg.Connection, attempt: int, n: int) -> None:
    await events.store(conn, "late", attempt, _late_callback(n), CONTENT, held=False, problem=None)


async def _number_left_in_callbacks(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM call_events WHERE payload::text LIKE '%' || $1 || '%'", NUMBER[1:]
    )


async def test_a_callback_written_as_the_number_is_erased_keeps_no_content(
    own_database_url: str,
) -> None:
    """A late callback for the number's call is stored (not yet committed) when the erasure
    comes: the erasure waits for it and empties it with the rest. Before, the erasure's update
    of the attempt did not wait for the callback's key lock, read the callbacks without it, and
    the callback committed with the number in it."""
    writing, erasing, watcher = [await connect(own_database_url) for _ in range(3)]
    try:
        attempt = await _settled_call(watcher)
        stored = writing.transaction()
        await stored.start()
        await _store(writing, attempt, 1)
        erased = asyncio.ensure_future(forget(erasing, [NUMBER], "test", wait_s=0))
        await until_waiting_on_a_lock(watcher, erasing, erased, "the erasure to wait")
        await stored.commit()
        assert [f.erased for f in (await erased).numbers] == [True]
        assert await _number_left_in_callbacks(watcher) == 0
        payloads = await watcher.fetch("SELECT payload::text AS payload FROM call_events")
        assert [json.loads(r["payload"]) for r in payloads] == [{"erased": True}]
    finally:
        for conn in (writing, erasing, watcher):
            await conn.close()


async def test_a_callback_written_during_an_erasure_is_refused_then_stored_empty(
    own_database_url: str,
) -> None:
    """The erasure holds the number's attempts (uncommitted) when a late callback is stored:
    the callback's check waits for it, then refuses the content (23514, the attempt is erased);
    stored again, as its provider's retry or the receiver's one-by-one fallback does, it is kept
    empty. Before, the check did not wait, and the callback committed with the number in it."""
    writing, erasing, watcher = [await connect(own_database_url) for _ in range(3)]
    try:
        attempt = await _settled_call(watcher)
        holding = erasing.transaction()
        await holding.start()
        await erasure.erase(erasing, [NUMBER])
        written = asyncio.ensure_future(_store(writing, attempt, 2))
        await until_waiting_on_a_lock(watcher, writing, written, "the callback to wait")
        await holding.commit()
        with pytest.raises(asyncpg.CheckViolationError, match="erased"):
            await written
        await _store(writing, attempt, 2)
        assert await _number_left_in_callbacks(watcher) == 0
        payloads = await watcher.fetch("SELECT payload::text AS payload FROM call_events")
        assert [json.loads(r["payload"]) for r in payloads] == [{"erased": True}]
    finally:
        for conn in (writing, erasing, watcher):
            await conn.close()
