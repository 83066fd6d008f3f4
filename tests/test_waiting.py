"""Nothing stalls silently: a contact the daily dial cap holds is said to be held by the cap
(with its figure and its next time) in `run`'s closing lines, `run --dry-run` and `campaign
show`, never blamed on a retry delay; a raised cap brings it back at once; a campaign whose
retries the cap puts off is warned about at load. Real processes against the sim provider."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import asyncpg

from dialer.db.due import HELD_DIAL_CAP, RETRY_DELAY, VERDICT_DUE
from tests.processes import (
    dialer_command,
    free_port,
    sim_provider,
    sim_stats,
    write_campaign,
    write_config,
)


async def dialer(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *dialer_command(*args),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=300)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_dial_cap_hold_is_named_and_a_raised_cap_applies_at_once(
    own_database_url: str, own_db: asyncpg.Connection, tmp_path: Path
) -> None:
    rows = [f"+9198450{i:05d},p{i},UTC" for i in range(4)]
    with sim_provider(
        tmp_path, "--outcomes", "no-answer=1", "--ring", "0.05s..0.2s", "--rate", "20/s"
    ) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=4, port=free_port())
        env = os.environ | {"DIALER_DATABASE_URL": own_database_url, "DIALER_CONFIG": str(config)}
        write_campaign(tmp_path, "capped", 4, csv_rows=rows)  # max_attempts 3, retries after 1 s
        code, _, loaded = await dialer(tmp_path, env, "campaign", "load", "capped.toml")
        assert code == 0, loaded
        assert "retry.max_attempts = 3 but the daily dial cap is 2 per number per 24 h" in loaded

        # The default cap (2 a day): two no-answers each, then the cap holds every number.
        code, _, said = await dialer(tmp_path, env, "run", "capped", "--serve", "--wait")
        assert code == 3, said[-3000:]
        stats = await sim_stats(sim)
        assert sorted(stats["per_number"].values()) == [2, 2, 2, 2], stats["per_number"]
        closing = said[said.index("dialer: this run sent") :]
        assert "this run sent 8 calls" in closing, closing
        assert "the next contact is due at" in closing, closing
        assert f"4 {HELD_DIAL_CAP} (2 per number per 24 h), first at " in closing, closing
        assert RETRY_DELAY not in closing, closing
        assert "dialer: exit 3 (stopped with work left)" in closing

        code, dry, err = await dialer(tmp_path, env, "run", "capped", "--dry-run")
        assert code == 0, err
        assert f"{HELD_DIAL_CAP:<24} 4  (2 per number per 24 h), first at " in dry, dry
        assert f"{RETRY_DELAY:<24} 0" in dry and f"{VERDICT_DUE:<24} 0" in dry, dry

        code, shown, err = await dialer(
            tmp_path, env, "campaign", "show", "capped", "--format", "json"
        )
        assert code == 0, err
        waiting = json.loads(shown)["not_dialed_now"]["waiting"]
        assert [(w["reason"], w["contacts"]) for w in waiting] == [(HELD_DIAL_CAP, 4)], waiting
        held_until = await own_db.fetchval(
            "SELECT min(next_attempt_at) FROM contacts c JOIN campaigns k ON k.id = c.campaign_id"
            " WHERE k.name = 'capped'"
        )
        assert waiting[0]["next_at"] == held_until.isoformat(timespec="seconds")

        # A dry run under a raised cap says the hold is judged again; the run brings them back.
        code, dry, _ = await dialer(tmp_path, env, "run", "capped", "--dry-run", "--dial-cap", "3")
        assert "judged again under 3 per number per 24 h when `dialer run` starts" in dry, dry
        code, _, said = await dialer(
            tmp_path, env, "run", "capped", "--serve", "--wait", "--dial-cap", "3"
        )
        assert code == 0, said[-3000:]
        assert "stopped because every contact is final" in said, said[-2000:]
        stats = await sim_stats(sim)
        assert sorted(stats["per_number"].values()) == [3, 3, 3, 3], stats["per_number"]
    states = await own_db.fetch("SELECT state, held_by FROM contacts")
    assert {(r["state"], r["held_by"]) for r in states} == {("exhausted", None)}
