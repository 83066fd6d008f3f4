"""Moving attempts forward and settling them: the one place outcomes change contacts.

Every change is a compare-and-set: an UPDATE whose WHERE clause only matches an attempt that is
still live (and, for progress events, in a lower state), so repeated, late or reordered events,
and two processes racing, can never move an attempt backwards or settle it twice.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from decimal import Decimal

import asyncpg

from dialer.campaigns import SETTLE_GRACE, CampaignCache
from dialer.metrics import DIALS
from dialer.policy.lookups import after_event_sql
from dialer.policy.retry import next_step
from dialer.policy.states import LIVE, OUTCOMES, RANK, SENT, is_terminal, moves_forward
from dialer.providers.base import CallEvent
from dialer.redaction import redact, redact_document

log = logging.getLogger("dialer.settle")


async def settle(
    conn: asyncpg.Connection,
    campaigns: CampaignCache,
    attempt_id: int,
    outcome: str,
    *,
    error: str | None = None,
    duration_s: int | None = None,
    ended_at: datetime | None = None,
    do_not_call: bool = False,
    from_states: tuple[str, ...] = LIVE,
    provider_call_id: str | None = None,
    answered_by: str | None = None,
    completed_if_answered: bool = False,
    cost: Decimal | None = None,
    cost_unit: str | None = None,
) -> bool:
    """Close a live attempt with `outcome`, free its channel, decide the contact's next step.

    `completed_if_answered`: the outcome becomes `completed` if the attempt was seen answered
    (for providers whose final event cannot tell, see CallEvent).

    `from_states` narrows which states may be closed: releasing an unsent reservation must
    only ever match `reserved`, so an attempt that was meanwhile sent is never re-armed.
    Returns False if nothing matched (nothing changes). Call inside a transaction.
    """
    # No lock on the contact is needed: while its attempt is live the contact is `dialing`,
    # which no claim or do-not-call update touches, and only one settle can win the CAS below.
    error = redact(error) if error else error
    row = await conn.fetchrow(
        """UPDATE attempts a
           SET state = CASE WHEN $9 AND a.answered_at IS NOT NULL THEN 'completed' ELSE $2 END,
               outcome = CASE WHEN $9 AND a.answered_at IS NOT NULL THEN 'completed' ELSE $2 END,
               slot = NULL,
               error = CASE WHEN a.error IS NULL OR $3::text IS NULL
                            THEN coalesce($3::text, a.error)
                            ELSE a.error || '; ' || $3::text END,
               duration_s = coalesce($4, a.duration_s), ended_at = coalesce($5, now()),
               provider_call_id = coalesce(a.provider_call_id, $7),
               answered_by = coalesce(a.answered_by, $8), cost = coalesce($10, a.cost),
               cost_unit = coalesce($11, a.cost_unit), updated_at = now()
           FROM contacts c
           WHERE a.id = $1 AND a.state = ANY($6::text[]) AND c.id = a.contact_id
           RETURNING a.contact_id, a.campaign_id, a.attempt_no, a.phone_e164, now() AS now,
                     c.attempts, c.timezone, a.outcome, a.account""",
        attempt_id,
        outcome,
        error,
        duration_s,
        ended_at,
        list(from_states),
        provider_call_id,
        answered_by,
        completed_if_answered,
        cost,
        cost_unit,
    )
    if row is None:
        return False
    contact = row
    outcome = row["outcome"]
    campaign = await campaigns.get(conn, row["campaign_id"])
    DIALS.labels(row["account"], campaign.name, outcome).inc()
    if outcome == "not_dialed":
        # Nothing reached the provider: the attempt does not count; dial again when allowed.
        await conn.execute(
            """UPDATE contacts SET state = 'pending', attempts = greatest(attempts - 1, 0),
                   updated_at = now()
               WHERE id = $1 AND state = 'dialing'""",
            row["contact_id"],
        )
        return True
    now = row["now"]
    step = next_step(
        campaign.spec.retry, campaign.rules, outcome, contact["attempts"], now, contact["timezone"]
    )
    await conn.execute(
        """UPDATE contacts SET state = $2, next_attempt_at = $3, last_outcome = $4,
               updated_at = now()
           WHERE id = $1 AND state = 'dialing'""",
        row["contact_id"],
        step.state,
        step.next_attempt_at,
        outcome,
    )
    if do_not_call:
        await conn.execute(
            """INSERT INTO dnc (phone_e164, reason) VALUES ($1, $2)
               ON CONFLICT (phone_e164) DO NOTHING""",
            row["phone_e164"],
            f"provider refused: {error}"[:500],
        )
    log.info(
        "attempt settled",
        extra={
            "attempt": attempt_id,
            "campaign": campaign.name,
            "outcome": outcome,
            "contact_next": step.state,
            "next_attempt_at": step.next_attempt_at.isoformat() if step.next_attempt_at else None,
        },
    )
    return True


async def apply_event(
    conn: asyncpg.Connection,
    campaigns: CampaignCache,
    account: str,
    attempt_id: int | None,
    event: CallEvent,
    *,
    held: bool = False,
    problem: str | None = None,
    ask_provider: bool = False,
) -> str:
    """Store a provider event (once) and move its attempt forward: "stored" if it was new,
    "repeated" if it was already kept, "held" if kept but not applied.

    The raw event is stored before anything else, so it is kept even if it changes nothing.
    A `held` event (see callbacks.screening), or one whose call id is another attempt's than
    the one named, is stored with its problem and never applied; with `ask_provider` (a status
    word we do not know) its attempt is due for the reconciler's look-up at once, instead of
    holding its channel until the settle budget ends.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            _STORE,
            attempt_id,
            account,
            event.provider_call_id,
            event.status,
            event.sequence,
            event.dedupe_key,
            stored_payload(event),
            held,
            problem,
        )
        if not row["stored"]:
            return "repeated"
        if row["held"]:
            if ask_provider and row["attempt_id"] is not None:
                await conn.execute(
                    """UPDATE attempts SET settle_by = least(settle_by, now())
                       WHERE id = $1 AND state = ANY($2::text[])""",
                    row["attempt_id"],
                    list(SENT),
                )
            return "held"
        if row["attempt_id"] is None:
            return "stored"
        if not await reopen_if_unknown(conn, row["attempt_id"], event):
            return "stored"  # a re-dial had already happened: the fact is recorded, no more
        if is_terminal(event.status):
            await settle(
                conn,
                campaigns,
                row["attempt_id"],
                event.status,
                duration_s=event.duration_s,
                ended_at=event.occurred_at,
                provider_call_id=event.provider_call_id,
                answered_by=event.answered_by,
                completed_if_answered=event.completed_if_answered,
                cost=event.cost,
                cost_unit=event.cost_unit,
            )
        else:
            await _apply_progress_to(conn, row["attempt_id"], event)
        return "stored"


