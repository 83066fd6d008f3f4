"""Calls a provider places late (policy.late), with real processes: a front before the sim
takes two create requests, answers nothing (the dialer's client times out and aborts), and
hands them to the sim later, which places the calls then.

- One is placed 35 s after its request, inside the account's `late_placement` (45 s): its
  attempt was never closed, kept its channel, and settles from the call's own callbacks; its
  contact's campaign retries `unknown` after 1 s, yet nobody dials it again meanwhile.
- One is placed 55 s after its request, past the span, and its callbacks go nowhere: the
  attempt was closed `unknown` at 45 s; its campaign retries `unknown` after 20 s, and just
  before that redial the provider's list of calls to the number shows the late call: the
  attempt adopts it and the redial is never sent.

The witness is the sim: each call it placed is one attempt's, with that attempt's outcome;
no channel or rate 429; and nobody was dialed while an earlier call of theirs could still be
placed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.dispatch.test_end_to_end import FAST_CALLS, env_for, load
from tests.dispatch.test_faults import check_calls_match_attempts
from tests.late_front import late_front
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

pytestmark = pytest.mark.timeout(300)

SOON = [f"+9198450{i:05d},soon{i},Asia/Kolkata" for i in range(6)]
LATER = [f"+9198460{i:05d},later{i},Asia/Kolkata" for i in range(6)]
WITHIN, PAST = "+919845000001", "+919846000001"  # the second contact of each campaign
HOLDS = {WITHIN.lstrip("+"): (35.0, False), PAST.lstrip("+"): (55.0, True)}


def held_for(body: dict) -> tuple[float, bool] | None:
    return HOLDS.get(str(body.get("to", "")).lstrip("+"))


async def test_calls_placed_late_keep_their_channel_and_are_never_redialed(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    serve_port = free_port()
    with sim_provider(tmp_path, "--rate", "20/s", "--channels", "3", *FAST_CALLS) as sim:
        async with late_front(sim, held_for) as (front_url, front):
            config = write_config(
                tmp_path, front_url, rate="20/s", channels=3, port=serve_port, late_placement="45s"
            )
            env = env_for(own_database_url, config)
            limits = ("1s", "2s", "1s")
            for name, rows, delay in (("soon", SOON, "1s"), ("later", LATER, "20s")):
                campaign = write_campaign(
                    tmp_path, name, 0, csv_rows=rows, call_limits=limits, unknown_delay=delay
                )
                load(tmp_path, env, campaign)
            with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
                await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{serve_port}/healthz")
                with (tmp_path / "run.log").open("wb") as log:
                    run = await asyncio.create_subprocess_exec(
                        *dialer_command("run", "--wait", "--dial-cap", "5"),
                        cwd=tmp_path,
                        env=env,
                        stdout=log,
                        stderr=log,
                    )
                    code = await asyncio.wait_for(run.wait(), 240)
                stats = await sim_stats(sim)
    output = (tmp_path / "run.log").read_text() + (tmp_path / "serve.log").read_text()
    assert code == 0, output[-3000:]
    assert [p["http"] for p in front.placed_late] == [201, 201], front.placed_late
    assert stats.get("rejected_channels", 0) == 0 and stats.get("rejected_rate", 0) == 0, stats
    await check_calls_match_attempts(own_db, stats)
    attempts = await own_db.fetch(
        """SELECT id, phone_e164, attempt_no, state, outcome, provider_call_id, requested_at,
                  ended_at, reopened_at, error
           FROM attempts ORDER BY phone_e164, attempt_no"""
    )
    late = {a["phone_e164"]: a for a in attempts if a["attempt_no"] == 1}
    calls = {c["attempt_id"]: c for c in stats["calls"].values()}
    within, past = late[WITHIN], late[PAST]
    # Within the span: never closed, settled by its own call's callbacks.
    assert within["reopened_at"] is None and within["provider_call_id"], dict(within)
    # Past the span: closed unknown, then adopted the late call instead of being redialed.
    assert past["reopened_at"] is not None and past["provider_call_id"], dict(past)
    assert "redial withheld" in output and "placed the last attempt's call late" in output
    for held in (within, past):
        assert calls[held["id"]]["outcome"] == held["outcome"]  # the late call's own outcome
        # nobody's later attempt was sent before the late call had settled
        redials = [
            a
            for a in attempts
            if a["phone_e164"] == held["phone_e164"]
            and a["attempt_no"] > 1
            and a["requested_at"] is not None
        ]
        assert all(a["requested_at"] > held["ended_at"] for a in redials), redials
