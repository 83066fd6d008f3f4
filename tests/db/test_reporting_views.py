"""The reporting views agree with figures computed independently from the raw tables, after a
whole simulated campaign with retries; the example reports run in psql."""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from click.testing import CliRunner

from dialer.cli import cli

REPORTS = Path(__file__).parents[2] / "sql" / "reports"
FINAL = {"done", "exhausted", "failed"}


@pytest.fixture(scope="module")
def campaign(database_url: str) -> str:
    """A finished simulated campaign (busy/no-answer retried), kept in the module's database."""

    def call() -> None:
        result = CliRunner().invoke(
            cli,
            ["demo", "--contacts", "150", "--keep"],
            env={"DIALER_DATABASE_URL": database_url},
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.stderr

    with ThreadPoolExecutor(1) as thread:
        thread.submit(call).result()

    async def name() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchval("SELECT name FROM campaigns ORDER BY id DESC LIMIT 1")
        finally:
            await conn.close()

    return asyncio.run(name())


async def raw(db: asyncpg.Connection, campaign: str) -> tuple[list, list, str]:
    contacts = await db.fetch(
        "SELECT c.* FROM contacts c JOIN campaigns k ON k.id = c.campaign_id WHERE k.name = $1",
        campaign,
    )
    attempts = await db.fetch(
        "SELECT a.* FROM attempts a JOIN campaigns k ON k.id = a.campaign_id WHERE k.name = $1",
        campaign,
    )
    zone = await db.fetchval("SELECT spec ->> 'timezone' FROM campaigns WHERE name = $1", campaign)
    return contacts, attempts, zone


def percentile_cont(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def test_campaign_summary(db, campaign: str) -> None:
    contacts, attempts, _ = await raw(db, campaign)
    assert max(a["attempt_no"] for a in attempts) > 1, "the campaign should have retried"
    row = await db.fetchrow("SELECT * FROM campaign_summary WHERE campaign = $1", campaign)
    states = Counter(c["state"] for c in contacts)
    assert row["contacts"] == len(contacts) == 150
    for state in ("pending", "dialing", "done", "exhausted", "failed", "suppressed", "canceled"):
        assert row[state] == states.get(state, 0), state
    outcomes = Counter(a["outcome"] for a in attempts)
    assert row["attempts"] == sum(1 for a in attempts if a["state"] != "not_dialed")
    assert row["completed"] == outcomes["completed"] and row["busy"] == outcomes["busy"]
    assert row["no_answer"] == outcomes["no-answer"]
    assert row["call_failed"] == outcomes["failed"]
    assert row["unknown"] == outcomes["unknown"] and row["in_flight"] == outcomes[None]
    check_answer_rates(row, outcomes)
    talk = [a["duration_s"] for a in attempts if a["outcome"] == "completed"]
    assert float(row["mean_talk_s"]) == pytest.approx(sum(talk) / len(talk), abs=0.05)
    assert float(row["p90_talk_s"]) == pytest.approx(percentile_cont(talk, 0.9), abs=0.05)


def check_answer_rates(row: asyncpg.Record, outcomes: Counter) -> None:
    """campaign_summary's answer rates from attempt outcomes: answered at all (a person or a
    machine), by a person, by a machine; each over the calls that had a call outcome."""
    called = sum(
        outcomes[o]
        for o in ("completed", "busy", "no-answer", "failed", "canceled", "unknown", "machine")
    )
    human, machine = outcomes["completed"], outcomes["machine"]
    assert row["machine"] == machine
    assert float(row["answer_rate"]) == pytest.approx((human + machine) / called, abs=1e-4)
    assert float(row["human_answer_rate"]) == pytest.approx(human / called, abs=1e-4)
    assert float(row["machine_answer_rate"]) == pytest.approx(machine / called, abs=1e-4)


async def test_contact_results(db, campaign: str) -> None:
    contacts, attempts, _ = await raw(db, campaign)
    by_contact = defaultdict(list)
    for attempt in attempts:
        if attempt["state"] != "not_dialed":
            by_contact[attempt["contact_id"]].append(attempt)
    rows = {
        r["contact_id"]: r
        for r in await db.fetch("SELECT * FROM contact_results WHERE campaign = $1", campaign)
    }
    assert len(rows) == len(contacts)
    for contact in contacts:
        row = rows[contact["id"]]
        made = by_contact[contact["id"]]
        assert row["attempts"] == len(made)
        assert row["last_attempt_at"] == max((a["requested_at"] for a in made), default=None)
        last = max(made, key=lambda a: a["attempt_no"])["outcome"] if made else None
        expected = last if contact["state"] in FINAL else None
        assert row["final_outcome"] == expected, (dict(row), last)
        assert row["fields"] == contact["fields"] and row["phone_e164"] == contact["phone_e164"]


async def test_attempt_log_and_hourly_outcomes(db, campaign: str) -> None:
    _, attempts, zone = await raw(db, campaign)
    log = await db.fetch("SELECT * FROM attempt_log WHERE campaign = $1", campaign)
    assert sorted(r["attempt_id"] for r in log) == sorted(a["id"] for a in attempts)
    expected: Counter = Counter()
    for attempt in attempts:
        if attempt["requested_at"] is not None:
            local = attempt["requested_at"].astimezone(ZoneInfo(zone))
            hour = local.replace(minute=0, second=0, microsecond=0, tzinfo=None)
            expected[(hour, attempt["outcome"] or "in-flight")] += 1
    hourly = await db.fetch("SELECT * FROM hourly_outcomes WHERE campaign = $1", campaign)
    assert {(r["hour"], r["outcome"]): r["attempts"] for r in hourly} == dict(expected)


async def test_account_usage(db, campaign: str) -> None:
    _, attempts, _ = await raw(db, campaign)
    account = attempts[0]["account"]
    requests: Counter = Counter()
    changes: list[tuple[datetime, int]] = []
    for attempt in attempts:
        if attempt["requested_at"] is not None:
            requests[attempt["requested_at"].replace(second=0, microsecond=0)] += 1
        changes.append((attempt["created_at"], 1))
        if attempt["ended_at"] is not None and attempt["slot"] is None:
            changes.append((attempt["ended_at"], -1))
    peaks: dict[datetime, int] = {}
    held = 0
    for at, delta in sorted(changes):
        held += delta
        minute = at.replace(second=0, microsecond=0)
        peaks[minute] = max(peaks.get(minute, 0), held)
    rows = await db.fetch("SELECT * FROM account_usage WHERE account = $1", account)
    assert {r["minute"]: r["requests"] for r in rows if r["requests"]} == dict(requests)
    assert {r["minute"]: r["peak_channels"] for r in rows} == peaks
    assert all(r["peak_channels"] <= r["channel_limit"] for r in rows)


def psql() -> str:
    """The machine's psql, else the one pgserver (the embedded PostgreSQL) ships."""
    import pgserver

    return shutil.which("psql") or str(Path(pgserver.__file__).parent / "pginstall/bin/psql")


@pytest.mark.parametrize("report", sorted(p.name for p in REPORTS.glob("*.sql")))
def test_example_reports_run_in_psql(database_url: str, campaign: str, report: str) -> None:
    result = subprocess.run(
        [
            psql(),
            database_url,
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            f"campaign={campaign}",
            "-f",
            str(REPORTS / report),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "(0 rows)" not in result.stdout and result.stdout.strip()


def test_report_command_reads_each_view(run_cli, campaign: str) -> None:
    import json

    for view, key in (
        ("summary", "answer_rate"),
        ("contacts", "final_outcome"),
        ("attempts", "attempt_no"),
        ("hourly", "hour"),
        ("usage", "peak_channels"),
    ):
        result = run_cli("report", campaign, "--view", view, "--format", "json")
        assert result.exit_code == 0, result.stderr
        rows = json.loads(result.stdout)
        assert rows and key in rows[0], view
    recent = json.loads(
        run_cli(
            "report", campaign, "--view", "attempts", "--since", "1h", "--format", "json"
        ).stdout
    )
    future = json.loads(
        run_cli(
            "report", campaign, "--view", "attempts", "--since", "2099-01-01", "--format", "json"
        ).stdout
    )
    assert len(recent) > 0 and future == []
    hourly = run_cli("report", campaign, "--view", "hourly", "--since", "1h", "--format", "csv")
    assert hourly.exit_code == 0 and hourly.stdout.startswith("campaign,campaign_id,timezone,hour")
    assert run_cli("report", campaign, "--since", "1h").exit_code == 2
    assert run_cli("report", "no-such-campaign").exit_code == 2
    assert run_cli("report", campaign, "--view", "attempts", "--since", "soon").exit_code == 2
