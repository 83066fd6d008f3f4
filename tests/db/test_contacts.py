"""The claim's pick (db.contacts.lock_due): the due contacts of the zones open now, in dialing
order across zones, reading no contact of a zone whose window is closed."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.campaign_spec import CampaignSpec
from dialer.db import contacts
from dialer.db.connect import connect, open_pool
from dialer.policy.packs import CampaignRules, builtin_packs
from dialer.policy.window import CallingRules
from tests.policy.test_window_agreement import JURISDICTIONS, PACK_SETS, ZONES, times


def zone_at_local_hour(hour: int) -> str:
    """A fixed-offset zone whose local time now is `hour`:MM (Etc/GMT-N is UTC+N)."""
    offset = (hour - datetime.now(UTC).hour) % 24
    offset = offset - 24 if offset > 14 else offset
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


OPEN, CLOSED = zone_at_local_hour(12), zone_at_local_hour(0)  # window 09:00-15:00


def rules(default_zone: str) -> CallingRules:
    spec = CampaignSpec.model_validate(
        {
            "name": "pick",
            "account": "sim-main",
            "caller_id": ["+918047112233"],
            "default_region": "IN",
            "timezone": default_zone,
            "window": {"start": "09:00", "end": "15:00"},
        }
    )
    return CallingRules.of(spec)


async def campaign_with(db: asyncpg.Connection, name: str, zones_sql: str, count: int) -> int:
    """A campaign of `count` pending contacts, contact n (1..count) in zone `zones_sql`, its
    priority n % 3."""
    campaign = await db.fetchval(
        "INSERT INTO campaigns (name, account, spec) VALUES ($1, 'sim-main', '{}') RETURNING id",
        name,
    )
    await db.execute(
        f"""INSERT INTO contacts (campaign_id, row_no, phone_e164, timezone, priority)
            SELECT $1::bigint, n, '+9197' || lpad(($1::bigint * 100000 + n)::text, 8, '0'),
                   {zones_sql}, n % 3
            FROM generate_series(1, {count}) n""",
        campaign,
    )
    await db.execute("ANALYZE contacts")
    return campaign


async def pick(db: asyncpg.Connection, campaign: int, limit: int, default_zone: str) -> tuple:
    """(the contacts picked, in order, as (row_no, zone); how many contact rows the pick read
    from the table, by index or by scan), its row locks released at once."""
    read = """SELECT coalesce(sum(idx_tup_fetch + seq_tup_read), 0)
              FROM pg_stat_xact_user_tables WHERE relname = 'contacts'"""
    async with db.transaction():
        before = await db.fetchval(read)
        rows = await contacts.lock_due(db, campaign, limit, rules(default_zone))
        after = await db.fetchval(read)
        numbers = await db.fetch(
            "SELECT id, row_no FROM contacts WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
        )
    row_no = dict(numbers)
    return [(row_no[r["id"]], r["timezone"]) for r in rows], after - before


async def test_a_closed_zone_first_in_line_is_not_read(db) -> None:
    """The closed zone's 19,000 contacts come first in dialing order; the pick of 50 takes the
    open zone's and reads about as many rows as it picks, not the 19,000 ahead of them."""
    zones = f"CASE WHEN n <= 19000 THEN '{CLOSED}' ELSE '{OPEN}' END"
    campaign = await campaign_with(db, "closed-first", zones, 20000)
    picked, read = await pick(db, campaign, 50, OPEN)
    assert len(picked) == 50 and {zone for _, zone in picked} == {OPEN}
    assert read < 500, read


async def test_a_campaign_without_zones_is_read_in_order_not_sorted(db) -> None:
    """20,000 contacts with no zone of their own (the campaign's, open): the pick of 50 reads
    about as many, in the due index's order, not all of them and a sort (`timezone IS NULL`
    is no equality to the planner, so the order must name the zone for the index to give it)."""
    campaign = await campaign_with(db, "no-zones", "NULL", 20000)
    picked, read = await pick(db, campaign, 50, OPEN)
    assert [n for n, _ in picked] == sorted(range(1, 20001), key=lambda n: (-(n % 3), n))[:50]
    assert read < 500, read


async def test_every_zone_closed_reads_nothing_and_picks_nothing(db) -> None:
    campaign = await campaign_with(db, "all-closed", f"'{CLOSED}'", 20000)
    picked, read = await pick(db, campaign, 50, OPEN)
    assert picked == [] and read < 50, read


