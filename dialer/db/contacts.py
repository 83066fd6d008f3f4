"""The contacts table: who is due, who is being called, what comes next for each person.

Every statement that reads or changes contacts at run time (loading aside: db.loads). "Due"
is db.due's definition; a contact that has a live attempt is `dialing`, which no claim and no
do-not-call change touches, so only the attempt's settle moves it on.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from dialer.db.accounts import sendable_sql
from dialer.db.due import (
    NOT_LISTED,
    due_condition,
    jurisdiction_key_sql,
    verdict_sql,
    window_sql,
)
from dialer.db.types import Connection
from dialer.policy.due import FirstInLine
from dialer.policy.packs import CampaignRules
from dialer.policy.states import LIVE
from dialer.policy.window import CallingRules

_DUE_LATERAL, _DUE = due_condition(3)
_ZONE_LATERAL, _ZONE_OPEN = window_sql(3, laws=False)


# The claim's pick reads the due index (contacts_due_by_zone: zone, priority DESC, attempts,
# next_attempt_at, id) zone by zone, and within a zone by groups: a group is the pending
# contacts of one priority and attempt count. A group's due contacts are two ranges of the
# index: those whose retry delay is over (next_attempt_at <= now(), in that order) and those
# with none (NULL, last); the contacts between them wait out a retry delay and are not read.
# Finding a group costs a probe of the index, about what reading 50 entries costs; so a zone's
# first GROUPS_READ_BY_RANGE groups are read by range, and the rest of the zone, if the batch needs
# it, entry by entry in the index's order (as if there were no groups): a campaign whose every
# contact has a priority of its own costs a claim at most that many probes more than a plain
# walk, and one of a few groups never reads its contacts waiting out a retry.
GROUPS_READ_BY_RANGE = 64
# How a read names the zone of row `o` (the match, with the index's leading columns equal; when
# the read applies): a zone of its own, or none (the campaign's)
_ZONED = ("{a}.timezone = o.timezone", "NOT o.no_zone")
_NO_ZONE = ("{a}.timezone IS NULL", "o.no_zone")
# Which contacts after group `g` a read takes: the group's two ranges; then the rest of the
# zone after the last group read by range, entry by entry
_RANGES = (
    "{a}.priority = g.priority AND {a}.attempts = g.attempts AND {a}.next_attempt_at <= now()",
    "{a}.priority = g.priority AND {a}.attempts = g.attempts AND {a}.next_attempt_at IS NULL",
)
_AFTER_GROUPS = (
    "{a}.priority = g.priority AND {a}.attempts > g.attempts",
    "{a}.priority < g.priority",
)
# Every read is ordered as the due index is, from its zone on, whatever the read fixes: only
# that index gives the order, so it is the one read, in order, as far as the batch needs.
# (Ordered by id alone, a range was read from the primary key, every contact of the campaign
# in turn; without the zone, contacts with none, `timezone IS NULL` being no equality to the
# planner, were all read and sorted.)
_INDEX_ORDER = "{a}.timezone, {a}.priority DESC, {a}.attempts, {a}.next_attempt_at, {a}.id"


def _pick(zone: tuple[str, str], where: str) -> str:
    """Up to $2 due contacts of zone `o` that `where` takes, in dialing order, row-locked as
    they are read (SKIP LOCKED: another claim's are passed over, not waited for)."""
    match, applies = zone
    return f"""
    SELECT * FROM (
    SELECT c.id, c.phone_e164, c.fields, c.timezone, c.jurisdiction,
           first.caller_id AS first_caller,
           CASE WHEN last.state = 'unknown' AND last.provider_call_id IS NULL
                THEN last.id END AS unplaced_id,
           last.requested_at AS last_requested_at,
           c.priority, c.attempts, c.next_attempt_at
    FROM contacts c
    {_DUE_LATERAL}
    LEFT JOIN LATERAL (
        SELECT x.caller_id, x.account FROM attempts x
        WHERE x.contact_id = c.id AND x.caller_id IS NOT NULL
        ORDER BY x.attempt_no LIMIT 1) first ON true
    LEFT JOIN LATERAL (
        SELECT x.id, x.state, x.provider_call_id, x.requested_at FROM attempts x
        WHERE x.contact_id = c.id AND x.state <> 'not_dialed'
        ORDER BY x.attempt_no DESC LIMIT 1) last ON c.attempts > 0
    WHERE {applies} AND c.campaign_id = $1 AND {match.format(a="c")} AND c.state = 'pending'
      AND {where} AND {_DUE}
      -- a pool with sticky caller ids ($14: the account claiming): a contact first called
      -- through another account keeps it while that account may send
      AND ($14::text IS NULL OR first.account IS NULL OR first.account = $14
           OR NOT EXISTS (SELECT 1 FROM accounts n
                          WHERE n.name = first.account AND {sendable_sql("n")}))
    ORDER BY {_INDEX_ORDER.format(a="c")}
    LIMIT $2
    FOR UPDATE OF c SKIP LOCKED) r"""


def _picks(reads: tuple[str, ...]) -> str:
    return " UNION ALL ".join(
        _pick(zone, where.format(a="c")) for zone in (_ZONED, _NO_ZONE) for where in reads
    )


def _group(zone: tuple[str, str], after: str) -> str:
    """The first group of zone `o` that `after` allows, in dialing order (one probe)."""
    match, applies = zone
    return f"""(SELECT z.priority, z.attempts FROM contacts z
        WHERE {applies} AND z.campaign_id = $1 AND z.state = 'pending'
          AND {match.format(a="z")} AND {after}
        ORDER BY {_INDEX_ORDER.format(a="z")} LIMIT 1)"""


def _groups(first: bool) -> str:
    """The first group of zone `o`, or (not `first`) the one after group `g`."""
    reads = ["true"] if first else list(_AFTER_GROUPS)
    return " UNION ALL ".join(
        _group(zone, after.format(a="z")) for zone in (_ZONED, _NO_ZONE) for after in reads
    )


# Contacts with no zone of their own take the campaign's ($3)
_DEFAULT_ZONE_OPEN = (
    f"EXISTS (SELECT 1 FROM (SELECT NULL::text AS timezone) c {_ZONE_LATERAL} WHERE {_ZONE_OPEN})"
)

# The pick: the campaign's zones among its pending contacts (a loose scan of the due index, one
# probe per zone), those whose window is open now (the campaign's own window: the laws' hours
# only narrow it, and each contact is still tested whole), and the contacts with no zone when
# the campaign's is open. Per zone, the first $2 due contacts in dialing order: its groups one
# after another (a recursive walk, one probe each, up to GROUPS_READ_BY_RANGE), each group's two
# ranges, then the rest of the zone entry by entry; all under one limit, which stops the walk,
# the reads and the row locks once the zone's $2 are found. Of all zones' contacts, the first
# $2 in dialing order. Its cost follows the zones, the groups and the batch, not the contacts
# waiting in closed zones or out a retry delay (bench/due_walk.py).
_CANDIDATES = f"""
WITH RECURSIVE zones (timezone) AS (
    (SELECT z.timezone FROM contacts z
     WHERE z.campaign_id = $1 AND z.state = 'pending' AND z.timezone IS NOT NULL
     ORDER BY z.timezone LIMIT 1)
    UNION ALL
    SELECT (SELECT z.timezone FROM contacts z
            WHERE z.campaign_id = $1 AND z.state = 'pending' AND z.timezone > zones.timezone
            ORDER BY z.timezone LIMIT 1)
    FROM zones WHERE zones.timezone IS NOT NULL),
open_zones (no_zone, timezone) AS (
    SELECT false, c.timezone FROM zones c {_ZONE_LATERAL}
    WHERE c.timezone IS NOT NULL AND {_ZONE_OPEN}
    UNION ALL
    SELECT true, NULL WHERE {_DEFAULT_ZONE_OPEN}),
picked AS (
    SELECT p.* FROM open_zones o CROSS JOIN LATERAL (
        WITH RECURSIVE groups (priority, attempts, n) AS (
            SELECT f.*, 1 FROM ({_groups(first=True)} LIMIT 1) f
            UNION ALL
            SELECT f.*, g.n + 1 FROM groups g CROSS JOIN LATERAL (
                {_groups(first=False)} LIMIT 1) f
            WHERE g.n < {GROUPS_READ_BY_RANGE})
        (SELECT r.* FROM groups g CROSS JOIN LATERAL ({_picks(_RANGES)}) r)
        UNION ALL
        (SELECT r.* FROM groups g CROSS JOIN LATERAL ({_picks(_AFTER_GROUPS)}) r
         WHERE g.n = {GROUPS_READ_BY_RANGE})
        LIMIT $2) p)
SELECT id, phone_e164, fields, timezone, jurisdiction, first_caller, unplaced_id,
       last_requested_at
FROM picked
ORDER BY priority DESC, attempts, next_attempt_at, id
LIMIT $2
"""


async def lock_due(
    conn: Connection,
    campaign_id: int,
    limit: int,
    rules: CallingRules,
    sticky_account: str | None = None,
) -> list[asyncpg.Record]:
    """Up to `limit` due contacts of the campaign in its dialing order, row-locked (SKIP LOCKED:
    another claim's contacts are not waited for), read from the zones whose window is open only
    (up to `limit` locked in each: the ones not picked stay pending), with the caller id their
    first attempt showed (NULL for a first attempt), and `unplaced_id` (with
    `last_requested_at`) when their last attempt ended `unknown` with no call id: a call of it
    may have been placed after all (policy.late), so the provider's list is read before the
    redial. With `sticky_account` (a pool whose caller ids are sticky), a contact first called
    through another account that may still send is left to that account."""
    # One plan for every claim (a generic plan, kept with the connection's prepared
    # statement): planning this statement costs several times what running it does, and
    # PostgreSQL would otherwise plan it anew at each claim. Its joins are lateral probes by
    # index whatever the values, so the values add nothing to its plan (bench/due_walk.py).
    await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    rows = await conn.fetch(
        _CANDIDATES, campaign_id, limit, *rules.sql_parameters(), sticky_account
    )
    await conn.execute("SET LOCAL plan_cache_mode = auto")
    return rows


async def lock_numbers(conn: Connection, ids: list[int], phones: list[str]) -> set[int]:
    """Of these contacts, those whose number this transaction could lock (an advisory lock
    per number: two claims never judge the same person at once)."""
    rows = await conn.fetch(
        """SELECT t.id FROM unnest($1::bigint[], $2::text[]) AS t(id, phone)
           WHERE pg_try_advisory_xact_lock(hashtextextended(t.phone, 7))""",
        ids,
        phones,
    )
    return {r["id"] for r in rows}


# Run after the numbers are locked, as a new statement: its snapshot sees every attempt that a
# competing claim committed before we got the lock.
# The laws' caps and quiet times (policy.packs) for each contact's jurisdiction key: until
# when the number may not be called again on this subject (NULL: it may be now). A cap N/W
# holds once N calls on the subject fall in the last W, until the oldest of them leaves it; a
# quiet time holds from a conversation (a call answered by a person) for its length.
_LAW_HOLDS = """
(SELECT max(until) FROM (
    SELECT (SELECT min(x.requested_at) + make_interval(secs => cap.secs) FROM (
                SELECT a.requested_at FROM attempts a
                WHERE a.phone_e164 = t.phone AND a.subject = $5 AND a.state <> 'not_dialed'
                  AND a.requested_at > now() - make_interval(secs => cap.secs)
                ORDER BY a.requested_at DESC LIMIT cap.n) x
            HAVING count(*) >= cap.n) AS until
    FROM unnest($7::text[], $8::int[], $9::float8[]) AS cap(k, n, secs)
    WHERE cap.k = jk.key
    UNION ALL
    SELECT (SELECT max(coalesce(a.ended_at, a.requested_at)) + make_interval(secs => q.secs)
            FROM attempts a
            WHERE a.phone_e164 = t.phone AND a.subject = $5 AND a.outcome = 'completed'
              AND coalesce(a.ended_at, a.requested_at) > now() - make_interval(secs => q.secs))
    FROM unnest($10::text[], $11::float8[]) AS q(k, secs)
    WHERE q.k = jk.key) holds)
"""

# The ids are read through a scalar subquery for the reason events._PROGRESS_BATCH gives:
# planned once per connection, not at most executions.
_NUMBER_CHECKS = f"""
SELECT t.id, jk.key AS law_key,
       EXISTS (SELECT 1 FROM attempts a
               WHERE a.phone_e164 = t.phone AND a.state = ANY($3::text[])) AS live_elsewhere,
       (SELECT min(a.requested_at) FROM (
            SELECT requested_at FROM attempts a
            WHERE a.phone_e164 = t.phone AND a.requested_at > now() - interval '24 hours'
              AND a.state <> 'not_dialed'
            ORDER BY requested_at DESC LIMIT $4) a
        HAVING count(*) >= $4) AS capped_since,
       {_LAW_HOLDS} AS held_until
FROM unnest((SELECT $1::bigint[]), $2::text[]) AS t(id, phone)
JOIN contacts c ON c.id = t.id
CROSS JOIN LATERAL (SELECT {jurisdiction_key_sql("$6")} AS key) jk
"""


async def check_numbers(
    conn: Connection,
    ids: list[int],
    phones: list[str],
    dial_cap: int,
    subject: str,
    law: CampaignRules | None,
) -> list[asyncpg.Record]:
    """For each locked contact: is its number live in another attempt, since when has it had
    its `dial_cap` dials of the last 24 hours (NULL if it has not), and until when do the
    laws' caps and quiet times on `subject` hold it (`held_until`, NULL: they do not), with
    the jurisdiction key that bound it (`law_key`)."""
    keys = law.hours_parameters()[0] if law else []
    caps = law.cap_parameters() if law else ([], [], [])
    quiet = law.quiet_parameters() if law else ([], [])
    return await conn.fetch(
        _NUMBER_CHECKS, ids, phones, list(LIVE), dial_cap, subject, keys, *caps, *quiet
    )


async def postpone(
    conn: Connection, contact_id: int, until: datetime, held_by: str, figure: str
) -> None:
    """A hold (waiting.HELD_*) keeps the contact until `until`, said with its figure."""
    await conn.execute(
        """UPDATE contacts SET next_attempt_at = $2, held_by = $3, held_figure = $4,
               updated_at = now()
           WHERE id = $1""",
        contact_id,
        until,
        held_by,
        figure,
    )


async def postpone_from_now(
    conn: Connection,
    contact_id: int,
    until: datetime | None,
    otherwise: timedelta,
    held_by: str,
    figure: str,
) -> None:
    """A pending contact is held (`held_by`) until `until` (else `otherwise` from now)."""
    await conn.execute(
        """UPDATE contacts SET next_attempt_at = coalesce($2, now() + $3::interval),
               held_by = $4, held_figure = $5, updated_at = now()
           WHERE id = $1 AND state = 'pending'""",
        contact_id,
        until,
        otherwise,
        held_by,
        figure,
    )


async def release_dial_cap_holds(conn: Connection, campaign_ids: list[int], figure: str) -> int:
    """Contacts held by a daily dial cap other than `figure` (the cap this run counts with)
    are due again at once: the claim judges them under the cap now in force (a raised cap
    brings them back, a lowered one holds them again). How many."""
    status = await conn.execute(
        """UPDATE contacts SET next_attempt_at = NULL, held_by = NULL, held_figure = NULL,
               updated_at = now()
           WHERE campaign_id = ANY($1::bigint[]) AND state = 'pending'
             AND held_by = 'daily dial cap' AND held_figure IS DISTINCT FROM $2""",
        campaign_ids,
        figure,
    )
    return int(status.split()[-1])


async def undo_attempt(conn: Connection, contact_id: int) -> None:
    """Its attempt never reached the provider: it does not count, dial again when allowed."""
    await conn.execute(
        """UPDATE contacts SET state = 'pending', attempts = greatest(attempts - 1, 0),
               updated_at = now()
           WHERE id = $1 AND state = 'dialing'""",
        contact_id,
    )


def move_on_set(state: str, next_attempt_at: str, outcome: str) -> str:
    """The SET list of a contact moving on after its attempt settled (SQL expressions): one
    definition for one contact (move_on) and a batch (events.store_and_settle)."""
    return (
        f"state = {state}, next_attempt_at = {next_attempt_at}, last_outcome = {outcome},"
        " held_by = NULL, held_figure = NULL, updated_at = now()"
    )


DIALING = "c.state = 'dialing'"  # the only state a contact with a live attempt is in


async def move_on(
    conn: Connection,
    contact_id: int,
    state: str,
    next_attempt_at: datetime | None,
    outcome: str,
) -> None:
    """The contact's next step after its attempt settled with `outcome` (policy.retry)."""
    await conn.execute(
        f"UPDATE contacts c SET {move_on_set('$2', '$3', '$4')} WHERE c.id = $1 AND {DIALING}",
        contact_id,
        state,
        next_attempt_at,
        outcome,
    )


async def cancel_waiting(conn: Connection, campaign_id: int) -> int:
    """Cancel the campaign's contacts still waiting to be dialed; how many."""
    status = await conn.execute(
        """UPDATE contacts SET state = 'canceled', updated_at = now()
           WHERE campaign_id = $1 AND state = 'pending'""",
        campaign_id,
    )
    return int(status.split()[-1])


async def suppress_numbers(conn: Connection, numbers: list[str]) -> list[int]:
    """Suppress every waiting contact with one of these numbers, in any campaign; their ids."""
    rows = await conn.fetch(
        """UPDATE contacts SET state = 'suppressed', updated_at = now()
           WHERE phone_e164 = ANY($1::text[]) AND state = 'pending' RETURNING id""",
        numbers,
    )
    return [r["id"] for r in rows]


# Per group, the least of (next attempt, NULL first; priority, highest first; id) as one array,
# by a hash aggregate: no sort of every waiting contact (a million: 0.3 s against 1.6 s;
# bench/due_walk.py). float8 holds the epoch to the microsecond and ids below 2**53 exactly.
_FIRST_PER_ZONE = f"""
SELECT c.campaign_id, c.timezone, c.id, c.phone_e164, c.name, c.attempts, c.next_attempt_at,
       c.jurisdiction
FROM (SELECT min(ARRAY[extract(epoch FROM coalesce(c.next_attempt_at, '-infinity')),
                       -c.priority, c.id]::float8[]) AS least
      FROM contacts c
      WHERE c.campaign_id = ANY($1::bigint[]) AND c.state = 'pending' AND {NOT_LISTED}
      GROUP BY c.campaign_id, c.timezone, c.jurisdiction) g
JOIN contacts c ON c.id = g.least[3]::bigint
ORDER BY c.campaign_id, c.timezone, c.jurisdiction
"""


async def first_due_per_zone(conn: Connection, campaign_ids: list[int]) -> list[FirstInLine]:
    """Per campaign and zone, the pending contact not on the do-not-call list whose retry
    delay ends first (policy.due.next_due says when it is due)."""
    rows = await conn.fetch(_FIRST_PER_ZONE, campaign_ids)
    return [FirstInLine(*r.values()) for r in rows]


async def any_unfinished(conn: Connection, campaign_ids: list[int]) -> bool:
    """Whether any contact of these campaigns is being dialed, or waiting in a campaign that
    is not `completed` (one that met its goal leaves its waiting contacts undialed)."""
    return await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
                          WHERE c.campaign_id = ANY($1::bigint[])
                            AND (c.state = 'dialing'
                                 OR (c.state = 'pending' AND k.status <> 'completed')))""",
        campaign_ids,
    )


_VERDICT_LATERAL, _VERDICT = verdict_sql(2)
_VERDICTS = f"""
SELECT c.id, c.phone_e164, c.name, c.next_attempt_at, c.timezone, c.jurisdiction,
       {_VERDICT} AS verdict
