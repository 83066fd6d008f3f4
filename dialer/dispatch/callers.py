"""Which caller id each attempt of this process shows: the campaign's policy
(policy.caller_ids) over this process's use of each number and the numbers resting today."""

from __future__ import annotations

from collections import Counter

from dialer.campaigns import Campaign
from dialer.dispatch.claim import Claimed
from dialer.policy.caller_ids import choose_caller


class CallerChoice:
    """Per campaign: how often this process showed each number, and which rest today."""

    def __init__(self) -> None:
        self._use: dict[int, Counter[str]] = {}
        self._resting: dict[int, frozenset[str]] = {}

    def rest(self, campaign_id: int, numbers: frozenset[str]) -> None:
        """The campaign's numbers resting today (campaign_control.rest_tired_caller_ids)."""
        self._resting[campaign_id] = numbers

    def choose(
        self, campaign: Campaign, item: Claimed, account: str, own: list[str] | None = None
    ) -> str | None:
        """The caller id this attempt shows on `account` (CampaignSpec.caller_ids_for; `own`:
        the account's own numbers), counted as used; None if every one rests."""
        spec = campaign.spec
        usage = self._use.setdefault(campaign.id, Counter())
        caller = choose_caller(
            spec.caller_id_policy,
            spec.caller_ids_for(account, own),
            item.phone_e164,
            first=item.first_caller,
            usage=usage,
            resting=self._resting.get(campaign.id, frozenset()),
            attempt_id=item.attempt_id,
        )
        if caller is not None:
            usage[caller] += 1
        return caller
