"""Printing query results as a rich table (terminal), CSV or JSON."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from decimal import Decimal

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


def _shown(value: object) -> str:
    """A table cell: ISO 8601 times, objects and lists as JSON (never Python's repr)."""
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def print_rows(rows: Sequence[Mapping], fmt: str, *, title: str) -> None:
    """Rows as a table (nothing cut: long cells fold onto more lines), CSV (one header line,
    `\n` line endings, as `dialer export`) or JSON. An empty table says so."""
    names = list(rows[0].keys()) if rows else []
    if fmt == "json":
        click.echo(json.dumps([{k: _plain(v) for k, v in r.items()} for r in rows], indent=2))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([[_cell(v) for v in r.values()] for r in rows])
    elif not rows:
        click.echo(f"{title}: none")
    elif len(rows) == 1:  # one record reads better as a column of fields
        table = Table("field", "value", title=title)
        for column in table.columns:
            column.overflow = "fold"
        for name, value in rows[0].items():
            table.add_row(name, _shown(value))
        out.print(table)
    else:
        table = Table(title=title)
        for name in names:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*(_shown(v) for v in row.values()))
        out.print(table)
