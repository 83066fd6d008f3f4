"""The attempts table: every statement that creates, moves or reads an attempt at run time.

Each change of state is a compare-and-set (its WHERE names the states it may leave, taken from
policy.states.TRANSITIONS), so repeated, late or reordered events and processes racing can never
move an attempt backwards or settle it twice. A statement returns what matched; the caller
(dispatch.claim, settle, reconcile) decides what that means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from dialer.calls import CallEvent
from dialer.db.consent import LIVE_GRANT
from dialer.db.types import Connection, one
from dialer.dispatch.limiter import LimiterState, claimable, free_channel_slots
from dialer.policy.attestation import attestation_of
from dialer.policy.lookups import (
    ANSWERED_QUIET,
    BACKOFF_CAP,
    BACKOFF_FIRST,
    IDLE_FROM,
    IDLE_REASK,
    LOOKUP_GRACE,
    TYPICAL_FLOOR_S,
    TYPICAL_OVER,
)
from dialer.policy.states import OUTCOMES, RANK, SENT, TRANSITIONS


def after_event_sql(state: str, ring_s: str, talk_s: str) -> str:
    """SQL for the next look-up time (policy.lookups) of an attempt that just reached `state`
    (SQL expressions for the new state, its ring timeout and its maximum call length, s)."""
    quiet = ANSWERED_QUIET.total_seconds()
    grace = LOOKUP_GRACE.total_seconds()
    return (
        f"now() + make_interval(secs => CASE WHEN {state} = 'in-progress'"
        f" THEN least({talk_s}, {quiet}) ELSE {ring_s} END + {grace})"
    )


def after_live_answer_sql(lookups: str) -> str:
    """SQL for the next look-up time after the provider said the call is still live, given how
    many look-ups it had (policy.lookups' backoff)."""
    first, cap = BACKOFF_FIRST.total_seconds(), BACKOFF_CAP.total_seconds()
    return f"now() + make_interval(secs => least({cap}, {first} * power(2, least({lookups}, 10))))"


def next_lookup_sql(state: str) -> str:
    """SQL: when an attempt that moves forward to `state` is looked up next; a row from before
    look-ups were scheduled (no ring timeout kept) keeps its deadline."""
    scheduled = after_event_sql(state, "a.ring_timeout_s", "a.max_duration_s")
    return f"CASE WHEN a.ring_timeout_s IS NULL THEN a.settle_by ELSE {scheduled} END"


RANK_SQL = "CASE a.state " + " ".join(f"WHEN '{s}' THEN {r}" for s, r in RANK.items()) + " END"


# ---- claiming and sending --------------------------------------------------------------------


# What a claim needs of its account's channels, in one scan of its live attempts returning one
# row: how many are live (each holds a channel: a re-opened one holding no slot, and one
# holding a slot past a lowered `channels`, too), how many are waiting to be sent, and the
# slots held, as one array. The free slots are then found in Python, from the account's
# cursor (LimiterState.next_slot, read with the account's row; limiter.free_channel_slots).
# Before, a claim fetched every live attempt as a row of its own. A probe of each ring slot
# through attempts_one_call_per_slot would touch only as many slots as it gives, but with
# statistics older than the live attempts (a fresh database, the first minute of a big
# campaign) the planner turned each probe into a scan of every live attempt: 26 ms a claim in
# the ceiling bench, slower than reading them once.
_CHANNELS = """
SELECT count(*) AS live,
       count(*) FILTER (WHERE a.state = 'reserved') AS waiting,
       coalesce(array_agg(a.slot) FILTER (WHERE a.slot IS NOT NULL), '{}') AS held
FROM attempts a
WHERE a.account = $1 AND a.live
"""


@dataclass(frozen=True)
class FreeChannels:
    """What a claim may give out of an account's channels: `live`, its attempts holding a
    channel; `waiting`, of them those claimed and not yet sent; `slots`, free channel slots, in
    the order to give them."""

    live: int
    waiting: int
    slots: list[int]


async def free_channels(
    conn: Connection, account: str, channels: int, cursor: int, tokens: int, max_batch: int
) -> FreeChannels:
    """Up to min(`tokens` - waiting, `max_batch`, `channels` - live) channel slots no live
    attempt holds, in ring order from `cursor` (under the account's lock: accounts.lock_state);
    the claim that gives them moves the cursor on (accounts.store_state)."""
    row = await conn.fetchrow(_CHANNELS, account)
    assert row is not None
    waiting: int = row["waiting"]
    wanted = claimable(tokens, waiting, max_batch, channels, row["live"])
    held = set(row["held"])
    slots = free_channel_slots(channels, cursor, held, row["live"], wanted)
    return FreeChannels(row["live"], waiting, slots)


_RESERVE = """
WITH reserved AS (
INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state, phone_e164, slot,
                      lease_expires_at, dial_before, subject, rules_checked, created_at)
SELECT t.id, $2, $3,
       coalesce((SELECT max(attempt_no) FROM attempts x WHERE x.contact_id = t.id), 0) + 1,
       'reserved', c.phone_e164, t.slot,
       least(now() + make_interval(secs => t.send_in) + $4::interval, t.dial_before),
       t.dial_before, $8, nullif(string_to_array(t.checked, E'\n'), '{}'),
       -- when the slot was taken, not when the claim's transaction began: a slot freed
       -- meanwhile (its call's end recorded a moment ago) is never shown held twice at once
       clock_timestamp()
FROM unnest($1::bigint[], $5::int[], $6::float8[], $7::timestamptz[], $9::text[])
     WITH ORDINALITY AS t(id, slot, send_in, dial_before, checked, n)
JOIN contacts c ON c.id = t.id
ORDER BY t.n
RETURNING id, contact_id, attempt_no
), dialing AS (  -- the contact has an attempt now: one more attempt each
    UPDATE contacts SET state = 'dialing', attempts = attempts + 1, updated_at = now()
    WHERE id = ANY($1::bigint[])
), limiter AS (  -- the claim's limiter row, if given (under the account's lock)
    UPDATE accounts SET rate_factor = $11, throttle_streak = $12, next_slot = $13,
                        updated_at = now()
    WHERE name = $3 AND $10
)
SELECT id, contact_id, attempt_no FROM reserved
"""


async def reserve(
    conn: Connection,
    campaign_id: int,
    account: str,
    contact_ids: list[int],
    slots: list[int],
    send_in_s: list[float],
    dial_before: list[datetime],
    lease: timedelta,
    subject: str,
    rules_checked: list[list[str]],
    *,
    limiter_after: LimiterState | None = None,
) -> list[asyncpg.Record]:
    """Insert one `reserved` attempt per contact, holding its channel slot, with a lease that
    ends `lease` after its send time (never after its window closes), on `subject`, with the
    rules its claim checked, and count it on its contact, now `dialing`; in the given order.
    With `limiter_after` (under accounts.lock_state), the account's row takes what a claim
    changes of it (its rate's recovery, its 429 streak, its channel cursor) in the same
    statement: one round trip fewer with the row locked."""
    return await conn.fetch(
        _RESERVE,
        contact_ids,
        campaign_id,
        account,
        lease,
        slots,
        send_in_s,
        dial_before,
        subject,
        ["\n".join(checked) for checked in rules_checked],
        limiter_after is not None,
        limiter_after and limiter_after.rate_factor,
        limiter_after and limiter_after.throttle_streak,
        limiter_after and limiter_after.next_slot,
    )


# A campaign that requires consent sends only while the number's grant is live: a revocation
# committed after the claim still stops the send (db.consent). A number listed do-not-call (or
# being erased) after the claim is not sent either.
_CONSENTED = LIVE_GRANT.format(phone="a.phone_e164", scope="(k.spec ->> 'requires_consent')")

_BEGIN_DIAL = f"""
UPDATE attempts a
SET state = 'dialing', requested_at = now(), caller_id = t.caller,
    send_by = now() + $4::interval, ring_timeout_s = t.ring, max_duration_s = t.talk,
    settle_by = {after_event_sql("'dialing'", "t.ring", "t.talk")}, updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::int[], $5::int[]) AS t(id, caller, ring, talk)
WHERE a.id = t.id AND a.state = ANY($6::text[]) AND a.lease_expires_at > now()
  AND (a.dial_before IS NULL OR a.dial_before > now())
  AND EXISTS (SELECT 1 FROM campaigns k WHERE k.id = a.campaign_id AND k.status = 'active'
              AND (k.spec ->> 'requires_consent' IS NULL OR {_CONSENTED}))
  AND NOT EXISTS (SELECT 1 FROM dnc d WHERE d.phone_e164 = a.phone_e164)
  AND a.phone_e164 IS NOT NULL
RETURNING a.id
"""

# The same, and the account's clock (`tat`, under the account's lock: accounts.lock_state) set
# to what the limiter computed for all of them sent, in the same statement, only if all were:
# one round trip fewer with the row locked, which every sender of the account waits for.
_BEGIN_DIAL_AND_CLOCK = f"""
WITH sent AS ({_BEGIN_DIAL}),
clocked AS (
    UPDATE accounts SET tat = $8, updated_at = now()
    WHERE name = $7 AND (SELECT count(*) FROM sent) = cardinality($1::bigint[])
    RETURNING 1)
SELECT id, EXISTS (SELECT 1 FROM clocked) AS clocked FROM sent
"""


@dataclass(frozen=True)
class BegunDialing:
    """Which attempts begin_dialing committed as `dialing`, and whether it also set the
    account's clock (it does only when every one given was)."""

    sent: set[int]
    clocked: bool


async def begin_dialing(
    conn: Connection,
    attempts: list[tuple[int, str, int, int]],
    send_window: timedelta,
    *,
    account: str,
    tat_if_all_sent: datetime,
) -> BegunDialing:
    """Commit (attempt, caller id, ring timeout s, max duration s) as `dialing`, with its send
    deadline and first look-up time, where its reservation still holds: its lease, its calling
    window, its campaign `active`, the number's consent if the campaign requires it, the
    number not listed do-not-call since the claim. If every one of them was, the account's
    clock is set to `tat_if_all_sent` in the same statement (call under accounts.lock_state;
    otherwise the caller stores the clock for those sent)."""
    rows = await conn.fetch(
        _BEGIN_DIAL_AND_CLOCK,
        [a[0] for a in attempts],
        [a[1] for a in attempts],
        [a[2] for a in attempts],
        send_window,
        [a[3] for a in attempts],
        list(TRANSITIONS["begin_dial"].sources),
        account,
        tat_if_all_sent,
    )
    return BegunDialing({r["id"] for r in rows}, bool(rows) and rows[0]["clocked"])


async def extend_leases(conn: Connection, ids: list[int], wait_s: float, lease: timedelta) -> None:
    """Keep these reservations alive while they wait `wait_s` for a request slot."""
    await conn.execute(
        """UPDATE attempts SET lease_expires_at = least(greatest(lease_expires_at,
               now() + make_interval(secs => $2::float8) + $3::interval), dial_before)
           WHERE id = ANY($1::bigint[]) AND state = 'reserved'""",
        ids,
        wait_s,
        lease,
    )


async def note_request_ended(conn: Connection, attempt_id: int, error: str) -> None:
    """The request ended without a call id (a 5xx, a timeout): nothing of it can leave now."""
    await conn.execute(
        "UPDATE attempts SET error = $2, request_done_at = now() WHERE id = $1",
        attempt_id,
        error,
    )


ANY_LIVE = "SELECT EXISTS (SELECT 1 FROM attempts WHERE campaign_id = ANY($1::bigint[]) AND live)"


async def any_live(conn: Connection, campaign_ids: list[int]) -> bool:
    return await conn.fetchval(ANY_LIVE, campaign_ids)


async def any_in_campaign(conn: Connection, campaign_id: int) -> bool:
    """Whether the campaign has ever dialed."""
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM attempts WHERE campaign_id = $1)", campaign_id
    )