FROM contacts c
{_VERDICT_LATERAL}
WHERE c.campaign_id = $1 AND c.state = 'pending'
ORDER BY c.priority DESC, c.attempts, c.next_attempt_at, c.id
"""


_WAITING = f"""
SELECT v.verdict,
       CASE WHEN v.verdict = v.held_by THEN v.held_figure
            WHEN v.verdict = 'retry delay' THEN v.last_outcome END AS figure,
       count(*) AS contacts, min(v.next_attempt_at) AS first_at
FROM (SELECT {_VERDICT} AS verdict, c.held_by, c.held_figure, c.last_outcome, c.next_attempt_at
      FROM contacts c
      {_VERDICT_LATERAL}
      WHERE c.campaign_id = $1 AND c.state = 'pending'
      OFFSET 0) v  -- each row's verdict computed once, not once per use
GROUP BY 1, 2
ORDER BY 1, 2
"""


async def waiting_counts(
    conn: Connection, campaign_id: int, rules: CallingRules
) -> list[asyncpg.Record]:
    """The campaign's pending contacts by verdict (db.due) and figure (a hold's, or the last
    outcome whose retry delay runs), each group's count and earliest `next_attempt_at`."""
    return await conn.fetch(_WAITING, campaign_id, *rules.sql_parameters())


async def pending_verdicts(
    conn: Connection, campaign_id: int, rules: CallingRules
) -> list[asyncpg.Record]:
    """Every pending contact in dialing order, with why it is or is not due now."""
    return await conn.fetch(_VERDICTS, campaign_id, *rules.sql_parameters())


_COUNT_LATERAL, _COUNT_DUE = due_condition(2)


async def count_due(conn: Connection, campaign_id: int, rules: CallingRules) -> int:
    """How many of the campaign's contacts are due now."""
    return await conn.fetchval(
        f"SELECT count(*) FROM contacts c {_COUNT_LATERAL} WHERE c.campaign_id = $1"
        f" AND {_COUNT_DUE}",
        campaign_id,
        *rules.sql_parameters(),
    )
