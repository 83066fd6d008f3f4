"""The indexes the hot statements rely on, read from PostgreSQL's own plans."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg

from dialer.db import contacts, events
from dialer.db.accounts import _GLANCE, _STATUS
from dialer.db.attempts import (
    _CHANNELS,
    _FREE_SLOT,
    _OVERDUE,
    _SILENT,
    ANY_LIVE,
    EXPIRED_RESERVATIONS,
)
from dialer.db.connect import connect
from dialer.db.webhooks import REPLAY
from dialer.policy.states import LIVE, OUTCOMES, SENT

# The shape of the per-number look-ups (db.contacts: the daily dial cap, the laws' caps, a
# number live elsewhere; db.consent, db.erasure): attempts of one number, recent ones first
NUMBER = ("+919800000042",)
BY_NUMBER = {
    "by time": (
        """SELECT min(x.requested_at) FROM (
               SELECT a.requested_at FROM attempts a
               WHERE a.phone_e164 = $1 AND a.requested_at > now() - interval '24 hours'
                 AND a.state <> 'not_dialed'
               ORDER BY a.requested_at DESC LIMIT 2) x""",
        NUMBER,
    ),
    "by subject": (
        """SELECT a.requested_at FROM attempts a
           WHERE a.phone_e164 = $1 AND a.subject = 'renewals' AND a.state <> 'not_dialed'
             AND a.requested_at > now() - interval '7 days'
           ORDER BY a.requested_at DESC LIMIT 3""",
        NUMBER,
    ),
    "live": (
        "SELECT EXISTS (SELECT 1 FROM attempts a WHERE a.phone_e164 = $1 AND a.state = 'ringing')",
        NUMBER,
    ),
}

ACCOUNTS = "SELECT name, 'sim', 100, 1000 FROM unnest(ARRAY['sim-main', 'sim-b', 'sim-c', 'sim-d'])"


def _campaign_of(name: str, account: str, numbers_from: str, contacts: int) -> list[str]:
    """The four accounts, a campaign `name` on `account`, and its `contacts` contacts, numbered
    `numbers_from` followed by the row number in 8 digits."""
    return [
        f"INSERT INTO accounts (name, kind, rate_per_s, channels) {ACCOUNTS} AS name"
        " ON CONFLICT DO NOTHING",
        f"""INSERT INTO campaigns (name, account, spec)
            VALUES ('{name}', '{account}', '{{}}'::jsonb)""",
        f"""INSERT INTO contacts (campaign_id, row_no, phone_e164)
            SELECT (SELECT id FROM campaigns WHERE name = '{name}'), n,
                   '{numbers_from}' || lpad(n::text, 8, '0')
            FROM generate_series(1, {contacts}) n""",
    ]


# 20,000 closed attempts of 'renewals', an hour apart per hundred, all of sim-main
CLOSED_BY_NUMBER = [
    *_campaign_of("by-number", "sim-main", "+9198", 20000),
    """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                             phone_e164, subject, requested_at)
       SELECT c.id, c.campaign_id, 'sim-main', 1, 'completed', c.phone_e164,
              'renewals', now() - (c.row_no % 100) * interval '1 hour'
       FROM contacts c WHERE c.campaign_id = (SELECT id FROM campaigns WHERE name = 'by-number')""",
]
# 20,050 attempts on four accounts, of which 800 are live (200 an account)
LIVE_ON_FOUR_ACCOUNTS = [
    *_campaign_of("live-look-ups", "sim-main", "+9197", 20050),
    """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                             phone_e164, slot, provider_call_id, requested_at, settle_by)
       SELECT c.id, c.campaign_id,
              (ARRAY['sim-main', 'sim-b', 'sim-c', 'sim-d'])[1 + c.row_no % 4],
              1, CASE WHEN c.row_no <= 800 THEN 'ringing' ELSE 'completed' END,
              c.phone_e164, CASE WHEN c.row_no <= 800 THEN c.row_no END,
              'call-' || c.row_no, now() - interval '1 minute', now() + interval '1 minute'
       FROM contacts c
       WHERE c.campaign_id = (SELECT id FROM campaigns WHERE name = 'live-look-ups')""",
]


def _plans(database_url: str, seed: list[str], queries: dict[str, tuple[str, tuple]]) -> dict:
    """Each query's plan (EXPLAIN's JSON) over the rows `seed` writes, analyzed; the rows
    are rolled back."""

    async def go() -> dict[str, dict]:
        conn = await connect(database_url)
        try:
            async with conn.transaction():
                for statement in seed:
                    await conn.execute(statement)
                await conn.execute("ANALYZE attempts")
                plans = {}
                for name, (query, args) in queries.items():
                    explained = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {query}", *args)
                    plans[name] = (
                        json.loads(explained) if isinstance(explained, str) else explained
                    )[0]["Plan"]
                raise _Rollback(plans)
        except _Rollback as done:
            return done.plans
        finally:
            await conn.close()

    return asyncio.run(go())


class _Rollback(Exception):
    """Leaves the test's rows behind no more than its transaction."""

    def __init__(self, plans: dict) -> None:
        super().__init__("rolled back")
        self.plans = plans


