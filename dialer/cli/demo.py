"""`dialer demo`: the whole tool on generated data, with nothing configured."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from dialer.campaign_spec import load_campaign_file
from dialer.cli.context import AppContext, pass_app, run
from dialer.db.connect import session
from dialer.demo_data import write_contacts
from dialer.loading.loader import load_campaign

DEMO_CAMPAIGN = """\
name = "{name}"
account = "demo-sim"
caller_id = "+918047112233"
contacts = "contacts.csv"
default_region = "IN"
timezone = "Asia/Kolkata"

[retry]
max_attempts = 3
busy = "2s"
no-answer = "3s"
failed = "never"
"""


@click.command()
@click.option("--contacts", default=1000, show_default=True, help="How many contacts to generate.")
@pass_app
def demo(app: AppContext, contacts: int) -> None:
    """Generate a campaign of CONTACTS contacts and load it (embedded PostgreSQL by default).

    Dialing them through the built-in simulated provider arrives with `dialer run`.
    """
    name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    with tempfile.TemporaryDirectory(prefix="dialer-demo-") as folder:
        campaign_path = Path(folder) / "demo.toml"
        campaign_path.write_text(DEMO_CAMPAIGN.format(name=name), encoding="utf-8")
        write_contacts(Path(folder) / "contacts.csv", contacts)
        campaign_file = load_campaign_file(campaign_path)

        async def go():
            async with session(app.database_url) as conn:
                return await load_campaign(conn, campaign_file)

        summary = run(go())
    click.echo("\n".join(summary.lines()))
