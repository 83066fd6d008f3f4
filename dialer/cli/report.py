"""`dialer report`: the reporting views (sql/README.md), as a table, CSV or JSON."""

from __future__ import annotations

from datetime import datetime

import click

from dialer.cli.context import AppContext, pass_app, run
from dialer.cli.output import print_rows
from dialer.db.connect import session
from dialer.durations import OutOfRange, parse_duration
from dialer.errors import InputError, NotFoundError

# view name -> (SQL view, its time column for --since, how its rows are ordered)
VIEWS = {
    "summary": ("campaign_summary", None, "campaign_id"),
    "contacts": ("contact_results", "last_attempt_at", "campaign_id, row_no"),
    "attempts": ("attempt_log", "requested_at", "attempt_id"),
    "hourly": ("hourly_outcomes", "hour", "campaign_id, hour, outcome"),
    "usage": ("account_usage", "minute", "account, minute"),
}


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
        when = when if when.tzinfo else when.astimezone()
    except (ValueError, OverflowError, OSError):
        raise InputError(
            f"--since: expected a duration (30m, 2h, 1d) or an ISO time, got {text!r}"
        ) from None
    if when < EARLIEST_SINCE:
        raise InputError(f"--since: {text!r} is before 2000")
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
    table, time_column, order = VIEWS[view]
    start = parse_since(since)
    if start is not None and time_column is None:
        raise InputError("--since needs a view with times: contacts, attempts, hourly or usage")

    async def go():
        async with session(app.database_url) as conn:
            if campaign and not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM campaigns WHERE name = $1)", campaign
            ):
                raise NotFoundError(f"no such campaign: {campaign} (see `dialer campaign list`)")
            where, args = ["TRUE"], []
            if campaign:
                args.append(campaign)
                where.append(
                    f"account = (SELECT account FROM campaigns WHERE name = ${len(args)})"
                    if view == "usage"
                    else f"campaign = ${len(args)}"
                )
            if start is not None:
                args.append(start)
                since_sql = f"${len(args)}::timestamptz"
                if view == "hourly":  # local hours of each campaign's own timezone
                    since_sql = f"date_trunc('hour', {since_sql} AT TIME ZONE timezone)"
                where.append(f"{time_column} >= {since_sql}")
            sql = f"SELECT * FROM {table} WHERE {' AND '.join(where)} ORDER BY {order}"
            return await conn.fetch(sql, *args)

    print_rows(run(go()), fmt, title=table.replace("_", " "))
