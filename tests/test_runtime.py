"""One supervised runtime: in `run` and in `serve` alike, a background task that dies (here the
reconciler, by an injected crash no handler catches) is logged with its reason and ends the
process with exit 1 instead of leaving a process that looks alive and no longer reconciles."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import database_name
from tests.dispatch.test_end_to_end import FAST_CALLS, env_for, load
from tests.processes import (
    dialer_command,
    free_port,
    sim_provider,
    write_campaign,
    write_config,
)

pytestmark = pytest.mark.timeout(120)
CRASH = {"DIALER_FAULT": "reconciler-round:crash"}


@pytest.mark.parametrize("command", [["serve"], ["run", "dies", "--wait"]])
def test_a_dead_background_task_ends_the_process_with_exit_1(
    own_database_url: str, tmp_path: Path, command: list[str]
) -> None:
    with sim_provider(tmp_path, "--rate", "20/s", "--channels", "4", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=4, port=free_port())
        env = env_for(own_database_url, config)
        load(tmp_path, env, write_campaign(tmp_path, "dies", 40))
        done = subprocess.run(
            dialer_command(*command),
            cwd=tmp_path,
            env=env | CRASH,
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "background task died" in done.stderr and "reconciler" in done.stderr
    assert "reconciler died: InjectedCrash" in done.stderr  # the exit names the task
    assert "InjectedCrash" in done.stderr and "fault point reconciler-round" in done.stderr


async def test_serve_rides_out_a_cut_connection_while_it_registers_its_webhooks(
    own_database_url: str, tmp_path: Path
) -> None:
    """A server starting while PostgreSQL restarts (CI saw a `run` die so, registering its
    webhook endpoints, at 860670f): its connection is ended while it waits to register; it
    tries again within its patience and starts serving, instead of exiting with a traceback."""
    import asyncio

    import asyncpg

    from tests.db.lock_cuts import cut_one_and_see_it_wait_again
    from tests.dispatch.test_faults import WEBHOOK_SECRET
    from tests.processes import background, wait_for_http

    port = free_port()
    config = write_config(tmp_path, "http://127.0.0.1:9", rate="1/s", channels=1, port=port)
    with config.open("a") as toml:
        toml.write(
            f'\n[[webhooks]]\nurl = "http://127.0.0.1:9/hook"\nsecret = "{WEBHOOK_SECRET}"\n'
        )
    env = env_for(own_database_url, config)
    database = database_name(own_database_url)
    admin = await asyncpg.connect(own_database_url)
    holding = admin.transaction()
    await holding.start()
    await admin.execute("LOCK TABLE webhook_endpoints IN ACCESS EXCLUSIVE MODE")
    watch = await asyncpg.connect(own_database_url)
    try:
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log") as serve:

            def still_serving() -> None:
                assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]

            await cut_one_and_see_it_wait_again(watch, database, still_serving)
            await holding.rollback()
            await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{port}/healthz", 60)
            still_serving()
    finally:
        await watch.close()
        await admin.close()
