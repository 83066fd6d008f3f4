"""The dispatcher's port to its storage: every read and write a dial run makes, as a Protocol.

Each method is one short transaction of its own (or none). `PgDispatchStore` (pg_store) is the
real one, on PostgreSQL, shared by every process; `MemoryDispatchStore` (memory_store) keeps
the same state machine and limiter arithmetic in memory, for fast tests of the claim loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from dialer.calls import CallEvent
from dialer.campaigns import Campaign
from dialer.dispatch.claim import Claim, Claimed, DialVerdict
from dialer.dispatch.limiter import AccountLimits
from dialer.policy.due import FirstInLine
from dialer.providers.base import Pace
from dialer.settle import Settlement


@dataclass(frozen=True)
class AccountHold:
    """A provider's 429 holds the account: no call is sent before `until`."""

    until: datetime
    left_s: float
    asked_s: float | None  # the Retry-After the provider gave, if any


@dataclass(frozen=True)
class CampaignFacts:
    """The selected campaigns as a claim round finds them."""

    active: frozenset[int]  # ids of those whose status is `active`
    stale: Mapping[int, list[str]]  # ids whose packs find a registry copy too old: why
    resting: Mapping[int, frozenset[str]] | None  # caller ids resting today (None: not read now)


@dataclass(frozen=True)
class IdleFacts:
    """What an idle claim loop needs to decide whether to wait or to end."""

    now: datetime  # the database's clock
    live: bool  # whether any attempt of the account's campaigns is live
    firsts: list[FirstInLine]  # per campaign and zone, the first waiting contact


@dataclass(frozen=True)
class DialRequest:
    """A reserved attempt ready to be committed as `dialing` (dispatch.claim.begin_dial)."""

    account: str
    attempt_id: int
    caller: str
    ring_s: int
    talk_s: int


class DispatchStore(Protocol):
    """What `dialer run` asks of the database; see each PgDispatchStore method for its SQL."""

    async def release_dial_cap_holds(self, campaign_ids: list[int], cap_figure: str) -> int:
        """Contacts held by a daily dial cap other than `cap_figure` are judged again."""
        ...

    async def claim(
        self,
        limits: AccountLimits,
        campaigns: list[Campaign],
        *,
        max_batch: int,
        horizon_s: float,
        dial_cap: int,
    ) -> Claim:
        """Reserve attempts within the account's shared rate and channels (dispatch.claim)."""
        ...

    async def wait_for_channel(
        self, account: str, unheard_s: float, heard_s: float, gather_s: float
    ) -> bool:
        """Until a live attempt of the account closes and `gather_s` more pass (True), or the
        wait's time passes (False): `heard_s` while closings are heard, `unheard_s` while not
        (Wakeups.wait)."""
        ...

    async def account_hold(self, account: str) -> AccountHold | None:
        """The account's hold by a provider's 429, if one lasts now."""
        ...

    async def campaign_facts(self, campaigns: list[Campaign], *, control: bool) -> CampaignFacts:
        """Complete campaigns that met their goal, then read which are active and which a
        stale registry copy stops; with `control`, trip failing campaigns' breakers and
        read the caller ids resting today first."""
        ...

    async def idle_facts(
        self, campaign_ids: list[int], active_ids: list[int], *, read_firsts: bool = True
    ) -> IdleFacts:
        """The clock, whether any attempt is live, and the first waiting contact per zone of
        the active campaigns (none read without `read_firsts`: the caller has them)."""
        ...

    async def work_left(self, campaign_ids: list[int]) -> bool:
        """Whether any contact is being dialed, or waits in a campaign not `completed`."""
        ...

    async def complete_finished(self, campaign_ids: list[int]) -> None:
        """Mark `completed` the campaigns whose every contact is final."""
        ...

    async def begin_dial(
        self, requests: list[DialRequest], early_s: Mapping[str, float], lead_s: float = 0.0
    ) -> dict[int, DialVerdict]:
        """Give request slots and commit `dialing` (a compare-and-set) where one opens within
        `early_s` and `lead_s` (dispatch.claim.begin_dial)."""
        ...

    async def record_accepted(self, accepted: list[tuple[int, str | None]]) -> None:
        """The provider accepted these attempts' calls, with their call ids."""
        ...

    async def settle(self, attempt_id: int, settlement: Settlement) -> bool:
        """Close the attempt as `settlement` says (settle.settle); False if it had moved on."""
        ...

    async def push_back_rate(self, account: str, retry_after: float | None) -> None:
        """A 429: every process on the account waits, and its rate slows."""
        ...

    async def note_request_ended(self, attempt_id: int, detail: str) -> None:
        """An ambiguous answer: the call may exist; note why, leave it live to reconcile."""
        ...

    async def pause_account(self, account: str, reason: str) -> None:
        """Pause every active campaign of the account, with the reason."""
        ...

    async def rest_account(self, account: str, reason: str, *, refused: bool) -> float:
        """The account's API failed: no new sends for a while (dispatch.account_health), in
        every process; the seconds it rests."""
        ...

    async def account_works(self, account: str) -> None:
        """The account's API worked again: its rest and its streak of rests end."""
        ...

    async def pause_campaign(self, campaign_id: int, reason: str) -> None:
        """Pause one campaign, with the reason."""
        ...

    async def withhold_redial(
        self, account: str, campaign: Campaign, item: Claimed, listed: list[CallEvent] | None
    ) -> str | None:
        """Judge a redial after an `unknown` attempt against the provider's list of calls to
        the number (`listed`; None: unreadable): None lets it go; else why it is withheld
        (its reservation is released, the contact put off, a late call adopted)."""
        ...

    def pace(self, account: str) -> Pace:
        """Wait for a request slot on the account's shared clock (for a look-up)."""
        ...