def test_every_look_up_by_number_reads_the_number_index(database_url: str) -> None:
    """With one index by number (migration 0021 dropped the second), a number's attempts are
    still found through it, never by reading the table."""
    plans = _plans(database_url, CLOSED_BY_NUMBER, BY_NUMBER)
    for name, plan in plans.items():
        reads = list(_reads_of_attempts(plan))
        assert reads and not [r for r in reads if r[0] == "Seq Scan"], (name, reads)
        if name != "live":  # the live one may take a live-attempts index
            assert [r for r in reads if r[1] == "attempts_number_subject"], (name, reads)


# The look-ups of an account's or a campaign's live attempts (claims, slots, the reconciler,
# gauges), each with its arguments; since 0031 they say `live`, which the partial indexes hold.
BY_LIVE = {
    "channels": (_CHANNELS, ("sim-main",)),
    "free slot": (_FREE_SLOT, ("sim-main",)),
    "glance": (_GLANCE, ("sim-main",)),
    "status": (_STATUS, (["sim-main"],)),
    "silent": (_SILENT, (100, list(SENT), timedelta(seconds=5), timedelta(seconds=30))),
    "overdue": (_OVERDUE, ("sim-main", 10, list(OUTCOMES), list(SENT), 1.0)),
    "leases": (EXPIRED_RESERVATIONS, (100,)),
    "any live": (ANY_LIVE, ([1],)),
}
BY_ACCOUNT = ("channels", "free slot", "glance", "status", "overdue")
LIVE_INDEXES = ("attempts_one_call_per_slot", "attempts_one_live_per_contact", "attempts_campaign")


def test_every_look_up_of_live_attempts_reads_an_index(database_url: str) -> None:
    """20,000 closed attempts and 800 live ones on four accounts: each look-up of live attempts
    goes through an index that holds the live ones (never a read of the whole table), although
    `state` is in none of them since 0031; one of an account's goes through the index led by
    the account, never reading the other accounts' live calls (0032)."""
    plans = _plans(database_url, LIVE_ON_FOUR_ACCOUNTS, BY_LIVE)
    for name, plan in plans.items():
        reads = list(_reads_of_attempts(plan))
        # (the reconciler's typical call lengths read recent closed calls: not a live look-up)
        assert not [r for r in reads if r[0] == "Seq Scan" and "live" in r[2]], (name, reads)
        assert [r for r in reads if r[1] in LIVE_INDEXES], (name, reads)
        if name in BY_ACCOUNT:
            assert [r for r in reads if r[1] == "attempts_one_call_per_slot"], (name, reads)
            assert not [r for r in reads if r[1] == "attempts_one_live_per_contact"], (name, reads)


def _reads_of_attempts(plan: dict) -> Iterator[tuple[str, str, str]]:
    """(node type, index, filter) of each node of the plan reading attempts or one of its
    indexes (a bitmap scan's index is a node of its own)."""
    index = plan.get("Index Name", "")
    if plan.get("Relation Name") == "attempts" or index.startswith("attempts_"):
        yield plan["Node Type"], index, plan.get("Filter", "")
    for child in plan.get("Plans", []):
        yield from _reads_of_attempts(child)


def _kept_plan(
    database_url: str,
    seed: list[str],
    execute: Callable[[asyncpg.Connection], Awaitable[None]],
    statement: str,
    types: str,
    arguments: str,
) -> tuple[asyncpg.Record, dict]:
    """Over the rows `seed` writes (rolled back after), `execute` runs the statement again
    and again on one connection: how often PostgreSQL planned it anew (custom) or kept its plan
    (generic), and the kept plan itself, for these argument types and values (SQL)."""

    async def go() -> tuple[asyncpg.Record, dict]:
        conn = await connect(database_url)
        try:
            async with conn.transaction():
                for row in seed:
                    await conn.execute(row)
                await conn.execute("ANALYZE attempts")
                await conn.execute("ANALYZE contacts")
                await execute(conn)
                planned = await conn.fetchrow(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement = $1",
                    statement,
                )
                await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                await conn.execute(f"PREPARE kept ({types}) AS {statement}")
                explained = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE kept({arguments})")
                plan = json.loads(explained) if isinstance(explained, str) else explained
                raise _Rollback({"planned": planned, "plan": plan[0]["Plan"]})
        except _Rollback as done:
            return done.plans["planned"], done.plans["plan"]
        finally:
            await conn.close()

    planned, plan = asyncio.run(go())
    assert planned is not None
    assert planned["custom_plans"] <= 5 and planned["generic_plans"] >= 7, dict(planned)
    return planned, plan


