"""`dialer run --dry-run`: who would be dialed now, and why the others would not. Reads only."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import asyncpg
import click

from dialer.campaigns import Campaign
from dialer.db import contacts, server
from dialer.db.due import DO_NOT_CALL, OUTSIDE_WINDOW, RETRY_DELAY, VERDICT_DUE
from dialer.db.types import Connection
from dialer.waiting import Waiting, why_not_dialed


async def _law_counts(
    conn: Connection, campaign: Campaign, rows: list[asyncpg.Record], dial_cap: int
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
        if row["verdict"] == OUTSIDE_WINDOW and own.is_open(now, row["timezone"]):
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
    conn: Connection,
    campaigns: list[Campaign],
    show: int = 20,
    dial_cap: int = 2,
    as_json: bool = False,
) -> None:
    """Print, per campaign, who would be dialed now and why the others would not
    (waiting.why_not_dialed), the laws' holds, and the first contacts in line."""
    answers = []
    for campaign in campaigns:
        why = await why_not_dialed(conn, campaign, dial_cap=dial_cap)
        rows = await contacts.pending_verdicts(conn, campaign.id, campaign.rules)
        if as_json:
            answer = why.to_json() | {
                "account": campaign.account,
                "next_to_dial": [r["phone_e164"] for r in rows if r["verdict"] == VERDICT_DUE][
                    :show
                ],
            }
            answers.append(answer)
            continue
        click.echo(f"campaign {campaign.name} ({why.status}, account {campaign.account})")
        for blocker in why.blockers:
            click.echo(f"  nothing will be dialed: {blocker}")
        counted = {w.reason: w for w in why.waiting}
        for reason in (VERDICT_DUE, OUTSIDE_WINDOW, RETRY_DELAY, DO_NOT_CALL):
            counted.setdefault(reason, Waiting(reason, 0))
        for group in sorted(counted.values(), key=lambda w: (w.reason != VERDICT_DUE, w.reason)):
            detail = group.said().removeprefix(f"{group.contacts} {group.reason}")
            detail = detail.removeprefix(",").strip() if group.contacts else ""
            click.echo(f"  {group.reason:<24} {group.contacts}{'  ' + detail if detail else ''}")
        if campaign.rules.law is not None:
            await _law_counts(conn, campaign, rows, dial_cap)
        due = [r for r in rows if r["verdict"] == VERDICT_DUE][:show]
        if due and not why.blockers:
            click.echo(f"  next to dial (first {len(due)}; limits decide the pace):")
            for row in due:
                click.echo(f"    {row['phone_e164']}  {row['name'] or ''}")
    if as_json:
        click.echo(json.dumps(answers, indent=2))
