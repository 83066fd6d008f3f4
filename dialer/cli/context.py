"""What every command needs: the configuration (loaded once, lazily) and a way to run async code."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from dialer.config import DialerConfig, load_config
from dialer.db.connect import resolve_database_url

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
            self._database_url = resolve_database_url(self.config)
        return self._database_url


pass_app = click.make_pass_decorator(AppContext, ensure=True)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine to completion on a fresh event loop."""
    return asyncio.run(coroutine)
