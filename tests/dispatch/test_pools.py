"""A campaign with a pool of accounts, with real processes: two simulated providers at 5/s
each behind one campaign. It dials at about their sum, each sim within its own rate and
channels; when one is killed (SIGKILL) or revokes our credentials (401), its share stops
within seconds and the other carries the campaign to its end: every call's outcome is the
provider's decision for it, no number is called twice, and every contact whose call was not
in flight on the killed provider ends final."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from tests.dispatch.test_end_to_end import env_for, load
from tests.processes import (
    background,
    dialer_command,
    free_port,
    sim_quiet,
    sim_stats,
    until,
    wait_for_http,
    write_campaign,
)

pytestmark = pytest.mark.timeout(300)

CALLS = ("--ring", "0.2s..0.6s", "--talk", "0.2s..1s")
RATE, CHANNELS, CONTACTS = 5, 10, 90
SECRET = "sim-test-secret"


def sim_command(port: int, journal: Path, *options: str) -> list[str]:
    return dialer_command(
        "sim-provider", "--port", str(port), "--secret", SECRET, "--rate", f"{RATE}/s",
        "--channels", str(CHANNELS), "--journal", str(journal), *CALLS, *options,
    )  # fmt: skip


def pool_config(tmp_path: Path, ports: dict[str, int], serve_port: int) -> Path:
    path = tmp_path / "dialer.toml"
    text = f'listen = "127.0.0.1:{serve_port}"\n'
    for name, port in ports.items():
        text += f"""
