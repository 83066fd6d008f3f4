"""The reconciler: closes what our own crashes and the providers' silences leave open.

- A reservation whose lease expired was never sent (the send is a compare-and-set on the lease):
  it becomes `not_dialed` and the contact may be dialed again.
- An attempt past its `settle_by` without a final event is first matched with events already
  stored under its provider call id (a callback that arrived before we knew the id), then looked
  up with the provider's status API where the adapter has one (batched, and paced by the
  account's shared rate budget). One sent with no call id back is looked for in the provider's
  list of calls to its number (Provider.find_placed), but only once its send window and the
  HTTP client's timeout are over (no request of it can still be on the way); the one listed
  call no attempt claims is adopted. Otherwise (or if the provider does not know) it is closed
  as `unknown`, freeing its channel; a fact that arrives later re-opens it
  (settle.reopen_if_unknown). It is never redialed because of that: `unknown` counts as an
  attempt and waits for the campaign's `unknown` delay.

One bad item never stops the rest: an attempt whose handling fails (a look-up answering
garbage, a value the database refuses) is logged with its id, counted in
`dialer_reconciler_failures`, and asked about again after LOOKUP_RETRY; looked-up events are
screened like callbacks, and one with absurd values is kept held, never applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import asyncpg

from dialer.callbacks.screening import screen
from dialer.calls import CallEvent, PlacedCall
from dialer.campaigns import CampaignCache
from dialer.db import accounts, attempts, events, turns
from dialer.db.types import Connection
from dialer.dispatch.claim import take_idle_slot, take_request_slot
from dialer.metrics import RECONCILE_FAILURES, RECONCILED
from dialer.policy.late import list_again_in, may_close_unknown
from dialer.policy.lookups import lookups_per_round
from dialer.policy.states import is_terminal
from dialer.providers.base import Pace, Provider
from dialer.providers.send_deadline import CLIENT_TIMEOUT, SEND_WINDOW
from dialer.settle import DETECTION_WAIT, Settlement, apply_event, settle

log = logging.getLogger("dialer.reconcile")
BATCH = 500


async def reconcile_once(
    pool: asyncpg.Pool,
    campaigns: CampaignCache,
    adapters: dict[str, Provider],
    session: aiohttp.ClientSession | None,
) -> Counter[str]:
    """One round. The database is read with one short connection, the providers are asked
    holding none (their look-ups wait for request slots and for HTTP), and each answer is
    applied on a connection of its own, in its own transaction."""
    actions: Counter[str] = Counter()
    async with pool.acquire() as conn:
        for attempt_id in await attempts.expired_reservations(conn, BATCH):
            async with conn.transaction():
                if await settle(
                    conn, campaigns, attempt_id, Settlement.released("reservation expired unsent")
                ):
                    actions["released"] += 1
        actions["settled_from_stored_events"] += await _adopt_orphan_events(conn, campaigns)
        silent = await attempts.silent(conn, BATCH, SEND_WINDOW, CLIENT_TIMEOUT)
        rates = await accounts.paced_rates(conn)
    by_account: dict[str, list[PlacedCall]] = {}
    held = {r["id"]: r["held_outcome"] for r in silent if r["held_outcome"]}
    waits = {r["id"]: r for r in silent if not r["provider_call_id"]}
    for row in silent:
        call = PlacedCall(
            row["id"],
            row["provider_call_id"],
            row["phone_e164"],
            row["requested_at"],
            placed_by=row["late_until"],
        )
        by_account.setdefault(row["account"], []).append(call)
    for account, calls in by_account.items():
        adapter = adapters.get(account)
        if adapter is not None:  # the oldest first, within the look-ups' share of the rate
            share = lookups_per_round(rates.get(account, 1.0), RECONCILE_EVERY.total_seconds())
            calls = calls[: share * adapter.calls_per_lookup]
        answers = await _ask_provider(pool, adapter, session, account, calls)
        if answers is None:  # the look-ups failed as a whole: ask about all of them later
            async with pool.acquire() as conn:
                for call in calls:
                    actions[await _ask_again_later(conn, call, "lookup_failed")] += 1
            continue
        unsent = [c for c in calls if not c.provider_call_id and c.attempt_id not in answers]
        if unsent:  # sent with no call id back: does the provider list a call to them?
            listed = await _ask_provider(pool, adapter, session, account, unsent, listing=True)
            if listed is None:
                listed = {c.attempt_id: None for c in unsent}
            async with pool.acquire() as conn:
                for call in unsent:
                    if call.attempt_id in listed:
                        answers[call.attempt_id] = await one_unclaimed(
                            conn, account, listed[call.attempt_id]
                        )
        for call in calls:
            async with pool.acquire() as conn:
                actions[
                    await _apply_answer(
                        conn, campaigns, account, call, answers, waits, held.get(call.attempt_id)
                    )
                ] += 1
    if session is not None:
        for account, adapter in adapters.items():
            if adapter.idle_lookups:
                rate = rates.get(account, 1.0)
                actions += await _spend_idle_rate(pool, campaigns, account, adapter, session, rate)
    actions = Counter({k: v for k, v in actions.items() if v})
    for action, count in actions.items():
        log.info("reconciled", extra={"action": action, "count": count})
        RECONCILED.labels(action).inc(count)
    return actions


async def _apply_answer(
    conn: Connection,
    campaigns: CampaignCache,
    account: str,
    call: PlacedCall,
    answers: dict,
    waits: dict[int, asyncpg.Record],
    held_outcome: str | None,
) -> str:
    """What the provider's answer about one silent attempt does to it (the action counted)."""
    if call.attempt_id in answers and answers[call.attempt_id] is None:
        # The provider could not answer now (429, 5xx, network): it may still know the call,
        # so `unknown` would be a guess. Ask again later.
        return await _ask_again_later(conn, call, "lookup_failed")
    try:
        answer = answers.get(call.attempt_id)
        waiting = waits.get(call.attempt_id)
        if waiting is not None and _may_still_be_placed(answer, waiting):
            # No call of it is listed yet, but one may still be placed: it keeps its channel
            # (policy.late) and the list is read again later.
            wait = list_again_in(waiting["lookups"], waiting["now"], waiting["late_until"])
            await attempts.list_again_in(conn, call.attempt_id, wait)
            return "waiting_for_late_placement"
        return await _resolve(conn, campaigns, account, call, answer, held_outcome)
    except (OSError, asyncpg.InterfaceError):
        raise  # the database itself is away: the round ends, the loop retries
    except Exception as exc:  # one bad item: logged, counted, asked about later
        log.error(
            "reconcile item failed",
            extra={"attempt": call.attempt_id, "account": account, "error": repr(exc)},
        )
        RECONCILE_FAILURES.labels("attempt").inc()
        return await _ask_again_later(conn, call, "failed_item")


