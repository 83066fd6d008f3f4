"""Moving attempts forward and settling them: the one place outcomes change contacts.

Every change is a compare-and-set: an UPDATE whose WHERE clause only matches an attempt that is
still live (and, for progress events, in a lower state), so repeated, late or reordered events,
and two processes racing, can never move an attempt backwards or settle it twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from dialer.calls import CallEvent
from dialer.campaigns import SETTLE_GRACE, Campaign, CampaignCache
from dialer.db import attempts, contacts, dnc, events, webhooks
from dialer.db.events import Closing
from dialer.db.types import Connection
from dialer.metrics import DIALS
from dialer.policy.answers import is_machine
from dialer.policy.late import redial_not_before
from dialer.policy.retry import NextStep, next_step
from dialer.policy.states import (
    FINAL_CONTACT,
    LIVE,
    MACHINE,
    OUTCOMES,
    SENT,
    TRANSITIONS,
    AttemptState,
    TransitionName,
    is_terminal,
    moves_forward,
)
from dialer.redaction import redact, redact_document

log = logging.getLogger("dialer.settle")


@dataclass(frozen=True)
class Settlement:
    """How an attempt ends: its outcome, what is known of the call, and the transition that
    may close it (policy.states.TRANSITIONS: a `release` only ever closes `reserved`)."""

    outcome: str
    error: str | None = None
    duration_s: int | None = None
    ended_at: datetime | None = None
    do_not_call: bool = False
    transition: str = TransitionName.SETTLE
    provider_call_id: str | None = None
    answered_by: str | None = None
    completed_if_answered: bool = False
    cost: Decimal | None = None
    cost_unit: str | None = None
    sip_code: int | None = None
    stir_verstat: str | None = None

    @classmethod
    def released(cls, reason: str) -> Settlement:
        """A reservation given back unsent (the attempt does not count)."""
        return cls(AttemptState.NOT_DIALED, error=reason, transition=TransitionName.RELEASE)

    @classmethod
    def not_placed(cls, reason: str) -> Settlement:
        """Sent, and the provider answered that it placed no call (the attempt does not
        count)."""
        return cls(AttemptState.NOT_DIALED, error=reason, transition=TransitionName.NOT_PLACED)

    @classmethod
    def of_event(cls, event: CallEvent) -> Settlement:
        """What a provider's final word says of the call."""
        return cls(
            event.status,
            duration_s=event.duration_s,
            ended_at=event.occurred_at,
            provider_call_id=event.provider_call_id,
            answered_by=event.answered_by,
            completed_if_answered=event.completed_if_answered,
            cost=event.cost,
            cost_unit=event.cost_unit,
            sip_code=event.sip_code,
            stir_verstat=event.stir_verstat,
        )


async def settle(
    conn: Connection, campaigns: CampaignCache, attempt_id: int, settlement: Settlement
) -> bool:
    """Close a live attempt as `settlement` says, free its channel, decide the contact's
    next step.

    `completed_if_answered`: the outcome becomes `completed` if the attempt was seen answered
    (for providers whose final event cannot tell, see CallEvent). The transition says which
    states may be closed: a `release` of an unsent reservation only ever matches `reserved`,
    so an attempt that was meanwhile sent is never re-armed.
    Returns False if nothing matched (nothing changes). Call inside a transaction.
    """
    outcome, transition, error = settlement.outcome, settlement.transition, settlement.error
    # No lock on the contact is needed: while its attempt is live the contact is `dialing`,
    # which no claim or do-not-call update touches, and only one settle can win the CAS below.
    error = redact(error) if error else error
    allowed = TRANSITIONS[transition]
    if outcome not in allowed.targets:
        raise ValueError(f"{transition} cannot end an attempt {outcome}")
    row = await attempts.close(
        conn,
        attempt_id,
        outcome,
        allowed.sources,
        error=error,
        duration_s=settlement.duration_s,
        ended_at=settlement.ended_at,
        provider_call_id=settlement.provider_call_id,
        answered_by=settlement.answered_by,
        completed_if_answered=settlement.completed_if_answered,
        cost=settlement.cost,
        cost_unit=settlement.cost_unit,
        sip_code=settlement.sip_code,
        stir_verstat=settlement.stir_verstat,
    )
    if row is None:
        return False
    contact = row
    outcome = row["outcome"]
    campaign = await campaigns.get(conn, row["campaign_id"])
    if outcome == "completed" and campaign.detects_machines and is_machine(row["answered_by"]):
        await attempts.reclassify(conn, attempt_id, MACHINE)
        outcome = MACHINE
    if outcome == "not_dialed":
        DIALS.labels(row["account"], campaign.name, outcome).inc()
        # Nothing reached the provider: the attempt does not count; dial again when allowed.
        await contacts.undo_attempt(conn, row["contact_id"])
        return True
    now = row["now"]
    not_before = None
    if outcome == "unknown" and row["late_placement"] is not None:
        not_before = redial_not_before(row["requested_at"], row["late_placement"])
    step = next_step(
        campaign.spec.retry,
        campaign.rules,
        outcome,
        contact["attempts"],
        now,
        contact["timezone"],
        not_before,
        contact["jurisdiction"],
    )
    await contacts.move_on(conn, row["contact_id"], step.state, step.next_attempt_at, outcome)
    await webhooks.record_settled(conn, attempt_id, contact_final=step.state in FINAL_CONTACT)
    if settlement.do_not_call:
        await dnc.add(conn, [row["phone_e164"]], f"provider refused: {error}"[:500])
    _settled(attempt_id, row["account"], campaign, outcome, step)
    return True


