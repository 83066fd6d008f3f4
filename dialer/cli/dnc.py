"""`dialer dnc ...`: the do-not-call list."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import click

from dialer import dnc as dnc_list
from dialer.cli.context import AppContext, pass_app, region_option, run
from dialer.cli.output import Listing, format_option, print_record, text_format_option
from dialer.db import registries as stored_registries
from dialer.db.connect import session
from dialer.db.types import Connection
from dialer.errors import InputError, naming_a_full_disk, the_temporary_folder
from dialer.policy.packs import REGISTRY_NAME
from dialer.registries import registry_notes, registry_report


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
@region_option
@format_option
@pass_app
def add(
    app: AppContext, numbers: tuple[str, ...], reason: str | None, region: str | None, fmt: str
) -> None:
    """Add NUMBERS; contacts still waiting to be dialed with them become `suppressed`."""
    normalized = _normalize_or_fail(list(numbers), app.region(region))

    async def go() -> dnc_list.DncChange:
        async with session(app.database_url) as conn:
            return await dnc_list.add_numbers(conn, normalized, reason)

    change = run(go())
    print_record(
        {
            "added": change.added,
            "already_listed": change.already_listed,
            "contacts_suppressed": change.contacts_suppressed,
        },
        fmt,
        said=f"added {change.added}, already listed {change.already_listed},"
        f" contacts suppressed {change.contacts_suppressed}",
    )


@dnc.command("import")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(path_type=Path))
@click.option("--reason", help="Reason for rows without a `reason` column.")
@region_option
@click.option(
    "--registry",
    help="The registry this file is a copy of (e.g. us-dnc, in-ncpr): each number keeps it, and"
    " packs that demand a fresh copy (us-tcpa: 31 days) judge its age by --as-of.",
)
@click.option(
    "--as-of",
    "as_of",
    metavar="YYYY-MM-DD",
    help="The day the registry's administrator gave out this copy (with --registry).",
)
@text_format_option
@pass_app
def import_(
    app: AppContext,
    csv_file: Path,
    reason: str | None,
    region: str | None,
    registry: str | None,
    as_of: str | None,
    fmt: str,
) -> None:
    """Add every number in FILE.csv (`phone` column, else the first; optional `reason` and
    `registered_on` columns; or the FTC registry's flat file of `area code,number` lines).

    All or nothing: if any row is not a phone number (or has a bad `registered_on`), nothing
    is added and the rows are listed. With --registry and --as-of the copy is recorded with
    its date: `dialer run` refuses a campaign whose packs demand a fresher copy, and a number
    registered too recently to bind yet (India's NCPR: 7 days) is reported (and still never
    dialed). Memory stays flat however long the file: checked numbers wait in temporary
    files (about 25 bytes a number on disk) until they are written.
    """
    copy = _copy_of(registry, as_of)
    with tempfile.TemporaryDirectory(prefix="dialer-dnc-") as folder:
        # Every row is read and checked first, outside any transaction; the good ones wait in
        # files (_stage), then are written a file at a time in one transaction (_write_staged):
        # all or nothing, with memory flat however long the list.
        staged = _stage(csv_file, Path(folder), app.region(region), reason, copy)

        async def go() -> tuple[dnc_list.DncChange, list[str]]:
            async with session(app.database_url) as conn, conn.transaction():
                listing = None
                if copy is not None:
                    today = await stored_registries.today(conn)
                    if copy[1] > today:
                        raise InputError(
                            f"--as-of {copy[1].isoformat()} is after today ({today.isoformat()},"
                            " UTC): a copy cannot come from the future"
                        )
                    copy_id = await stored_registries.record_copy(
                        conn, copy[0], copy[1], str(csv_file), _file_sha256(csv_file), staged.good
                    )
                    listing = dnc_list.RegistryListing(copy[0], copy_id)
                total = await _write_staged(conn, staged.paths, listing)
                notes = await registry_notes(conn, copy[0]) if copy is not None else []
            return total, notes

        change, notes = run(go())
    rows = staged.rows
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "rows": rows,
                    "added": change.added,
                    "already_listed": change.already_listed,
                    "contacts_suppressed": change.contacts_suppressed,
                    "registry": copy[0] if copy else None,
                    "as_of": copy[1].isoformat() if copy else None,
                    "notes": notes,
                },
                indent=2,
            )
        )
        return
    click.echo(
        f"read {rows} rows: added {change.added}, already listed {change.already_listed},"
        f" contacts suppressed {change.contacts_suppressed}"
    )
    for note in notes:
        click.echo(note)


def _copy_of(registry: str | None, as_of: str | None) -> tuple[str, date] | None:
    """(registry, as-of date) from the options, or None; a usage error names what is wrong."""
    if registry is None and as_of is None:
        return None
    if registry is None or as_of is None:
        raise click.UsageError("--registry and --as-of go together (which copy, of which day)")
    if not re.match(REGISTRY_NAME, registry):
        raise click.BadParameter(
            f"{registry!r}: lower-case letters, digits and '-', e.g. us-dnc",
            param_hint="--registry",
        )
    try:
        day = date.fromisoformat(as_of)
    except ValueError:
        raise click.BadParameter(f"{as_of!r}: a date YYYY-MM-DD", param_hint="--as-of") from None
    if day.year < 2000:
        raise click.BadParameter(f"{as_of!r}: before 2000", param_hint="--as-of")
    return registry, day


def _registered(text: str | None, copy: tuple[str, date] | None) -> tuple[date | None, str | None]:
    """A row's registration day (YYYY-MM-DD, or an ISO date-time) and what is wrong with it."""
    if text is None or not text.strip():
        return None, None
    try:
        day = datetime.fromisoformat(text.strip()).date()
    except ValueError:
        return None, f"{text[:40]!r} is not a date YYYY-MM-DD"
    if day.year < 1990:
        return None, f"{text[:40]!r} is before 1990"
    if copy is not None and day > copy[1]:
        return None, f"{text[:40]!r} is after the copy's date ({copy[1].isoformat()})"
    return day, None


# An import's good numbers wait in files of about this many each (judged from the file's
# size: an FTC line is 12 bytes), so that memory stays flat however long the file, and the
# transaction never sits idle long between two files' statements. A small file makes one.
STAGED_NUMBERS = 100_000
MOST_STAGED_FILES = 512
SHOWN_BAD_ROWS = 20


@dataclass(frozen=True)
class _Staged:
    """A checked do-not-call file: its rows, the good ones, and the files they wait in."""

    rows: int
    good: int
    paths: list[Path]


def _stage(
    csv_file: Path,
    folder: Path,
    region: str | None,
    reason: str | None,
    copy: tuple[str, date] | None,
) -> _Staged:
    """Read and check every row of `csv_file`; write the good ones (number, reason, day) into
    files in `folder`, each number always into the same file (by its hash), so that a number
    written twice still meets itself. One bad row or more: InputError naming the first
    SHOWN_BAD_ROWS, and nothing to write."""
    buckets = _buckets_for(csv_file)
    paths = [folder / f"{n}.csv" for n in range(buckets)]
    rows = good = wrong = 0
    bad: list[str] = []
    with naming_a_full_disk(the_temporary_folder()), ExitStack() as files:
        writers = [
            csv.writer(files.enter_context(path.open("w", encoding="utf-8", newline="")))
            for path in paths
        ]
        for row in dnc_list.read_dnc_csv(csv_file):
            rows += 1
            normalized, problems = dnc_list.normalize_all([row.raw], region)
            day, day_problem = _registered(row.registered_on, copy)
            why = row.reason or reason
            problem = None
            if problems:
                problem = problems[0][1]
            elif day_problem:
                problem = f"registered_on {day_problem}"
            elif why and "\x00" in why:
                problem = "reason: a NUL byte (0x00)"
            if problem:
                wrong += 1
                if len(bad) < SHOWN_BAD_ROWS:
                    bad.append(f"line {row.line}: {problem}")
            elif not wrong:  # once a row is bad nothing will be written: the rest are read
                good += 1
                number = normalized[0]
                writers[hash(number) % buckets].writerow(
                    [number, why or "", day.isoformat() if day else ""]
                )
    if wrong:
        more = f"; and {wrong - len(bad)} more" if wrong > len(bad) else ""
        raise InputError(
            f"{csv_file}: nothing imported, fix these rows first: {'; '.join(bad)}{more}"
        )
    return _Staged(rows, good, paths)


async def _write_staged(
    conn: Connection, paths: list[Path], listing: dnc_list.RegistryListing | None
) -> dnc_list.DncChange:
    """List the staged numbers, a file at a time, by reason (in the caller's transaction)."""
    total = dnc_list.DncChange()
    for path in paths:
        by_reason: dict[str | None, list[tuple[str, date | None]]] = {}
        with path.open(encoding="utf-8", newline="") as staged:
            for number, said, day_text in csv.reader(staged):
                day = date.fromisoformat(day_text) if day_text else None
                by_reason.setdefault(said or None, []).append((number, day))
        for why, listed in by_reason.items():
            change = await dnc_list.add_numbers(
                conn,
                [n for n, _ in listed],
                why,
                registry=listing,
                registered_on=[d for _, d in listed],
            )
            total.added += change.added
            total.already_listed += change.already_listed
            total.contacts_suppressed += change.contacts_suppressed
    return total


def _buckets_for(path: Path) -> int:
    try:
        size = path.stat().st_size
    except OSError:
        return 1  # read_dnc_csv names the missing file
    return max(1, min(MOST_STAGED_FILES, size // (STAGED_NUMBERS * 12)))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dnc.command("registries")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_app
def registries(app: AppContext, fmt: str) -> None:
    """Each registry imported or demanded by a pack: its newest copy, its age, which packs
    demand it fresh and whether it is, and numbers registered too recently to bind yet.

    Exit 0; 3 when a pack named by an active campaign finds its copy stale or missing (such a
    campaign is not dialed until a fresh copy is imported).
    """

    async def go() -> list[dict]:
        async with session(app.database_url) as conn:
            return await registry_report(conn)

    report = run(go())
    if fmt == "json":
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        from rich.table import Table

        from dialer.console import out

        table = Table(
            "registry", "as of", "age (days)", "listed", "demanded by", "status", title="registries"
        )
        for item in report:
            table.add_row(
                item["registry"],
                item["as_of"] or "never imported",
                "" if item["age_days"] is None else str(item["age_days"]),
                str(item["listed"]),
                ", ".join(item["demanded_by"]),
                item["status"],
            )
        out.print(table)
        for item in report:
            for note in item["notes"]:
                click.echo(note)
    if any(item["blocks_active_campaigns"] for item in report):
        sys.exit(3)


@dnc.command("remove")
@click.argument("numbers", nargs=-1, required=True)
@region_option
@format_option
@pass_app
def remove(app: AppContext, numbers: tuple[str, ...], region: str | None, fmt: str) -> None:
    """Take NUMBERS off the list. Contacts already suppressed stay suppressed."""
    normalized = _normalize_or_fail(list(numbers), app.region(region))

    async def go() -> int:
        async with session(app.database_url) as conn:
            return await dnc_list.remove_numbers(conn, normalized)

    removed = run(go())
    print_record({"removed": removed}, fmt, said=f"removed {removed}")


@dnc.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@pass_app
def list_(app: AppContext, fmt: str) -> None:
    """Print the do-not-call list, in number order (a table shows the first 1,000 rows; CSV
    and JSON print every row, however long the list, as it is read)."""

    async def go() -> Listing:
        async with session(app.database_url) as conn, conn.transaction(readonly=True):
            count, rows = await dnc_list.list_numbers(conn)
            return await Listing.read(rows, fmt, title=f"do-not-call list ({count:,})")

    run(go()).print()
