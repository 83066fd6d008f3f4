"""Loading contacts: the staging tables, COPY into contacts, repeats, rejects, the loads log.

Everything here runs inside the loader's one transaction (loading.loader), which holds the
campaign row's lock: no other load adds numbers to the campaign until it commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import IO, BinaryIO, cast

import asyncpg

from dialer.db.bulk import until_lost
from dialer.db.types import Connection

_STAGE_TABLES = """
CREATE TEMP TABLE load_stage (
    campaign_id bigint, row_no integer, phone_e164 text, name text, timezone text,
    priority integer, fields jsonb, jurisdiction text
) ON COMMIT DROP;
CREATE TEMP TABLE load_reject_stage (row_no integer, raw jsonb, reason text) ON COMMIT DROP;
"""

CONTACT_COLUMNS = [
    "campaign_id",
    "row_no",
    "phone_e164",
    "name",
    "timezone",
    "priority",
    "fields",
    "jurisdiction",
]


async def end_if_paused(conn: Connection, seconds: float) -> None:
    """In a load's transaction: should it send nothing for `seconds` (its process paused:
    Ctrl-Z, SIGSTOP, a suspended machine), PostgreSQL ends its session and rolls it back,
    freeing what it holds: its campaign's row, and the erasures it holds off."""
    await conn.execute(
        "SELECT set_config('idle_in_transaction_session_timeout', $1, true)",
        str(int(seconds * 1000)),
    )


async def create_stage_tables(conn: Connection) -> None:
    """`load_stage` (rows that may repeat a number) and `load_reject_stage`, dropped at commit."""
    await conn.execute(_STAGE_TABLES)


async def copy_contacts(
    conn: Connection, data: bytes, *, staged: bool, handed_on: asyncio.Event | None = None
) -> None:
    """COPY text lines (tab-separated, `\\N` for NULL) of CONTACT_COLUMNS into `contacts`, or
    into `load_stage` if `staged`. `handed_on` is set once the last of `data` is handed to
    the connection (PostgreSQL may still be reading it)."""
    table = "load_stage" if staged else "contacts"
    pieces = _pieces(data, handed_on)
    copy = conn.copy_to_table(table, source=pieces, columns=CONTACT_COLUMNS, format="text")
    await until_lost(conn, copy, f"the COPY into {table}")


COPY_PIECE = 256 << 10  # bytes of one CopyData message: PostgreSQL reads each one whole


async def _pieces(data: bytes, handed_on: asyncio.Event | None) -> AsyncIterator[memoryview]:
    """`data` in pieces, handed to the connection as its flow control allows. (A file-like
    source is read through a thread, a hop per 512 KB; one whole buffer would be one message
    that PostgreSQL waits for to its end before it reads a row.)"""
    view = memoryview(data)
    for start in range(0, len(view), COPY_PIECE):
        yield view[start : start + COPY_PIECE]
    if handed_on is not None:
        handed_on.set()


async def numbers_in_campaign(conn: Connection, campaign_id: int) -> AsyncIterator[asyncpg.Record]:
    """(id, phone_e164) of every contact of the campaign, streamed."""
    async with conn.transaction():
        cursor = conn.cursor(
            # An erased contact has no number any more (dialer.forget).
            "SELECT id, phone_e164 FROM contacts WHERE campaign_id = $1 AND phone_e164 IS NOT NULL",
            campaign_id,
            prefetch=10_000,
        )
        async for row in cursor:
            yield row


# Rows whose number may have been seen earlier in this load, staged since the last call: the
# first row of each number wins, and only if the number is not in the campaign yet (rows of
# earlier segments are, by then). They take ids in file order, as the rows COPied directly do.
_INSERT_STAGED = """
INSERT INTO contacts (campaign_id, row_no, phone_e164, name, timezone, priority, fields,
                      jurisdiction)
SELECT $1::bigint, first.row_no, first.phone_e164, first.name, first.timezone, first.priority,
       first.fields, first.jurisdiction
FROM (
    SELECT DISTINCT ON (s.phone_e164) s.*
    FROM load_stage s
    WHERE (SELECT true FROM contacts c
           WHERE c.phone_e164 = s.phone_e164 AND c.campaign_id = $1 LIMIT 1) IS NULL
    ORDER BY s.phone_e164, s.row_no
) first
ORDER BY first.row_no
"""
# (Each staged row's number is looked up in the unique index, whatever the planner knows: a
# NOT EXISTS was planned, with contacts' statistics from before the load, as an anti-join
# reading every contact of the table after every segment. The stage is emptied with TRUNCATE:
# a DELETE leaves its rows dead in the table, read again by every later segment's INSERT.)


