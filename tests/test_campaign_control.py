"""The circuit breaker pauses a campaign whose attempts mostly fail, and says why."""

from pathlib import Path

from dialer.campaign_control import trip_breaker_if_failing
from tests.callbacks.test_callbacks import new_attempt


async def settle_all(db, campaign_id: int, outcome: str) -> None:
    await db.execute(
        """UPDATE attempts SET state = $2, outcome = $2, slot = NULL, ended_at = now()
           WHERE campaign_id = $1 AND outcome IS NULL""",
        campaign_id,
        outcome,
    )


async def test_breaker_trips_on_mostly_failed_attempts(db, tmp_path: Path) -> None:
    first = await new_attempt(db, tmp_path)
    campaign = await db.fetchval("SELECT campaign_id FROM attempts WHERE id = $1", first)
    contact = await db.fetchval("SELECT contact_id FROM attempts WHERE id = $1", first)
    await settle_all(db, campaign, "completed")
    for attempt_no in range(2, 32):  # 30 more attempts on the same contact, all failed
        await db.execute(
            """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                                     phone_e164, outcome, ended_at)
               SELECT $1, $2, 'sim-main', $3, 'failed', phone_e164, 'failed', now()
               FROM contacts WHERE id = $1""",
            contact,
            campaign,
            attempt_no,
        )
    reason = await trip_breaker_if_failing(db, campaign)
    assert reason is not None and "30 of the last 31" in reason
    row = await db.fetchrow("SELECT status, status_reason FROM campaigns WHERE id = $1", campaign)
    assert (row["status"], row["status_reason"]) == ("paused", reason)
    assert await trip_breaker_if_failing(db, campaign) is None  # already paused: nothing new


async def test_breaker_leaves_healthy_or_young_campaigns_alone(db, tmp_path: Path) -> None:
    attempt = await new_attempt(db, tmp_path)
    campaign = await db.fetchval("SELECT campaign_id FROM attempts WHERE id = $1", attempt)
    await settle_all(db, campaign, "failed")  # one failure of one attempt: too few to judge
    assert await trip_breaker_if_failing(db, campaign) is None
    assert await db.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign) == "active"
