"""Registries with their age: `dnc import --registry --as-of` records the copy and where each
number came from; a campaign whose packs demand a fresher copy is refused by `dialer run`
(exit 2, naming registry and age); NCPR registrations younger than 7 days are reported as not
yet binding (and never dialed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.loading.helpers import campaign_file, csv_file
from tests.processes import write_config


def today() -> datetime:
    return datetime.now(UTC)


def day(offset: int = 0) -> str:
    return (today() + timedelta(days=offset)).date().isoformat()


async def counts(db) -> tuple[int, int]:
    copies = await db.fetchval("SELECT count(*) FROM dnc_registry_copies")
    return copies, await db.fetchval("SELECT count(*) FROM dnc")


async def test_a_registry_copy_is_recorded_and_recent_registrations_reported(
    run_cli, tmp_path: Path, db
) -> None:
    path = tmp_path / "ncpr.csv"
    path.write_text(
        f"phone,registered_on\n+919845030001,{day(-2)}\n+919845030002,{day(-30)}\n+919845030003,\n"
    )
    result = run_cli(
        "dnc", "import", str(path), "--registry", "in-ncpr", "--as-of", day(), "--format", "json"
    )
    assert result.exit_code == 0, result.stderr
    said = json.loads(result.stdout)
    assert said["added"] == 3 and said["registry"] == "in-ncpr"
    assert len(said["notes"]) == 1, said["notes"]
    binds = (today() + timedelta(days=5)).date().isoformat()
    assert f"registered on {day(-2)} are not yet binding" in said["notes"][0]
    assert f"binds from {binds}" in said["notes"][0]
    rows = await db.fetch(
        """SELECT d.phone_e164, d.registry, d.registered_on::text, c.as_of::text
           FROM dnc d JOIN dnc_registry_copies c ON c.id = d.copy_id
           WHERE d.phone_e164 LIKE '+91984503000%' ORDER BY 1"""
    )
    assert [tuple(r) for r in rows] == [
        ("+919845030001", "in-ncpr", day(-2), day()),
        ("+919845030002", "in-ncpr", day(-30), day()),
        ("+919845030003", "in-ncpr", None, day()),
    ]
    report = run_cli("dnc", "registries", "--format", "json")
    assert report.exit_code == 0, report.stderr
    by_name = {r["registry"]: r for r in json.loads(report.stdout)}
    assert by_name["in-ncpr"]["listed"] >= 3 and by_name["in-ncpr"]["age_days"] == 0
    assert by_name["us-dnc"]["status"] == "never imported: stale"  # us-tcpa demands it
    assert by_name["us-dnc"]["demanded_by"][0].startswith("us-tcpa@")
    why = run_cli("explain", "+919845030001", "--json")  # no contact has it: named as such
    assert why.exit_code != 0 and "no contact with the number" in why.stderr


async def test_the_ftc_flat_file_reads_as_area_code_and_number(run_cli, tmp_path: Path, db) -> None:
    path = tmp_path / "ftc.txt"
    path.write_text("212,5550101\n212,5550102\n")
    result = run_cli("dnc", "import", str(path), "--registry", "us-dnc", "--as-of", day(-3))
    assert result.exit_code == 0, result.stderr
    assert "read 2 rows: added 2" in result.stdout
    listed = await db.fetchval(
        "SELECT array_agg(phone_e164 ORDER BY 1) FROM dnc WHERE registry = 'us-dnc'"
    )
    assert {"+12125550101", "+12125550102"} <= set(listed)


@pytest.mark.parametrize(
    "args, text, said",
    [
        (("--registry", "us-dnc"), "+12125550199\n", "--registry and --as-of go together"),
        (("--as-of", "2026-01-01"), "+12125550199\n", "--registry and --as-of go together"),
        (("--registry", "US DNC", "--as-of", "2026-01-01"), "+12125550199\n", "--registry"),
        (("--registry", "us-dnc", "--as-of", "01/02/2026"), "+12125550199\n", "--as-of"),
        (("--registry", "us-dnc", "--as-of", "FUTURE"), "+12125550199\n", "from the future"),
        (
            ("--registry", "in-ncpr", "--as-of", "TODAY"),
            "phone,registered_on\n+919845030011,2026-02-30\n",
            "line 2: registered_on '2026-02-30' is not a date",
        ),
        (
            ("--registry", "in-ncpr", "--as-of", "2026-01-01"),
            "phone,registered_on\n+919845030011,2025-12-01\n+919845030012,2026-01-05\n",
            "line 3: registered_on '2026-01-05' is after the copy's date (2026-01-01)",
        ),
        (
            ("--registry", "us-dnc", "--as-of", "TODAY"),
            "212,5550101\n212,555010\n",
            "line 2: expected 'area code,number'",
        ),
    ],
)
async def test_bad_registry_input_writes_nothing_and_names_the_fault(
    run_cli, tmp_path: Path, db, args: tuple[str, ...], text: str, said: str
) -> None:
    before = await counts(db)
    path = tmp_path / "copy.csv"
    path.write_text(text)
    args = tuple(
        {"FUTURE": day(2), "TODAY": day()}.get(a, a) for a in args
    )  # dates relative to the test's day
    result = run_cli("dnc", "import", str(path), *args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert said in result.stderr, result.stderr
    assert await counts(db) == before


async def test_run_refuses_a_campaign_whose_registry_copy_is_too_old(
    run_cli, tmp_path: Path, db
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", rate="1/s", channels=1, port=9)
    env = {"DIALER_CONFIG": str(config)}
    csv_file(tmp_path, ["+12125550301,A,NY"], header="phone,name,state")
    campaign_file(tmp_path, "tcpa", extra='rules = ["us-tcpa"]')
    assert run_cli("campaign", "load", "tcpa.toml", env=env).exit_code == 0
    await db.execute(  # this module's other tests imported us-dnc copies: start with none
        """UPDATE dnc SET copy_id = NULL WHERE registry = 'us-dnc';
           DELETE FROM dnc_registry_copies WHERE registry = 'us-dnc'"""
    )

    never = run_cli("run", "tcpa", "--dry-run", env=env)
    assert never.exit_code == 2 and "no copy of it was ever imported" in never.stderr

    old = tmp_path / "old.txt"
    old.write_text("212,5550401\n")
    for as_of in (day(-40), day(-32)):
        imported = run_cli("dnc", "import", str(old), "--registry", "us-dnc", "--as-of", as_of)
        assert imported.exit_code == 0, imported.stderr
    refused = run_cli("run", "tcpa", env=env)
    assert refused.exit_code == 2, refused.stdout + refused.stderr
    assert "requires registry us-dnc no older than 31 days" in refused.stderr
    assert f"the newest copy is as of {day(-32)}, 32 days old" in refused.stderr
    report = run_cli("dnc", "registries", "--format", "json")
    assert report.exit_code == 3  # an active campaign is blocked: cron can act on it
    us = next(r for r in json.loads(report.stdout) if r["registry"] == "us-dnc")
    assert us["status"] == "stale" and us["blocks_active_campaigns"] == ["tcpa"]
    assert await db.fetchval("SELECT count(*) FROM attempts") == 0

    fresh = run_cli("dnc", "import", str(old), "--registry", "us-dnc", "--as-of", day(-31))
    assert fresh.exit_code == 0, fresh.stderr
    dry = run_cli("run", "tcpa", "--dry-run", env=env)
    assert dry.exit_code == 0, dry.stderr  # 31 days old: still within the rule
    assert run_cli("dnc", "registries").exit_code == 0
    why = json.loads(run_cli("explain", "+12125550301", "--json", env=env).stdout)[0]
    check = next(c for c in why["checks"] if c["rule"] == "registry us-dnc")
    assert check["allows"] and f"copy as of {day(-31)}, 31 days old" in check["detail"]
