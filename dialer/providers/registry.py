"""Every provider kind, in one place: kind -> (its account model, its adapter).

Adding a provider is one module (its account model beside its adapter), one line here, a fake
in tests/fakes and its tests. dialer.toml's `[accounts.NAME]` tables are read with these models
(chosen by `kind`), and every adapter is made here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, get_args

from pydantic import Field

from dialer import redaction
from dialer.providers.account import AccountBase
from dialer.providers.base import Provider
from dialer.providers.didforsale import DidforsaleAccount, DidforsaleProvider
from dialer.providers.exotel import ExotelAccount, ExotelProvider
from dialer.providers.plivo import PlivoAccount, PlivoProvider
from dialer.providers.sim import SimAccount, SimProvider
from dialer.providers.telecmi import TelecmiAccount, TelecmiProvider
from dialer.providers.telecmi_click2call import (
    TelecmiClick2CallAccount,
    TelecmiClick2CallProvider,
)
from dialer.providers.telnyx import TelnyxAccount, TelnyxProvider
from dialer.providers.twilio import TwilioAccount, TwilioProvider
from dialer.providers.vonage import VonageAccount, VonageProvider

# An adapter is made from its account's name and model (each takes its own model).
KINDS: dict[str, tuple[type[AccountBase], Callable[[str, Any], Provider]]] = {
    "sim": (SimAccount, SimProvider),
    "exotel": (ExotelAccount, ExotelProvider),
    "telecmi": (TelecmiAccount, TelecmiProvider),
    "telecmi-click2call": (TelecmiClick2CallAccount, TelecmiClick2CallProvider),
    "twilio": (TwilioAccount, TwilioProvider),
    "didforsale": (DidforsaleAccount, DidforsaleProvider),
    "telnyx": (TelnyxAccount, TelnyxProvider),
    "plivo": (PlivoAccount, PlivoProvider),
    "vonage": (VonageAccount, VonageProvider),
}

# One account of dialer.toml: the model its `kind` names.
Account = Annotated[
    SimAccount
    | ExotelAccount
    | TelecmiAccount
    | TelecmiClick2CallAccount
    | TwilioAccount
    | DidforsaleAccount
    | TelnyxAccount
    | PlivoAccount
    | VonageAccount,
    Field(discriminator="kind"),
]
# Every kind above is in the union, and nothing else (checked when the module loads).
assert set(get_args(get_args(Account)[0])) == {model for model, _ in KINDS.values()}


def adapter_for(name: str, account: AccountBase) -> Provider:
    """The adapter for an account of dialer.toml; its credentials are registered for masking
    everywhere (dialer.redaction) as soon as it exists."""
    _, adapter_type = KINDS[account.kind]
    adapter = adapter_type(name, account)
    redaction.remember(*adapter.secrets, users=adapter.auth_users)
    return adapter
