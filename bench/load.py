"""Benchmark: `dialer campaign load` of a 1,000,000-row, 8-column CSV (2% invalid, 3% duplicate
numbers), side by side with `psql \\copy` of the same file into a plain table.

    python bench/load.py [--rows 1000000] [--repeat 3]

Targets (issue 1): load <= 30 s end to end and peak RSS <= 300 MB on the 2-core machine.
Each repetition runs both in a fresh database; medians are reported, and RESULTS.md updated.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_config, create_database, drop_database, median, run_measured, write_section

OUT = Path(__file__).with_name("out")
CITIES = ["Mumbai", "Delhi", "Bengaluru", "Chennai", "Kolkata", "Pune", "Hyderabad", "Jaipur"]


def generate(path: Path, rows: int, seed: int = 1) -> None:
    """phone,name,email,city,plan,amount,due_date,note with mixed phone formatting."""
    rng = random.Random(seed)
    earlier: list[str] = []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["phone", "name", "email", "city", "plan", "amount", "due_date", "note"])
        for i in range(rows):
            roll = rng.random()
            if roll < 0.02:
                phone = f"12{rng.randrange(10**6)}"  # too short: invalid
            elif roll < 0.05 and earlier:
                phone = rng.choice(earlier)  # a number already in the file
            else:
                digits = f"9{rng.randrange(10**9):09d}"
                style = i % 3
                phone = (
                    f"+91{digits}"
                    if style == 0
                    else f"0{digits[:5]} {digits[5:]}"
                    if style == 1
                    else digits
                )
                if len(earlier) < 50_000:
                    earlier.append(phone)
                elif rng.random() < 0.05:
                    earlier[rng.randrange(len(earlier))] = phone
            writer.writerow(
                [
                    phone,
                    f"Customer {i}",
                    f"customer{i}@example.com",
                    rng.choice(CITIES),
                    rng.choice(["basic", "plus", "pro"]),
                    f"{rng.uniform(100, 9999):.2f}",
                    f"2026-12-{rng.randrange(1, 29):02d}",
                    "renewal, call after 10am" if i % 10 == 0 else "",
                ]
            )


CAMPAIGN = """\
name = "bench-load"
account = "bench"
caller_id = "+918047112233"
contacts = "contacts.csv"
default_region = "IN"
timezone = "Asia/Kolkata"
"""


def psql_copy(url: str, csv_path: Path) -> float:
    """Seconds for psql \\copy of the file into a plain 8-column text table."""
    subprocess.run(
        [
            "psql",
            url,
            "-q",
            "-c",
            "CREATE TABLE plain (" + ", ".join(f"c{i} text" for i in range(8)) + ")",
            "-c",
            "CHECKPOINT",
        ],
        check=True,
    )
    started = time.perf_counter()
    subprocess.run(
        ["psql", url, "-q", "-c", f"\\copy plain FROM '{csv_path}' WITH (FORMAT csv, HEADER true)"],
        check=True,
    )
    elapsed = time.perf_counter() - started
    # each timed step starts with no dirty pages of the one before (as postgres_alone does):
    # the load would otherwise write out the copy's 90 MB while it runs
    subprocess.run(["psql", url, "-q", "-c", "CHECKPOINT"], check=True)
    return elapsed


def postgres_alone(url: str) -> float:
    """Seconds PostgreSQL takes to COPY the rows the load produced (as the loader sends them)
    into an empty table like `contacts` (its indexes, checks and defaults): its own share."""
    rows = OUT / "validated-rows.csv"
    columns = "campaign_id, row_no, phone_e164, name, timezone, priority, fields, jurisdiction"
    subprocess.run(
        [
            "psql",
            url,
            "-q",
            "-c",
            f"\\copy (SELECT {columns} FROM contacts ORDER BY id) TO '{rows}' WITH (FORMAT csv)",
            "-c",
            "CREATE TABLE contacts_again (LIKE contacts INCLUDING ALL)",
            "-c",
            "CHECKPOINT",
        ],
        check=True,
    )
    started = time.perf_counter()
    subprocess.run(
        ["psql", url, "-q", "-c", f"\\copy contacts_again ({columns}) FROM '{rows}' (FORMAT csv)"],
        check=True,
    )
    elapsed = time.perf_counter() - started
    rows.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("psql"):
        sys.exit("psql is needed for the side-by-side \\copy baseline")

    OUT.mkdir(exist_ok=True)
    csv_path = OUT / "contacts.csv"
    if not csv_path.exists() or csv_path.stat().st_size == 0 or args.rows != 1_000_000:
        print(f"generating {args.rows} rows ...", file=sys.stderr)
        generate(csv_path, args.rows)
    (OUT / "bench.toml").write_text(CAMPAIGN)
    size_mb = csv_path.stat().st_size / 1e6

    copies, loads, trees, singles, cpus, alone = [], [], [], [], [], []
    summary_line = ""
    for round_no in range(1, args.repeat + 1):
        name, url = create_database()
        try:
            copies.append(psql_copy(url, csv_path))
            env = os.environ | {
                "DIALER_DATABASE_URL": url,
                "DIALER_CONFIG": str(bench_config(OUT / "bench-dialer.toml")),
            }
            # Schema first, so the timed run is the load itself (migrate is a one-off).
            subprocess.run(
                [sys.executable, "-m", "dialer", "migrate"],
                env=env,
                check=True,
                capture_output=True,
            )
            result = run_measured(
                [
                    sys.executable,
                    "-m",
                    "dialer",
                    "campaign",
                    "load",
                    str(OUT / "bench.toml"),
                    "--json",
                ],
                env=env,
            )
            if result.returncode != 0:
                sys.exit(f"load failed: {result.stderr}")
            loads.append(result.seconds)
            cpus.append(result.cpu_seconds)
            alone.append(postgres_alone(url))
            trees.append(result.peak_rss_tree_mb)
            singles.append(result.peak_rss_single_mb)
            summary_line = result.stdout
            print(
                f"round {round_no}: psql \\copy {copies[-1]:.2f}s, dialer load {loads[-1]:.2f}s,"
                f" ratio {loads[-1] / copies[-1]:.1f}x, peak RSS tree {trees[-1]:.0f} MB"
                f" (largest process {singles[-1]:.0f} MB); Python CPU {cpus[-1]:.1f}s;"
                f" PostgreSQL alone {alone[-1]:.2f}s",
                file=sys.stderr,
            )
        finally:
            drop_database(name)

    import json

    summary = json.loads(summary_line)
    pg_s = f"{median(alone):.2f} s"
    pg_ratio = median([a / b for a, b in zip(alone, copies, strict=True)])
    body = f"""
