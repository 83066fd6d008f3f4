"""One supervised runtime: in `run` and in `serve` alike, a background task that dies (here the
reconciler, by an injected crash no handler catches) is logged with its reason and ends the
process with exit 1 instead of leaving a process that looks alive and no longer reconciles."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

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
