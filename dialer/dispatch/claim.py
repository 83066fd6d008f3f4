"""Claiming work under the account's shared limits, in one short transaction.

1. Lock the account row (SKIP LOCKED: if another worker is claiming for it, come back later).
2. From its GCRA state (`tat`, the theoretical arrival time) and rate, work out how many request
   slots fall within the next `horizon`; from its live attempts, which channel slots are free.
3. Pick that many due contacts, in the campaign's order, inside their calling window, not on the
   do-not-call list, with FOR UPDATE SKIP LOCKED; lock their numbers (advisory locks) and, with a
   fresh snapshot, drop numbers already live elsewhere or at their daily dial cap.
4. Insert their attempts as `reserved`, each holding a channel slot and a send time, advance
   `tat`, commit. All times come from the database clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from dialer.campaigns import Campaign
from dialer.dispatch.limiter import ready_slots
from dialer.faults import fault_point
from dialer.policy.lookups import after_event_sql
from dialer.policy.states import LIVE
from dialer.policy.window import window_sql
from dialer.providers.send_deadline import SEND_WINDOW

DERATE = 0.95  # aim under the provider's figure, so a provider counting calendar windows agrees
LEASE = timedelta(seconds=15)  # beyond its send time, an unsent reservation is void


@dataclass(frozen=True)
class Claimed:
    attempt_id: int
    contact_id: int
    campaign_id: int
    attempt_no: int
    phone_e164: str
    fields: dict
    send_in_s: float  # seconds after the claim's commit at which its request slot opens


@dataclass(frozen=True)
class AccountLimits:
    name: str
    kind: str
    rate_per_s: float  # as configured (the provider's figure)
    window_s: float  # the unit the provider counts in (1 for N/s, 60 for N/min)
    channels: int

    @property
    def early_s(self) -> float:
        """How far ahead of its slot a request may leave and still keep every window of the
        provider's unit within its figure: the 5% headroom, with a margin for network jitter."""
        return 0.5 * self.window_s * (1 / DERATE - 1)


async def register_account(conn: asyncpg.Connection, limits: AccountLimits) -> None:
    """Create or refresh the account's shared limiter row from configuration."""
    await conn.execute(
        """INSERT INTO accounts (name, kind, rate_per_s, channels) VALUES ($1, $2, $3, $4)
           ON CONFLICT (name) DO UPDATE SET kind = $2, rate_per_s = $3, channels = $4,
               updated_at = now()""",
        limits.name,
        limits.kind,
        limits.rate_per_s * DERATE,
        limits.channels,
    )


_LATERAL, _IN_WINDOW = window_sql(3)
_CANDIDATES = f"""
SELECT c.id, c.phone_e164, c.fields, c.timezone
FROM contacts c
{_LATERAL}
WHERE c.campaign_id = $1 AND c.state = 'pending'
  AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= now())
  AND {_IN_WINDOW}
  AND NOT EXISTS (SELECT 1 FROM dnc d WHERE d.phone_e164 = c.phone_e164)
ORDER BY c.priority DESC, c.attempts, c.next_attempt_at, c.id
LIMIT $2
FOR UPDATE OF c SKIP LOCKED
"""

# Run after the numbers are locked, as a new statement: its snapshot sees every attempt that a
# competing claim committed before we got the lock.
_NUMBER_CHECKS = """
SELECT t.id,
       EXISTS (SELECT 1 FROM attempts a
               WHERE a.phone_e164 = t.phone AND a.state = ANY($3::text[])) AS live_elsewhere,
       (SELECT min(a.requested_at) FROM (
            SELECT requested_at FROM attempts a
            WHERE a.phone_e164 = t.phone AND a.requested_at > now() - interval '24 hours'
              AND a.state <> 'not_dialed'
            ORDER BY requested_at DESC LIMIT $4) a
        HAVING count(*) >= $4) AS capped_since
FROM unnest($1::bigint[], $2::text[]) AS t(id, phone)
"""