async def recent_outcomes(conn: Connection, campaign_id: int, window: int) -> tuple[int, int]:
    """(settled, failed or rejected) among the campaign's last `window` settled attempts."""
    row = await conn.fetchrow(
        """SELECT count(*) AS settled,
                  count(*) FILTER (WHERE outcome IN ('failed', 'rejected')) AS bad
           FROM (SELECT outcome FROM attempts
                 WHERE campaign_id = $1 AND outcome IS NOT NULL AND outcome <> 'not_dialed'
                 ORDER BY ended_at DESC NULLS LAST LIMIT $2) recent""",
        campaign_id,
        window,
    )
    row = one(row, "recent outcomes")
    return row["settled"], row["bad"]


# ---- settling ----------------------------------------------------------------------------------


def close_set(v: dict[str, str]) -> str:
    """The SET list that closes an attempt, from SQL expressions for its inputs (`v`): one
    definition for closing one attempt (close) and a batch of them (events.store_and_settle)."""
    return f"""
    state = {v["outcome"]}, outcome = {v["outcome"]}, slot = NULL,
    error = CASE WHEN a.error IS NULL OR {v["error"]}::text IS NULL
                 THEN coalesce({v["error"]}::text, a.error)
                 ELSE a.error || '; ' || {v["error"]}::text END,
    duration_s = coalesce({v["duration_s"]}, a.duration_s),
    ended_at = coalesce({v["ended_at"]}, a.ended_at, now()),
    held_outcome = NULL,
    provider_call_id = coalesce(a.provider_call_id, {v["call_id"]}),
    answered_by = coalesce(a.answered_by, {v["answered_by"]}), cost = coalesce({v["cost"]}, a.cost),
    cost_unit = coalesce({v["cost_unit"]}, a.cost_unit),
    sip_code = coalesce({v["sip_code"]}, a.sip_code),
    stir_verstat = coalesce({v["stir_verstat"]}, a.stir_verstat),
    attestation = coalesce({v["attestation"]}, a.attestation),
    updated_at = now()"""


