"""Free channel slots for a claim (db.attempts.free_channels), against a model of the rule, and
what finding them costs PostgreSQL with an account's channels nearly full."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.db.attempts import _CHANNELS, free_channels
from dialer.db.connect import connect
from dialer.db.events import store_and_advance

ACCOUNT = "sim-main"


class _Rollback(Exception):
    pass


async def _seed(
    conn,
    channels: int,
    cursor: int,
    live: list[tuple[str, int | None]],
    *,
    statistics: str = "none",
) -> None:
    """One campaign, one contact per live attempt, and the attempts: (state, slot or None for a
    re-opened attempt holding no slot). `statistics`: "stale", analyzed before the attempts
    came (a table grown since autovacuum last looked), "fresh", after, or "none"."""
    await conn.execute(
        """INSERT INTO accounts (name, kind, rate_per_s, channels, next_slot)
           VALUES ($1, 'sim', 100, $2, $3)""",
        ACCOUNT,
        channels,
        cursor,
    )
    campaign = await conn.fetchval(
        "INSERT INTO campaigns (name, account, spec) VALUES ('slots', $1, '{}') RETURNING id",
        ACCOUNT,
    )
    if statistics == "stale":
        await conn.execute("ANALYZE attempts")
    await conn.execute(
        """WITH c AS (
               INSERT INTO contacts (campaign_id, row_no, phone_e164)
               SELECT $1, n, '+9198' || lpad(n::text, 8, '0')
               FROM generate_series(1, $2) n RETURNING id, row_no, phone_e164)
           INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                                 phone_e164, slot, reopened_at)
           SELECT c.id, $1, $3, 1, t.state, c.phone_e164, t.slot,
                  CASE WHEN t.slot IS NULL THEN now() END
           FROM c JOIN unnest($4::text[], $5::int[]) WITH ORDINALITY AS t(state, slot, n)
             ON t.n = c.row_no""",
        campaign,
        len(live),
        ACCOUNT,
        [state for state, _ in live],
        [slot for _, slot in live],
    )
    if statistics == "fresh":
        await conn.execute("ANALYZE attempts")


def _expected(
    channels: int, cursor: int, live: list[tuple[str, int | None]], tokens: int, max_batch: int
) -> tuple[int, list[int]]:
    """The rule, written plainly: every live attempt holds a channel, so at most `channels` -
    live may be given, and no more than the request slots not yet spoken for nor the batch; the
    free slots are given in ring order from the cursor."""
    waiting = sum(1 for state, _ in live if state == "reserved")
    held = {slot for _, slot in live}
    ring = [(cursor % channels + i) % channels for i in range(channels)]
    free = [s for s in ring if s not in held]
    allowed = max(0, min(tokens - waiting, max_batch, channels - len(live)))
    return waiting, free[:allowed]


@st.composite
def _accounts(draw: st.DrawFn) -> tuple[int, int, list[tuple[str, int | None]], int, int]:
    channels = draw(st.integers(1, 12))  # accounts_channels_check: at least one
    # slots past `channels` are held by attempts of a time the account had more channels
    slots = draw(st.lists(st.integers(0, channels + 3), unique=True, max_size=channels + 3))
    states = st.sampled_from(["reserved", "dialing", "accepted", "ringing", "in-progress"])
    live: list[tuple[str, int | None]] = [(draw(states), slot) for slot in slots]
    live += [(draw(states), None) for _ in range(draw(st.integers(0, 3)))]  # re-opened
    cursor = draw(st.integers(0, channels + 5))
    return channels, cursor, live, draw(st.integers(-2, 20)), draw(st.integers(0, 20))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_accounts())
def test_free_channels_are_the_rule_s(database_url: str, case) -> None:
    """Whatever slots the live attempts hold (past `channels` too, or none when re-opened) and
    wherever the cursor stands, the slots found are exactly the first free ones of the ring
    from the cursor, as many as the channels, the request slots and the batch allow."""
    channels, cursor, live, tokens, max_batch = case

    async def go() -> tuple[int, list[int]]:
        conn = await connect(database_url)
        try:
            async with conn.transaction():
                await _seed(conn, channels, cursor, live)
                found = await free_channels(conn, ACCOUNT, channels, cursor, tokens, max_batch)
                raise _Rollback((found.waiting, found.slots))
        except _Rollback as done:
            return done.args[0]
        finally:
            await conn.close()

    assert asyncio.run(go()) == _expected(channels, cursor, live, tokens, max_batch)


def _rows_read(plan: dict) -> int:
    """Rows of `attempts` the plan read (returned or filtered out), over all its loops."""
    total = 0
    if plan.get("Relation Name") == "attempts":
        read = plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)
        total += int(read * plan.get("Actual Loops", 1))
    for child in plan.get("Plans", []):
        total += _rows_read(child)
    return total


@pytest.mark.parametrize("statistics", ["stale", "fresh"])
@pytest.mark.parametrize(
    ("channels", "expected"), [(5200, list(range(5000, 5050))), (5000, [])], ids=["room", "full"]
)
def test_a_claim_reads_the_live_attempts_once(
    database_url: str, channels: int, expected: list[int], statistics: str
) -> None:
    """5,000 channels held by calls begun in slot order, the cursor after the last one given:
    a claim reads the 5,000 live attempts once, in one row, whatever the statistics say (a
    probe of each slot was planned, with statistics from before the calls began, as a scan of
    every live attempt per slot: 250,000 rows for 50 slots); with 5,200 channels it gives the
    50 slots after the cursor, with 5,000 none."""

    async def go() -> tuple[list[int], int, object]:
        conn = await connect(database_url)
        try:
            async with conn.transaction():
                live: list[tuple[str, int | None]] = [("ringing", s) for s in range(5000)]
                await _seed(conn, channels, 5000, live, statistics=statistics)
                found = await free_channels(conn, ACCOUNT, channels, 5000, 50, 50)
                rows = await conn.fetch(f"EXPLAIN (ANALYZE, FORMAT JSON) {_CHANNELS}", ACCOUNT)
                explained = rows[0][0]  # the connection decodes json itself
                plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]
                raise _Rollback((found.slots, _rows_read(plan["Plan"]), plan))
        except _Rollback as done:
            return done.args[0]
        finally:
            await conn.close()

    slots, read, plan = asyncio.run(go())
    assert slots == expected
    assert 5000 <= read <= 5010, json.dumps(plan, indent=1)


# ---- the attempts' keys, held once per statement (migration 0028) ------------------------------


async def _campaign_with_contacts(conn, name: str, count: int) -> tuple[int, list[int]]:
    await conn.execute(
        """INSERT INTO accounts (name, kind, rate_per_s, channels) VALUES ($1, 'sim', 100, 100)
           ON CONFLICT DO NOTHING""",
        ACCOUNT,
    )
    campaign = await conn.fetchval(
        "INSERT INTO campaigns (name, account, spec) VALUES ($1, $2, '{}') RETURNING id",
        name,
        ACCOUNT,
    )
    contacts = await conn.fetch(
        """INSERT INTO contacts (campaign_id, row_no, phone_e164)
           SELECT $1::bigint, n, '+9197' || lpad(($1::bigint * 1000 + n)::text, 8, '0')
           FROM generate_series(1, $2) n RETURNING id""",
        campaign,
        count,
    )
    return campaign, [r["id"] for r in contacts]


_WRITE = """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state, phone_e164)
            SELECT c, $2, $3, 1, 'completed', '+919700000000' FROM unnest($1::bigint[]) c"""


async def test_an_attempt_of_no_such_contact_or_campaign_is_refused_with_its_statement(
    database_url: str,
) -> None:
    conn = await connect(database_url)
    try:
        campaign, contacts = await _campaign_with_contacts(conn, "keys-missing", 3)
        missing = contacts[-1] + 1_000_000
        with pytest.raises(asyncpg.ForeignKeyViolationError, match=f"contact {missing} does not"):
            await conn.execute(_WRITE, [*contacts, missing], campaign, ACCOUNT)
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="campaign 999999 does not"):
            await conn.execute(_WRITE, contacts, 999999, ACCOUNT)
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM attempts WHERE contact_id = ANY($1)", contacts
            )
            == 0
        )
        await conn.execute(_WRITE, contacts, campaign, ACCOUNT)
        attempt = await conn.fetchval("SELECT id FROM attempts WHERE contact_id = $1", contacts[0])
        for change in (
            f"UPDATE attempts SET contact_id = {contacts[1]} WHERE id = {attempt}",
            f"UPDATE attempts SET campaign_id = {campaign + 1} WHERE id = {attempt}",
            f"UPDATE contacts SET id = {missing} WHERE id = {contacts[0]}",
            f"UPDATE campaigns SET id = {campaign + 100} WHERE id = {campaign}",
        ):
            with pytest.raises(asyncpg.ForeignKeyViolationError, match="never changes"):
                await conn.execute(change)
        # refused as soon as a statement names one (migration 0030: no update pays a look)
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="never changes"):
            await conn.execute("UPDATE attempts SET contact_id = contact_id WHERE id = $1", attempt)
    finally:
        await conn.close()


async def test_attempts_go_with_their_contacts_and_campaign_and_take_their_events(
    database_url: str,
) -> None:
    conn = await connect(database_url)
    try:
        campaign, contacts = await _campaign_with_contacts(conn, "keys-gone", 4)
        await conn.execute(_WRITE, contacts, campaign, ACCOUNT)
        await conn.execute(
            """INSERT INTO call_events (attempt_id, account, status, dedupe_key, payload)
               SELECT id, $2, 'completed', 'gone:' || id, '{}' FROM attempts
               WHERE contact_id = ANY($1)""",
            contacts,
            ACCOUNT,
        )

        async def left() -> tuple[int, int]:
            row = await conn.fetchrow(
                """SELECT (SELECT count(*) FROM attempts WHERE campaign_id = $1) AS attempts,
                          (SELECT count(*) FROM call_events WHERE dedupe_key LIKE 'gone:%')
                              AS events""",
                campaign,
            )
            return row["attempts"], row["events"]

        assert await left() == (4, 4)
        await conn.execute("DELETE FROM contacts WHERE id = $1", contacts[0])
        assert await left() == (3, 3)
        await conn.execute("DELETE FROM campaigns WHERE id = $1", campaign)
        assert await left() == (0, 0)
    finally:
        await conn.close()


async def test_a_contact_is_kept_until_an_attempt_written_for_it_commits(
    database_url: str,
) -> None:
    writer, deleter = await connect(database_url), await connect(database_url)
    try:
        campaign, contacts = await _campaign_with_contacts(writer, "keys-kept", 1)
        await deleter.execute("SET lock_timeout = '200ms'")
        async with writer.transaction():
            await writer.execute(_WRITE, contacts, campaign, ACCOUNT)
            for target in ("contacts", "campaigns"):
                key = contacts[0] if target == "contacts" else campaign
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await deleter.execute(f"DELETE FROM {target} WHERE id = $1", key)
    finally:
        await writer.close()
        await deleter.close()


async def test_the_attempts_keys_are_checked_once_per_statement(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        campaign, contacts = await _campaign_with_contacts(conn, "keys-once", 20)
        async with conn.transaction():
            await conn.execute("SET LOCAL track_functions = 'pl'")
            await conn.execute(_WRITE, contacts, campaign, ACCOUNT)
            calls = await conn.fetchval(
                "SELECT pg_stat_get_xact_function_calls('attempts_checked'::regproc)"
            )
        assert calls == 1
    finally:
        await conn.close()


async def test_no_update_of_the_busy_tables_locks_its_rows_first(database_url: str) -> None:
    """A BEFORE UPDATE row trigger, whatever its column list, makes PostgreSQL lock every row
    an update touches before it reads the list: a WAL record per row (270 bytes a settled call
    when the key guards were row triggers). The guards are statement triggers (0030)."""
    conn = await connect(database_url)
    try:
        row_triggers = await conn.fetch(
            """SELECT tgrelid::regclass::text AS relation, tgname FROM pg_trigger
               WHERE NOT tgisinternal AND tgtype & 1 = 1 AND tgtype & 2 = 2 AND tgtype & 16 = 16
                 AND tgrelid = ANY (ARRAY['attempts', 'contacts', 'campaigns', 'call_events',
                                          'webhook_events', 'webhook_deliveries',
                                          'accounts']::regclass[])"""
        )
        assert [dict(r) for r in row_triggers] == []
    finally:
        await conn.close()


# ---- moves between live states in place (migration 0031) ---------------------------------------


async def test_a_call_s_progress_is_written_in_place(database_url: str) -> None:
    """An accepted call's ringing and answer (db.events.store_and_advance, as callbacks move
    it) are HOT updates: no index of attempts names `state` or `settle_by`, so the new row
    versions stay on their page and no index gets an entry (before 0031 each wrote nine).
    Closing the call is not one: it leaves the live-only indexes."""
    conn = await connect(database_url)
    try:
        campaign, contacts = await _campaign_with_contacts(conn, "in-place", 3)
        ids = [
            r["id"]
            for r in await conn.fetch(
                """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                                         phone_e164, slot, provider_call_id, requested_at,
                                         caller_id)
                   SELECT c, $2, $3, 1, 'accepted', '+919700000000', n::int, 'call-' || n,
                          now(), '+14155550100'
                   FROM unnest($1::bigint[]) WITH ORDINALITY AS t(c, n) RETURNING id""",
                contacts,
                campaign,
                ACCOUNT,
            )
        ]
        async with conn.transaction():
            for status in ("ringing", "in-progress"):
                await store_and_advance(
                    conn,
                    [ACCOUNT] * 3,
                    list(ids),
                    call_ids=[f"call-{n}" for n in range(1, 4)],
                    statuses=[status] * 3,
                    sequences=[None] * 3,
                    dedupe_keys=[f"{status}-{n}" for n in range(1, 4)],
                    payloads=[{"status": status}] * 3,
                    occurred_at=[None] * 3,
                    answered_by=[None] * 3,
                )
            moved = await conn.fetchrow(
                """SELECT pg_stat_get_xact_tuples_updated('attempts'::regclass) AS updated,
                          pg_stat_get_xact_tuples_hot_updated('attempts'::regclass) AS hot"""
            )
            states = await conn.fetch(
                "SELECT state, live FROM attempts WHERE id = ANY($1::bigint[])", ids
            )
        assert [tuple(r) for r in states] == [("in-progress", True)] * 3
        assert (moved["updated"], moved["hot"]) == (6, 6)
        async with conn.transaction():  # (the backend's counts may span its transactions)
            hot = "SELECT pg_stat_get_xact_tuples_hot_updated('attempts'::regclass)"
            before = await conn.fetchval(hot)
            await conn.execute(
                """UPDATE attempts SET state = 'completed', outcome = 'completed', slot = NULL
                   WHERE id = ANY($1::bigint[])""",
                ids,
            )
            closed = await conn.fetchval(hot) - before
            live = await conn.fetchval(
                "SELECT count(*) FROM attempts WHERE id = ANY($1::bigint[]) AND live", ids
            )
        assert (closed, live) == (0, 0)
    finally:
        await conn.close()
