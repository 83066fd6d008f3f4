"""Claiming work under the account's shared limits, in one short transaction.

1. Glance at the account's limiter row and its live attempts, with no lock (accounts.glance):
   how many attempts it could take now (limiter.claimable). Nothing: come back later.
2. Pick that many due contacts (db.due), in the campaign's order, row-locked with SKIP LOCKED;
   lock their numbers (advisory locks) and, with a fresh snapshot, drop numbers already live
   elsewhere or at their daily dial cap. None of this holds the account's row, which every
   sender of the account needs: on a network, picking is most of a claim's round trips.
3. Lock the account's limiter row. From its GCRA clock (dispatch.limiter), work out how many
   request slots fall within the next `horizon`; find that many free channel slots
   (attempts.free_channels: the live attempts read as one row, the ring of slots walked from
   the account's cursor). Contacts picked beyond them are left as they were.
4. Insert the attempts as `reserved`, each holding a channel slot and a send time, mark their
   contacts and store the limiter's row, in one statement; commit. The row is held for three
   round trips and a half. All times come from the database clock.

At send time, begin_dial gives request slots on the same clock and commits `dialing`, holding
the row for two round trips and a half (lock; compare-and-set with the clock; commit).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

import asyncpg

from dialer.calls import OPEN_ENDED, PlacedCall
from dialer.campaigns import Campaign
from dialer.db import accounts, attempts, contacts
from dialer.db.due import HELD_DIAL_CAP, HELD_LAW_CAP, HELD_LIVE
from dialer.db.types import Connection
from dialer.dispatch import limiter
from dialer.dispatch.limiter import AccountLimits, LimiterState
from dialer.faults import fault_point
from dialer.policy.packs import CampaignRules, span_text
from dialer.policy.registries import demanded
from dialer.providers.send_deadline import SEND_WINDOW
from dialer.registries import stale_copies
from dialer.waiting import dial_cap_figure

LEASE = timedelta(seconds=15)  # beyond its send time, an unsent reservation is void
LIVE_ELSEWHERE_RETRY = timedelta(minutes=1)  # a number live in another campaign: look again then
STANDING_CHANGE_WAIT_S = 0.05  # a do-not-call or consent change is being written: ask again then


@dataclass(frozen=True)
class Claimed:
    attempt_id: int
    contact_id: int
    campaign_id: int
    attempt_no: int
    phone_e164: str
    fields: dict
    send_in_s: float  # seconds after the claim's commit at which its request slot opens
    first_caller: str | None = None  # the caller id the contact's first attempt showed
    # The contact's last attempt, if it ended `unknown` with no call id: a call of it may
    # have been placed after all, so the provider's list is read before redialing (policy.late)
    unplaced: PlacedCall | None = None


@dataclass(frozen=True)
class Claim:
    """What a claim reserved (in send order), and whether every channel of the account is
    live now (`channels_full`: none was free, or this claim took the last ones): its loop then
    waits for one to free (dialer.wakeups) instead of asking again."""

    attempts: list[Claimed]
    channels_full: bool = False


NOTHING = Claim([])
CHANNELS_FULL = Claim([], channels_full=True)


async def register_account(conn: Connection, limits: AccountLimits) -> None:
    """Create or refresh the account's shared limiter row from configuration."""
    await accounts.register(conn, limits)