# Said, with the account, by every statement that closes live attempts (in its RETURNING or final
# SELECT, over the closed rows as `a`): at its commit PostgreSQL notifies claim loops waiting
# for a channel of that account (dialer.wakeups), once per account however many closed. A
# function call in the statement, not a statement of its own. A notice lost costs a wait's
# timeout, never a call.
CHANNEL_FREED = "dialer_channel_freed"
FREED_NOTICE = f"pg_notify('{CHANNEL_FREED}', a.account) AS noticed"


_CLOSE = f"""
UPDATE attempts a
SET {
    close_set(
        {
            "outcome": "CASE WHEN $9 AND a.answered_at IS NOT NULL THEN 'completed' ELSE $2 END",
            "error": "$3",
            "duration_s": "$4",
            "ended_at": "$5",
            "call_id": "$7",
            "answered_by": "$8",
            "cost": "$10",
            "cost_unit": "$11",
            "sip_code": "$12",
            "stir_verstat": "$13",
            "attestation": "$14",
        }
    )
}
FROM contacts c
WHERE a.id = $1 AND a.state = ANY($6::text[]) AND c.id = a.contact_id
RETURNING a.contact_id, a.campaign_id, a.attempt_no, a.phone_e164, now() AS now,
          c.attempts, c.timezone, c.jurisdiction, a.outcome, a.account, a.answered_by,
          a.requested_at,
          (SELECT make_interval(secs => n.late_placement_s) FROM accounts n
           WHERE n.name = a.account) AS late_placement, {FREED_NOTICE}
"""