def _settled(
    attempt_id: int, account: str, campaign: Campaign, outcome: str, step: NextStep
) -> None:
    """Count and log an attempt settled (one line per attempt, whichever path settled it)."""
    DIALS.labels(account, campaign.name, outcome).inc()
    log.info(
        "attempt settled",
        extra={
            "attempt": attempt_id,
            "campaign": campaign.name,
            "outcome": outcome,
            "contact_next": step.state,
            "next_attempt_at": step.next_attempt_at.isoformat() if step.next_attempt_at else None,
        },
    )


async def apply_event(
    conn: Connection,
    campaigns: CampaignCache,
    account: str,
    attempt_id: int | None,
    event: CallEvent,
    *,
    held: bool = False,
    problem: str | None = None,
    ask_provider: bool = False,
    last_word: bool = False,
    count_if_repeated: bool = False,
) -> str:
    """Store a provider event (once) and move its attempt forward: "stored" if it was new,
    "repeated" if it was already kept (with `count_if_repeated`, a look-up's answer that the
    call is still live, counted then as a look-up of the attempt: db.events.store), "held"
    if kept but not applied.

    The raw event is stored before anything else, so it is kept even if it changes nothing.
    A `held` event (see callbacks.screening), or one whose call id is another attempt's than
    the one named, is stored with its problem and never applied; with `ask_provider` (a status
    word we do not know) its attempt is due for the reconciler's look-up at once, instead of
    holding its channel until the settle budget ends.

    Who answered (campaigns with machine_detection) must not depend on the order callbacks
    arrive in: a `completed` final without an answering-machine result is kept on its attempt
    (hold_final) until the result's own callback comes, or the reconciler reads the call
    resource after DETECTION_WAIT (`last_word`: the provider's answer to a look-up, settled as
    it says).
    """
    async with conn.transaction():
        payload = stored_payload(event)
        row = await events.store(
            conn,
            account,
            attempt_id,
            event,
            payload,
            held=held,
            problem=problem,
            count_if_kept=count_if_repeated,
        )
        if not row["stored"]:
            return "repeated"
        if row["held"]:
            if ask_provider and row["attempt_id"] is not None:
                await attempts.look_up_now(conn, row["attempt_id"])
            return "held"
        if row["attempt_id"] is None:
            return "stored"
        if not await reopen_if_unknown(conn, campaigns, row["attempt_id"], event):
            return "stored"  # a re-dial had already happened: the fact is recorded, no more
        if event.detection_result:
            held_outcome = await attempts.note_answered_by(
                conn, row["attempt_id"], event.answered_by
            )
            if held_outcome is not None:
                await settle(conn, campaigns, row["attempt_id"], Settlement(held_outcome))
            else:
                await _apply_progress_to(conn, row["attempt_id"], event)
            return "stored"
        if (
            is_terminal(event.status)
            and not last_word
            and await _result_to_come(conn, campaigns, row, event)
        ):
            await attempts.hold_final(conn, row["attempt_id"], event, DETECTION_WAIT)
            return "stored"
        if is_terminal(event.status):
            await settle(conn, campaigns, row["attempt_id"], Settlement.of_event(event))
        else:
            await _apply_progress_to(conn, row["attempt_id"], event)
        return "stored"