async def claim(
    conn: Connection,
    limits: AccountLimits,
    campaigns: list[Campaign],
    *,
    max_batch: int,
    horizon_s: float,
    dial_cap: int,
) -> Claim:
    """Reserve up to `max_batch` attempts for the account's campaigns; none if nothing is
    allowed (CHANNELS_FULL when every channel is live)."""
    async with conn.transaction():
        seen = await accounts.glance(conn, limits.name)
        if seen is None or not seen.state.sendable:  # paused, or resting (account_health)
            return NOTHING
        if seen.live >= seen.state.channels:
            return CHANNELS_FULL
        tokens = limiter.slots_within(seen.state, horizon_s)
        want = limiter.claimable(tokens, seen.waiting, max_batch, seen.state.channels, seen.live)
        picks: list[_Picked] = []
        picked_count = 0
        for campaign in campaigns:
            if picked_count >= want:
                break
            picked = await _pick(
                conn, limits, campaign, want - picked_count, seen.state.now, dial_cap
            )
            if picked is not None:
                picks.append(picked)
                picked_count += len(picked.rows)
        if not picks:
            return NOTHING
        fault_point("picked-before-account-lock")
        state = await accounts.lock_state(conn, limits.name)
        if state is None or not state.sendable:  # paused or resting meanwhile
            return NOTHING
        fault_point("holding-account-lock")
        channels = await attempts.free_channels(
            conn,
            limits.name,
            state.channels,
            state.next_slot,
            limiter.slots_within(state, horizon_s),
            min(max_batch, picked_count),
        )
        free, waiting = channels.slots, channels.waiting  # at most picked_count slots
        given = len(free)
        if not given:
            return NOTHING
        # the next claim looks for free slots after the last one given here; the row is
        # written with the first campaign's attempts, in the same statement
        next_slot = limiter.next_slot_after(state.channels, free)
        claimed_state: LimiterState | None = replace(limiter.recovered(state), next_slot=next_slot)
        claimed: list[Claimed] = []
        for picked in picks:
            if len(claimed) >= given:
                break
            claimed += await _reserve(
                conn,
                limits,
                picked,
                free[len(claimed) :],
                state,
                waiting + len(claimed),
                claimed_state,
            )
            claimed_state = None
        return Claim(claimed, channels_full=channels.live + len(claimed) >= state.channels)


@dataclass(frozen=True)
class _Picked:
    """A campaign's due contacts a claim picked and locked (with their numbers), cleared of
    those held (live elsewhere, at a cap): in order, the ones to reserve first."""

    campaign: Campaign
    rows: list[asyncpg.Record]
    law_keys: dict[int, str | None]


async def _pick(
    conn: Connection,
    limits: AccountLimits,
    campaign: Campaign,
    want: int,
    now: datetime,
    dial_cap: int,
) -> _Picked | None:
    """Up to `want` of the campaign's due contacts, locked with their numbers and cleared of
    any hold (a contact held gets its hold written); None if none is left."""
    if demanded(campaign.rules.law) and await stale_copies(conn, [campaign]):
        return None  # a registry copy turned too old: the dispatcher stops the campaign
    sticky = len(campaign.accounts) > 1 and campaign.spec.caller_id_policy == "sticky"
    rows = await contacts.lock_due(
        conn, campaign.id, want, campaign.rules, limits.name if sticky else None
    )
    if not rows:
        return None
    locked = await contacts.lock_numbers(
        conn, [r["id"] for r in rows], [r["phone_e164"] for r in rows]
    )
    rows = [r for r in rows if r["id"] in locked]
    law = campaign.rules.law
    subject = campaign.spec.subject_name
    checks = await contacts.check_numbers(
        conn, [r["id"] for r in rows], [r["phone_e164"] for r in rows], dial_cap, subject, law
    )
    blocked = {
        c["id"]: c for c in checks if c["live_elsewhere"] or c["capped_since"] or c["held_until"]
    }
    for contact_id, check in blocked.items():
        # Another campaign is calling this person now, they had their dials for today, or a
        # law's cap or quiet time on this subject holds them: not before it ends, said with
        # the hold that ends last (waiting.py reads it back).
        ends: list[tuple[datetime, str, str]] = []
        if check["live_elsewhere"]:
            ends.append((now + LIVE_ELSEWHERE_RETRY, HELD_LIVE, "in a call of another campaign"))
        if check["capped_since"]:
            until = check["capped_since"] + timedelta(hours=24)
            ends.append((until, HELD_DIAL_CAP, dial_cap_figure(dial_cap)))
        if check["held_until"]:
            ends.append((check["held_until"], HELD_LAW_CAP, _law_figure(law, check["law_key"])))
        until, held_by, figure = max(ends, key=lambda end: end[0])
        await contacts.postpone(conn, contact_id, until, held_by, figure)
    rows = [r for r in rows if r["id"] not in blocked]
    if not rows:
        return None
    return _Picked(campaign, rows, {c["id"]: c["law_key"] for c in checks})


