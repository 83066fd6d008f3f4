"""Whether this configuration can take a campaign, wherever one enters (a file loaded, the
API, a run): every account of its pool is in dialer.toml, each has a caller id to show, and
each one's provider can do what the campaign asks. Each refusal names the campaign, the key,
the account and what would do."""

from __future__ import annotations

from dialer.campaign_spec import CampaignSpec
from dialer.config import DialerConfig
from dialer.errors import ConfigError
from dialer.providers.registry import adapter_for


def _key(spec: CampaignSpec) -> str:
    """The campaign file's key that names its accounts."""
    return "accounts" if spec.accounts and len(spec.pool) > 1 else "account"


def refuse_unknown_account(spec: CampaignSpec, config: DialerConfig) -> None:
    """Every account a campaign names must be in dialer.toml (exit 2 / 422 naming it and the
    known ones), wherever it enters."""
    missing = [name for name in spec.pool if name not in config.accounts]
    if not missing:
        return
    known = ", ".join(sorted(config.accounts)) or "none"
    raise ConfigError(
        f"campaign {spec.name}: {_key(spec)}: account {missing[0]!r} is not in"
        f" {config.source or 'dialer.toml'} (accounts: {known})"
    )


def refuse_unsupported(spec: CampaignSpec, config: DialerConfig) -> None:
    """A campaign that asks an account of its pool for what the provider cannot do, or that
    has no caller id to show on one, is a configuration error (exit 2), at load and again at
    run (the accounts may have changed between)."""
    for name in spec.pool:
        account = config.accounts.get(name)
        if account is None:
            continue  # an account not configured yet is named when the campaign runs
        if not spec.caller_ids_for(name, account.caller_ids):
            raise ConfigError(
                f"campaign {spec.name}: caller_id: no number to show on account {name!r}"
                f" (give a plain number, an entry {{ number = …, account = {name!r} }}, or"
                f" caller_ids in [accounts.{name}])"
            )
        if spec.machine_detection == "off":
            continue
        adapter = adapter_for(name, account)
        why = adapter.cannot_detect_machines(spec.machine_detection)
        if why is not None:
            raise ConfigError(
                f"campaign {spec.name}: machine_detection = {spec.machine_detection!r} cannot"
                f" work on account {name!r} ({adapter.kind}) of {_key(spec)}: {why}; set"
                ' machine_detection = "off" or use accounts that detect'
            )