async def apply_finals(
    conn: Connection,
    campaigns: CampaignCache,
    items: list[tuple[str, int | None, CallEvent]],
) -> list[str | asyncpg.PostgresError]:
    """apply_event for many final events (account, attempt id if named, event), of any
    accounts: for each, "stored", "repeated" or "held", as apply_event one after another would
    answer, with the same effects; or the database's error for that event alone (its provider
    retries it).

    The common case, a live attempt's first final word in the batch with no answering-machine
    result to wait for, takes two round trips for the whole batch: one read of the attempts and
    their contacts, from which Python decides each outcome and next step as settle() does; then
    one statement that stores each word and settles its attempt (closed, contact moved on,
    webhook events written), each only if its word is new, is judged to that attempt within its
    account, and the attempt is still as it was read (events.store_and_settle). Everything
    else, and every word that statement left untouched, is applied one by one by apply_event,
    in the batch's order.

    Words are judged to their attempts (events._JUDGE) in one statement. That is how one by
    one would judge them too, unless an earlier word of the batch records a call id a later one
    is judged by: a batch where two words of an account name one attempt with different call
    ids, or one call id with different attempts (or none), is applied one by one instead.
    """
    if not _judged_alike(items):
        return [await _apply_alone(conn, campaigns, *item) for item in items]
    named = sorted({attempt_id for _, attempt_id, _ in items if attempt_id is not None})
    read = await events.read_for_finals(conn, named)
    planned: list[tuple[int, Closing, Campaign, NextStep]] = []
    attempts_seen: set[tuple[str, int | None]] = set()
    keys_seen: set[tuple[str, str]] = set()
    for index, (account, attempt_id, event) in enumerate(items):
        first = (account, attempt_id) not in attempts_seen
        first = first and (account, event.dedupe_key) not in keys_seen
        attempts_seen.add((account, attempt_id))
        keys_seen.add((account, event.dedupe_key))
        row = read.get(attempt_id) if attempt_id is not None else None
        if row is not None and row["account"] != account:
            row = None  # another account's attempt: apply_event stores the word, unattached
        plan = await _plan_closing(conn, campaigns, account, row, event) if row and first else None
        if plan is not None:
            planned.append((index, *plan))
    closings = [closing for _, closing, _, _ in planned]
    payloads = [stored_payload(closing.event) for closing in closings]
    try:
        closed = await events.store_and_settle(conn, closings, payloads)
    except asyncpg.PostgresError:  # one statement: nothing of it was kept; one by one, below
        closed = set()
    results: dict[int, str] = {}
    for index, closing, campaign, step in planned:
        if closing.attempt_id in closed:
            results[index] = "stored"
            _settled(closing.attempt_id, closing.account, campaign, closing.outcome, step)
    return [
        results[index] if index in results else await _apply_alone(conn, campaigns, *item)
        for index, item in enumerate(items)
    ]


async def _apply_alone(
    conn: Connection,
    campaigns: CampaignCache,
    account: str,
    attempt_id: int | None,
    event: CallEvent,
) -> str | asyncpg.PostgresError:
    """apply_event, its database error kept for this event alone (a connection lost is
    everybody's, and raised)."""
    try:
        return await apply_event(conn, campaigns, account, attempt_id, event)
    except asyncpg.PostgresError as exc:
        return exc


def _judged_alike(items: list[tuple[str, int | None, CallEvent]]) -> bool:
    """Whether judging every event as the batch begins is judging each after the ones before
    it: within an account, no attempt named with two call ids, no call id with two attempts
    (or one and none)."""
    call_ids: dict[tuple[str, int], set[str | None]] = {}
    attempts_of: dict[tuple[str, str], set[int | None]] = {}
    for account, attempt_id, event in items:
        if attempt_id is not None:
            call_ids.setdefault((account, attempt_id), set()).add(event.provider_call_id)
        if event.provider_call_id is not None:
            attempts_of.setdefault((account, event.provider_call_id), set()).add(attempt_id)
    return all(len(ids) == 1 for ids in call_ids.values()) and all(
        len(named) == 1 for named in attempts_of.values()
    )


