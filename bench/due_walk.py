"""Benchmark: what one claim's pick (db.contacts.lock_due) reads when the contacts first in
dialing order are not due now (their zone's calling window is closed).

    python bench/due_walk.py [--contacts 1000000] [--rounds 3]

A campaign of N pending contacts in two zones, one whose 09:00-21:00 window is open now and
one where it is closed (chosen from the clock), laid out three ways: the closed zone's
contacts all first in dialing order (a file sorted by region), the zones interleaved, and
every contact in the closed zone; with no zone of their own (the campaign's, open); and in
one open zone, its first half waiting out a first retry while the second half is due on a
second, or every contact with a priority of its own and all but the last 200 waiting out a
retry (the most groups there can be). For each, EXPLAIN ANALYZE of the pick of a batch of 200
(index entries and contact rows read, milliseconds), the same pick timed from the client as a
run makes it, and the look-up for when the next contact is due, which a run makes each time a
claim round finds nothing; medians of the rounds. Nothing is dialed; the database
is one of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import create_database, drop_database, median, write_section

from dialer.campaign_spec import CampaignSpec
from dialer.db import connect as connect_module
from dialer.db import contacts
from dialer.db.connect import POOL_SETTINGS, connect
from dialer.db.migrations import migrate
from dialer.policy.window import CallingRules

CANDIDATE_ZONES = [
    "Pacific/Honolulu",
    "America/Los_Angeles",
    "America/New_York",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Moscow",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
]
BATCH = 200


def zones_now() -> tuple[str, str]:
    """(a zone where 09:00-21:00 is open now, one where it is closed)."""
    now = datetime.now(UTC)
    hours = {z: now.astimezone(ZoneInfo(z)).hour for z in CANDIDATE_ZONES}
    open_zone = next(z for z, h in hours.items() if 10 <= h < 20)
    closed_zone = next(z for z, h in hours.items() if h < 8 or h >= 22)
    return open_zone, closed_zone


async def pick_plan(conn: asyncpg.Connection, campaign_id: int, rules: CallingRules) -> tuple:
    """((due-index entries read, contact rows read), rows picked, milliseconds) of one pick;
    its row locks end with the caller's transaction. Both counts are PostgreSQL's own for the
    transaction, whichever node of the plan drops what it read."""
    read = """SELECT (SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0)
                      FROM pg_index WHERE indexrelid::regclass::text LIKE 'contacts_due%'),
                     (SELECT coalesce(sum(idx_tup_fetch + seq_tup_read), 0)
                      FROM pg_stat_xact_user_tables WHERE relname = 'contacts')"""
    before = await conn.fetchrow(read)
    rows = await conn.fetch(
        f"EXPLAIN (ANALYZE, FORMAT JSON) {contacts._CANDIDATES}",
        campaign_id,
        BATCH,
        *rules.sql_parameters(),
        None,
    )
    after = await conn.fetchrow(read)
    walked = (after[0] - before[0], after[1] - before[1])
    plan = rows[0][0]
    plan = plan if isinstance(plan, list) else json.loads(plan)
    top = plan[0]
    return walked, top["Plan"]["Actual Rows"], top["Execution Time"]


async def measure(url: str, count: int, rounds: int) -> dict[str, list[tuple]]:
    open_zone, closed_zone = zones_now()
    half = count // 2
    fresh = ("0", "NULL", "0")  # attempts, next attempt, priority: never dialed
    layouts = {
        f"closed zone first ({closed_zone}, then {open_zone})": (
            f"CASE WHEN n <= {half} THEN '{closed_zone}' ELSE '{open_zone}' END",
            *fresh,
        ),
        "zones interleaved": (
            f"CASE WHEN n % 2 = 0 THEN '{closed_zone}' ELSE '{open_zone}' END",
            *fresh,
        ),
        f"every contact in the closed zone ({closed_zone})": (f"'{closed_zone}'", *fresh),
        f"open zone ({open_zone}): half waiting out a first retry, half due on a second": (
            f"'{open_zone}'",
            f"CASE WHEN n <= {half} THEN 1 ELSE 2 END",
            f"CASE WHEN n <= {half} THEN now() + interval '1 hour'"
            " ELSE now() - interval '1 hour' END",
            "0",
        ),
        f"no zone of their own (the campaign's, {open_zone})": ("NULL", *fresh),
        f"open zone ({open_zone}): a priority per contact, all waiting out a retry but the"
        f" last {BATCH}": (
            f"'{open_zone}'",
            "1",
            f"CASE WHEN n <= {count - BATCH} THEN now() + interval '1 hour'"
            " ELSE now() - interval '1 hour' END",
            "-n",
        ),
    }
    spec = CampaignSpec.model_validate(
        {
            "name": "due-walk",
            "account": "sim-main",
            "caller_id": ["+918047112233"],
            "default_region": "IN",
            "timezone": open_zone,  # the zone of contacts without one
            "window": {"start": "09:00", "end": "21:00"},
        }
    )
    rules = CallingRules.of(spec)
    conn = await connect(url)
    await conn.execute("SET jit = off")  # as a run's pool has it (db.connect.POOL_SETTINGS)
    # the claim as a run makes it: through lock_due, on a connection set as a run's pool sets
    # them (its prepared statement kept), the first call (planning) left out
    claimer = await asyncpg.connect(
        url,
        server_settings=POOL_SETTINGS,
        max_cacheable_statement_size=getattr(connect_module, "STATEMENT_CACHE_BYTES", 15 * 1024),
    )
    results: dict[str, list[tuple]] = {}
    try:
        await migrate(conn)
        campaign_id = await conn.fetchval(
            """INSERT INTO campaigns (name, account, spec)
               VALUES ('due-walk', 'sim-main', '{}'::jsonb) RETURNING id"""
        )
        for layout, (zone, attempts, next_at, priority) in layouts.items():
            await conn.execute("DELETE FROM contacts")
            await conn.execute(
                f"""INSERT INTO contacts (campaign_id, row_no, phone_e164, timezone, attempts,
                                          next_attempt_at, priority)
                    SELECT $1, n, '+9198' || lpad(n::text, 8, '0'), {zone}, {attempts},
                           {next_at}, {priority}
                    FROM generate_series(1, {count}) n""",
                campaign_id,
            )
            await conn.execute("VACUUM ANALYZE contacts")
            results[layout] = []
            async with claimer.transaction():
                await contacts.lock_due(claimer, campaign_id, BATCH, rules)
            for _ in range(rounds):
                async with conn.transaction():
                    walked, picked, ms = await pick_plan(conn, campaign_id, rules)
                started = time.perf_counter()
                await contacts.first_due_per_zone(conn, [campaign_id])
                idle_ms = (time.perf_counter() - started) * 1000
                async with claimer.transaction():
                    started = time.perf_counter()
                    await contacts.lock_due(claimer, campaign_id, BATCH, rules)
                    claim_ms = (time.perf_counter() - started) * 1000
                results[layout].append((walked, picked, ms, idle_ms, claim_ms))
    finally:
        await claimer.close()
        await conn.close()
    return results


HEADER = (
    "| layout | due-index entries read | contact rows read | contacts picked | pick, ms (EXPLAIN)"
    " | pick, ms (client) | next-due look-up, ms |\n|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    name, url = create_database()
    try:
        results = asyncio.run(measure(url, args.contacts, args.rounds))
    finally:
        drop_database(name)
    lines = []
    for layout, runs in results.items():
        walked = median([r[0][0] for r in runs])
        rows_read = median([r[0][1] for r in runs])
        picked = median([r[1] for r in runs])
        ms = median([r[2] for r in runs])
        idle_ms = median([r[3] for r in runs])
        claim_ms = median([r[4] for r in runs])
        lines.append(
            f"| {layout} | {walked:,.0f} | {rows_read:,.0f} | {picked:.0f} | {ms:,.1f}"
            f" | {claim_ms:,.1f}"
            f" | {idle_ms:,.1f} |"
        )
    body = f"""
Command: `python bench/due_walk.py --contacts {args.contacts} --rounds {args.rounds}` — one
campaign of {args.contacts:,} pending contacts, window 09:00-21:00 in each contact's zone;
EXPLAIN ANALYZE of one claim's pick of {BATCH} (db.contacts.lock_due's statement: entries
read, execution time); the same pick through lock_due timed from the client, as a run makes
it (its connection set as a run's pool sets it, the first call left out); and the look-up an
idle run makes for when the next contact is due (db.contacts.first_due_per_zone, timed from
the client); medians of the rounds.

{HEADER}
{chr(10).join(lines)}
"""
    print(body)
    write_section("A claim's pick when the contacts first in line are not due (issue 16)", body)


if __name__ == "__main__":
    main()
