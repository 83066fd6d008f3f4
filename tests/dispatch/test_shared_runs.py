"""Several dialer processes on one database, with real processes: two runs and one serve share every
limit; a run killed with SIGKILL and started again redials nothing. (Split from test_end_to_end
so that the suite's longest files run side by side.)"""

# The processes are started and waited for from the test's coroutine on purpose.
# ruff: noqa: ASYNC220, ASYNC221

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.dispatch.test_end_to_end import FAST_CALLS, FINAL, check_invariants, env_for, load
from tests.processes import (
    attempts_requested,
    background,
    dialer_command,
    free_port,
    sim_provider,
    sim_stats,
    wait_for_http,
    write_campaign,
    write_config,
)

pytestmark = pytest.mark.timeout(420)  # whole campaigns at 20 calls/s take a minute or two


async def test_two_runs_one_serve_share_the_limits(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    serve_port = free_port()
    with sim_provider(
        tmp_path,
        "--rate",
        "20/s",
        "--channels",
        "6",
        *FAST_CALLS,
        "--duplicates",
        "0.05",
        "--reorder",
        "0.05",
    ) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=6, port=serve_port)
        env = env_for(own_database_url, config)
        load(tmp_path, env, write_campaign(tmp_path, "shared", 600))
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
            wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
            run = dialer_command("run", "shared", "--wait", "--dial-cap", "3")
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
            codes = [p.wait(timeout=400) for p in runs]
            stats = await sim_stats(sim)
    assert codes == [0, 0], [(tmp_path / f"run{i}.log").read_text()[-2000:] for i in range(2)]
    states = await own_db.fetch(
        """SELECT c.state, count(*) FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
           WHERE k.name = 'shared' GROUP BY 1"""
    )
    assert {r["state"] for r in states} <= FINAL, states
    assert sum(r["count"] for r in states) == 600
    assert stats["peak_requests_per_second"] <= 20, stats["peak_requests_per_second"]
    assert stats["peak_concurrency"] <= 6
    assert stats.get("rejected_rate", 0) == 0 and stats.get("rejected_channels", 0) == 0
    assert stats["accepted"] >= 600
    await check_invariants(own_db, "shared", stats)
    live = await own_db.fetchval(
        "SELECT count(*) FROM attempts"
        " WHERE state IN ('reserved', 'dialing', 'accepted', 'ringing', 'in-progress')"
    )
    assert live == 0


async def test_kill_9_then_restart_redials_nothing(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    serve_port = free_port()
    with sim_provider(tmp_path, "--rate", "20/s", "--channels", "6", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=6, port=serve_port)
        env = env_for(own_database_url, config)
        load(tmp_path, env, write_campaign(tmp_path, "killed", 200))
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
            wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
            run = dialer_command("run", "killed", "--wait", "--dial-cap", "3")
            first = subprocess.Popen(
                run, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            await attempts_requested(own_db, 40, "killed")  # mid-campaign
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            left = await own_db.fetch(
                "SELECT id, state FROM attempts WHERE state IN ('reserved', 'dialing')"
            )
            second = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, timeout=300)
            stats = await sim_stats(sim)
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    await check_invariants(own_db, "killed", stats)
    for row in left:  # every attempt caught in flight was settled, none was sent again
        final = await own_db.fetchrow(
            "SELECT state, outcome FROM attempts WHERE id = $1", row["id"]
        )
        assert final["outcome"] is not None, (row, final)
    states = await own_db.fetch("SELECT DISTINCT state FROM contacts")
    assert {r["state"] for r in states} <= FINAL
