"""The dispatcher's store on PostgreSQL (dispatch.pg_store): what a claim round reads, and what
it keeps from one round to the next."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from dialer.campaigns import CampaignCache, from_row
from dialer.db.campaigns import CAMPAIGN_STATUS
from dialer.dispatch.pg_store import PgDispatchStore
from dialer.wakeups import Wakeups, listen
from tests.callbacks.test_callbacks import new_attempt

HEARD_WITHIN_S = 30.0  # a bound for a busy machine; a notice comes in milliseconds


async def test_active_campaigns_are_kept_until_a_status_change_is_said(
    own_db: asyncpg.Connection, own_database_url: str, tmp_path: Path
) -> None:
    """A round reads which campaigns are active and the next rounds keep it while notices are
    heard; a status change says so at its commit (migration 0037), and the next round reads
    again; a control round always reads; without a listener every round reads."""
    attempt = await new_attempt(own_db, tmp_path)
    row = await own_db.fetchrow(
        "SELECT k.* FROM campaigns k JOIN attempts a ON a.campaign_id = k.id WHERE a.id = $1",
        attempt,
    )
    campaign = from_row(row)
    pool = await asyncpg.create_pool(own_database_url, min_size=0, max_size=2)
    statuses = Wakeups()
    listening = asyncio.create_task(listen(pool, {CAMPAIGN_STATUS: statuses}, again_s=0.01))
    store = PgDispatchStore(pool, CampaignCache(), statuses=statuses)

    async def active(*, control: bool = False) -> frozenset[int]:
        return (await store.campaign_facts([campaign], control=control)).active

    async def set_status(status: str, *, said: bool) -> None:
        if not said:
            await own_db.execute("ALTER TABLE campaigns DISABLE TRIGGER campaigns_status_said")
        await own_db.execute("UPDATE campaigns SET status = $2 WHERE id = $1", campaign.id, status)
        if not said:
            await own_db.execute("ALTER TABLE campaigns ENABLE TRIGGER campaigns_status_said")

    try:
        await asyncio.wait_for(statuses.listening.wait(), HEARD_WITHIN_S)
        assert await active() == {campaign.id}
        await set_status("paused", said=False)  # its notice held back: the round keeps
        assert await active() == {campaign.id}
        assert await active(control=True) == frozenset()  # a control round reads anyway

        await set_status("active", said=True)
        assert await statuses.wait("", HEARD_WITHIN_S)
        assert await active() == {campaign.id}  # told: read again
        await set_status("paused", said=True)
        assert await statuses.wait("", HEARD_WITHIN_S)
        assert await active() == frozenset()

        listening.cancel()  # no listener: nothing kept, each round reads
        await asyncio.gather(listening, return_exceptions=True)
        assert not statuses.listening.is_set()
        await set_status("active", said=False)
        assert await active() == {campaign.id}
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await pool.close()