async def _spend_idle_rate(
    pool: asyncpg.Pool,
    campaigns: CampaignCache,
    account: str,
    adapter: Provider,
    session: aiohttp.ClientSession,
    rate_per_s: float,
) -> Counter[str]:
    """While the account's request clock is idle, ask about the live calls most likely ended
    unheard (policy.lookups: the idle rate), one request slot at a time, each booked only if
    no dial is waiting for it. No connection is held while a slot or the provider is awaited."""
    actions: Counter[str] = Counter()
    async with pool.acquire() as conn:
        requests = max(1, int(rate_per_s * RECONCILE_EVERY.total_seconds()))
        limit = requests * adapter.calls_per_lookup
        # none while a dial waits for the clock: its next slot more than one interval away
        rows = await attempts.overdue_live(conn, account, limit, 1 / rate_per_s)
    calls = [
        PlacedCall(r["id"], r["provider_call_id"], r["phone_e164"], r["requested_at"]) for r in rows
    ]
    step = adapter.calls_per_lookup
    for start in range(0, len(calls), step):
        chunk = calls[start : start + step]
        async with pool.acquire() as conn:
            wait = await take_idle_slot(conn, account)
        if wait is None:
            break  # a dial wants the clock now: the rest wait for a later round
        await asyncio.sleep(wait)
        try:
            answers = await adapter.fetch_statuses(session, chunk, _booked_first(pool, account))
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError):
            raise
        except Exception as exc:
            log.warning("idle-rate look-up failed", extra={"account": account, "error": repr(exc)})
            RECONCILE_FAILURES.labels("lookup").inc()
            continue
        for call in chunk:
            answer = answers.get(call.attempt_id)
            if isinstance(answer, CallEvent):  # nothing else says anything about the call
                async with pool.acquire() as conn:
                    action = await _resolve(conn, campaigns, account, call, answer)
                actions[f"idle_rate_{action}"] += 1
    return actions


