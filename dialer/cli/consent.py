"""`dialer consent import | revoke | verify`: the consent ledger (dialer.consent)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from itertools import chain
from pathlib import Path

import click

from dialer.campaign_control import withdraw_revoked
from dialer.cli.context import AppContext, pass_app, region_option, run
from dialer.cli.output import print_report, text_format_option
from dialer.consent import Break, ChainCheck, ConsentEvent, event_from_fields
from dialer.db import consent as ledger
from dialer.db import server
from dialer.db.connect import session
from dialer.errors import InputError, naming_a_full_disk, the_temporary_folder
from dialer.loading.csv_source import CsvSource
from dialer.loading.records import UnreadableRecord

MAX_PROBLEMS_SHOWN = 20
STAGED_BATCH = 10_000  # events appended per statement; a batch's events are in memory


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
    bad row and nothing is written; the first 20 problems are named with their line and
    field, and the rest counted (exit 2). Memory stays flat however long the file: checked
    events wait in a temporary file until they are appended, in the file's order, in one
    transaction."""
    region = app.region(region)
    with tempfile.TemporaryDirectory(prefix="dialer-consent-") as folder:
        staging = Path(folder) / "events.jsonl"

        async def go() -> int:
            async with session(app.database_url) as conn:
                now = await server.now(conn)
                # every row read and checked before the transaction begins
                staged = _stage(file, staging, region, scope, source, now)
                async with conn.transaction():
                    appending = await ledger.begin_append(conn, revoking=staged.revocations > 0)
                    for events in _staged_batches(staging):
                        await appending.add(events)
                        await withdraw_revoked(conn, [e for e in events if e.action == "revoke"])
                return staged.events

        count = run(go())
    said = f"consent: {count} events appended from {file}"
    print_report(fmt, {"appended": count, "file": str(file)}, said)


@dataclass(frozen=True)
class _Staged:
    """A checked consent file: how many events wait in the staging file, and revocations."""

    events: int
    revocations: int


def _stage(
    file: Path, staging: Path, region: str | None, scope: str | None, source: str | None, now
) -> _Staged:
    """Read and check every row of `file`; write its events, in order, one JSON line each, to
    `staging`. One bad row or more: InputError naming the first MAX_PROBLEMS_SHOWN (and how
    many more), and nothing to append."""
    csv_file = CsvSource.open(file, what="consent events")
    records = csv_file.records()
    first = next(records, None)  # reads the header
    names = [name.lower() for name in csv_file.header]
    if "phone" not in names:
        raise InputError(f"{file}: no `phone` column (columns: phone, scope, action, ...)")
    events = revocations = wrong = 0
    problems: list[str] = []
    with naming_a_full_disk(the_temporary_folder()), staging.open("w", encoding="utf-8") as out:
        for line, values in chain([first] if first is not None else [], records):
            wrong_here = _width_problem(values, len(names))
            event = None
            if not wrong_here:
                fields = dict(zip(names, values, strict=False))
                event, wrong_here = event_from_fields(
                    fields, region=region, scope=scope, source=source, action=None, now=now
                )
            if wrong_here:
                wrong += len(wrong_here)
                for field, what in wrong_here:
                    if len(problems) < MAX_PROBLEMS_SHOWN:
                        problems.append(f"{file}: line {line}: {field}: {what}")
            elif event is not None and not wrong:  # once a row is bad, nothing is written
                events += 1
                revocations += event.action == "revoke"
                out.write(json.dumps(_staged_fields(event)) + "\n")
    if wrong:
        more = [f"... and {wrong - len(problems)} more"] if wrong > len(problems) else []
        raise InputError("nothing was written; fix these first:\n" + "\n".join(problems + more))
    if not events:
        raise InputError(f"{file}: no consent events in it")
    return _Staged(events, revocations)


def _width_problem(values: list[str], width: int) -> list[tuple[str, str]]:
    """A record that could not be read, or that has more values than the header has names."""
    if isinstance(values, UnreadableRecord):
        return [("row", values.reason)]
    if len(values) > width and any(v.strip() for v in values[width:]):
        return [("row", f"too many fields: {len(values)}, the header has {width}")]
    return []


def _staged_fields(event: ConsentEvent) -> list[str | None]:
    return [
        event.phone_e164,
        event.scope,
        event.action,
        event.source,
        event.occurred_at.isoformat(),
        event.evidence_sha256,
    ]


def _staged_batches(staging: Path) -> Iterator[list[ConsentEvent]]:
    """The staged events in the file's order, STAGED_BATCH at a time."""
    batch: list[ConsentEvent] = []
    with staging.open(encoding="utf-8") as staged:
        for text in staged:
            phone, scope, action, source, when, evidence = json.loads(text)
            at = datetime.fromisoformat(when)
            batch.append(ConsentEvent(phone, scope, action, source, at, evidence))
            if len(batch) == STAGED_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


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
