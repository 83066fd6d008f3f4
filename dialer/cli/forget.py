"""`dialer forget NUMBER...`: erasure on request (dialer.forget)."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import click

from dialer.cli.context import AppContext, pass_app, region_option, run
from dialer.cli.output import text_format_option
from dialer.db.connect import session
from dialer.durations import parse_duration
from dialer.errors import InputError
from dialer.forget import LOG_FILES_NOTE, ForgetReport, forget
from dialer.phones import PhoneError, normalize

EXIT_IN_FLIGHT = 3
T = TypeVar("T")
MAX_NUMBERS = 1000
MAX_WAIT = timedelta(hours=2)


@click.command("forget")
@click.argument("numbers", nargs=-1, required=True)
@region_option
@click.option(
    "--wait",
    "wait",
    default="10m",
    show_default=True,
    metavar="DURATION",
    help="How long to wait for calls in flight to end before erasing (0: do not wait).",
)
@text_format_option
@pass_app
def forget_numbers(
    app: AppContext, numbers: tuple[str, ...], region: str | None, wait: str, fmt: str
) -> None:
    """Erase NUMBERS on request (GDPR Art. 17), keeping them do-not-call.

    \b
    Each number leaves contacts, attempts, stored callbacks, webhook payloads, API answers,
    rejects and the consent ledger's plain column (the ledger's chain still verifies); the
    rows stay, so every report's counts stay the same. A keyed hash of the number stays, so
    it is never dialed again: reloading it loads it `suppressed`. Files that may still hold
    it (contact files, rejects files, exports, registry copies) are listed for you to delete.

    \b
    A call in flight to the number ends first (no new one starts once this begins).
    Exit codes: 0 every number erased; 3 a call was still in flight after --wait (the
    number is held, never dialed; run again later); 2 bad input (nothing done); 1 other error.
    """
    if len(numbers) > MAX_NUMBERS:
        raise InputError(f"at most {MAX_NUMBERS} numbers at a time, got {len(numbers)}")
    region = app.region(region)
    good, bad = [], []
    for raw in numbers:
        try:
            good.append(normalize(raw, region))
        except PhoneError as exc:
            bad.append(f"{raw!r}: {exc}")
    if bad:
        raise InputError("nothing erased, fix these first: " + "; ".join(bad[:20]))
    try:
        wait_s = (
            0.0 if wait.strip() == "0" else parse_duration(wait, at_most=MAX_WAIT).total_seconds()
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--wait") from None

    def waiting(flying: dict[str, int]) -> None:
        if fmt == "text":
            calls = sum(flying.values())
            click.echo(f"waiting for {calls} call(s) in flight to end...", err=True)

    async def go() -> ForgetReport:
        async with session(app.database_url) as conn:
            return await forget(
                conn, good, f"cli:{_user()}", wait_s=wait_s, waiting=_every(10, waiting)
            )

    report = run(go())
    if fmt == "json":
        click.echo(json.dumps(_as_json(report), indent=2, default=str))
    else:
        _print(report)
    if not report.complete:
        sys.exit(EXIT_IN_FLIGHT)


def _as_json(report: ForgetReport) -> dict:
    return {
        "numbers": [
            {"number": n.number, "erased": n.erased, "calls_in_flight": n.in_flight}
            for n in report.numbers
        ],
        "reservations_released": report.released,
        "rows_changed": report.changed,
        "files": report.files,
        "also": [LOG_FILES_NOTE],
    }


def _print(report: ForgetReport) -> None:
    for item in report.numbers:
        if item.erased:
            click.echo(f"{item.number}: erased; kept do-not-call as a keyed hash")
        else:
            click.echo(
                f"{item.number}: NOT erased yet: {item.in_flight} call(s) still in flight; held"
                " (never dialed again); run `dialer forget` again when they end"
            )
    changed = ", ".join(f"{table} {count}" for table, count in report.changed.items() if count)
    click.echo(f"rows changed: {changed or 'none'}")
    if report.released:
        click.echo(f"reservations released before sending: {report.released}")
    if report.files:
        click.echo("files that may still hold these numbers (delete or edit them yourself):")
        for f in report.files:
            host = f" on {f['host']}" if f.get("host") else ""
            click.echo(f"  {f['kind']}: {f['path']}{host}")
    click.echo(f"also: {LOG_FILES_NOTE}")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _every(n: int, say: Callable[[T], None]) -> Callable[[T], None]:
    """Say the first time and every n-th call after."""
    count = 0

    def each(value: T) -> None:
        nonlocal count
        if count % n == 0:
            say(value)
        count += 1

    return each
