"""The webhook outbox: events written beside the state change they report, and their
deliveries to each subscribed endpoint (leased, marked, retried, replayed).

An event is written only if some registered endpoint subscribes to its type, in the caller's
transaction, with one delivery row per such endpoint: if the change commits, so does its
event; if the process dies before delivery, the row is still pending for any `dialer serve`.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from dialer.db.types import Connection

# An endpoint some process named in its dialer.toml within the last hour (REMOVED_AFTER).
_LIVE = "w.seen_at > now() - interval '1 hour'"


# Said by every statement that writes deliveries, per endpoint (a function call in its
# RETURNING, not a statement): at its commit, the endpoint's deliverer wakes (webhooks.deliver);
# PostgreSQL sends one notice per endpoint however many rows. A notice lost costs a delivery
# its deliverer's idle wait, never the delivery.
WEBHOOK_DUE = "dialer_webhook_due"
DUE_NOTICE = f"pg_notify('{WEBHOOK_DUE}', endpoint)"


def write_ctes(source: str) -> str:
    """Common table expressions (`written`, `delivered`) that write the events of `source`
    (rows of type, order_key, campaign_id, payload), each with a delivery row per endpoint
    subscribed to its type: the writers below, and statements that write events beside the
    change they report (events.store_and_settle)."""
    return f"""
written AS (
    INSERT INTO webhook_events (type, order_key, campaign_id, payload)
    SELECT type, order_key, campaign_id, payload FROM ({source}) s
    RETURNING id, type, order_key
), delivered AS (
    INSERT INTO webhook_deliveries (endpoint, event_id, order_key)
    SELECT w.name, e.id, e.order_key FROM written e
    JOIN webhook_endpoints w ON e.type = ANY (w.events) AND {_LIVE}
    RETURNING 1, {DUE_NOTICE}
)"""


def _write(source: str) -> str:
    return f"WITH {write_ctes(source)} SELECT count(*) FROM delivered"


def _subscribed(event_type: str) -> str:
    """A condition PostgreSQL checks once (an InitPlan): with nobody subscribed to the type,
    the event's row is never even built."""
    return (
        f"EXISTS (SELECT 1 FROM webhook_endpoints w WHERE '{event_type}' = ANY (w.events)"
        f" AND {_LIVE})"
    )


_ATTEMPT = """
    jsonb_build_object(
        'attempt_id', a.id, 'attempt_no', a.attempt_no, 'campaign', k.name,
        'contact_id', c.id, 'row_no', c.row_no, 'phone_e164', a.phone_e164,
        'caller_id', a.caller_id, 'outcome', a.outcome, 'answered_by', a.answered_by,
        'duration_s', a.duration_s, 'requested_at', a.requested_at, 'ended_at', a.ended_at,
        'provider_call_id', a.provider_call_id, 'error', a.error)
"""

_CONTACT = """
    jsonb_build_object(
        'contact_id', c.id, 'campaign', k.name, 'row_no', c.row_no,
        'phone_e164', c.phone_e164, 'name', c.name, 'state', c.state,
        'final_outcome', CASE WHEN c.state = 'suppressed' THEN 'do-not-call'
                              ELSE c.last_outcome END,
        'attempts', c.attempts, 'fields', c.fields)
"""


def settled_source(attempts: str, contacts: str, settled: str, final: str) -> str:
    """`attempt.settled` for the attempts (rows of `attempts`, with their contacts' rows in
    `contacts`) that `settled` selects, then `contact.final` for those `final` selects (SQL
    conditions on `a`): every `attempt.settled` is written before any `contact.final`."""
    return f"""
    SELECT 'attempt.settled'::text AS type, 'contact:' || c.id AS order_key,
           a.campaign_id, {_ATTEMPT} AS payload
    FROM {attempts} a JOIN {contacts} c ON c.id = a.contact_id
    JOIN campaigns k ON k.id = a.campaign_id
    WHERE {settled} AND {_subscribed("attempt.settled")}
    UNION ALL
    SELECT 'contact.final', 'contact:' || c.id, c.campaign_id, {_CONTACT}
    FROM {attempts} a JOIN {contacts} c ON c.id = a.contact_id
    JOIN campaigns k ON k.id = c.campaign_id
    WHERE {final} AND {_subscribed("contact.final")}
"""


SETTLED = _write(
    settled_source("attempts", "contacts", "a.id = ANY ($1::bigint[])", "a.id = ANY ($2::bigint[])")
)

