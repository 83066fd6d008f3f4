"""Output people can use (dialer.cli.output): nothing cut however wide, objects as JSON,
ISO 8601 times, one CSV line ending, empty results said, --format on every command that
prints data."""

from __future__ import annotations

import json
from pathlib import Path

from tests.processes import write_campaign

LONG_NAME = "Dr. Venkatanarasimharajuvaripeta Subrahmanya Lakshminarayana Iyer-Chakravarthy"


def test_wide_rows_print_whole_and_objects_as_json(run_cli, tmp_path: Path) -> None:
    rows = [f"+91984507{i:04d},{LONG_NAME} {i},UTC" for i in range(3)]
    write_campaign(tmp_path, "a-campaign-with-a-rather-long-name-for-its-list", 3, csv_rows=rows)
    loaded = run_cli("campaign", "load", "a-campaign-with-a-rather-long-name-for-its-list.toml")
    assert loaded.exit_code == 0, loaded.stderr
    wide = run_cli(
        "report",
        "a-campaign-with-a-rather-long-name-for-its-list",
        "--view",
        "contacts",
        env={"COLUMNS": "160"},
    )
    assert wide.exit_code == 0, wide.stderr
    text = wide.stdout
    assert "…" not in text and f"{LONG_NAME} 0" in text, text  # whole, on one line
    assert "{'" not in text  # never Python's repr
    fields = next(line for line in text.splitlines() if line.startswith("fields"))
    assert fields.split(None, 1)[1] == "{}" or fields.split(None, 1)[1].startswith('{"')
    stamp = next(line for line in text.splitlines() if line.startswith("updated_at"))
    assert stamp.split()[1].endswith("+00:00") and "." not in stamp.split()[1]  # ISO, seconds
    listed = run_cli("campaign", "list", env={"COLUMNS": "80"}).stdout
    assert "a-campaign-with-a-rather-long-name-for-its-list" in listed.replace("\n", ""), listed
    assert "…" not in listed
    as_csv = run_cli(
        "report", "a-campaign-with-a-rather-long-name-for-its-list", "--format", "csv"
    ).stdout
    assert "\r" not in as_csv and as_csv.endswith("\n")


def test_every_command_that_prints_data_takes_a_format(run_cli, tmp_path: Path) -> None:
    added = run_cli("dnc", "add", "+919845079999", "--format", "json")
    assert json.loads(added.stdout) == [{"added": 1, "already_listed": 0, "contacts_suppressed": 0}]
    assert run_cli("dnc", "add", "+919845079999").stdout.startswith("added 0, already listed 1")
    removed = run_cli("dnc", "remove", "+919845079999", "--format", "csv").stdout
    assert removed == "removed\n1\n"
    assert json.loads(run_cli("migrate", "--format", "json").stdout) == []  # nothing to apply
    assert run_cli("migrate").stdout.strip() == "schema is up to date"
    status = run_cli("webhooks", "status", "--format", "json")
    assert status.exit_code == 0 and isinstance(json.loads(status.stdout), list)
    write_campaign(tmp_path, "shown-as", 2, csv_rows=["+919845078801,A,UTC", "+919845078802,B,UTC"])
    loaded = run_cli("campaign", "load", "shown-as.toml", "--format", "json")
    assert loaded.exit_code == 0, loaded.stderr
    assert json.loads(loaded.stdout)["loaded"] == 2
    # `--json`, the older spelling, says the same; with `--format text` it is refused, named
    again = run_cli("campaign", "load", "shown-as.toml", "--json")
    assert json.loads(again.stdout)["duplicates"] == 2
    odds = run_cli("campaign", "load", "shown-as.toml", "--json", "--format", "text")
    assert odds.exit_code == 2 and "--json and --format text" in odds.stderr, odds.stderr
    why = run_cli("explain", "+919845078801", "--format", "json")
    assert why.exit_code == 0, why.stderr
    assert [e["campaign"] for e in json.loads(why.stdout)] == ["shown-as"]
    older = json.loads(run_cli("explain", "098450 78801", "--region", "IN", "--json").stdout)
    assert [(e["campaign"], e["state"]) for e in older] == [("shown-as", "pending")]
    as_json = json.loads(run_cli("campaign", "show", "shown-as", "--format", "json").stdout)
    assert as_json["contacts"]["pending"] == 2
    assert as_json["not_dialed_now"]["waiting"][0]["reason"] == "due now"
    as_csv = run_cli("campaign", "show", "shown-as", "--format", "csv").stdout.splitlines()
    assert as_csv[0] == "campaign,reason,contacts,figure,next_at"
    assert as_csv[1].startswith("shown-as,due now,2,,")


