"""Do-not-call registries in use: whether a campaign may dial with the copies imported, and
the report of every registry's age and of registrations that do not bind yet."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from dialer.campaigns import Campaign, from_row
from dialer.db import campaigns as stored_campaigns
from dialer.db import registries as stored
from dialer.db.types import Connection
from dialer.policy.packs import RegistryRule, builtin_packs
from dialer.policy.registries import binds_from, freshness, registry_rule, stale


async def stale_copies(conn: Connection, campaigns: list[Campaign]) -> dict[int, list[str]]:
    """Per campaign id, why the registry copies imported are too old for its packs to dial
    today (campaigns with nothing wrong are left out)."""
    wanted = sorted(
        {rule.name for c in campaigns if c.rules.law for _, rule in c.rules.law.registries}
    )
    if not wanted:
        return {}
    newest = await stored.newest(conn, wanted)
    today = await stored.today(conn)
    found = {c.id: stale(c.rules.law, newest, today) for c in campaigns}
    return {cid: problems for cid, problems in found.items() if problems}


def _known_rules(campaigns: list[Campaign]) -> list[tuple[str, RegistryRule]]:
    """(pack, registry rule) of the built-in packs and of the campaigns' own packs."""
    found = [(p.label, r) for p in builtin_packs().values() for r in p.registries]
    for campaign in campaigns:
        if campaign.rules.law:
            found += list(campaign.rules.law.registries)
    return found


async def registry_notes(
    conn: Connection, registry: str, campaigns: list[Campaign] | None = None
) -> list[str]:
    """What a report says about `registry` beyond its age: registrations too recent to bind."""
    rules = [rule for _, rule in _known_rules(campaigns or [])]
    rule = registry_rule(registry, [r for r in rules if r.binds_after])
    if rule is None or rule.binds_after is None:
        return []
    today = await stored.today(conn)
    since = today - rule.binds_after - timedelta(days=1)
    recent = await stored.recent_registrations(conn, registry, since)
    notes = []
    for row in recent:
        binds = binds_from(row["registered_on"], rule)
        if binds > today:
            notes.append(
                f"{registry}: {row['numbers']} number(s) registered on"
                f" {row['registered_on'].isoformat()} are not yet binding (the law binds from"
                f" {binds.isoformat()}, {rule.takes_effect_after} after registration);"
                " dialer never dials them all the same"
            )
    return notes


async def registry_report(conn: Connection) -> list[dict[str, Any]]:
    """Every registry imported or demanded by a pack (built-in, or an active campaign's own)."""
    active = [from_row(r) for r in await stored_campaigns.all_active(conn)]
    rules = _known_rules(active)
    summary = {r["registry"]: r for r in await stored.summary(conn)}
    names = sorted(set(summary) | {rule.name for _, rule in rules})
    newest = {name: row["as_of"] for name, row in summary.items()}
    today = await stored.today(conn)
    blocked_by: dict[str, set[str]] = {}
    for campaign in active:
        for fresh in freshness(campaign.rules.law, newest, today):
            if not fresh.fresh:
                blocked_by.setdefault(fresh.registry, set()).add(campaign.name)
    report = []
    for name in names:
        row = summary.get(name)
        as_of = row["as_of"] if row else None
        aged = [(pack, rule) for pack, rule in rules if rule.name == name and rule.max_age]
        demanded = sorted({f"{pack} ({rule.max_age})" for pack, rule in aged})
        max_ages = [rule.max_age_days or 0 for _, rule in aged]
        age = (today - as_of).days if as_of else None
        if not max_ages:
            status = "no age demanded" if as_of else "never imported"
        elif as_of is None:
            status = "never imported: stale"
        else:
            status = "fresh" if age is not None and age <= min(max_ages) else "stale"
        report.append(
            {
                "registry": name,
                "as_of": as_of.isoformat() if as_of else None,
                "age_days": age,
                "copies": row["copies"] if row else 0,
                "listed": row["listed"] if row else 0,
                "demanded_by": demanded,
                "status": status,
                "blocks_active_campaigns": sorted(blocked_by.get(name, ())),
                "notes": await registry_notes(conn, name, active),
            }
        )
    return report