async def close(
    conn: Connection,
    attempt_id: int,
    outcome: str,
    from_states: tuple[str, ...],
    *,
    error: str | None,
    duration_s: int | None,
    ended_at: datetime | None,
    provider_call_id: str | None,
    answered_by: str | None,
    completed_if_answered: bool,
    cost: Decimal | None,
    cost_unit: str | None,
    sip_code: int | None = None,
    stir_verstat: str | None = None,
) -> asyncpg.Record | None:
    """Close the attempt with `outcome` if it is in one of `from_states`, freeing its channel
    slot; the row (with its contact's attempts and zone) or None if it did not match. The
    attestation (A, B, C) is read from `stir_verstat` (policy.attestation)."""
    return await conn.fetchrow(
        _CLOSE,
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
        sip_code,
        stir_verstat,
        attestation_of(stir_verstat),
    )


_ADVANCE = f"""
UPDATE attempts a
SET state = $2, provider_call_id = coalesce(provider_call_id, $3),
    settle_by = {next_lookup_sql("$2::text")},
    accepted_at = coalesce(accepted_at, now()),
    answered_at = CASE WHEN $2 = 'in-progress'
                       THEN coalesce(answered_at, $4, now()) ELSE answered_at END,
    answered_by = coalesce(answered_by, $5), updated_at = now()
WHERE id = $1 AND state = ANY($6::text[])
"""


