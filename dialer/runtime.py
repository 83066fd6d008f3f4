"""What `run` and `serve` share: accounts from config, campaigns from the database, the
callback base URL, the HTTP client session, and hosting the callback app."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import asyncpg
from aiohttp import web

from dialer.campaigns import Campaign, from_row
from dialer.config import DialerConfig
from dialer.db import campaigns as stored
from dialer.dispatch.limiter import AccountLimits
from dialer.errors import ConfigError, InputError, NotFoundError
from dialer.providers import adapter_for
from dialer.providers.base import Provider
from dialer.providers.send_deadline import (
    CLIENT_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    abortive_socket,
    deadline_tracing,
)

DEFAULT_LISTEN = "127.0.0.1:8080"


def listen_address(config: DialerConfig, host: str | None, port: int | None) -> tuple[str, int]:
    default_host, _, default_port = (config.listen or DEFAULT_LISTEN).rpartition(":")
    return host or default_host, port or int(default_port)


def callback_base(config: DialerConfig, host: str, port: int) -> str:
    """Where providers send callbacks: `public_url`, else this process's listen address."""
    if config.public_url:
        return str(config.public_url).rstrip("/")
    return f"http://{host}:{port}"


def account_limits(name: str, config: DialerConfig) -> AccountLimits:
    account = config.accounts[name]
    rate = account.parsed_rate
    return AccountLimits(name, account.kind, rate.per_second, rate.per_seconds, account.channels)


def adapters(config: DialerConfig) -> dict[str, Provider]:
    return {name: adapter_for(name, account) for name, account in config.accounts.items()}


async def selected_campaigns(
    conn: asyncpg.Connection, names: tuple[str, ...], config: DialerConfig
) -> list[Campaign]:
    """The named campaigns (all active ones if none named); each account must be configured."""
    if names:
        rows = await stored.by_names(conn, list(names))
        missing = sorted(set(names) - {r["name"] for r in rows})
        if missing:
            raise NotFoundError(
                f"no such campaign: {', '.join(missing)} (see `dialer campaign list`)"
            )
    else:
        rows = await stored.all_active(conn)
    campaigns = [from_row(r) for r in rows]
    for campaign in campaigns:
        if campaign.account not in config.accounts:
            source = config.source or "dialer.toml"
            raise ConfigError(
                f"campaign {campaign.name} uses account {campaign.account!r}, which {source}"
                " does not define (add an [accounts.NAME] section)"
            )
    return campaigns


@asynccontextmanager
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    """The one client session for provider requests: bounded in time, send deadlines checked
    before each request is written, and sockets that abort on close (providers.send_deadline)."""
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=500, limit_per_host=500, socket_factory=abortive_socket)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, trace_configs=[deadline_tracing()]
    ) as session:
        yield session


IDLE_TIMEOUT_S = 15.0  # a connection that has not completed a request by then is dropped


@asynccontextmanager
async def hosted(
    app: web.Application,
    host: str,
    port: int,
    *,
    share_port: bool = False,
    idle_timeout_s: float = IDLE_TIMEOUT_S,
) -> AsyncIterator[None]:
    """Serve `app` on host:port until the block ends.

    A port already in use is an error naming it, unless `share_port` (serve --workers: the
    processes of one server share it with SO_REUSEPORT): two unrelated servers must never
    split each other's callbacks. A client that connects and does not complete a request
    within `idle_timeout_s` (or sits idle that long between requests) is disconnected.
    """
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=idle_timeout_s)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=share_port or None)
        try:
            await site.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(
                    f"{host}:{port} is already in use (another dialer serve, or another"
                    " program); choose another --port, or stop that one"
                ) from None
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        yield
    finally:
        await runner.cleanup()
