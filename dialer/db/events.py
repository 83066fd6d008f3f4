"""The call_events table: every provider event kept once, and judged to its attempt.

An event is stored before anything else is done with it, under its dedupe key, so a repeat is
recognised and a fact is never lost. Which attempt it belongs to is judged in SQL (_JUDGE),
the same way for one event and for a batch.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from dialer.calls import CallEvent
from dialer.db.attempts import RANK_SQL, next_lookup_sql
from dialer.db.types import Connection, one
from dialer.policy.states import LIVE, RANK, SENT

# Which attempt an event belongs to, for rows of `input` (attempt_id named in the URL or the
# payload, call_id, held, problem) of account $ACCOUNT: the named attempt if it is this
# account's and the call id is neither another attempt's nor different from its own; with no
# attempt named, the one with this call id. A named attempt that fails the test is
# `misrouted`: the event is stored against it, held, and never settles it.
_JUDGE = """
judged AS (
    SELECT i.*, n.id AS named, n.state AS named_state,
           CASE WHEN i.attempt_id IS NULL THEN b.id
                WHEN n.id IS NULL THEN NULL
                WHEN b.id IS NOT NULL AND b.id <> n.id THEN NULL
                WHEN n.provider_call_id IS NOT NULL AND i.call_id IS NOT NULL
                     AND n.provider_call_id <> i.call_id THEN NULL
                ELSE n.id END AS known
    FROM input i
    LEFT JOIN attempts n ON n.account = $ACCOUNT AND n.id = i.attempt_id
    LEFT JOIN LATERAL (
        SELECT x.id FROM attempts x
        WHERE i.call_id IS NOT NULL AND x.account = $ACCOUNT AND x.provider_call_id = i.call_id
        ORDER BY x.id LIMIT 1) b ON true
), placed AS (
    SELECT j.*, coalesce(j.known, j.named) AS stored_for,
           j.held OR (j.named IS NOT NULL AND j.known IS NULL) AS keep_held,
           CASE WHEN j.named IS NOT NULL AND j.known IS NULL
                THEN concat_ws('; ', j.problem,
                               'call id ' || j.call_id || ' is not this attempt''s')
                ELSE j.problem END AS why
    FROM judged j
)"""

# Held events get a key of their own, so that a correct delivery of the same event later (or
# to the right attempt) is still stored and applied.
_HELD_KEY = (
    "CASE WHEN p.keep_held THEN 'held:' || coalesce(p.attempt_id::text, '-') || ':' ||"
    " p.dedupe_key ELSE p.dedupe_key END"
)

_STORE = f"""
WITH input AS (
    SELECT $1::bigint AS attempt_id, $3::text AS call_id, $6::text AS dedupe_key,
           $8::boolean AS held, $9::text AS problem
), {_JUDGE.replace("$ACCOUNT", "$2")}, stored AS (
    INSERT INTO call_events (attempt_id, account, provider_call_id, status, sequence,
                             dedupe_key, payload, held, problem)
    SELECT p.stored_for, $2, $3, $4, $5, {_HELD_KEY}, $7, p.keep_held, p.why FROM placed p
    ON CONFLICT (account, dedupe_key) DO NOTHING
    RETURNING attempt_id, held
)
SELECT (SELECT count(*) FROM stored) > 0 AS stored, s.attempt_id,
       coalesce(s.held, false) AS held, a.campaign_id, a.answered_by