async def advance(
    conn: Connection,
    attempt_id: int,
    state: str,
    from_states: Sequence[str],
    *,
    provider_call_id: str | None,
    occurred_at: datetime | None,
    answered_by: str | None,
) -> None:
    """Move a live attempt forward to `state` (from one of `from_states`, the lower ones)."""
    await conn.execute(
        _ADVANCE, attempt_id, state, provider_call_id, occurred_at, answered_by, from_states
    )


async def reclassify(conn: Connection, attempt_id: int, outcome: str) -> None:
    """A call settled `completed` that a machine answered becomes `outcome` (`machine`)."""
    await conn.execute(
        """UPDATE attempts SET state = $2, outcome = $2, updated_at = now()
           WHERE id = $1 AND outcome = 'completed'""",
        attempt_id,
        outcome,
    )


async def hold_final(conn: Connection, attempt_id: int, final: CallEvent, wait: timedelta) -> None:
    """Keep a final word whose answering-machine result is still to come: the attempt stays
    live (answered), its facts kept, and is looked up after `wait` if no result comes."""
    await conn.execute(
        """UPDATE attempts
           SET held_outcome = $2, state = 'in-progress',
               provider_call_id = coalesce(provider_call_id, $3),
               duration_s = coalesce($4, duration_s), ended_at = coalesce($5, now()),
               accepted_at = coalesce(accepted_at, now()),
               answered_at = coalesce(answered_at, now()),
               settle_by = now() + $6::interval, updated_at = now()
           WHERE id = $1 AND state = ANY($7::text[])""",
        attempt_id,
        final.status,
        final.provider_call_id,
        final.duration_s,
        final.occurred_at,
        wait,
        list(TRANSITIONS["hold_final"].sources),
    )


async def note_answered_by(
    conn: Connection, attempt_id: int, answered_by: str | None
) -> str | None:
    """Record who answered a live attempt (the first word wins); the final word held for it
    (hold_final), if one is."""
    return await conn.fetchval(
        """UPDATE attempts SET answered_by = coalesce(answered_by, $2), updated_at = now()
           WHERE id = $1 AND state = ANY($3::text[])
           RETURNING held_outcome""",
        attempt_id,
        answered_by,
        list(SENT),
    )


_REOPEN = """
WITH target AS (
    SELECT a.id, a.contact_id,
           NOT EXISTS (SELECT 1 FROM attempts x
                       WHERE x.contact_id = a.contact_id AND x.attempt_no > a.attempt_no
                         AND x.state <> 'not_dialed') AS latest
    FROM attempts a
    WHERE a.id = $1 AND a.state = ANY($5::text[])
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
SELECT t.latest, (SELECT count(*) FROM withdrawn) AS withdrawn, a.account
FROM target t JOIN attempts a ON a.id = t.id
"""


async def reopen(
    conn: Connection,
    attempt_id: int,
    state: str,
    provider_call_id: str | None,
    settle_in: timedelta,
) -> asyncpg.Record | None:
    """Re-open an attempt closed `unknown` (whose call id, if any, is this one) as `state`, and
    its contact as `dialing`, unless the contact has a later attempt. None if not `unknown`;
    else whether it was the latest (re-opened)."""
    return await conn.fetchrow(
        _REOPEN,
        attempt_id,
        state,
        provider_call_id,
        settle_in,
        list(TRANSITIONS["reopen"].sources),
    )


_FREE_SLOT = """
SELECT s FROM accounts n, generate_series(0, n.channels - 1) AS s
WHERE n.name = $1
  AND NOT EXISTS (SELECT 1 FROM attempts a
                  WHERE a.account = $1 AND a.slot = s AND a.live)
ORDER BY s LIMIT 1
"""


async def lock_account_slots(conn: Connection, account: str) -> None:
    """Hold the account's row lock (as a claim does) while a channel slot is handed out."""
    await conn.execute("SELECT 1 FROM accounts WHERE name = $1 FOR UPDATE", account)


async def free_slot(conn: Connection, account: str) -> int | None:
    """The lowest channel slot of the account no live attempt holds (under lock_account_slots)."""
    return await conn.fetchval(_FREE_SLOT, account)


async def newest_reservation(conn: Connection, account: str) -> int | None:
    """The account's newest reservation not yet sent, row-locked (SKIP LOCKED)."""
    return await conn.fetchval(
        """SELECT id FROM attempts WHERE account = $1 AND state = 'reserved'
           ORDER BY id DESC LIMIT 1 FOR UPDATE SKIP LOCKED""",
        account,
    )


