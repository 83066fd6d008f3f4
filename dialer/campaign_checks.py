"""Whether this configuration can take a campaign, wherever one enters (a file loaded, the
API, a run): its account is in dialer.toml, and that account's provider can do what the
campaign asks. Each refusal names the campaign, the key and what would do."""

from __future__ import annotations

from dialer.campaign_spec import CampaignSpec
from dialer.config import DialerConfig
from dialer.errors import ConfigError
from dialer.providers.registry import adapter_for


def refuse_unknown_account(spec: CampaignSpec, config: DialerConfig) -> None:
    """A campaign must name an account of dialer.toml (exit 2 / 422 naming it and the known
    ones), wherever it enters."""
    if spec.account in config.accounts:
        return
    known = ", ".join(sorted(config.accounts)) or "none"
    raise ConfigError(
        f"campaign {spec.name}: account {spec.account!r} is not in"
        f" {config.source or 'dialer.toml'} (accounts: {known})"
    )


def refuse_unsupported(spec: CampaignSpec, config: DialerConfig) -> None:
    """A campaign that asks its account for what the provider cannot do is a configuration
    error (exit 2), at load and again at run (the account may have changed between)."""
    if spec.machine_detection == "off" or spec.account not in config.accounts:
        return  # an account not configured yet is named when the campaign runs
    adapter = adapter_for(spec.account, config.accounts[spec.account])
    why = adapter.cannot_detect_machines(spec.machine_detection)
    if why is not None:
        raise ConfigError(
            f"campaign {spec.name}: machine_detection = {spec.machine_detection!r} cannot work"
            f" on account {spec.account!r} ({adapter.kind}): {why}; set machine_detection ="
            ' "off" or use an account that detects'
        )