[accounts.{name}]
kind = "sim"
base_url = "http://127.0.0.1:{port}"
secret = "{SECRET}"
rate = "{RATE}/s"
channels = {CHANNELS}
late_placement = "25s"
"""
    path.write_text(text)
    return path


def journal(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def pooled_run(
    tmp_path: Path, database_url: str, fault=None, a_options: tuple[str, ...] = ()
) -> dict:
    """Dial CONTACTS through sim-a (started with `a_options`) and sim-b; `fault(sim_b_process,
    sim_b_url)` is applied once sim-b accepted 25 calls. What happened, for the checks."""
    ports = {"sim-a": free_port(), "sim-b": free_port()}
    serve_port = free_port()
    journals = {name: tmp_path / f"{name}.jsonl" for name in ports}
    config = pool_config(tmp_path, ports, serve_port)
    env = env_for(database_url, config)
    campaign = write_campaign(tmp_path, "pooled", CONTACTS)
    text = campaign.read_text().replace('account = "sim-main"', 'accounts = ["sim-a", "sim-b"]')
    campaign.write_text(text.replace("max_attempts = 3", "max_attempts = 1"))
    load(tmp_path, env, campaign)
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    options = {"sim-a": a_options, "sim-b": ()}
    sims = {
        name: background(
            sim_command(port, journals[name], *options[name]), tmp_path, env, tmp_path / name
        )
        for name, port in ports.items()
    }
    with sims["sim-a"], sims["sim-b"] as sim_b:
        for url in urls.values():
            await asyncio.to_thread(wait_for_http, f"{url}/stats")
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
            await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{serve_port}/healthz")
            run = await asyncio.create_subprocess_exec(
                *dialer_command("run", "pooled"),
                cwd=tmp_path,
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=(tmp_path / "run.log").open("wb"),
            )
            await until(lambda: len(journal(journals["sim-b"])) >= 25, "sim-b to take 25 calls")
            b_stats = await sim_stats(urls["sim-b"])
            fault_at = time.time()
            if fault is not None:
                await fault(sim_b, urls["sim-b"])
            else:
                fault_at = float("inf")
            code = await asyncio.wait_for(run.wait(), 200)
            a_stats = await sim_quiet(urls["sim-a"])
            if sim_b.poll() is None:
                b_stats = await sim_quiet(urls["sim-b"])
    logs = "".join((tmp_path / f).read_text() for f in ("run.log", "serve.log"))
    fault_at = fault_at if fault is not None else time.time()
    return {
        "code": code,
        "fault_at": fault_at,
        "calls": {name: journal(path) for name, path in journals.items()},
        "stats": {"sim-a": a_stats, "sim-b": b_stats},
        "logs": logs,
    }


async def check_pool(db, seen: dict, *, b_in_flight_lost: bool) -> None:
    calls = seen["calls"]
    every = calls["sim-a"] + calls["sim-b"]
    numbers = [c["to"] for c in every]
    assert len(numbers) == len(set(numbers)), "a number was called twice"
    for name, stats in seen["stats"].items():  # each within its own limits
        assert stats["peak_requests_per_second"] <= RATE, (name, stats)
        assert stats["peak_concurrency"] <= CHANNELS, (name, stats)
        assert stats.get("rejected_rate", 0) == stats.get("rejected_channels", 0) == 0, stats
    # about the sum of the two rates while both worked: more than one account could give
    before = sorted(c["at"] for c in every if c["at"] < seen["fault_at"])
    per_s = (len(before) - 1) / (before[-1] - before[0])
    assert per_s > 1.3 * RATE, f"{per_s:.2f} calls/s with two accounts of {RATE}/s"
    attempts = {  # each sim numbers its calls from 1: a call id is one account's
        (r["account"], r["provider_call_id"]): r
        for r in await db.fetch(
            """SELECT a.id, a.account, a.provider_call_id, a.outcome, a.state, c.state AS contact
               FROM attempts a JOIN contacts c ON c.id = a.contact_id
               WHERE a.provider_call_id IS NOT NULL"""
        )
    }
    lost_in_flight = set()
    for name, made in calls.items():
        for call in made:
            attempt = attempts[name, call["call_id"]]
            assert attempt["id"] == call["attempt_id"] and attempt["account"] == name
            if attempt["outcome"] == call["outcome"]:
                continue
            # only a call in flight on the killed provider may lack its outcome
            assert b_in_flight_lost and name == "sim-b", (call, dict(attempt))
            assert attempt["outcome"] in (None, "unknown"), (call, dict(attempt))
            lost_in_flight.add(call["attempt_id"])
    if b_in_flight_lost:
        # a request out to sim-b when it was killed (in its journal or not yet): whether the call
        # was placed is unknown, so it is not dialed again (its contact stays unfinished)
        lost_in_flight |= {
            r["id"]
            for r in await db.fetch(
                """SELECT id FROM attempts WHERE account = 'sim-b'
                   AND (outcome IS NULL OR outcome = 'unknown')
                   AND requested_at <= to_timestamp($1) + interval '1 second'""",
                seen["fault_at"],
            )
        }
    unfinished = await db.fetch(
        """SELECT c.id, (SELECT a.id FROM attempts a WHERE a.contact_id = c.id
                         ORDER BY a.id DESC LIMIT 1) AS last_attempt
           FROM contacts c WHERE c.state NOT IN ('done', 'exhausted', 'failed')"""
    )
    assert {r["last_attempt"] for r in unfinished} <= lost_in_flight, unfinished
    # after the fault, sim-b got no call; its account was only probed (nothing placed)
    after = [c for c in calls["sim-b"] if c["at"] > seen["fault_at"]]
    assert after == []
    probes = await db.fetchval(
        """SELECT count(*) FROM attempts WHERE account = 'sim-b' AND outcome = 'not_dialed'
           AND requested_at > to_timestamp($1)""",
        seen["fault_at"],
    )
    assert probes <= 8, probes


async def test_a_killed_provider_gives_its_share_to_the_pool(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    async def kill(process, url: str) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait()

    seen = await pooled_run(tmp_path, own_database_url, kill)
    assert seen["code"] in (0, 3), seen["logs"][-3000:]
    assert "account resting" in seen["logs"]
    await check_pool(own_db, seen, b_in_flight_lost=True)


async def test_revoked_credentials_give_the_account_share_to_the_pool(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    async def revoke(process, url: str) -> None:
        headers = {"Authorization": f"Bearer {SECRET}"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/v1/admin/revoke", headers=headers) as response,
        ):
            assert response.status == 200

    seen = await pooled_run(tmp_path, own_database_url, revoke)
    # the other account finished the work; a person must still fix the credentials: exit 2
    assert seen["code"] == 2, seen["logs"][-3000:]
    assert "provider refused the account" in seen["logs"]
    await check_pool(own_db, seen, b_in_flight_lost=False)
    status = await own_db.fetchval("SELECT status FROM campaigns WHERE name = 'pooled'")
    assert status in ("active", "completed")  # not paused: its other account dialed on


async def test_a_person_declining_is_no_reason_to_fail_over(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """sim-a's callees decline a third of its calls (SIP 486 busy, 603 failed): outcomes of
    those contacts, not of the account, which keeps its share to the end."""
    seen = await pooled_run(tmp_path, own_database_url, a_options=("--declines", "0.35"))
    # without --wait the run ends with its last calls in flight (serve settles them): 0 or 3
    assert seen["code"] in (0, 3), seen["logs"][-3000:]
    assert "account resting" not in seen["logs"]
    await check_pool(own_db, seen, b_in_flight_lost=False)
    declined = await own_db.fetchval(
        "SELECT count(*) FROM attempts WHERE account = 'sim-a' AND sip_code IN (486, 603)"
    )
    assert declined >= 10
    a_calls = len(seen["calls"]["sim-a"])
    assert a_calls >= CONTACTS * 0.35, a_calls  # about half the campaign went through sim-a
    assert await own_db.fetchval("SELECT count(*) FROM attempts WHERE attestation = 'A'") > 0
