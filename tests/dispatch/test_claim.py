"""The send compare-and-set: nothing is sent after the calling window it was claimed in closed."""

from datetime import timedelta
from pathlib import Path

from dialer.campaigns import from_row
from dialer.dispatch.claim import SEND, VOID, Claim, begin_dial, claim
from dialer.dispatch.limiter import AccountLimits
from tests.callbacks.test_callbacks import new_attempt


async def reserve(db, tmp_path: Path, dial_before_s: float) -> int:
    attempt = await new_attempt(db, tmp_path)
    await db.execute(
        """UPDATE attempts SET state = 'reserved', lease_expires_at = now() + interval '1 min',
               dial_before = now() + make_interval(secs => $2)
           WHERE id = $1""",
        attempt,
        dial_before_s,
    )
    await db.execute(
        """INSERT INTO accounts (name, kind, rate_per_s, channels)
           VALUES ('sim-main', 'sim', 100, 10) ON CONFLICT (name) DO NOTHING"""
    )
    return attempt


async def clock_moved_by(db, send) -> timedelta:
    """How far `send()` moved the account's clock, started half a second ahead of now (so
    its next slot is `tat` itself, and within `early_s` of 1 s)."""
    await db.execute("UPDATE accounts SET tat = now() + interval '500 ms' WHERE name = 'sim-main'")
    before = await db.fetchval("SELECT tat FROM accounts WHERE name = 'sim-main'")
    await send()
    return await db.fetchval("SELECT tat FROM accounts WHERE name = 'sim-main'") - before


async def test_no_send_after_the_window_closed(db, tmp_path: Path) -> None:
    """Of two attempts, the one whose window closed is void and takes no slot: the clock moves
    by one interval (100/s: 10 ms), not two."""
    closed = await reserve(db, tmp_path, -1.0)
    still_open = await reserve(db, tmp_path, 60.0)
    verdicts = {}

    async def send() -> None:
        verdicts.update(
            await begin_dial(
                db,
                "sim-main",
                [(closed, "+918047112233", 20, 60), (still_open, "+918047112233", 20, 60)],
                1.0,
            )
        )

    assert await clock_moved_by(db, send) == timedelta(milliseconds=10)
    assert verdicts == {closed: VOID, still_open: SEND}
    states = dict(
        await db.fetch(
            "SELECT id, state FROM attempts WHERE id = ANY($1::bigint[])", [closed, still_open]
        )
    )
    assert states == {closed: "reserved", still_open: "dialing"}


async def test_every_attempt_sent_moves_the_clock_by_its_slot(db, tmp_path: Path) -> None:
    """Two attempts committed `dialing` together take two slots: the clock (set in the same
    statement as their compare-and-set) moves by two intervals."""
    first, second = await reserve(db, tmp_path, 60.0), await reserve(db, tmp_path, 60.0)

    async def send() -> None:
        verdicts = await begin_dial(
            db,
            "sim-main",
            [(first, "+918047112233", 20, 60), (second, "+918047112233", 20, 60)],
            1.0,
        )
        assert verdicts == {first: SEND, second: SEND}

    assert await clock_moved_by(db, send) == timedelta(milliseconds=20)


async def test_a_lead_commits_slots_ahead_and_says_when_each_may_leave(db, tmp_path: Path) -> None:
    """The account's next slot opens 100 ms from now: with no lead the attempt waits for it;
    with a lead of 200 ms (a commit that long) it is committed now and told to leave `early_s`
    before its slot, not at once."""
    from dialer.dispatch.claim import DialAction

    early_s = 0.02
    waiting = await reserve(db, tmp_path, 60.0)
    await db.execute("UPDATE accounts SET tat = now() + interval '100 ms' WHERE name = 'sim-main'")
    verdicts = await begin_dial(db, "sim-main", [(waiting, "+918047112233", 20, 60)], early_s)
    assert verdicts[waiting].action == DialAction.WAIT
    await db.execute("UPDATE accounts SET tat = now() + interval '100 ms' WHERE name = 'sim-main'")
    verdicts = await begin_dial(
        db, "sim-main", [(waiting, "+918047112233", 20, 60)], early_s, lead_s=0.2
    )
    assert verdicts[waiting].action == DialAction.SEND
    assert 0.0 < verdicts[waiting].wait_s <= 0.1 - early_s
    assert await db.fetchval("SELECT state FROM attempts WHERE id = $1", waiting) == "dialing"


