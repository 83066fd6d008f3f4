"""Printing query results as a rich table (terminal), CSV or JSON: a few rows at once
(print_rows), or a listing of any length (Listing)."""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import IO

import click
from rich.table import Table

from dialer.console import out
from dialer.db.types import Stream
from dialer.errors import naming_a_full_disk, the_temporary_folder
from dialer.spreadsheet import safe_cell

FORMATS = ("table", "csv", "json")
TABLE_ROWS_SHOWN = 1000  # a table is for people: past this, CSV or JSON


def format_option(command):
    """`--format table|csv|json` (table by default), as every command that prints data has."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table for people; csv or json for programs (stdout).",
    )(command)


def _text_or_json(default: str | None):
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["text", "json"]),
        default=default,
        help="text for people (the default); json for programs (stdout).",
    )


def text_format_option(command):
    """`--format text|json` (text by default), as a command that prints one report has."""
    return _text_or_json("text")(command)


def text_or_json_option(command):
    """The same, and `--json`, its older spelling, kept where a command had it: the command
    takes `as_json` and `fmt` (see wants_json)."""
    older = click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
    return _text_or_json(None)(older(command))


def print_report(fmt: str, report: Mapping, said: str) -> None:
    """One report: `said` (sentences) as text, else `report` as JSON on stdout."""
    if fmt == "json":
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        click.echo(said)


def wants_json(as_json: bool, fmt: str | None) -> bool:
    """Whether `--json` or `--format json` asked for JSON; both spellings at odds is an error."""
    if as_json and fmt == "text":
        raise click.UsageError("--json and --format text ask for different things: give one")
    return as_json or fmt == "json"


def print_record(record: Mapping, fmt: str, *, said: str) -> None:
    """One result: `said` (a sentence) as the table format, else the record as CSV or JSON."""
    if fmt == "table":
        click.echo(said)
    else:
        print_rows([record], fmt, title="")


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
    """A table cell: ISO 8601 times (to the second), objects and lists as JSON (never
    Python's repr)."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
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
        cells = [[_shown(v) for v in row.values()] for row in rows]
        natural = sum(
            max(len(name), *(len(row_cells[i]) for row_cells in cells)) + 3
            for i, name in enumerate(names)
        )
        if natural > out.width:  # too wide to read as a table: one block per row, uncut
            _print_expanded(names, cells, title)
            return
        table = Table(title=title)
        for name in names:
            table.add_column(name, overflow="fold")
        for row_cells in cells:
            table.add_row(*row_cells)
        out.print(table)


def _print_expanded(names: list[str], cells: list[list[str]], title: str) -> None:
    """Rows as blocks of `name  value` lines (as psql's expanded display): nothing cut or
    folded however wide the values, one value per line for grep."""
    width = max(len(name) for name in names)
    lines = [f"{title} ({len(cells):,} rows)"]
    for number, row_cells in enumerate(cells, 1):
        lines.append(f"-[ {number} ]" + "-" * max(0, width - 4))
        lines += [f"{name:<{width}}  {value}" for name, value in zip(names, row_cells, strict=True)]
    click.echo("\n".join(lines))


@dataclass
class Listing:
    """A listing of any length, read from the database at the database's pace and printed
    afterwards at the reader's: CSV and JSON wait in a temporary file (memory flat, however
    many rows), a table keeps the first TABLE_ROWS_SHOWN (it is for people). So a reader who
    pages slowly (`dialer dnc list | less`) never holds a transaction, and with it PostgreSQL's
    clean-up of every table, open while they read."""

    fmt: str
    title: str
    spool: IO[str] | None = None  # CSV or JSON, ready to print
    shown: list[Mapping] = field(default_factory=list)  # a table's rows
    more: bool = False  # a table: rows past those shown
    rows: int = 0

    @classmethod
    async def read(cls, stream: Stream, fmt: str, *, title: str) -> Listing:
        """Read `stream` to its end (a table: to TABLE_ROWS_SHOWN), printing nothing yet."""
        listing = cls(fmt, title)
        if fmt == "table":
            async for row in stream.rows:
                if len(listing.shown) == TABLE_ROWS_SHOWN:
                    listing.more = True
                    break
                listing.shown.append(dict(row.items()))
            listing.rows = len(listing.shown)
            return listing
        # kept open until print(): a file with no name, gone once closed
        spool = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")  # noqa: SIM115
        try:
            with naming_a_full_disk(the_temporary_folder()):
                await listing._spool_rows(stream, spool)
                spool.flush()
        except BaseException:
            with contextlib.suppress(OSError):  # on a full disk its buffer cannot be written
                spool.close()
            raise
        listing.spool = spool
        return listing

    async def _spool_rows(self, stream: Stream, spool: IO[str]) -> None:
        if self.fmt == "csv":
            writer = csv.writer(spool, lineterminator="\n")
            writer.writerow(stream.names)
            async for row in stream.rows:
                writer.writerow([_cell(v) for v in row.values()])
                self.rows += 1
            return
        spool.write("[")  # json: one array, an object a line
        async for row in stream.rows:
            item = json.dumps({k: _plain(v) for k, v in row.items()}, default=str)
            spool.write(("\n  " if self.rows == 0 else ",\n  ") + item)
            self.rows += 1
        spool.write("\n]\n" if self.rows else "]\n")

    def print(self) -> None:
        """Print what was read (as print_rows does), then let the temporary file go."""
        if self.spool is None:
            print_rows(self.shown, "table", title=self.title)
            if self.more:
                click.echo(
                    f"(the first {TABLE_ROWS_SHOWN:,} rows: --format csv or --format json"
                    " prints every row)"
                )
            return
        with self.spool:
            self.spool.seek(0)
            shutil.copyfileobj(self.spool, sys.stdout, 1 << 16)
        sys.stdout.flush()
