"""`dialer config ...`."""

from __future__ import annotations

import json

import click

from dialer.cli.context import AppContext, pass_app
from dialer.config import config_path, database_url_from
from dialer.db.connect import describe_url


@click.group()
def config() -> None:
    """Inspect the configuration (dialer.toml)."""


@config.command("show")
@pass_app
def show(app: AppContext) -> None:
    """Print the effective configuration as JSON, with every secret masked."""
    settings = app.config
    document = settings.model_dump(mode="json")
    url = database_url_from(settings)
    document["database_url"] = describe_url(url) if url else "(none: embedded PostgreSQL)"
    source = config_path(app.config_option)
    document = {"config_file": str(source) if source else None} | document
    click.echo(json.dumps(document, indent=2))
