"""`dialer dnc`: normalized numbers, suppression of waiting contacts, import all-or-nothing."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from dialer.cli import dnc as dnc_cli
from dialer.db.standing import SENDS_MAY_COMMIT_SQL, STANDING_LOCK_KEY
from tests.loading.helpers import campaign_file, csv_file
from tests.processes import dialer_command, kill_when, until, values_seen_until_exit


async def states(db, campaign: str) -> dict[str, str]:
    rows = await db.fetch(
        """SELECT phone_e164, c.state FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
           WHERE k.name = $1""",
        campaign,
    )
    return {r["phone_e164"]: r["state"] for r in rows}


async def test_add_normalizes_and_suppresses_waiting_contacts(run_cli, tmp_path: Path, db) -> None:
    csv_file(tmp_path, ["+919845011111,A", "+919845011112,B", "+919845011113,C"])
    campaign_file(tmp_path, "d1")
    assert run_cli("campaign", "load", "d1.toml").exit_code == 0
    # B was already called and finished: its history is not rewritten.
    await db.execute("UPDATE contacts SET state = 'done' WHERE phone_e164 = '+919845011112'")

    result = run_cli(
        "dnc", "add", "098450 11111", "+91 98450 11112", "--region", "IN", "--reason", "asked"
    )
    assert result.exit_code == 0, result.stderr
    assert "added 2" in result.stdout and "contacts suppressed 1" in result.stdout
    assert await states(db, "d1") == {
        "+919845011111": "suppressed",
        "+919845011112": "done",
        "+919845011113": "pending",
    }
    listed = json.loads(run_cli("dnc", "list", "--format", "json").stdout)
    assert {(r["phone_e164"], r["reason"]) for r in listed} >= {
        ("+919845011111", "asked"),
        ("+919845011112", "asked"),
    }
    again = run_cli("dnc", "add", "+919845011111")
    assert "added 0, already listed 1" in again.stdout


def test_add_refuses_bad_numbers_and_adds_nothing(run_cli) -> None:
    result = run_cli("dnc", "add", "+919845022222", "12", "--region", "IN")
    assert result.exit_code == 2
    assert "'12': invalid phone number" in result.stderr
    assert "+919845022222" not in run_cli("dnc", "list", "--format", "csv").stdout


def test_national_number_without_region_is_explained(run_cli) -> None:
    result = run_cli("dnc", "add", "9845022222")
    assert result.exit_code == 2
    assert "without a region" in result.stderr


async def test_import_csv(run_cli, tmp_path: Path, db) -> None:
    (tmp_path / "dnc.csv").write_text("Phone,Reason\n+919845033331,complaint\n09845033332,\n")
    result = run_cli("dnc", "import", "dnc.csv", "--region", "IN", "--reason", "bulk")
    assert result.exit_code == 0, result.stderr
    rows = await db.fetch(
        "SELECT phone_e164, reason FROM dnc WHERE phone_e164 LIKE '+91984503333%'"
    )
    assert {(r["phone_e164"], r["reason"]) for r in rows} == {
        ("+919845033331", "complaint"),
        ("+919845033332", "bulk"),
    }


async def test_import_is_all_or_nothing(run_cli, tmp_path: Path, db) -> None:
    (tmp_path / "dnc.csv").write_text("phone\n+919845044441\nnot-a-number\n")
    result = run_cli("dnc", "import", "dnc.csv")
    assert result.exit_code == 2
    assert "line 3: 'not-a-number'" in result.stderr
    assert await db.fetchval("SELECT count(*) FROM dnc WHERE phone_e164 = '+919845044441'") == 0
    # a NUL byte in a reason is a bad row, named (it reached PostgreSQL and a traceback before)
    (tmp_path / "nul.csv").write_text("phone,reason\n+919845044442,ok\n+919845044443,a\x00b\n")
    nul = run_cli("dnc", "import", "nul.csv")
    assert nul.exit_code == 2 and "line 3: reason: a NUL byte" in nul.stderr, nul.stderr
    assert "Traceback" not in nul.stderr
    assert await db.fetchval("SELECT count(*) FROM dnc WHERE phone_e164 LIKE '+91984504444%'") == 0


async def test_remove_keeps_contacts_suppressed(run_cli, tmp_path: Path, db) -> None:
    run_cli("dnc", "add", "+919845055551")
    csv_file(tmp_path, ["+919845055551,A"])
    campaign_file(tmp_path, "d2")
    run_cli("campaign", "load", "d2.toml")
    assert run_cli("dnc", "remove", "+919845055551").stdout.strip() == "removed 1"
    assert await states(db, "d2") == {"+919845055551": "suppressed"}


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_list_formats(run_cli, fmt: str) -> None:
    run_cli("dnc", "add", "+919845066661", "--reason", "r")
    assert "+919845066661" in run_cli("dnc", "list", "--format", fmt).stdout


async def test_a_long_import_is_staged_in_files_and_written_as_one(
    run_cli, tmp_path: Path, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import waits in files of its own, not in memory (a 2,000,000-line FTC file took
    1.2 GB before, 95 MB now; bench/RESULTS.md): a list spread over many of them, with numbers
    written twice, lists each number once with its reason, counts what it did as one list
    would, and suppresses the waiting contacts it names."""
    monkeypatch.setattr(dnc_cli, "STAGED_NUMBERS", 10)  # a few hundred lines: many files
    numbers = [f"+91984506{n:04d}" for n in range(300)]
    lines = [f"{number},{'asked' if n % 2 else ''}" for n, number in enumerate(numbers)]
    lines += lines[:50]  # written twice
    path = tmp_path / "long.csv"
    path.write_text("phone,reason\n" + "\n".join(lines) + "\n")
    assert dnc_cli._buckets_for(path) > 10
    csv_file(tmp_path, [f"{numbers[7]},Seven", "+919845069999,Other"])
    campaign_file(tmp_path, "d3")
    assert run_cli("campaign", "load", "d3.toml").exit_code == 0

    result = run_cli("dnc", "import", "long.csv", "--reason", "bulk", "--format", "json")
    assert result.exit_code == 0, result.stderr
    said = json.loads(result.stdout)
    assert (said["rows"], said["added"], said["already_listed"]) == (350, 300, 0)
    assert said["contacts_suppressed"] == 1
    listed = await db.fetch(
        "SELECT phone_e164, reason FROM dnc WHERE phone_e164 = ANY($1::text[])", numbers
    )
    assert {(r["phone_e164"], r["reason"]) for r in listed} == {
        (number, "asked" if n % 2 else "bulk") for n, number in enumerate(numbers)
    }
    assert await states(db, "d3") == {numbers[7]: "suppressed", "+919845069999": "pending"}
    again = json.loads(run_cli("dnc", "import", "long.csv", "--format", "json").stdout)
    assert (again["added"], again["already_listed"]) == (0, 300)