@pytest.mark.parametrize(
    "attempts, next_attempt",
    [
        # the first-line group waits out its first retry; the second is due on a second
        (
            "CASE WHEN n <= 19000 THEN 1 ELSE 2 END",
            "now() + CASE WHEN n <= 19000 THEN interval '1 hour' ELSE interval '-1 hour' END",
        ),
        # one group: those waiting sit between the due-again ones and those with no delay
        (
            "1",
            "CASE WHEN n <= 19000 THEN now() + interval '1 hour'"
            " WHEN n <= 19500 THEN now() - interval '1 hour' END",
        ),
    ],
    ids=["a group waiting", "within a group"],
)
async def test_contacts_waiting_out_a_retry_are_not_read(
    db, attempts: str, next_attempt: str
) -> None:
    """19,000 contacts waiting out a retry delay come first in dialing order: the pick of 50
    takes the first due ones and reads about as many rows as it picks. Beside it a campaign
    of fresh contacts, whose statistics have the planner think a group's due contacts few:
    it must still read them in the index's order, not all of them and sort."""
    zones = f"CASE WHEN n <= 19000 THEN '{CLOSED}' ELSE '{OPEN}' END"
    await campaign_with(db, f"fresh-beside-{attempts[:4]}", zones, 20000)
    campaign = await campaign_with(db, f"waiting-{attempts[:4]}", f"'{OPEN}'", 20000)
    await db.execute(
        f"""UPDATE contacts SET priority = 0, attempts = g.attempts, next_attempt_at = g.next_at
            FROM (SELECT id, row_no AS n FROM contacts WHERE campaign_id = $1) AS k,
                 LATERAL (SELECT {attempts} AS attempts, {next_attempt} AS next_at) AS g
            WHERE contacts.id = k.id""",
        campaign,
    )
    await db.execute("ANALYZE contacts")
    picked, read = await pick(db, campaign, 50, OPEN)
    assert [n for n, _ in picked] == list(range(19001, 19051))
    assert read < 500, read


async def test_past_the_groups_read_by_range_the_rest_is_read_in_dialing_order(db) -> None:
    """A campaign of three times the groups the pick reads by range (a priority per six
    contacts, three attempt counts, retry delays over, not over and none): a batch of any
    size, within the groups or past them, is the first due contacts in dialing order."""
    campaign = await campaign_with(
        db, "many-groups", f"'{OPEN}'", contacts.GROUPS_READ_BY_RANGE * 6
    )
    await db.execute(
        """UPDATE contacts SET priority = -(row_no / 6), attempts = row_no % 3,
               next_attempt_at = now() + CASE row_no % 5 WHEN 0 THEN interval '1 hour'
                   WHEN 1 THEN interval '-1 hour' WHEN 2 THEN interval '-2 hours' END
           WHERE campaign_id = $1""",
        campaign,
    )
    await db.execute("ANALYZE contacts")
    due = [
        r["id"] for r in await db.fetch(_DUE_IDS, campaign, 1, *rules(OPEN).sql_parameters(), None)
    ]
    assert len(due) > 200
    await db.execute("SET jit = off")  # as a run's pool has it (db.connect.POOL_SETTINGS)
    for batch in range(1, len(due) + 2):  # a batch cut at every place
        async with db.transaction():
            picked = await contacts.lock_due(db, campaign, batch, rules(OPEN))
        assert [r["id"] for r in picked] == due[:batch], batch


async def test_the_pick_is_planned_once_and_leaves_the_plan_mode_as_it_was(
    db, database_url: str
) -> None:
    """On a run's pool (db.connect.open_pool), lock_due's statement is kept and planned once
    (a generic plan, no custom plan per claim), and the rest of the claim's transaction plans
    as it did."""
    campaign = await campaign_with(db, "plan-mode", f"'{OPEN}'", 10)
    async with open_pool(database_url, size=1) as pool, pool.acquire() as conn:
        for _ in range(7):  # past the five custom plans PostgreSQL would otherwise try
            async with conn.transaction():
                assert len(await contacts.lock_due(conn, campaign, 5, rules(OPEN))) == 5
                assert await conn.fetchval("SHOW plan_cache_mode") == "auto"
        plans = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            contacts._CANDIDATES,
        )
    assert plans is not None and tuple(plans) == (7, 0)