_INSERT_ATTEMPTS = """
INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state, phone_e164, slot,
                      lease_expires_at, dial_before)
SELECT t.id, $2, $3,
       coalesce((SELECT max(attempt_no) FROM attempts x WHERE x.contact_id = t.id), 0) + 1,
       'reserved', c.phone_e164, t.slot,
       least(now() + make_interval(secs => t.send_in) + $4::interval, t.dial_before),
       t.dial_before
FROM unnest($1::bigint[], $5::int[], $6::float8[], $7::timestamptz[])
     WITH ORDINALITY AS t(id, slot, send_in, dial_before, n)
JOIN contacts c ON c.id = t.id
ORDER BY t.n
RETURNING id, contact_id, attempt_no
"""


async def claim(
    conn: asyncpg.Connection,
    limits: AccountLimits,
    campaigns: list[Campaign],
    *,
    max_batch: int,
    horizon_s: float,
    dial_cap: int,
) -> list[Claimed]:
    """Reserve up to `max_batch` attempts for the account's campaigns; [] if nothing is allowed."""
    async with conn.transaction():
        account = await conn.fetchrow(
            """SELECT rate_per_s * rate_factor AS rate, channels, greatest(tat, now()) AS start,
                      now() AS now, last_429_at, rate_factor
               FROM accounts WHERE name = $1 FOR UPDATE SKIP LOCKED""",
            limits.name,
        )
        if account is None:
            return []
        fault_point("holding-account-lock")
        interval = 1.0 / account["rate"]
        ahead = (account["now"] + timedelta(seconds=horizon_s) - account["start"]).total_seconds()
        tokens = math.floor(ahead / interval) + 1 if ahead >= 0 else 0
        used = await conn.fetch(
            "SELECT slot, state FROM attempts WHERE account = $1 AND state = ANY($2::text[])",
            limits.name,
            list(LIVE),
        )
        taken = {r["slot"] for r in used}
        # A re-opened attempt (closed `unknown`, then a fact came) is live without a slot.
        free = [s for s in range(account["channels"]) if s not in taken]
        free = free[: max(0, account["channels"] - len(used))]
        waiting = sum(1 for r in used if r["state"] == "reserved")  # claimed, not yet sent
        want = min(tokens - waiting, len(free), max_batch)
        claimed: list[Claimed] = []
        for campaign in campaigns:
            if len(claimed) >= want:
                break
            claimed += await _claim_campaign(
                conn,
                limits,
                campaign,
                want - len(claimed),
                free[len(claimed) :],
                account["start"],
                account["now"],
                interval,
                waiting + len(claimed),
                dial_cap,
            )
        if claimed:
            await conn.execute(
                """UPDATE accounts SET
                       rate_factor = CASE WHEN last_429_at IS NULL
                                            OR last_429_at < now() - interval '30 seconds'
                                          THEN least(1, rate_factor * 1.05) ELSE rate_factor END,
                       throttle_streak = CASE WHEN last_429_at < now() - interval '30 seconds'
                                              THEN 0 ELSE throttle_streak END,
                       updated_at = now()
                   WHERE name = $1""",
                limits.name,
            )
        return claimed


