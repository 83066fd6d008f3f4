"""The circuit breaker pauses a campaign whose attempts mostly fail, and says why; a campaign
whose goal is met is completed, for every process."""

import subprocess
from pathlib import Path

from dialer.campaign_control import rest_tired_caller_ids, trip_breaker_if_failing
from dialer.campaign_spec import load_campaign_file
from dialer.campaigns import from_row
from tests.callbacks.test_callbacks import new_attempt
from tests.dispatch.test_end_to_end import FAST_CALLS, env_for, load
from tests.processes import (
    background,
    dialer_command,
    free_port,
    sim_provider,
    wait_for_http,
    write_campaign,
    write_config,
)


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


def run_together(tmp_path: Path, env: dict, processes: int, campaign: str) -> list[int]:
    """`dialer run CAMPAIGN --wait` in several processes at once; their exit codes."""
    runs = [
        subprocess.Popen(
            dialer_command("run", campaign, "--wait"),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"run{i}.log").open("wb"),
        )
        for i in range(processes)
    ]
    return [run.wait(timeout=120) for run in runs]


async def test_a_goal_met_completes_the_campaign_for_every_process(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """stop_after = { completed = 8 }: two `dialer run` processes share the campaign; once 8
    calls were answered it is `completed` with the reason, both runs end with exit 0 (the
    contacts left are not work left), nothing more is claimed, and only calls already in
    flight may go past the goal (at most the account's channels)."""
    port = free_port()
    with sim_provider(tmp_path, "--rate", "20/s", "--channels", "4", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=4, port=port)
        env = env_for(own_database_url, config)
        load(
            tmp_path,
            env,
            write_campaign(tmp_path, "goal", 200, extra="stop_after = { completed = 8 }"),
        )
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
            wait_for_http(f"http://127.0.0.1:{port}/healthz")
            codes = run_together(tmp_path, env, 2, "goal")
    logs = [(tmp_path / f"run{i}.log").read_text()[-2000:] for i in range(2)]
    assert codes == [0, 0], logs
    row = await own_db.fetchrow("SELECT status, status_reason FROM campaigns WHERE name = 'goal'")
    assert row["status"] == "completed" and "goal reached" in row["status_reason"], dict(row)
    completed = await own_db.fetchval("SELECT count(*) FROM attempts WHERE outcome = 'completed'")
    assert 8 <= completed <= 8 + 4, completed
    live = await own_db.fetchval("SELECT count(*) FROM attempts WHERE outcome IS NULL")
    waiting = await own_db.fetchval("SELECT count(*) FROM contacts WHERE state = 'pending'")
    assert live == 0 and waiting > 100  # nothing half-done; most contacts were never needed


async def test_a_number_people_stop_answering_rests_for_the_day(db, tmp_path: Path) -> None:
    """rest_caller_id_below = 0.1: a caller id answered 4 times in 60 settled attempts today
    rests; one answered 20 times in 60 does not; one with 40 settled is not judged yet."""
    spec = load_campaign_file(
        write_campaign(tmp_path, "tired", 1, extra="rest_caller_id_below = 0.1")
    ).spec.model_copy(update={"caller_id": ["+918047112233", "+918047112234", "+918047112235"]})
    campaign_id = await db.fetchval(
        "INSERT INTO campaigns (name, account, spec) VALUES ('tired', 'sim-main', $1) RETURNING id",
        spec.to_json(),
    )
    contact = await db.fetchval(
        "INSERT INTO contacts (campaign_id, row_no, phone_e164, state) VALUES ($1, 2,"
        " '+919845099999', 'done') RETURNING id",
        campaign_id,
    )
    figures = {"+918047112233": (60, 4), "+918047112234": (60, 20), "+918047112235": (40, 0)}
    attempt_no = 0
    for caller, (settled, answered) in figures.items():
        for n in range(settled):
            attempt_no += 1
            await db.execute(
                """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                                         outcome, phone_e164, caller_id, requested_at, ended_at)
                   VALUES ($1, $2, 'sim-main', $3, $4, $4, '+919845099999', $5, now(), now())""",
                contact,
                campaign_id,
                attempt_no,
                "completed" if n < answered else "no-answer",
                caller,
            )
    row = await db.fetchrow(
        "SELECT id, name, account, spec FROM campaigns WHERE id = $1", campaign_id
    )
    assert await rest_tired_caller_ids(db, from_row(row)) == {"+918047112233"}
    health = {
        r["caller_id"]: r
        for r in await db.fetch("SELECT * FROM caller_id_health WHERE period = 'day'")
    }
    for caller, (settled, answered) in figures.items():  # the view, from the raw rows
        assert health[caller]["attempts"] == settled
        assert float(health[caller]["answer_rate"]) == round(answered / settled, 4)