async def _plan_closing(
    conn: Connection,
    campaigns: CampaignCache,
    account: str,
    row: asyncpg.Record,
    event: CallEvent,
) -> tuple[Closing, Campaign, NextStep] | None:
    """How a final event settles its live attempt (`row`: events.read_for_finals), decided as
    settle() decides it (outcome, answering machine, the contact's next step); None where
    apply_event must run (a detection result, not live, an answering-machine result to come,
    not a settling outcome)."""
    if event.detection_result:
        return None
    if not is_terminal(event.status) or row["state"] not in SENT:
        return None  # closed already, `unknown` (re-opened one by one), or never sent
    if await _result_to_come(conn, campaigns, row, event):
        return None
    outcome = "completed" if event.completed_if_answered and row["answered"] else event.status
    if outcome not in TRANSITIONS["settle"].targets:
        return None
    campaign = await campaigns.get(conn, row["campaign_id"])
    answered_by = row["answered_by"] or event.answered_by
    if outcome == "completed" and campaign.detects_machines and is_machine(answered_by):
        outcome = MACHINE
    step = next_step(
        campaign.spec.retry,
        campaign.rules,
        outcome,
        row["attempts"],
        row["now"],
        row["timezone"],
        None,
        row["jurisdiction"],
    )
    closing = Closing(
        account,
        row["attempt_id"],
        row["state"],
        row["answered"],
        row["answered_by"],
        outcome,
        event,
        step.state,
        step.next_attempt_at,
        step.state in FINAL_CONTACT,
    )
    return closing, campaign, step


DETECTION_WAIT = timedelta(seconds=10)  # after a final word, for its detection result


async def _result_to_come(
    conn: Connection, campaigns: CampaignCache, row: asyncpg.Record, event: CallEvent
) -> bool:
    """Whether this final event says the call was answered but not by whom, on a campaign
    that asked: Twilio sends the answering-machine result apart (and only there and on the
    call resource), so it may come after the final word, or not at all."""
    if event.status != "completed" or event.answered_by or row["answered_by"]:
        return False
    campaign = await campaigns.get(conn, row["campaign_id"])
    return campaign.detects_machines


async def reopen_if_unknown(
    conn: Connection, campaigns: CampaignCache, attempt_id: int, event: CallEvent
) -> bool:
    """An attempt closed `unknown` that a fact now reaches (a call id, a callback, a look-up
    answer) is re-opened: `unknown` was a lack of facts, never one. It becomes live again (in
    the event's state, or `accepted` before a final event settles it), takes a channel slot
    (take_slot_for_reopened), and its contact goes back to `dialing`, which withdraws the
    contact's re-dial. Returns whether the caller should go on applying the event: False when
    the contact was dialed again meanwhile (a later attempt exists), in which case a final
    event's outcome is recorded on this attempt only.
    """
    row = await attempts.reopen(
        conn,
        attempt_id,
        "accepted" if is_terminal(event.status) else event.status,
        event.provider_call_id,
        SETTLE_GRACE,
    )
    if row is None:
        return True  # not `unknown` (the common case): apply as usual
    if row["latest"]:
        slot = await take_slot_for_reopened(conn, campaigns, attempt_id, row["account"])
        log.warning(
            "attempt re-opened: the provider reported a call closed unknown",
            extra={"attempt": attempt_id, "status": event.status, "slot": slot},
        )
        return True
    if is_terminal(event.status) and event.status in OUTCOMES:
        await attempts.correct_unknown(
            conn, attempt_id, event.status, event.provider_call_id, event.duration_s
        )
        await webhooks.record_settled(conn, attempt_id, contact_final=False)  # the correction
    log.warning(
        "a call closed unknown was reported after its contact was dialed again",
        extra={"attempt": attempt_id, "status": event.status},
    )
    return False