Command: `python bench/load.py --rows {args.rows} --repeat {args.repeat}`
({os.cpu_count()} cores, Python {platform.python_version()});
file {size_mb:.0f} MB, {args.rows} rows x 8 columns.
Last run's summary: loaded {summary["loaded"]}, duplicates {summary["duplicates"]},
rejected {summary["rejected"]} ({summary["rejects_by_reason"]}).

| measure (median of {args.repeat}) | value |
|---|---|
| `psql \\copy` into a plain table | {median(copies):.2f} s |
| `dialer campaign load` end to end (process start to exit) | {median(loads):.2f} s |
| ratio load / copy | {median([a / b for a, b in zip(loads, copies, strict=True)]):.1f}x |
| peak RSS, dialer process tree (main + validation workers) | {median(trees):.0f} MB |
| peak RSS, largest single process | {median(singles):.0f} MB |
| CPU of the dialer's processes (main + validation workers) | {median(cpus):.1f} s |
| PostgreSQL alone: COPY of the loaded rows into an empty table like `contacts` | {pg_s} |
| ratio PostgreSQL alone / copy | {pg_ratio:.1f}x |

Targets: load <= 30 s (issue 1); load <= 12x `psql \\copy` and peak RSS <= 300 MB (issue 16).
Per round: loads {", ".join(f"{x:.1f}" for x in loads)} s;
copies {", ".join(f"{x:.2f}" for x in copies)} s;
PostgreSQL alone {", ".join(f"{x:.2f}" for x in alone)} s.
"""
    print(body)
    if args.rows == 1_000_000:
        write_section("Contact loading (issue 1)", body)


if __name__ == "__main__":
    main()