async def test_a_contact_spanning_zones_is_dialed_only_when_all_are_open(
    run_cli, db, tmp_path: Path
) -> None:
    """Window open in New York now, closed in Los Angeles: the New York contact is due, the one
    whose number may be in either (its zones "America/Los_Angeles America/New_York") is not."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from dialer.campaigns import from_row
    from dialer.dispatch.claim import claim, register_account
    from dialer.dispatch.limiter import AccountLimits
    from tests.processes import write_campaign

    hour = datetime.now(ZoneInfo("America/New_York")).hour
    window = f'start = "{max(hour - 1, 0):02d}:00", end = "{min(hour + 1, 23):02d}:59"'
    rows = ["+12125550101,New Yorker,", "+12125550102,Either Coast,"]
    path = write_campaign(tmp_path, "two-zones", 0, window=window, csv_rows=rows)
    (tmp_path / "dialer.toml").write_text(
        '[accounts.sim-main]\nkind = "sim"\nbase_url = "http://127.0.0.1:1"\nsecret = "s"\n'
        'rate = "10/s"\nchannels = 2\n'
    )
    assert run_cli("campaign", "load", str(path)).exit_code == 0
    # What the loader writes for a number that may be on either coast:
    await db.execute(
        """UPDATE contacts SET timezone = CASE WHEN name = 'New Yorker' THEN 'America/New_York'
                                 ELSE 'America/Los_Angeles America/New_York' END
           WHERE campaign_id = (SELECT id FROM campaigns WHERE name = 'two-zones')"""
    )
    dry = run_cli("run", "two-zones", "--dry-run")
    assert "due now                  1" in dry.stdout and "outside calling window   1" in dry.stdout
    campaign = from_row(await db.fetchrow("SELECT * FROM campaigns WHERE name = 'two-zones'"))
    limits = AccountLimits("two-zone-account", "sim", 100.0, 1.0, 5)
    await register_account(db, limits)
    claimed = (
        await claim(db, limits, [campaign], max_batch=10, horizon_s=1.0, dial_cap=5)
    ).attempts
    assert [c.phone_e164 for c in claimed] == ["+12125550101"]


async def four_channels(run_cli, db, tmp_path: Path, name: str, numbers: list[str]):
    """A campaign of `numbers` due now (New York, window open) on an account of four channels:
    a function that claims `batch` and says the channel slots given, in order."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from dialer.campaigns import from_row
    from dialer.dispatch.claim import claim, register_account
    from dialer.dispatch.limiter import AccountLimits
    from tests.processes import write_campaign

    hour = datetime.now(ZoneInfo("America/New_York")).hour
    window = f'start = "{max(hour - 1, 0):02d}:00", end = "{min(hour + 1, 23):02d}:59"'
    rows = [f"{number},Caller {n}," for n, number in enumerate(numbers)]
    path = write_campaign(tmp_path, name, 0, window=window, csv_rows=rows)
    assert run_cli("campaign", "load", str(path)).exit_code == 0
    campaign = from_row(await db.fetchrow("SELECT * FROM campaigns WHERE name = $1", name))
    limits = AccountLimits(f"{name}-account", "sim", 1000.0, 1.0, 4)
    await register_account(db, limits)

    async def slots_of_a_claim(batch: int) -> list[int]:
        made = await claim(db, limits, [campaign], max_batch=batch, horizon_s=1.0, dial_cap=5)
        claimed = made.attempts
        return [
            await db.fetchval("SELECT slot FROM attempts WHERE id = $1", c.attempt_id)
            for c in claimed
        ]

    return slots_of_a_claim


async def test_claims_give_channel_slots_around_the_ring_from_the_last_one_given(
    run_cli, db, tmp_path: Path
) -> None:
    """Four channels: a claim of two takes slots 0 and 1, the next 2 and 3 (the account's cursor
    moved on); once the call in slot 0 ended, the next claim finds slot 0 by going round."""
    numbers = [f"+1212555020{n}" for n in range(6)]  # none live elsewhere
    slots_of_a_claim = await four_channels(run_cli, db, tmp_path, "ring", numbers)

    assert await slots_of_a_claim(2) == [0, 1]
    assert await slots_of_a_claim(2) == [2, 3]
    assert await db.fetchval("SELECT next_slot FROM accounts WHERE name = 'ring-account'") == 0
    assert await slots_of_a_claim(2) == []  # every channel held, and the claim says so:
    campaign = from_row(await db.fetchrow("SELECT * FROM campaigns WHERE name = 'ring'"))
    limits = AccountLimits("ring-account", "sim", 1000.0, 1.0, 4)
    made = await claim(db, limits, [campaign], max_batch=2, horizon_s=1.0, dial_cap=5)
    assert made == Claim([], channels_full=True)
    await db.execute(
        """UPDATE attempts SET state = 'completed', outcome = 'completed', slot = NULL
           WHERE account = 'ring-account' AND slot = 0"""
    )
    assert await slots_of_a_claim(2) == [0]