_REOPEN = """
WITH target AS (
    SELECT a.id, a.contact_id,
           NOT EXISTS (SELECT 1 FROM attempts x
                       WHERE x.contact_id = a.contact_id AND x.attempt_no > a.attempt_no) AS latest
    FROM attempts a
    WHERE a.id = $1 AND a.state = 'unknown'
      AND (a.provider_call_id IS NULL OR $3::text IS NULL OR a.provider_call_id = $3::text)
    FOR UPDATE OF a
), reopened AS (
    UPDATE attempts a
    SET state = $2, outcome = NULL, ended_at = NULL, reopened_at = now(),
        provider_call_id = coalesce(a.provider_call_id, $3::text),
        settle_by = now() + $4::interval, updated_at = now(),
        error = concat_ws('; ', a.error, 're-opened: the provider reported the call')
    FROM target t
    WHERE a.id = t.id AND t.latest
    RETURNING a.contact_id
), withdrawn AS (
    UPDATE contacts c SET state = 'dialing', updated_at = now()
    FROM reopened r WHERE c.id = r.contact_id
    RETURNING c.id
)
SELECT t.latest, (SELECT count(*) FROM withdrawn) AS withdrawn FROM target t
"""

_CORRECT_UNKNOWN = """
UPDATE attempts
SET state = $2, outcome = $2, provider_call_id = coalesce(provider_call_id, $3),
    duration_s = coalesce($4, duration_s), updated_at = now(),
    error = concat_ws('; ', error, 'the provider reported ' || $2 || ' after this attempt was'
                      ' closed unknown and its contact was dialed again')
WHERE id = $1 AND state = 'unknown'
"""


