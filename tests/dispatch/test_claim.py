"""The claim and the send compare-and-set: each send gets its request slot once, at the claim;
a send on its slot takes no lock on the account's row; a slot that passed or that a 429's hold
covers is given again; nothing is sent after the calling window it was claimed in closed."""

import asyncio
import itertools
from pathlib import Path

import asyncpg

from dialer.dispatch.claim import SEND, VOID, DialAction, begin_dial
from tests.callbacks.test_callbacks import new_attempt


async def reserve(db, tmp_path: Path, dial_before_s: float, slot_in_s: float | None = None) -> int:
    """A reserved attempt on account sim-main, its request slot `slot_in_s` from now (None:
    none, as one reserved by an older version)."""
    attempt = await new_attempt(db, tmp_path)
    await db.execute(
        """UPDATE attempts SET state = 'reserved', lease_expires_at = now() + interval '1 min',
               dial_before = now() + make_interval(secs => $2),
               send_at = now() + make_interval(secs => $3)
           WHERE id = $1""",
        attempt,
        dial_before_s,
        slot_in_s,
    )
    await db.execute(
        """INSERT INTO accounts (name, kind, rate_per_s, channels)
           VALUES ('sim-main', 'sim', 100, 10) ON CONFLICT (name) DO NOTHING"""
    )
    return attempt


async def test_no_send_after_the_window_closed(db, tmp_path: Path) -> None:
    closed = await reserve(db, tmp_path, -1.0)
    still_open = await reserve(db, tmp_path, 60.0)
    verdicts = await begin_dial(
        db,
        "sim-main",
        [(closed, "+918047112233", 20, 60), (still_open, "+918047112233", 20, 60)],
        1.0,
    )
    assert verdicts == {closed: VOID, still_open: SEND}
    states = dict(
        await db.fetch(
            "SELECT id, state FROM attempts WHERE id = ANY($1::bigint[])", [closed, still_open]
        )
    )
    assert states == {closed: "reserved", still_open: "dialing"}


async def test_a_lead_commits_slots_ahead_and_says_when_each_may_leave(db, tmp_path: Path) -> None:
    """The account's next slot opens 100 ms from now: with no lead the attempt waits for it;
    with a lead of 200 ms (a commit that long) it is committed now and told to leave `early_s`
    before its slot, not at once."""
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
    claimed = await claim(db, limits, [campaign], max_batch=10, horizon_s=1.0, dial_cap=5)
    assert [c.phone_e164 for c in claimed] == ["+12125550101"]


async def test_a_send_on_its_slot_takes_no_lock_on_the_account(db, database_url, tmp_path) -> None:
    """While another process holds the account's row (a long claim), an attempt whose slot the
    claim gave is committed `dialing` at once, told to leave `early_s` before its slot."""
    attempt = await reserve(db, tmp_path, 60.0, slot_in_s=0.5)
    other = await asyncpg.connect(database_url)
    try:
        holding = other.transaction()
        await holding.start()
        await other.execute("SELECT 1 FROM accounts WHERE name = 'sim-main' FOR UPDATE")
        await db.execute("SET lock_timeout = '2s'")  # were it to wait for the row: an error
        try:
            verdicts = await asyncio.wait_for(
                begin_dial(db, "sim-main", [(attempt, "+918047112233", 20, 60)], 0.1, 0.5), 10
            )
        finally:
            await db.execute("RESET lock_timeout")
            await holding.rollback()
    finally:
        await other.close()
    assert verdicts[attempt].action == DialAction.SEND
    assert 0.2 < verdicts[attempt].wait_s <= 0.4  # about 0.5 - 0.1
    assert await db.fetchval("SELECT state FROM attempts WHERE id = $1", attempt) == "dialing"


