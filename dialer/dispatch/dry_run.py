"""`dialer run --dry-run`: who would be dialed now, and why the others would not. Reads only."""

from __future__ import annotations

import asyncpg
import click

from dialer.campaigns import Campaign
from dialer.policy.window import window_sql

_LATERAL, _IN_WINDOW = window_sql(2)
_REASONS = f"""
SELECT c.id, c.phone_e164, c.name, c.next_attempt_at,
       CASE
         WHEN EXISTS (SELECT 1 FROM dnc d WHERE d.phone_e164 = c.phone_e164) THEN 'do-not-call'
         WHEN c.next_attempt_at > now() THEN 'retry delay'
         WHEN NOT {_IN_WINDOW} THEN 'outside calling window'
         ELSE 'due now'
       END AS verdict
FROM contacts c
{_LATERAL}
WHERE c.campaign_id = $1 AND c.state = 'pending'
ORDER BY c.priority DESC, c.attempts, c.next_attempt_at, c.id
"""


async def dry_run(conn: asyncpg.Connection, campaigns: list[Campaign], show: int = 20) -> None:
    for campaign in campaigns:
        rules = campaign.rules
        status = await conn.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign.id)
        rows = await conn.fetch(_REASONS, campaign.id, *rules.sql_parameters())
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
        click.echo(f"campaign {campaign.name} ({status}, account {campaign.account})")
        if status != "active":
            click.echo(f"  nothing will be dialed: the campaign is {status}")
        for verdict in ("due now", "outside calling window", "retry delay", "do-not-call"):
            click.echo(f"  {verdict:<24} {counts.get(verdict, 0)}")
        due = [r for r in rows if r["verdict"] == "due now"][:show]
        if due and status == "active":
            click.echo(f"  next to dial (first {len(due)}; limits decide the pace):")
            for row in due:
                click.echo(f"    {row['phone_e164']}  {row['name'] or ''}")
        waiting = [r for r in rows if r["verdict"] == "retry delay"][:5]
        for row in waiting:
            click.echo(
                f"    waits until {row['next_attempt_at']:%Y-%m-%d %H:%M:%S%z}: {row['phone_e164']}"
            )
