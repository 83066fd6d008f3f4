"""call_events' rules as the database holds them (migration 0027): an event's attempt exists
and stays while the event is written, its events go with it, and an erased attempt's events
hold no content, whichever writer stores them (dialer.db.events) and whoever writes by hand.
The checks run once per statement, not once per row."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from dialer.calls import CallEvent
from dialer.db import events
from dialer.db.connect import connect
from dialer.db.events import Closing
from tests.callbacks.test_callbacks import new_attempt
from tests.db.lock_cuts import until_waiting_on_a_lock

ERASED = {"erased": True}
CONTENT = {"From": "+919845010001", "note": "call me on 098450 10001"}


async def _erase(conn: asyncpg.Connection, attempt: int) -> None:
    await conn.execute(
        "UPDATE attempts SET phone_e164 = NULL, erased_at = now() WHERE id = $1", attempt
    )


async def _payloads(conn: asyncpg.Connection, attempt: int) -> list[dict]:
    rows = await conn.fetch(
        "SELECT payload FROM call_events WHERE attempt_id = $1 ORDER BY id", attempt
    )
    return [r["payload"] for r in rows]


async def _insert(conn: asyncpg.Connection, attempt: int | None, key: str, payload: dict) -> None:
    await conn.execute(
        """INSERT INTO call_events (attempt_id, account, status, dedupe_key, payload)
           VALUES ($1, 'sim-main', 'ringing', $2, $3)""",
        attempt,
        key,
        payload,
    )


async def test_every_writer_stores_an_erased_attempts_events_empty(db, tmp_path: Path) -> None:
    erased = await new_attempt(db, tmp_path)
    kept = await new_attempt(db, tmp_path)
    await db.execute(
        "UPDATE attempts SET provider_call_id = 'CALL' || id WHERE id = ANY($1)", [erased, kept]
    )
    await _erase(db, erased)
    for attempt in (erased, kept):
        # one event: named in the callback's URL
        event = CallEvent("ringing", f"one:{attempt}", f"CALL{attempt}", attempt_id=attempt)
        stored = await events.store(
            db, "sim-main", attempt, event, CONTENT, held=False, problem=None
        )
        assert stored["stored"] and stored["attempt_id"] == attempt
        # a batch of progress events, one of them found by its call id alone
        await events.store_and_advance(
            db,
            ["sim-main"] * 2,
            [attempt, None],
            call_ids=[f"CALL{attempt}", f"CALL{attempt}"],
            statuses=["ringing", "in-progress"],
            sequences=[1, 2],
            dedupe_keys=[f"batch:{attempt}:1", f"batch:{attempt}:2"],
            payloads=[CONTENT, CONTENT],
            occurred_at=[None, None],
            answered_by=[None, None],
        )
    await db.execute(
        "UPDATE attempts SET state = 'accepted', answered_at = NULL WHERE id = ANY($1)",
        [erased, kept],
    )
    final = [
        Closing(
            "sim-main",
            a,
            "accepted",
            False,
            None,
            "busy",
            CallEvent("busy", f"end:{a}", f"CALL{a}"),
            "done",
            None,
            True,
        )
        for a in (erased, kept)
    ]
    assert await events.store_and_settle(db, final, [CONTENT, CONTENT]) == {
        erased,
        kept,
    }
    assert await _payloads(db, erased) == [ERASED] * 4
    assert await _payloads(db, kept) == [CONTENT] * 4

    # an event stored before its attempt was known, attached later
    for attempt in (erased, kept):
        await _insert(db, None, f"orphan:{attempt}", CONTENT)
        orphan = await db.fetchval(
            "SELECT id FROM call_events WHERE dedupe_key = $1", f"orphan:{attempt}"
        )
        await events.attach(db, orphan, attempt)
    assert (await _payloads(db, erased))[-1] == ERASED
    assert (await _payloads(db, kept))[-1] == CONTENT


async def test_the_database_refuses_content_for_an_erased_attempt(db, tmp_path: Path) -> None:
    attempt = await new_attempt(db, tmp_path)
    await _insert(db, attempt, "before", CONTENT)
    await _erase(db, attempt)
    with pytest.raises(asyncpg.CheckViolationError, match=f"attempt {attempt} is erased"):
        await _insert(db, attempt, "after", CONTENT)
    # the erasure's own update, and anything that leaves the payload with content
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE call_events SET status = status WHERE attempt_id = $1", attempt)
    await db.execute(
        """UPDATE call_events SET payload = '{"erased": true}' WHERE attempt_id = $1""", attempt
    )
    await _insert(db, attempt, "after", ERASED)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "UPDATE call_events SET payload = $2 WHERE attempt_id = $1",
            attempt,
            CONTENT,
        )
    assert await _payloads(db, attempt) == [ERASED, ERASED]


async def test_an_event_of_no_such_attempt_is_refused_with_its_whole_statement(
    db, tmp_path: Path
) -> None:
    attempt = await new_attempt(db, tmp_path)
    missing = attempt + 1_000_000
    with pytest.raises(asyncpg.ForeignKeyViolationError, match=f"attempt {missing} does not"):
        await db.execute(
            """INSERT INTO call_events (attempt_id, account, status, dedupe_key, payload)
               SELECT a, 'sim-main', 'ringing', 'many:' || coalesce(a::text, '-') || ':' || n, '{}'
               FROM unnest($1::bigint[]) a, generate_series(1, 3) n""",
            [attempt, missing, None],
        )
    assert await db.fetchval("SELECT count(*) FROM call_events WHERE dedupe_key LIKE 'many:%'") == 0
    other = await new_attempt(db, tmp_path)
    await _insert(db, None, "no-attempt", {})
    event = await db.fetchval("SELECT id FROM call_events WHERE dedupe_key = 'no-attempt'")
    with pytest.raises(asyncpg.ForeignKeyViolationError, match=f"attempt {missing} does not"):
        await db.execute("UPDATE call_events SET attempt_id = $2 WHERE id = $1", event, missing)
    await db.execute("UPDATE call_events SET attempt_id = $2 WHERE id = $1", event, other)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="never changes"):
        await db.execute("UPDATE attempts SET id = $2 WHERE id = $1", other, missing)


async def test_an_attempts_events_go_with_it_and_with_its_campaign(db, tmp_path: Path) -> None:
    first, second = await new_attempt(db, tmp_path), await new_attempt(db, tmp_path)
    for attempt in (first, second):
        for n in range(3):
            await _insert(db, attempt, f"gone:{attempt}:{n}", {})
    await db.execute("DELETE FROM attempts WHERE id = $1", first)
    assert await _payloads(db, first) == []
    assert len(await _payloads(db, second)) == 3
    campaign = await db.fetchval("SELECT campaign_id FROM attempts WHERE id = $1", second)
    await db.execute("DELETE FROM contacts WHERE campaign_id = $1", campaign)  # as campaigns.delete
    assert await _payloads(db, second) == []


async def test_an_attempt_is_kept_until_an_event_written_for_it_commits(
    database_url: str, db, tmp_path: Path
) -> None:
    attempt = await new_attempt(db, tmp_path)
    deleter = await connect(database_url)
    try:
        async with db.transaction():
            await _insert(db, attempt, "kept-while-written", {})
            await deleter.execute("SET lock_timeout = '200ms'")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await deleter.execute("DELETE FROM attempts WHERE id = $1", attempt)
        # the other way round: a deletion under way holds back the event, which then fails
        watch = await connect(database_url)
        try:
            async with deleter.transaction():
                await deleter.execute("DELETE FROM attempts WHERE id = $1", attempt)
                writing = asyncio.ensure_future(_insert(db, attempt, "after-deletion", {}))
                await until_waiting_on_a_lock(watch, db, writing, "the event waits on the attempt")
                assert not writing.done()
        finally:
            await watch.close()
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await writing
    finally:
        await deleter.close()
    assert await db.fetchval("SELECT count(*) FROM call_events WHERE attempt_id = $1", attempt) == 0


async def test_the_checks_run_once_per_statement_not_per_row(db, tmp_path: Path) -> None:
    attempts = [await new_attempt(db, tmp_path) for _ in range(5)]
    checked = "'call_events_checked'::regproc"
    async with db.transaction():
        await db.execute("SET LOCAL track_functions = 'pl'")
        await events.store_and_advance(
            db,
            ["sim-main"] * 20,
            [a for a in attempts for _ in range(4)],
            call_ids=[None] * 20,
            statuses=["ringing"] * 20,
            sequences=list(range(20)),
            dedupe_keys=[f"count:{n}" for n in range(20)],
            payloads=[{}] * 20,
            occurred_at=[None] * 20,
            answered_by=[None] * 20,
        )
        calls = await db.fetchval(f"SELECT pg_stat_get_xact_function_calls({checked})")
        stored = await db.fetchval(
            "SELECT count(*) FROM call_events WHERE dedupe_key LIKE 'count:%'"
        )
    assert stored == 20
    assert calls == 1


async def _locked_by_me(conn: asyncpg.Connection, table: str, row: int) -> bool:
    """Whether this transaction holds a row lock (or an update) on the row's current version."""
    return await conn.fetchval(
        f"SELECT xmax::text = pg_current_xact_id()::xid::text FROM {table} WHERE id = $1", row
    )