async def insert_staged(conn: Connection, campaign_id: int) -> int:
    """Insert the staged rows whose number the campaign does not have, and empty the stage;
    how many were inserted. Called after each segment's rows, so a repeat is settled while
    the workers read on, not in one query at the end."""
    inserted = int((await conn.execute(_INSERT_STAGED, campaign_id)).split()[-1])
    await conn.execute("TRUNCATE load_stage")
    return inserted


# Numbers on the do-not-call list are loaded, but as `suppressed`: never dialed, still reported.
_SUPPRESS_DNC = """
UPDATE contacts c SET state = 'suppressed'
FROM dnc d
WHERE d.phone_e164 = c.phone_e164 AND c.campaign_id = $1 AND c.id > $2 AND c.state = 'pending'
"""


async def suppress_listed(conn: Connection, campaign_id: int, after_id: int) -> int:
    """Suppress the contacts this load added (ids past `after_id`) whose number is listed."""
    return int((await conn.execute(_SUPPRESS_DNC, campaign_id, after_id)).split()[-1])


async def suppress_numbers_loaded(
    conn: Connection, campaign_id: int, after_id: int, numbers: list[str]
) -> int:
    """Suppress the contacts this load added with these numbers (erased ones: dialer.forget)."""
    status = await conn.execute(
        """UPDATE contacts SET state = 'suppressed'
           WHERE campaign_id = $1 AND id > $2 AND phone_e164 = ANY($3::text[])
             AND state = 'pending'""",
        campaign_id,
        after_id,
        numbers,
    )
    return int(status.split()[-1])


_INSERT_REJECTS = """
INSERT INTO load_rejects (campaign_id, row_no, raw, reason, source_sha256)
SELECT $1, row_no, raw, reason, $2 FROM load_reject_stage
ON CONFLICT (campaign_id, source_sha256, row_no) DO NOTHING
"""


async def store_rejects(
    conn: Connection, campaign_id: int, sha256: str, csv_rows: IO[bytes]
) -> int:
    """COPY the rejected rows (CSV: row_no, raw JSON, reason) and keep those not kept before
    for this file; how many were new."""
    copy = conn.copy_to_table("load_reject_stage", source=cast(BinaryIO, csv_rows), format="csv")
    await until_lost(conn, copy, "the COPY of rejected rows")
    return int((await conn.execute(_INSERT_REJECTS, campaign_id, sha256)).split()[-1])


async def first_loaded_at(conn: Connection, campaign_id: int, sha256: str) -> datetime | None:
    """When this file (by its SHA-256) was first loaded into the campaign, if it was."""
    return await conn.fetchval(
        "SELECT min(loaded_at) FROM loads WHERE campaign_id = $1 AND sha256 = $2",
        campaign_id,
        sha256,
    )


async def record_load(
    conn: Connection,
    campaign_id: int,
    source: str,
    sha256: str,
    columns: list[str],
    counts: tuple[int, int, int, int, int],
) -> None:
    """Log one load: (rows read, loaded, duplicates, suppressed, rejected)."""
    await conn.execute(
        """INSERT INTO loads (campaign_id, source, sha256, columns, rows_read, loaded,
                              duplicates, suppressed, rejected)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        campaign_id,
        source,
        sha256,
        columns,
        *counts,
    )


# Columns whose statistics no plan needs right after a load: the JSON fields and the name cost
# half of ANALYZE's time (a partial ANALYZE leaves autovacuum's own count of changed rows as it
# is, so it analyzes the whole table later all the same)
_NOT_ANALYZED_AT_LOAD = ["name", "fields"]


async def refresh_statistics(conn: Connection) -> None:
    """Fresh planner statistics for contacts, after a big load (autovacuum comes later)."""
    columns = await conn.fetchval(
        """SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
           WHERE attrelid = 'contacts'::regclass AND attnum > 0 AND NOT attisdropped
             AND attname <> ALL($1::text[])""",
        _NOT_ANALYZED_AT_LOAD,
    )
    await conn.execute(f"ANALYZE contacts ({columns})")
