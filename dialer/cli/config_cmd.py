"""`dialer config ...`."""

from __future__ import annotations

import json

import click

from dialer.cli.context import AppContext, pass_app
from dialer.config import config_path, database_url_from
from dialer.errors import ConfigError
from dialer.providers.registry import adapter_for
from dialer.redaction import describe_url, redact, remember, url_secrets
from dialer.runtime import adapters, callback_base, listen_address


@click.group()
def config() -> None:
    """Inspect the configuration (dialer.toml)."""


@config.command("show")
@pass_app
def show(app: AppContext) -> None:
    """Print the effective configuration as JSON, with every secret masked."""
    settings = app.config
    adapters(settings)  # registers every account's credentials (and derived tokens) for masking
    document = settings.model_dump(mode="json")
    url = database_url_from(settings)
    remember(*url_secrets(url or ""))
    document["database_url"] = describe_url(url) if url else "(none: embedded PostgreSQL)"
    for shown, hook in zip(document.get("webhooks", []), settings.webhooks, strict=True):
        shown["url"] = hook.shown_url
        shown["name"] = hook.endpoint
    source = config_path(app.config_option)
    document = {"config_file": str(source) if source else None} | document
    click.echo(redact(json.dumps(document, indent=2)))


@config.command("callback-url")
@click.argument("account")
@pass_app
def callback_url(app: AppContext, account: str) -> None:
    """Print the callback URL of ACCOUNT, with its token (derived from the account's secret).

    TeleCMI sends events to one URL set in its dashboard: paste this there. Other providers get
    it with every call. It is built on public_url (else the listen address); keep it private.
    """
    settings = app.config
    if account not in settings.accounts:
        raise ConfigError(f"no account {account!r} in {settings.source or 'dialer.toml'}")
    host, port = listen_address(settings, None, None)
    adapter = adapter_for(account, settings.accounts[account])
    click.echo(adapter.callback_url(callback_base(settings, host, port), None))
