"""Sending claimed attempts: one task per attempt waits for its request slot, commits
`dialing` (a compare-and-set, batched across senders), sends the request with no transaction
open (spaced as its slot was, however late the commit came back), and records the answer; a
stop releases what was not sent and waits for what was.

A request that left is never sent again: once `dialing` is committed the send is shielded from
cancellation, and an ambiguous answer leaves the attempt live for callbacks or the reconciler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import aiohttp

from dialer.batching import GATHER_MOST, Batcher
from dialer.calls import CallRequest
from dialer.campaigns import Campaign
from dialer.db.outage import DATABASE_FAILURES, TRANSIENT, Outage
from dialer.dispatch.account_health import HealthWatch
from dialer.dispatch.account_run import AccountRun
from dialer.dispatch.callers import CallerChoice
from dialer.dispatch.claim import VOID, Claimed, DialAction, DialVerdict
from dialer.dispatch.limiter import DepartureSpacing
from dialer.dispatch.refusals import Refusal, refusal
from dialer.dispatch.store import DialRequest, DispatchStore
from dialer.faults import fault_point
from dialer.metrics import AMBIGUOUS, RATE_LIMITED
from dialer.providers.base import ProviderError
from dialer.providers.send_deadline import SendDeadline
from dialer.settle import Settlement

log = logging.getLogger("dialer.run")
DRAIN_S = 4.0  # how long a stop waits for requests in flight to be answered and recorded
# How far past `early_s` a commit may give slots (dispatch.claim.begin_dial's `lead_s`): the
# last commit's length, so that with the database far away the next commit finds the requests
# on their way, never more than this (what a process that dies between commit and send
# leaves to the reconciler as sent-or-not: this much of its account's rate).
LEAD_CAP_S = 0.5
# The sends whose request slots open within one such span of a claim commit `dialing` together:
# their senders ask at the span's start, one commit gives them all their slots, and each leaves
# on its own (spaced as its slot is). At 50 calls a second that is one commit for five calls
# instead of five (two statements each, the account's row locked each time); a process that
# dies just after such a commit leaves at most this span of its account's rate to the
# reconciler as sent-or-not, within LEAD_CAP_S.
SEND_SPAN_S = 0.1


class Sender:
    """The senders of one process, for every account of its run."""

    def __init__(
        self,
        store: DispatchStore,
        session: aiohttp.ClientSession,
        callback_base: str,
        outage: Outage,
        callers: CallerChoice,
        accounts: list[AccountRun],
        *,
        on_account_refused: Callable[[AccountRun, str, bool], None],
        on_death: Callable[[int, BaseException], None],
    ) -> None:
        self.store = store
        self.session = session
        self.callback_base = callback_base
        self.outage = outage
        self.callers = callers
        self.accounts = accounts
        self.early_s = {a.name: a.limits.early_s for a in accounts}
        self.spacing = {a.name: DepartureSpacing(a.limits) for a in accounts}
        self.health = HealthWatch()
        self.on_account_refused = on_account_refused
        self.on_death = on_death
        self.dialed = 0  # requests this process sent
        self.lead_s = 0.0  # how long the last `dialing` commit took (LEAD_CAP_S)
        self._waiting: dict[int, asyncio.Task] = {}  # claimed, not yet committed `dialing`
        self._sending: set[asyncio.Task] = set()  # sent, answer not yet recorded
        self._senders: set[asyncio.Task] = set()  # every attempt's task until it ends
        self._begin: Batcher[DialRequest, DialVerdict] = Batcher(self._flush_begin)
        # accepted calls leave a commit's span apart at most: their call ids are stored together
        self._accept: Batcher[tuple[int, str | None], None] = Batcher(
            self._flush_accept, gather_s=SEND_SPAN_S, most=GATHER_MOST
        )

    @property
    def waiting(self) -> int:
        """Attempts claimed by this process and not yet sent."""
        return len(self._waiting)

    @property
    def busy(self) -> bool:
        """Whether any claim of this process is still being sent or recorded."""
        return bool(self._waiting or self._sending)

    def start(
        self, account: AccountRun, item: Claimed, claimed_at: float, spans_from_s: float = 0.0
    ) -> None:
        """Send `item` once its request slot opens (`send_in_s` after `claimed_at`); its claim's
        sends are cut into spans (SEND_SPAN_S) from `spans_from_s`, the claim's first slot."""
        task = asyncio.create_task(self._wait_then_send(account, item, claimed_at, spans_from_s))
        self._waiting[item.attempt_id] = task
        self._senders.add(task)
        task.add_done_callback(lambda done: self._done(item.attempt_id, done))

    def _done(self, attempt_id: int, task: asyncio.Task) -> None:
        """A sender that died (database gone, a bug) stops the whole run: exit non-zero rather
        than limp on. Its attempt stays for the reconciler."""
        self._waiting.pop(attempt_id, None)
        self._senders.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            extra = {"attempt": attempt_id, "error": repr(error)}
            log.error("sender failed; stopping", extra=extra)
            self.on_death(attempt_id, error)

    async def drain(self) -> None:
        """Release what was reserved but not sent; give requests in flight DRAIN_S to be
        answered and recorded (a sender that fails meanwhile says so now, before the run's
        last lines), then cancel what is left: it is the reconciler's, as at any exit."""
        reserved = list(self._waiting)
        for task in list(self._waiting.values()):
            task.cancel()
        await asyncio.gather(*self._waiting.values(), return_exceptions=True)
        in_flight = self._senders | self._sending
        if in_flight:
            _, late = await asyncio.wait(in_flight, timeout=DRAIN_S)
            if late:
                log.warning(
                    "requests still unanswered or unrecorded at the stop: the reconciler's",
                    extra={"count": len(late)},
                )
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        try:
            unsent = 0
            for attempt_id in reserved:
                # only a `reserved` one is released: one committed `dialing` meanwhile was, or
                # is being, sent (TRANSITIONS: a release only ever closes `reserved`)
                reason = "stopped before sending"
                unsent += await self.store.settle(attempt_id, Settlement.released(reason))
        except DATABASE_FAILURES as exc:  # the reconciler will release them
            log.error("could not release unsent reservations", extra={"error": repr(exc)})
            return
        if unsent:
            log.info("released unsent reservations", extra={"count": unsent})

    async def _wait_then_send(
        self, account: AccountRun, item: Claimed, claimed_at: float, spans_from_s: float
    ) -> None:
        # ask at the start of the span its slot falls in, one commit ahead: the senders of that
        # span ask together, and one commit gives each its slot on time. A claim's spans start
        # at its first slot: a claim of a span's worth of sends commits once, wherever its
        # slots fall on the clock (cut from the claim's commit, most claims took two)
        into_claim = math.floor((item.send_in_s - spans_from_s) / SEND_SPAN_S) * SEND_SPAN_S
        span_start = spans_from_s + into_claim
        due = claimed_at + span_start - self.lead_s
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        campaign = account.campaign(item.campaign_id)
        if item.unplaced is not None and not await self._redial_may_go(account, campaign, item):
            self._waiting.pop(item.attempt_id, None)
            return
        caller = self.callers.choose(campaign, item, account.name, account.caller_ids)
        if caller is None:  # every number of the campaign rests today: show none
            self._waiting.pop(item.attempt_id, None)
            reason = "every caller id is resting today (answer rate below rest_caller_id_below)"
            await self._close(item.attempt_id, Settlement.released(reason))
            await self.outage.retrying(
                "pausing a campaign", lambda: self.store.pause_campaign(campaign.id, reason)
            )
            return
        request = DialRequest(
            account.name, item.attempt_id, caller, campaign.ring_timeout_s, campaign.max_duration_s
        )
        while True:
            # The compare-and-set commits `dialing`: once it ran, the request must be sent even
            # if this task is cancelled meanwhile (SIGTERM), so it is shielded and awaited.
            # The send window starts before the commit's transaction does (send_deadline).
            deadline = SendDeadline()
            pending = self._begin.submit(request)
            try:
                verdict = await asyncio.shield(pending)
            except asyncio.CancelledError:
                with contextlib.suppress(*TRANSIENT):  # not committed, or left to reconcile
                    verdict = await pending
                    if verdict.action == DialAction.SEND:
                        self._waiting.pop(item.attempt_id, None)
                        self.dialed += 1
                        sending = self._send(
                            account, campaign, item, caller, deadline, verdict.wait_s
                        )
                        await self._send_tracked(sending)
                raise
            except TRANSIENT as exc:
                # Not committed, or committed with the answer lost: asking again is safe (the
                # compare-and-set then finds it no longer `reserved`, and nothing is sent).
                await self.outage.wait_after(exc, "committing an attempt as dialing")
                continue
            if verdict.action != DialAction.WAIT:
                break
            # its request slot is not open yet: ask again one commit ahead of it
            await asyncio.sleep(max(0.001, verdict.wait_s - self.lead_s))
        self._waiting.pop(item.attempt_id, None)
        if verdict.action != DialAction.SEND:
            await self._close(
                item.attempt_id, Settlement.released("not sent: paused or lease expired")
            )
            return
        self.dialed += 1
        fault_point("after-dialing-commit")
        leave_s = verdict.wait_s
        await self._send_tracked(self._send(account, campaign, item, caller, deadline, leave_s))

    async def _redial_may_go(self, account: AccountRun, campaign: Campaign, item: Claimed) -> bool:
        """The contact's last attempt ended `unknown` with no call id: just before the redial,
        read the provider's list of calls to the number once more (policy.late). A call placed
        since that no attempt claims is that attempt's, placed late: it is adopted, and the
        redial is released unsent. Two or more are never guessed between: no redial, the
        contact waits the campaign's `unknown` delay. A list that cannot be read now: no redial
        now, asked again shortly. A provider with no list: the redial goes (the span already
        kept it back, policy.late)."""
        assert item.unplaced is not None
        unplaced = item.unplaced.attempt_id
        try:
            found = await account.adapter.find_placed(
                self.session, [item.unplaced], self.store.pace(account.name)
            )
        except DATABASE_FAILURES:
            raise
        except Exception as exc:  # garbage from the provider, or a bug in reading it
            log.warning(
                "call list look-up failed", extra={"account": account.name, "error": repr(exc)}
            )
            found = {unplaced: None}
        if unplaced not in found:
            return True
        listed = found[unplaced]
        reason = await self.outage.retrying(
            "checking a redial against the call list",
            lambda: self.store.withhold_redial(account.name, campaign, item, listed),
        )
        if reason is None:
            return True
        extra = {"attempt": item.attempt_id, "unknown_attempt": unplaced, "to": item.phone_e164}
        log.warning("redial withheld", extra=extra | {"reason": reason})
        return False

    async def _send_tracked(self, sending: Coroutine[Any, Any, None]) -> None:
        """Send and record as a task of its own: a stop waits for it instead of cancelling it."""
        sender = asyncio.create_task(sending)
        self._sending.add(sender)
        sender.add_done_callback(self._sending.discard)
        await asyncio.shield(sender)

    async def _send(
        self,
        account: AccountRun,
        campaign: Campaign,
        item: Claimed,
        caller: str,
        deadline: SendDeadline,
        leave_in_s: float = 0.0,
    ) -> None:
        """Send one committed attempt when its slot allows (`leave_in_s`, spaced as its slot
        was), and record the answer."""
        if leave_in_s > 0:  # committed ahead of its slot (LEAD_CAP_S)
            await asyncio.sleep(leave_in_s)
        request = CallRequest(
            attempt_id=item.attempt_id,
            to=item.phone_e164,
            caller_id=caller,
            callback_url=account.adapter.callback_url(self.callback_base, item.attempt_id),
            ring_timeout_s=campaign.ring_timeout_s,
            max_duration_s=campaign.max_duration_s,
            connect_to=campaign.spec.connect_to,
            agent_number=campaign.spec.agent_number,
            fields=item.fields,
            machine_detection=campaign.spec.machine_detection,
        )
        extra = {"attempt": item.attempt_id, "campaign": campaign.name, "to": item.phone_e164}
        try:
            spacing = self.spacing[account.name]
            held_s = spacing.reserve(time.monotonic())
            if held_s > 0:  # a late commit bunched it with the ones before (DepartureSpacing)
                await asyncio.sleep(held_s)
            deadline.admit = spacing.admit  # and as it really leaves, after any stall of ours
            deadline.check()  # and again once the connection is ready (the session's hook)
            call_id = await account.adapter.place_call(self.session, request, deadline)
        except ProviderError as exc:
            await self._refused(account, item, refusal(exc), extra)
        else:
            log.info("attempt accepted", extra=extra | {"call_id": call_id})
            await self.outage.retrying(
                "recording an accepted call",
                lambda: self._accept.submit((item.attempt_id, call_id)),
            )
            if self.health.worked(account.name):
                name = account.name
                await self.outage.retrying(
                    "recording an account at work", lambda: self.store.account_works(name)
                )
                log.warning("account works again: it gets its share", extra={"account": name})

    async def _refused(
        self, account: AccountRun, item: Claimed, said: Refusal, extra: dict[str, Any]
    ) -> None:
        """Record a refused or ambiguous request as dispatch.refusals says."""
        name = account.name
        if said.slows_account:
            log.warning(said.said, extra=extra | {"retry_after": said.retry_after})
            RATE_LIMITED.labels(name).inc()
            await self.outage.retrying(
                "recording a 429", lambda: self.store.push_back_rate(name, said.retry_after)
            )
        elif said.settlement is None:
            log.warning(said.said, extra=extra | {"error": said.detail})
            AMBIGUOUS.labels(name).inc()
            await self.outage.retrying(
                "recording an ambiguous answer",
                lambda: self.store.note_request_ended(item.attempt_id, said.detail),
            )
            if said.unsure and self.health.ambiguous(name):
                why = f"answers that may have placed a call: {said.detail}"
                await self._rest(account, why, refused=False)
            return
        else:
            log.warning(said.said, extra=extra | {"error": said.detail})
        assert said.settlement is not None  # every refusal but an ambiguous answer ends it
        await self._close(item.attempt_id, said.settlement)
        if said.unreachable and self.health.unreachable(name):
            await self._rest(account, said.detail, refused=False)
        if said.refuses_account:
            reason = f"provider refused the account: {said.detail}"
            if self.health.refused(name):
                await self._rest(account, reason, refused=True)
            await self._pause_alone(account, reason)

    async def _rest(self, account: AccountRun, reason: str, *, refused: bool) -> None:
        """The account's API failed: it gets no new sends for a while; its campaigns' other
        accounts take its share (dispatch.account_health)."""
        name = account.name
        seconds = await self.outage.retrying(
            "resting an account", lambda: self.store.rest_account(name, reason, refused=refused)
        )
        log.warning(
            "account resting: its API failed; the campaigns' other accounts take its share",
            extra={"account": name, "seconds": round(seconds, 1), "reason": reason},
        )

    async def _pause_alone(self, account: AccountRun, reason: str) -> None:
        """The provider refused the account (credentials, balance): a campaign that has no
        other account in this run is paused with the reason, and if every one of this
        account's campaigns is, the run stops (exit 2) instead of failing its contacts."""
        name = account.name
        others = {a.name for a in self.accounts if a.name != name}
        alone = [c for c in account.campaigns if not set(c.accounts) & others]
        if len(alone) == len(account.campaigns):
            await self.outage.retrying(
                "pausing the account's campaigns", lambda: self.store.pause_account(name, reason)
            )
            log.error("account refused; campaigns paused", extra={"account": name})
        else:
            for campaign in alone:
                await self.outage.retrying(
                    "pausing a campaign", partial(self.store.pause_campaign, campaign.id, reason)
                )
            log.error(
                "account refused; its campaigns dial through their other accounts",
                extra={"account": name, "paused": [c.name for c in alone]},
            )
        self.on_account_refused(account, reason, len(alone) == len(account.campaigns))

    async def _close(self, attempt_id: int, settlement: Settlement) -> None:
        doing = f"recording attempt {attempt_id} as {settlement.outcome}"
        await self.outage.retrying(doing, lambda: self.store.settle(attempt_id, settlement))

    async def _flush_begin(self, requests: list[DialRequest]) -> list[DialVerdict]:
        started = time.monotonic()
        reach = min(LEAD_CAP_S, self.lead_s + SEND_SPAN_S)  # the span's slots, given at once
        verdicts = await self.store.begin_dial(requests, self.early_s, reach)
        self.lead_s = min(LEAD_CAP_S, time.monotonic() - started)
        return [verdicts.get(r.attempt_id, VOID) for r in requests]

    async def _flush_accept(self, accepted: list[tuple[int, str | None]]) -> list[None]:
        await self.store.record_accepted(accepted)
        return [None] * len(accepted)
