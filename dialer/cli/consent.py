"""`dialer consent import | revoke | verify`: the consent ledger (dialer.consent)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import click

from dialer.campaign_control import withdraw_revoked
from dialer.cli.context import AppContext, pass_app, region_option, run
from dialer.cli.output import print_report, text_format_option
from dialer.consent import Break, ChainCheck, ConsentEvent, event_from_fields
from dialer.db import consent as ledger
from dialer.db import server
from dialer.db.connect import session
from dialer.errors import InputError

MAX_PROBLEMS_SHOWN = 20


@click.group()
def consent() -> None:
    """The consent ledger: grants and revocations of consent to be called, per number and
    scope, append-only and hash-chained. A campaign with `requires_consent = "SCOPE"` dials
    only numbers whose latest event in that scope is a grant."""


@consent.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--scope", help="The scope of rows without a `scope` column (e.g. marketing).")
@click.option("--source", help="The source of rows without a `source` column.")
@region_option
@text_format_option
@pass_app
def import_file(
    app: AppContext,
    file: Path,
    scope: str | None,
    source: str | None,
    region: str | None,
    fmt: str,
) -> None:
    """Append the events of FILE.csv: columns `phone` (required), `scope`, `action` (grant or
    revoke; default grant), `source`, `evidence` (its text, kept as a SHA-256) or
    `evidence_sha256`, `occurred_at` (ISO 8601 with offset; default now). All or nothing: one
    bad row and nothing is written, with every bad row and field named (exit 2)."""
    region = app.region(region)

    async def go() -> int:
        async with session(app.database_url) as conn:
            now = await server.now(conn)
            events = _read(file, region, scope, source, now)
            async with conn.transaction():
                await ledger.append(conn, events)
                await withdraw_revoked(conn, [e for e in events if e.action == "revoke"])
            return len(events)

    count = run(go())
    said = f"consent: {count} events appended from {file}"
    print_report(fmt, {"appended": count, "file": str(file)}, said)


def _read(
    file: Path, region: str | None, scope: str | None, source: str | None, now
) -> list[ConsentEvent]:
    if not file.is_file():
        raise InputError(f"{file}: consent file not found")
    events, problems = [], []
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "phone" not in [f.strip().lower() for f in reader.fieldnames]:
            raise InputError(f"{file}: no `phone` column (columns: phone, scope, action, ...)")
        for row in reader:
            values = {(k or "").strip().lower(): (v or "") for k, v in row.items()}
            event, wrong = event_from_fields(
                values, region=region, scope=scope, source=source, action=None, now=now
            )
            line = reader.line_num
            problems += [f"{file}: line {line}: {field}: {what}" for field, what in wrong]
            if event is not None:
                events.append(event)
    if problems:
        more = len(problems) - MAX_PROBLEMS_SHOWN
        shown = problems[:MAX_PROBLEMS_SHOWN] + ([f"... and {more} more"] if more > 0 else [])
        raise InputError("nothing was written; fix these first:\n" + "\n".join(shown))
    if not events:
        raise InputError(f"{file}: no consent events in it")
    return events


@consent.command("revoke")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--scope", required=True, help="The scope revoked (e.g. marketing).")
@click.option("--source", default="dialer consent revoke", show_default=True)
@region_option
@text_format_option
@pass_app
def revoke(
    app: AppContext,
    numbers: tuple[str, ...],
    scope: str,
    source: str,
    region: str | None,
    fmt: str,
) -> None:
    """Record that NUMBERS took their consent in SCOPE back. Every process stops dialing them
    in campaigns requiring that scope before its next claim or send; calls in flight end."""
    region = app.region(region)

    async def go() -> tuple[int, int]:
        async with session(app.database_url) as conn:
            now = await server.now(conn)
            events = []
            for number in numbers:
                values = {"phone": number}
                event, wrong = event_from_fields(
                    values, region=region, scope=scope, source=source, action="revoke", now=now
                )
                if wrong:
                    raise InputError("; ".join(f"{number}: {f}: {w}" for f, w in wrong))
                assert event is not None
                events.append(event)
            async with conn.transaction():
                await ledger.append(conn, events)
                released = await withdraw_revoked(conn, events)
            return len(events), released

    revoked, released = run(go())
    said = f"consent in {scope!r} revoked for {revoked} numbers; {released} reservations withdrawn"
    report = {"scope": scope, "revoked": revoked, "reservations_withdrawn": released}
    print_report(fmt, report, said)


@consent.command("verify")
@text_format_option
@pass_app
def verify_chain(app: AppContext, fmt: str) -> None:
    """Check the ledger's hash chain: exit 0 if every row is as written and in place, else 1
    naming the first row that breaks it (edited, deleted or moved)."""

    async def go() -> tuple[int, Break | None]:
        check = ChainCheck()
        async with session(app.database_url) as conn:
            async for row in ledger.chain(conn):
                broken = check.feed(row)
                if broken is not None:
                    return check.count, broken
        return check.count, None

    count, broken = run(go())
    if fmt == "json":
        where = asdict(broken) if broken is not None else None
        click.echo(json.dumps({"rows": count, "intact": broken is None, "broken_at": where}))
    if broken is not None:
        click.echo(
            f"dialer: error: consent ledger broken at row id {broken.row_id} (row"
            f" {broken.position} of the chain): {broken.problem}",
            err=True,
        )
        raise SystemExit(1)
    if fmt == "text":
        click.echo(f"consent ledger verified: {count} rows, chain intact")