async def reopen_if_unknown(conn: asyncpg.Connection, attempt_id: int, event: CallEvent) -> bool:
    """An attempt closed `unknown` that a fact now reaches (a call id, a callback, a look-up
    answer) is re-opened: `unknown` was a lack of facts, never one. It becomes live again (in
    the event's state, or `accepted` before a final event settles it) and its contact goes
    back to `dialing`, which withdraws the contact's re-dial. Returns whether the caller should
    go on applying the event: False when the contact was dialed again meanwhile (a later
    attempt exists), in which case a final event's outcome is recorded on this attempt only.
    """
    row = await conn.fetchrow(
        _REOPEN,
        attempt_id,
        "accepted" if is_terminal(event.status) else event.status,
        event.provider_call_id,
        SETTLE_GRACE,
    )
    if row is None:
        return True  # not `unknown` (the common case): apply as usual
    if row["latest"]:
        log.warning(
            "attempt re-opened: the provider reported a call closed unknown",
            extra={"attempt": attempt_id, "status": event.status},
        )
        return True
    if is_terminal(event.status) and event.status in OUTCOMES:
        await conn.execute(
            _CORRECT_UNKNOWN, attempt_id, event.status, event.provider_call_id, event.duration_s
        )
    log.warning(
        "a call closed unknown was reported after its contact was dialed again",
        extra={"attempt": attempt_id, "status": event.status},
    )
    return False


def stored_payload(event: CallEvent) -> dict:
    """The payload as kept in call_events: JSON-safe, and with every credential masked (a
    provider echoing our secret key or callback URL never stores it)."""
    text = json.dumps(dict(event.payload), default=str, ensure_ascii=False)
    return redact_document(json.loads(text), text)


# Which attempt an event belongs to, for rows of `input` (attempt_id named in the URL or the
# payload, call_id, held, problem) of account $ACCOUNT: the named attempt if it is this
# account's and the call id is neither another attempt's nor different from its own; with no
# attempt named, the one with this call id. A named attempt that fails the test is
# `misrouted`: the event is stored against it, held, and never settles it.
_JUDGE = """
judged AS (
    SELECT i.*, n.id AS named,
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
SELECT (SELECT count(*) FROM stored) > 0 AS stored, (SELECT attempt_id FROM stored) AS attempt_id,
       coalesce((SELECT held FROM stored), false) AS held
"""


async def _apply_progress_to(conn: asyncpg.Connection, attempt_id: int, event: CallEvent) -> None:
    lower = [state for state in LIVE if moves_forward(state, event.status)]
    await conn.execute(
        f"""UPDATE attempts a
           SET state = $2, provider_call_id = coalesce(provider_call_id, $3),
               settle_by = {_next_lookup("$2::text")},
               accepted_at = coalesce(accepted_at, now()),
               answered_at = CASE WHEN $2 = 'in-progress'
                                  THEN coalesce(answered_at, $4, now()) ELSE answered_at END,
               answered_by = coalesce(answered_by, $5), updated_at = now()
           WHERE id = $1 AND state = ANY($6::text[])""",
        attempt_id,
        event.status,
        event.provider_call_id,
        event.occurred_at,
        event.answered_by,
        lower,
    )