def test_a_progress_batch_is_planned_once_and_reads_attempts_by_index(
    database_url: str,
) -> None:
    """The callbacks' progress statement, executed again and again on one connection with
    batches of one (the common case), is planned once and then kept (a generic plan), not
    planned anew at each execution; and that kept plan finds each event's attempt through an
    index, never by reading the table (20,050 attempts on four accounts)."""

    async def execute(conn: asyncpg.Connection) -> None:
        live = await conn.fetch(
            "SELECT id, provider_call_id FROM attempts"
            " WHERE account = 'sim-main' AND live ORDER BY id LIMIT 12"
        )
        for n, attempt in enumerate(live):  # batches of one, by id or by call id
            await events.store_and_advance(
                conn,
                ["sim-main"],
                [attempt["id"] if n % 2 else None],
                call_ids=[attempt["provider_call_id"]],
                statuses=["in-progress"],
                sequences=[None],
                dedupe_keys=[f"plan:{n}"],
                payloads=[{}],
                occurred_at=[None],
                answered_by=[None],
            )

    live_states = ", ".join(f"'{state}'" for state in LIVE)
    _, plan = _kept_plan(
        database_url,
        LIVE_ON_FOUR_ACCOUNTS,
        execute,
        events._PROGRESS_BATCH,
        "bigint[], text[], text[], int[], text[], jsonb[], timestamptz[], text[], int[], text[],"
        " text[]",
        "ARRAY[1]::bigint[], ARRAY['call-1'], ARRAY['ringing'], ARRAY[NULL]::int[], ARRAY['k'],"
        " ARRAY['{}']::jsonb[], ARRAY[NULL]::timestamptz[], ARRAY[NULL]::text[], ARRAY[3],"
        f" ARRAY['sim-main'], ARRAY[{live_states}]",
    )
    reads = list(_reads_of_attempts(plan))
    assert reads and not [r for r in reads if r[0] == "Seq Scan"], reads


def test_the_finals_read_is_planned_once_and_reads_attempts_by_index(database_url: str) -> None:
    """The read before final words are settled (db.events.read_for_finals), executed again and
    again on one connection with batches of one, is planned once and kept, not planned anew at
    each execution (three quarters of a planning per settled call before: bench/statements.py);
    and the kept plan finds the attempts through their primary key (20,050 attempts)."""

    async def execute(conn: asyncpg.Connection) -> None:
        ids = await conn.fetch(
            "SELECT id FROM attempts WHERE account = 'sim-main' ORDER BY id LIMIT 12"
        )
        for row in ids:
            assert list(await events.read_for_finals(conn, [row["id"]])) == [row["id"]]

    _, plan = _kept_plan(
        database_url,
        LIVE_ON_FOUR_ACCOUNTS,
        execute,
        events.FINALS_READ,
        "bigint[]",
        "ARRAY[1]::bigint[]",
    )
    reads = list(_reads_of_attempts(plan))
    assert reads and {r[1] for r in reads} == {"attempts_pkey"}, reads


def test_a_claim_s_number_checks_are_planned_once_and_read_attempts_by_index(
    database_url: str,
) -> None:
    """The claim's checks of the numbers it picked (db.contacts.check_numbers), executed again
    and again on one connection with one contact each, are planned once and kept, not planned
    anew at most executions; and the kept plan reads attempts through an index only, never the
    table (20,000 closed attempts by number)."""

    async def execute(conn: asyncpg.Connection) -> None:
        picked = await conn.fetch(
            """SELECT c.id, c.phone_e164 FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
               WHERE k.name = 'by-number' ORDER BY c.id LIMIT 12"""
        )
        for row in picked:
            checked = await contacts.check_numbers(
                conn, [row["id"]], [row["phone_e164"]], 3, "renewals", None
            )
            assert [r["id"] for r in checked] == [row["id"]]

    _, plan = _kept_plan(
        database_url,
        CLOSED_BY_NUMBER,
        execute,
        contacts._NUMBER_CHECKS,
        "bigint[], text[], text[], int, text, text[], text[], int[], float8[], text[], float8[]",
        "ARRAY[1]::bigint[], ARRAY['+1'], ARRAY['ringing'], 3, 'renewals', ARRAY[]::text[],"
        " ARRAY[]::text[], ARRAY[]::int[], ARRAY[]::float8[], ARRAY[]::text[], ARRAY[]::float8[]",
    )
    reads = list(_reads_of_attempts(plan))
    assert reads and not [r for r in reads if r[0] == "Seq Scan"], reads


