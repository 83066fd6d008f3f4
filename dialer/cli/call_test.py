"""`dialer call-test ACCOUNT NUMBER`: one real call, shown step by step, before a launch.

It checks what a campaign depends on: the credentials (the provider's answer), the request
shape (printed, secrets masked), and that callbacks reach the dialer (each one printed as it
is stored). The call is paced by the account's shared rate, refused for do-not-call numbers,
and logged; its callbacks are stored in `call_events` (with no attempt) like any other.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from datetime import datetime, timedelta
from typing import Literal

import aiohttp
import asyncpg
import click

from dialer.calls import CallRequest
from dialer.campaigns import from_row
from dialer.cli.context import AppContext, pass_app
from dialer.cli.context import run as run_async
from dialer.db import campaigns, dnc, erasure, events, server
from dialer.db.types import Connection
from dialer.dispatch.claim import take_request_slot
from dialer.durations import parse_duration
from dialer.errors import ConfigError, InputError, NotFoundError
from dialer.phones import PhoneError, normalize
from dialer.policy.states import is_terminal
from dialer.providers.base import Provider, ProviderError
from dialer.providers.errors import Rejected
from dialer.providers.http import check_not_redirected, send
from dialer.providers.secrets import mask
from dialer.runtime import (
    Profile,
    account_limits,
    adapters,
    callback_base,
    listen_address,
    open_runtime,
)

log = logging.getLogger("dialer.call_test")
EXIT_OUTCOME, EXIT_SILENT, EXIT_REFUSED = 0, 1, 2


@click.command("call-test")
@click.argument("account")
@click.argument("number")
@click.option(
    "--campaign",
    "campaign_name",
    help="Take caller id, connect_to/agent_number and ring/call limits from this loaded campaign.",
)
@click.option("--caller-id", help="Caller id (required without --campaign).")
@click.option("--connect-to", help="What the answered call connects to (flow/app/answer URL).")
@click.option("--agent-number", help="Number-to-number providers: the agent's number.")
@click.option("--region", help="Region for a national NUMBER (default: default_region).")
@click.option(
    "--wait",
    "wait_for",
    default="3m",
    show_default=True,
    help="How long to wait for the final callback.",
)
@click.option(
    "--no-serve",
    is_flag=True,
    help="Do not receive callbacks here: `dialer serve`"
    " already does (events are read from the database either way).",
)
@click.option("--host", help="Listen host for callbacks (default: `listen`, else 127.0.0.1).")
@click.option("--port", type=int, help="Listen port for callbacks (default 8080).")
@pass_app
def call_test(
    app: AppContext,
    account,
    number,
    campaign_name,
    caller_id,
    connect_to,
    agent_number,
    region,
    wait_for,
    no_serve,
    host,
    port,
) -> None:
    """Place ONE real call to NUMBER through ACCOUNT and show the request sent (secrets
    masked), the provider's answer, and every callback as it arrives, until the outcome.

    \b
    Use it before a launch: it proves the credentials, the request and that the provider's
    callbacks reach this machine (public_url in dialer.toml must point here, or to the
    `dialer serve` that receives them: then give --no-serve).
    Exit codes: 0 a final outcome arrived, 1 no final callback within --wait,
    2 bad input or the provider refused the request.
    """
    config = app.config
    if account not in config.accounts:
        raise ConfigError(f"no account {account!r} in {config.source or 'dialer.toml'}")
    try:
        deadline = parse_duration(wait_for, at_most=timedelta(hours=2)).total_seconds()
    except ValueError as exc:
        raise InputError(f"--wait: {exc}") from None
    host, port = listen_address(config, host, port)
    base = callback_base(config, host, port)
    adapter = adapters(config)[account]

    async def go() -> int:
        # it hosts the callback receiver only (no reconciler: it follows its one call itself)
        profile = Profile(dials=False, serves=not no_serve, background=False, one_off=True)
        providers = {account: adapter}
        async with open_runtime(app.database_url, providers, base, profile=profile) as runtime:
            async with runtime.pool.acquire() as conn:
                call = await _call_request(
                    conn,
                    adapter.callback_url(base, None),
                    number,
                    region or config.default_region,
                    campaign_name,
                    caller_id,
                    connect_to,
                    agent_number,
                    account,
                )
            await runtime.register([account_limits(account, config)])
            async with runtime.pool.acquire() as conn:
                await asyncio.sleep(await take_request_slot(conn, account))
            async with runtime.hosting(host, port):
                call_id = await _place(runtime.session, adapter, call)
                if call_id is False:
                    return EXIT_REFUSED
                return await _follow(runtime.pool, account, call_id, deadline)

    sys.exit(run_async(go()))


async def _call_request(
    conn: Connection,
    callback_url: str,
    number: str,
    region: str | None,
    campaign_name: str | None,
    caller_id: str | None,
    connect_to: str | None,
    agent_number: str | None,
    account: str,
) -> CallRequest:
    ring, limit = 30, 600
    if campaign_name:
        row = await campaigns.by_name(conn, campaign_name)
        if row is None:
            raise NotFoundError(f"no such campaign: {campaign_name} (see `dialer campaign list`)")
        campaign = from_row(row)
        if campaign.account != account:
            raise InputError(f"campaign {campaign_name} uses account {campaign.account!r}")
        spec = campaign.spec
        region = region or spec.default_region
        caller_id = caller_id or spec.caller_ids[0]
        connect_to = connect_to or spec.connect_to
        agent_number = agent_number or spec.agent_number
        ring, limit = campaign.ring_timeout_s, campaign.max_duration_s
    if not caller_id:
        raise InputError("give --caller-id (or --campaign to take the campaign's)")
    try:
        to = normalize(number, region)
    except PhoneError as exc:
        raise InputError(f"NUMBER {number!r}: {exc}") from None
    try:  # in E.164, as a campaign's caller ids are (each adapter writes it its own way)
        caller_id = normalize(caller_id, region)
    except PhoneError as exc:
        raise InputError(f"--caller-id {caller_id!r}: {exc}") from None
    if await dnc.is_listed(conn, to):
        raise InputError(f"{to} is on the do-not-call list: not calling it")
    if (await erasure.erased_numbers(conn)).holds(to):
        raise InputError(f"{to} was erased on request (dialer forget): not calling it")
    return CallRequest(0, to, caller_id, callback_url, ring, limit, connect_to, agent_number)


async def _place(
    session: aiohttp.ClientSession, adapter: Provider, call: CallRequest
) -> str | Literal[False] | None:
    """Send the request, printing it and the answer; False if the provider refused."""
    try:
        request = adapter.create_request(call)
    except Rejected as exc:
        click.echo(f"dialer: error: {exc.detail}", err=True)
        return False
    click.echo("request:\n" + _indent(request.describe(adapter.secrets)))
    log.info("test call", extra={"account": adapter.name, "to": call.to})
    try:
        answer = await send(session, request)
    except ProviderError as exc:
        click.echo(f"no answer: {exc.detail} (a call may have been placed)")
        return None
    click.echo(
        f"answer: HTTP {answer.status}\n" + _indent(mask(answer.text(2000), adapter.secrets))
    )
    try:
        check_not_redirected(answer)
        call_id = adapter.read_created(answer)
    except ProviderError as exc:
        click.echo(f"dialer: error: refused: {mask(exc.detail, adapter.secrets)}", err=True)
        return False
    click.echo(f"provider call id: {call_id or '(none given: following the first callback)'}")
    return call_id


async def _follow(pool: asyncpg.Pool, account: str, call_id: str | None, limit_s: float) -> int:
    """Print each stored callback of the call until a final one, or give up after limit_s."""
    click.echo(f"waiting up to {limit_s:.0f}s for callbacks (Ctrl-C stops waiting)...")
    started = time.monotonic()
    seen = 0
    async with pool.acquire() as conn:
        since = await server.now(conn) - timedelta(seconds=5)
        while time.monotonic() - started < limit_s:
            rows = await events.unattached_since(conn, account, since, seen, call_id)
            for row in rows:
                seen = row["id"]
                call_id = call_id or row["provider_call_id"]
                when = row["received_at"].astimezone().strftime("%H:%M:%S")
                click.echo(f"{when}  {row['status']:<12} {json.dumps(row['payload'])[:400]}")
                if is_terminal(row["status"]):
                    click.echo(f"outcome: {row['status']}")
                    return EXIT_OUTCOME
            await asyncio.sleep(0.5)
    click.echo(
        f"no final callback within {limit_s:.0f}s at {datetime.now():%H:%M:%S}: check"
        " public_url and that the provider can reach it",
        err=True,
    )
    return EXIT_SILENT


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