SUPPRESSED = _write(
    f"""
    SELECT 'contact.final'::text AS type, 'contact:' || c.id AS order_key, c.campaign_id,
           {_CONTACT} AS payload
    FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
    WHERE c.id = ANY ($1::bigint[]) AND {_subscribed("contact.final")}
"""
)

FINISHED = _write(
    f"""
    SELECT 'campaign.finished'::text AS type, 'campaign:' || k.id AS order_key, k.id AS campaign_id,
           jsonb_build_object('campaign', k.name, 'status', k.status, 'reason', k.status_reason,
                              'contacts', (SELECT count(*) FROM contacts c
                                           WHERE c.campaign_id = k.id)) AS payload
    FROM campaigns k WHERE k.id = ANY ($1::bigint[]) AND {_subscribed("campaign.finished")}
"""
)


async def record_settled(conn: Connection, attempt_id: int, contact_final: bool) -> None:
    """`attempt.settled` for this attempt as it now stands, and `contact.final` for its
    contact if it has reached a final state. Call in the settling transaction."""
    await conn.execute(SETTLED, [attempt_id], [attempt_id] if contact_final else [])


async def record_contacts_final(conn: Connection, contact_ids: list[int]) -> None:
    """`contact.final` for contacts that ended without a call deciding it (put on the
    do-not-call list while waiting: state `suppressed`)."""
    if contact_ids:
        await conn.execute(SUPPRESSED, contact_ids)


async def record_finished(conn: Connection, campaign_ids: list[int]) -> None:
    """`campaign.finished` for these campaigns (completed or canceled just now)."""
    if campaign_ids:
        await conn.execute(FINISHED, campaign_ids)


REMOVED_AFTER_S = 3600  # an endpoint no process has named for this long was removed
SEEN_EVERY_S = 60.0  # how often a process says which endpoints it has (keep_endpoints)


async def register(
    conn: Connection,
    endpoints: dict[str, list[str]],
    legacy: dict[str, str] | None = None,
) -> None:
    """Subscribe these endpoints (name: event types) from now on, and say they are still
    configured (seen now). `legacy` (old name: name) renames endpoints registered under the
    name an earlier version gave them: their waiting deliveries follow."""
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO webhook_endpoints (name, events)
               SELECT n, string_to_array(e, ',') FROM unnest($1::text[], $2::text[]) AS u(n, e)
               ON CONFLICT (name) DO UPDATE SET events = excluded.events, seen_at = now(),
                   updated_at = CASE WHEN webhook_endpoints.events IS DISTINCT FROM excluded.events
                                     THEN now() ELSE webhook_endpoints.updated_at END""",
            list(endpoints),
            [",".join(events) for events in endpoints.values()],
        )
        moves = {old: new for old, new in (legacy or {}).items() if old != new}
        if moves:
            await conn.execute(
                """UPDATE webhook_deliveries d SET endpoint = m.new
                   FROM unnest($1::text[], $2::text[]) AS m(old, new)
                   WHERE d.endpoint = m.old
                     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries x
                                     WHERE x.endpoint = m.new AND x.event_id = d.event_id)""",
                list(moves),
                list(moves.values()),
            )
            await conn.execute(
                """WITH gone AS (DELETE FROM webhook_deliveries WHERE endpoint = ANY ($1::text[]))
                   DELETE FROM webhook_endpoints WHERE name = ANY ($1::text[])""",
                list(moves),
            )


async def keep_endpoints(conn: Connection, names: list[str]) -> int:
    """Say these endpoints are still configured; forget those no process has named for
    REMOVED_AFTER_S (their waiting deliveries and their events no other endpoint waits for go
    with them). How many endpoints were forgotten."""
    async with conn.transaction():
        if names:
            await conn.execute(
                "UPDATE webhook_endpoints SET seen_at = now() WHERE name = ANY ($1::text[])",
                names,
            )
        gone = await conn.fetch(
            """DELETE FROM webhook_endpoints
               WHERE seen_at < now() - make_interval(secs => $1) RETURNING name""",
            REMOVED_AFTER_S,
        )
        if gone:
            await conn.execute(
                """WITH dropped AS (
                       DELETE FROM webhook_deliveries WHERE endpoint = ANY ($1::text[])
                       RETURNING event_id)
                   DELETE FROM webhook_events e USING (SELECT DISTINCT event_id FROM dropped) d
                   WHERE e.id = d.event_id
                     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries x
                                     WHERE x.event_id = e.id
                                       AND x.endpoint <> ALL ($1::text[]))""",
                [g["name"] for g in gone],
            )
    return len(gone)


async def install_id(conn: Connection) -> str:
    """This database's identity (webhook ids are unique across installs)."""
    return await conn.fetchval("SELECT id FROM dialer_install")


