"""Campaign control, report, dry run and demo from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from tests.processes import write_campaign


def load(run_cli, tmp_path: Path, name: str, rows: list[str] | None = None) -> None:
    write_campaign(tmp_path, name, 5, csv_rows=rows)
    assert run_cli("campaign", "load", f"{name}.toml").exit_code == 0


def test_pause_resume_cancel(run_cli, tmp_path: Path) -> None:
    load(run_cli, tmp_path, "ctl")
    assert "active -> paused" in run_cli("campaign", "pause", "ctl").stdout
    assert "already paused" in run_cli("campaign", "pause", "ctl").stdout
    assert "paused -> active" in run_cli("campaign", "resume", "ctl").stdout
    canceled = run_cli("campaign", "cancel", "ctl", "--format", "json")
    said = json.loads(canceled.stdout)  # as the API's POST /campaigns/ctl/cancel answers
    assert (said["name"], said["action"]) == ("ctl", "cancel")
    assert "5 waiting contacts canceled" in said["message"]
    refused = run_cli("campaign", "resume", "ctl")
    assert refused.exit_code == 2 and "is canceled" in refused.stderr
    missing = run_cli("campaign", "pause", "nope")
    assert missing.exit_code == 2 and "no such campaign: nope" in missing.stderr


def test_list_show_report(run_cli, tmp_path: Path) -> None:
    load(run_cli, tmp_path, "shown")
    listed = json.loads(run_cli("campaign", "list", "--format", "json").stdout)
    assert {"campaign": "shown", "pending": 5}.items() <= next(
        r for r in listed if r["campaign"] == "shown"
    ).items()
    shown = run_cli("campaign", "show", "shown").stdout
    assert "status        active" in shown and "pending 5" in shown and "window" in shown
    report = json.loads(run_cli("report", "shown", "--format", "json").stdout)
    assert report[0]["contacts"] == 5 and report[0]["attempts"] == 0
    assert run_cli("report", "nope").exit_code == 2


def test_dry_run_explains_who_and_why(run_cli, tmp_path: Path) -> None:
    rows = ["+919845070001,a,UTC", "+919845070002,b,UTC", "+919845070003,c,UTC"]
    load(run_cli, tmp_path, "dry", rows)
    run_cli("dnc", "add", "+919845070003")
    config = tmp_path / "dialer.toml"
    config.write_text(
        '[accounts.sim-main]\nkind = "sim"\nbase_url = "http://127.0.0.1:9"\nsecret = "s"\n'
        'rate = "1/s"\nchannels = 1\n'
    )
    result = run_cli("--config", str(config), "run", "dry", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "due now                  2" in result.stdout
    assert "+919845070001" in result.stdout


async def test_an_account_absent_from_dialer_toml_is_refused_at_load_and_at_run(
    run_cli, tmp_path: Path, db
) -> None:
    """Checked when the campaign enters (exit 2 naming the account and the known ones, nothing
    stored), and again at run for a campaign whose account left dialer.toml since."""
    write_campaign(tmp_path, "noacct", 5)
    other = tmp_path / "other.toml"
    other.write_text(
        '[accounts.exotel-1]\nkind = "sim"\nbase_url = "http://127.0.0.1:9"\n'
        'secret = "s"\nrate = "1/s"\nchannels = 1\n'
    )
    refused = run_cli("--config", str(other), "campaign", "load", "noacct.toml")
    assert refused.exit_code == 2
    assert "account 'sim-main' is not in" in refused.stderr and "exotel-1" in refused.stderr
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE name = 'noacct'") == 0
    load(run_cli, tmp_path, "noacct")
    result = run_cli("--config", str(other), "run", "noacct")
    assert result.exit_code == 2
    assert "uses account 'sim-main'" in result.stderr


def test_demo_runs_a_whole_campaign(run_cli) -> None:
    result = run_cli("demo", "--contacts", "60")
    assert result.exit_code == 0, result.stderr
    assert "answer_rate" in result.stdout and "completed" in result.stdout


def test_demo_refuses_a_count_that_is_not_one(run_cli) -> None:
    for bad in ("-5", "0", "1000001"):
        result = run_cli("demo", "--contacts", bad)
        assert result.exit_code == 2, (bad, result.stderr)
        assert "--contacts" in result.stderr and "range" in result.stderr, result.stderr


async def test_a_read_only_database_ends_a_load_with_one_line(
    run_cli, tmp_path: Path, own_database_url: str
) -> None:
    """A standby, or a primary turned read-only: the load says so in one line (exit 1), not
    with a traceback, and writes nothing; once it takes writes, the same load loads."""
    admin = await asyncpg.connect(own_database_url)
    name = await admin.fetchval("SELECT current_database()")
    await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    write_campaign(tmp_path, "c-ro", 5)
    env = {"DIALER_DATABASE_URL": own_database_url}
    try:
        result = run_cli("campaign", "load", "c-ro.toml", env=env)
        said = [line for line in result.stderr.splitlines() if "warning" not in line]
        assert result.exit_code == 1, result.stderr
        assert said == [said[0]] and said[0].startswith(
            "dialer: error: the database refused the command: the database is read-only"
        ), said
        assert "ReadOnlySQLTransactionError" in said[0]
        assert await admin.fetchval("SELECT count(*) FROM campaigns") == 0
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        await admin.close()
    assert run_cli("campaign", "load", "c-ro.toml", env=env).exit_code == 0
