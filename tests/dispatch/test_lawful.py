"""Calling lawfully, with real `dialer run` processes against the sim (policy.packs).

The laws' hours are in the called party's local time, so instead of setting a clock the tests
give each contact a zone whose local time now is the instant wanted (20:30, noon): at 20:30 a
Florida contact is not dialed and a New York one is; three processes dialing two campaigns
that share a subject never give a Florida number a fourth call in 24 hours; and `dialer
explain` says why, with the calls that hold the number and the next lawful moment.
"""

# ruff: noqa: ASYNC220

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dialer.campaign_spec import zone_names
from tests.dispatch.test_end_to_end import FAST_CALLS, env_for, load
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


def zone_at(low: str, high: str) -> str:
    """A zone whose local time now lies between `low` and `high` (HH:MM). Every whole-hour
    offset has a zone (Etc/GMT±N), so any span of an hour's first 59 minutes holds one except
    in the last minute of a UTC hour, when only half- and quarter-hour zones could, and some
    hours have none: then, and only then, the test waits for the next minute (at most once)."""
    assert (int(high[:2]) * 60 + int(high[3:])) - (int(low[:2]) * 60 + int(low[3:])) > 30
    for attempt in range(2):
        now = datetime.now(UTC)
        for name in sorted(zone_names()):
            local = now.astimezone(ZoneInfo(name)).strftime("%H:%M")
            if low <= local <= high:
                return name
        if attempt == 0:
            time.sleep(61 - now.second)  # the first seconds of the next minute
    raise AssertionError(f"no zone has a local time between {low} and {high}")


