"""webhook_deliveries' key to its event as the database holds it (migration 0029): a delivery's
event exists and stays while the delivery is written, deliveries go with their event, and the
check runs once per statement, for the events and deliveries a statement writes together
(db.webhooks.write_ctes)."""

from __future__ import annotations

import asyncpg
import pytest

from dialer.db.connect import connect
from dialer.db.webhooks import write_ctes

_SOURCE = """SELECT 'attempt.settled' AS type, 'contact:' || n AS order_key, 1 AS campaign_id,
                    jsonb_build_object('n', n) AS payload
             FROM generate_series(1, 12) n"""


async def test_events_and_their_deliveries_written_together_are_checked_once(
    database_url: str,
) -> None:
    conn = await connect(database_url)
    try:
        await conn.execute(
            """INSERT INTO webhook_endpoints (name, events) VALUES
               ('one', '{attempt.settled}'), ('two', '{attempt.settled}')"""
        )
        async with conn.transaction():
            await conn.execute("SET LOCAL track_functions = 'pl'")
            written = await conn.fetchval(
                f"WITH {write_ctes(_SOURCE)} SELECT count(*) FROM delivered"
            )
            calls = await conn.fetchval(
                "SELECT pg_stat_get_xact_function_calls('webhook_deliveries_checked'::regproc)"
            )
        assert (written, calls) == (24, 1)
    finally:
        await conn.close()


async def test_a_delivery_of_no_such_event_is_refused_and_deliveries_go_with_their_event(
    database_url: str,
) -> None:
    conn = await connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO webhook_endpoints (name, events) VALUES ('gone', '{contact.final}')"
        )
        event = await conn.fetchval(
            """INSERT INTO webhook_events (type, order_key, campaign_id, payload)
               VALUES ('contact.final', 'contact:1', 1, '{}') RETURNING id"""
        )
        with pytest.raises(asyncpg.ForeignKeyViolationError, match=f"event {event + 99} does"):
            await conn.execute(
                """INSERT INTO webhook_deliveries (endpoint, event_id, order_key)
                   SELECT 'gone', e, 'contact:1' FROM unnest($1::bigint[]) e""",
                [event, event + 99],
            )
        await conn.execute(
            """INSERT INTO webhook_deliveries (endpoint, event_id, order_key)
               VALUES ('gone', $1, 'contact:1')""",
            event,
        )
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="never changes"):
            await conn.execute(
                "UPDATE webhook_deliveries SET event_id = event_id + 1 WHERE event_id = $1", event
            )
        await conn.execute("DELETE FROM webhook_events WHERE id = $1", event)
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE event_id = $1", event
            )
            == 0
        )
    finally:
        await conn.close()


async def test_an_event_is_kept_until_a_delivery_written_for_it_commits(
    database_url: str,
) -> None:
    writer, deleter = await connect(database_url), await connect(database_url)
    try:
        await writer.execute(
            """INSERT INTO webhook_endpoints (name, events) VALUES ('kept', '{contact.final}')
               ON CONFLICT DO NOTHING"""
        )
        event = await writer.fetchval(
            """INSERT INTO webhook_events (type, order_key, campaign_id, payload)
               VALUES ('contact.final', 'contact:2', 1, '{}') RETURNING id"""
        )
        await deleter.execute("SET lock_timeout = '200ms'")
        async with writer.transaction():
            await writer.execute(
                """INSERT INTO webhook_deliveries (endpoint, event_id, order_key)
                   VALUES ('kept', $1, 'contact:2')""",
                event,
            )
            with pytest.raises(asyncpg.LockNotAvailableError):
                await deleter.execute("DELETE FROM webhook_events WHERE id = $1", event)
    finally:
        await writer.close()
        await deleter.close()


async def test_the_check_locks_only_events_another_transaction_wrote(
    database_url: str,
) -> None:
    """Migrations 0033 and 0036: the events a statement writes with their deliveries (as
    settling does) are not locked again by the check (a WAL record each); an event written
    before, by another transaction, is locked as before, and so is one this transaction wrote
    with another time than its start (its id alone could be an old frozen row's)."""
    conn = await connect(database_url)
    try:
        await conn.execute(
            """INSERT INTO webhook_endpoints (name, events) VALUES ('locks', '{contact.final}')
               ON CONFLICT DO NOTHING"""
        )
        earlier = await conn.fetchval(
            """INSERT INTO webhook_events (type, order_key, campaign_id, payload)
               VALUES ('contact.final', 'contact:3', 1, '{}') RETURNING id"""
        )
        async with conn.transaction():
            own = await conn.fetchval(
                """WITH e AS (INSERT INTO webhook_events (type, order_key, campaign_id, payload)
                              VALUES ('contact.final', 'contact:4', 1, '{}') RETURNING id)
                   INSERT INTO webhook_deliveries (endpoint, event_id, order_key)
                   SELECT 'locks', id, 'contact:4' FROM e RETURNING event_id"""
            )
            await conn.execute(
                """INSERT INTO webhook_deliveries (endpoint, event_id, order_key)
                   VALUES ('locks', $1, 'contact:3')""",
                earlier,
            )
            # written by this transaction, but not at its start time: locked (0036)
            backdated = await conn.fetchval(
                """WITH e AS (INSERT INTO webhook_events
                                  (type, order_key, campaign_id, payload, created_at)
                              VALUES ('contact.final', 'contact:5', 1, '{}',
                                      now() - interval '1 second') RETURNING id)
                   INSERT INTO webhook_deliveries (endpoint, event_id, order_key)
                   SELECT 'locks', id, 'contact:5' FROM e RETURNING event_id"""
            )
            mine = "SELECT xmax::text = pg_current_xact_id()::xid::text FROM webhook_events"
            assert not await conn.fetchval(f"{mine} WHERE id = $1", own)
            assert await conn.fetchval(f"{mine} WHERE id = $1", earlier)
            assert await conn.fetchval(f"{mine} WHERE id = $1", backdated)
    finally:
        await conn.close()