FROM (SELECT 1) one
LEFT JOIN stored s ON true
LEFT JOIN attempts a ON a.id = s.attempt_id
"""


async def store(
    conn: Connection,
    account: str,
    attempt_id: int | None,
    event: CallEvent,
    payload: dict,
    *,
    held: bool,
    problem: str | None,
) -> asyncpg.Record:
    """Keep one event (once per dedupe key) with `payload` as its stored document: (stored,
    the attempt it was judged to, held, and that attempt's campaign and answered_by as they
    were)."""
    row = await conn.fetchrow(
        _STORE,
        attempt_id,
        account,
        event.provider_call_id,
        event.status,
        event.sequence,
        event.dedupe_key,
        payload,
        held,
        problem,
    )
    return one(row, "storing an event")


# Many non-final events in one statement (one round trip for a whole batch of callbacks): store
# each once; per attempt, the highest-ranked new event moves it forward, never back.
_PROGRESS_BATCH = f"""
WITH input AS (
    SELECT t.*, false AS held, NULL::text AS problem
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[],
                $6::jsonb[], $7::timestamptz[], $8::text[], $9::int[])
        AS t(attempt_id, call_id, status, sequence, dedupe_key, payload, occurred_at,
             answered_by, rank)
), {_JUDGE.replace("$ACCOUNT", "$10")}, stored AS (
    INSERT INTO call_events (attempt_id, account, provider_call_id, status, sequence,
                             dedupe_key, payload, held, problem)
    SELECT p.stored_for, $10, p.call_id, p.status, p.sequence, {_HELD_KEY}, p.payload,
           p.keep_held, p.why
    FROM placed p
    ON CONFLICT (account, dedupe_key) DO NOTHING
    RETURNING dedupe_key
), best AS (
    SELECT DISTINCT ON (p.known) p.*
    FROM placed p JOIN stored s ON s.dedupe_key = p.dedupe_key
    WHERE p.known IS NOT NULL AND NOT p.keep_held
    ORDER BY p.known, p.rank DESC
), moved AS (
    UPDATE attempts a
    SET state = best.status, provider_call_id = coalesce(a.provider_call_id, best.call_id),
        settle_by = {next_lookup_sql("best.status")},
        accepted_at = coalesce(a.accepted_at, now()),
        answered_at = CASE WHEN best.status = 'in-progress'
                           THEN coalesce(a.answered_at, best.occurred_at, now())
                           ELSE a.answered_at END,
        answered_by = coalesce(a.answered_by, best.answered_by), updated_at = now()
    FROM best
    WHERE a.id = best.known AND a.state = ANY($11::text[]) AND {RANK_SQL} < best.rank
    RETURNING a.id
)
SELECT p.dedupe_key, coalesce(p.named_state = 'unknown', false) AS unknown
FROM placed p WHERE {_HELD_KEY} IN (SELECT dedupe_key FROM stored)
"""


async def store_and_advance(
    conn: Connection,
    account: str,
    attempt_ids: list[int | None],
    *,
    call_ids: list[str | None],
    statuses: list[str],
    sequences: list[int | None],
    dedupe_keys: list[str],
    payloads: list[dict],
    occurred_at: list[datetime | None],
    answered_by: list[str | None],
) -> dict[str, bool]:
    """Keep many non-final events of one account, and move each live attempt forward to the
    highest of its new ones; returns the dedupe keys that were new, each with whether the
    attempt it names is closed `unknown` (the batch moves live attempts only)."""
    rows = await conn.fetch(
        _PROGRESS_BATCH,
        attempt_ids,
        call_ids,
        statuses,
        sequences,
        dedupe_keys,
        payloads,
        occurred_at,
        answered_by,
        [RANK[s] for s in statuses],
        account,
        list(LIVE),
    )
    return {r["dedupe_key"]: r["unknown"] for r in rows}


# Many final events in one statement: each stored once (the first of a key in the batch),
# judged as one event is; per event, its attempt and contact as they stand, for the settling
# that follows in the same transaction (settle.apply_finals).
_FINALS_BATCH = f"""
WITH input AS (
    SELECT t.*, false AS held, NULL::text AS problem
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[], $6::jsonb[])
        WITH ORDINALITY AS t(attempt_id, call_id, status, sequence, dedupe_key, payload, n)
), {_JUDGE.replace("$ACCOUNT", "$7")}, keyed AS (
    SELECT p.*, {_HELD_KEY} AS stored_key FROM placed p
), firsts AS (
    SELECT DISTINCT ON (stored_key) n FROM keyed ORDER BY stored_key, n
), stored AS (
    INSERT INTO call_events (attempt_id, account, provider_call_id, status, sequence,
                             dedupe_key, payload, held, problem)
    SELECT k.stored_for, $7, k.call_id, k.status, k.sequence, k.stored_key, k.payload,
           k.keep_held, k.why
    FROM keyed k WHERE k.n IN (SELECT n FROM firsts)
    ORDER BY k.n
    ON CONFLICT (account, dedupe_key) DO NOTHING
    RETURNING dedupe_key
)
SELECT k.n, (s.dedupe_key IS NOT NULL AND k.n IN (SELECT n FROM firsts)) AS stored,
       k.stored_for AS attempt_id, k.keep_held AS held, a.campaign_id, a.answered_by, a.state,
       a.answered_at IS NOT NULL AS answered, a.contact_id, c.attempts, c.timezone,
       c.jurisdiction, now() AS now
FROM keyed k
LEFT JOIN stored s ON s.dedupe_key = k.stored_key
LEFT JOIN attempts a ON a.id = k.stored_for
LEFT JOIN contacts c ON c.id = a.contact_id
ORDER BY k.n
"""


async def store_finals(
    conn: Connection,
    account: str,
    attempt_ids: list[int | None],
    events: list[CallEvent],
    payloads: list[dict],
) -> list[asyncpg.Record]:
    """Keep many events of one account (as `store` keeps one); per event, in order: stored,
    the attempt it was judged to, held, and that attempt's campaign, answered_by, state,
    whether it was answered, its contact (id, attempts, timezone, jurisdiction), and now()."""
    return await conn.fetch(
        _FINALS_BATCH,
        attempt_ids,
        [e.provider_call_id for e in events],
        [e.status for e in events],
        [e.sequence for e in events],
        [e.dedupe_key for e in events],
        payloads,
        account,
    )


async def orphan_finals(conn: Connection, limit: int) -> list[asyncpg.Record]:
    """Events stored without an attempt (they came before its call id was recorded) whose
    attempt, still live, now has that call id: (id, status, attempt_id, campaign_id)."""
    return await conn.fetch(
        """SELECT e.id, e.status, a.id AS attempt_id, a.campaign_id
           FROM call_events e
           JOIN attempts a ON a.account = e.account AND a.provider_call_id = e.provider_call_id
           WHERE e.attempt_id IS NULL AND e.provider_call_id IS NOT NULL AND NOT e.held
             AND a.state = ANY($2::text[])
           LIMIT $1""",
        limit,
        list(SENT),
    )


async def attach(conn: Connection, event_id: int, attempt_id: int) -> None:
    await conn.execute("UPDATE call_events SET attempt_id = $2 WHERE id = $1", event_id, attempt_id)


async def unattached_since(
    conn: Connection,
    account: str,
    since: datetime,
    after_id: int,
    provider_call_id: str | None,
) -> list[asyncpg.Record]:
    """The account's events of no attempt (a `dialer call-test` call) received since `since`,
    after event `after_id`, of the call if its id is known; oldest first."""
    return await conn.fetch(
        """SELECT id, provider_call_id, status, received_at, payload FROM call_events
           WHERE account = $1 AND attempt_id IS NULL AND received_at >= $2 AND id > $3
             AND ($4::text IS NULL OR provider_call_id = $4) ORDER BY id""",
        account,
        since,
        after_id,
        provider_call_id,
    )
