"""Provider adapters: one module per kind, one small interface (see base.py)."""

from __future__ import annotations

from dialer import redaction
from dialer.config import Account
from dialer.providers.base import Provider


def adapter_for(name: str, account: Account) -> Provider:
    """The adapter for an account of dialer.toml; its credentials are registered for masking
    everywhere (dialer.redaction) as soon as it exists."""
    adapter = _build(name, account)
    redaction.remember(*adapter.secrets, users=adapter.auth_users)
    return adapter


def _build(name: str, account: Account) -> Provider:
    if account.kind == "sim":
        from dialer.providers.sim import SimProvider

        return SimProvider(name, account)
    if account.kind == "exotel":
        from dialer.providers.exotel import ExotelProvider

        return ExotelProvider(name, account)
    if account.kind == "telecmi":
        from dialer.providers.telecmi import TelecmiProvider

        return TelecmiProvider(name, account)
    if account.kind == "telecmi-click2call":
        from dialer.providers.telecmi_click2call import TelecmiClick2CallProvider

        return TelecmiClick2CallProvider(name, account)
    if account.kind == "twilio":
        from dialer.providers.twilio import TwilioProvider

        return TwilioProvider(name, account)
    from dialer.providers.didforsale import DidforsaleProvider

    return DidforsaleProvider(name, account)
