"""The SQL of erasure (dialer.forget): holding numbers so no call starts, wiping them from every
table where they were written, and the keyed hashes that keep them do-not-call."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import asyncpg

from dialer.db.consent import privacy_key
from dialer.db.types import Connection
from dialer.erasure import ErasedNumbers, Scrubber, candidate_pattern
from dialer.policy.states import SENT

# "erase": held by erasures (hold and erase, exclusive: they take turns, scanning the same
# tables) and by loads (shared: loads run side by side). A load reads the erased numbers at its
# start and writes contacts until its commit: an erasure between the two would miss the
# number the load is writing, and the load would have read the list without it.
ERASURE_LOCK_KEY = 0x6572617365


# A load's segment is one COPY of a few MB that takes well under a second; one that has been
# waiting for its client this long is stopped part way (its process paused or its network cut),
# and PostgreSQL does not time out a statement waiting for its client.
STALLED_LOAD_S = 60.0
_LOCK_WAIT_STEP_MS = 5000  # how long an erasure waits for the lock before it looks again

log = logging.getLogger("dialer.db")


async def take_erasure_lock(conn: Connection) -> None:
    """ERASURE_LOCK_KEY, exclusive, for the caller's transaction: the loads in progress are
    waited for. A load stopped part way through one of its COPYs would hold it until someone
    resumes or kills it: while it waits, the erasure ends such loads (end_stalled_loads; the
    load rolls back whole). A session with a lock_timeout of its own (the API's) still gives
    up after it, with LockNotAvailableError, as before."""
    if not conn.is_in_transaction():  # the lock would end with the savepoint's transaction
        raise RuntimeError("take_erasure_lock is for a transaction the caller holds open")
    own_ms = await conn.fetchval(
        "SELECT extract(epoch FROM current_setting('lock_timeout')::interval) * 1000"
    )
    budget_s = float(own_ms) / 1000 if own_ms else None
    step_ms = min(int(own_ms), _LOCK_WAIT_STEP_MS) if own_ms else _LOCK_WAIT_STEP_MS
    waited_s = 0.0
    while True:
        try:
            async with conn.transaction():  # a savepoint: a wait that times out is undone alone
                await conn.execute("SELECT set_config('lock_timeout', $1, true)", str(step_ms))
                await conn.execute("SELECT pg_advisory_xact_lock($1)", ERASURE_LOCK_KEY)
                await conn.execute(
                    "SELECT set_config('lock_timeout', $1, true)", str(int(own_ms or 0))
                )
            return
        except asyncpg.LockNotAvailableError:
            waited_s += step_ms / 1000
            await end_stalled_loads(conn, STALLED_LOAD_S)
            if budget_s is not None and waited_s >= budget_s:
                raise


async def end_stalled_loads(conn: Connection, stalled_s: float) -> list[int]:
    """End the sessions of loads (this role's, in this database) that have sat in one
    segment's COPY waiting for their client for over `stalled_s`: each is logged, and rolls
    back whole. Their process, if it wakes, ends with the lost connection."""
    rows = await conn.fetch(
        """SELECT pid, client_addr::text AS client,
                  round(extract(epoch FROM clock_timestamp() - query_start)) AS seconds,
                  pg_terminate_backend(pid) AS ended
           FROM pg_stat_activity
           WHERE datname = current_database() AND usename = current_user
             AND pid <> pg_backend_pid() AND state = 'active' AND wait_event = 'ClientRead'
             AND (query LIKE 'COPY "contacts"%' OR query LIKE 'COPY "load_stage"%')
             AND query_start < clock_timestamp() - make_interval(secs => $1)""",
        stalled_s,
    )
    for row in rows:
        log.warning(
            "ended a contacts load stalled for %s s in one COPY, waiting for its client"
            " (PostgreSQL pid %s, client %s): it rolled back whole, so an erasure can go on",
            row["seconds"],
            row["pid"],
            row["client"] or "local socket",
        )
    return [row["pid"] for row in rows if row["ended"]]


async def keep_erasures_out(conn: Connection) -> None:
    """In a load's transaction, before it reads the erased numbers: an erasure in progress
    is waited for, and none starts until the load commits."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", ERASURE_LOCK_KEY)


# Where a number may have been written as text besides the columns erasure clears outright:
# (table, key columns, JSON columns, text columns). A row is read back only when the database's
# looser pattern finds one of the numbers in it; Python then scrubs it exactly.
SCRUBBED: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    ("call_events", ("id",), ("payload",), ("problem",)),
    ("load_rejects", ("campaign_id", "source_sha256", "row_no"), ("raw",), ("reason",)),
    ("webhook_events", ("id",), ("payload",), ()),
    ("webhook_deliveries", ("endpoint", "event_id"), (), ("last_error",)),
    ("api_requests", ("key",), ("answer",), ("request",)),
    ("attempts", ("id",), (), ("error",)),
    ("contacts", ("id",), ("fields",), ("name", "last_outcome")),
    ("dnc", ("phone_e164",), (), ("reason",)),
    ("campaigns", ("id",), (), ("status_reason",)),
)