def _booked_first(pool: asyncpg.Pool, account: str) -> Pace:
    """A pace whose first request has its slot booked already; any further one waits for its
    own on the account's shared clock."""
    booked = [True]

    async def pace() -> None:
        if booked:
            booked.pop()
            return
        await paced_on(pool, account)()

    return pace


async def _adopt_orphan_events(conn: Connection, campaigns: CampaignCache) -> int:
    """Final events stored without an attempt (they came before the call id was recorded) are
    attached to their attempt now and applied."""
    settled = 0
    for row in await events.orphan_finals(conn, BATCH):
        async with conn.transaction():
            await events.attach(conn, row["id"], row["attempt_id"])
            if not is_terminal(row["status"]):
                continue
            campaign = await campaigns.get(conn, row["campaign_id"])
            if row["status"] == "completed" and campaign.detects_machines:
                # who answered is still to come (its callback, or the call resource)
                final = CallEvent("completed", "")
                await attempts.hold_final(conn, row["attempt_id"], final, DETECTION_WAIT)
            elif await settle(conn, campaigns, row["attempt_id"], Settlement(row["status"])):
                settled += 1
    return settled


async def _ask_provider(
    pool: asyncpg.Pool,
    adapter: Provider | None,
    session: aiohttp.ClientSession | None,
    account: str,
    calls: list[PlacedCall],
    *,
    listing: bool = False,
) -> dict | None:
    """What the provider says of each call (Provider.fetch_statuses), or, with `listing`,
    which calls it lists to each one's number (Provider.find_placed); every request paced on
    the account's shared clock. None when the look-ups failed as a whole (nothing is known
    either way)."""
    if adapter is None or session is None:
        return {}
    ask = adapter.find_placed if listing else adapter.fetch_statuses
    try:
        return await ask(session, calls, paced_on(pool, account))
    except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError):
        raise  # pacing needs the database: the round ends, the loop retries
    except Exception as exc:  # garbage from the provider, or a bug in reading it
        what = "call list look-up" if listing else "status look-up"
        log.warning(f"{what} failed", extra={"account": account, "error": repr(exc)})
        RECONCILE_FAILURES.labels("lookup").inc()
        return None


def _may_still_be_placed(answer: object, waiting: asyncpg.Record | None) -> bool:
    """A silent attempt with no call id, of which the provider lists nothing we could adopt,
    while a late placement of its request is still to be expected (policy.late)."""
    if waiting is None or not (answer is None or isinstance(answer, Unmatched)):
        return False
    return not may_close_unknown(waiting["requested_at"], waiting["late_until"], waiting["now"])


def paced_on(pool: asyncpg.Pool, account: str) -> Pace:
    """Wait for a request slot on the account's shared clock (dispatch.claim.take_request_slot):
    look-ups count against the same budget as dialing."""

    async def pace() -> None:
        async with pool.acquire() as conn:
            wait = await take_request_slot(conn, account)
        await asyncio.sleep(wait)

    return pace