# 100,000 webhook events over 30 days (one every 26 s, appended in time order), a delivery each
EVENTS_OVER_A_MONTH = [
    """INSERT INTO webhook_endpoints (name, events) VALUES ('replayed', '{attempt.settled}')
       ON CONFLICT DO NOTHING""",
    """INSERT INTO webhook_events (type, order_key, campaign_id, payload, created_at)
       SELECT 'attempt.settled', 'contact:' || n, 1, '{}',
              now() - interval '30 days' + n * interval '26 seconds'
       FROM generate_series(1, 100000) n""",
    """INSERT INTO webhook_deliveries (endpoint, event_id, order_key, state)
       SELECT 'replayed', id, order_key,
              CASE WHEN id % 50 = 0 THEN 'exhausted' ELSE 'delivered' END
       FROM webhook_events""",
    "ANALYZE webhook_events",
    "ANALYZE webhook_deliveries",
]


def test_a_replay_finds_the_recent_events_through_their_time_index(database_url: str) -> None:
    """`dialer webhooks replay --since` an hour ago, with a month of events: the events are
    found through webhook_events_created (a BRIN index since 0034), never by reading them all."""
    since = datetime.now(UTC) - timedelta(hours=1)
    replay = (REPLAY, (since, ["exhausted"], ["replayed"]))
    plans = _plans(database_url, EVENTS_OVER_A_MONTH, {"replay": replay})
    reads = list(_reads_of(plans["replay"], "webhook_events"))
    assert reads and not [r for r in reads if r[0] == "Seq Scan"], reads
    assert [r for r in reads if r[1] == "webhook_events_created"], reads


def _reads_of(plan: dict, table: str) -> Iterator[tuple[str, str]]:
    """(node type, index) of each node of the plan reading `table` or one of its indexes."""
    index = plan.get("Index Name", "")
    if plan.get("Relation Name") == table or index.startswith(f"{table}_"):
        yield plan["Node Type"], index
    for child in plan.get("Plans", []):
        yield from _reads_of(child, table)


# 20,000 settled calls of sim-b, 100 of sim-main among the oldest, and 5 live ones of sim-main
FEW_CALLS_AMONG_MANY = [
    *_campaign_of("few-among-many", "sim-b", "+9196", 20100),
    """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state, outcome,
                             phone_e164, provider_call_id, requested_at, answered_at, ended_at,
                             duration_s)
       SELECT c.id, c.campaign_id, CASE WHEN c.row_no <= 100 THEN 'sim-main' ELSE 'sim-b' END,
              1, 'completed', 'completed', c.phone_e164, 'settled-' || c.row_no,
              now() - interval '1 hour', now() - interval '59 minutes',
              now() - interval '58 minutes', 60
       FROM contacts c
       WHERE c.campaign_id = (SELECT id FROM campaigns WHERE name = 'few-among-many')
       ORDER BY c.id""",
    """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state, phone_e164,
                             provider_call_id, requested_at, slot, settle_by)
       SELECT c.id, c.campaign_id, 'sim-main', 2, 'ringing', c.phone_e164, 'live-' || c.row_no,
              now() - interval '2 minutes', c.row_no, now() + interval '1 hour'
       FROM contacts c
       WHERE c.campaign_id = (SELECT id FROM campaigns WHERE name = 'few-among-many')
         AND c.row_no <= 5""",
]


def test_the_idle_rate_scan_reads_only_the_accounts_own_settled_calls(
    database_url: str,
) -> None:
    """The reconciler's idle-rate scan of an account whose calls are few among another
    account's many takes the typical lengths from its own last settled calls through the
    index by account (0035), never by reading attempts whole or backwards through them all."""
    overdue = (_OVERDUE, ("sim-main", 10, list(OUTCOMES), list(SENT), 1.0))
    plan = _plans(database_url, FEW_CALLS_AMONG_MANY, {"overdue": overdue})["overdue"]
    reads = list(_reads_of_attempts(plan))
    assert not [r for r in reads if r[0] == "Seq Scan"], reads
    assert not [r for r in reads if r[0] == "Index Scan Backward" and r[1] == "attempts_pkey"]
    assert [r for r in reads if r[1] == "attempts_settled_by_account"], reads
