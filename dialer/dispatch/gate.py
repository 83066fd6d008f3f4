"""Which of an account's selected campaigns a claim round may dial: `active` ones (a pause
takes effect here and in the send's compare-and-set), not stopped by a stale registry copy;
every few seconds it also trips failing campaigns' breakers and rests tired caller ids."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dialer.campaigns import Campaign
from dialer.dispatch.callers import CallerChoice
from dialer.dispatch.store import DispatchStore

log = logging.getLogger("dialer.run")
CONTROL_EVERY_S = 2.0  # breakers and resting caller ids are judged this often


class CampaignGate:
    """The campaigns this run may dial now, and those it stopped dialing (`refused`)."""

    def __init__(
        self,
        store: DispatchStore,
        callers: CallerChoice,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.callers = callers
        self.clock = clock
        # Campaigns this run stopped dialing because a registry copy turned too old (by id).
        self.refused: dict[int, str] = {}
        self._controlled: dict[tuple[int, ...], float] = {}  # per account's campaigns

    async def open_campaigns(self, campaigns: list[Campaign]) -> list[Campaign]:
        """The campaigns among `campaigns` a claim may take contacts from now."""
        key = tuple(c.id for c in campaigns)
        control = self.clock() - self._controlled.get(key, float("-inf")) > CONTROL_EVERY_S
        if control:
            self._controlled[key] = self.clock()
        facts = await self.store.campaign_facts(campaigns, control=control)
        if facts.resting is not None:
            for campaign_id, numbers in facts.resting.items():
                self.callers.rest(campaign_id, numbers)
        for campaign in campaigns:
            if campaign.id in facts.stale and campaign.id not in self.refused:
                message = f"campaign {campaign.name}: " + "; ".join(facts.stale[campaign.id])
                log.error("campaign no longer dialed", extra={"reason": message})
                self.refused[campaign.id] = message
        return [c for c in campaigns if c.id in facts.active and c.id not in self.refused]