async def test_an_import_killed_while_writing_leaves_nothing_and_holds_no_send(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    """A real `dialer dnc import` killed with SIGKILL while it writes (the standing lock held:
    sends wait): PostgreSQL rolls the whole import back and the lock goes with the session, so
    nothing is half-listed and sends may commit again. Run again to its end, read by another
    session all along, the list goes from none of its numbers to all of them at once, though
    they wait in two files and are written one file at a time."""
    path = tmp_path / "ftc.txt"
    path.write_text("".join(f"212,{2000000 + n}\n" for n in range(250_000)))  # FTC flat file
    assert dnc_cli._buckets_for(path) == 2
    listed = "SELECT count(*) FROM dnc WHERE phone_e164 LIKE '+1212%'"
    env = os.environ | {"DIALER_DATABASE_URL": own_database_url}
    env.pop("DIALER_CONFIG", None)
    process = await asyncio.create_subprocess_exec(
        *dialer_command("dnc", "import", str(path)),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    held = (
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
        f" AND classid = {STANDING_LOCK_KEY >> 32} AND objid = {STANDING_LOCK_KEY & 0xFFFFFFFF}"
        " AND objsubid = 1)"
    )

    await kill_when(process, lambda: own_db.fetchval(held), "the import held the standing lock")

    async def released() -> bool:
        return not await own_db.fetchval(held)

    await until(released, "the server to end the killed session")
    assert await own_db.fetchval(listed) == 0
    async with own_db.transaction():
        assert await own_db.fetchval(f"SELECT {SENDS_MAY_COMMIT_SQL}")

    again = await asyncio.create_subprocess_exec(
        *dialer_command("dnc", "import", str(path)),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    seen = await values_seen_until_exit(again, lambda: own_db.fetchval(listed))
    assert again.returncode == 0
    assert seen == {0, 250_000}, sorted(seen)


def test_a_full_temporary_folder_is_named(database_url: str, tmp_path: Path) -> None:
    """The checked numbers wait in temporary files: a disk with no room for them ends the
    import with one line naming the folder (and TMPDIR), before anything is listed."""
    from tests.processes import run_with_small_files

    path = tmp_path / "ftc.txt"
    path.write_text("".join(f"212,{2000000 + n}\n" for n in range(20_000)))  # 300 KB staged
    env = os.environ | {"DIALER_DATABASE_URL": database_url, "TMPDIR": str(tmp_path)}
    env.pop("DIALER_CONFIG", None)
    done = run_with_small_files(["dnc", "import", str(path)], env, tmp_path)
    assert done.returncode == 1, done.stderr
    assert f"cannot write the temporary folder {tmp_path} (set TMPDIR" in done.stderr
    assert "Traceback" not in done.stderr
