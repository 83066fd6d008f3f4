"""Provider adapters: one module per kind, one small interface (see base.py)."""

from __future__ import annotations

from dialer.config import Account
from dialer.providers.base import Provider


def adapter_for(name: str, account: Account) -> Provider:
    """The adapter for an account of dialer.toml."""
    if account.kind == "sim":
        from dialer.providers.sim import SimProvider

        return SimProvider(name, account)
    from dialer.errors import ConfigError

    raise ConfigError(f"accounts.{name}: kind {account.kind!r} is not supported yet")
