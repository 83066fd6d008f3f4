"""What storing a callback costs PostgreSQL's backend, with call_events' checks as a base
revision has them and as this tree has them (migration 0027: once per statement instead of a
trigger and a foreign-key check per row), side by side.

    python bench/event_checks.py BASE_REV [--rounds 5] [--attempts 200000]

Two databases, one migrated by BASE_REV (a git worktree) and one by this tree, each with the
same attempts; then, alternately, 2,000 INSERT statements into call_events of 1, 4 and 16
events each, and the backend's CPU time per statement read from /proc (the server must run on
this machine). Medians of the rounds. Prints the table; writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, backend_cpu, base_tree, create_database, drop_database, migrate_as

STATEMENTS = 2000
_INSERT = """INSERT INTO call_events (attempt_id, account, status, dedupe_key, payload)
             SELECT unnest($1::bigint[]), 'bench', 'ringing', unnest($2::text[]),
                    '{"CallStatus": "ringing"}'::jsonb"""


def migrate(tree: Path, url: str) -> None:
    migrate_as(tree, os.environ | {"DIALER_DATABASE_URL": url})


async def seed(url: str, attempts: int) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """INSERT INTO accounts (name, kind, rate_per_s, channels)
               VALUES ('bench', 'sim', 100, 100)"""
        )
        campaign = await conn.fetchval(
            """INSERT INTO campaigns (name, account, spec)
               VALUES ('bench', 'bench', '{}') RETURNING id"""
        )
        await conn.execute(
            """WITH c AS (
                   INSERT INTO contacts (campaign_id, row_no, phone_e164)
                   SELECT $1::bigint, n, '+9198' || lpad(n::text, 8, '0')
                   FROM generate_series(1, $2) n RETURNING id, phone_e164)
               INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                                     phone_e164)
               SELECT id, $1, 'bench', 1, 'completed', phone_e164 FROM c""",
            campaign,
            attempts,
        )
        await conn.execute("VACUUM ANALYZE attempts")
        return [r["id"] for r in await conn.fetch("SELECT id FROM attempts ORDER BY id")]
    finally:
        await conn.close()


async def per_statement_cpu(url: str, ids: list[int], size: int, tag: str) -> float:
    """Microseconds of the backend's CPU per INSERT of `size` events (commit included)."""
    conn = await asyncpg.connect(url)
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        insert = await conn.prepare(_INSERT)
        started = backend_cpu(pid)
        for n in range(STATEMENTS):
            first = n * size
            await insert.fetch(
                [ids[(first + i) * 7919 % len(ids)] for i in range(size)],
                [f"{tag}:{first + i}" for i in range(size)],
            )
        return (backend_cpu(pid) - started) / STATEMENTS * 1e6
    finally:
        await conn.execute("TRUNCATE call_events")
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--attempts", type=int, default=200_000)
    args = parser.parse_args()
    with base_tree(args.base) as base:
        databases = {"base": create_database(), "this tree": create_database()}
        try:
            migrate(base, databases["base"][1])
            migrate(ROOT, databases["this tree"][1])
            ids = {
                side: asyncio.run(seed(url, args.attempts)) for side, (_, url) in databases.items()
            }
            rows = []
            for size in (1, 4, 16):
                times: dict[str, list[float]] = {side: [] for side in databases}
                for round_no in range(args.rounds):
                    for side, (_, url) in databases.items():
                        tag = f"{size}:{round_no}"
                        times[side].append(
                            asyncio.run(per_statement_cpu(url, ids[side], size, tag))
                        )
                old_us, new_us = (statistics.median(times[s]) for s in databases)
                rows.append(f"| {size} | {old_us:.0f} | {new_us:.0f} | {new_us / old_us:.2f} |")
                print(rows[-1], flush=True)
        finally:
            for name, _ in databases.values():
                drop_database(name)
    print(
        f"\n`python bench/event_checks.py {args.base} --rounds {args.rounds}"
        f" --attempts {args.attempts}`\n\n| events a statement | {args.base}: CPU us a statement"
        " | this tree | ratio |\n|---|---|---|---|\n" + "\n".join(rows)
    )


if __name__ == "__main__":
    main()
