"""`dialer account ...`: each provider account's limits, health and live calls; an operator's
pause and resume, which every dialing process sees at its next claim (within a second)."""

from __future__ import annotations

from typing import Any

import click

from dialer.campaign_control import rest_tired_caller_ids
from dialer.campaigns import from_row
from dialer.cli.context import AppContext, pass_app, run
from dialer.cli.output import format_option, print_record, print_rows
from dialer.db import accounts, campaigns
from dialer.db.connect import session
from dialer.db.types import Connection
from dialer.errors import NotFoundError
from dialer.policy.states import LIVE


@click.group()
def account() -> None:
    """See provider accounts' health; pause and resume one."""


async def account_status(conn: Connection, names: list[str] | None) -> list[dict[str, Any]]:
    """Each account's kind, rate (configured and paced), channels, live calls, health
    (sending | held by a 429 | resting after failures | paused), last error."""
    rows = await accounts.statuses(conn, names, list(LIVE))
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


@account.command("list")
@format_option
@pass_app
def list_(app: AppContext, fmt: str) -> None:
    """Every account a dialer process registered, with its health and live calls."""

    async def go() -> list[dict[str, Any]]:
        async with session(app.database_url) as conn:
            return await account_status(conn, None)

    print_rows(run(go()), fmt, title="accounts")


@account.command("show")
@click.argument("name")
@format_option
@pass_app
def show(app: AppContext, name: str, fmt: str) -> None:
    """One account: its health, limits, live calls, last error and caller ids resting today.
    Exit 3 when it is paused or resting (it gets no new sends)."""
    own = app.config.accounts[name].caller_ids if name in app.config.accounts else None

    async def go() -> dict[str, Any]:
        async with session(app.database_url) as conn:
            found = await account_status(conn, [name])
            if not found:
                raise NotFoundError(f"no account {name!r} is registered (dialer account list)")
            return found[0] | {"caller_ids_resting": await resting_caller_ids(conn, name, own)}

    status = run(go())
    print_rows([status], fmt, title=f"account {name}")
    if status["health"] in ("paused", "resting"):
        raise SystemExit(3)


@account.command("pause")
@click.argument("name")
@click.option("--reason", default="paused by an operator", show_default=True)
@format_option
@pass_app
def pause(app: AppContext, name: str, reason: str, fmt: str) -> None:
    """Send no new calls through NAME, in every process, until `dialer account resume`; its
    campaigns' other accounts take its share. Calls in flight go on and are settled."""

    async def go() -> bool:
        async with session(app.database_url) as conn:
            return await accounts.pause(conn, name, reason)

    if not run(go()):
        raise NotFoundError(f"no account {name!r} is registered (dialer account list)")
    said = f"account {name} paused: {reason}"
    print_record({"account": name, "health": "paused", "reason": reason}, fmt, said=said)


@account.command("resume")
@click.argument("name")
@format_option
@pass_app
def resume(app: AppContext, name: str, fmt: str) -> None:
    """End NAME's pause (and any rest after failures): it gets its share again."""

    async def go() -> bool:
        async with session(app.database_url) as conn:
            return await accounts.resume(conn, name)

    if not run(go()):
        raise NotFoundError(f"no account {name!r} is registered (dialer account list)")
    print_record({"account": name, "health": "sending"}, fmt, said=f"account {name} resumed")
