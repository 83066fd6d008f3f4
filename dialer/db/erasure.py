"""The SQL of erasure (dialer.forget): holding numbers so no call starts, wiping them from every
table where they were written, and the keyed hashes that keep them do-not-call."""

from __future__ import annotations

import json
import socket
from typing import Any

import asyncpg

from dialer.db import stalled, standing
from dialer.db.consent import privacy_key
from dialer.db.events import ERASED_PAYLOAD_SQL
from dialer.db.types import Connection
from dialer.erasure import ErasedNumbers, Scrubber, candidate_pattern
from dialer.policy.states import SENT

# "erase": held by erasures (hold and erase, exclusive: they take turns, scanning the same
# tables) and by loads (shared: loads run side by side). A load reads the erased numbers at its
# start and writes contacts until its commit: an erasure between the two would miss the
# number the load is writing, and the load would have read the list without it.
ERASURE_LOCK_KEY = 0x6572617365


async def take_erasure_lock(conn: Connection) -> None:
    """ERASURE_LOCK_KEY, exclusive, for the caller's transaction: the loads in progress are
    waited for, and one stopped part way through a COPY is ended meanwhile (db.stalled)."""
    await stalled.fetchrow_past_stalled_loads(
        conn, "SELECT pg_advisory_xact_lock($1)", ERASURE_LOCK_KEY
    )


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
    added_at = await standing.begin_change(conn)  # after the erasure lock: never wait on a load
    await conn.execute(
        """INSERT INTO dnc (phone_e164, reason, added_at)
           SELECT n, 'erasure requested', $2 FROM unnest($1::text[]) AS n
           ON CONFLICT (phone_e164) DO NOTHING""",
        numbers,
        added_at,
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
    # The numbers' attempts are locked FOR UPDATE (in id order) before they are updated: a
    # callback's check (0027) locks the attempt it names FOR KEY SHARE, which an update of
    # attempts' other columns alone would not wait for. So an event written for one of them
    # and not yet committed is waited for and then seen (and emptied) below; one written
    # after this waits for the erasure to commit, and its check then refuses its content (its
    # provider's retry is stored empty).
    changed: dict[str, int] = {}
    attempt_ids = [
        r["id"]
        for r in await conn.fetch(
            """WITH locked AS (SELECT id FROM attempts WHERE phone_e164 = ANY($1::text[])
                               ORDER BY id FOR UPDATE)
               UPDATE attempts a SET phone_e164 = NULL, erased_at = now()
               FROM locked WHERE a.id = locked.id RETURNING a.id""",
            numbers,
        )
    ]
    changed["attempts"] = len(attempt_ids)
    # An erased attempt's events keep no content (migration 0027 refuses any other payload)
    changed["call_events"] = _count(
        await conn.execute(
            f"UPDATE call_events SET payload = {ERASED_PAYLOAD_SQL}"
            " WHERE attempt_id = ANY($1::bigint[])",
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