async def test_a_claim_that_takes_the_last_free_channels_says_every_channel_is_live(
    run_cli, db, tmp_path: Path
) -> None:
    """Four channels: a claim of two leaves two free; the next claim of two takes them and says
    every channel is live, so its loop waits for a call's end instead of asking again."""
    numbers = [f"+1212555050{n}" for n in range(4)]  # none live elsewhere
    await four_channels(run_cli, db, tmp_path, "fill", numbers)
    campaign = from_row(await db.fetchrow("SELECT * FROM campaigns WHERE name = 'fill'"))
    limits = AccountLimits("fill-account", "sim", 1000.0, 1.0, 4)
    first = await claim(db, limits, [campaign], max_batch=2, horizon_s=1.0, dial_cap=5)
    assert len(first.attempts) == 2 and not first.channels_full
    second = await claim(db, limits, [campaign], max_batch=2, horizon_s=1.0, dial_cap=5)
    assert len(second.attempts) == 2 and second.channels_full


async def test_the_cursor_outlives_the_claim_that_moved_it(run_cli, db, tmp_path: Path) -> None:
    """Slots 0 and 1 given, then the call in slot 0 ended: the next claim gives slot 2, after
    the last one given, not the lowest free one (the cursor is stored with the account)."""
    numbers = [f"+1212555030{n}" for n in range(4)]  # none live elsewhere
    slots_of_a_claim = await four_channels(run_cli, db, tmp_path, "cursor", numbers)

    assert await slots_of_a_claim(2) == [0, 1]
    await db.execute(
        """UPDATE attempts SET state = 'completed', outcome = 'completed', slot = NULL
           WHERE account = 'cursor-account' AND slot = 0"""
    )
    assert await slots_of_a_claim(1) == [2]


async def test_a_claim_picks_its_contacts_before_it_takes_the_account_row(
    run_cli, db, database_url: str, tmp_path: Path
) -> None:
    """Every sender of an account waits for its row, so a claim picks and checks its contacts
    first and takes the row only to give them slots. Here the row is held while a claim of four
    runs: the claim picks four contacts and waits; the holder claims one of the others in its
    own transaction and commits; the waiting claim then gives the three channels left, and its
    fourth contact stays as it was (pending, no attempt counted)."""
    import asyncio

    from dialer.campaigns import from_row
    from dialer.db.connect import connect
    from dialer.dispatch.claim import claim
    from dialer.dispatch.limiter import AccountLimits

    numbers = [f"+1212555040{n}" for n in range(6)]  # none live elsewhere
    await four_channels(run_cli, db, tmp_path, "picking", numbers)
    campaign = from_row(await db.fetchrow("SELECT * FROM campaigns WHERE name = 'picking'"))
    limits = AccountLimits("picking-account", "sim", 1000.0, 1.0, 4)
    holder, claimer = await connect(database_url), await connect(database_url)
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT 1 FROM accounts WHERE name = 'picking-account' FOR UPDATE")
        claiming = asyncio.create_task(
            claim(claimer, limits, [campaign], max_batch=4, horizon_s=1.0, dial_cap=5)
        )
        waiter = claimer.get_server_pid()
        while not await db.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", waiter
        ):
            assert not claiming.done(), claiming.result()  # it must wait, not give up
            await asyncio.sleep(0.01)
        async with db.transaction():  # the contacts it picked are locked by it already
            free = await db.fetch(
                "SELECT id FROM contacts WHERE campaign_id = $1 FOR UPDATE SKIP LOCKED",
                campaign.id,
            )
        assert len(free) == 2
        first = (
            await claim(holder, limits, [campaign], max_batch=1, horizon_s=1.0, dial_cap=5)
        ).attempts
        await holding.commit()
        claimed = (await asyncio.wait_for(claiming, 30)).attempts
    finally:
        await holder.close()
        await claimer.close()
    assert len(first) == 1 and len(claimed) == 3
    assert {c.contact_id for c in claimed}.isdisjoint({r["id"] for r in free})
    slots = await db.fetch(
        "SELECT slot FROM attempts WHERE account = 'picking-account' ORDER BY slot"
    )
    assert [r["slot"] for r in slots] == [0, 1, 2, 3]
    left = await db.fetch(
        "SELECT state, attempts FROM contacts WHERE campaign_id = $1 AND id <> ALL($2::bigint[])",
        campaign.id,
        [c.contact_id for c in [*first, *claimed]],
    )
    assert [(r["state"], r["attempts"]) for r in left] == [("pending", 0), ("pending", 0)]
