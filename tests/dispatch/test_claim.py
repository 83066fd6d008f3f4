"""The send compare-and-set: nothing is sent after the calling window it was claimed in closed."""

from datetime import timedelta
from pathlib import Path

from dialer.dispatch.claim import SEND, VOID, begin_dial
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


async def test_no_send_after_the_window_closed(db, tmp_path: Path) -> None:
    closed = await reserve(db, tmp_path, -1.0)
    still_open = await reserve(db, tmp_path, 60.0)
    budget = timedelta(seconds=30)
    verdicts = await begin_dial(
        db,
        "sim-main",
        [(closed, "+918047112233", budget), (still_open, "+918047112233", budget)],
        1.0,
    )
    assert verdicts == {closed: VOID, still_open: SEND}
    states = dict(
        await db.fetch(
            "SELECT id, state FROM attempts WHERE id = ANY($1::bigint[])", [closed, still_open]
        )
    )
    assert states == {closed: "reserved", still_open: "dialing"}
