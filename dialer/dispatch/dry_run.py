"""`dialer run --dry-run`: who would be dialed now, and why the others would not. Reads only."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import asyncpg
import click

from dialer.campaigns import Campaign
from dialer.db import campaigns as stored
from dialer.db import contacts, server
from dialer.db.due import VERDICT_DUE


async def _law_counts(
    conn: asyncpg.Connection, campaign: Campaign, rows: list[asyncpg.Record], dial_cap: int
) -> None:
    """Of the contacts held, how many by the laws named: hours per jurisdiction key (the
    campaign's own window open, the law's not), caps and quiet times (the due ones the claim
    would hold now)."""
    rules, law = campaign.rules, campaign.rules.law
    assert law is not None
    now = await server.now(conn)
    own = replace(rules, law=None)
    held: Counter[str] = Counter()
    for row in rows:
        if row["verdict"] == "outside calling window" and own.is_open(now, row["timezone"]):
            key = law.key_for(row["jurisdiction"])
            start, end = rules.hours_for(row["jurisdiction"])
            held[f"hours {start:%H:%M}-{end:%H:%M} ({key})"] += 1
    due = [r for r in rows if r["verdict"] == VERDICT_DUE]
    if due:
        checks = await contacts.check_numbers(
            conn,
            [r["id"] for r in due],
            [r["phone_e164"] for r in due],
            dial_cap,
            campaign.spec.subject_name,
            law,
        )
        for check in checks:
            if check["held_until"] is not None:
                caps = ", ".join(str(c) for c in law.limits[check["law_key"]].caps)
                held[f"caps {caps} ({check['law_key']})"] += 1
    click.echo(f"  held by the laws named ({', '.join(p.label for p in campaign.spec.packs)}):")
    if not held:
        click.echo("    none")
    for why, count in sorted(held.items()):
        click.echo(f"    {why:<40} {count}")


async def dry_run(
    conn: asyncpg.Connection, campaigns: list[Campaign], show: int = 20, dial_cap: int = 2
) -> None:
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
        if rules.law is not None:
            await _law_counts(conn, campaign, rows, dial_cap)
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
