"""The call_events table: every provider event kept once, and judged to its attempt.

An event is stored before anything else is done with it, under its dedupe key, so a repeat is
recognised and a fact is never lost. Which attempt it belongs to is judged in SQL (_JUDGE),
the same way for one event and for a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from dialer.calls import CallEvent
from dialer.db.attempts import (
    FREED_NOTICE,
    RANK_SQL,
    after_live_answer_sql,
    close_set,
    next_lookup_sql,
)
from dialer.db.contacts import DIALING, move_on_set
from dialer.db.types import Connection, one
from dialer.db.webhooks import settled_source, write_ctes
from dialer.policy.attestation import attestation_of
from dialer.policy.states import LIVE, RANK, SENT, TRANSITIONS

# What an event of an erased attempt keeps of its payload (migration 0027: the database
# refuses anything else for such an attempt).
ERASED_PAYLOAD_SQL = "'{\"erased\": true}'::jsonb"

# Which attempt an event belongs to, for rows of `input` (attempt_id named in the URL or the
# payload, call_id, payload, held, problem) of account $ACCOUNT: the named attempt if it is
# this account's and the call id is neither another attempt's nor different from its own; with
# no attempt named, the one with this call id. A named attempt that fails the test is
# `misrouted`: the event is stored against it, held, and never settles it. `kept` is the
# payload as stored: empty if the attempt it is stored against is erased.
_JUDGE = """
judged AS (
    SELECT i.*, n.id AS named, n.state AS named_state,
           CASE WHEN i.attempt_id IS NULL THEN b.erased_at ELSE n.erased_at END
               IS NOT NULL AS erased,
           CASE WHEN i.attempt_id IS NULL THEN b.id
                WHEN n.id IS NULL THEN NULL
                WHEN b.id IS NOT NULL AND b.id <> n.id THEN NULL
                WHEN n.provider_call_id IS NOT NULL AND i.call_id IS NOT NULL
                     AND n.provider_call_id <> i.call_id THEN NULL
                ELSE n.id END AS known
    FROM input i
    LEFT JOIN attempts n ON n.account = $ACCOUNT AND n.id = i.attempt_id
    LEFT JOIN LATERAL (
        SELECT x.id, x.erased_at FROM attempts x
        WHERE i.call_id IS NOT NULL AND x.account = $ACCOUNT AND x.provider_call_id = i.call_id
        ORDER BY x.id LIMIT 1) b ON true
), placed AS (
    SELECT j.*, coalesce(j.known, j.named) AS stored_for,
           CASE WHEN j.erased THEN $ERASED ELSE j.payload END AS kept,
           j.held OR (j.named IS NOT NULL AND j.known IS NULL) AS keep_held,
           CASE WHEN j.named IS NOT NULL AND j.known IS NULL
                THEN concat_ws('; ', j.problem,
                               'call id ' || j.call_id || ' is not this attempt''s')
                ELSE j.problem END AS why
    FROM judged j
)""".replace("$ERASED", ERASED_PAYLOAD_SQL)

# Held events get a key of their own, so that a correct delivery of the same event later (or
# to the right attempt) is still stored and applied.
_HELD_KEY = (
    "CASE WHEN p.keep_held THEN 'held:' || coalesce(p.attempt_id::text, '-') || ':' ||"
    " p.dedupe_key ELSE p.dedupe_key END"
)

_STORE = f"""
WITH input AS (
    SELECT $1::bigint AS attempt_id, $3::text AS call_id, $6::text AS dedupe_key,
           $7::jsonb AS payload, $8::boolean AS held, $9::text AS problem
), {_JUDGE.replace("$ACCOUNT", "$2")}, stored AS (
    INSERT INTO call_events (attempt_id, account, provider_call_id, status, sequence,
                             dedupe_key, payload, held, problem)
    SELECT p.stored_for, $2, $3, $4, $5, {_HELD_KEY}, p.kept, p.keep_held, p.why FROM placed p
    ON CONFLICT (account, dedupe_key) DO NOTHING
    RETURNING attempt_id, held
), counted AS (  -- $10: a look-up's answer that the call is live, already kept: count it here
    UPDATE attempts a SET lookups = a.lookups + 1, looked_up_at = now(),
           settle_by = {after_live_answer_sql("a.lookups")}
    WHERE $10 AND a.id = $1 AND NOT EXISTS (SELECT 1 FROM stored)
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
    count_if_kept: bool = False,
) -> asyncpg.Record:
    """Keep one event (once per dedupe key) with `payload` as its stored document: (stored,
    the attempt it was judged to, held, and that attempt's campaign and answered_by as they
    were). With `count_if_kept` (a look-up's answer that the call is still live) an event kept
    already counts as one more look-up of `attempt_id`, backed off (attempts.count_live_answer),
    in the same statement: most such answers repeat the last one."""
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
        count_if_kept,
    )
    return one(row, "storing an event")