async def _claim_campaign(
    conn: asyncpg.Connection,
    limits: AccountLimits,
    campaign: Campaign,
    want: int,
    free_slots: list[int],
    start: datetime,
    now: datetime,
    interval: float,
    offset: int,
    dial_cap: int,
) -> list[Claimed]:
    rows = await conn.fetch(_CANDIDATES, campaign.id, want, *campaign.rules.sql_parameters())
    if not rows:
        return []
    locked = await conn.fetch(
        """SELECT t.id FROM unnest($1::bigint[], $2::text[]) AS t(id, phone)
           WHERE pg_try_advisory_xact_lock(hashtextextended(t.phone, 7))""",
        [r["id"] for r in rows],
        [r["phone_e164"] for r in rows],
    )
    locked_ids = {r["id"] for r in locked}
    rows = [r for r in rows if r["id"] in locked_ids]
    checks = await conn.fetch(
        _NUMBER_CHECKS,
        [r["id"] for r in rows],
        [r["phone_e164"] for r in rows],
        list(LIVE),
        dial_cap,
    )
    blocked = {c["id"]: c for c in checks if c["live_elsewhere"] or c["capped_since"]}
    for contact_id, check in blocked.items():
        # Another campaign is calling this person now, or they had their dials for today.
        retry_at = (
            check["capped_since"] + timedelta(hours=24)
            if check["capped_since"]
            else now + timedelta(minutes=1)
        )
        await conn.execute(
            "UPDATE contacts SET next_attempt_at = $2, updated_at = now() WHERE id = $1",
            contact_id,
            retry_at,
        )
    rows = [r for r in rows if r["id"] not in blocked]
    if not rows:
        return []
    base = (start - now).total_seconds()
    send_in = [base + (offset + i) * interval for i in range(len(rows))]
    # The window these contacts are in closes at a time of their own zone; nothing may be sent
    # after it, however long the attempt waits for a request slot.
    closes = [campaign.rules.closes_at(now, r["timezone"]) or now for r in rows]
    inserted = await conn.fetch(
        _INSERT_ATTEMPTS,
        [r["id"] for r in rows],
        campaign.id,
        limits.name,
        LEASE,
        free_slots[: len(rows)],
        send_in,
        closes,
    )
    await conn.execute(
        """UPDATE contacts SET state = 'dialing', attempts = attempts + 1, updated_at = now()
           WHERE id = ANY($1::bigint[])""",
        [r["id"] for r in rows],
    )
    by_contact = {r["id"]: r for r in rows}
    return [
        Claimed(
            attempt_id=a["id"],
            contact_id=a["contact_id"],
            campaign_id=campaign.id,
            attempt_no=a["attempt_no"],
            phone_e164=by_contact[a["contact_id"]]["phone_e164"],
            fields=by_contact[a["contact_id"]]["fields"],
            send_in_s=delay,
        )
        for a, delay in zip(inserted, send_in, strict=True)
    ]


VOID = "void"

# `dialing`, with its send deadline and its first look-up time (policy.lookups), under the
# compare-and-set on its reservation: its lease, its calling window, its campaign `active`.
_BEGIN_DIAL = f"""
UPDATE attempts a
SET state = 'dialing', requested_at = now(), caller_id = t.caller,
    send_by = now() + $4::interval, ring_timeout_s = t.ring, max_duration_s = t.talk,
    settle_by = {after_event_sql("'dialing'", "t.ring", "t.talk")}, updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::int[], $5::int[]) AS t(id, caller, ring, talk)
WHERE a.id = t.id AND a.state = 'reserved' AND a.lease_expires_at > now()
  AND (a.dial_before IS NULL OR a.dial_before > now())
  AND EXISTS (SELECT 1 FROM campaigns k WHERE k.id = a.campaign_id AND k.status = 'active')
RETURNING a.id
"""