async def give_slot(conn: Connection, attempt_id: int, slot: int) -> None:
    """A re-opened attempt takes the channel slot it counts against."""
    await conn.execute(
        "UPDATE attempts SET slot = $2 WHERE id = $1 AND slot IS NULL AND reopened_at IS NOT NULL",
        attempt_id,
        slot,
    )


async def correct_unknown(
    conn: Connection,
    attempt_id: int,
    outcome: str,
    provider_call_id: str | None,
    duration_s: int | None,
) -> None:
    """Record on an attempt closed `unknown`, whose contact was dialed again, the outcome the
    provider reported after all (its contact is not touched)."""
    await conn.execute(
        """UPDATE attempts
           SET state = $2, outcome = $2, provider_call_id = coalesce(provider_call_id, $3),
               duration_s = coalesce($4, duration_s), updated_at = now(),
               error = concat_ws('; ', error, 'the provider reported ' || $2 || ' after this'
                                 ' attempt was closed unknown and its contact was dialed again')
           WHERE id = $1 AND state = ANY($5::text[])""",
        attempt_id,
        outcome,
        provider_call_id,
        duration_s,
        list(TRANSITIONS["correct_unknown"].sources),
    )


async def look_up_now(conn: Connection, attempt_id: int) -> None:
    """Make a sent attempt due for the reconciler's look-up at once."""
    await conn.execute(
        """UPDATE attempts SET settle_by = least(settle_by, now())
           WHERE id = $1 AND state = ANY($2::text[])""",
        attempt_id,
        list(SENT),
    )


