"""`dialer run --dry-run`: who would be dialed now, and why the others would not. Reads only."""

from __future__ import annotations

import asyncpg
import click

from dialer.campaigns import Campaign
from dialer.db import campaigns as stored
from dialer.db import contacts
from dialer.db.due import VERDICT_DUE


async def dry_run(conn: asyncpg.Connection, campaigns: list[Campaign], show: int = 20) -> None:
    for campaign in campaigns:
        rules = campaign.rules
        status = await stored.status_of(conn, campaign.id)
        rows = await contacts.pending_verdicts(conn, campaign.id, rules)
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
        click.echo(f"campaign {campaign.name} ({status}, account {campaign.account})")
        if status != "active":
            click.echo(f"  nothing will be dialed: the campaign is {status}")
        for verdict in (VERDICT_DUE, "outside calling window", "retry delay", "do-not-call"):
            click.echo(f"  {verdict:<24} {counts.get(verdict, 0)}")
        due = [r for r in rows if r["verdict"] == VERDICT_DUE][:show]
        if due and status == "active":
            click.echo(f"  next to dial (first {len(due)}; limits decide the pace):")
            for row in due:
                click.echo(f"    {row['phone_e164']}  {row['name'] or ''}")
        waiting = [r for r in rows if r["verdict"] == "retry delay"][:5]
        for row in waiting:
            click.echo(
                f"    waits until {row['next_attempt_at']:%Y-%m-%d %H:%M:%S%z}: {row['phone_e164']}"
            )
