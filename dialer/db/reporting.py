"""Reading results and shared state for people: the reporting views, gauges, the dashboard.

Read-only. The views themselves are created by the migrations (their columns: sql/README.md);
"due" and "next due" come from db.due and policy.due, like everywhere else.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from dialer.db.types import Connection, Stream, one, stream
from dialer.policy.attestation import BLOCKED_SIP_CODES
from dialer.policy.states import CALL_OUTCOMES

# view name -> (SQL view, its time column for --since, how its rows are ordered)
VIEWS = {
    "summary": ("campaign_summary", None, "campaign_id"),
    "contacts": ("contact_results", "last_attempt_at", "campaign_id, row_no"),
    "attempts": ("attempt_log", "requested_at", "attempt_id"),
    "hourly": ("hourly_outcomes", "hour", "campaign_id, hour, outcome"),
    "usage": ("account_usage", "minute", "account, minute"),
}


async def view_rows(
    conn: Connection, view: str, campaign: str | None, since: datetime | None
) -> Stream:
    """The rows of one of VIEWS, of `campaign` (its account's, for usage) if given, from
    `since` on if given (local hours of each campaign's zone, for hourly), streamed (read them
    in the caller's transaction)."""
    table, time_column, order = VIEWS[view]
    where: list[str] = ["TRUE"]
    args: list[object] = []
    if campaign:
        args.append(campaign)
        where.append(
            f"account = (SELECT account FROM campaigns WHERE name = ${len(args)})"
            if view == "usage"
            else f"campaign = ${len(args)}"
        )
    if since is not None:
        args.append(since)
        since_sql = f"${len(args)}::timestamptz"
        if view == "hourly":
            since_sql = f"date_trunc('hour', {since_sql} AT TIME ZONE timezone)"
        where.append(f"{time_column} >= {since_sql}")
    sql = f"SELECT * FROM {table} WHERE {' AND '.join(where)} ORDER BY {order}"
    return await stream(conn, sql, *args)


async def campaign_list(conn: Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT campaign, account, status, contacts, pending, done, exhausted, failed,
                  suppressed, attempts, answer_rate
           FROM campaign_summary ORDER BY campaign_id"""
    )


async def campaign_summary(conn: Connection, campaign_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM campaign_summary WHERE campaign_id = $1", campaign_id)


async def account_gauges(conn: Connection) -> list[asyncpg.Record]:
    """Per account: channels, channels held by live attempts, configured and paced rates."""
    return await conn.fetch(
        """SELECT x.name, x.channels, x.configured_rate_per_s, x.paced_rate_per_s,
                  (SELECT count(*) FROM attempts a WHERE a.account = x.name AND a.live)
                      AS in_use,
                  greatest(0, extract(epoch FROM x.held_until - now()))::float8 AS held_s
           FROM accounts x"""
    )


async def last_attempt_id(conn: Connection) -> int:
    """The newest attempt's id: a run counts the attempts made after it (a range of the key)."""
    return await conn.fetchval("SELECT coalesce(max(id), 0) FROM attempts")


async def run_outcomes(conn: Connection, campaign_ids: list[int], after_id: int) -> dict[str, int]:
    """Attempts of these campaigns made after attempt `after_id` and sent (by every process),
    by outcome ('in flight' while live)."""
    rows = await conn.fetch(
        """SELECT CASE WHEN a.live THEN 'in flight'
                       ELSE coalesce(a.outcome, a.state) END AS what, count(*) AS n
           FROM attempts a
           WHERE a.id > $2 AND a.campaign_id = ANY($1::bigint[])
             AND a.requested_at IS NOT NULL
           GROUP BY 1""",
        campaign_ids,
        after_id,
    )
    return {r["what"]: r["n"] for r in rows}


async def run_gauges(
    conn: Connection, campaign_ids: list[int], accounts: list[str], after_id: int
) -> asyncpg.Record:
    """Requests of these campaigns in the last 5 s (of attempts after `after_id`); channels
    held on these accounts, their limits and their configured rates; the database clock."""
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM attempts a WHERE a.id > $3
                   AND a.campaign_id = ANY($1::bigint[])
                   AND a.requested_at > now() - interval '5 seconds') AS recent,
                  (SELECT count(*) FROM attempts l WHERE l.account = ANY($2::text[])
                   AND l.live) AS channels_in_use,
                  coalesce(sum(x.channels), 0) AS channels,
                  coalesce(sum(x.configured_rate_per_s), 0)::float8 AS rate_limit,
                  now() AS now
           FROM accounts x WHERE x.name = ANY($2::text[])""",
        campaign_ids,
        accounts,
        after_id,
    )
    return one(row, "run gauges")


_DASHBOARD = """
SELECT k.id, k.name, k.account, k.spec, s.status, s.status_reason, s.contacts, s.pending,
       s.dialing, s.done, s.exhausted, s.failed, s.suppressed, s.canceled, s.attempts,
       s.completed, s.busy, s.no_answer, s.call_failed, s.call_canceled, s.rejected, s.unknown,
       s.in_flight, s.answer_rate, s.machine, s.human_answer_rate, s.machine_answer_rate,
       x.channels AS channel_limit,
       x.configured_rate_per_s AS rate_limit, x.paced_rate_per_s AS rate_paced,
       CASE WHEN x.held_until > now() THEN x.held_until END AS held_until, x.held_asked_s,
       (SELECT count(*) FROM attempts a WHERE a.account = k.account AND a.live)
           AS channels_in_use,
       (SELECT count(*) / 60.0 FROM attempts a WHERE a.account = k.account
        AND a.requested_at > now() - interval '60 seconds') AS rate_now,
       now() AS now
FROM campaigns k
JOIN campaign_summary s ON s.campaign_id = k.id
LEFT JOIN accounts x ON x.name = k.account
ORDER BY k.status = 'active' DESC, k.id DESC
"""


async def dashboard_rows(conn: Connection) -> list[asyncpg.Record]:
    """Every campaign with its summary and its account's channels and rates."""
    return await conn.fetch(_DASHBOARD)


async def caller_ids_today(conn: Connection, callers: list[str], zone: str) -> list[asyncpg.Record]:
    """Per caller id, its attempts since midnight in `zone` (in any campaign): (caller_id,
    settled with a call outcome, answered by a person, blocked by a carrier)."""
    return await conn.fetch(
        """SELECT caller_id,
                  count(*) FILTER (WHERE outcome = ANY($3::text[])) AS settled,
                  count(*) FILTER (WHERE outcome = 'completed') AS answered,
                  count(*) FILTER (WHERE sip_code = ANY($4::int[])) AS blocked
           FROM attempts
           WHERE caller_id = ANY($1::text[])
             AND requested_at >= date_trunc('day', now() AT TIME ZONE $2) AT TIME ZONE $2
           GROUP BY caller_id""",
        callers,
        zone,
        list(CALL_OUTCOMES),
        list(BLOCKED_SIP_CODES),
    )


async def caller_id_health(conn: Connection) -> list[asyncpg.Record]:
    """The caller_id_health view (per account, caller id and period: day, week)."""
    return await conn.fetch("SELECT * FROM caller_id_health ORDER BY account, caller_id, period")


async def account_minutes(conn: Connection, account: str) -> list[asyncpg.Record]:
    """The account's last hour by minute (account_usage): requests, peak channels, limits."""
    return await conn.fetch(
        """SELECT m.minute, coalesce(u.requests, 0) AS requests,
                  coalesce(u.peak_channels, 0) AS peak_channels,
                  x.configured_rate_per_s * 60 AS request_limit, x.channels AS channel_limit
           FROM generate_series(date_trunc('minute', now()) - interval '59 minutes',
                                date_trunc('minute', now()), interval '1 minute') AS m(minute)
           LEFT JOIN accounts x ON x.name = $1
           LEFT JOIN account_usage u ON u.account = $1 AND u.minute = m.minute
           ORDER BY m.minute""",
        account,
    )


async def hour_slots(conn: Connection, zone: str) -> list[datetime]:
    """The last 24 hours of `zone`, as its local hour starts (oldest first)."""
    rows = await conn.fetch(
        """SELECT generate_series(date_trunc('hour', now() AT TIME ZONE $1) - interval '23 hours',
                                  date_trunc('hour', now() AT TIME ZONE $1), interval '1 hour')
                  AS hour""",
        zone,
    )
    return [r["hour"] for r in rows]


async def campaign_hours(conn: Connection, campaign_id: int) -> list[asyncpg.Record]:
    """The campaign's outcomes by hour of its timezone, last 24 hours (hourly_outcomes)."""
    return await conn.fetch(
        """SELECT hour, outcome, attempts FROM hourly_outcomes
           WHERE campaign_id = $1
             AND hour >= date_trunc('hour', now() AT TIME ZONE timezone) - interval '23 hours'
           ORDER BY hour, outcome""",
        campaign_id,
    )