async def begin_dial(
    conn: asyncpg.Connection,
    account: str,
    attempts: list[tuple[int, str, int, int]],
    early_s: float,
) -> dict[int, str | float]:
    """Give request slots to attempts that are ready to send, and commit them as `dialing`.

    Under the account row lock: slots follow the GCRA clock (`tat`), one emission interval
    apart, assigned now, at send time, so requests are never closer together than the rate
    allows however late a process is. An attempt whose slot opens within `early_s` is
    committed as `dialing` (a compare-and-set on its lease, and the campaign must still be
    `active`) with its `send_by` (providers.send_deadline), and must be sent at once or not at
    all; the others get the seconds to wait before asking again;
    one whose lease expired, whose calling window closed (`dial_before`) or whose campaign
    stopped gets VOID (release it, nothing is sent).
    """
    async with conn.transaction():
        clock = await conn.fetchrow(
            """SELECT greatest(tat, now()) AS start, now() AS now,
                      1.0 / (rate_per_s * rate_factor) AS interval
               FROM accounts WHERE name = $1 FOR UPDATE""",
            account,
        )
        interval = float(clock["interval"])
        ahead = (clock["start"] - clock["now"]).total_seconds()
        ready = ready_slots(ahead, early_s, interval, len(attempts))
        sent = await conn.fetch(
            _BEGIN_DIAL,
            [a[0] for a in attempts[:ready]],
            [a[1] for a in attempts[:ready]],
            [a[2] for a in attempts[:ready]],
            SEND_WINDOW,
            [a[3] for a in attempts[:ready]],
        )
        sent_ids = {r["id"] for r in sent}
        if sent_ids:
            await conn.execute(
                "UPDATE accounts SET tat = $2::timestamptz + make_interval(secs => $3::float8)"
                " WHERE name = $1",
                account,
                clock["start"],
                interval * len(sent_ids),
            )
        verdicts: dict[int, str | float] = {}
        for index, (attempt_id, *_) in enumerate(attempts):
            if attempt_id in sent_ids:
                verdicts[attempt_id] = SEND
            elif index < ready:
                verdicts[attempt_id] = VOID
            else:
                position = len(sent_ids) + (index - ready)
                verdicts[attempt_id] = max(0.001, ahead + position * interval - early_s / 2)
        waiting = [a for a, v in verdicts.items() if isinstance(v, float)]
        if waiting:  # keep their reservations alive while they wait for a slot
            await conn.execute(
                """UPDATE attempts SET lease_expires_at = least(greatest(lease_expires_at,
                       now() + make_interval(secs => $2::float8) + $3::interval), dial_before)
                   WHERE id = ANY($1::bigint[]) AND state = 'reserved'""",
                waiting,
                max(float(verdicts[a]) for a in waiting),
                LEASE,
            )
    return verdicts


SEND = "send"


BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0
RETRY_AFTER_CAP_S = 600.0  # a Retry-After beyond this is taken as this (a provider's typo)


async def push_back_rate(conn: asyncpg.Connection, account: str, retry_after: float | None) -> None:
    """A 429: every worker on the account waits, and the shared rate slows until 429s stop.

    The wait is the provider's Retry-After if it gave one; else an exponential backoff on the
    account's streak of 429 episodes (429s less than a second apart are one episode: a burst of
    refusals of requests already in flight), capped, of which a random half to all is waited.
    """
    await conn.execute(
        """UPDATE accounts SET
               throttle_streak = CASE WHEN last_429_at IS NULL
                                        OR last_429_at < now() - interval '1 second'
                                      THEN throttle_streak + 1 ELSE throttle_streak END,
               tat = greatest(tat, now() + make_interval(secs => CASE
                   WHEN $2::float8 IS NOT NULL THEN least($2::float8, $5::float8)
                   ELSE least($4::float8, $3::float8 * power(2, least(throttle_streak, 16)))
                        * (0.5 + random() * 0.5) END)),
               rate_factor = greatest(0.2, rate_factor * 0.8), last_429_at = now(),
               updated_at = now()
           WHERE name = $1""",
        account,
        retry_after,
        BACKOFF_BASE_S,
        BACKOFF_CAP_S,
        RETRY_AFTER_CAP_S,
    )


async def take_request_slot(conn: asyncpg.Connection, account: str) -> float:
    """Book one request on the account's shared clock for a non-dialing request (a status
    look-up): returns the seconds to wait before sending it. Providers such as Exotel count
    look-ups against the same per-minute budget as dialing."""
    wait = await conn.fetchval(
        """UPDATE accounts SET tat = greatest(tat, now())
                                     + make_interval(secs => 1.0 / (rate_per_s * rate_factor))
           WHERE name = $1
           RETURNING extract(epoch FROM tat - now()) - 1.0 / (rate_per_s * rate_factor)""",
        account,
    )
    return max(0.0, float(wait or 0.0))
