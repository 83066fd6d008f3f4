"""A caller id that carriers block rests for the day, with real processes: a sim answers 60% of
one caller id's calls with SIP 603; with rest_caller_id_blocked_above = 0.2 that number stops
being shown once 20 of its calls are judged, logged with its figures, while the campaign's
other numbers keep dialing. The figures show in caller_id_health."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.dispatch.test_end_to_end import env_for, load
from tests.processes import (
    background,
    dialer_command,
    free_port,
    sim_provider,
    sim_quiet,
    wait_for_http,
    write_campaign,
    write_config,
)

pytestmark = pytest.mark.timeout(300)

BLOCKED = "+918047112233"
OTHERS = ("+918047112234", "+918047112235")


async def test_a_blocked_caller_id_rests_and_the_others_dial_on(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    serve_port = free_port()
    options = ("--rate", "20/s", "--channels", "8", "--ring", "0.1s..0.3s", "--talk", "0.1s..0.3s")
    # 60%, well over the rule's 20%. At 30% two CI runs ended with the number never rested and
    # no judgement saying why; likely the sim's seeded draws: which of them fall on this
    # number's calls depends on the order its requests arrive in, and an order that keeps its
    # share at 20% or under on every judgement would rightly never rest it
    with sim_provider(tmp_path, *options, "--blocked", f"{BLOCKED}=0.6") as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=8, port=serve_port)
        env = env_for(own_database_url, config)
        campaign = write_campaign(
            tmp_path,
            "blocked",
            200,
            extra='caller_id_policy = "rotate"\nrest_caller_id_blocked_above = 0.2\n',
        )
        text = campaign.read_text().replace(
            'caller_id = ["+918047112233", "+918047112234"]',
            f"caller_id = {list((BLOCKED, *OTHERS))!r}".replace("'", '"'),
        )
        campaign.write_text(text.replace("max_attempts = 3", "max_attempts = 1"))
        load(tmp_path, env, campaign)
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
            await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{serve_port}/healthz")
            run = await asyncio.create_subprocess_exec(
                *dialer_command("run", "blocked", "--wait"),
                cwd=tmp_path,
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=(tmp_path / "run.log").open("wb"),
            )
            code = await asyncio.wait_for(run.wait(), 200)
            await sim_quiet(sim)
    logs = (tmp_path / "run.log").read_text()
    assert code == 0, logs[-3000:]
    assert "caller id resting for the rest of the day" in logs and "603/608" in logs
    rows = await own_db.fetch(
        """SELECT caller_id, sip_code, requested_at, ended_at FROM attempts
           WHERE provider_call_id IS NOT NULL ORDER BY requested_at"""
    )
    blocked = [r for r in rows if r["caller_id"] == BLOCKED]
    # the moment the rule could first judge it: 20 of its calls ended, more than 20% blocked
    ended = sorted((r for r in blocked if r["ended_at"]), key=lambda r: r["ended_at"])
    judged_at = None
    for index in range(19, len(ended)):
        seen = ended[: index + 1]
        if sum(r["sip_code"] == 603 for r in seen) > 0.2 * len(seen):
            judged_at = ended[index]["ended_at"]
            break
    assert judged_at is not None, [r["sip_code"] for r in ended]
    late = [r for r in blocked if (r["requested_at"] - judged_at).total_seconds() > 5]
    assert late == [], f"{len(late)} calls showed the blocked number after it rested"
    after = [r for r in rows if r["requested_at"] > judged_at and r["caller_id"] in OTHERS]
    assert len(after) >= 20  # the campaign's other numbers dialed on
    assert len(rows) == 200  # and every contact was called
    health = await own_db.fetchrow(
        """SELECT declined_603, blocked_rate, attested_a FROM caller_id_health
           WHERE caller_id = $1 AND period = 'day'""",
        BLOCKED,
    )
    assert health["declined_603"] == sum(r["sip_code"] == 603 for r in blocked) > 0
    assert health["attested_a"] == len(blocked)
