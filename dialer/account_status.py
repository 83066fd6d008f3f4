"""Each provider account's status as one document, for `dialer account`, the API and the
dashboard: kind, rates, channels, live calls, health and why, last error, resting caller ids."""

from __future__ import annotations

from typing import Any

from dialer.campaign_control import rest_tired_caller_ids
from dialer.campaigns import from_row
from dialer.db import accounts, campaigns
from dialer.db.types import Connection


async def account_status(conn: Connection, names: list[str] | None) -> list[dict[str, Any]]:
    """Each account's kind, rate (configured and paced), channels, live calls, health
    (sending | held by a 429 | resting after failures | paused), last error."""
    rows = await accounts.statuses(conn, names)
    return [
        {
            "name": r["name"],
            "kind": r["kind"],
            "health": r["health"],
            "rate_per_s": r["rate_per_s"],
            "paced_rate_per_s": _rounded(r["paced_rate_per_s"]),
            "channels": r["channels"],
            "live_calls": r["live_calls"],
            "paused_reason": r["paused_reason"],
            "resting_until": r["resting_until"],
            "resting_reason": r["resting_reason"],
            "held_until": r["held_until"],
            "last_error": r["last_error"],
            "last_error_at": r["last_error_at"],
        }
        for r in rows
    ]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def resting_caller_ids(conn: Connection, name: str, own: list[str] | None) -> list[str]:
    """The numbers shown on this account that rest today, in any active campaign using it."""
    resting: set[str] = set()
    for row in await campaigns.all_active(conn):
        campaign = from_row(row)
        if name in campaign.accounts:
            shown = set(campaign.spec.caller_ids_for(name, own))
            resting |= shown & await rest_tired_caller_ids(conn, campaign)
    return sorted(resting)
