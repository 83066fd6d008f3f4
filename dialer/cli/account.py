"""`dialer account ...`: each provider account's limits, health and live calls; an operator's
pause and resume, which every dialing process sees at its next claim (within a second)."""

from __future__ import annotations

from typing import Any

import click

from dialer.account_status import account_status, resting_caller_ids
from dialer.cli.context import AppContext, pass_app, run
from dialer.cli.output import format_option, print_record, print_rows
from dialer.db import accounts
from dialer.db.connect import session
from dialer.errors import NotFoundError


@click.group()
def account() -> None:
    """See provider accounts' health; pause and resume one."""


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
