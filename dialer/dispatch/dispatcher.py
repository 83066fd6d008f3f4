"""`dialer run`: claim, pace, send, record — for every account of the selected campaigns.

Per account, a claimer loop reserves attempts within the shared limits (see claim.py) and
starts one sender per attempt; the sender waits for its request slot, commits `dialing` (a
compare-and-set, batched across senders), sends the request with no transaction open, and
records the answer. The claimer decides when the run is over: exit 0 when the selected
campaigns have no work left, 3 when the window or deadline stops it with work left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from dialer.batching import Batcher
from dialer.callbacks.screening import screen
from dialer.calls import CallEvent, CallRequest
from dialer.campaign_control import (
    complete_if_goal_reached,
    rest_tired_caller_ids,
    trip_breaker_if_failing,
)
from dialer.campaigns import Campaign, CampaignCache
from dialer.db import accounts as db_accounts
from dialer.db import attempts, campaigns, contacts, server
from dialer.db.campaigns import leave_active
from dialer.db.due import HELD_CALL_LIST
from dialer.db.outage import DATABASE_FAILURES, TRANSIENT, DatabaseGone, Outage
from dialer.db.types import Connection
from dialer.dispatch.claim import (
    SEND,
    VOID,
    Claimed,
    DialAction,
    DialVerdict,
    begin_dial,
    claim,
    push_back_rate,
)
from dialer.dispatch.limiter import AccountLimits
from dialer.faults import fault_point
from dialer.metrics import AMBIGUOUS, RATE_LIMITED
from dialer.policy.caller_ids import choose_caller
from dialer.policy.due import next_due
from dialer.policy.retry import retry_delay
from dialer.providers.base import (
    Ambiguous,
    NotDialed,
    Provider,
    ProviderError,
    RateLimited,
    Rejected,
)
from dialer.providers.send_deadline import SendDeadline
from dialer.reconcile import Unmatched, one_unclaimed, paced_on
from dialer.registries import stale_copies
from dialer.settle import Settlement, apply_event, record_accepted, settle
from dialer.supervise import Supervisor
from dialer.waiting import dial_cap_figure, iso

log = logging.getLogger("dialer.run")

EXIT_DONE, EXIT_ERROR, EXIT_BAD_CONFIG, EXIT_WORK_LEFT = 0, 1, 2, 3
CLAIM_HORIZON_S = 0.5
MAX_BATCH = 200
IDLE_POLL_S = 0.5
BREAKER_EVERY_S = 2.0
MAX_WAITING = 2 * MAX_BATCH  # claimed but not yet sent, per process: claim no more than this
HOLD_CHECK_S = 5.0  # how often an idle claimer looks whether a 429 holds its account
HOLD_SAID_FROM_S = 10.0  # a hold this long or longer is said (shorter ones are a 429's pause)
HOLD_SAY_EVERY_S = 60.0
LIST_RETRY = timedelta(seconds=30)  # a redial held back because the call list was unreadable


@dataclass
class AccountRun:
    limits: AccountLimits
    adapter: Provider
    campaigns: list[Campaign]
    exit_code: int | None = None
    ended: str | None = None  # why its claim loop ended, as said in run's closing lines


@dataclass
class Dispatcher:
    pool: asyncpg.Pool
    session: aiohttp.ClientSession
    accounts: list[AccountRun]
    callback_base: str
    deadline: datetime | None = None
    wait: bool = False
    dial_cap: int = 2
    idle_s: float = 60.0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    account_failure: str | None = None
    # Campaigns this run stopped dialing because a registry copy turned too old (by id).
    refused: dict[int, str] = field(default_factory=dict)
    cache: CampaignCache = field(default_factory=CampaignCache)
    _waiting: dict[int, asyncio.Task] = field(default_factory=dict)
    _sending: set[asyncio.Task] = field(default_factory=set)
    _breaker_checked: float = 0.0
    _caller_use: dict[int, Counter[str]] = field(default_factory=dict)  # per campaign, here
    _resting: dict[int, frozenset[str]] = field(default_factory=dict)  # per campaign, today
    failure: BaseException | None = None
    outage: Outage = field(default_factory=Outage)
    _hold_checked: dict[str, float] = field(default_factory=dict)
    _hold_said: dict[str, float] = field(default_factory=dict)
    dialed: int = 0  # requests this process sent
    supervisor: Supervisor | None = None  # the process's health: a dead sender is a death
    stopped_by_signal: bool = False

    def __post_init__(self) -> None:
        self._begin = Batcher(self._flush_begin)
        self._accept = Batcher(self._flush_accept)

    # ---- the run ---------------------------------------------------------------------------

    async def run(self) -> int:
        await self.outage.retrying("releasing holds of another dial cap", self._release_cap_holds)
        loops = [
            asyncio.create_task(self._claim_loop(account), name=f"claimer:{account.limits.name}")
            for account in self.accounts
        ]
        try:
            await asyncio.gather(*loops)
        except DatabaseGone as exc:
            self.fail(exc)
        finally:
            self.stopping.set()
            for task in loops:
                task.cancel()
            await self._drain()
        if self.failure is not None:
            return EXIT_ERROR
        if self.account_failure or self.refused:
            return EXIT_BAD_CONFIG
        codes = [account.exit_code for account in self.accounts]
        return EXIT_WORK_LEFT if EXIT_WORK_LEFT in codes or None in codes else EXIT_DONE

    async def _release_cap_holds(self) -> None:
        """A cap change applies at once: contacts a daily dial cap other than this run's put
        off are judged again by the claim (held again if this cap holds them too)."""
        ids = [c.id for account in self.accounts for c in account.campaigns]
        async with self.pool.acquire() as conn:
            released = await contacts.release_dial_cap_holds(
                conn, ids, dial_cap_figure(self.dial_cap)
            )
        if released:
            log.info(
                "contacts held by another daily dial cap are judged again",
                extra={"contacts": released, "dial_cap": self.dial_cap},
            )

    def fail(self, error: BaseException) -> None:
        """A side task (the reconciler) died: stop as a failure, exit 1."""
        if self.failure is None:
            self.failure = error
        self.stop()

    def signalled(self) -> None:
        """SIGTERM/SIGINT: stop, and say so in the closing lines."""
        self.stopped_by_signal = True
        self.stop()

    def stop(self) -> None:
        """Stop claiming; requests in flight finish and are recorded."""
        if not self.stopping.is_set():
            log.info("stopping: no new claims, finishing requests in flight")
        self.stopping.set()

    async def _drain(self) -> None:
        """Release what was reserved but not sent; give requests in flight time to finish."""
        reserved = list(self._waiting)
        for task in list(self._waiting.values()):
            task.cancel()
        await asyncio.gather(*self._waiting.values(), return_exceptions=True)
        if self._sending:
            await asyncio.wait(self._sending, timeout=4.0)
        try:
            unsent = await self._release(reserved)
        except DATABASE_FAILURES as exc:  # the reconciler will release them
            log.error("could not release unsent reservations", extra={"error": repr(exc)})
            return
        if unsent:
            log.info("released unsent reservations", extra={"count": unsent})

    async def _release(self, attempt_ids: list[int]) -> int:
        """Reservations of this process that were never sent become `not_dialed`; one that was
        committed as `dialing` meanwhile is left alone (it was, or is being, sent)."""
        released = 0
        async with self.pool.acquire() as conn:
            for attempt_id in attempt_ids:
                async with conn.transaction():
                    released += await settle(
                        conn, self.cache, attempt_id, Settlement.released("stopped before sending")
                    )
        return released

    # ---- claiming --------------------------------------------------------------------------

    async def _claim_loop(self, account: AccountRun) -> None:
        """Claim rounds until the run is over. While the database is away, no round claims
        anything: it waits (db.outage) and tries again, up to the outage limit."""
        while not self.stopping.is_set():
            if self.failure:
                raise self.failure
            try:
                if await self._claim_round(account):
                    return
            except TRANSIENT as exc:
                await self.outage.wait_after(exc, "claiming")
                continue
            self.outage.recovered()
        account.exit_code = await self.outage.retrying(
            "finishing", lambda: self._final_code(account)
        )

    async def _claim_round(self, account: AccountRun) -> bool:
        """One round: claim and start senders, or decide to wait or to end (True)."""
        name = account.limits.name
        if self.deadline and datetime.now().astimezone() >= self.deadline:
            account.exit_code = await self._final_code(account)
            account.ended = "the --until/--for deadline was reached"
            log.info("deadline reached", extra={"account": name})
            return True
        if len(self._waiting) >= MAX_WAITING:  # senders are behind: let them catch up
            await self._pause(0.01)
            return False
        active = await self._active_campaigns(account)
        claimed: list[Claimed] = []
        if active:
            async with self.pool.acquire() as conn:
                claimed = await claim(
                    conn,
                    account.limits,
                    active,
                    max_batch=MAX_BATCH,
                    horizon_s=CLAIM_HORIZON_S,
                    dial_cap=self.dial_cap,
                )
        if claimed:
            started = time.monotonic()
            for item in claimed:
                log.info(
                    "attempt created",
                    extra={
                        "attempt": item.attempt_id,
                        "campaign_id": item.campaign_id,
                        "contact": item.contact_id,
                        "attempt_no": item.attempt_no,
                        "to": item.phone_e164,
                    },
                )
                self._start_sender(account, item, started)
            await self._pause(min(CLAIM_HORIZON_S / 2, max(c.send_in_s for c in claimed)))
            return False
        await self._say_hold(account)
        decision = await self._idle_decision(account, active)
        if decision is not None:
            account.exit_code = decision
            return True
        return False

    async def _say_hold(self, account: AccountRun) -> None:
        """While a provider's 429 holds the account (Retry-After), say so once a minute, with
        when it ends and what the provider asked for; the dashboard, `campaign show` and
        /metrics say it too."""
        name = account.limits.name
        now = time.monotonic()
        if now - self._hold_checked.get(name, -HOLD_CHECK_S) < HOLD_CHECK_S:
            return
        self._hold_checked[name] = now
        async with self.pool.acquire() as conn:
            hold = await db_accounts.hold(conn, name)
        if hold is None or hold["left_s"] < HOLD_SAID_FROM_S:
            return
        if now - self._hold_said.get(name, -HOLD_SAY_EVERY_S) < HOLD_SAY_EVERY_S:
            return
        self._hold_said[name] = now
        asked = hold["held_asked_s"]
        log.warning(
            "account held by the provider: no call is sent until it ends",
            extra={
                "account": name,
                "until": hold["held_until"].isoformat(timespec="seconds"),
                "left_s": round(hold["left_s"]),
                "retry_after_asked_s": round(asked) if asked is not None else None,
            },
        )

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=max(0.0, seconds))

    async def _active_campaigns(self, account: AccountRun) -> list[Campaign]:
        """The account's selected campaigns that are `active` right now (pause takes effect here
        and in the send compare-and-set). Trips the circuit breaker every few seconds."""
        async with self.pool.acquire() as conn:
            if time.monotonic() - self._breaker_checked > BREAKER_EVERY_S:
                self._breaker_checked = time.monotonic()
                for campaign in account.campaigns:
                    await trip_breaker_if_failing(conn, campaign.id)
                    self._resting[campaign.id] = await rest_tired_caller_ids(conn, campaign)
            for campaign in account.campaigns:  # before every claim: overshoot only in flight
                await complete_if_goal_reached(conn, campaign)
            active = await campaigns.active_among(conn, [c.id for c in account.campaigns])
            # A registry copy may turn too old during a long run (dialer.registries).
            stale = await stale_copies(conn, [c for c in account.campaigns if c.id in active])
        for campaign in account.campaigns:
            if campaign.id in stale and campaign.id not in self.refused:
                message = f"campaign {campaign.name}: " + "; ".join(stale[campaign.id])
                log.error("campaign no longer dialed", extra={"reason": message})
                self.refused[campaign.id] = message
        return [c for c in account.campaigns if c.id in active and c.id not in self.refused]

    async def _idle_decision(self, account: AccountRun, active: list[Campaign]) -> int | None:
        """Nothing claimed: exit (with a code) or wait until something may become due."""
        ids = [c.id for c in active]
        async with self.pool.acquire() as conn:
            now = await server.now(conn)
            live = await attempts.any_live(conn, [c.id for c in account.campaigns])
            firsts = await contacts.first_due_per_zone(conn, ids)
        if self._waiting or self._sending:  # our own claims are still being sent
            await self._pause(0.05)
            return None
        if not firsts:
            if self.wait and live:
                await self._pause(0.2)
                return None
            if not live:
                await self._mark_completed(account)
            if await self._work_left(account):
                account.ended = "no contact may be dialed again without a change"
                if live:
                    account.ended += " (calls in flight settle without this run; --wait waits)"
                return EXIT_WORK_LEFT
            account.ended = "every contact is final"
            return EXIT_DONE
        due = next_due(firsts, {c.id: c.rules for c in active}, now)
        next_due_at = due[0] if due else None
        limit = self.deadline or (now + timedelta(seconds=self.idle_s))
        if next_due_at is None or next_due_at > limit:
            if self.wait and live:
                await self._pause(0.2)
                return None
            log.info(
                "nothing more to dial in this run",
                extra={"account": account.limits.name, "next_due": next_due_at, "limit": limit},
            )
            account.ended = (
                f"the next contact is due at {iso(next_due_at)}, after this run's limit"
                f" ({iso(limit)})"
                if next_due_at is not None
                else "no waiting contact's calling window opens again"
            )
            return EXIT_WORK_LEFT
        await self._pause(min(IDLE_POLL_S, max(0.05, (next_due_at - now).total_seconds())))
        return None

    async def _work_left(self, account: AccountRun) -> bool:
        async with self.pool.acquire() as conn:
            return await contacts.any_unfinished(conn, [c.id for c in account.campaigns])

    async def _final_code(self, account: AccountRun) -> int:
        return EXIT_WORK_LEFT if await self._work_left(account) else EXIT_DONE

    async def _mark_completed(self, account: AccountRun) -> None:
        async with self.pool.acquire() as conn:
            await campaigns.complete_finished(conn, [c.id for c in account.campaigns])

    # ---- sending ---------------------------------------------------------------------------

    def _caller_for(self, campaign: Campaign, item: Claimed) -> str | None:
        """The caller id this attempt shows (policy.caller_ids), counted as used."""
        spec = campaign.spec
        usage = self._caller_use.setdefault(campaign.id, Counter())
        caller = choose_caller(
            spec.caller_id_policy,
            spec.caller_ids,
            item.phone_e164,
            first=item.first_caller,
            usage=usage,
            resting=self._resting.get(campaign.id, frozenset()),
            attempt_id=item.attempt_id,
        )
        if caller is not None:
            usage[caller] += 1
        return caller

    def _start_sender(self, account: AccountRun, item: Claimed, started: float) -> None:
        task = asyncio.create_task(self._wait_then_send(account, item, started))
        self._waiting[item.attempt_id] = task
        task.add_done_callback(lambda done: self._sender_done(item.attempt_id, done))

    def _sender_done(self, attempt_id: int, task: asyncio.Task) -> None:
        """A sender that died (database gone, a bug) stops the whole run: exit non-zero rather
        than limp on. Its attempt stays for the reconciler."""
        self._waiting.pop(attempt_id, None)
        error = None if task.cancelled() else task.exception()
        if error is None:
            return
        log.error("sender failed; stopping", extra={"attempt": attempt_id, "error": repr(error)})
        self.fail(error)  # first: the run says its own cause (a database gone past its limit)
        if self.supervisor is not None:  # /healthz and the exit name it too
            self.supervisor.died(f"sender of attempt {attempt_id}", error)

    async def _wait_then_send(self, account: AccountRun, item: Claimed, started: float) -> None:
        await asyncio.sleep(max(0.0, started + item.send_in_s - time.monotonic()))
        campaign = next(c for c in account.campaigns if c.id == item.campaign_id)
        if item.unplaced is not None and not await self._redial_may_go(account, campaign, item):
            self._waiting.pop(item.attempt_id, None)
            return
        caller = self._caller_for(campaign, item)
        if caller is None:  # every number of the campaign rests today: show none
            self._waiting.pop(item.attempt_id, None)
            reason = "every caller id is resting today (answer rate below rest_caller_id_below)"
            await self._close(item.attempt_id, Settlement.released(reason))
            await self._with_conn(
                "pausing a campaign", lambda conn: leave_active(conn, campaign.id, "paused", reason)
            )
            return
        while True:
            # The compare-and-set commits `dialing`: once it ran, the request must be sent even
            # if this task is cancelled meanwhile (SIGTERM), so it is shielded and awaited.
            # The send window starts before the commit's transaction does (send_deadline).
            deadline = SendDeadline()
            request = (
                account.limits.name,
                item.attempt_id,
                caller,
                campaign.ring_timeout_s,
                campaign.max_duration_s,
            )
            pending = asyncio.ensure_future(self._begin.submit(request))
            try:
                verdict = await asyncio.shield(pending)
            except asyncio.CancelledError:
                with contextlib.suppress(*TRANSIENT):  # not committed, or left to reconcile
                    verdict = await pending
                    if verdict == SEND:
                        self._waiting.pop(item.attempt_id, None)
                        self.dialed += 1
                        sending = self._send(account, campaign, item, caller, deadline)
                        await self._send_tracked(sending)
                raise
            except TRANSIENT as exc:
                # Not committed, or committed with the answer lost: asking again is safe (the
                # compare-and-set then finds it no longer `reserved`, and nothing is sent).
                await self.outage.wait_after(exc, "committing an attempt as dialing")
                continue
            if verdict.action != DialAction.WAIT:
                break
            await asyncio.sleep(verdict.wait_s)  # its request slot is not open yet
        self._waiting.pop(item.attempt_id, None)
        if verdict == SEND:
            self.dialed += 1
        if verdict != SEND:
            await self._close(
                item.attempt_id, Settlement.released("not sent: paused or lease expired")
            )
            return
        fault_point("after-dialing-commit")
        await self._send_tracked(self._send(account, campaign, item, caller, deadline))

    async def _redial_may_go(self, account: AccountRun, campaign: Campaign, item: Claimed) -> bool:
        """The contact's last attempt ended `unknown` with no call id: just before the redial,
        read the provider's list of calls to the number once more (policy.late). A call placed
        since that no attempt claims is that attempt's, placed late: it is adopted, and the
        redial is released unsent. Two or more are never guessed between: no redial, the
        contact waits the campaign's `unknown` delay. A list that cannot be read now: no redial
        now, asked again shortly. A provider with no list: the redial goes (the span already
        kept it back, policy.late)."""
        assert item.unplaced is not None
        name = account.limits.name
        unplaced = item.unplaced.attempt_id
        try:
            listed = await account.adapter.find_placed(
                self.session, [item.unplaced], paced_on(self.pool, name)
            )
        except DATABASE_FAILURES:
            raise
        except Exception as exc:  # garbage from the provider, or a bug in reading it
            log.warning("call list look-up failed", extra={"account": name, "error": repr(exc)})
            listed = {unplaced: None}
        if unplaced not in listed:
            return True
        found = listed[unplaced]
        extra = {"attempt": item.attempt_id, "unknown_attempt": unplaced, "to": item.phone_e164}

        async def decide(conn: Connection) -> bool:
            verdict = await one_unclaimed(conn, name, found)
            if isinstance(verdict, Unmatched) and verdict.count == 0:
                return True
            if isinstance(verdict, CallEvent) and screen(verdict).held:
                verdict = None  # a listed call that makes no sense: neither adopted nor ignored
            async with conn.transaction():
                if verdict is None:
                    reason = "not sent: the provider's call list could not be read to check"
                    reason += " that the last attempt's call was never placed"
                    retry_at = None
                elif isinstance(verdict, Unmatched):
                    reason = f"not sent: the provider lists {verdict.count} calls to this number"
                    reason += " since the last attempt that no attempt claims"
                    retry_at = await self._unknown_delay_end(conn, campaign)
                else:
                    reason = "not sent: the provider placed the last attempt's call late"
                    reason += f" ({verdict.provider_call_id}); that attempt adopts it"
                    retry_at = None
                await settle(conn, self.cache, item.attempt_id, Settlement.released(reason))
                if isinstance(verdict, CallEvent):
                    await apply_event(conn, self.cache, name, unplaced, verdict, last_word=True)
                else:
                    await contacts.postpone_from_now(
                        conn,
                        item.contact_id,
                        retry_at,
                        LIST_RETRY,
                        HELD_CALL_LIST,
                        "the provider's call list, read before a redial",
                    )
            log.warning("redial withheld", extra=extra | {"reason": reason})
            return False

        async def once() -> bool:
            async with self.pool.acquire() as conn:
                return await decide(conn)

        return await self.outage.retrying("checking a redial against the call list", once)

    async def _unknown_delay_end(self, conn: Connection, campaign: Campaign):
        delay = retry_delay(campaign.spec.retry, "unknown", 1) or LIST_RETRY
        return await server.now(conn) + delay

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
    ) -> None:
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
            deadline.check()  # and again once the connection is ready (the session's hook)
            call_id = await account.adapter.place_call(self.session, request, deadline)
        except RateLimited as exc:
            log.warning("rate limited (429)", extra=extra | {"retry_after": exc.retry_after})
            delay = exc.retry_after
            RATE_LIMITED.labels(account.limits.name).inc()
            await self._with_conn(
                "recording a 429", lambda conn: push_back_rate(conn, account.limits.name, delay)
            )
            await self._close(item.attempt_id, Settlement.not_placed(f"429: {exc.detail}"))
        except NotDialed as exc:
            log.warning("not dialed", extra=extra | {"error": exc.detail})
            await self._close(item.attempt_id, Settlement.not_placed(exc.detail))
        except Rejected as exc:
            log.warning("rejected", extra=extra | {"error": exc.detail})
            if exc.account_wide:
                await self._close(item.attempt_id, Settlement.not_placed(exc.detail))
                await self._account_refused(account, exc.detail)
            else:
                rejected = Settlement("rejected", error=exc.detail, do_not_call=exc.do_not_call)
                await self._close(item.attempt_id, rejected)
        except (Ambiguous, ProviderError) as exc:
            # The call may exist: never resend; callbacks or the reconciler will settle it.
            log.warning("ambiguous answer, left to reconcile", extra=extra | {"error": exc.detail})
            AMBIGUOUS.labels(account.limits.name).inc()
            detail = exc.detail
            await self._with_conn(
                "recording an ambiguous answer",
                lambda conn: attempts.note_request_ended(conn, item.attempt_id, detail),
            )
        else:
            log.info("attempt accepted", extra=extra | {"call_id": call_id})
            await self.outage.retrying(
                "recording an accepted call",
                lambda: self._accept.submit((item.attempt_id, call_id)),
            )

    async def _with_conn(self, doing: str, operation) -> None:
        """Run `operation(conn)` on a pooled connection, riding out a database outage: the
        answer it records is kept in memory until the database takes it."""

        async def once() -> None:
            async with self.pool.acquire() as conn:
                await operation(conn)

        await self.outage.retrying(doing, once)

    async def _close(self, attempt_id: int, settlement: Settlement) -> None:
        async def once() -> None:
            async with self.pool.acquire() as conn, conn.transaction():
                await settle(conn, self.cache, attempt_id, settlement)

        doing = f"recording attempt {attempt_id} as {settlement.outcome}"
        await self.outage.retrying(doing, once)

    async def _account_refused(self, account: AccountRun, detail: str) -> None:
        """Bad credentials or no balance: pause the account's campaigns and stop, loudly."""
        reason = f"provider refused the account: {detail}"
        await self._with_conn(
            "pausing the account's campaigns",
            lambda conn: campaigns.pause_account(conn, account.limits.name, reason),
        )
        log.error("account refused; campaigns paused", extra={"account": account.limits.name})
        self.account_failure = f"account {account.limits.name}: {reason}"
        self.stop()

    async def _flush_begin(self, items: list[tuple[str, int, str, int, int]]) -> list[DialVerdict]:
        by_account: dict[str, list[tuple[int, str, int, int]]] = {}
        for account, attempt_id, caller, ring, talk in items:
            by_account.setdefault(account, []).append((attempt_id, caller, ring, talk))
        early = {a.limits.name: a.limits.early_s for a in self.accounts}
        verdicts: dict[int, DialVerdict] = {}
        async with self.pool.acquire() as conn:
            for account, ready in by_account.items():
                verdicts |= await begin_dial(conn, account, ready, early[account])
        return [verdicts.get(item[1], VOID) for item in items]

    async def _flush_accept(self, items: list[tuple[int, str | None]]) -> list[None]:
        async with self.pool.acquire() as conn:
            await record_accepted(conn, self.cache, items)
        return [None] * len(items)