def write_contacts(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    lines = ["phone,name,timezone,state", *(",".join(row) for row in rows)]
    path.write_text("\n".join(lines) + "\n")


def campaign(tmp_path: Path, name: str, rows, rules: str, retry: str = "") -> Path:
    path = write_campaign(tmp_path, name, 0, csv_rows=["+10000000000,x,UTC"], extra=rules)
    write_contacts(tmp_path / f"{name}.csv", rows)
    if retry:
        text = path.read_text().replace('busy = "1s"', retry)
        path.write_text(text.replace("max_attempts = 3", "max_attempts = 10"))
    return path


def run(tmp_path: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        dialer_command(*args), cwd=tmp_path, env=env, capture_output=True, timeout=200
    )


async def test_at_20_30_florida_waits_and_new_york_is_dialed(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    evening = zone_at("20:00", "20:58")  # Florida closed since 20:00, the US open until 21:00
    rows = [
        ("+13052001001", "Florida", evening, "FL"),
        ("+12122001001", "New York", evening, "NY"),
        ("+18002001001", "Toll free", evening, ""),  # US, state unknown: the strictest
    ]
    rules = 'rules = ["us-tcpa", "us-states"]'
    with sim_provider(tmp_path, "--rate", "20/s", "--channels", "4", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=4, port=free_port())
        env = env_for(own_database_url, config)
        load(tmp_path, env, campaign(tmp_path, "evening", rows, rules))
        stale = run(tmp_path, env, "run", "evening", "--for", "6s")  # us-tcpa: no registry copy
        registry = tmp_path / "us-dnc.csv"
        registry.write_text("202,5550100\n")  # the FTC's flat file: area code, number
        today = datetime.now(UTC).date().isoformat()
        imported = run(
            tmp_path, env, "dnc", "import", str(registry), "--registry", "us-dnc", "--as-of", today
        )
        assert imported.returncode == 0, imported.stderr.decode()
        dry = run(tmp_path, env, "run", "evening", "--dry-run")
        result = run(tmp_path, env, "run", "evening", "--for", "6s")
        stats = await sim_stats(sim)
        why = run(tmp_path, env, "explain", "+13052001001", "--json")
    refused = stale.stderr.decode()
    assert stale.returncode == 2 and "requires registry us-dnc" in refused, refused
    said = dry.stdout.decode()
    assert "held by the laws named (us-tcpa@2026-12-05, us-states@2026-12-05)" in said, said
    assert "hours 08:00-20:00 (US-FL)" in said and "hours 08:00-20:00 (US) " in said
    assert result.returncode == 3, result.stderr.decode()[-2000:]  # work left: Florida waits
    assert set(stats["per_number"]) == {"+12122001001"}, stats["per_number"]
    found = await own_db.fetch("SELECT phone_e164, jurisdiction FROM contacts ORDER BY 1")
    assert [r["jurisdiction"] for r in found] == ["US-NY", "US-FL", "US"]
    checked = await own_db.fetchval(
        "SELECT rules_checked FROM attempts WHERE phone_e164 = '+12122001001' LIMIT 1"
    )
    assert any(r.startswith("us-tcpa@") and r.endswith("/calling-hours") for r in checked)
    assert why.returncode == 0, why.stderr.decode()
    florida = json.loads(why.stdout)[0]
    window = next(c for c in florida["checks"] if c["rule"] == "calling window")
    assert not window["allows"] and window["detail"].startswith("08:00-20:00 in ")
    assert not florida["dial_now"] and florida["next_lawful"]
    opens = datetime.fromisoformat(florida["next_lawful"]).astimezone(ZoneInfo(evening))
    assert opens.strftime("%H:%M") == "08:00"


async def test_three_processes_two_campaigns_one_subject_never_a_fourth_call_in_24h(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    noon = zone_at("09:00", "19:00")
    numbers = [f"+1305200{2000 + i}" for i in range(6)]
    rows = [(n, f"c{i}", noon, "FL") for i, n in enumerate(numbers)]
    rules = 'rules = ["us-states"]\nsubject = "renewals"'
    sim_options = ("--rate", "20/s", "--channels", "6", *FAST_CALLS, "--outcomes", "busy=1")
    serve_port = free_port()
    with sim_provider(tmp_path, *sim_options) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=6, port=serve_port)
        env = env_for(own_database_url, config)
        for name in ("spring", "autumn"):
            load(tmp_path, env, campaign(tmp_path, name, rows, rules, retry='busy = "1s"'))
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
            wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
            processes = [
                subprocess.Popen(
                    dialer_command("run", "--dial-cap", "100", "--for", "25s", "--wait"),
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=(tmp_path / f"run{i}.log").open("wb"),
                )
                for i in range(3)
            ]
            codes = [p.wait(timeout=200) for p in processes]
        stats = await sim_stats(sim)
        calls = Counter(call["to"] for call in stats["calls"].values())
        held = next(number for number, count in calls.items() if count == 3)
        asked = ("explain", held, "--campaign", "autumn", "--dial-cap", "100")
        why = run(tmp_path, env, *asked)
        later = run(tmp_path, env, *asked, "--json")
    logs = [(tmp_path / f"run{i}.log").read_text() for i in range(3)]
    assert set(codes) <= {0, 3}, [log[-2000:] for log in logs]
    assert max(calls.values()) == 3, calls  # never a fourth, whichever campaign or process
    assert set(calls) == set(numbers)
    per_subject = await own_db.fetch(
        """SELECT phone_e164, subject, count(*) FROM attempts WHERE state <> 'not_dialed'
           GROUP BY 1, 2"""
    )
    assert {r["subject"] for r in per_subject} == {"renewals"}
    assert max(r["count"] for r in per_subject) == 3
    text = why.stdout.decode()
    assert why.returncode == 0, why.stderr.decode()
    assert "HOLD cap 3/24h: 3 calls within 24h (at" in text, text
    assert "ok   daily dial cap 100/24h" in text
    assert "not now; next lawful moment" in text
    lawful = datetime.fromisoformat(json.loads(later.stdout)[0]["next_lawful"])
    assert (lawful - datetime.now(UTC)).total_seconds() > 20 * 3600  # when the first call ages


async def test_consent_is_required_and_a_revocation_stops_every_process(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """`requires_consent = "marketing"`: a number never granted is never dialed; one revoked
    mid-run is dialed by neither of two processes after its stamp (`recorded_at`), while the
    others go on."""
    numbers = [f"+91984502{i:04d}" for i in range(4)]
    rows = [(n, f"c{i}", "Asia/Kolkata", "") for i, n in enumerate(numbers)]
    grants = "phone,scope,source\n" + "".join(f"{n},marketing,crm\n" for n in numbers[:3])
    (tmp_path / "grants.csv").write_text(grants)
    serve_port = free_port()
    sim_options = ("--rate", "20/s", "--channels", "4", *FAST_CALLS, "--outcomes", "busy=1")
    with sim_provider(tmp_path, *sim_options) as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=4, port=serve_port)
        env = env_for(own_database_url, config)
        rules = 'requires_consent = "marketing"'
        path = campaign(tmp_path, "consented", rows, rules, retry='busy = "1s"')
        path.write_text(path.read_text().replace("max_attempts = 10", "max_attempts = 40"))
        load(tmp_path, env, path)
        assert run(tmp_path, env, "consent", "import", "grants.csv").returncode == 0
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve.log"):
            wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
            processes = [
                subprocess.Popen(
                    dialer_command("run", "--dial-cap", "100", "--for", "16s", "--wait"),
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=(tmp_path / f"run{i}.log").open("wb"),
                )
                for i in range(2)
            ]
            count = "SELECT count(*) FROM attempts WHERE phone_e164 = $1"
            while await own_db.fetchval(count, numbers[1]) < 2:  # noqa: ASYNC110 (a process)
                await asyncio.sleep(0.2)
            revoked = run(tmp_path, env, "consent", "revoke", numbers[1], "--scope", "marketing")
            codes = [p.wait(timeout=200) for p in processes]
        stats = await sim_stats(sim)
    assert revoked.returncode == 0, revoked.stderr.decode()
    assert set(codes) <= {0, 3}
    when = await own_db.fetchval("SELECT recorded_at FROM consent_events WHERE action = 'revoke'")
    late = await own_db.fetch(
        """SELECT id, requested_at FROM attempts
           WHERE phone_e164 = $1 AND requested_at > $2 AND state <> 'not_dialed'""",
        numbers[1],
        when,
    )
    assert not late, late  # no call committed after the revocation's stamp (db.standing)
    calls = Counter(call["to"] for call in stats["calls"].values())
    assert numbers[3] not in calls  # never granted: never dialed
    after = await own_db.fetchval(
        "SELECT count(*) FROM attempts WHERE phone_e164 = $1 AND requested_at > $2",
        numbers[0],
        when,
    )
    assert after > 0  # the others went on


async def test_a_registry_copy_that_turns_stale_mid_run_stops_its_campaign(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    """us-tcpa demands a us-dnc copy at most 31 days old: when the newest copy turns too old
    during a run (here: its date moved back, as a day passing would), the run stops dialing the
    campaign before its next claim and exits 2 naming registry and age; nothing is sent after."""
    noon = zone_at("09:00", "19:00")
    numbers = [f"+1212200{3000 + i}" for i in range(40)]
    rows = [(n, f"c{i}", noon, "NY") for i, n in enumerate(numbers)]
    with sim_provider(tmp_path, "--rate", "4/s", "--channels", "2", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="4/s", channels=2, port=free_port())
        env = env_for(own_database_url, config)
        load(tmp_path, env, campaign(tmp_path, "aging", rows, 'rules = ["us-tcpa"]'))
        (tmp_path / "us-dnc.csv").write_text("202,5550100\n")
        today = datetime.now(UTC).date().isoformat()
        args = ("dnc", "import", "us-dnc.csv", "--registry", "us-dnc", "--as-of", today)
        assert run(tmp_path, env, *args).returncode == 0
        process = subprocess.Popen(
            dialer_command("run", "aging", "--for", "60s"),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        sent = "SELECT count(*) FROM attempts WHERE requested_at IS NOT NULL"
        while await own_db.fetchval(sent) < 3:  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.1)
        aged = await own_db.fetchval(
            """UPDATE dnc_registry_copies SET as_of = as_of - 40 WHERE registry = 'us-dnc'
               RETURNING now()"""
        )
        _, err = process.communicate(timeout=120)
        stats = await sim_stats(sim)
    said = err.decode()
    assert process.returncode == 2, said[-3000:]
    assert "stopped dialing: campaign aging: us-tcpa@" in said, said[-3000:]
    assert "40 days old" in said
    late = await own_db.fetch(
        "SELECT id FROM attempts WHERE created_at > $1::timestamptz + interval '1 second'", aged
    )
    assert not late, late  # at most a claim already committed when the copy aged
    assert len(stats["per_number"]) < len(numbers)
    left = await own_db.fetchval("SELECT count(*) FROM contacts WHERE state = 'pending'")
    assert left > 0