async def take_slot_for_reopened(
    conn: Connection, campaigns: CampaignCache, attempt_id: int, account: str
) -> int | None:
    """A re-opened attempt is a live call at the provider: it counts against the account's
    channels until it settles. Under the account's lock (as claims take it) it gets a free
    slot; if every slot is held, the newest reservation not yet sent gives up its own (it is
    released unsent, its contact dialed later), so no request is sent over the limit. Only
    when every slot holds a call already sent does it stay without one, over the limit by the
    provider's own late placement (logged); claims count it all the same and wait."""
    await attempts.lock_account_slots(conn, account)
    slot = await attempts.free_slot(conn, account)
    if slot is None:
        reserved = await attempts.newest_reservation(conn, account)
        reason = "released unsent: its channel went to a call the provider placed late"
        if reserved is not None and await settle(
            conn, campaigns, reserved, Settlement.released(reason)
        ):
            slot = await attempts.free_slot(conn, account)
    if slot is None:
        log.warning(
            "over the channel limit: the provider placed a call late while every channel"
            " held a call already sent; no new call is sent until one ends",
            extra={"attempt": attempt_id, "account": account},
        )
        return None
    await attempts.give_slot(conn, attempt_id, slot)
    return slot


def stored_payload(event: CallEvent) -> dict:
    """The payload as kept in call_events: JSON-safe, and with every credential masked (a
    provider echoing our secret key or callback URL never stores it)."""
    text = json.dumps(dict(event.payload), default=str, ensure_ascii=False)
    return redact_document(json.loads(text), text)


async def _apply_progress_to(conn: Connection, attempt_id: int, event: CallEvent) -> None:
    lower = [state for state in LIVE if moves_forward(state, event.status)]
    await attempts.advance(
        conn,
        attempt_id,
        event.status,
        lower,
        provider_call_id=event.provider_call_id,
        occurred_at=event.occurred_at,
        answered_by=event.answered_by,
    )


async def apply_progress_batch(
    conn: Connection,
    campaigns: CampaignCache,
    items: list[tuple[str, int | None, CallEvent]],
) -> set[tuple[str, str]]:
    """Store and apply many non-final events (account, attempt id if named, event), of any
    accounts, at once; returns the (account, dedupe key) of those that were new."""
    new = await events.store_and_advance(
        conn,
        [account for account, _, _ in items],
        [attempt for _, attempt, _ in items],
        call_ids=[e.provider_call_id for _, _, e in items],
        statuses=[e.status for _, _, e in items],
        sequences=[e.sequence for _, _, e in items],
        dedupe_keys=[e.dedupe_key for _, _, e in items],
        payloads=[stored_payload(e) for _, _, e in items],
        occurred_at=[e.occurred_at for _, _, e in items],
        answered_by=[e.answered_by for _, _, e in items],
    )
    # the batch moves live attempts only: one closed `unknown` is re-opened here
    for account, attempt_id, event in items:
        if attempt_id is not None and new.get((account, event.dedupe_key)):
            async with conn.transaction():
                if await reopen_if_unknown(conn, campaigns, attempt_id, event):
                    await _apply_progress_to(conn, attempt_id, event)
    return set(new)


async def apply_progress(
    conn: Connection,
    campaigns: CampaignCache,
    items: list[tuple[str, int | None, CallEvent]],
) -> list[bool | asyncpg.PostgresError]:
    """apply_progress_batch, each item's result: whether its event was new. If the database
    refuses the batch's statement (a row it names deleted or erased meanwhile, say), nothing of
    it was kept: each event is then applied alone, so only the one at fault gets the error
    (its provider retries it) and the others are kept (a connection lost is raised)."""
    try:
        new = await apply_progress_batch(conn, campaigns, items)
    except asyncpg.PostgresError:
        alone = [await _apply_alone(conn, campaigns, *item) for item in items]
        return [r if isinstance(r, asyncpg.PostgresError) else r != "repeated" for r in alone]
    return [(account, event.dedupe_key) in new for account, _, event in items]


async def record_accepted(
    conn: Connection, campaigns: CampaignCache, accepted: list[tuple[int, str | None]]
) -> None:
    """The provider took these calls: store their call ids (a callback may have been faster),
    and end their accounts' 429 streaks. One the reconciler closed `unknown` meanwhile (this
    process was paused after sending) is re-opened: the call exists."""
    rows = await attempts.record_accepted(conn, accepted)
    for row in rows:
        async with conn.transaction():
            event = CallEvent("accepted", "", provider_call_id=row["provider_call_id"])
            await reopen_if_unknown(conn, campaigns, row["id"], event)