async def _reserve(
    conn: Connection,
    limits: AccountLimits,
    picked: _Picked,
    free_slots: list[int],
    state: LimiterState,
    offset: int,
    limiter_after: LimiterState | None,
) -> list[Claimed]:
    """Reserve attempts for the first of the picked contacts, one per free slot (under the
    account's lock: `state` is its row as locked, `offset` the slots already promised), and
    store `limiter_after` as the account's row, if given."""
    campaign, law = picked.campaign, picked.campaign.rules.law
    rows = picked.rows[: len(free_slots)]
    now = state.now
    send_in = [state.ahead_s + (offset + i) * state.interval_s for i in range(len(rows))]
    # The window these contacts are in closes at a time of their own zone; nothing may be sent
    # after it, however long the attempt waits for a request slot.
    closes = [campaign.rules.closes_at(now, r["timezone"], r["jurisdiction"]) or now for r in rows]
    inserted = await attempts.reserve(
        conn,
        campaign.id,
        limits.name,
        [r["id"] for r in rows],
        free_slots[: len(rows)],
        send_in,
        closes,
        LEASE,
        campaign.spec.subject_name,
        [_checked(law, picked.law_keys.get(r["id"])) for r in rows],
        limiter_after=limiter_after,
    )
    by_contact = {r["id"]: r for r in rows}
    delays = {r["id"]: delay for r, delay in zip(rows, send_in, strict=True)}
    return [
        Claimed(
            attempt_id=a["id"],
            contact_id=a["contact_id"],
            campaign_id=campaign.id,
            attempt_no=a["attempt_no"],
            phone_e164=by_contact[a["contact_id"]]["phone_e164"],
            fields=by_contact[a["contact_id"]]["fields"],
            send_in_s=delays[a["contact_id"]],
            first_caller=by_contact[a["contact_id"]]["first_caller"],
            unplaced=_unplaced(by_contact[a["contact_id"]]),
        )
        for a in sorted(inserted, key=lambda a: delays[a["contact_id"]])
    ]


def _law_figure(law: CampaignRules | None, key: str | None) -> str:
    """The caps and quiet time of the jurisdiction key that held a contact, as said."""
    if law is None or key is None or key not in law.limits:
        return "a law's cap or quiet time"
    limits = law.limits[key]
    said = [str(cap) for cap in limits.caps]
    if limits.quiet_after_conversation:
        said.append(f"quiet {span_text(limits.quiet_after_conversation)} after a conversation")
    return f"{', '.join(said)} ({key})"


def _checked(law: CampaignRules | None, key: str | None) -> list[str]:
    """What the claim of one contact checked: the rules of its jurisdiction key (with their
    pack versions) and the caps and quiet time they make (kept on the attempt)."""
    if law is None or key is None:
        return []
    limits = law.limits[key]
    quiet = limits.quiet_after_conversation
    return [
        *limits.rules,
        *(f"cap {cap}" for cap in limits.caps),
        *([f"quiet {int(quiet.total_seconds())}s after a conversation"] if quiet else []),
    ]


def _unplaced(row: asyncpg.Record) -> PlacedCall | None:
    """The contact's last attempt when it ended `unknown` with no call id: what to ask the
    provider's call list about before the redial (any call placed since its request)."""
    if row["unplaced_id"] is None:
        return None
    return PlacedCall(
        row["unplaced_id"], None, row["phone_e164"], row["last_requested_at"], OPEN_ENDED
    )


class DialAction(StrEnum):
    SEND = "send"  # committed `dialing`: send it after `wait_s` (0: at once), or never
    VOID = "void"  # lease expired, window closed or campaign stopped: release it unsent
    WAIT = "wait"  # its request slot is not open yet: ask again after `wait_s`


@dataclass(frozen=True)
class DialVerdict:
    """What begin_dial decided for one reserved attempt."""

    action: DialAction
    wait_s: float = 0.0


SEND = DialVerdict(DialAction.SEND)
VOID = DialVerdict(DialAction.VOID)


