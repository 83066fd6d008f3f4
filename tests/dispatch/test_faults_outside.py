"""Faults outside the run, with real processes: serve killed for half a minute, a network
partition, PostgreSQL restarting mid-campaign. (Split from test_faults so that the suite's
longest files run side by side.)"""

# The processes are started and waited for from the test's coroutine on purpose.
# ruff: noqa: ASYNC220

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import asyncpg
import pytest

from tests.dispatch.test_end_to_end import FAST_CALLS, env_for, load
from tests.dispatch.test_faults import (
    WEBHOOK_SECRET,
    check_calls_match_attempts,
    count_is,
    run_to_end,
)
from tests.network import partition_proxy
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
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.timeout(300)


async def test_serve_killed_for_half_a_minute_loses_no_outcome(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """`dialer serve` is killed (SIGKILL) mid-campaign and comes back 30 s later (ten times
    the sim's few seconds of callback retries): the sim's callbacks of that time fail and are
    given up; the run's own reconciler looks those calls
    up, and the campaign ends with every outcome the provider's."""
    serve_port = free_port()
    with sim_provider(tmp_path, "--rate", "20/s", "--channels", "6", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=6, port=serve_port)
        env = env_for(own_database_url, config)
        load(tmp_path, env, write_campaign(tmp_path, "deaf", 100, call_limits=("2s", "3s", "1s")))
        serve = subprocess.Popen(
            dialer_command("serve"), cwd=tmp_path, env=env, stderr=subprocess.DEVNULL
        )
        wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
        run = run_to_end(tmp_path, env, "deaf", "run.log")
        await attempts_requested(own_db, 10, "deaf")
        serve.kill()
        serve.wait()
        await asyncio.sleep(30)  # the fault: serve away for 30 s
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve2.log"):
            wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
            code = await asyncio.to_thread(run.wait, 200)
            stats = await sim_stats(sim)
    assert code == 0, (tmp_path / "run.log").read_text()[-2000:]
    assert stats.get("callbacks_lost", 0) >= 5, stats
    await check_calls_match_attempts(own_db, stats)
    states = await own_db.fetch("SELECT DISTINCT state FROM contacts")
    assert {r["state"] for r in states} <= {"done", "exhausted", "failed"}


async def test_requests_caught_in_a_partition_never_arrive_after_it_heals(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """The link between `dialer run` and the provider is cut from the start and heals after
    the attempts' budget: the requests time out (15 s) and their connections are aborted, the
    reconciler (in `serve`, which reaches the provider) closes them `unknown` once the provider
    lists no call for them, and when the link heals none of them is delivered."""
    serve_port = free_port()
    sim_options = ("--rate", "20/s", "--channels", "4", *FAST_CALLS)
    with sim_provider(tmp_path, *sim_options) as sim, partition_proxy(sim) as proxy:
        proxy.partition()
        direct = write_config(tmp_path, sim, rate="20/s", channels=4, port=serve_port)
        cut_dir = tmp_path / "cut"
        cut_dir.mkdir()
        through = write_config(
            cut_dir, f"http://127.0.0.1:{proxy.port}", rate="20/s", channels=4, port=serve_port
        )
        env = env_for(own_database_url, direct)
        campaign = write_campaign(tmp_path, "cut", 6, call_limits=("1s", "2s", "1s"))
        load(tmp_path, env, campaign)
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
            wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
            run = run_to_end(tmp_path, env_for(own_database_url, through), "cut", "run.log")
            dialing = "SELECT id FROM attempts WHERE state = 'dialing'"
            await until(
                lambda: count_is(own_db, dialing, 4),
                "the 4 channels' requests to be caught in the partition",
            )
            first = [r["id"] for r in await own_db.fetch(dialing)]
            # Closed once the client's timeout has ended (and aborted) each request, not before.
            still = "SELECT id FROM attempts WHERE id = ANY($1::bigint[]) AND state = 'dialing'"
            await until(
                lambda: own_db.fetchval(f"SELECT NOT EXISTS ({still})", first),
                "the requests caught in the partition to be closed",
            )
            cut_off = await own_db.fetch(
                "SELECT id, state, error, now() - requested_at AS waited FROM attempts"
                " WHERE id = ANY($1::bigint[])",
                first,
            )
            proxy.heal()
            code = await asyncio.to_thread(run.wait, 120)
            stats = await sim_quiet(sim)  # what anything delivered after the heal caused
    assert code == 0, (tmp_path / "run.log").read_text()[-2000:]
    assert len(cut_off) == 4 and {r["state"] for r in cut_off} == {"unknown"}, cut_off
    # each waited out the client's timeout, which aborted its connection (nothing left to send)
    assert all(r["waited"].total_seconds() >= 15 for r in cut_off), cut_off
    assert all("TimeoutError" in r["error"] for r in cut_off), cut_off
    assert proxy.dropped >= len(cut_off)  # aborted on timeout: nothing left to deliver
    ids = set(first)
    assert not [c for c in stats["calls"].values() if c["attempt_id"] in ids]
    await check_calls_match_attempts(own_db, stats)


async def test_postgres_restarts_mid_campaign_fast_and_immediate(
    restartable_postgres, tmp_path: Path
) -> None:
    """The whole server restarts twice mid-campaign (a clean `fast` shutdown, then an
    `immediate` one with crash recovery), then stops for 3 s: two runs and serve ride it out
    and finish, and
    serve's webhook deliveries, caught in the restarts, still bring every event once or more."""
    url, restart = restartable_postgres
    serve_port = free_port()
    receiver = Receiver(WEBHOOK_SECRET)
    await receiver.start()
    with sim_provider(tmp_path, "--rate", "20/s", "--channels", "6", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=6, port=serve_port)
        with config.open("a") as toml:
            toml.write(f'\n[[webhooks]]\nurl = "{receiver.url}"\nsecret = "{WEBHOOK_SECRET}"\n')
        env = env_for(url, config)
        load(tmp_path, env, write_campaign(tmp_path, "restarts", 120))
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
            wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
            runs = [run_to_end(tmp_path, env, "restarts", f"run{i}.log") for i in range(2)]
            await attempts_requested_at(url, 10)  # both under way
            restart("fast")
            await asyncio.sleep(3)  # the faults' schedule: running 3 s between restarts
            restart("immediate")
            await asyncio.sleep(2)
            restart("stop")  # away for 3 s: every process's next statement fails meanwhile
            await asyncio.sleep(3)
            restart("start")
            codes = [await asyncio.to_thread(p.wait, 200) for p in runs]
            stats = await sim_stats(sim)
            db = await asyncpg.connect(url)
            left = "SELECT NOT EXISTS (SELECT 1 FROM webhook_deliveries WHERE state <> 'delivered')"
            await until(  # the deliveries left pending by the restarts go out
                lambda: db.fetchval(left), "every webhook delivery to be made"
            )
    await receiver.stop()
    logs = [(tmp_path / f"run{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], [log[-3000:] for log in logs]
    assert any("database back" in log for log in logs)
    try:
        await check_calls_match_attempts(db, stats)
        states = await db.fetch("SELECT DISTINCT state FROM contacts")
        assert {r["state"] for r in states} <= {"done", "exhausted", "failed"}
        events = await db.fetch("SELECT id, type FROM webhook_events")
        install = await db.fetchval("SELECT id FROM dialer_install")
        assert receiver.ids() == {f"msg_{install}_{e['id']}" for e in events}
        assert receiver.forged == 0
        settled = await db.fetchval(
            "SELECT count(*) FROM attempts WHERE outcome IS NOT NULL AND outcome <> 'not_dialed'"
        )
        assert sum(e["type"] == "attempt.settled" for e in events) == settled
    finally:
        await db.close()