# Many non-final events in one statement (one round trip for a whole batch of callbacks, of any
# accounts): store each once; per attempt, the highest-ranked new event moves it forward, never
# back. Each event is judged within its own account ($10, one per event).
# The first array is read through a scalar subquery, so that PostgreSQL plans the statement
# once per connection: given the arrays themselves, it knows each batch's length when it plans,
# counts its plan for a batch of one as cheaper than any plan made without the values, and so
# plans every execution anew (a custom plan: about 0.5 ms, twice the statement's own work). With
# one length unknown, the plans with and without the values cost the same, and after its first
# five executions it keeps the one without (the same index look-ups: tests/db/test_indexes.py).
_PROGRESS_BATCH = f"""
WITH input AS (
    SELECT t.*, false AS held, NULL::text AS problem
    FROM unnest((SELECT $1::bigint[]), $2::text[], $3::text[], $4::int[], $5::text[],
                $6::jsonb[], $7::timestamptz[], $8::text[], $9::int[], $10::text[])
        AS t(attempt_id, call_id, status, sequence, dedupe_key, payload, occurred_at,
             answered_by, rank, account)
), {_JUDGE.replace("$ACCOUNT", "i.account")}, stored AS (
    INSERT INTO call_events (attempt_id, account, provider_call_id, status, sequence,
                             dedupe_key, payload, held, problem)
    SELECT p.stored_for, p.account, p.call_id, p.status, p.sequence, {_HELD_KEY}, p.kept,
           p.keep_held, p.why
    FROM placed p
    ON CONFLICT (account, dedupe_key) DO NOTHING
    RETURNING account, dedupe_key
), best AS (
    SELECT DISTINCT ON (p.known) p.*
    FROM placed p JOIN stored s ON s.account = p.account AND s.dedupe_key = p.dedupe_key
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
SELECT p.account, p.dedupe_key, coalesce(p.named_state = 'unknown', false) AS unknown
FROM placed p WHERE (p.account, {_HELD_KEY}) IN (SELECT account, dedupe_key FROM stored)
"""


async def store_and_advance(
    conn: Connection,
    accounts: list[str],
    attempt_ids: list[int | None],
    *,
    call_ids: list[str | None],
    statuses: list[str],
    sequences: list[int | None],
    dedupe_keys: list[str],
    payloads: list[dict],
    occurred_at: list[datetime | None],
    answered_by: list[str | None],
) -> dict[tuple[str, str], bool]:
    """Keep many non-final events, each of its account (`accounts`, one per event), and move
    each live attempt forward to the highest of its new ones; returns the (account, dedupe key)
    of the events that were new, each with whether the attempt it names is closed `unknown`
    (the batch moves live attempts only)."""
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
        accounts,
        list(LIVE),
    )
    return {(r["account"], r["dedupe_key"]): r["unknown"] for r in rows}


# The ids are read through a scalar subquery for the reason _PROGRESS_BATCH gives: planned
# once per connection, not at every execution.
FINALS_READ = """
SELECT a.id AS attempt_id, a.account, a.state, a.answered_at IS NOT NULL AS answered,
       a.answered_by, a.campaign_id, c.attempts, c.timezone, c.jurisdiction, now() AS now
FROM attempts a JOIN contacts c ON c.id = a.contact_id
WHERE a.id = ANY ((SELECT $1::bigint[])::bigint[])
"""


async def read_for_finals(conn: Connection, attempt_ids: list[int]) -> dict[int, asyncpg.Record]:
    """These attempts as settling a final word needs them: account, state, answered,
    answered_by, campaign_id, their contact's attempts, timezone and jurisdiction, and now().
    Whose they are is the caller's to check (an event settles only its own account's)."""
    rows = await conn.fetch(FINALS_READ, attempt_ids)
    return {row["attempt_id"]: row for row in rows}


@dataclass(frozen=True)
class Closing:
    """One final word to store and settle its attempt with (store_and_settle), with what the
    attempt's contact does next.

    `state`, `answered` and `answered_by_before` are the attempt as read when the outcome and
    the contact's step were decided: it is settled only if it is still so. `account` is the
    account the word came to: it is judged within it."""

    account: str
    attempt_id: int
    state: str
    answered: bool
    answered_by_before: str | None
    outcome: str
    event: CallEvent
    contact_state: str
    next_attempt_at: datetime | None
    contact_final: bool  # the contact's state is final: its `contact.final` webhook is due


# the contacts of the closed attempts as they stand after the statement
_CLOSED_CONTACTS = """(
    SELECT * FROM moved
    UNION ALL
    SELECT x.* FROM contacts x
    WHERE x.id IN (SELECT contact_id FROM closed) AND x.id NOT IN (SELECT id FROM moved))"""

