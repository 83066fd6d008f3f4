"""`dialer campaign ...`: create campaigns from their files and load their contacts."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dialer.campaign_spec import load_campaign_file
from dialer.cli.context import AppContext, pass_app, run
from dialer.console import byte_progress
from dialer.db.connect import session
from dialer.loading.loader import load_campaign
from dialer.loading.summary import LoadSummary


@click.group()
def campaign() -> None:
    """Create, load and inspect campaigns."""


@campaign.command("load")
@click.argument("campaign_file", metavar="FILE.toml", type=click.Path(path_type=Path))
@click.option(
    "--csv", "csv_path", metavar="PATH", help="Contacts CSV (default: the file's `contacts`)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@pass_app
def load(app: AppContext, campaign_file: Path, csv_path: str | None, as_json: bool) -> None:
    """Create the campaign in FILE.toml (or update it if it has not dialed yet) and load its CSV.

    \b
    All or nothing: one transaction. Phones are normalized to E.164 with the campaign's
    default_region; invalid rows are rejected (listed in load_rejects and in <csv>.rejects.csv
    beside the input), numbers already in the campaign count as duplicates, and numbers on the
    do-not-call list are loaded as `suppressed`. Loading the same file twice changes nothing.
    Exit codes: 0 loaded, 2 bad campaign file or CSV, 1 other error.
    """
    spec_file = load_campaign_file(campaign_file)

    async def go() -> LoadSummary:
        async with session(app.database_url) as conn:
            with byte_progress(f"loading {spec_file.spec.name}") as progress:
                return await load_campaign(conn, spec_file, csv_path, progress)

    summary = run(go())
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2))
    else:
        click.echo("\n".join(summary.lines()))