async def test_open_zones_merge_in_dialing_order(db) -> None:
    """Two open zones and the campaign's own (contacts without one): the pick is the first 30
    of all of them in dialing order (priority first, then load order), as if one walk."""
    other_open = zone_at_local_hour(13)
    zones = (
        f"CASE n % 4 WHEN 0 THEN '{OPEN}' WHEN 1 THEN '{other_open}' WHEN 2 THEN NULL"
        f" ELSE '{CLOSED}' END"
    )
    campaign = await campaign_with(db, "merged", zones, 400)
    picked, _ = await pick(db, campaign, 30, OPEN)
    expected = sorted((n for n in range(1, 401) if n % 4 != 3), key=lambda n: (-(n % 3), n))[:30]
    assert [n for n, _ in picked] == expected
    assert {zone for n, zone in picked if n % 4 == 2} == {None}


@pytest.mark.parametrize("default_zone, picked_without_zone", [(OPEN, 20), (CLOSED, 0)])
async def test_contacts_without_a_zone_take_the_campaigns(
    db, default_zone: str, picked_without_zone: int
) -> None:
    zones = f"CASE WHEN n <= 20 THEN NULL ELSE '{CLOSED}' END"
    campaign = await campaign_with(db, f"no-zone-{picked_without_zone}", zones, 40)
    picked, _ = await pick(db, campaign, 50, default_zone)
    assert len(picked) == picked_without_zone


# The look-up's definition before it was an aggregate: per campaign, zone and jurisdiction, the
# pending contact not listed do-not-call first by next attempt (none first), priority, id.
FIRST_PER_ZONE_BY_SORT = """
SELECT DISTINCT ON (c.campaign_id, c.timezone, c.jurisdiction)
       c.campaign_id, c.timezone, c.id, c.phone_e164, c.name, c.attempts, c.next_attempt_at,
       c.jurisdiction
FROM contacts c
WHERE c.campaign_id = ANY($1::bigint[]) AND c.state = 'pending'
  AND NOT EXISTS (SELECT 1 FROM dnc d WHERE d.phone_e164 = c.phone_e164)
ORDER BY c.campaign_id, c.timezone, c.jurisdiction, c.next_attempt_at NULLS FIRST,
         c.priority DESC, c.id
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_first_waiting_per_zone_is_the_sorted_definitions(db, seed: int) -> None:
    """2,000 contacts drawn with many ties (five retry times and none, three priorities,
    three zones and none, two jurisdictions and none, states, do-not-call): the aggregate
    finds the same first contact per group as the sort it replaced."""
    draw = random.Random(seed)
    campaigns = [await campaign_with(db, f"firsts-{seed}-{k}", "NULL", 0) for k in range(2)]
    base = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    times = [None] + [
        base + timedelta(minutes=m, microseconds=u)
        for m, u in [(0, 0), (0, 1), (5, 0), (90, 0), (-30, 7)]
    ]
    rows = [
        (
            draw.choice(campaigns),
            n,
            f"+9196{seed}{n:07d}",
            draw.choice([None, "Asia/Kolkata", "America/New_York", "Europe/London"]),
            draw.choice([None, "US-NY", "IN-KA"]),
            draw.choice([0, 1, 2]),
            draw.choice(times),
            draw.choice(["pending"] * 4 + ["done", "suppressed"]),
        )
        for n in range(1, 2001)
    ]
    await db.executemany(
        """INSERT INTO contacts (campaign_id, row_no, phone_e164, timezone, jurisdiction,
                                 priority, next_attempt_at, state)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        rows,
    )
    listed = [r[2] for r in rows if draw.random() < 0.1]
    await db.execute(
        "INSERT INTO dnc (phone_e164) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", listed
    )
    expected = [tuple(r) for r in await db.fetch(FIRST_PER_ZONE_BY_SORT, campaigns)]
    found = [tuple(f.__dict__.values()) for f in await contacts.first_due_per_zone(db, campaigns)]
    assert len(expected) > 20 and sorted(found, key=str) == sorted(expected, key=str)


