"""An operator's bad day, with real processes and signals: whatever stops a `dialer run` at the
worst moment, nobody is called twice by mistake and every outcome is the provider's.

The witness is the sim provider's own record of the calls it placed: per number, its calls
must equal the attempts that reached it (those with a call id), and no contact may be called
again after a completed call.
"""

# ruff: noqa: ASYNC220, ASYNC221

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from dialer.db import campaigns
from tests.conftest import database_name, database_url_for
from tests.dispatch.test_end_to_end import FAST_CALLS, env_for, load
from tests.processes import (
    attempts_requested,
    attempts_requested_at,
    background,
    dialer_command,
    free_port,
    sim_provider,
    sim_quiet,
    sim_stats,
    until,
    wait_for_http,
    write_campaign,
    write_config,
)

pytestmark = pytest.mark.timeout(300)


async def check_calls_match_attempts(db: asyncpg.Connection, stats: dict) -> None:
    """Per number, the provider's calls are exactly the attempts that reached it; every call's
    outcome is the provider's; nobody is called after a completed call."""
    attempts = await db.fetch(
        """SELECT id, contact_id, phone_e164, provider_call_id, outcome, requested_at
           FROM attempts ORDER BY id"""
    )
    reached = Counter(a["phone_e164"] for a in attempts if a["provider_call_id"])
    assert dict(reached) == stats["per_number"]
    by_call = {a["provider_call_id"]: a for a in attempts if a["provider_call_id"]}
    for call_id, call in stats["calls"].items():
        attempt = by_call[call_id]
        assert attempt["id"] == call["attempt_id"] and attempt["outcome"] == call["outcome"]
    completed_at: dict[int, object] = {}
    for attempt in attempts:
        if attempt["outcome"] == "completed":
            completed_at.setdefault(attempt["contact_id"], attempt["requested_at"])
    for attempt in attempts:
        first_completed = completed_at.get(attempt["contact_id"])
        if first_completed and attempt["provider_call_id"]:
            assert attempt["requested_at"] <= first_completed, attempt


async def count_is(db: asyncpg.Connection, query: str, wanted: int) -> bool:
    return len(await db.fetch(query)) == wanted


async def wait_until_stopped(pid: int) -> None:
    """Until the process is in state T (stopped by a signal)."""

    def stopped() -> bool:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "T"

    await until(stopped, f"process {pid} to stop")


async def test_a_run_paused_after_its_dialing_commit_never_sends_late(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """SIGSTOP right after the `dialing` commit, for longer than the settle budget: the
    reconciler (in `serve`) closes the attempt `unknown` once no request of it can still leave,
    another run dials the contact again, and on SIGCONT the paused sender refuses to send."""
    serve_port = free_port()
    with sim_provider(tmp_path, "--rate", "20/s", "--channels", "6", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=6, port=serve_port)
        env = env_for(own_database_url, config)
        campaign = write_campaign(tmp_path, "paused", 12, call_limits=("1s", "2s", "1s"))
        load(tmp_path, env, campaign)
        run = dialer_command("run", "paused", "--wait", "--dial-cap", "3")
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
            wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
            with background(
                run, tmp_path, env | {"DIALER_FAULT": "after-dialing-commit"}, tmp_path / "a.log"
            ) as paused:
                await wait_until_stopped(paused.pid)
                stuck = await own_db.fetch(
                    "SELECT id FROM attempts WHERE state = 'dialing' AND provider_call_id IS NULL"
                )
                assert stuck
                other = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, timeout=200)
                closed = await own_db.fetch(
                    "SELECT state, error FROM attempts WHERE id = ANY($1::bigint[])",
                    [r["id"] for r in stuck],
                )
                os.kill(paused.pid, signal.SIGCONT)
                code = await asyncio.to_thread(paused.wait, 60)
            stats = await sim_quiet(sim)  # what anything (wrongly) sent late caused has happened
    log = (tmp_path / "a.log").read_text()
    assert other.returncode == 0, other.stderr.decode()[-2000:]
    assert code == 0, log[-2000:]
    assert {r["state"] for r in closed} == {"unknown"}, closed
    assert all("lists no call to this number" in r["error"] for r in closed)
    assert "past the 10 s send window" in log
    stuck_ids = {r["id"] for r in stuck}
    assert not [c for c in stats["calls"].values() if c["attempt_id"] in stuck_ids]  # never sent
    await check_calls_match_attempts(own_db, stats)
    redialed = await own_db.fetchval(
        """SELECT count(DISTINCT a.contact_id) FROM attempts a JOIN attempts s
               ON s.contact_id = a.contact_id AND s.id = ANY($1::bigint[])
           WHERE a.attempt_no > s.attempt_no AND a.provider_call_id IS NOT NULL""",
        [r["id"] for r in stuck],
    )
    assert redialed == len(stuck)  # each stuck contact was dialed once more, by the other run


