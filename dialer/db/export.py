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
from collections.abc import Awaitable, Callable

import asyncpg

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
    conn: asyncpg.Connection, campaign: str, *, raw: bool = False
) -> tuple[list[str], str]:
    """The header and the COPY query for `campaign` (values are quoted here: COPY takes no
    parameters)."""
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
    query = (
        f"SELECT {aliased} FROM contact_results r"
        f" WHERE r.campaign_id = {int(row['id'])} ORDER BY r.row_no, r.contact_id"
    )
    return header, query


async def export_csv(
    conn: asyncpg.Connection,
    campaign: str,
    write: Callable[[bytes], Awaitable[None]],
    *,
    raw: bool = False,
) -> None:
    """Stream the campaign's contact results as CSV (with a header) into `write`."""
    header, query = await export_query(conn, campaign, raw=raw)
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(header)  # names hold no \r
    await write(line.getvalue().encode())
    await conn.copy_from_query(query, output=write, format="csv")
