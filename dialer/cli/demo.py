"""`dialer demo`: the whole tool on generated data, with nothing configured."""

from __future__ import annotations

import sys
import time

import click

from dialer.cli.context import AppContext, pass_app, run
from dialer.cli.output import print_rows
from dialer.demo import run_demo


@click.command()
@click.option(
    "--contacts",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="How many contacts to generate (1 to 1,000,000).",
)
@click.option("--keep", is_flag=True, help="Keep the demo campaign's data for inspection.")
@pass_app
def demo(app: AppContext, contacts: int, keep: bool) -> None:
    """Run a whole simulated campaign: CONTACTS generated contacts dialed through the built-in
    sim provider (50 calls/s, 20 channels, calls of a second or less, busy and no-answer
    retried), with live progress, ending with the campaign report. Uses the embedded
    PostgreSQL unless a database URL is configured; needs no other configuration."""
    started = time.monotonic()
    code, report, name = run(run_demo(app.database_url, contacts, keep))
    print_rows(report, "table", title=f"campaign {name}")
    kept = f"; data kept as campaign {name}" if keep else ""
    click.echo(f"demo finished in {time.monotonic() - started:.0f}s (exit {code}){kept}", err=True)
    sys.exit(code)
