"""`dialer migrate`."""

from __future__ import annotations

import click

from dialer.cli.context import AppContext, pass_app, run
from dialer.cli.output import format_option, print_rows
from dialer.db.connect import connect
from dialer.db.migrations import migrate as apply_migrations


@click.command()
@format_option
@pass_app
def migrate(app: AppContext, fmt: str) -> None:
    """Create or upgrade the database schema (safe to run twice, or from two machines at once)."""

    async def go() -> list[str]:
        conn = await connect(app.database_url)
        try:
            return await apply_migrations(conn)
        finally:
            await conn.close()

    applied = run(go())
    if fmt != "table":
        print_rows([{"applied": name} for name in applied], fmt, title="migrations applied")
    elif applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("schema is up to date")