async def test_a_passed_slot_is_given_again_after_the_clock_s_next(db, tmp_path) -> None:
    """A process that stalled past its attempt's slot does not send on it late (it would bunch
    with the slots after it): the attempt gets the clock's next slot, and waits for it."""
    passed = await reserve(db, tmp_path, 60.0, slot_in_s=-0.2)
    unslotted = await reserve(db, tmp_path, 60.0, slot_in_s=None)
    await db.execute("UPDATE accounts SET tat = now() + interval '2 s' WHERE name = 'sim-main'")
    ready = [(passed, "+918047112233", 20, 60), (unslotted, "+918047112233", 20, 60)]
    verdicts = await begin_dial(db, "sim-main", ready, 0.05)
    assert {v.action for v in verdicts.values()} == {DialAction.WAIT}
    assert 1.9 < verdicts[passed].wait_s < verdicts[unslotted].wait_s < 2.5
    rows = await db.fetch(
        """SELECT a.state, extract(epoch FROM a.send_at - now()) AS slot_in,
                  extract(epoch FROM c.tat - now()) AS tat_in
           FROM attempts a JOIN accounts c ON c.name = a.account
           WHERE a.id = ANY($1::bigint[]) ORDER BY a.id""",
        [passed, unslotted],
    )
    assert [r["state"] for r in rows] == ["reserved", "reserved"]
    assert 1.9 < rows[0]["slot_in"] < rows[1]["slot_in"] < rows[0]["tat_in"]


async def test_a_429_s_hold_takes_back_the_slots_it_covers(db, tmp_path) -> None:
    """A 429 recorded after the claim holds the account past an attempt's slot: the slot is
    not used; the attempt gets one after the hold."""
    from dialer.dispatch.claim import push_back_rate

    attempt = await reserve(db, tmp_path, 600.0, slot_in_s=0.3)
    await db.execute("UPDATE accounts SET tat = now(), held_until = NULL WHERE name = 'sim-main'")
    await push_back_rate(db, "sim-main", 5.0)
    verdicts = await begin_dial(db, "sim-main", [(attempt, "+918047112233", 20, 60)], 1.0)
    assert verdicts[attempt].action == DialAction.WAIT
    assert 3.5 < verdicts[attempt].wait_s < 5.5
    slot_in = await db.fetchval(
        "SELECT extract(epoch FROM send_at - now()) FROM attempts WHERE id = $1", attempt
    )
    assert slot_in > 4.5


async def test_a_claim_gives_each_attempt_the_clock_s_next_slot_once(
    run_cli, db, tmp_path: Path
) -> None:
    """Two claims in a row: the first takes the slots within its horizon, one interval apart,
    and moves the account's clock past them; the second takes the ones after, none twice."""
    from dialer.campaigns import from_row
    from dialer.dispatch.claim import claim, register_account
    from dialer.dispatch.limiter import AccountLimits
    from tests.processes import write_campaign

    path = write_campaign(tmp_path, "slotted", 12, account="slots-account")
    (tmp_path / "dialer.toml").write_text(
        '[accounts.slots-account]\nkind = "sim"\nbase_url = "http://127.0.0.1:1"\nsecret = "s"\n'
        'rate = "10/s"\nchannels = 50\n'
    )
    assert run_cli("campaign", "load", str(path)).exit_code == 0
    campaign = from_row(await db.fetchrow("SELECT * FROM campaigns WHERE name = 'slotted'"))
    limits = AccountLimits("slots-account", "sim", 10.0, 1.0, 50)
    await register_account(db, limits)
    first = await claim(db, limits, [campaign], max_batch=50, horizon_s=0.5, dial_cap=5)
    second = await claim(db, limits, [campaign], max_batch=50, horizon_s=0.5, dial_cap=5)
    interval = 1 / limits.aimed_rate_per_s
    assert len(first) == 5  # slots at 0, 0.11, ..., 0.44 s: within the half second
    assert second == []  # the clock is past the horizon now
    third = await claim(db, limits, [campaign], max_batch=50, horizon_s=1.0, dial_cap=5)
    assert 4 <= len(third) <= 6  # 0.55 .. 0.88 s from the first claim, and what time passed
    rows = await db.fetch(
        """SELECT extract(epoch FROM send_at - min(send_at) OVER ())::float8 AS at
           FROM attempts WHERE account = 'slots-account' ORDER BY send_at"""
    )
    slots = [r["at"] for r in rows]
    assert len(slots) == 5 + len(third)
    assert all(abs(b - a - interval) < 0.02 for a, b in itertools.pairwise(slots))
    tat_in = await db.fetchval(
        """SELECT extract(epoch FROM tat - (SELECT max(send_at) FROM attempts
                                           WHERE account = 'slots-account'))::float8
           FROM accounts WHERE name = 'slots-account'"""
    )
    assert abs(tat_in - interval) < 1e-6