async def lease_due(
    conn: Connection, endpoint: str, limit: int, lease_s: float
) -> list[asyncpg.Record]:
    """Up to `limit` due deliveries to `endpoint`, each the oldest pending one of its contact
    or campaign (so per-contact order holds), leased for `lease_s` to this process."""
    return await conn.fetch(
        """WITH due AS (
               SELECT d.endpoint, d.event_id FROM webhook_deliveries d
               WHERE d.endpoint = $1 AND d.state = 'pending' AND d.next_try_at <= now()
                 AND (d.leased_until IS NULL OR d.leased_until <= now())
                 AND NOT EXISTS (
                     SELECT 1 FROM webhook_deliveries p
                     WHERE p.endpoint = d.endpoint AND p.order_key = d.order_key
                       AND p.state = 'pending' AND p.event_id < d.event_id)
               ORDER BY d.event_id LIMIT $2
               FOR UPDATE OF d SKIP LOCKED)
           UPDATE webhook_deliveries d
           SET leased_until = now() + make_interval(secs => $3), tries = d.tries + 1
           FROM due, webhook_events e
           WHERE d.endpoint = due.endpoint AND d.event_id = due.event_id AND e.id = d.event_id
           RETURNING d.event_id, d.tries, d.since, e.type, e.payload::text AS payload,
                     e.created_at, now() AS now""",
        endpoint,
        limit,
        lease_s,
    )


async def mark_delivered(conn: Connection, endpoint: str, event_ids: list[int]) -> None:
    await conn.execute(
        """UPDATE webhook_deliveries SET state = 'delivered', delivered_at = now(),
                  leased_until = NULL, last_error = NULL
           WHERE endpoint = $1 AND event_id = ANY ($2::bigint[]) AND state = 'pending'""",
        endpoint,
        event_ids,
    )


async def mark_failed(
    conn: Connection,
    endpoint: str,
    event_ids: list[int],
    retry_at: list[datetime | None],
    errors: list[str],
) -> None:
    """Each failed delivery is tried again at its `retry_at`; None means it has exhausted its
    retries (kept as `exhausted`, see the webhook_failures view)."""
    await conn.execute(
        """UPDATE webhook_deliveries d
           SET state = CASE WHEN u.retry_at IS NULL THEN 'exhausted' ELSE 'pending' END,
               next_try_at = coalesce(u.retry_at, d.next_try_at), leased_until = NULL,
               last_error = u.error
           FROM unnest($2::bigint[], $3::timestamptz[], $4::text[]) AS u(event_id, retry_at, error)
           WHERE d.endpoint = $1 AND d.event_id = u.event_id AND d.state = 'pending'""",
        endpoint,
        event_ids,
        retry_at,
        errors,
    )


# The events since a time are found through webhook_events_created (tests/db/test_indexes.py).
REPLAY = """
UPDATE webhook_deliveries d
SET state = 'pending', tries = 0, next_try_at = now(), since = now(),
    leased_until = NULL, delivered_at = NULL
FROM webhook_events e
WHERE e.id = d.event_id AND e.created_at >= $1 AND d.state = ANY ($2::text[])
  AND d.endpoint = ANY ($3::text[])
"""


async def replay(
    conn: Connection, since: datetime, endpoints: list[str], delivered_too: bool
) -> int:
    """Send again the deliveries of events created since `since` that exhausted their retries
    (and, with `delivered_too`, those delivered): pending now, with a fresh 24 hours."""
    states = ["exhausted", "delivered"] if delivered_too else ["exhausted"]
    status = await conn.execute(REPLAY, since, states, endpoints)
    return int(status.split()[-1])


async def counts(conn: Connection) -> list[asyncpg.Record]:
    """Per endpoint: deliveries pending and exhausted (the metric and the dashboard line)."""
    return await conn.fetch(
        """SELECT endpoint, count(*) FILTER (WHERE state = 'pending') AS pending,
                  count(*) FILTER (WHERE state = 'exhausted') AS exhausted,
                  min(next_try_at) FILTER (WHERE state = 'pending') AS next_try_at
           FROM webhook_deliveries WHERE state <> 'delivered' GROUP BY endpoint
           ORDER BY endpoint"""
    )
