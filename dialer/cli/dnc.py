"""`dialer dnc ...`: the do-not-call list."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click

from dialer import dnc as dnc_list
from dialer.cli.context import AppContext, pass_app, run
from dialer.db.connect import session
from dialer.errors import InputError

_REGION_HELP = "Region for numbers written without +CC (default: default_region in dialer.toml)."


def _region(app: AppContext, region: str | None) -> str | None:
    return (region or app.config.default_region or "").upper() or None


def _normalize_or_fail(numbers: list[str], region: str | None) -> list[str]:
    good, bad = dnc_list.normalize_all(numbers, region)
    if bad:
        raise InputError("not added, fix these first: " + "; ".join(m for _, m in bad))
    return good


@click.group()
def dnc() -> None:
    """Manage the do-not-call list (numbers on it are never dialed)."""


@dnc.command("add")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--reason", help="Why the number may not be called (kept with it).")
@click.option("--region", help=_REGION_HELP)
@pass_app
def add(app: AppContext, numbers: tuple[str, ...], reason: str | None, region: str | None) -> None:
    """Add NUMBERS; contacts still waiting to be dialed with them become `suppressed`."""
    normalized = _normalize_or_fail(list(numbers), _region(app, region))

    async def go() -> dnc_list.DncChange:
        async with session(app.database_url) as conn:
            return await dnc_list.add_numbers(conn, normalized, reason)

    change = run(go())
    click.echo(
        f"added {change.added}, already listed {change.already_listed},"
        f" contacts suppressed {change.contacts_suppressed}"
    )


@dnc.command("import")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(path_type=Path))
@click.option("--reason", help="Reason for rows without a `reason` column.")
@click.option("--region", help=_REGION_HELP)
@pass_app
def import_(app: AppContext, csv_file: Path, reason: str | None, region: str | None) -> None:
    """Add every number in FILE.csv (`phone` column, else the first; optional `reason` column).

    All or nothing: if any row is not a phone number, nothing is added and the rows are listed.
    """
    rows = list(dnc_list.read_dnc_csv(csv_file))
    good, bad = [], []
    for line, raw, row_reason in rows:
        normalized, problems = dnc_list.normalize_all([raw], _region(app, region))
        if problems:
            bad.append(f"line {line}: {problems[0][1]}")
        else:
            good.append((normalized[0], row_reason or reason))
    if bad:
        shown = "; ".join(bad[:20]) + (f"; and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise InputError(f"{csv_file}: nothing imported, fix these rows first: {shown}")

    async def go() -> dnc_list.DncChange:
        total = dnc_list.DncChange()
        async with session(app.database_url) as conn, conn.transaction():
            by_reason: dict[str | None, list[str]] = {}
            for number, why in good:
                by_reason.setdefault(why, []).append(number)
            for why, numbers in by_reason.items():
                change = await dnc_list.add_numbers(conn, numbers, why)
                total.added += change.added
                total.already_listed += change.already_listed
                total.contacts_suppressed += change.contacts_suppressed
        return total

    change = run(go())
    click.echo(
        f"read {len(rows)} rows: added {change.added}, already listed {change.already_listed},"
        f" contacts suppressed {change.contacts_suppressed}"
    )


@dnc.command("remove")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--region", help=_REGION_HELP)
@pass_app
def remove(app: AppContext, numbers: tuple[str, ...], region: str | None) -> None:
    """Take NUMBERS off the list. Contacts already suppressed stay suppressed."""
    normalized = _normalize_or_fail(list(numbers), _region(app, region))

    async def go() -> int:
        async with session(app.database_url) as conn:
            return await dnc_list.remove_numbers(conn, normalized)

    click.echo(f"removed {run(go())}")


@dnc.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@pass_app
def list_(app: AppContext, fmt: str) -> None:
    """Print the do-not-call list."""

    async def go():
        async with session(app.database_url) as conn:
            return await dnc_list.list_numbers(conn)

    rows = [(r["phone_e164"], r["reason"] or "", r["added_at"].isoformat()) for r in run(go())]
    header = ("phone_e164", "reason", "added_at")
    if fmt == "json":
        click.echo(json.dumps([dict(zip(header, row, strict=True)) for row in rows], indent=2))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
    else:
        from rich.table import Table

        from dialer.console import out

        table = Table(*header, title=f"do-not-call list ({len(rows)})")
        for row in rows:
            table.add_row(*row)
        out.print(table)