async def one_unclaimed(
    conn: Connection, account: str, listed: list[CallEvent] | None
) -> CallEvent | Unmatched | None:
    """Of the calls the provider lists to a number around our request, the one no attempt of
    ours has as its call id: that call is ours. None (a list that could not be read) asks again
    later; no such call, or more than one (never a guess), leaves the attempt to be closed."""
    if listed is None:
        return None
    ids = [e.provider_call_id for e in listed if e.provider_call_id]
    claimed = await attempts.claimed_call_ids(conn, account, ids)
    unclaimed = [e for e in listed if e.provider_call_id not in claimed]
    if len(unclaimed) == 1:
        return unclaimed[0]
    return Unmatched(len(unclaimed))


async def _ask_again_later(conn: Connection, call: PlacedCall, action: str) -> str:
    """Nothing was learnt of a silent attempt this round: ask the provider again after
    LOOKUP_RETRY."""
    await attempts.look_up_again_in(conn, call.attempt_id, LOOKUP_RETRY)
    return action


@dataclass(frozen=True)
class Unmatched:
    """The provider lists `count` calls to the number that no attempt claims: none, or more
    than one (which is never guessed between)."""

    count: int


async def _resolve(
    conn: Connection,
    campaigns: CampaignCache,
    account: str,
    call: PlacedCall,
    event: CallEvent | Unmatched | None,
    held_outcome: str | None = None,
) -> str:
    """Apply what the provider says of a silent call; when it says nothing, close it: with
    the final word it did send if one is held for a detection result that never came (that
    word is a fact), else `unknown`."""
    listing = ""
    if isinstance(event, Unmatched):
        listing = (
            "; the provider lists no call to this number around the request"
            if event.count == 0
            else f"; the provider lists {event.count} calls to this number around the request"
            " that no attempt claims (not guessing which)"
        )
        event = None
    if event is not None:
        screened = screen(event)
        if screened.held:  # the provider's answer makes no sense: keep it, ask again later
            await apply_event(
                conn,
                campaigns,
                account,
                call.attempt_id,
                screened.event,
                held=True,
                problem=screened.problem,
            )
            log.warning(
                "look-up answer held",
                extra={"attempt": call.attempt_id, "problem": screened.problem},
            )
            return await _ask_again_later(conn, call, "held_answer")
        event = screened.event
    if event is not None:
        live = not is_terminal(event.status)
        result = await apply_event(
            conn, campaigns, account, call.attempt_id, event, last_word=True, count_if_repeated=live
        )
        if result == "held":  # the call id is another attempt's: not this attempt's answer
            event = None
        elif not live:
            return "settled_from_provider"
        else:  # the provider says it is still going: ask again, backing off
            if result != "repeated":  # a repeated answer was counted as it was kept
                await attempts.count_live_answer(conn, call.attempt_id)
            return "extended"
    if held_outcome is not None:
        reason = "no answering-machine result came, nor a call record saying who answered"
        async with conn.transaction():
            done = await settle(
                conn, campaigns, call.attempt_id, Settlement(held_outcome, error=reason)
            )
        return "settled_without_detection" if done else "raced"
    reason = (
        "no final event from the provider"
        + ("" if call.provider_call_id else " and no call id (crash or timeout while sending)")
        + listing
    )
    async with conn.transaction():
        done = await settle(conn, campaigns, call.attempt_id, Settlement("unknown", error=reason))
    if done:
        log.warning(
            "attempt closed as unknown", extra={"attempt": call.attempt_id, "reason": reason}
        )
    return "unknown" if done else "raced"


RECONCILE_EVERY = timedelta(seconds=2)
# A process does a round only if no process took the turn within this (migration 0038): with
# every process asking every RECONCILE_EVERY, one of them does each round; one paused after
# taking the turn delays the next round by this at most.
TURN = timedelta(seconds=1.5)


async def take_turn(conn: Connection) -> bool:
    """Whether this process does the next reconciler round: True, with the turn taken, when no
    process took it within TURN."""
    return await turns.take(conn, TURN)


LOOKUP_RETRY = timedelta(seconds=10)  # after a look-up the provider could not answer
