"""What one progress batch (db.events.store_and_advance: callbacks that move live calls on)
costs PostgreSQL's backend, the statement as a base revision writes it against this tree's,
side by side on one database: planning included, as a `serve` connection runs it.

    python bench/progress_plans.py BASE_REV [--rounds 3] [--statements 1000]

One database migrated by this tree, 5,000 live attempts and `--closed` closed ones with three
callbacks each (analyzed, unless `--no-analyze`: tables autovacuum has not reached yet); then,
alternately, each side's statement executed `--statements` times on a connection of its own
(prepared once, as asyncpg does) with batches of 1, 5 and 20 callbacks, and the backend's CPU
per statement (commit included) read from /proc (the server must run on this machine).
Medians of the rounds, with the share of executions PostgreSQL planned anew (a custom plan).
Prints the table; writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import ROOT, backend_cpu, base_tree, create_database, drop_database, migrate_as

from dialer.policy.states import LIVE, RANK, AttemptState

SIZES = (1, 5, 20)


def statement_of(tree: Path) -> str:
    """The progress batch's SQL as `tree` writes it."""
    return subprocess.check_output(
        [sys.executable, "-c", "from dialer.db.events import _PROGRESS_BATCH as s; print(s)"],
        env=os.environ | {"PYTHONPATH": str(tree)},
        cwd=tree,  # (`python -c` puts its folder first on the path, ahead of PYTHONPATH)
        text=True,
    )


async def seed(url: str, closed: int, *, analyze: bool) -> list[tuple[int, str]]:
    """5,000 live attempts (their ids and call ids returned) and `closed` closed ones."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """INSERT INTO accounts (name, kind, rate_per_s, channels)
               VALUES ('bench', 'sim', 100, 10000)"""
        )
        campaign = await conn.fetchval(
            """INSERT INTO campaigns (name, account, spec)
               VALUES ('bench', 'bench', '{}') RETURNING id"""
        )
        await conn.execute(
            """WITH c AS (
                   INSERT INTO contacts (campaign_id, row_no, phone_e164)
                   SELECT $1::bigint, n, '+9198' || lpad(n::text, 8, '0')
                   FROM generate_series(1, 5000 + $2) n RETURNING id, row_no, phone_e164)
               INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                                     phone_e164, slot, provider_call_id, requested_at)
               SELECT id, $1, 'bench', 1,
                      CASE WHEN row_no <= 5000 THEN 'accepted' ELSE 'completed' END, phone_e164,
                      CASE WHEN row_no <= 5000 THEN row_no END, 'CALL' || row_no, now()
               FROM c""",
            campaign,
            closed,
        )
        await conn.execute(  # each closed call's callbacks, as a table in use holds them
            """INSERT INTO call_events (attempt_id, account, provider_call_id, status,
                                        dedupe_key, payload)
               SELECT a.id, 'bench', a.provider_call_id, s.status,
                      a.provider_call_id || ':' || s.status, '{"CallStatus": "x"}'::jsonb
               FROM attempts a
               CROSS JOIN unnest(ARRAY['ringing', 'in-progress', 'completed']) AS s(status)
               WHERE NOT a.live"""
        )
        if analyze:
            await conn.execute("VACUUM ANALYZE attempts, call_events")
        live = await conn.fetch("SELECT id, provider_call_id FROM attempts WHERE live ORDER BY id")
        return [(r["id"], r["provider_call_id"]) for r in live]
    finally:
        await conn.close()


async def per_statement_cpu(
    url: str, sql: str, live: list[tuple[int, str]], size: int, runs: int, tag: str
) -> tuple[float, float]:
    """Microseconds of the backend's CPU per statement of `size` callbacks (commit included),
    and the share of its executions PostgreSQL planned anew (custom plans)."""
    conn = await asyncpg.connect(url)
    live_states = [str(state) for state in LIVE]
    rank = RANK[AttemptState.RINGING]
    try:
        pid = conn.get_server_pid()
        started = backend_cpu(pid)
        for n in range(runs):
            # each callback names its attempt (in its URL) and its call id, as real ones do
            batch = [live[(n * size + i) % len(live)] for i in range(size)]
            await conn.fetch(
                sql,
                [attempt for attempt, _ in batch],
                [call_id for _, call_id in batch],
                ["ringing"] * size,
                [None] * size,
                [f"{tag}:{n}:{i}" for i in range(size)],
                ["{}"] * size,
                [None] * size,
                [None] * size,
                [rank] * size,
                # one account for the batch, or one per event (since the statement took them)
                ["bench"] * size if "$10::text[]" in sql else "bench",
                live_states,
            )
        cpu = (backend_cpu(pid) - started) / runs * 1e6
        planned = await conn.fetchrow(
            "SELECT custom_plans FROM pg_prepared_statements WHERE statement = $1", sql
        )
        return cpu, planned["custom_plans"] / runs
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--statements", type=int, default=1000)
    parser.add_argument("--closed", type=int, default=100_000, help="closed attempts beside")
    parser.add_argument("--no-analyze", action="store_true", help="attempts never analyzed")
    args = parser.parse_args()
    with base_tree(args.base) as base:
        sides = {args.base: statement_of(base), "this tree": statement_of(ROOT)}
    if sides[args.base] == sides["this tree"]:
        sys.exit(f"{args.base} writes the statement as this tree does: nothing to compare")
    name, url = create_database()
    try:
        migrate_as(ROOT, os.environ | {"DIALER_DATABASE_URL": url})
        live = asyncio.run(seed(url, args.closed, analyze=not args.no_analyze))
        rows = []
        for size in SIZES:
            times: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
            for round_no in range(args.rounds):
                for side, sql in sides.items():
                    tag = f"{side}:{size}:{round_no}"
                    cpu = per_statement_cpu(url, sql, live, size, args.statements, tag)
                    times[side].append(asyncio.run(cpu))
            (old_us, new_us), (old_planned, new_planned) = (
                [statistics.median(t[i] for t in times[side]) for side in sides] for i in (0, 1)
            )
            rows.append(
                f"| {size} | {old_us:.0f} ({old_planned:.1%}) | {new_us:.0f} ({new_planned:.1%})"
                f" | {new_us / old_us:.2f} |"
            )
            print(rows[-1], flush=True)
    finally:
        drop_database(name)
    print(
        f"\n`python bench/progress_plans.py {args.base} --rounds {args.rounds}"
        f" --statements {args.statements} --closed {args.closed}"
        f"{' --no-analyze' if args.no_analyze else ''}`\n\n| callbacks a statement"
        f" | {args.base}: CPU us a statement (planned anew) | this tree | ratio |\n"
        "|---|---|---|---|\n" + "\n".join(rows)
    )


if __name__ == "__main__":
    main()