async def test_the_check_locks_only_attempts_another_transaction_wrote(
    database_url: str, db, tmp_path: Path
) -> None:
    """Migrations 0033 and 0036: an attempt this transaction wrote, with its time (as every
    statement that moves an attempt writes it), is not locked again by the check of the events
    written for it (a WAL record each), and is still kept until the events commit (the
    transaction's own update holds it). One it did not write is locked as before, and so is one
    it wrote without its time: a row id alone can be an old frozen row's after 2^32
    transactions, so the time must say so too."""
    moved, untouched, unstamped = [await new_attempt(db, tmp_path) for _ in range(3)]
    deleter = await connect(database_url)
    try:
        await deleter.execute("SET lock_timeout = '200ms'")
        async with db.transaction():
            await db.execute(
                "UPDATE attempts SET state = 'ringing', updated_at = now() WHERE id = $1", moved
            )
            await db.execute("UPDATE attempts SET state = 'ringing' WHERE id = $1", unstamped)
            await _insert(db, moved, "own-version", {})
            await _insert(db, untouched, "their-version", {})
            await _insert(db, unstamped, "own-version-without-time", {})
            assert not await _locked_by_me(db, "attempts", moved)
            assert await _locked_by_me(db, "attempts", untouched)
            assert await _locked_by_me(db, "attempts", unstamped)
            for attempt in (moved, untouched, unstamped):
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await deleter.execute("DELETE FROM attempts WHERE id = $1", attempt)
    finally:
        await deleter.close()
    assert (
        await db.fetchval(
            "SELECT count(*) FROM call_events WHERE attempt_id = ANY($1::bigint[])",
            [moved, untouched, unstamped],
        )
        == 3
    )
