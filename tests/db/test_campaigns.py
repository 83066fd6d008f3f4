"""The campaign row's lock (dialer.db.campaigns.lock_by_name): what it keeps out, what not."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from dialer.db import campaigns
from dialer.db.connect import connect
from tests.db.lock_cuts import until_waiting_on_a_lock


async def _seed(conn: asyncpg.Connection) -> tuple[int, int]:
    """An account, a campaign and one contact: (campaign id, contact id)."""
    await conn.execute(
        "INSERT INTO accounts (name, kind, rate_per_s, channels) VALUES ('held', 'sim', 10, 5)"
    )
    campaign = await conn.fetchval(
        "INSERT INTO campaigns (name, account, spec) VALUES ('held', 'held', '{}') RETURNING id"
    )
    contact = await conn.fetchval(
        """INSERT INTO contacts (campaign_id, row_no, phone_e164)
           VALUES ($1, 1, '+919800000001') RETURNING id""",
        campaign,
    )
    return campaign, contact


async def test_a_campaign_held_by_a_load_keeps_other_loads_out_but_can_be_dialed(
    own_database_url: str,
) -> None:
    """A load holds its campaign's row to its commit, so no other load (or pause, resume,
    cancel) adds to the campaign meanwhile. It must not hold off the attempts dialing writes
    for that campaign: each one's foreign-key check takes KEY SHARE on the row, and a
    FOR UPDATE would make it wait for the whole load (past lock_timeout: `dialer run` took it
    for the database being away, and a load longer than database_outage_limit ended it)."""
    holder = await asyncpg.connect(own_database_url)
    dialing = await asyncpg.connect(own_database_url)
    other_load = await asyncpg.connect(own_database_url)
    try:
        campaign, contact = await _seed(holder)
        loading = holder.transaction()
        await loading.start()
        assert (await campaigns.lock_by_name(holder, "held"))["id"] == campaign
        await dialing.execute("SET lock_timeout = '5s'")
        attempt = await dialing.fetchval(
            """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                                     phone_e164, slot)
               VALUES ($1, $2, 'held', 1, 'reserved', '+919800000001', 0) RETURNING id""",
            contact,
            campaign,
        )
        assert attempt is not None
        await other_load.execute("SET lock_timeout = '100ms'")
        with pytest.raises(asyncpg.exceptions.LockNotAvailableError):
            async with other_load.transaction():
                await campaigns.lock_by_name(other_load, "held")
        await loading.rollback()
    finally:
        for conn in (holder, dialing, other_load):
            await conn.close()


async def test_a_campaign_given_contacts_by_a_load_is_not_completed_under_it(
    own_database_url: str,
) -> None:
    """`dialer run` finds every contact final and completes the campaign while a load is
    adding contacts to it: it waits for the load, then sees what it added and leaves the
    campaign active. (Waiting inside its UPDATE, PostgreSQL re-checked the row but read the
    contacts as before the load, and the new contacts were left in a completed campaign.)"""
    loading_conn, finishing, watcher = [await connect(own_database_url) for _ in range(3)]
    try:
        campaign, contact = await _seed(loading_conn)
        await loading_conn.execute("UPDATE contacts SET state = 'done' WHERE id = $1", contact)
        loading = loading_conn.transaction()
        await loading.start()
        await campaigns.lock_by_name(loading_conn, "held")
        await loading_conn.execute(
            """INSERT INTO contacts (campaign_id, row_no, phone_e164)
               VALUES ($1, 2, '+919800000002')""",
            campaign,
        )
        completing = asyncio.ensure_future(campaigns.complete_finished(finishing, [campaign]))
        await until_waiting_on_a_lock(watcher, finishing, completing, "the completion to wait")
        await loading.commit()
        await completing
        assert await watcher.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign) == (
            "active"
        )
    finally:
        for conn in (loading_conn, finishing, watcher):
            await conn.close()