# Final words stored and their attempts settled in one statement, each only where everything
# holds: judged to the attempt it names (events._JUDGE), not stored before, and the attempt
# still as it was read. Then the attempt is closed, the event kept, the contact moved on and
# the webhook events written, all or nothing; where anything fails, nothing of that word is.
_STORE_AND_SETTLE = f"""
WITH input AS (
    SELECT t.*, false AS held, NULL::text AS problem
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[], $6::jsonb[],
                $7::text[], $8::boolean[], $9::text[], $10::text[], $11::int[],
                $12::timestamptz[], $13::text[], $14::numeric[], $15::text[], $16::int[],
                $17::text[], $18::text[], $19::text[], $20::timestamptz[], $21::boolean[],
                $22::text[])
        AS t(attempt_id, call_id, status, sequence, dedupe_key, payload, state, answered,
             answered_by_before, outcome, duration_s, ended_at, answered_by, cost, cost_unit,
             sip_code, stir_verstat, attestation, contact_state, next_attempt_at,
             contact_final, account)
), {_JUDGE.replace("$ACCOUNT", "i.account")}, eligible AS (
    SELECT p.* FROM placed p
    WHERE p.known = p.attempt_id AND NOT p.keep_held
      AND NOT EXISTS (SELECT 1 FROM call_events e
                      WHERE e.account = p.account AND e.dedupe_key = p.dedupe_key)
), closed AS (
    UPDATE attempts a
    SET {
    close_set(
        {
            "outcome": "i.outcome",
            "error": "NULL",
            "duration_s": "i.duration_s",
            "ended_at": "i.ended_at",
            "call_id": "i.call_id",
            "answered_by": "i.answered_by",
            "cost": "i.cost",
            "cost_unit": "i.cost_unit",
            "sip_code": "i.sip_code",
            "stir_verstat": "i.stir_verstat",
            "attestation": "i.attestation",
        }
    )
}
    FROM eligible i
    WHERE a.id = i.attempt_id AND a.state = i.state AND a.state = ANY($23::text[])
      AND (a.answered_at IS NOT NULL) = i.answered
      AND a.answered_by IS NOT DISTINCT FROM i.answered_by_before
    RETURNING a.*
), stored AS (
    INSERT INTO call_events (attempt_id, account, provider_call_id, status, sequence,
                             dedupe_key, payload, held, problem)
    SELECT i.attempt_id, i.account, i.call_id, i.status, i.sequence, i.dedupe_key, i.kept,
           false, NULL
    FROM eligible i WHERE i.attempt_id IN (SELECT id FROM closed)
    ON CONFLICT (account, dedupe_key) DO NOTHING
    RETURNING attempt_id
), moved AS (
    UPDATE contacts c
    SET {move_on_set("i.contact_state", "i.next_attempt_at", "i.outcome")}
    FROM closed x JOIN input i ON i.attempt_id = x.id
    WHERE c.id = x.contact_id AND {DIALING}
    RETURNING c.*
), {
    write_ctes(
        settled_source(
            "closed",
            _CLOSED_CONTACTS,
            "true",
            "a.id IN (SELECT attempt_id FROM input WHERE contact_final)",
        )
    )
}
SELECT a.id, {FREED_NOTICE} FROM closed a
"""


async def store_and_settle(
    conn: Connection, closings: list[Closing], payloads: list[dict]
) -> set[int]:
    """Store each final word and settle its attempt (as settle() would: the attempt closed
    with its outcome, its contact moved on, the webhook events written) in one statement,
    whatever their accounts, each only if its event was judged to its attempt within its
    account, is new there, and the attempt is still as it was read; the ids of the attempts
    settled. The rest is untouched: their words are to be
    applied one by one (settle.apply_event)."""
    if not closings:
        return set()
    events = [c.event for c in closings]
    rows = await conn.fetch(
        _STORE_AND_SETTLE,
        [c.attempt_id for c in closings],
        [e.provider_call_id for e in events],
        [e.status for e in events],
        [e.sequence for e in events],
        [e.dedupe_key for e in events],
        payloads,
        [c.state for c in closings],
        [c.answered for c in closings],
        [c.answered_by_before for c in closings],
        [c.outcome for c in closings],
        [e.duration_s for e in events],
        [e.occurred_at for e in events],
        [e.answered_by for e in events],
        [e.cost for e in events],
        [e.cost_unit for e in events],
        [e.sip_code for e in events],
        [e.stir_verstat for e in events],
        [attestation_of(e.stir_verstat) for e in events],
        [c.contact_state for c in closings],
        [c.next_attempt_at for c in closings],
        [c.contact_final for c in closings],
        [c.account for c in closings],
        list(TRANSITIONS["settle"].sources),
    )
    return {r["id"] for r in rows}


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
    """Event `event_id`, stored without an attempt, is `attempt_id`'s (emptied if that one is
    erased)."""
    await conn.execute(
        f"""UPDATE call_events e SET attempt_id = a.id,
                  payload = CASE WHEN a.erased_at IS NULL THEN e.payload
                                 ELSE {ERASED_PAYLOAD_SQL} END
           FROM attempts a WHERE e.id = $1 AND a.id = $2""",
        event_id,
        attempt_id,
    )


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