async def test_two_claims_at_once_pick_different_contacts_across_zones(
    db, database_url: str
) -> None:
    """Two claims' picks in open transactions on a campaign in two open zones and a closed
    one (zone and priority drawn apart): neither waits for the other, their contacts do not
    overlap, the first takes the first 50 in dialing order and the second 50 others, in
    dialing order (each zone's pick skips the rows locked by the other claim, which locks up
    to a batch per open zone)."""
    other_open = zone_at_local_hour(13)
    zones = f"CASE (n / 3) % 3 WHEN 0 THEN '{OPEN}' WHEN 1 THEN '{other_open}' ELSE '{CLOSED}' END"
    campaign = await campaign_with(db, "two-claims", zones, 300)
    second = await connect(database_url)
    try:
        async with db.transaction(), second.transaction():
            first_ids = [r["id"] for r in await contacts.lock_due(db, campaign, 50, rules(OPEN))]
            second_ids = [
                r["id"] for r in await contacts.lock_due(second, campaign, 50, rules(OPEN))
            ]
            order = await db.fetch(
                """SELECT id FROM contacts WHERE campaign_id = $1 AND timezone <> $2
                   ORDER BY priority DESC, attempts, next_attempt_at, id""",
                campaign,
                CLOSED,
            )
    finally:
        await second.close()
    in_order = [r["id"] for r in order]
    assert len(first_ids) == len(second_ids) == 50
    assert not set(first_ids) & set(second_ids)
    assert first_ids == in_order[:50]
    assert second_ids == sorted(second_ids, key=in_order.index)


_DUE_IDS = (
    f"SELECT c.id FROM contacts c {contacts._DUE_LATERAL} WHERE c.campaign_id = $1 AND "
    f"{contacts._DUE} AND $2::int > 0 AND $14::text IS NULL"
    " ORDER BY c.priority DESC, c.attempts, c.next_attempt_at, c.id"
)
PROPERTY_CAMPAIGN = 990_002  # contacts have no foreign key: a campaign id of this test's own

picks = st.tuples(
    st.sampled_from(ZONES),  # the campaign's zone
    st.lists(times, min_size=2, max_size=2, unique=True).map(sorted),
    st.sampled_from(PACK_SETS),
    st.lists(
        st.tuples(
            st.none()
            | st.sampled_from(ZONES)
            | st.tuples(st.sampled_from(ZONES), st.sampled_from(ZONES)).map(" ".join),
            st.sampled_from(JURISDICTIONS),
            st.none() | st.integers(-3, 3),  # retry delay: hours from now
            st.integers(0, 2),  # priority
            st.integers(0, 2),  # attempts
        ),
        max_size=30,
    ),
    st.integers(1, 12),  # the batch
)


@pytest.fixture(scope="module")
def pick_checker(database_url: str):
    loop = asyncio.new_event_loop()
    # as a run's pool has it (db.connect.POOL_SETTINGS): JIT would compile the pick each time
    conn = loop.run_until_complete(asyncpg.connect(database_url, server_settings={"jit": "off"}))

    async def check(drawn: tuple) -> None:
        zone, (start, end), packs, people, batch = drawn
        law = CampaignRules.of([builtin_packs()[p] for p in packs]) if packs else None
        rules = CallingRules(
            timezone=zone,
            start=start,
            end=end,
            weekdays=frozenset(range(7)),
            holidays=frozenset(),
            start_date=None,
            end_date=None,
            law=law,
        )
        tx = conn.transaction()
        await tx.start()
        try:  # one transaction: now() is one instant for every statement in it
            await conn.executemany(
                """INSERT INTO contacts (campaign_id, row_no, phone_e164, timezone,
                                         jurisdiction, next_attempt_at, priority, attempts)
                   VALUES ($1, $2, $3, $4, $5, now() + make_interval(hours => $6), $7, $8)""",
                [
                    (PROPERTY_CAMPAIGN, n, f"+9195{n:08d}", *person)
                    for n, person in enumerate(people, start=2)
                ],
            )
            parameters = (1000, *rules.sql_parameters(), None)
            due = [r["id"] for r in await conn.fetch(_DUE_IDS, PROPERTY_CAMPAIGN, *parameters)]
            every = await contacts.lock_due(conn, PROPERTY_CAMPAIGN, 1000, rules)
            assert sorted(r["id"] for r in every) == sorted(due)
            first = await contacts.lock_due(conn, PROPERTY_CAMPAIGN, batch, rules)
            assert [r["id"] for r in first] == due[:batch]
        finally:
            await tx.rollback()

    yield lambda drawn: loop.run_until_complete(check(drawn))
    loop.run_until_complete(conn.close())
    loop.close()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawn=picks)
def test_the_pick_by_open_zone_takes_exactly_the_due_contacts(pick_checker, drawn) -> None:
    """For any campaign zone and hours, laws, and contacts in any zones (one, two or none),
    jurisdictions, retry delays, priorities and attempt counts, the pick that asks only the
    open zones and reads by groups takes exactly the contacts the one definition of due
    (db.due) finds due (the zones' and groups' reads drop none of them), and a batch of any
    size is the first of them in dialing order."""
    pick_checker(drawn)