async def cut_connections(admin: asyncpg.Connection, database: str) -> int:
    return await admin.fetchval(
        """SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                                 WHERE datname = $1 AND pid <> pg_backend_pid()) t""",
        database,
    )


async def test_a_run_rides_out_lost_connections_and_a_read_only_database(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """Mid-campaign, every connection to the database is cut again and again for 3 s, then
    the database turns read-only for 4 s: both runs and serve go on, and finish the campaign
    with every outcome the provider's."""
    database = database_name(own_database_url)
    admin = await asyncpg.connect(database_url_for("postgres"))
    serve_port = free_port()
    try:
        with sim_provider(tmp_path, "--rate", "20/s", "--channels", "6", *FAST_CALLS) as sim:
            config = write_config(tmp_path, sim, rate="20/s", channels=6, port=serve_port)
            env = env_for(own_database_url, config)
            load(tmp_path, env, write_campaign(tmp_path, "blips", 120))
            await own_db.close()
            run = dialer_command("run", "blips", "--wait", "--dial-cap", "3")
            with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
                wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
                runs = [
                    subprocess.Popen(
                        run,
                        cwd=tmp_path,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=(tmp_path / f"run{i}.log").open("wb"),
                    )
                    for i in range(2)
                ]
                await attempts_requested_at(own_database_url, 10)  # both under way
                cut = 0
                cuts_end = time.monotonic() + 3  # the fault: connections cut for 3 s
                while time.monotonic() < cuts_end:
                    cut += await cut_connections(admin, database)
                    await asyncio.sleep(0.2)
                await asyncio.sleep(1)
                await admin.execute(
                    f'ALTER DATABASE "{database}" SET default_transaction_read_only = on'
                )
                await cut_connections(admin, database)
                await asyncio.sleep(4)  # the fault: read-only for 4 s
                await admin.execute(
                    f'ALTER DATABASE "{database}" RESET default_transaction_read_only'
                )
                await cut_connections(admin, database)
                codes = [await asyncio.to_thread(p.wait, 240) for p in runs]
                stats = await sim_stats(sim)
            serve_log = (tmp_path / "serve.log").read_text()
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
        await admin.close()
    logs = [(tmp_path / f"run{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], [log[-3000:] for log in logs]
    assert cut >= 4
    assert any("database unavailable; retrying" in log for log in logs)
    assert any("database back" in log for log in logs)
    db = await asyncpg.connect(own_database_url)
    try:
        await check_calls_match_attempts(db, stats)
        states = await db.fetch("SELECT DISTINCT state FROM contacts")
        assert {r["state"] for r in states} <= {"done", "exhausted", "failed"}, serve_log[-2000:]
        live = await db.fetchval(
            "SELECT count(*) FROM attempts WHERE state IN"
            " ('reserved', 'dialing', 'accepted', 'ringing', 'in-progress')"
        )
        assert live == 0
    finally:
        await db.close()


def run_to_end(
    tmp_path: Path, env: dict, campaign: str, log: str, *options: str, out: str | None = None
) -> subprocess.Popen:
    return subprocess.Popen(
        dialer_command("run", campaign, "--wait", "--dial-cap", "3", *options),
        cwd=tmp_path,
        env=env,
        stdout=(tmp_path / out).open("wb") if out else subprocess.DEVNULL,
        stderr=(tmp_path / log).open("wb"),
    )


@pytest.mark.parametrize("point", ["holding-account-lock", "picked-before-account-lock"])
async def test_a_run_stopped_mid_claim_does_not_freeze_the_account(
    own_database_url: str, tmp_path: Path, own_db, point: str
) -> None:
    """SIGSTOP inside the claim transaction, either with the account's limiter row locked or
    with its picked contacts and their numbers locked, before it asks for that row: PostgreSQL
    ends the stopped session after 10 s, the other run (whose lock waits time out after 5 s and
    are retried; contacts locked by the stopped one are skipped until then) dials the whole
    campaign, nobody twice, and the stopped run, resumed, finishes cleanly."""
    serve_port = free_port()
    with sim_provider(tmp_path, "--rate", "20/s", "--channels", "6", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=6, port=serve_port)
        env = env_for(own_database_url, config)
        load(tmp_path, env, write_campaign(tmp_path, "locked", 60))
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
            wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
            frozen = run_to_end(tmp_path, env | {"DIALER_FAULT": point}, "locked", "a.log")
            await wait_until_stopped(frozen.pid)
            async with own_db.transaction():  # the stopped claim holds its picked contacts
                free = await own_db.fetch("SELECT id FROM contacts FOR UPDATE SKIP LOCKED")
            assert len(free) < 60
            other = run_to_end(tmp_path, env, "locked", "b.log")
            other_code = other.wait(timeout=200)
            left = await own_db.fetchval(
                "SELECT count(*) FROM contacts WHERE state NOT IN ('done', 'exhausted', 'failed')"
            )
            os.kill(frozen.pid, signal.SIGCONT)
            frozen_code = frozen.wait(timeout=60)
            stats = await sim_stats(sim)
    logs = {n: (tmp_path / f"{n}.log").read_text()[-2000:] for n in ("a", "b")}
    assert other_code == 0 and left == 0, logs
    assert frozen_code == 0, logs
    await check_calls_match_attempts(own_db, stats)


async def test_a_run_dials_on_while_a_load_holds_its_campaign(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """A big load into a campaign being dialed holds the campaign's row until it commits
    (campaigns.lock_by_name, taken here as the loader takes it, and held). The run goes on
    dialing it meanwhile, never taking the wait for the database being away; once the load
    ends, the run ends as usual."""
    serve_port = free_port()
    with sim_provider(tmp_path, "--rate", "20/s", "--channels", "6", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=6, port=serve_port)
        env = env_for(own_database_url, config)
        load(tmp_path, env, write_campaign(tmp_path, "held", 12))
        holder = await asyncpg.connect(own_database_url)
        loading = holder.transaction()
        await loading.start()
        await campaigns.lock_by_name(holder, "held")
        try:
            with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
                wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
                run = run_to_end(tmp_path, env, "held", "run.log")
                await attempts_requested(own_db, 12, "held")  # every contact, load still on
                said = (tmp_path / "run.log").read_text()
                assert "database unavailable" not in said, said[-2000:]
                await loading.rollback()
                code = await asyncio.to_thread(run.wait, 200)
        finally:
            await holder.close()
    assert code == 0, (tmp_path / "run.log").read_text()[-2000:]


async def test_lost_final_callbacks_are_looked_up_and_settled_with_the_providers_outcome(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """A tenth of the final callbacks never come: each such call is looked up once it has been
    quiet for its ring timeout (or, answered, its call length) plus a short grace."""
    serve_port = free_port()
    options = ("--rate", "20/s", "--channels", "6", *FAST_CALLS, "--lose-final", "0.1")
    with sim_provider(tmp_path, *options) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=6, port=serve_port)
        env = env_for(own_database_url, config)
        load(tmp_path, env, write_campaign(tmp_path, "lossy", 30, call_limits=("2s", "3s", "1s")))
        result = subprocess.run(
            dialer_command("run", "lossy", "--serve", "--wait", "--dial-cap", "3"),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=200,
        )
        stats = await sim_stats(sim)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert stats["finals_lost"] >= 3, stats
    assert "settled_from_provider" in result.stderr.decode()
    await check_calls_match_attempts(own_db, stats)


WEBHOOK_SECRET = "whsec_" + "R" * 43 + "="


async def test_a_database_gone_past_the_outage_limit_ends_the_run_with_one_line(
    restartable_postgres, tmp_path: Path
) -> None:
    """The server stops for good: the run retries for `database_outage_limit` (here 3 s), then
    exits 1 with one line naming the cause, not a traceback."""
    url, control = restartable_postgres
    with sim_provider(tmp_path, "--rate", "5/s", "--channels", "4", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="5/s", channels=4, port=free_port())
        config.write_text('database_outage_limit = "3s"\n' + config.read_text())
        env = env_for(url, config)
        load(tmp_path, env, write_campaign(tmp_path, "gone", 200))
        run = run_to_end(tmp_path, env, "gone", "run.log", "--format", "json", out="run.json")
        await attempts_requested_at(url, 1)  # connected and dialing, however slow the machine
        control("stop")
        started = time.monotonic()
        code = run.wait(timeout=60)
        took = time.monotonic() - started
    lines = (tmp_path / "run.log").read_text().strip().splitlines()
    assert code == 1, lines[-20:]
    assert "Traceback" not in "\n".join(lines)
    assert lines[-2].startswith("dialer: error: stopped: the database was unavailable for")
    assert "over the 3 s outage limit" in lines[-2]
    assert lines[-1] == "dialer: exit 1 (error)"  # the code the process ends with, last
    # --format json: the same end on stdout, saying the counts could not be read
    end = json.loads((tmp_path / "run.json").read_text())
    assert (end["exit_code"], end["meaning"]) == (1, "error"), end
    assert end["errors"][-1].startswith("stopped: the database was unavailable for"), end
    assert "could not be read" in end["unread"] and end["sent_by_this_run"] >= 1, end
    assert took < 30
