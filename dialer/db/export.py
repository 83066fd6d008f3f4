"""A campaign's results as one CSV row per contact, for a CRM: the original columns first.

Built as one `COPY (SELECT ...) TO STDOUT`: PostgreSQL streams the rows and this process only
passes bytes on, so memory stays flat for millions of contacts. The original columns come from
the campaign's loads (`loads.columns`, in first-seen order); the phone column carries the
E.164 number the dialer used, `name`/`timezone`/`priority` the loaded values, every other
column its value from `contacts.fields`. Result columns follow, prefixed `dialer_`.

The header row is written here, not by COPY: column names of any length or case reach the file
as they were loaded (PostgreSQL would cut an alias at 63 bytes). Unless `raw`, every loaded
value and name that a spreadsheet would run as a formula is written as text (spreadsheet.py).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any

from dialer.db.types import Connection
from dialer.errors import NotFoundError
from dialer.spreadsheet import safe_cell

RESULT_COLUMNS = {
    "dialer_phone_e164": "r.phone_e164",
    "dialer_state": "r.state",
    "dialer_final_outcome": "r.final_outcome",
    "dialer_last_outcome": "r.last_outcome",
    "dialer_attempts": "r.attempts",
    "dialer_last_attempt_at": "r.last_attempt_at",
    "dialer_talk_s": "r.talk_s",
    "dialer_next_attempt_at": "r.next_attempt_at",
}
OWN_COLUMNS = {"name": "r.name", "timezone": "r.timezone", "priority": "r.priority::text"}


def safe_cell_sql(expression: str) -> str:
    """spreadsheet.safe_cell's rule for a text expression in SQL (tests check they agree)."""
    expression = f"({expression})"
    return (
        f"CASE WHEN {expression} ~ '^[-=+@\\t\\r]' AND {expression} !~ '^[+-]?[0-9]+([.][0-9]+)?$'"
        f" THEN '''' || {expression} ELSE {expression} END"
    )


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def export_query(
    conn: Connection,
    campaign: str,
    *,
    raw: bool = False,
    changed: tuple[datetime, datetime] | None = None,
) -> tuple[list[str], str]:
    """The header and the COPY query for `campaign` (values are quoted here: COPY takes no
    parameters); with `changed`, only contacts last changed in [start, end)."""
    row = await conn.fetchrow(
        "SELECT id, spec ->> 'phone_column' AS phone FROM campaigns WHERE name = $1", campaign
    )
    if row is None:
        raise NotFoundError(f"no such campaign: {campaign} (see `dialer campaign list`)")
    loads = await conn.fetch(
        "SELECT columns FROM loads WHERE campaign_id = $1 ORDER BY id", row["id"]
    )
    columns: dict[str, str] = {}
    for load in loads:
        for name in load["columns"]:
            columns.setdefault(name.strip().lower(), name)
    selected = []
    for key, name in columns.items():
        if key == (row["phone"] or "phone").strip().lower():
            source = "r.phone_e164"
        elif key in OWN_COLUMNS:
            source = OWN_COLUMNS[key]
        else:
            source = f"r.fields ->> {literal(name)}"
        selected.append(source if raw else safe_cell_sql(source))
    selected += list(RESULT_COLUMNS.values())
    header = [name if raw else safe_cell(name) for name in columns.values()]
    header += list(RESULT_COLUMNS)
    aliased = ", ".join(f"{source} AS c{i}" for i, source in enumerate(selected))
    window = ""
    if changed is not None:
        start, end = (literal(when.isoformat()) for when in changed)
        window = f" AND r.updated_at >= {start}::timestamptz AND r.updated_at < {end}::timestamptz"
    query = (
        f"SELECT {aliased} FROM contact_results r"
        f" WHERE r.campaign_id = {int(row['id'])}{window} ORDER BY r.row_no, r.contact_id"
    )
    return header, query


async def export_csv(
    conn: Connection,
    campaign: str,
    write: Callable[[bytes], Coroutine[Any, Any, None]],
    *,
    raw: bool = False,
    changed: tuple[datetime, datetime] | None = None,
) -> None:
    """Stream the campaign's contact results as CSV (with a header) into `write`."""
    header, query = await export_query(conn, campaign, raw=raw, changed=changed)
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(header)  # names hold no \r
    await write(line.getvalue().encode())
    await conn.copy_from_query(query, output=write, format="csv")


_JSON_RESULT = """
SELECT json_build_object(
    'contact_id', r.contact_id, 'row_no', r.row_no, 'phone_e164', r.phone_e164,
    'name', r.name, 'timezone', r.timezone, 'priority', r.priority, 'state', r.state,
    'final_outcome', r.final_outcome, 'last_outcome', r.last_outcome, 'attempts', r.attempts,
    'last_attempt_at', r.last_attempt_at, 'talk_s', r.talk_s,
    'next_attempt_at', r.next_attempt_at, 'changed_at', r.updated_at, 'fields', r.fields
)::text AS line
FROM contact_results r
WHERE r.campaign_id = $1 AND ($2::timestamptz IS NULL OR r.updated_at >= $2)
  AND ($3::timestamptz IS NULL OR r.updated_at < $3)
ORDER BY r.row_no, r.contact_id
"""


async def export_json_lines(
    conn: Connection,
    campaign_id: int,
    write: Callable[[bytes], Awaitable[None]],
    changed: tuple[datetime | None, datetime | None] = (None, None),
) -> None:
    """Stream the campaign's contact results as JSON lines into `write`, through a cursor
    (memory stays flat)."""
    batch: list[str] = []
    async with conn.transaction(readonly=True):
        async for row in conn.cursor(_JSON_RESULT, campaign_id, *changed, prefetch=2000):
            batch.append(row["line"])
            if len(batch) == 2000:
                await write(("\n".join(batch) + "\n").encode())
                batch.clear()
    if batch:
        await write(("\n".join(batch) + "\n").encode())


async def sync_point(conn: Connection) -> datetime:
    """The next `since` cursor: every contact change stamped before it has committed.

    A change is stamped with its transaction's start (now()), so a transaction still open may
    yet commit changes stamped as early as its start: the cursor is the earliest start of the
    database's open transactions, or now if none. Read in a statement of its own, before the
    results are: what committed before this statement is visible to the later one.
    """
    return await conn.fetchval(
        """SELECT least(clock_timestamp(), min(xact_start)) FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid()
             AND xact_start IS NOT NULL"""
    )
