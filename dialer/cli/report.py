"""`dialer report`: the reporting views (sql/README.md), as a table, CSV or JSON."""

from __future__ import annotations

from datetime import datetime

import click

from dialer.cli.context import AppContext, pass_app, run
from dialer.cli.output import Listing
from dialer.db import campaigns, reporting
from dialer.db.connect import session
from dialer.db.reporting import VIEWS
from dialer.durations import OutOfRange, parse_duration
from dialer.errors import InputError, NotFoundError

EARLIEST_SINCE = datetime(2000, 1, 1).astimezone()


def parse_since(text: str | None) -> datetime | None:
    """'2h' (that long ago, at most ten years) or an ISO date/time ('2026-11-20',
    '2026-11-20T09:00', with or without an offset) from 2000 on (a future one finds nothing)."""
    if text is None:
        return None
    try:
        return datetime.now().astimezone() - parse_duration(text)
    except OutOfRange as exc:
        raise InputError(f"--since: {exc}") from None
    except ValueError:
        pass  # not a duration: perhaps a date
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"--since: expected a duration (30m, 2h, 1d) or an ISO time, got {text!r}"
        ) from None
    if when.year < EARLIEST_SINCE.year:  # before any offset is applied: year 1 cannot take one
        raise InputError(f"--since: {text!r} is before {EARLIEST_SINCE.year}")
    try:
        when = when if when.tzinfo else when.astimezone()
    except (OverflowError, OSError):
        raise InputError(f"--since: {text!r} is out of range") from None
    if when < EARLIEST_SINCE:
        raise InputError(f"--since: {text!r} is before {EARLIEST_SINCE.year}")
    return when


@click.command()
@click.argument("campaign", required=False)
@click.option(
    "--view",
    type=click.Choice(list(VIEWS)),
    default="summary",
    show_default=True,
    help="summary: campaign_summary; contacts: contact_results; attempts: attempt_log;"
    " hourly: hourly_outcomes; usage: account_usage (of the campaign's account).",
)
@click.option("--since", metavar="WHEN", help="Only rows from then on: 2h, 1d, or an ISO time.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@pass_app
def report(app: AppContext, campaign: str | None, view: str, since: str | None, fmt: str) -> None:
    """Campaign results from the reporting views: by default contacts by state, attempts by
    outcome, answer rate and talk time per campaign (CAMPAIGN, or all).

    \b
    The same views are there for your own SQL (columns in sql/README.md); `dialer export`
    writes one row per contact for a CRM.
    """
    table, time_column, _ = VIEWS[view]
    start = parse_since(since)
    if start is not None and time_column is None:
        raise InputError("--since needs a view with times: contacts, attempts, hourly or usage")

    async def go() -> Listing:
        async with session(app.database_url) as conn, conn.transaction(readonly=True):
            if campaign and not await campaigns.exists(conn, campaign):
                raise NotFoundError(f"no such campaign: {campaign} (see `dialer campaign list`)")
            rows = await reporting.view_rows(conn, view, campaign, start)
            return await Listing.read(rows, fmt, title=table.replace("_", " "))

    run(go()).print()
