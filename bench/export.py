"""Export benchmark: `dialer export` of a 1,000,000-contact campaign, peak RSS and time.

    python bench/export.py [--contacts 1000000] [--repeat 3]

One fresh database holds a campaign of N contacts (5 CSV columns) with one settled attempt
each, made by SQL. Each round times `dialer export NAME --out FILE` from process start to exit,
sampling the RSS of its process tree, and, side by side, `psql \\copy` of the same rows from the
`contact_results` view (the floor: PostgreSQL's own streaming). Medians go to RESULTS.md.
Target: peak RSS <= 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    create_database,
    drop_database,
    median,
    run_measured,
    write_section,
)
from dialer.campaign_spec import CampaignSpec
from dialer.db.migrations import migrate

OUT = Path(__file__).with_name("out")
COLUMNS = ["phone", "name", "plan", "city", "note"]


async def seed(url: str, contacts: int) -> None:
    spec = CampaignSpec(
        name="export-bench",
        account="sim-main",
        caller_id="+918047112233",
        default_region="IN",
        timezone="Asia/Kolkata",
    )
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        campaign = await conn.fetchval(
            "INSERT INTO campaigns (name, account, spec) VALUES ('export-bench', 'sim-main',"
            " $1::jsonb) RETURNING id",
            spec.model_dump_json(by_alias=True),
        )
        await conn.execute(
            "INSERT INTO loads (campaign_id, source, sha256, columns, rows_read, loaded,"
            " duplicates, suppressed, rejected) VALUES ($1, 'bench.csv', 'x', $2, $3, $3, 0, 0, 0)",
            campaign,
            COLUMNS,
            contacts,
        )
        await conn.execute(
            """INSERT INTO contacts (campaign_id, row_no, phone_e164, name, fields, state,
                                     attempts, last_outcome)
               SELECT $1, n + 1, '+9198' || lpad(n::text, 8, '0'), 'Person ' || n,
                      jsonb_build_object('plan', (ARRAY['basic', 'plus', 'pro'])[n % 3 + 1],
                                         'city', 'Bengaluru', 'note', 'said "call later", ok'),
                      CASE WHEN n % 3 = 0 THEN 'done' ELSE 'exhausted' END, 1,
                      CASE WHEN n % 3 = 0 THEN 'completed' ELSE 'no-answer' END
               FROM generate_series(1, $2) AS n""",
            campaign,
            contacts,
        )
        await conn.execute(
            """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                                     phone_e164, outcome, requested_at, ended_at, duration_s)
               SELECT id, campaign_id, 'sim-main', 1, last_outcome, phone_e164, last_outcome,
                      now() - interval '1 hour', now(),
                      CASE WHEN last_outcome = 'completed' THEN 42 END
               FROM contacts""",
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def psql_copy(url: str, target: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            "psql",
            url,
            "-q",
            "-c",
            f"\\copy (SELECT * FROM contact_results) TO '{target}' WITH (FORMAT csv, HEADER true)",
        ],
        check=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("psql"):
        sys.exit("psql is needed for the side-by-side \\copy baseline")
    OUT.mkdir(exist_ok=True)
    name, url = create_database()
    exports, copies, trees, sizes = [], [], [], []
    try:
        print(f"seeding {args.contacts} contacts ...", file=sys.stderr)
        asyncio.run(seed(url, args.contacts))
        env = os.environ | {"DIALER_DATABASE_URL": url}
        for round_no in range(1, args.repeat + 1):
            copies.append(psql_copy(url, OUT / "copy.csv"))
            target = OUT / "export.csv"
            result = run_measured(
                [sys.executable, "-m", "dialer", "export", "export-bench", "--out", str(target)],
                env=env,
            )
            if result.returncode != 0:
                sys.exit(f"export failed: {result.stderr[-2000:]}")
            with target.open("rb") as handle:
                lines = sum(1 for _ in handle)
            assert lines == args.contacts + 1, lines
            exports.append(result.seconds)
            trees.append(result.peak_rss_tree_mb)
            sizes.append(target.stat().st_size / 1e6)
            print(
                f"round {round_no}: export {result.seconds:.2f} s, peak RSS"
                f" {result.peak_rss_tree_mb:.0f} MB; psql \\copy {copies[-1]:.2f} s",
                file=sys.stderr,
            )
    finally:
        drop_database(name)
    body = f"""
Command: `python bench/export.py --contacts {args.contacts} --repeat {args.repeat}`
(2 cores, Python {sys.version.split()[0]}); {args.contacts} contacts, 5 CSV columns, one settled
attempt each; output file {median(sizes):.0f} MB.

| measure (median of {args.repeat}) | value |
|---|---|
| `dialer export` end to end (process start to exit) | {median(exports):.2f} s |
| `psql \\copy (SELECT * FROM contact_results)`, same rounds | {median(copies):.2f} s |
| ratio export / copy | {median(exports) / median(copies):.2f}x |
| peak RSS, dialer process tree | {median(trees):.0f} MB (max {max(trees):.0f} MB) |

Target: peak RSS <= 200 MB.
Per round: exports {", ".join(f"{s:.2f}" for s in exports)} s;
copies {", ".join(f"{s:.2f}" for s in copies)} s.
"""
    write_section("Results export (issue 4)", body)
    print(body)


if __name__ == "__main__":
    main()
