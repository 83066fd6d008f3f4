"""What every command needs: the configuration (loaded once, lazily) and a way to run async code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from dialer.config import DialerConfig, database_url_from, load_config
from dialer.db.connect import resolve_database_url
from dialer.db.outage import CONNECTION_LOST

T = TypeVar("T")


@dataclass
class AppContext:
    config_option: str | None = None
    _config: DialerConfig | None = field(default=None, repr=False)
    _database_url: str | None = field(default=None, repr=False)

    @property
    def config(self) -> DialerConfig:
        if self._config is None:
            self._config = load_config(self.config_option)
        return self._config

    @property
    def database_url(self) -> str:
        if self._database_url is None:
            self._database_url = resolve_database_url(database_url_from(self.config))
        return self._database_url

    def region(self, given: str | None) -> str | None:
        """The region numbers written without +CC are read in: `--region`, else dialer.toml's
        default_region (None: such numbers are refused, named)."""
        return (given or self.config.default_region or "").upper() or None


pass_app = click.make_pass_decorator(AppContext, ensure=True)

# Every command that reads phone numbers takes the region of those written without +CC.
region_option = click.option(
    "--region",
    help="Region for numbers written without +CC (default: default_region in dialer.toml).",
)


# Ctrl-C came (set by the entry point's SIGINT handler): whatever the unwinding raises, the
# process ends as 130 with one line.
INTERRUPT = threading.Event()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine to completion on a fresh event loop. After Ctrl-C, the loose
    ends of the work it cut short (a query the server canceled, a future nobody awaits any
    more) are expected and not printed: the one line the entry point prints says it all. So
    are a lost connection's: asyncpg may leave a future of the lost connection's error that
    nobody reads (seen once in CI after a PostgreSQL restart mid-load), and the command says
    the loss itself (db.outage.connection_lost)."""
    with asyncio.Runner() as runner:
        runner.get_loop().set_exception_handler(quiet_loose_ends)
        return runner.run(coroutine)


def quiet_loose_ends(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler: everything, but the loose ends `run` names."""
    if INTERRUPT.is_set():
        return
    unread = context.get("message") == "Future exception was never retrieved"
    if unread and isinstance(context.get("exception"), CONNECTION_LOST):
        return
    loop.default_exception_handler(context)