def test_an_empty_result_says_so(run_cli) -> None:
    result = run_cli("webhooks", "status")
    assert result.exit_code == 0 and result.stdout.strip() == "webhook deliveries waiting: none"


async def test_a_long_listing_prints_as_it_is_read(run_cli, db) -> None:
    """`dnc list` (and `report`, through the same printer) read a server-side cursor: CSV and
    JSON print every row, a table the first TABLE_ROWS_SHOWN and how to have the rest."""
    from dialer.cli.output import TABLE_ROWS_SHOWN

    total = TABLE_ROWS_SHOWN + 5 + (await db.fetchval("SELECT count(*) FROM dnc"))
    await db.execute(
        """INSERT INTO dnc (phone_e164, reason)
           SELECT '+1212' || (3000000 + g)::text, CASE WHEN g = 1 THEN 'asked' END
           FROM generate_series(1, $1::int) g""",
        TABLE_ROWS_SHOWN + 5,
    )
    as_csv = run_cli("dnc", "list", "--format", "csv").stdout.splitlines()
    assert as_csv[0] == "phone_e164,reason,added_at" and len(as_csv) == total + 1
    assert as_csv[1:] == sorted(as_csv[1:])  # number order
    listed = json.loads(run_cli("dnc", "list", "--format", "json").stdout)
    assert len(listed) == total and {"phone_e164", "reason", "added_at"} == set(listed[0])
    assert {"phone_e164": "+12123000001", "reason": "asked"}.items() <= next(
        r for r in listed if r["phone_e164"] == "+12123000001"
    ).items()
    table = run_cli("dnc", "list").stdout
    assert f"do-not-call list ({total:,})" in table
    assert f"the first {TABLE_ROWS_SHOWN:,} rows: --format csv" in table
    assert sum(line.startswith("│ +") for line in table.splitlines()) == TABLE_ROWS_SHOWN
    await db.execute("DELETE FROM dnc WHERE phone_e164 LIKE '+12123%'")


async def test_a_reader_that_stops_reading_ends_the_command_quietly(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    """`dialer dnc list | head -1`: the reader closes the pipe; the command ends with the
    shell's code for it (141), saying nothing: its reader chose to stop, and the database
    connection was not lost (it said so before)."""
    import asyncio
    import os
    import subprocess

    from dialer.cli import OUTPUT_CLOSED_EXIT
    from tests.processes import dialer_command

    await own_db.execute(  # about 300 KB of CSV: more than a pipe holds
        "INSERT INTO dnc (phone_e164) SELECT '+1212' || (4000000 + g)::text"
        " FROM generate_series(1, 6000) g"
    )
    env = os.environ | {"DIALER_DATABASE_URL": own_database_url}
    env.pop("DIALER_CONFIG", None)

    def head_1(fmt: str) -> tuple[int, bytes]:
        listing = subprocess.Popen(
            dialer_command("dnc", "list", "--format", fmt),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert listing.stdout is not None and listing.stderr is not None
        assert listing.stdout.readline()
        listing.stdout.close()  # the reader stops
        said = listing.stderr.read()
        return listing.wait(timeout=60), said

    for fmt in ("csv", "json"):
        code, said = await asyncio.to_thread(head_1, fmt)
        assert code == OUTPUT_CLOSED_EXIT and said == b"", (code, said)


async def test_a_slow_reader_holds_no_transaction_open(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    """`dialer dnc list | less`: the listing is read from the database whole, then printed at
    the reader's pace, so no transaction (holding back PostgreSQL's clean-up of every table)
    waits on a person paging. Streamed straight to the pipe, it stayed open until the reader
    read."""
    import os

    from tests.processes import read_when_no_transaction_is_open

    await own_db.execute(  # about 300 KB of CSV: more than a pipe holds
        "INSERT INTO dnc (phone_e164) SELECT '+1212' || (5000000 + g)::text"
        " FROM generate_series(1, 6000) g"
    )
    listed = await own_db.fetchval("SELECT count(*) FROM dnc")
    env = os.environ | {"DIALER_DATABASE_URL": own_database_url}
    env.pop("DIALER_CONFIG", None)
    args = ["dnc", "list", "--format", "csv"]
    code, text = await read_when_no_transaction_is_open(args, env, tmp_path, own_db)
    assert code == 0 and len(text.splitlines()) == 1 + listed
