"""`dialer campaign ...`: create campaigns from their files and load their contacts."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dialer.campaign_checks import refuse_unknown_account, refuse_unsupported
from dialer.campaign_control import set_status
from dialer.campaign_spec import load_campaign_file
from dialer.campaigns import from_row
from dialer.cli.context import AppContext, pass_app, run
from dialer.cli.output import (
    print_report,
    print_rows,
    text_format_option,
    text_or_json_option,
    wants_json,
)
from dialer.console import byte_progress
from dialer.db import accounts, campaigns, contacts, reporting, server
from dialer.db.connect import session
from dialer.errors import NotFoundError
from dialer.loading.loader import load_campaign
from dialer.loading.summary import LoadSummary
from dialer.policy.due import next_due
from dialer.policy.states import CONTACT_STATES, TALLIES
from dialer.waiting import cap_warnings, iso, why_not_dialed


@click.group()
def campaign() -> None:
    """Create, load and inspect campaigns."""


@campaign.command("load")
@click.argument("campaign_file", metavar="FILE.toml", type=click.Path(path_type=Path))
@click.option(
    "--csv", "csv_path", metavar="PATH", help="Contacts CSV (default: the file's `contacts`)."
)
@text_or_json_option
@click.option(
    "--raw",
    is_flag=True,
    help="Write the rejects file's values untouched (by default a cell a spreadsheet would run"
    " as a formula gets a leading ').",
)
@pass_app
def load(
    app: AppContext,
    campaign_file: Path,
    csv_path: str | None,
    as_json: bool,
    fmt: str | None,
    raw: bool,
) -> None:
    """Create the campaign in FILE.toml (or update it if it has not dialed yet) and load its CSV.

    \b
    All or nothing: one transaction. Phones are normalized to E.164 with the campaign's
    default_region; invalid rows are rejected (listed in load_rejects and in <csv>.rejects.csv
    beside the input), numbers already in the campaign count as duplicates, and numbers on the
    do-not-call list are loaded as `suppressed`. Loading the same file twice changes nothing.
    The campaign's account must be in dialer.toml. A campaign whose retries the daily dial
    cap (max_dials_per_number_per_day) puts off to the next day is warned about.
    A bad cell rejects its row, never the load: a NUL byte, a priority outside the integer
    range, a cell over 65,536 characters or a line over 1 MiB. The header may have at most
    1,000 columns, names of at most 200 characters, none differing from another only in case.
    Exit codes: 0 loaded, 2 bad campaign file or CSV, 1 other error.
    """
    as_json = wants_json(as_json, fmt)
    spec_file = load_campaign_file(campaign_file)
    refuse_unknown_account(spec_file.spec, app.config)
    refuse_unsupported(spec_file.spec, app.config)
    for warning in cap_warnings(spec_file.spec, app.config.max_dials_per_number_per_day):
        click.echo(f"dialer: warning: {warning}", err=True)

    async def go() -> LoadSummary:
        async with session(app.database_url) as conn:
            with byte_progress(f"loading {spec_file.spec.name}") as progress:
                return await load_campaign(conn, spec_file, csv_path, progress, raw=raw)

    summary = run(go())
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2))
    else:
        click.echo("\n".join(summary.lines()))


def _control(action: str):
    @click.argument("name")
    @text_format_option
    @pass_app
    def command(app: AppContext, name: str, fmt: str) -> None:
        async def go() -> str:
            async with session(app.database_url) as conn:
                return await set_status(conn, name, action)

        message = run(go())  # as JSON, what the API's POST /campaigns/NAME/ACTION answers
        print_report(fmt, {"name": name, "action": action, "message": message}, message)

    command.__doc__ = {
        "pause": "Stop dialing NAME (every process, within a second); calls in flight settle.",
        "resume": "Dial NAME again after a pause (or a circuit-breaker trip).",
        "cancel": "Stop NAME for good: waiting contacts become `canceled`; calls in flight settle.",
    }[action]
    return campaign.command(action)(command)


for _action in ("pause", "resume", "cancel"):
    _control(_action)


@campaign.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@pass_app
def list_(app: AppContext, fmt: str) -> None:
    """Every campaign with its status and progress."""

    async def go():
        async with session(app.database_url) as conn:
            return await reporting.campaign_list(conn)

    print_rows(run(go()), fmt, title="campaigns")


ATTEMPT_OUTCOMES = tuple(t.column for t in TALLIES)  # as the campaign_summary view names them


@campaign.command("show")
@click.argument("name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    help="table for people; json for everything; csv for the reasons contacts wait (a row each).",
)
@click.option(
    "--dial-cap",
    type=click.IntRange(1, 100),
    help="The daily dial cap to judge waiting contacts by (default: max_dials_per_number_per_day"
    " in dialer.toml, else 2).",
)
@pass_app
def show(app: AppContext, name: str, fmt: str, dial_cap: int | None) -> None:
    """Counts by state, attempts by outcome, calling-window status, the next due contact, and
    why the waiting contacts are not dialed now (each reason with its figure and next time)."""
    cap = dial_cap or app.config.max_dials_per_number_per_day

    async def go():
        async with session(app.database_url) as conn:
            row = await campaigns.by_name(conn, name)
            if row is None:
                raise NotFoundError(f"no such campaign: {name} (see `dialer campaign list`)")
            campaign = from_row(row)
            summary = await reporting.campaign_summary(conn, row["id"])
            firsts = await contacts.first_due_per_zone(conn, [row["id"]])
            hold = await accounts.hold(conn, row["account"])
            now = await server.now(conn)
            why = await why_not_dialed(conn, campaign, dial_cap=cap, now=now, firsts=firsts)
            return row, campaign, summary, firsts, hold, now, why

    row, campaign, summary, firsts, hold, now, why = run(go())
    due = next_due(firsts, {campaign.id: campaign.rules}, now)
    if fmt == "csv":
        rows = [
            {"campaign": name, "reason": blocker, "contacts": None, "figure": None, "next_at": None}
            for blocker in why.blockers
        ] + [{"campaign": name} | group.to_json() for group in why.waiting]
        print_rows(rows, "csv", title="")
        return
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "name": row["name"],
                    "account": row["account"],
                    "status": row["status"],
                    "status_reason": row["status_reason"],
                    "contacts": {k: summary[k] for k in CONTACT_STATES},
                    "attempts": {k: summary[k] for k in ATTEMPT_OUTCOMES},
                    "answer_rate": _number(summary["answer_rate"]),
                    "window_open": campaign.rules.is_open(now),
                    "account_held_until": iso(hold["held_until"]) if hold else None,
                    "next_due": iso(max(due[0], now)) if due else None,
                    "not_dialed_now": why.to_json(),
                },
                indent=2,
            )
        )
        return
    reason = f" ({row['status_reason']})" if row["status_reason"] else ""
    lines = [
        f"campaign {row['name']}  (account {row['account']})",
        f"  status        {row['status']}{reason}",
        "  contacts      " + ", ".join(f"{k} {summary[k]:,}" for k in CONTACT_STATES),
        "  attempts      " + ", ".join(f"{k} {summary[k]:,}" for k in ATTEMPT_OUTCOMES),
        f"  answer rate   {_dash(summary['answer_rate'])}"
        f" (person {_dash(summary['human_answer_rate'])},"
        f" machine {_dash(summary['machine_answer_rate'])})"
        f"   mean talk {_dash(summary['mean_talk_s'])} s",
        "  window        " + _window_status(campaign.rules, now),
    ]
    if hold is not None:
        asked = hold["held_asked_s"]
        lines.append(
            f"  account       held by the provider until {iso(hold['held_until'])}"
            f" ({round(hold['left_s'])} s left"
            + (f"; its Retry-After asked {asked:g} s" if asked is not None else "")
            + "): nothing is dialed on it meanwhile"
        )
    if due:
        when, first = due
        at = "now" if when <= now else iso(when)
        lines.append(
            f"  next due      {first.phone_e164} at {at} ({first.attempts} attempts so far)"
        )
    lines.append("  waiting       " + ("none" if not why.waiting else ""))
    for blocker in why.blockers:
        lines.append(f"    nothing is dialed: {blocker}")
    for group in why.waiting:
        lines.append(f"    {group.said()}")
    click.echo("\n".join(lines))


def _number(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _window_status(rules, now) -> str:
    if rules.is_open(now):
        return f"open now in {rules.timezone}, closes {iso(rules.closes_at(now))}"
    opens = rules.next_open(now)
    when = iso(opens) if opens else "never again (past end_date)"
    return f"closed in {rules.timezone}; opens {when}"
