"""Where PostgreSQL's share of a load goes: the loaded rows COPied into tables like `contacts`
with one part taken away at a time (an index, the jsonb type, the checks), side by side.

    python bench/copy_parts.py [--rounds 3]

Needs bench/load.py's file (bench/out/contacts.csv); loads it once with `dialer campaign load`
into a database of its own, writes the rows as the loader sends them, then times
`psql \\copy` of those rows into each variant, alternately, medians of the rounds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_config, create_database, drop_database, median, write_section

from dialer.loading.loader import CHUNK_ROWS  # the rows of one COPY of a load

OUT = Path(__file__).with_name("out")
COLUMNS = "campaign_id, row_no, phone_e164, name, timezone, priority, fields, jurisdiction"
VARIANTS = {
    "like `contacts` (all of it)": "",
    "without the unique (phone, campaign) index": "ALTER TABLE {t} DROP CONSTRAINT {unique_key}",
    "without the due index": "DROP INDEX {due}",
    "without the number and jurisdiction checks": "ALTER TABLE {t} DROP CONSTRAINT {phone_check},"
    " DROP CONSTRAINT {jurisdiction_check}",
    "`fields` as text, not jsonb": "ALTER TABLE {t} ALTER fields DROP DEFAULT,"
    " ALTER fields TYPE text",
    "a plain table of the 8 columns as text": None,
    'the number in the "C" collation': 'ALTER TABLE {t} ALTER phone_e164 TYPE text COLLATE "C"',
    'the number in "C", each 10,000 rows sorted by it': "ALTER TABLE {t} ALTER phone_e164"
    ' TYPE text COLLATE "C"',
}
SORTED = {'the number in "C", each 10,000 rows sorted by it'}  # COPied from the sorted file


def psql(url: str, *commands: str) -> str:
    args = ["psql", url, "-qAt"]
    for command in commands:
        args += ["-c", command]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def make_variant(url: str, table: str, change: str | None) -> None:
    if change is None:
        psql(url, f"CREATE TABLE {table} ({COLUMNS.replace(',', ' text,')} text)")
        return
    psql(url, f"CREATE TABLE {table} (LIKE contacts INCLUDING ALL)")
    names = dict(
        line.split("|")
        for line in psql(
            url,
            "SELECT CASE WHEN indexdef LIKE '%UNIQUE%' THEN 'unique' WHEN indexdef LIKE"
            f" '%pending%' THEN 'due' ELSE 'pkey' END, indexname FROM pg_indexes WHERE"
            f" tablename = '{table}'",
        ).splitlines()
    )
    for line in psql(
        url,
        "SELECT CASE WHEN contype = 'u' THEN 'unique_key'"
        " WHEN pg_get_constraintdef(oid) LIKE '%phone_e164%' THEN 'phone_check'"
        " WHEN pg_get_constraintdef(oid) LIKE '%jurisdiction%' THEN 'jurisdiction_check'"
        f" ELSE 'other' END, conname FROM pg_constraint WHERE conrelid = '{table}'::regclass",
    ).splitlines():
        kind, name = line.split("|")
        names[kind] = name
    if change:
        psql(url, change.format(t=table, **names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    csv_path = OUT / "contacts.csv"
    if not csv_path.exists():
        sys.exit("run bench/load.py first: it writes bench/out/contacts.csv")
    name, url = create_database()
    rows = OUT / "validated-rows.csv"
    sorted_rows = OUT / "validated-rows-sorted.csv"
    times: dict[str, list[float]] = {label: [] for label in VARIANTS}
    plain_copy: list[float] = []
    try:
        env = os.environ | {
            "DIALER_DATABASE_URL": url,
            "DIALER_CONFIG": str(bench_config(OUT / "bench-dialer.toml")),
        }
        dialer = [sys.executable, "-m", "dialer"]
        subprocess.run([*dialer, "migrate"], env=env, check=True, capture_output=True)
        subprocess.run(
            [*dialer, "campaign", "load", str(OUT / "bench.toml")],
            env=env,
            check=True,
            capture_output=True,
        )
        psql(url, f"\\copy (SELECT {COLUMNS} FROM contacts ORDER BY id) TO '{rows}' (FORMAT csv)")
        psql(
            url,
            f"\\copy (SELECT {COLUMNS} FROM contacts ORDER BY (row_number() OVER (ORDER BY id)"
            f" - 1) / {CHUNK_ROWS}, phone_e164 COLLATE \"C\") TO '{sorted_rows}' (FORMAT csv)",
        )
        for round_no in range(args.rounds):
            for index, (label, change) in enumerate(VARIANTS.items()):
                table = f"variant_{index}"
                psql(url, f"DROP TABLE IF EXISTS {table}")
                make_variant(url, table, change)
                psql(url, "CHECKPOINT")
                started = time.perf_counter()
                source = sorted_rows if label in SORTED else rows
                psql(url, f"\\copy {table} ({COLUMNS}) FROM '{source}' (FORMAT csv)")
                times[label].append(time.perf_counter() - started)
                psql(url, f"DROP TABLE {table}")
            psql(
                url,
                "DROP TABLE IF EXISTS raw_file",
                f"CREATE TABLE raw_file ({', '.join(f'c{i} text' for i in range(8))})",
            )
            started = time.perf_counter()
            psql(url, f"\\copy raw_file FROM '{csv_path}' (FORMAT csv, HEADER true)")
            plain_copy.append(time.perf_counter() - started)
            print(f"round {round_no + 1}: " + ", ".join(f"{t[-1]:.2f}" for t in times.values()))
    finally:
        rows.unlink(missing_ok=True)
        sorted_rows.unlink(missing_ok=True)
        drop_database(name)
    base = median(plain_copy)
    full = median(times["like `contacts` (all of it)"])
    table = "\n".join(
        f"| {label} | {median(t):.2f} | {median(t) / base:.1f}x | {full - median(t):+.2f} |"
        for label, t in times.items()
    )
    body = f"""
Command: `python bench/copy_parts.py --rounds {args.rounds}`: the rows one load of
bench/load.py's file produced, COPied by psql into tables like `contacts` with one part taken
away at a time, alternately, medians of {args.rounds} rounds. The reference is bench/load.py's:
`psql \\copy` of the raw file into a plain 8-column table, {base:.2f} s here.

| COPY of the loaded rows into | seconds | / raw-file copy | saved by leaving it out |
|---|---|---|---|
{table}
"""
    print(body)
    write_section("Loading: PostgreSQL's own share, part by part (issue 16)", body)


if __name__ == "__main__":
    main()