async def record_accepted(
    conn: Connection, accepted: list[tuple[int, str | None]]
) -> list[asyncpg.Record]:
    """Store the call ids of calls the provider took (`dialing` becomes `accepted`; a callback
    may have moved it further already) and end their accounts' 429 streaks. Returns (id,
    provider_call_id) of those closed `unknown` meanwhile."""
    return await conn.fetch(
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


# ---- reconciling --------------------------------------------------------------------------------


EXPIRED_RESERVATIONS = (
    "SELECT id FROM attempts WHERE live AND state = 'reserved' AND lease_expires_at < now()"
    " LIMIT $1"
)


async def expired_reservations(conn: Connection, limit: int) -> list[int]:
    """Reservations whose lease ended unsent."""
    rows = await conn.fetch(EXPIRED_RESERVATIONS, limit)
    return [r["id"] for r in rows]


# Silent attempts, oldest deadline first. One `dialing` without a call id may still have its
# request on the way until its send window and the client's timeout have passed, unless its
# sender saw the request end (request_done_at): never before.
# `late_until`: until when a call may still be placed for it (policy.late, the account's span).
_SILENT = """
SELECT a.id, a.account, a.provider_call_id, a.phone_e164, a.requested_at, a.held_outcome,
       a.lookups, now() AS now,
       a.requested_at + make_interval(secs => coalesce(n.late_placement_s, 300)) AS late_until
FROM attempts a LEFT JOIN accounts n ON n.name = a.account
WHERE a.live AND a.state = ANY($2::text[]) AND a.settle_by < now()
  AND (a.state <> 'dialing' OR a.provider_call_id IS NOT NULL OR a.request_done_at IS NOT NULL
       OR coalesce(a.send_by, a.requested_at + $3::interval) + $4::interval < now())
ORDER BY a.settle_by LIMIT $1
"""


async def silent(
    conn: Connection, limit: int, send_window: timedelta, client_timeout: timedelta
) -> list[asyncpg.Record]:
    """Sent attempts past their look-up time whose request can no longer be on its way."""
    return await conn.fetch(_SILENT, limit, list(SENT), send_window, client_timeout)


async def claimed_call_ids(conn: Connection, account: str, ids: list[str]) -> set[str]:
    """Which of these provider call ids an attempt of the account already has."""
    rows = await conn.fetch(
        "SELECT provider_call_id FROM attempts WHERE account = $1 AND provider_call_id = ANY($2)",
        account,
        ids,
    )
    return {r["provider_call_id"] for r in rows}


async def look_up_again_in(conn: Connection, attempt_id: int, wait: timedelta) -> None:
    await conn.execute(
        "UPDATE attempts SET settle_by = now() + $2::interval WHERE id = $1", attempt_id, wait
    )


async def list_again_in(conn: Connection, attempt_id: int, wait: timedelta) -> None:
    """No call of it is listed yet, but one may still be placed (policy.late): one more
    look-up, the next one after `wait`; the attempt stays live and keeps its channel."""
    await conn.execute(
        """UPDATE attempts SET lookups = lookups + 1, settle_by = now() + $2::interval
           WHERE id = $1""",
        attempt_id,
        wait,
    )


async def count_live_answer(conn: Connection, attempt_id: int) -> None:
    """The provider says the call is still live: one more look-up, the next one backed off."""
    await conn.execute(
        f"""UPDATE attempts SET lookups = lookups + 1, looked_up_at = now(),
               settle_by = {after_live_answer_sql("lookups")}
            WHERE id = $1""",
        attempt_id,
    )


# Live calls with a call id, not yet due by the schedule, past IDLE_FROM of the typical length of
# their phase, not asked about within IDLE_REASK; most overdue first; marked as asked about now;
# none while the account's request clock has its next slot further than $5 seconds away (a
# dial is waiting for it: read without a lock, a hint; each look-up's slot is booked under the
# lock, dispatch.claim.take_idle_slot). The clock was read by a statement of its own each round.
# The typical lengths come from the account's last settled calls, read newest first through
# attempts_settled_by_account (migration 0035; tests/db/test_indexes.py).
_OVERDUE = f"""
WITH recent AS (
    SELECT requested_at, answered_at, ended_at, duration_s FROM attempts
    WHERE account = $1 AND outcome = ANY($3::text[]) AND requested_at IS NOT NULL
      AND ended_at IS NOT NULL
    ORDER BY id DESC LIMIT {TYPICAL_OVER}
), typical AS MATERIALIZED (  -- once, not again for each live call
    SELECT percentile_cont(0.5) WITHIN GROUP (
               ORDER BY extract(epoch FROM coalesce(answered_at, ended_at) - requested_at)
           ) AS ring_s,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_s)
               FILTER (WHERE answered_at IS NOT NULL) AS talk_s
    FROM recent
), picked AS (
    SELECT a.id, CASE
        WHEN a.answered_at IS NOT NULL
        THEN extract(epoch FROM now() - a.answered_at)
             / greatest(coalesce(t.talk_s, {ANSWERED_QUIET.total_seconds()}), {TYPICAL_FLOOR_S})
        ELSE extract(epoch FROM now() - a.requested_at)
             / greatest(coalesce(t.ring_s, a.ring_timeout_s, 30), {TYPICAL_FLOOR_S})
        END AS overdue
    FROM attempts a CROSS JOIN typical t
    WHERE a.account = $1 AND a.live AND a.state = ANY($4::text[])
      AND a.provider_call_id IS NOT NULL
      AND a.held_outcome IS NULL AND a.settle_by >= now() AND a.requested_at IS NOT NULL
      AND (a.looked_up_at IS NULL
           OR a.looked_up_at < now() - make_interval(secs => {IDLE_REASK.total_seconds()}))
      AND EXISTS (SELECT 1 FROM accounts n
                  WHERE n.name = $1 AND n.tat <= now() + make_interval(secs => $5::float8))
)
UPDATE attempts a SET looked_up_at = now()
FROM (SELECT p.id, p.overdue FROM picked p JOIN attempts x ON x.id = p.id
      WHERE p.overdue >= {IDLE_FROM}
      ORDER BY p.overdue DESC LIMIT $2 FOR UPDATE OF x SKIP LOCKED) o
WHERE a.id = o.id
RETURNING a.id, a.provider_call_id, a.phone_e164, a.requested_at, o.overdue
"""


async def overdue_live(
    conn: Connection, account: str, limit: int, idle_within_s: float
) -> list[asyncpg.Record]:
    """Up to `limit` of the account's live calls most likely ended unheard (policy.lookups:
    the idle rate), most overdue first, marked as asked about now so that no other process
    asks about them within IDLE_REASK; none unless the account's request clock has its next
    slot within `idle_within_s` (no dial waits for it)."""
    rows = await conn.fetch(_OVERDUE, account, limit, list(OUTCOMES), list(SENT), idle_within_s)
    return sorted(rows, key=lambda r: r["overdue"], reverse=True)
