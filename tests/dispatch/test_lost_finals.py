"""Lost final callbacks under the example campaign's timing (ring timeout 30 s, calls up to 10
minutes), with real processes: a relay between the sim and `dialer serve` loses 30% of the
finals (their retries too), delivers some callbacks late and some twice. By the schedule alone
a lost final would first be asked about 33 s after the call's last event; channels bind (6),
so the account's rate is idle, and the reconciler spends it on the calls most likely ended
unheard (policy.lookups): the lost finals are settled from the provider's answers to those
look-ups, every outcome the provider's, none closed `unknown`."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.callback_relay import callback_relay
from tests.dispatch.test_end_to_end import env_for, load
from tests.dispatch.test_faults import check_calls_match_attempts
from tests.processes import (
    background,
    dialer_command,
    free_port,
    sim_provider,
    sim_stats,
    wait_for_http,
    write_campaign,
    write_config,
)

pytestmark = pytest.mark.timeout(240)

CALLS = ("--ring", "0.2s..1.5s", "--talk", "1s..4s")


async def test_lost_finals_are_found_with_the_idle_rate(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    serve_port = free_port()
    with sim_provider(tmp_path, "--rate", "20/s", "--channels", "6", *CALLS) as sim:
        async with callback_relay(
            f"http://127.0.0.1:{serve_port}", lose_final=0.3, late=0.1, twice=0.1
        ) as (relay_url, relay):
            config = write_config(tmp_path, sim, rate="20/s", channels=6, port=serve_port)
            config.write_text(f'public_url = "{relay_url}"\n' + config.read_text())
            env = env_for(own_database_url, config)
            campaign = write_campaign(
                tmp_path, "lossy", 40, call_limits=("30s", "10m", "5s"), retry_extra=""
            )
            campaign.write_text(
                campaign.read_text().replace("max_attempts = 3", "max_attempts = 1")
            )
            load(tmp_path, env, campaign)
            with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
                await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{serve_port}/healthz")
                run = await asyncio.create_subprocess_exec(
                    *dialer_command("run", "lossy", "--wait"),
                    cwd=tmp_path,
                    env=env,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=(tmp_path / "run.log").open("wb"),
                )
                code = await asyncio.wait_for(run.wait(), 200)
            stats = await sim_stats(sim)
    logs = (tmp_path / "run.log").read_text() + (tmp_path / "serve.log").read_text()
    assert code == 0, logs[-3000:]
    assert len(relay.lost_calls) >= 5, relay.lost_calls
    await check_calls_match_attempts(own_db, stats)
    attempts = await own_db.fetch(
        """SELECT a.provider_call_id, a.outcome,
                  EXISTS (SELECT 1 FROM call_events e WHERE e.attempt_id = a.id
                          AND e.dedupe_key LIKE '%:poll:%' AND e.status = a.outcome) AS polled
           FROM attempts a"""
    )
    assert {a["outcome"] for a in attempts} <= {"completed", "busy", "no-answer", "failed"}
    lost = [a for a in attempts if a["provider_call_id"] in relay.lost_calls]
    assert lost and all(a["polled"] for a in lost), lost  # settled by asking the provider
    found = sum(int(n) for n in re.findall(r"idle_rate_settled_from_provider count=(\d+)", logs))
    assert found * 2 >= len(lost), (found, len(lost))  # mostly on the idle rate, not the schedule
