"""Whole campaigns through real processes: two `dialer run`, one `dialer serve`, one sim provider.

The sim's own counters (what it actually received) are the witness for the limits. These tests
orchestrate separate processes and block on them on purpose; nothing else runs on their loop.
"""

# ruff: noqa: ASYNC220, ASYNC221

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from tests.processes import (
    attempts_requested,
    dialer_command,
    free_port,
    sim_provider,
    sim_stats,
    write_campaign,
    write_config,
)

pytestmark = pytest.mark.timeout(420)  # whole campaigns at 20 calls/s take a minute or two

FAST_CALLS = ("--ring", "0.05s..0.4s", "--talk", "0.05s..0.5s")
FINAL = {"done", "exhausted", "failed"}


def env_for(database_url: str, config: Path) -> dict[str, str]:
    return os.environ | {"DIALER_DATABASE_URL": database_url, "DIALER_CONFIG": str(config)}


def load(tmp_path: Path, env: dict[str, str], campaign: Path) -> None:
    subprocess.run(
        dialer_command("campaign", "load", str(campaign)),
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )


async def check_invariants(db: asyncpg.Connection, campaign: str, stats: dict) -> None:
    """What the database recorded agrees with what the provider saw, call by call."""
    attempts = await db.fetch(
        """SELECT a.id, a.phone_e164, a.state, a.outcome, a.provider_call_id, a.attempt_no,
                  a.contact_id
           FROM attempts a JOIN campaigns k ON k.id = a.campaign_id WHERE k.name = $1""",
        campaign,
    )
    # The provider's calls are exactly the attempts that reached it (they have its call id);
    # one that never did (killed between its dialing commit and its request) ends `unknown`
    # once the provider lists no call for it, or was refused (`rejected`).
    reached = Counter(a["phone_e164"] for a in attempts if a["provider_call_id"])
    assert dict(reached) == {n: c for n, c in stats["per_number"].items() if n in reached}
    assert sum(stats["per_number"].values()) == sum(reached.values())
    unreached = [a for a in attempts if not a["provider_call_id"] and a["state"] != "not_dialed"]
    assert {a["outcome"] for a in unreached} <= {"unknown", "rejected"}, unreached
    for attempt in attempts:
        if attempt["provider_call_id"]:
            call = stats["calls"][attempt["provider_call_id"]]
            assert call["attempt_id"] == attempt["id"]
            assert attempt["outcome"] == call["outcome"], attempt
    numbers = Counter((a["contact_id"], a["attempt_no"]) for a in attempts)
    assert max(numbers.values()) == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM])
async def test_sigterm_stops_quickly_and_leaves_nothing_unreconciled(
    own_database_url: str, tmp_path: Path, own_db, sig
) -> None:
    serve_port = free_port()
    with sim_provider(
        tmp_path, "--rate", "20/s", "--channels", "4", "--ring", "0.5s..1s", "--talk", "1s..3s"
    ) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=4, port=serve_port)
        env = env_for(own_database_url, config)
        load(tmp_path, env, write_campaign(tmp_path, "termed", 100))
        run = dialer_command("run", "termed", "--serve")
        process = subprocess.Popen(
            run, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        await attempts_requested(own_db, 8, "termed")  # calls of 1-4 s in flight now
        started = time.monotonic()
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=10)
        elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed
    assert process.returncode == 3, stderr.decode()[-2000:]
    assert "stopped because a signal (SIGTERM/SIGINT) asked it to stop" in stderr.decode()
    reserved = await own_db.fetchval(
        "SELECT count(*) FROM attempts a JOIN campaigns k ON k.id = a.campaign_id"
        " WHERE k.name = 'termed' AND a.state = 'reserved'"
    )
    assert reserved == 0
    unreconcilable = await own_db.fetchval(
        "SELECT count(*) FROM attempts"
        " WHERE state IN ('dialing', 'accepted', 'ringing', 'in-progress') AND settle_by IS NULL"
    )
    assert unreconcilable == 0