async def erased_numbers(conn: Connection) -> ErasedNumbers:
    """The keyed hashes of every number ever erased (they stay do-not-call)."""
    rows = await conn.fetch("SELECT phone_key FROM erased_numbers")
    return ErasedNumbers(await privacy_key(conn), frozenset(r["phone_key"] for r in rows))


async def record_file(conn: Connection, kind: str, path: str, campaign: int | str) -> None:
    """Remember a file dialer wrote that holds numbers (a rejects file, an export): erasure
    lists it. `campaign` is the campaign's id or name."""
    await conn.execute(
        """INSERT INTO written_files (kind, path, host, campaign_id)
           SELECT $1, $2, $3, id FROM campaigns WHERE id::text = $4 OR name = $4 LIMIT 1""",
        kind,
        path,
        socket.gethostname(),
        str(campaign),
    )


async def is_erased(conn: Connection, key: str) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM erased_numbers WHERE phone_key = $1)", key
    )


async def hold(
    conn: Connection, numbers: list[str], keys: list[str], requested_by: str
) -> list[int]:
    """In the caller's transaction: the keys become do-not-call for good, the plain numbers
    until they are erased, waiting contacts are suppressed; the reservations not yet sent
    (their ids: the caller releases them). No new call to the numbers starts after this.
    Loads in progress are waited for (ERASURE_LOCK_KEY), so their contacts are suppressed."""
    await take_erasure_lock(conn)
    await conn.execute(
        """INSERT INTO erased_numbers (phone_key, requested_by)
           SELECT k, $2 FROM unnest($1::text[]) AS k ON CONFLICT (phone_key) DO NOTHING""",
        keys,
        requested_by,
    )
    await conn.execute(
        """INSERT INTO dnc (phone_e164, reason)
           SELECT n, 'erasure requested' FROM unnest($1::text[]) AS n
           ON CONFLICT (phone_e164) DO NOTHING""",
        numbers,
    )
    await conn.execute(
        """UPDATE contacts SET state = 'suppressed', updated_at = now()
           WHERE phone_e164 = ANY($1::text[]) AND state = 'pending'""",
        numbers,
    )
    rows = await conn.fetch(
        "SELECT id FROM attempts WHERE phone_e164 = ANY($1::text[]) AND state = 'reserved'",
        numbers,
    )
    return [r["id"] for r in rows]


async def in_flight(conn: Connection, numbers: list[str]) -> dict[str, int]:
    """Per number, its calls sent and not yet ended (erasure waits for them)."""
    rows = await conn.fetch(
        """SELECT phone_e164, count(*) AS calls FROM attempts
           WHERE phone_e164 = ANY($1::text[]) AND state = ANY($2::text[])
           GROUP BY phone_e164""",
        numbers,
        list(SENT),
    )
    return {r["phone_e164"]: r["calls"] for r in rows}


