"""Printing query results as a rich table (terminal), CSV or JSON."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from decimal import Decimal

import asyncpg
import click
from rich.table import Table

from dialer.console import out
from dialer.spreadsheet import safe_cell


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _cell(value: object) -> object:
    """A CSV cell: lists and objects (jsonb, arrays) as JSON, never Python's repr; text a
    spreadsheet would run as a formula neutralised."""
    value = _plain(value)
    if isinstance(value, dict | list | tuple):
        return safe_cell(json.dumps(value, default=str, ensure_ascii=False))
    return safe_cell(value) if isinstance(value, str) else value


def print_rows(rows: Sequence[asyncpg.Record], fmt: str, *, title: str) -> None:
    names = list(rows[0].keys()) if rows else []
    if fmt == "json":
        click.echo(json.dumps([{k: _plain(v) for k, v in r.items()} for r in rows], indent=2))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows([[_cell(v) for v in r.values()] for r in rows])
    elif len(rows) == 1:  # one record reads better as a column of fields
        table = Table("field", "value", title=title)
        for name, value in rows[0].items():
            table.add_row(name, "" if value is None else str(_plain(value)))
        out.print(table)
    else:
        table = Table(*names, title=title)
        for row in rows:
            table.add_row(*("" if v is None else str(_plain(v)) for v in row.values()))
        out.print(table)