async def test_nobody_is_called_outside_their_window(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    zones = [
        "Pacific/Kiritimati",
        "Asia/Tokyo",
        "Asia/Kolkata",
        "Europe/London",
        "America/New_York",
        "America/Los_Angeles",
        "Pacific/Honolulu",
        "Pacific/Pago_Pago",
    ]
    # A zone counts only if it stays on one side of its window for the whole test: one that
    # crosses 09:00 or 17:00 while the test runs may rightly be dialed or not.
    now = datetime.now(UTC)
    moments = [now + timedelta(minutes=m) for m in (-1, 0, 5)]

    def open_in(zone: str) -> list[bool]:
        return [9 <= t.astimezone(ZoneInfo(zone)).hour < 17 for t in moments]

    inside = [z for z in zones if all(open_in(z))]
    outside = [z for z in zones if not any(open_in(z))]
    assert outside, "some of these zones are always outside 09:00-17:00"
    rows = [f"+9198450{i:05d},c{i},{z}" for i, z in enumerate(zones * 3)]
    serve_port = free_port()
    with sim_provider(tmp_path, "--rate", "50/s", "--channels", "10", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="50/s", channels=10, port=serve_port)
        env = env_for(own_database_url, config)
        campaign = write_campaign(
            tmp_path, "windowed", 0, csv_rows=rows, window='start = "09:00", end = "17:00"'
        )
        load(tmp_path, env, campaign)
        result = subprocess.run(
            dialer_command("run", "windowed", "--serve", "--wait", "--dial-cap", "3"),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=120,
        )
        stats = await sim_stats(sim)
    dialed_zones = {
        r["timezone"]
        for r in await own_db.fetch(
            """SELECT DISTINCT c.timezone FROM attempts a JOIN contacts c ON c.id = a.contact_id
               WHERE a.state <> 'not_dialed'"""
        )
    }
    assert not dialed_zones & set(outside), (dialed_zones, outside)
    assert dialed_zones >= set(inside)
    assert result.returncode == 3  # the others are left for their window
    assert sum(stats["per_number"].values()) == stats["accepted"]


async def test_pause_stops_new_dials_within_a_second(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    serve_port = free_port()
    with sim_provider(tmp_path, "--rate", "20/s", "--channels", "6", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=6, port=serve_port)
        env = env_for(own_database_url, config)
        load(tmp_path, env, write_campaign(tmp_path, "paused", 300))
        runs = [
            subprocess.Popen(
                dialer_command(
                    "run", "paused", *(["--serve"] if i == 0 else []), "--dial-cap", "3"
                ),
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(2)
        ]
        await attempts_requested(own_db, 30, "paused")  # both runs are dialing
        paused = subprocess.run(
            dialer_command("campaign", "pause", "paused"),
            cwd=tmp_path,
            env=env,
            capture_output=True,
        )
        paused_at = await own_db.fetchval("SELECT updated_at FROM campaigns WHERE name = 'paused'")
        codes = [p.wait(timeout=120) for p in runs]
    assert paused.returncode == 0
    assert codes == [3, 3]  # stopped with work left
    last = await own_db.fetchval("SELECT max(requested_at) FROM attempts")
    assert (last - paused_at).total_seconds() < 1.0, (last, paused_at)
    pending = await own_db.fetchval("SELECT count(*) FROM contacts WHERE state = 'pending'")
    assert pending > 0


async def test_a_campaign_on_an_unknown_account_does_not_stop_the_others(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """An active campaign names an account dialer.toml no longer has: a plain `dialer run`
    dials every other campaign, names the one it left out at the start and the end, and exits
    2 (a person must fix it); named, it is refused at once."""
    with sim_provider(tmp_path, "--rate", "20/s", "--channels", "4", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=4, port=free_port())
        env = env_for(own_database_url, config)
        load(tmp_path, env, write_campaign(tmp_path, "fine", 6))
        load(tmp_path, env, write_campaign(tmp_path, "orphan", 3))
        await own_db.execute("UPDATE campaigns SET account = 'gone' WHERE name = 'orphan'")
        plain = subprocess.run(
            dialer_command("run", "--wait", "--dial-cap", "3"),
            cwd=tmp_path,
            env=env,
            capture_output=True,
        )
        named = subprocess.run(
            dialer_command("run", "orphan"), cwd=tmp_path, env=env, capture_output=True
        )
    said = plain.stderr.decode()
    assert plain.returncode == 2, said[-2000:]
    assert said.count("not dialed: campaign orphan uses account 'gone'") == 2
    # the closing line says the exit code the process ends with (it said 0 before)
    assert said.rstrip().endswith("dialer: exit 2 (bad configuration or input)"), said[-500:]
    states = await own_db.fetch(
        """SELECT k.name, c.state, count(*) FROM contacts c JOIN campaigns k
           ON k.id = c.campaign_id GROUP BY 1, 2"""
    )
    assert {(r["name"], r["state"]) for r in states if r["name"] == "orphan"} == {
        ("orphan", "pending")
    }
    assert {r["state"] for r in states if r["name"] == "fine"} <= FINAL
    assert named.returncode == 2 and "account 'gone'" in named.stderr.decode()
