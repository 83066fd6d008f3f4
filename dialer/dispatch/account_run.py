"""One account's part of a dial run: its limits, its adapter, its selected campaigns, and how
its claim loop ended."""

from __future__ import annotations

from dataclasses import dataclass

from dialer.campaigns import Campaign
from dialer.dispatch.limiter import AccountLimits
from dialer.providers.base import Provider


@dataclass
class AccountRun:
    limits: AccountLimits
    adapter: Provider
    campaigns: list[Campaign]
    caller_ids: list[str] | None = None  # its own numbers (dialer.toml), for pools
    exit_code: int | None = None
    ended: str | None = None  # why its claim loop ended, as said in run's closing lines

    @property
    def name(self) -> str:
        return self.limits.name

    def campaign(self, campaign_id: int) -> Campaign:
        return next(c for c in self.campaigns if c.id == campaign_id)
