"""`dialer webhooks ...`: see what is waiting to be delivered, and send exhausted events again."""

from __future__ import annotations

import click

from dialer.cli.context import AppContext, pass_app, run
from dialer.cli.output import format_option, print_report, print_rows, text_format_option
from dialer.cli.report import parse_since
from dialer.db import webhooks as outbox
from dialer.db.connect import session
from dialer.errors import ConfigError


@click.group()
def webhooks() -> None:
    """Outbound webhooks ([[webhooks]] in dialer.toml), delivered by `dialer serve`."""


@webhooks.command("status")
@format_option
@pass_app
def status(app: AppContext, fmt: str) -> None:
    """Per endpoint: deliveries pending, and exhausted (retries used up for 24 hours; kept in
    the webhook_failures view until replayed)."""

    async def go() -> list:
        async with session(app.database_url) as conn:
            return await outbox.counts(conn)

    print_rows(run(go()), fmt, title="webhook deliveries waiting")


@webhooks.command("replay")
@click.option(
    "--since",
    required=True,
    metavar="WHEN",
    help="Events created from then on: 2h, 1d, or an ISO time.",
)
@click.option(
    "--endpoint",
    "endpoints",
    multiple=True,
    metavar="NAME",
    help="Only this endpoint (repeatable; default: every endpoint in dialer.toml).",
)
@click.option("--delivered", is_flag=True, help="Also send again events already delivered.")
@text_format_option
@pass_app
def replay(
    app: AppContext, since: str, endpoints: tuple[str, ...], delivered: bool, fmt: str
) -> None:
    """Send again the events since WHEN whose deliveries exhausted their retries: they are
    pending at once, with the same webhook-id, and a fresh 24 hours of retries. A running
    `dialer serve` delivers them within a second. Exit 0, 2 for an unknown endpoint."""
    configured = [hook.endpoint for hook in app.config.webhooks]
    unknown = sorted(set(endpoints) - set(configured))
    if unknown:
        names = ", ".join(configured) or "none"
        raise ConfigError(f"--endpoint {unknown[0]!r} is not in dialer.toml (endpoints: {names})")
    start = parse_since(since)
    assert start is not None

    async def go() -> int:
        async with session(app.database_url) as conn:
            return await outbox.replay(conn, start, list(endpoints or configured), delivered)

    count = run(go())
    print_report(fmt, {"pending_again": count}, f"{count} deliveries pending again")
