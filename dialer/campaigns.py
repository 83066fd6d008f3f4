"""Campaigns as the dialing code sees them: the stored spec plus its derived rules, cached.

A campaign's spec cannot change once it has dialed (the loader refuses), so caching it for the
life of a process is safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

import asyncpg

from dialer.campaign_spec import CampaignSpec
from dialer.db import campaigns as stored
from dialer.db.types import Connection
from dialer.durations import parse_duration
from dialer.policy.window import CallingRules

SETTLE_GRACE = timedelta(seconds=60)  # extension when a provider says a call is still live


@dataclass(frozen=True)
class Campaign:
    id: int
    name: str
    account: str
    spec: CampaignSpec
    rules: CallingRules

    @property
    def accounts(self) -> list[str]:
        """The accounts it dials through (its pool), the primary first: the stored
        campaign's `account` column, then the rest of the spec's pool."""
        rest = [a for a in self.spec.pool if a not in (self.account, self.spec.account)]
        return [self.account, *rest]

    @cached_property
    def ring_timeout_s(self) -> int:
        return int(parse_duration(self.spec.ring_timeout).total_seconds())

    @cached_property
    def max_duration_s(self) -> int:
        return int(parse_duration(self.spec.max_call_duration).total_seconds())

    @property
    def settle_budget(self) -> timedelta:
        """How long after sending an attempt may go without its final event."""
        return timedelta(seconds=self.ring_timeout_s + self.max_duration_s) + self.grace

    @property
    def detects_machines(self) -> bool:
        """Whether its calls ask the provider who answered (machine_detection)."""
        return self.spec.machine_detection != "off"

    @cached_property
    def grace(self) -> timedelta:
        return parse_duration(self.spec.settle_grace)


class CampaignCache:
    def __init__(self) -> None:
        self._by_id: dict[int, Campaign] = {}

    async def get(self, conn: Connection, campaign_id: int) -> Campaign:
        campaign = self._by_id.get(campaign_id)
        if campaign is None:
            row = await stored.by_id(conn, campaign_id)
            if row is None:
                raise LookupError(f"campaign {campaign_id} is not in the database")
            campaign = from_row(row)
            self._by_id[campaign_id] = campaign
        return campaign


def from_row(row: asyncpg.Record | Mapping[str, Any]) -> Campaign:
    spec = CampaignSpec.model_validate(row["spec"])
    return Campaign(row["id"], row["name"], row["account"], spec, CallingRules.of(spec))
