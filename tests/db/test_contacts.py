"""The claim's pick (db.contacts.lock_due): the due contacts of the zones open now, in dialing
order across zones, reading no contact of a zone whose window is closed."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from dialer.campaign_spec import CampaignSpec
from dialer.db import contacts
from dialer.policy.window import CallingRules


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


async def test_every_zone_closed_reads_nothing_and_picks_nothing(db) -> None:
    campaign = await campaign_with(db, "all-closed", f"'{CLOSED}'", 20000)
    picked, read = await pick(db, campaign, 50, OPEN)
    assert picked == [] and read < 50, read


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