async def files_naming(conn: Connection, numbers: list[str]) -> list[asyncpg.Record]:
    """Files that may hold the numbers: the contact files loaded into their campaigns, the
    rejects files and exports dialer wrote for them, the registry copies that listed them."""
    return await conn.fetch(
        """WITH touched AS (SELECT DISTINCT campaign_id FROM contacts
                            WHERE phone_e164 = ANY($1::text[]))
           SELECT 'contacts file' AS kind, l.source AS path, NULL::text AS host,
                  max(l.loaded_at) AS written_at
           FROM loads l JOIN touched t USING (campaign_id) GROUP BY l.source
           UNION ALL
           SELECT f.kind, f.path, f.host, max(f.written_at)
           FROM written_files f JOIN touched t USING (campaign_id) GROUP BY f.kind, f.path, f.host
           UNION ALL
           SELECT 'registry copy', c.source, NULL, max(c.imported_at)
           FROM dnc d JOIN dnc_registry_copies c ON c.registry = d.registry
           WHERE d.phone_e164 = ANY($1::text[]) GROUP BY c.source
           ORDER BY 1, 2""",
        numbers,
    )


async def erase(conn: Connection, numbers: list[str]) -> dict[str, int]:
    """In the caller's transaction (no call to the numbers in flight): clear the numbers from
    contacts, attempts, callbacks of their attempts and the consent ledger's plain column,
    scrub every other place they were written, drop their plain do-not-call rows (the keys
    stay). Rows stay, so every count stays the same. Rows changed, per table."""
    await take_erasure_lock(conn)
    changed: dict[str, int] = {}
    attempt_ids = [
        r["id"]
        for r in await conn.fetch(
            """UPDATE attempts SET phone_e164 = NULL, erased_at = now()
               WHERE phone_e164 = ANY($1::text[]) RETURNING id""",
            numbers,
        )
    ]
    changed["attempts"] = len(attempt_ids)
    # The trigger call_events_of_erased empties the payloads of erased attempts.
    changed["call_events"] = _count(
        await conn.execute(
            "UPDATE call_events SET payload = payload WHERE attempt_id = ANY($1::bigint[])",
            attempt_ids,
        )
    )
    changed["contacts"] = _count(
        await conn.execute(
            """UPDATE contacts SET phone_e164 = NULL, name = NULL, fields = '{}'::jsonb,
                      erased_at = now(), updated_at = now(),
                      state = CASE WHEN state IN ('pending', 'dialing') THEN 'suppressed'
                                   ELSE state END
               WHERE phone_e164 = ANY($1::text[])""",
            numbers,
        )
    )
    changed["consent_events"] = _count(
        await conn.execute(
            "UPDATE consent_events SET phone_e164 = NULL WHERE phone_e164 = ANY($1::text[])",
            numbers,
        )
    )
    changed["dnc"] = _count(
        await conn.execute("DELETE FROM dnc WHERE phone_e164 = ANY($1::text[])", numbers)
    )
    scrubber = Scrubber(numbers)
    pattern = candidate_pattern(numbers)
    for table, keys, json_columns, text_columns in SCRUBBED:
        found = await _scrub(conn, scrubber, pattern, table, keys, json_columns, text_columns)
        changed[table] = changed.get(table, 0) + found
    return changed


async def _scrub(
    conn: Connection,
    scrubber: Scrubber,
    pattern: str,
    table: str,
    keys: tuple[str, ...],
    json_columns: tuple[str, ...],
    text_columns: tuple[str, ...],
) -> int:
    columns = (*json_columns, *text_columns)
    where = " OR ".join(f"{c}::text ~ $1" for c in columns)
    rows = await conn.fetch(
        f"SELECT {', '.join((*keys, *columns))} FROM {table} WHERE {where}", pattern
    )
    changed = 0
    for row in rows:
        values: list[Any] = []
        dirty = False
        for column in json_columns:
            value = row[column]
            parsed = json.loads(value) if isinstance(value, str) else value
            scrubbed = scrubber.json(parsed)
            dirty = dirty or scrubbed != parsed
            values.append(json.dumps(scrubbed, ensure_ascii=False))
        for column in text_columns:
            values.append(scrubber.text(row[column]))
            dirty = dirty or values[-1] != row[column]
        if not dirty:
            continue  # the looser pattern's false alarm
        sets = ", ".join(
            f"{c} = ${i + 1}{'::jsonb' if c in json_columns else ''}" for i, c in enumerate(columns)
        )
        match = " AND ".join(f"{k} = ${len(columns) + i + 1}" for i, k in enumerate(keys))
        await conn.execute(
            f"UPDATE {table} SET {sets} WHERE {match}", *values, *(row[k] for k in keys)
        )
        changed += 1
    return changed


def _count(status: str) -> int:
    return int(status.split()[-1])
