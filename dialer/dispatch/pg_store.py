"""The dispatcher's store on PostgreSQL: each DispatchStore method as short transactions on a
pooled connection, with the SQL of dialer.db, dispatch.claim, settle and campaign_control."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import asyncpg

from dialer.callbacks.screening import screen
from dialer.calls import CallEvent
from dialer.campaign_control import (
    complete_if_goal_reached,
    rest_tired_caller_ids,
    trip_breaker_if_failing,
)
from dialer.campaigns import Campaign, CampaignCache
from dialer.db import accounts as db_accounts
from dialer.db import attempts, contacts, server
from dialer.db import campaigns as stored
from dialer.db.campaigns import leave_active
from dialer.db.due import HELD_CALL_LIST
from dialer.db.types import Connection
from dialer.dispatch import claim as claiming
from dialer.dispatch.account_health import rest_s
from dialer.dispatch.claim import Claim, Claimed, DialVerdict, begin_dial, push_back_rate
from dialer.dispatch.limiter import AccountLimits
from dialer.dispatch.store import AccountHold, CampaignFacts, DialRequest, IdleFacts
from dialer.policy.retry import retry_delay
from dialer.providers.base import Pace
from dialer.reconcile import Unmatched, one_unclaimed, paced_on
from dialer.registries import stale_copies
from dialer.settle import Settlement, apply_event, record_accepted, settle
from dialer.wakeups import Wakeups

# A redial held back because the call list was unreadable: look again then.
LIST_RETRY = timedelta(seconds=30)


class PgDispatchStore:
    """DispatchStore on a pool; `cache` holds the campaigns settle reads."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        cache: CampaignCache,
        wakeups: Wakeups | None = None,
        statuses: Wakeups | None = None,
    ) -> None:
        self.pool = pool
        self.cache = cache
        # heard by the process's listener (runtime: wakeups.listen); without one, waits time out
        self.wakeups = wakeups or Wakeups()
        # campaigns' status changes (db.campaigns.CAMPAIGN_STATUS); without a listener, the
        # active campaigns are read at every round
        self.statuses = statuses or Wakeups()
        # per list of campaigns: which were active, read when statuses were told so many times
        self._active: dict[tuple[int, ...], tuple[int, frozenset[int]]] = {}

    async def release_dial_cap_holds(self, campaign_ids: list[int], cap_figure: str) -> int:
        async with self.pool.acquire() as conn:
            return await contacts.release_dial_cap_holds(conn, campaign_ids, cap_figure)

    async def claim(
        self,
        limits: AccountLimits,
        campaigns: list[Campaign],
        *,
        max_batch: int,
        horizon_s: float,
        dial_cap: int,
    ) -> Claim:
        async with self.pool.acquire() as conn:
            return await claiming.claim(
                conn,
                limits,
                campaigns,
                max_batch=max_batch,
                horizon_s=horizon_s,
                dial_cap=dial_cap,
            )

    async def wait_for_channel(
        self, account: str, unheard_s: float, heard_s: float, gather_s: float
    ) -> bool:
        return await self.wakeups.wait(account, unheard_s, heard_s, gather_s)

    async def account_hold(self, account: str) -> AccountHold | None:
        async with self.pool.acquire() as conn:
            row = await db_accounts.hold(conn, account)
        if row is None:
            return None
        return AccountHold(row["held_until"], row["left_s"], row["held_asked_s"])

    async def campaign_facts(self, campaigns: list[Campaign], *, control: bool) -> CampaignFacts:
        resting: dict[int, frozenset[str]] | None = {} if control else None
        async with self.pool.acquire() as conn:
            if resting is not None:
                for campaign in campaigns:
                    await trip_breaker_if_failing(conn, campaign.id)
                    resting[campaign.id] = await rest_tired_caller_ids(conn, campaign)
            completed = False
            for campaign in campaigns:  # before every claim: overshoot only in flight
                completed |= await complete_if_goal_reached(conn, campaign) is not None
            active = await self._active_among(conn, campaigns, read=control or completed)
            # A registry copy may turn too old during a long run (dialer.registries).
            stale = await stale_copies(conn, [c for c in campaigns if c.id in active])
        return CampaignFacts(frozenset(active), stale, resting)

    async def _active_among(
        self, conn: Connection, campaigns: list[Campaign], *, read: bool
    ) -> frozenset[int]:
        """Which of `campaigns` are active: read when asked to (`read`: every CONTROL_EVERY_S,
        or a goal was met), when their status changed since the last read (its notice heard),
        or when notices cannot be heard; else as last read. What a stale answer costs is a
        reservation released unsent: a send commits only while its campaign is active."""
        key = tuple(c.id for c in campaigns)
        told = self.statuses.times_told("")
        kept = self._active.get(key)
        if read or kept is None or kept[0] != told or not self.statuses.listening.is_set():
            kept = (told, frozenset(await stored.active_among(conn, list(key))))
            self._active[key] = kept
        return kept[1]

    async def idle_facts(
        self, campaign_ids: list[int], active_ids: list[int], *, read_firsts: bool = True
    ) -> IdleFacts:
        async with self.pool.acquire() as conn:
            now = await server.now(conn)
            live = await attempts.any_live(conn, campaign_ids)
            firsts = await contacts.first_due_per_zone(conn, active_ids) if read_firsts else []
        return IdleFacts(now, live, firsts)

    async def work_left(self, campaign_ids: list[int]) -> bool:
        async with self.pool.acquire() as conn:
            return await contacts.any_unfinished(conn, campaign_ids)

    async def complete_finished(self, campaign_ids: list[int]) -> None:
        async with self.pool.acquire() as conn:
            await stored.complete_finished(conn, campaign_ids)

    async def begin_dial(
        self, requests: list[DialRequest], early_s: Mapping[str, float], lead_s: float = 0.0
    ) -> dict[int, DialVerdict]:
        by_account: dict[str, list[tuple[int, str, int, int]]] = {}
        for r in requests:
            one = (r.attempt_id, r.caller, r.ring_s, r.talk_s)
            by_account.setdefault(r.account, []).append(one)
        verdicts: dict[int, DialVerdict] = {}
        async with self.pool.acquire() as conn:
            for account, ready in by_account.items():
                verdicts |= await begin_dial(conn, account, ready, early_s[account], lead_s)
        return verdicts

    async def record_accepted(self, accepted: list[tuple[int, str | None]]) -> None:
        async with self.pool.acquire() as conn:
            await record_accepted(conn, self.cache, accepted)

    async def settle(self, attempt_id: int, settlement: Settlement) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            return await settle(conn, self.cache, attempt_id, settlement)

    async def push_back_rate(self, account: str, retry_after: float | None) -> None:
        async with self.pool.acquire() as conn:
            await push_back_rate(conn, account, retry_after)

    async def note_request_ended(self, attempt_id: int, detail: str) -> None:
        async with self.pool.acquire() as conn:
            await attempts.note_request_ended(conn, attempt_id, detail)

    async def pause_account(self, account: str, reason: str) -> None:
        async with self.pool.acquire() as conn:
            await stored.pause_account(conn, account, reason)

    async def rest_account(self, account: str, reason: str, *, refused: bool) -> float:
        async with self.pool.acquire() as conn, conn.transaction():
            streak = await db_accounts.down_streak(conn, account)
            seconds = rest_s(streak, refused=refused)
            await db_accounts.rest(conn, account, seconds, reason)
        return seconds

    async def account_works(self, account: str) -> None:
        async with self.pool.acquire() as conn:
            await db_accounts.recovered(conn, account)

    async def pause_campaign(self, campaign_id: int, reason: str) -> None:
        async with self.pool.acquire() as conn:
            await leave_active(conn, campaign_id, "paused", reason)

    async def withhold_redial(
        self, account: str, campaign: Campaign, item: Claimed, listed: list[CallEvent] | None
    ) -> str | None:
        assert item.unplaced is not None
        unplaced = item.unplaced.attempt_id
        async with self.pool.acquire() as conn:
            verdict = await one_unclaimed(conn, account, listed)
            if isinstance(verdict, Unmatched) and verdict.count == 0:
                return None
            if isinstance(verdict, CallEvent) and screen(verdict).held:
                verdict = None  # a listed call that makes no sense: neither adopted nor ignored
            async with conn.transaction():
                retry_at: datetime | None = None
                if verdict is None:
                    reason = "not sent: the provider's call list could not be read to check"
                    reason += " that the last attempt's call was never placed"
                elif isinstance(verdict, Unmatched):
                    reason = f"not sent: the provider lists {verdict.count} calls to this number"
                    reason += " since the last attempt that no attempt claims"
                    retry_at = await server.now(conn) + (
                        retry_delay(campaign.spec.retry, "unknown", 1) or LIST_RETRY
                    )
                else:
                    reason = "not sent: the provider placed the last attempt's call late"
                    reason += f" ({verdict.provider_call_id}); that attempt adopts it"
                await settle(conn, self.cache, item.attempt_id, Settlement.released(reason))
                if isinstance(verdict, CallEvent):
                    await apply_event(conn, self.cache, account, unplaced, verdict, last_word=True)
                else:
                    await contacts.postpone_from_now(
                        conn,
                        item.contact_id,
                        retry_at,
                        LIST_RETRY,
                        HELD_CALL_LIST,
                        "the provider's call list, read before a redial",
                    )
        return reason

    def pace(self, account: str) -> Pace:
        return paced_on(self.pool, account)
