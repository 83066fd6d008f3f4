"""`dialer report`."""

from __future__ import annotations

import click

from dialer.cli.context import AppContext, pass_app, run
from dialer.cli.output import print_rows
from dialer.db.connect import session
from dialer.errors import InputError


@click.command()
@click.argument("campaign", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@pass_app
def report(app: AppContext, campaign: str | None, fmt: str) -> None:
    """Campaign results from the `campaign_summary` view: contacts by state, attempts by
    outcome, answer rate, mean talk time (one campaign, or all)."""

    async def go():
        async with session(app.database_url) as conn:
            rows = await conn.fetch(
                "SELECT * FROM campaign_summary WHERE $1::text IS NULL OR campaign = $1"
                " ORDER BY campaign_id",
                campaign,
            )
            if campaign and not rows:
                raise InputError(f"no such campaign: {campaign}")
            return rows

    print_rows(run(go()), fmt, title="campaign summary")