async def begin_dial(
    conn: Connection,
    account: str,
    ready_attempts: list[tuple[int, str, int, int]],
    early_s: float,
    lead_s: float = 0.0,
) -> dict[int, DialVerdict]:
    """Give request slots to attempts that are ready to send, and commit them as `dialing`.

    Under the account row lock: slots follow the GCRA clock (`tat`), one emission interval
    apart, assigned now, at send time, so requests are never closer together than the rate
    allows however late a process is. An attempt whose slot opens within `early_s` is
    committed as `dialing` (a compare-and-set on its lease, and the campaign must still be
    `active`) with its `send_by` (providers.send_deadline), and must be sent at once or not at
    all: SEND. With `lead_s` (about one commit's length, when the database is far), slots
    opening up to that much later are committed too, each SEND saying when it may leave
    (`early_s` before its slot): the next commit finds them on their way. The others get the
    seconds to wait before asking again; one whose lease
    expired, whose calling window closed (`dial_before`) or whose campaign stopped gets VOID
    (release it, nothing is sent).
    """
    async with conn.transaction():
        locked = await accounts.lock_state_to_send(conn, account)
        if locked is None:
            raise LookupError(f"account {account} is not registered")
        state = locked.limits
        if not state.sendable:  # paused or resting since the claim: release them unsent
            return {attempt_id: VOID for attempt_id, *_ in ready_attempts}
        if not locked.may_commit:  # who may be called is changing (db.standing): ask again
            wait = DialVerdict(DialAction.WAIT, STANDING_CHANGE_WAIT_S)
            await attempts.extend_leases(
                conn, [a for a, *_ in ready_attempts], STANDING_CHANGE_WAIT_S, LEASE
            )
            return {attempt_id: wait for attempt_id, *_ in ready_attempts}
        reach = early_s + lead_s
        ready = limiter.ready_slots(state.ahead_s, reach, state.interval_s, len(ready_attempts))
        sent: set[int] = set()
        if ready:
            begun = await attempts.begin_dialing(
                conn,
                ready_attempts[:ready],
                SEND_WINDOW,
                account=account,
                tat_if_all_sent=limiter.after_sends(state, ready).tat,
            )
            sent = begun.sent
            if sent and not begun.clocked:  # some were void: the clock moves for those sent
                await accounts.store_state(conn, account, limiter.after_sends(state, len(sent)))
        verdicts: dict[int, DialVerdict] = {}
        given = 0  # slots given so far, in order
        for index, (attempt_id, *_) in enumerate(ready_attempts):
            if attempt_id in sent:
                leave_s = limiter.leave_in(state, given, early_s)
                verdicts[attempt_id] = DialVerdict(DialAction.SEND, leave_s)
                given += 1
            elif index < ready:
                verdicts[attempt_id] = VOID
            else:
                position = len(sent) + (index - ready)
                wait_s = limiter.wait_for_slot(state, position, early_s)
                verdicts[attempt_id] = DialVerdict(DialAction.WAIT, wait_s)
        waiting = [a for a, v in verdicts.items() if v.action == DialAction.WAIT]
        if waiting:  # keep their reservations alive while they wait for a slot
            longest = max(verdicts[a].wait_s for a in waiting)
            await attempts.extend_leases(conn, waiting, longest, LEASE)
    return verdicts


async def push_back_rate(conn: Connection, account: str, retry_after: float | None) -> None:
    """A 429: every worker on the account waits, and the shared rate slows until 429s stop
    (limiter.after_429)."""
    async with conn.transaction():
        state = await accounts.lock_state(conn, account)
        if state is not None:
            throttled = limiter.after_429(state, retry_after, random.random())
            await accounts.store_state(conn, account, throttled)
            await accounts.note_hold(conn, account, throttled.tat, retry_after)


async def take_request_slot(conn: Connection, account: str) -> float:
    """Book one request on the account's shared clock for a non-dialing request (a status
    look-up): returns the seconds to wait before sending it. Providers such as Exotel count
    look-ups against the same per-minute budget as dialing."""
    async with conn.transaction():
        state = await accounts.lock_state(conn, account)
        if state is None:
            return 0.0
        booked, wait = limiter.booked_lookup(state)
        await accounts.store_state(conn, account, booked)
    return wait


async def take_idle_slot(conn: Connection, account: str) -> float | None:
    """Book one look-up on the account's shared clock if it is idle (limiter.booked_if_idle):
    the seconds to wait for its slot, or None (nothing booked: a dial wants the clock)."""
    async with conn.transaction():
        state = await accounts.lock_state(conn, account, skip_locked=True)
        if state is None:
            return None
        booked = limiter.booked_if_idle(state)
        if booked is None:
            return None
        await accounts.store_state(conn, account, booked[0])
    return booked[1]
