"""`dialer run`: for every account of the selected campaigns, a claim loop that reserves
attempts within the shared limits and hands them to the senders, until the run is over.

The parts, one job each: the store (dispatch.store: every read and write, PostgreSQL or
memory), the gate (dispatch.gate: which campaigns may be dialed now), the senders
(dispatch.sender: slot, commit, send, record), the refusal mapping (dispatch.refusals), the
caller choice (dispatch.callers) and the exit decision (dispatch.ending). This module runs the
loops, stops and drains them, and says the run's exit code: 0 when the selected campaigns
have no work left, 3 when the window or deadline stops it with work left, 2 when a provider
refused an account or a registry copy turned stale, 1 when something died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

import aiohttp

from dialer.db.outage import TRANSIENT, DatabaseGone, Outage
from dialer.dispatch.account_run import AccountRun
from dialer.dispatch.callers import CallerChoice
from dialer.dispatch.claim import NOTHING
from dialer.dispatch.ending import (
    FIRSTS_BUSY_SHARE,
    End,
    ExitCode,
    Finish,
    Wait,
    decided_on_reused,
    finish,
    when_idle,
)
from dialer.dispatch.gate import CampaignGate
from dialer.dispatch.sender import Sender
from dialer.dispatch.store import DispatchStore, IdleFacts
from dialer.policy.window import CallingRules
from dialer.shared_answers import SharedAnswers
from dialer.supervise import Supervisor
from dialer.waiting import dial_cap_figure

log = logging.getLogger("dialer.run")

__all__ = ["AccountRun", "Dispatcher", "ExitCode"]

EXIT_DONE, EXIT_ERROR, EXIT_BAD_CONFIG, EXIT_WORK_LEFT = (
    ExitCode.DONE,
    ExitCode.ERROR,
    ExitCode.BAD_CONFIG,
    ExitCode.WORK_LEFT,
)
# A claim reserves the request slots opening within this, and the next comes up to half of it
# later: each claim takes the account's row once, so a longer horizon means fewer turns on it
# (at 20 ms from PostgreSQL, 1 s dials 119 attempts/s against 97 with 0.5 s, bench/latency.py).
# A reservation holds its channel slot for at most this long before its request is sent.
CLAIM_HORIZON_S = 1.0
MAX_BATCH = 200
MAX_WAITING = 2 * MAX_BATCH  # claimed but not yet sent, per process: claim no more than this
# Every channel of the account is live (or, with --wait, only calls in flight are left): its
# claim loop waits for a call to end, woken at once by PostgreSQL's notice as an attempt closes
# (dialer.wakeups), and looks again after this if no notice comes while the process hears
# them (a notice lost on a half-open connection costs a freed channel at most this), after
# CHANNEL_WAIT_S while it cannot (the database away, a pooler that keeps no LISTEN). It used to
# ask every 50 ms: with calls of minutes, 283 statements a settled call, nearly all of them
# asking (bench/RESULTS.md).
HEARD_WAIT_S = 5.0
CHANNEL_WAIT_S = 1.0
# Woken by a freed channel, the loop claims this much later, so that the channels freed in
# that moment are claimed together: one claim, one round of reads, and their sends in one span
# (dispatch.sender.SEND_SPAN_S). A channel idles up to this long more between two calls: a
# tenth of a percent of its time with calls of a minute and more.
CHANNEL_GATHER_S = 0.1
HOLD_CHECK_S = 5.0  # how often an idle claimer looks whether a 429 holds its account
HOLD_SAID_FROM_S = 10.0  # a hold this long or longer is said (shorter ones are a 429's pause)
HOLD_SAY_EVERY_S = 60.0


@dataclass
class Dispatcher:
    store: DispatchStore
    session: aiohttp.ClientSession
    accounts: list[AccountRun]
    callback_base: str
    deadline: datetime | None = None
    wait: bool = False
    dial_cap: int = 2
    idle_s: float = 60.0
    outage: Outage = field(default_factory=Outage)
    supervisor: Supervisor | None = None  # the process's health: a dead sender is a death
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    failure: BaseException | None = None
    account_failure: str | None = None
    stopped_by_signal: bool = False

    def __post_init__(self) -> None:
        callers = CallerChoice()
        self.gate = CampaignGate(self.store, callers)
        self.sender = Sender(
            self.store,
            self.session,
            self.callback_base,
            self.outage,
            callers,
            self.accounts,
            on_account_refused=self._account_refused,
            on_death=self._sender_died,
        )
        self._hold_checked: dict[str, float] = {}
        # the idle loops' last look-ups, per account (dispatch.ending.FIRSTS_BUSY_SHARE)
        self._looked_up = SharedAnswers(0.0, busy_share=FIRSTS_BUSY_SHARE)
        # per account: its campaigns and until when (time.monotonic()) the last look-up says
        # none of their contacts is due, so their claim is not asked (_nothing_due_yet)
        self._quiet: dict[str, tuple[list[int], float]] = {}
        self._hold_said: dict[str, float] = {}

    @property
    def refused(self) -> dict[int, str]:
        """Campaigns this run stopped dialing because a registry copy turned too old."""
        return self.gate.refused

    @property
    def dialed(self) -> int:
        """Requests this process sent."""
        return self.sender.dialed

    # ---- the run ---------------------------------------------------------------------------

    async def run(self) -> int:
        await self.outage.retrying("releasing holds of another dial cap", self._release_cap_holds)
        loops = [
            asyncio.create_task(self._claim_loop(account), name=f"claimer:{account.name}")
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
            await self.sender.drain()
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
        released = await self.store.release_dial_cap_holds(ids, dial_cap_figure(self.dial_cap))
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

    def _sender_died(self, attempt_id: int, error: BaseException) -> None:
        self.fail(error)  # first: the run says its own cause (a database gone past its limit)
        if self.supervisor is not None:  # /healthz and the exit name it too
            self.supervisor.died(f"sender of attempt {attempt_id}", error)

    def _account_refused(self, account: AccountRun, reason: str, alone: bool) -> None:
        """Bad credentials or no balance: the run ends with exit 2, at once if the account
        was its campaigns' only one (they are paused), else once the other accounts of their
        pools finished the work."""
        if self.account_failure is None:
            self.account_failure = f"account {account.name}: {reason}"
        if alone:
            self.stop()

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
        if self.deadline and datetime.now().astimezone() >= self.deadline:
            account.exit_code = await self._final_code(account)
            account.ended = "the --until/--for deadline was reached"
            log.info("deadline reached", extra={"account": account.name})
            return True
        if self.sender.waiting >= MAX_WAITING:  # senders are behind: let them catch up
            await self._pause(0.01)
            return False
        active = await self.gate.open_campaigns(account.campaigns)
        claim = NOTHING
        if active and not self._nothing_due_yet(account, active):
            claim = await self.store.claim(
                account.limits,
                active,
                max_batch=MAX_BATCH,
                horizon_s=CLAIM_HORIZON_S,
                dial_cap=self.dial_cap,
            )
        claimed = claim.attempts
        if claimed:
            started = time.monotonic()
            first_slot_s = min(c.send_in_s for c in claimed)
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
                self.sender.start(account, item, started, first_slot_s)
            if claim.channels_full:  # it took the last free channels: wait for one to free
                await self._wait_for_channel(account, CHANNEL_WAIT_S)
            else:
                await self._pause(min(CLAIM_HORIZON_S / 2, max(c.send_in_s for c in claimed)))
            return False
        if claim.channels_full:  # nothing to decide until a call ends: wait for one
            await self._wait_for_channel(account, CHANNEL_WAIT_S)
            return False
        await self._say_hold(account)
        step = await self._when_idle(account, active)
        if isinstance(step, Wait) and step.for_calls:
            await self._wait_for_channel(account, step.seconds)
            return False
        if isinstance(step, Wait):
            await self._pause(step.seconds)
            return False
        account.exit_code, account.ended = step.code, step.why
        return True

    async def _when_idle(self, account: AccountRun, active: list) -> Wait | End:
        """Nothing claimed: wait, or end with a code (dispatch.ending), on the last look-up of
        the first waiting contacts while it may serve (decided_on_reused), else a fresh one."""
        ids = [c.id for c in account.campaigns]
        active_ids = [c.id for c in active]
        rules = {c.id: c.rules for c in active}
        key = f"{account.name} {active_ids}"
        read = False

        async def look_up() -> IdleFacts:
            nonlocal read
            read = True
            return await self.store.idle_facts(ids, active_ids)

        facts = await self._looked_up.get(key, look_up)
        if not read:  # the clock and live calls are read each time; the firsts were kept
            now_and_live = await self.store.idle_facts(ids, active_ids, read_firsts=False)
            facts = replace(now_and_live, firsts=facts.firsts)
        step = self._idle_step(facts, rules)
        if not read and not decided_on_reused(step):
            self._looked_up.forget(key)
            facts = await self._looked_up.get(key, look_up)
            step = self._idle_step(facts, rules)
        if isinstance(step, Wait) and step.next_due_at and step.next_due_at > facts.now:
            due_in_s = (step.next_due_at - facts.now).total_seconds()
            self._quiet[account.name] = (active_ids, time.monotonic() + due_in_s)
        if not isinstance(step, Finish):
            if isinstance(step, End):
                log.info(
                    "nothing more to dial in this run",
                    extra={"account": account.name, "why": step.why},
                )
            return step
        if step.complete_first:
            await self.store.complete_finished(ids)
        return finish(work_left=await self.store.work_left(ids), live=facts.live)

    def _nothing_due_yet(self, account: AccountRun, active: list) -> bool:
        """Whether the last look-up of the first waiting contacts says that none of these
        campaigns' contacts is due yet. Their claim is not asked then (the idle rounds go on,
        reading the look-up again once it is no longer kept: 20 times what reading it took):
        with a million contacts waiting out their retry delays, each claim would walk all of
        them. A contact loaded or given a sooner retry meanwhile is claimed once a look-up
        read again says it is due."""
        campaigns, due_at = self._quiet.get(account.name, ([], 0.0))
        return campaigns == [c.id for c in active] and time.monotonic() < due_at

    def _idle_step(
        self, facts: IdleFacts, rules: Mapping[int, CallingRules]
    ) -> Wait | Finish | End:
        return when_idle(
            facts,
            rules,
            sending_here=self.sender.busy,
            wait_for_calls=self.wait,
            deadline=self.deadline,
            idle_s=self.idle_s,
        )

    async def _say_hold(self, account: AccountRun) -> None:
        """While a provider's 429 holds the account (Retry-After), say so once a minute, with
        when it ends and what the provider asked for; the dashboard, `campaign show` and
        /metrics say it too."""
        name = account.name
        now = time.monotonic()
        if now - self._hold_checked.get(name, -HOLD_CHECK_S) < HOLD_CHECK_S:
            return
        self._hold_checked[name] = now
        hold = await self.store.account_hold(name)
        if hold is None or hold.left_s < HOLD_SAID_FROM_S:
            return
        if now - self._hold_said.get(name, -HOLD_SAY_EVERY_S) < HOLD_SAY_EVERY_S:
            return
        self._hold_said[name] = now
        log.warning(
            "account held by the provider: no call is sent until it ends",
            extra={
                "account": name,
                "until": hold.until.isoformat(timespec="seconds"),
                "left_s": round(hold.left_s),
                "retry_after_asked_s": round(hold.asked_s) if hold.asked_s is not None else None,
            },
        )

    async def _wait_for_channel(self, account: AccountRun, unheard_s: float) -> None:
        """Until a live attempt of the account closes (dialer.wakeups) and CHANNEL_GATHER_S more
        pass (the calls ending with it are claimed together), the run stops, or HEARD_WAIT_S
        passes (`unheard_s` while this process cannot hear the notices)."""
        waiting = self.store.wait_for_channel(
            account.name, unheard_s, HEARD_WAIT_S, CHANNEL_GATHER_S
        )
        freed = asyncio.ensure_future(waiting)
        stopped = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({freed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (freed, stopped):
                task.cancel()
            await asyncio.gather(freed, stopped, return_exceptions=True)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=max(0.0, seconds))

    async def _final_code(self, account: AccountRun) -> ExitCode:
        work_left = await self.store.work_left([c.id for c in account.campaigns])
        return EXIT_WORK_LEFT if work_left else EXIT_DONE
