"""The dispatcher's store in memory, for fast tests of the claim loop without a database.

It keeps the rules that matter to dispatch with the same code as PostgreSQL does: the attempt
state machine (policy.states.TRANSITIONS: which states each change may leave), the limiter's
arithmetic (dispatch.limiter: request slots and channels), "due" (policy.due.due_at: retry
delay and calling window), the daily dial cap, one live call per number, and a campaign's
status. What it leaves to PostgreSQL and its tests: law packs and consent, registries,
do-not-call, retry policies (an attempt that ends other than `not_dialed` makes its contact
final), campaign goals and breakers, late-placement redials and webhook outboxes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from dialer.calls import CallEvent
from dialer.campaigns import Campaign
from dialer.dispatch import limiter
from dialer.dispatch.account_health import rest_s
from dialer.dispatch.claim import (
    CHANNELS_FULL,
    NOTHING,
    VOID,
    Claim,
    Claimed,
    DialAction,
    DialVerdict,
)
from dialer.dispatch.limiter import AccountLimits, LimiterState
from dialer.dispatch.store import AccountHold, CampaignFacts, DialRequest, IdleFacts
from dialer.policy.due import FirstInLine, due_at
from dialer.policy.states import LIVE, TRANSITIONS, AttemptState, ContactState
from dialer.providers.base import Pace
from dialer.settle import Settlement
from dialer.wakeups import Wakeups

LEASE = timedelta(seconds=15)
_UNFINISHED = (ContactState.PENDING, ContactState.DIALING)


@dataclass
class MemoryContact:
    id: int
    campaign_id: int
    phone_e164: str
    state: ContactState = ContactState.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    timezone: str | None = None
    outcome: str | None = None


@dataclass
class MemoryAttempt:
    id: int
    contact_id: int
    campaign_id: int
    account: str
    slot: int
    attempt_no: int
    lease_until: datetime
    state: AttemptState = AttemptState.RESERVED
    caller: str | None = None
    call_id: str | None = None
    error: str | None = None
    requested_at: datetime | None = None


@dataclass
class MemoryDispatchStore:
    """DispatchStore in memory. `clock` is the database's clock (UTC)."""

    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    contacts: dict[int, MemoryContact] = field(default_factory=dict)
    attempts: dict[int, MemoryAttempt] = field(default_factory=dict)
    status: dict[int, str] = field(default_factory=dict)  # campaign id -> status
    paused_why: dict[int, str] = field(default_factory=dict)
    account_of: dict[int, str] = field(default_factory=dict)  # campaign id -> its account
    limiters: dict[str, LimiterState] = field(default_factory=dict)
    holds: dict[str, AccountHold] = field(default_factory=dict)
    stale: dict[int, list[str]] = field(default_factory=dict)  # set by a test
    resting: dict[str, tuple[datetime, str]] = field(default_factory=dict)  # account -> until
    streaks: dict[str, int] = field(default_factory=dict)
    paused_accounts: set[str] = field(default_factory=set)  # an operator's pause
    calls: list[str] = field(default_factory=list)  # each method called, in order
    # A test's hook: raise this error from the next call of the named method (an outage).
    failing: dict[str, list[BaseException]] = field(default_factory=dict)
    # A test's hook: how long reading the first waiting contacts takes (a big campaign's)
    firsts_take_s: float = 0.0
    wakeups: Wakeups = field(default_factory=Wakeups)  # told as a live attempt closes
    _ids: int = 0

    def __post_init__(self) -> None:
        self.wakeups.listening.set()  # every closing is its own, so it tells of each one

    # ---- set-up -------------------------------------------------------------------------

    def add_account(self, limits: AccountLimits) -> None:
        now = self.clock()
        self.limiters[limits.name] = LimiterState(
            limits.aimed_rate_per_s, 1.0, limits.channels, now, None, 0, now
        )

    def add_campaign(self, campaign: Campaign, numbers: list[str]) -> list[int]:
        """The campaign, `active`, with a contact per number; the contacts' ids."""
        self.status[campaign.id] = "active"
        self.account_of[campaign.id] = campaign.account
        ids = []
        for number in numbers:
            contact = MemoryContact(self._next_id(), campaign.id, number)
            self.contacts[contact.id] = contact
            ids.append(contact.id)
        return ids

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _called(self, method: str) -> None:
        self.calls.append(method)
        errors = self.failing.get(method)
        if errors:
            raise errors.pop(0)

    def _state(self, account: str) -> LimiterState:
        return replace(self.limiters[account], now=self.clock())

    def live(self, account: str | None = None) -> list[MemoryAttempt]:
        """The live attempts (of one account)."""
        return [
            a
            for a in self.attempts.values()
            if a.state in LIVE and (account is None or a.account == account)
        ]

    # ---- DispatchStore ------------------------------------------------------------------

    async def release_dial_cap_holds(self, campaign_ids: list[int], cap_figure: str) -> int:
        self._called("release_dial_cap_holds")
        return 0

    async def claim(
        self,
        limits: AccountLimits,
        campaigns: list[Campaign],
        *,
        max_batch: int,
        horizon_s: float,
        dial_cap: int,
    ) -> Claim:
        self._called("claim")
        if not self.sendable(limits.name):
            return NOTHING
        state = self._state(limits.name)
        tokens = limiter.slots_within(state, horizon_s)
        live = self.live(limits.name)
        if len(live) >= state.channels:
            return CHANNELS_FULL
        waiting = sum(1 for a in live if a.state == AttemptState.RESERVED)
        free = limiter.free_channel_slots(
            state.channels,
            state.next_slot,
            {a.slot for a in live},
            len(live),
            limiter.claimable(tokens, waiting, max_batch, state.channels, len(live)),
        )
        want = len(free)
        claimed: list[Claimed] = []
        busy_numbers = {self.contacts[a.contact_id].phone_e164 for a in self.live()}
        for campaign in campaigns:
            for contact in self._due(campaign, state.now):
                if len(claimed) >= want:
                    break
                if contact.phone_e164 in busy_numbers or self._capped(contact, dial_cap):
                    continue
                busy_numbers.add(contact.phone_e164)
                send_in = state.ahead_s + (waiting + len(claimed)) * state.interval_s
                attempt = MemoryAttempt(
                    self._next_id(),
                    contact.id,
                    campaign.id,
                    limits.name,
                    free[len(claimed)],
                    contact.attempts + 1,
                    state.now + timedelta(seconds=send_in) + LEASE,
                )
                self.attempts[attempt.id] = attempt
                contact.state, contact.attempts = ContactState.DIALING, contact.attempts + 1
                claimed.append(
                    Claimed(
                        attempt.id,
                        contact.id,
                        campaign.id,
                        attempt.attempt_no,
                        contact.phone_e164,
                        {},
                        send_in,
                    )
                )
        if claimed:
            next_slot = limiter.next_slot_after(state.channels, free[: len(claimed)])
            self.limiters[limits.name] = replace(limiter.recovered(state), next_slot=next_slot)
        return Claim(claimed, channels_full=len(live) + len(claimed) >= state.channels)

    async def wait_for_channel(
        self, account: str, unheard_s: float, heard_s: float, gather_s: float
    ) -> bool:
        self._called("wait_for_channel")
        return await self.wakeups.wait(account, unheard_s, heard_s, gather_s)

    def _due(self, campaign: Campaign, now: datetime) -> list[MemoryContact]:
        if self.status.get(campaign.id) != "active":
            return []
        return [
            c
            for c in self.contacts.values()
            if c.campaign_id == campaign.id
            and c.state == ContactState.PENDING
            and (when := due_at(self._first(c), campaign.rules, now)) is not None
            and when <= now
        ]

    def _capped(self, contact: MemoryContact, dial_cap: int) -> bool:
        since = self.clock() - timedelta(hours=24)
        dials = [
            a
            for a in self.attempts.values()
            if self.contacts[a.contact_id].phone_e164 == contact.phone_e164
            and a.requested_at is not None
            and a.requested_at >= since
        ]
        return len(dials) >= dial_cap

    @staticmethod
    def _first(contact: MemoryContact) -> FirstInLine:
        return FirstInLine(
            contact.campaign_id,
            contact.timezone,
            contact.id,
            contact.phone_e164,
            None,
            contact.attempts,
            contact.next_attempt_at,
        )

    async def account_hold(self, account: str) -> AccountHold | None:
        self._called("account_hold")
        return self.holds.get(account)

    async def campaign_facts(self, campaigns: list[Campaign], *, control: bool) -> CampaignFacts:
        self._called("campaign_facts")
        active = frozenset(c.id for c in campaigns if self.status.get(c.id) == "active")
        stale = {i: why for i, why in self.stale.items() if i in active}
        return CampaignFacts(active, stale, {} if control else None)

    async def idle_facts(
        self, campaign_ids: list[int], active_ids: list[int], *, read_firsts: bool = True
    ) -> IdleFacts:
        self._called("idle_facts" if read_firsts else "idle_facts without firsts")
        if read_firsts and self.firsts_take_s:
            await asyncio.sleep(self.firsts_take_s)
        live = any(a.campaign_id in campaign_ids for a in self.live())
        firsts: dict[tuple[int, str | None], MemoryContact] = {}
        for c in self.contacts.values() if read_firsts else []:
            if c.campaign_id in active_ids and c.state == ContactState.PENDING:
                key = (c.campaign_id, c.timezone)
                best = firsts.get(key)
                if best is None or _sooner(c, best):
                    firsts[key] = c
        return IdleFacts(self.clock(), live, [self._first(c) for c in firsts.values()])

    async def work_left(self, campaign_ids: list[int]) -> bool:
        self._called("work_left")
        return any(
            c.campaign_id in campaign_ids
            and (
                c.state == ContactState.DIALING
                or (c.state == ContactState.PENDING and self.status[c.campaign_id] != "completed")
            )
            for c in self.contacts.values()
        )

    async def complete_finished(self, campaign_ids: list[int]) -> None:
        self._called("complete_finished")
        for campaign_id in campaign_ids:
            unfinished = any(
                c.campaign_id == campaign_id and c.state in _UNFINISHED
                for c in self.contacts.values()
            )
            if not unfinished and self.status.get(campaign_id) == "active":
                self.status[campaign_id] = "completed"

    async def begin_dial(
        self, requests: list[DialRequest], early_s: Mapping[str, float], lead_s: float = 0.0
    ) -> dict[int, DialVerdict]:
        self._called("begin_dial")
        verdicts: dict[int, DialVerdict] = {}
        by_account: dict[str, list[DialRequest]] = {}
        for request in requests:
            by_account.setdefault(request.account, []).append(request)
        sources = TRANSITIONS["begin_dial"].sources
        for account, ready_requests in by_account.items():
            if not self.sendable(account):
                verdicts |= {r.attempt_id: VOID for r in ready_requests}
                continue
            state = self._state(account)
            early = early_s[account]
            reach = early + lead_s
            ready = limiter.ready_slots(state.ahead_s, reach, state.interval_s, len(ready_requests))
            sent = 0
            for index, request in enumerate(ready_requests):
                attempt = self.attempts[request.attempt_id]
                if index >= ready:
                    wait_s = limiter.wait_for_slot(state, sent + (index - ready), early)
                    verdicts[attempt.id] = DialVerdict(DialAction.WAIT, wait_s)
                    continue
                if (
                    attempt.state in sources
                    and attempt.lease_until >= state.now
                    and self.status.get(attempt.campaign_id) == "active"
                ):
                    attempt.state, attempt.caller = AttemptState.DIALING, request.caller
                    attempt.requested_at = state.now
                    leave_s = limiter.leave_in(state, sent, early)
                    verdicts[attempt.id] = DialVerdict(DialAction.SEND, leave_s)
                    sent += 1
                else:
                    verdicts[attempt.id] = VOID
            if sent:
                self.limiters[account] = limiter.after_sends(state, sent)
        return verdicts

    async def record_accepted(self, accepted: list[tuple[int, str | None]]) -> None:
        self._called("record_accepted")
        for attempt_id, call_id in accepted:
            attempt = self.attempts[attempt_id]
            if attempt.state == AttemptState.DIALING:
                attempt.state, attempt.call_id = AttemptState.ACCEPTED, call_id

    async def settle(self, attempt_id: int, settlement: Settlement) -> bool:
        self._called("settle")
        allowed = TRANSITIONS[settlement.transition]
        if settlement.outcome not in allowed.targets:
            raise ValueError(f"{settlement.transition} cannot end an attempt {settlement.outcome}")
        attempt = self.attempts[attempt_id]
        if attempt.state not in allowed.sources:
            return False
        if attempt.state in LIVE:
            self.wakeups.heard(attempt.account)
        attempt.state, attempt.error = AttemptState(settlement.outcome), settlement.error
        contact = self.contacts[attempt.contact_id]
        if attempt.state == AttemptState.NOT_DIALED:
            contact.state, contact.attempts = ContactState.PENDING, contact.attempts - 1
        else:
            contact.state, contact.outcome = ContactState.DONE, attempt.state
        return True

    async def push_back_rate(self, account: str, retry_after: float | None) -> None:
        self._called("push_back_rate")
        state = limiter.after_429(self._state(account), retry_after, 0.5)
        self.limiters[account] = state
        until = state.tat
        left = (until - state.now).total_seconds()
        self.holds[account] = AccountHold(until, left, retry_after)

    async def note_request_ended(self, attempt_id: int, detail: str) -> None:
        self._called("note_request_ended")
        self.attempts[attempt_id].error = detail

    async def pause_account(self, account: str, reason: str) -> None:
        self._called("pause_account")
        for campaign_id, status in self.status.items():
            if self.account_of[campaign_id] == account and status == "active":
                self.status[campaign_id] = "paused"
                self.paused_why[campaign_id] = reason

    async def rest_account(self, account: str, reason: str, *, refused: bool) -> float:
        self._called("rest_account")
        seconds = rest_s(self.streaks.get(account, 0), refused=refused)
        self.streaks[account] = self.streaks.get(account, 0) + 1
        self.resting[account] = (self.clock() + timedelta(seconds=seconds), reason)
        return seconds

    async def account_works(self, account: str) -> None:
        self._called("account_works")
        self.streaks.pop(account, None)
        self.resting.pop(account, None)

    def sendable(self, account: str) -> bool:
        """Not paused by an operator, not resting after failures."""
        if account in self.paused_accounts:
            return False
        rest = self.resting.get(account)
        return rest is None or rest[0] <= self.clock()

    async def pause_campaign(self, campaign_id: int, reason: str) -> None:
        self._called("pause_campaign")
        self.status[campaign_id] = "paused"
        self.paused_why[campaign_id] = reason

    async def withhold_redial(
        self, account: str, campaign: Campaign, item: Claimed, listed: list[CallEvent] | None
    ) -> str | None:
        self._called("withhold_redial")
        return None  # never claimed here: the memory store makes no `unplaced` redials

    def pace(self, account: str) -> Pace:
        async def pace() -> None:
            return None

        return pace

    # ---- the provider's side, as a test plays it ---------------------------------------

    def finish(self, attempt_id: int, outcome: AttemptState = AttemptState.COMPLETED) -> bool:
        """A final callback: settle the attempt (as the callback receiver would)."""
        attempt = self.attempts[attempt_id]
        if attempt.state not in TRANSITIONS["settle"].sources:
            return False
        if attempt.state in LIVE:
            self.wakeups.heard(attempt.account)
        attempt.state = outcome
        contact = self.contacts[attempt.contact_id]
        contact.state, contact.outcome = ContactState.DONE, outcome
        return True


def _sooner(a: MemoryContact, b: MemoryContact) -> bool:
    if a.next_attempt_at is None or b.next_attempt_at is None:
        return a.next_attempt_at is None and b.next_attempt_at is not None
    return a.next_attempt_at < b.next_attempt_at
