"""`dialer explain NUMBER`: every rule that applies to a number, whether each allows a dial now
(or at --at), and the next lawful moment; with the past dials and the rules each one checked."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

import asyncpg
import click

from dialer.campaigns import from_row
from dialer.cli.context import AppContext, pass_app, region_option, run
from dialer.cli.output import text_or_json_option, wants_json
from dialer.db import consent as ledger
from dialer.db import explain as reading
from dialer.db import registries as stored_registries
from dialer.db import server
from dialer.db.connect import session
from dialer.errors import InputError, NotFoundError
from dialer.phones import PhoneError, normalize
from dialer.policy.packs import builtin_packs, holds, span_text
from dialer.policy.registries import binds_from, freshness, registry_rule

DAY = timedelta(hours=24)


@dataclass
class Check:
    rule: str  # what is checked ("hours", "cap 3/24h", "do-not-call", ...)
    allows: bool
    detail: str
    until: str | None = None  # when it stops holding, if it holds


@dataclass
class Explanation:
    number: str
    campaign: str
    subject: str
    jurisdiction: str | None
    bound_by: list[str]
    state: str
    checks: list[Check] = field(default_factory=list)
    dial_now: bool = False
    next_lawful: str | None = None
    past: list[dict] = field(default_factory=list)


@click.command()
@click.argument("number")
@click.option("--campaign", "campaign_name", metavar="NAME", help="Only this campaign.")
@click.option(
    "--at", "at_text", metavar="TIME", help="Judge at this instant (ISO 8601 with offset)."
)
@click.option(
    "--dial-cap",
    type=click.IntRange(1, 100),
    help="Dials per number per 24 h, as `dialer run --dial-cap` (default: dialer.toml's).",
)
@region_option
@text_or_json_option
@pass_app
def explain(
    app: AppContext,
    number: str,
    campaign_name: str | None,
    at_text: str | None,
    dial_cap: int | None,
    region: str | None,
    as_json: bool,
    fmt: str | None,
) -> None:
    """Why NUMBER may or may not be dialed now: every rule that applies (the calling window in
    the contact's zone and jurisdiction, the laws' caps and quiet times on the campaign's
    subject, the do-not-call list, the daily dial cap, the retry delay), whether each allows a
    dial, and the next lawful moment; then every past dial of the number with the rules its
    claim checked (pack versions included).

    \b
    Exit codes: 0 explained, 2 a number or time that cannot be read, or no such contact.
    """
    as_json = wants_json(as_json, fmt)
    try:
        phone = normalize(number, app.region(region))
    except PhoneError as exc:
        raise InputError(f"{number!r}: {exc}") from None
    at = _instant(at_text)
    dial_cap = dial_cap or app.config.max_dials_per_number_per_day

    async def go() -> list[Explanation]:
        async with session(app.database_url) as conn:
            when = at or await server.now(conn)
            rows = await reading.contacts_of(conn, phone, campaign_name)
            if not rows:
                where = f" in campaign {campaign_name}" if campaign_name else ""
                raise NotFoundError(f"no contact with the number {phone}{where}")
            calls = await reading.calls_of(conn, phone, when)
            listed = await reading.listing(conn, phone)
            consents = {r["scope"]: r for r in await ledger.standing(conn, phone)}
            newest = {r["registry"]: r["as_of"] for r in await stored_registries.summary(conn)}
            return [
                _explain(phone, row, calls, listed, consents, newest, when, dial_cap)
                for row in rows
            ]

    found = run(go())
    if as_json:
        click.echo(json.dumps([asdict(e) for e in found], indent=2, default=str))
        return
    for item in found:
        click.echo(_text(item))


AT_YEARS = (1990, 2200)  # a moment a dial could be asked about (PostgreSQL's and Python's
# ranges end at years 1 and 9999, which an offset pushes past)


def _instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--at: not an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        raise InputError(f"--at: give the offset too (such as {text}+05:30 or {text}Z)")
    if not AT_YEARS[0] <= when.year <= AT_YEARS[1]:  # before astimezone: year 1 at +14:00
        raise InputError(f"--at: {text!r} is outside the years {AT_YEARS[0]}-{AT_YEARS[1]}")
    return when


def _explain(
    phone: str,
    row: asyncpg.Record,
    calls: list[asyncpg.Record],
    listed: asyncpg.Record | None,
    consents: dict[str, asyncpg.Record],
    newest: dict[str, date],
    at: datetime,
    dial_cap: int,
) -> Explanation:
    campaign = from_row(
        {"id": row["campaign_id"], "name": row["campaign"], "account": row["account"]}
        | {"spec": row["spec"]}
    )
    spec, rules = campaign.spec, campaign.rules
    where = row["jurisdiction"]
    law = rules.law
    limits = law.for_jurisdiction(where) if law else None
    subject = spec.subject_name
    item = Explanation(
        number=phone,
        campaign=row["campaign"],
        subject=subject,
        jurisdiction=where,
        bound_by=list(limits.rules) if limits else [],
        state=row["state"],
    )
    holding: list[datetime] = []

    zone = row["timezone"] or spec.timezone
    start, end = rules.hours_for(where)
    open_now = rules.is_open(at, row["timezone"], where)
    opens = None if open_now else rules.next_open(at, row["timezone"], where)
    item.checks.append(
        Check(
            "calling window",
            open_now,
            f"{start:%H:%M}-{end:%H:%M} in {zone}"
            + (
                f" (narrowed by {law.key_for(where)} rules)"
                if law and limits and limits.hours
                else ""
            )
            + ("; open now" if open_now else "; closed now"),
            None if open_now else (opens.isoformat() if opens else "never"),
        )
    )
    if listed is not None:
        said = f"listed {listed['added_at']:%Y-%m-%d}: {listed['reason']}"
        if listed["registry"]:
            said += f"; from registry {listed['registry']}"
            if listed["as_of"]:
                said += f" (copy as of {listed['as_of']:%Y-%m-%d})"
            if listed["registered_on"]:
                said += f", registered there {listed['registered_on']:%Y-%m-%d}"
                rule = registry_rule(
                    listed["registry"],
                    [r for _, r in (law.registries if law else ())]
                    + [r for p in builtin_packs().values() for r in p.registries],
                )
                if rule is not None and rule.binds_after:
                    binds = binds_from(listed["registered_on"], rule)
                    if binds > at.astimezone(UTC).date():
                        said += (
                            f"; not yet binding in law (binds from {binds:%Y-%m-%d}),"
                            " never dialed all the same"
                        )
        item.checks.append(Check("do-not-call", False, said))
    else:
        item.checks.append(Check("do-not-call", True, "not listed"))
    for fresh in freshness(law, newest, at.astimezone(UTC).date()):
        copy = (
            f"copy as of {fresh.as_of:%Y-%m-%d}, {fresh.age_days} days old"
            if fresh.as_of
            else "no copy imported"
        )
        item.checks.append(
            Check(
                f"registry {fresh.registry}",
                fresh.fresh,
                f"{copy}; {fresh.pack} demands at most {fresh.max_age_days} days",
                None if fresh.fresh else "when a fresh copy is imported",
            )
        )
    scope = spec.requires_consent
    if scope is not None:
        latest = consents.get(scope)
        granted = latest is not None and latest["action"] == "grant"
        said = (
            f"latest event: {latest['action']} ({latest['source']},"
            f" {latest['occurred_at']:%Y-%m-%d %H:%M %Z}; ledger row {latest['id']})"
            if latest
            else "no consent recorded"
        )
        item.checks.append(Check(f"consent ({scope})", granted, said))
    on_subject = [c for c in calls if c["subject"] == subject]
    if limits is not None:
        talks = [
            c["ended_at"] or c["requested_at"] for c in on_subject if c["outcome"] == "completed"
        ]
        found = holds(limits, [c["requested_at"] for c in on_subject], talks, at)
        for cap in limits.caps:
            hold = next((h for h in found if h.why.startswith(f"cap {cap}:")), None)
            recent = [c for c in on_subject if c["requested_at"] > at - cap.window]
            said = f"{len(recent)} calls on {subject!r} within {cap.window_text}"
            item.checks.append(
                Check(
                    f"cap {cap}",
                    hold is None,
                    hold.why.split(": ", 1)[1] if hold else said,
                    hold.until.isoformat() if hold else None,
                )
            )
            if hold:
                holding.append(hold.until)
        quiet = limits.quiet_after_conversation
        if quiet is not None:
            hold = next((h for h in found if h.why.startswith("quiet")), None)
            item.checks.append(
                Check(
                    f"quiet {span_text(quiet)} after a conversation",
                    hold is None,
                    hold.why if hold else "no conversation on this subject within it",
                    hold.until.isoformat() if hold else None,
                )
            )
            if hold:
                holding.append(hold.until)
    last_day = sorted(c["requested_at"] for c in calls if c["requested_at"] > at - DAY)
    capped = len(last_day) >= dial_cap
    if capped:
        holding.append(last_day[-dial_cap] + DAY)
    item.checks.append(
        Check(
            f"daily dial cap {dial_cap}/24h (all campaigns)",
            not capped,
            f"{len(last_day)} dials in the last 24 h",
            (last_day[-dial_cap] + DAY).isoformat() if capped else None,
        )
    )
    retry = row["next_attempt_at"]
    if row["state"] == "pending" and retry is not None and retry > at:
        holding.append(retry)
        item.checks.append(Check("retry delay", False, "waits", retry.isoformat()))
    consented = scope is None or (scope in consents and consents[scope]["action"] == "grant")
    waiting = (
        row["state"] == "pending" and row["status"] == "active" and listed is None and consented
    )
    item.dial_now = waiting and open_now and not holding
    if waiting and not item.dial_now:
        after = max([at, *holding])
        lawful = rules.next_open(after, row["timezone"], where)
        item.next_lawful = lawful.isoformat() if lawful else None
    for call in calls:
        item.past.append(
            {
                "at": call["requested_at"].isoformat(),
                "campaign": call["campaign"],
                "subject": call["subject"],
                "outcome": call["outcome"] or call["state"],
                "rules_checked": list(call["rules_checked"] or []),
            }
        )
    return item


def _text(item: Explanation) -> str:
    lines = [
        f"{item.number} in campaign {item.campaign} (subject {item.subject!r};"
        f" jurisdiction {item.jurisdiction or 'unknown'}; contact {item.state})",
    ]
    if item.bound_by:
        lines.append("  bound by " + ", ".join(item.bound_by))
    for check in item.checks:
        mark = "ok  " if check.allows else "HOLD"
        until = f"; until {check.until}" if check.until else ""
        lines.append(f"  {mark} {check.rule}: {check.detail}{until}")
    if item.dial_now:
        lines.append("  may be dialed now")
    elif item.next_lawful:
        lines.append(f"  not now; next lawful moment {item.next_lawful}")
    else:
        lines.append(f"  not dialed ({item.state})")
    for past in item.past:
        checked = "; ".join(past["rules_checked"]) or "no law named"
        lines.append(
            f"  dialed {past['at']} ({past['campaign']}, {past['outcome']}): checked {checked}"
        )
    return "\n".join(lines)