def _next_lookup(state: str) -> str:
    """SQL: when an attempt that moves forward to `state` is looked up next (policy.lookups);
    a row from before look-ups were scheduled (no ring timeout kept) keeps its deadline."""
    scheduled = after_event_sql(state, "a.ring_timeout_s", "a.max_duration_s")
    return f"CASE WHEN a.ring_timeout_s IS NULL THEN a.settle_by ELSE {scheduled} END"


_RANK_SQL = "CASE a.state " + " ".join(f"WHEN '{s}' THEN {r}" for s, r in RANK.items()) + " END"

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
        settle_by = {_next_lookup("best.status")},
        accepted_at = coalesce(a.accepted_at, now()),
        answered_at = CASE WHEN best.status = 'in-progress'
                           THEN coalesce(a.answered_at, best.occurred_at, now())
                           ELSE a.answered_at END,
        answered_by = coalesce(a.answered_by, best.answered_by), updated_at = now()
    FROM best
    WHERE a.id = best.known AND a.state = ANY($11::text[]) AND {_RANK_SQL} < best.rank
    RETURNING a.id
)
SELECT p.dedupe_key FROM placed p WHERE {_HELD_KEY} IN (SELECT dedupe_key FROM stored)
"""


async def apply_progress_batch(
    conn: asyncpg.Connection, account: str, items: list[tuple[int | None, CallEvent]]
) -> set[str]:
    """Store and apply many non-final events of one account at once; returns the new keys."""
    rows = await conn.fetch(
        _PROGRESS_BATCH,
        [attempt for attempt, _ in items],
        [e.provider_call_id for _, e in items],
        [e.status for _, e in items],
        [e.sequence for _, e in items],
        [e.dedupe_key for _, e in items],
        [stored_payload(e) for _, e in items],
        [e.occurred_at for _, e in items],
        [e.answered_by for _, e in items],
        [RANK[e.status] for _, e in items],
        account,
        list(LIVE),
    )
    new = {r["dedupe_key"] for r in rows}
    named = [(a, e) for a, e in items if a is not None and e.dedupe_key in new]
    if named:  # the batch moves live attempts only: one closed `unknown` is re-opened here
        closed = await conn.fetch(
            """SELECT id FROM attempts
               WHERE id = ANY($1::bigint[]) AND account = $2 AND state = 'unknown'""",
            [a for a, _ in named],
            account,
        )
        unknown = {r["id"] for r in closed}
        for attempt_id, event in named:
            if attempt_id in unknown:
                async with conn.transaction():
                    if await reopen_if_unknown(conn, attempt_id, event):
                        await _apply_progress_to(conn, attempt_id, event)
    return new


async def record_accepted(conn: asyncpg.Connection, accepted: list[tuple[int, str | None]]) -> None:
    """The provider took these calls: store their call ids (a callback may have been faster),
    and end their accounts' 429 streaks. One the reconciler closed `unknown` meanwhile (this
    process was paused after sending) is re-opened: the call exists."""
    rows = await conn.fetch(
        """WITH accepted AS (
               UPDATE attempts a
               SET state = CASE WHEN a.state = 'dialing' THEN 'accepted' ELSE a.state END,
                   provider_call_id = coalesce(a.provider_call_id, t.call_id),
                   accepted_at = coalesce(a.accepted_at, now()), updated_at = now()
               FROM unnest($1::bigint[], $2::text[]) AS t(id, call_id)
               WHERE a.id = t.id
               RETURNING a.id, a.account, a.state, a.provider_call_id),
           streaks AS (
               UPDATE accounts SET throttle_streak = 0
               WHERE name IN (SELECT account FROM accepted) AND throttle_streak > 0)
           SELECT id, provider_call_id FROM accepted WHERE state = 'unknown'""",
        [a[0] for a in accepted],
        [a[1] for a in accepted],
    )
    for row in rows:
        async with conn.transaction():
            event = CallEvent("accepted", "", provider_call_id=row["provider_call_id"])
            await reopen_if_unknown(conn, row["id"], event)
