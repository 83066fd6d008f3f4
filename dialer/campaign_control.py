"""Pausing, resuming and canceling campaigns; the circuit breaker; campaign status for people."""

from __future__ import annotations

import logging

import asyncpg

from dialer.campaign_spec import is_campaign_name
from dialer.campaigns import Campaign, CampaignCache
from dialer.consent import ConsentEvent
from dialer.db import attempts, campaigns, contacts, reporting, webhooks
from dialer.db import consent as ledger
from dialer.db.types import Connection
from dialer.dispatch.limiter import BREAKER_WINDOW, breaker_trips
from dialer.errors import ConflictError, NotFoundError
from dialer.policy.attestation import is_blocked
from dialer.policy.caller_ids import is_tired
from dialer.policy.goal import goal_reached
from dialer.settle import Settlement, settle

log = logging.getLogger("dialer.campaign")


async def _campaign(conn: Connection, name: str) -> asyncpg.Record:
    row = await campaigns.lock_by_name(conn, name) if is_campaign_name(name) else None
    if row is None:
        shown = name if is_campaign_name(name) else repr(name)
        raise NotFoundError(f"no such campaign: {shown} (see `dialer campaign list`)")
    return row


async def set_status(conn: Connection, name: str, action: str) -> str:
    """pause | resume | cancel. Takes effect for every process at its next claim (< 1 s)."""
    allowed = {"pause": ("active",), "resume": ("paused",), "cancel": ("active", "paused")}
    target = {"pause": "paused", "resume": "active", "cancel": "canceled"}[action]
    async with conn.transaction():
        row = await _campaign(conn, name)
        if row["status"] == target:
            return f"campaign {name} is already {target}"
        if row["status"] not in allowed[action]:
            raise ConflictError(f"campaign {name} is {row['status']}; cannot {action} it")
        reason = {"pause": "paused by user", "cancel": "canceled by user"}.get(action)
        await campaigns.set_status(conn, row["id"], target, reason)
        message = f"campaign {name}: {row['status']} -> {target}"
        if action == "cancel":
            canceled = await contacts.cancel_waiting(conn, row["id"])
            message += f"; {canceled} waiting contacts canceled (calls in flight settle)"
            await webhooks.record_finished(conn, [row["id"]])
    log.info("campaign status changed", extra={"campaign": name, "status": target})
    return message


async def complete_if_goal_reached(conn: Connection, campaign: Campaign) -> str | None:
    """Mark the campaign `completed` once its goal (stop_after, max_cost) is met, for every
    process at its next claim; calls in flight go on and settle. Returns the reason."""
    spec = campaign.spec
    if spec.stop_after is None and spec.max_cost is None:
        return None
    answered, cost = await campaigns.goal_progress(conn, campaign.id)
    goal = spec.stop_after.answered if spec.stop_after else None
    reason = goal_reached(goal, spec.max_cost, answered, cost)
    if reason and await campaigns.leave_active(conn, campaign.id, "completed", reason):
        log.info("campaign completed", extra={"campaign": campaign.name, "reason": reason})
    return reason


async def rest_tired_caller_ids(conn: Connection, campaign: Campaign) -> frozenset[str]:
    """The campaign's caller ids resting for the rest of the day (rest_caller_id_below): each
    newly resting one is logged with its figures."""
    threshold = campaign.spec.rest_caller_id_below
    blocked_above = campaign.spec.rest_caller_id_blocked_above
    if threshold is None and blocked_above is None:
        return frozenset()
    rows = await reporting.caller_ids_today(conn, campaign.spec.caller_ids, campaign.spec.timezone)
    resting = set()
    for row in rows:
        caller = row["caller_id"]
        if is_tired(row["settled"], row["answered"], threshold):
            why = "its answer rate fell below rest_caller_id_below"
            figures = {"answered": row["answered"], "threshold": threshold}
        elif is_blocked(row["settled"], row["blocked"], blocked_above):
            why = "carriers blocked (SIP 603/608) more than rest_caller_id_blocked_above"
            figures = {"blocked": row["blocked"], "threshold": blocked_above}
        else:
            continue
        resting.add(caller)
        if (campaign.id, caller) not in _RESTING_LOGGED:
            _RESTING_LOGGED.add((campaign.id, caller))
            log.warning(
                "caller id resting for the rest of the day",
                extra={
                    "campaign": campaign.name,
                    "caller_id": caller,
                    "why": why,
                    "settled": row["settled"],
                }
                | figures,
            )
    return frozenset(resting)


_RESTING_LOGGED: set[tuple[int, str]] = set()  # (campaign, caller id): said once per process


async def trip_breaker_if_failing(conn: Connection, campaign_id: int) -> str | None:
    """Pause the campaign if more than half of its last 50 settled attempts failed or were
    rejected (a broken caller id, a suspended route): better a paused campaign than thousands of
    failed calls. Returns the reason when it trips."""
    settled, bad = await attempts.recent_outcomes(conn, campaign_id, BREAKER_WINDOW)
    if not breaker_trips(settled, bad):
        return None
    reason = (
        f"circuit breaker: {bad} of the last {settled} attempts failed or were"
        " rejected; check the account, caller id and route, then `dialer campaign resume`"
    )
    if await campaigns.leave_active(conn, campaign_id, "paused", reason):
        log.error("campaign paused", extra={"campaign_id": campaign_id, "reason": reason})
        return reason
    return None


async def withdraw_revoked(conn: Connection, revocations: list[ConsentEvent]) -> int:
    """A revocation withdraws the number's reservations not yet sent in every campaign that
    requires that scope (a call already sent goes on; the send itself checks the grant)."""
    released = 0
    cache = CampaignCache()
    for scope in {e.scope for e in revocations}:
        phones = [e.phone_e164 for e in revocations if e.scope == scope]
        for attempt in await ledger.withdraw_reservations(conn, phones, scope):
            reason = f"consent in {scope!r} revoked before the call"
            released += await settle(conn, cache, attempt, Settlement.released(reason))
    return released
